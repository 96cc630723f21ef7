//! The run trace: every event, hashed in order, with a short tail kept for
//! failure reports.
//!
//! Two runs with the same seed must produce the same sequence of events and
//! so the same hash; the determinism gate compares hashes. Events are
//! rendered to text with no addresses, no real time and no hash-map order, so
//! the rendering itself is deterministic.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};

/// An ordered, hashed record of a run.
#[derive(Clone)]
pub struct Trace {
    hasher: Sha256,
    events: u64,
    tail: VecDeque<String>,
    tail_max: usize,
    keep_all: Option<Vec<String>>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Trace {
    /// An empty trace keeping the last `tail_max` events, and every event if
    /// `keep_all` is set (for debugging and trace export).
    pub fn new(tail_max: usize, keep_all: bool) -> Self {
        Self {
            hasher: Sha256::new(),
            events: 0,
            tail: VecDeque::with_capacity(tail_max),
            tail_max,
            keep_all: keep_all.then(Vec::new),
        }
    }

    /// Appends one event.
    pub fn record(&mut self, step: u64, virtual_nanos: u64, event: &str) {
        let line = format!(
            "{step} {}.{:09} {event}",
            virtual_nanos / 1_000_000_000,
            virtual_nanos % 1_000_000_000
        );
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.events += 1;
        if self.tail_max > 0 {
            if self.tail.len() == self.tail_max {
                self.tail.pop_front();
            }
            self.tail.push_back(line.clone());
        }
        if let Some(all) = &mut self.keep_all {
            all.push(line);
        }
    }

    /// Events recorded so far.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The hash of every event so far, as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// The last events, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Every event, if the trace was created with `keep_all`.
    pub fn all(&self) -> Option<&[String]> {
        self.keep_all.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_event_and_its_order() {
        let mut a = Trace::new(2, false);
        let mut b = Trace::new(2, false);
        for trace in [&mut a, &mut b] {
            trace.record(1, 10, "poll #1");
            trace.record(2, 20, "timer");
        }
        assert_eq!(a.hash_hex(), b.hash_hex());
        let mut c = Trace::new(2, true);
        c.record(1, 10, "timer");
        c.record(2, 20, "poll #1");
        assert_ne!(a.hash_hex(), c.hash_hex());
        a.record(3, 30, "deliver");
        assert_eq!(
            a.tail(),
            vec!["2 0.000000020 timer".to_string(), "3 0.000000030 deliver".to_string()]
        );
        assert_eq!(c.all().map(|all| all.len()), Some(2));
    }
}
