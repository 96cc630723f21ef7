//! Working memory: short-lived key/value entries with a time-to-live and a
//! capacity in bytes.
//!
//! # Semantics
//!
//! - The size of an entry is `key.len() + value.len()` (bytes of UTF-8).
//! - Time is whatever the caller passes as `now_ms`; this module never reads a
//!   clock. An entry stored with `ttl_ms = Some(ttl)` at `now_ms` expires at
//!   `now_ms.saturating_add(ttl)`; with `ttl_ms = None` it never expires.
//! - An entry is **expired at `now_ms` iff `now_ms >= expires_at_ms`**, and
//!   *live* otherwise. Every call judges expiry against the `now_ms` it is
//!   given, nothing else. So `ttl_ms = Some(0)` (and any TTL when `now_ms` is
//!   `u64::MAX`) yields an entry that is expired on arrival: it is never
//!   stored nor visible, and the call only removes the key's previous entry.
//! - Only live entries are visible ([`WorkingMemory::get`], `len`, `iter`) and
//!   only live entries count towards capacity ([`WorkingMemory::used_bytes`]
//!   and the check in [`WorkingMemory::set`]).
//! - Expired entries are dropped by [`WorkingMemory::expire`], by every
//!   successful [`WorkingMemory::set`] (all of them, before storing) and, for
//!   its own key, by [`WorkingMemory::remove`].
//! - Time going backwards (a caller bug or a clock jump) never panics and
//!   never corrupts the accounting. Its one visible effect follows from the
//!   rule above: an entry that was expired at a later time but has not been
//!   dropped yet is live again at an earlier time below its expiry.
//! - All size arithmetic is checked or saturating; nothing wraps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::MemoryError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    value: String,
    expires_at_ms: Option<u64>,
}

impl Entry {
    fn is_live(&self, now_ms: u64) -> bool {
        match self.expires_at_ms {
            None => true,
            Some(expires_at_ms) => now_ms < expires_at_ms,
        }
    }
}

fn entry_size(key: &str, value: &str) -> Option<usize> {
    key.len().checked_add(value.len())
}

/// Short-lived key/value entries with TTLs and a byte capacity. See the
/// [module documentation](self) for the exact semantics.
///
/// Deserialising recomputes the byte accounting from the entries and fails
/// (with the [`MemoryError::CapacityExceeded`] message) if the stored entries
/// do not fit the capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WorkingMemoryRepr", into = "WorkingMemoryRepr")]
pub struct WorkingMemory {
    entries: BTreeMap<String, Entry>,
    capacity_bytes: usize,
    /// Sum of the sizes of all stored entries, live or not yet dropped.
    /// Always `<= capacity_bytes`.
    stored_bytes: usize,
}

/// Serialised form: the accounting is derived, so it is not stored.
#[derive(Clone, Serialize, Deserialize)]
struct WorkingMemoryRepr {
    capacity_bytes: usize,
    entries: BTreeMap<String, Entry>,
}

impl From<WorkingMemory> for WorkingMemoryRepr {
    fn from(memory: WorkingMemory) -> Self {
        WorkingMemoryRepr {
            capacity_bytes: memory.capacity_bytes,
            entries: memory.entries,
        }
    }
}

impl TryFrom<WorkingMemoryRepr> for WorkingMemory {
    type Error = MemoryError;

    fn try_from(repr: WorkingMemoryRepr) -> Result<Self, Self::Error> {
        let stored_bytes = repr
            .entries
            .iter()
            .try_fold(0usize, |acc, (k, e)| {
                entry_size(k, &e.value).and_then(|s| acc.checked_add(s))
            })
            .unwrap_or(usize::MAX);
        if stored_bytes > repr.capacity_bytes {
            return Err(MemoryError::CapacityExceeded {
                needed: stored_bytes,
                available: repr.capacity_bytes,
            });
        }
        Ok(WorkingMemory {
            entries: repr.entries,
            capacity_bytes: repr.capacity_bytes,
            stored_bytes,
        })
    }
}

impl WorkingMemory {
    /// An empty working memory holding at most `capacity_bytes` bytes of live
    /// entries.
    pub fn new(capacity_bytes: usize) -> Self {
        WorkingMemory {
            entries: BTreeMap::new(),
            capacity_bytes,
            stored_bytes: 0,
        }
    }

    /// Stores `value` under `key`, replacing the key's previous entry, with
    /// `ttl_ms` (`None`: no expiry; `Some(0)`: expired on arrival, so the key
    /// is just removed).
    ///
    /// The room available is the capacity minus the sizes of the entries
    /// live at `now_ms`, not counting the key's own previous entry.
    ///
    /// Errors, with nothing changed (not even expired entries dropped):
    /// [`MemoryError::CapacityExceeded`] with `available = capacity_bytes` if
    /// the entry is larger than the whole capacity (whatever its TTL), or
    /// with `available` = the room available if it does not fit in that.
    ///
    /// On success, every entry expired at `now_ms` is dropped first.
    pub fn set(&mut self, key: &str, value: &str, ttl_ms: Option<u64>, now_ms: u64) -> Result<(), MemoryError> {
        let needed = entry_size(key, value).unwrap_or(usize::MAX);
        if needed > self.capacity_bytes {
            return Err(MemoryError::CapacityExceeded {
                needed,
                available: self.capacity_bytes,
            });
        }
        let expires_at_ms = ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
        let entry = Entry {
            value: value.to_owned(),
            expires_at_ms,
        };
        let dead_on_arrival = !entry.is_live(now_ms);

        if !dead_on_arrival {
            // Fast path: even counting every stored entry (live or not, the
            // key's old one included) it fits.
            let fits_anyway = self
                .stored_bytes
                .checked_add(needed)
                .is_some_and(|total| total <= self.capacity_bytes);
            if !fits_anyway {
                let available = self.capacity_bytes.saturating_sub(self.live_bytes(now_ms, Some(key)));
                if needed > available {
                    return Err(MemoryError::CapacityExceeded { needed, available });
                }
            }
        }

        self.entries.retain(|k, e| k.as_str() != key && e.is_live(now_ms));
        // Everything left is live at `now_ms` and not `key`.
        self.stored_bytes = self.live_bytes(now_ms, None);
        if !dead_on_arrival {
            self.entries.insert(key.to_owned(), entry);
            // Cannot saturate: checked against the capacity above.
            self.stored_bytes = self.stored_bytes.saturating_add(needed);
        }
        Ok(())
    }

    /// The value under `key`, if its entry is live at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<&str> {
        self.entries
            .get(key)
            .filter(|e| e.is_live(now_ms))
            .map(|e| e.value.as_str())
    }

    /// Removes the key's entry (live or expired) and returns its value if it
    /// was live at `now_ms`.
    pub fn remove(&mut self, key: &str, now_ms: u64) -> Option<String> {
        let entry = self.entries.remove(key)?;
        let size = entry_size(key, &entry.value).unwrap_or(usize::MAX);
        self.stored_bytes = self.stored_bytes.saturating_sub(size);
        entry.is_live(now_ms).then_some(entry.value)
    }

    /// Drops every entry expired at `now_ms`; returns how many were dropped.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.is_live(now_ms));
        let dropped = before.saturating_sub(self.entries.len());
        if dropped > 0 {
            // Everything left is live at `now_ms`.
            self.stored_bytes = self.live_bytes(now_ms, None);
        }
        dropped
    }

    /// Bytes used by the entries live at `now_ms`.
    pub fn used_bytes(&self, now_ms: u64) -> usize {
        self.live_bytes(now_ms, None)
    }

    /// Number of entries live at `now_ms`.
    pub fn len(&self, now_ms: u64) -> usize {
        self.entries.values().filter(|e| e.is_live(now_ms)).count()
    }

    /// Whether no entry is live at `now_ms`.
    pub fn is_empty(&self, now_ms: u64) -> bool {
        !self.entries.values().any(|e| e.is_live(now_ms))
    }

    /// The capacity, in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// The entries live at `now_ms`, as `(key, value)`, in key order.
    pub fn iter(&self, now_ms: u64) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries
            .iter()
            .filter(move |(_, e)| e.is_live(now_ms))
            .map(|(k, e)| (k.as_str(), e.value.as_str()))
    }

    /// When the key's entry expires (`Some(None)`: never), if it is live at
    /// `now_ms`.
    pub fn expires_at_ms(&self, key: &str, now_ms: u64) -> Option<Option<u64>> {
        self.entries
            .get(key)
            .filter(|e| e.is_live(now_ms))
            .map(|e| e.expires_at_ms)
    }

    /// Sum of the sizes of the entries live at `now_ms`, skipping `except`.
    fn live_bytes(&self, now_ms: u64, except: Option<&str>) -> usize {
        self.entries
            .iter()
            .filter(|(k, e)| Some(k.as_str()) != except && e.is_live(now_ms))
            .fold(0usize, |acc, (k, e)| {
                acc.saturating_add(entry_size(k, &e.value).unwrap_or(usize::MAX))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_remove() {
        let mut m = WorkingMemory::new(100);
        assert_eq!(m.capacity_bytes(), 100);
        assert!(m.is_empty(0));
        m.set("k", "value", None, 0).unwrap();
        assert_eq!(m.get("k", 0), Some("value"));
        assert_eq!(m.get("k", u64::MAX), Some("value"));
        assert_eq!(m.used_bytes(0), 6);
        assert_eq!(m.len(0), 1);
        m.set("k", "v2", None, 5).unwrap();
        assert_eq!(m.used_bytes(5), 3);
        assert_eq!(m.remove("k", 5), Some("v2".to_owned()));
        assert_eq!(m.remove("k", 5), None);
        assert_eq!(m.used_bytes(5), 0);
        assert!(m.is_empty(5));
    }

    #[test]
    fn ttl_expiry_boundary() {
        let mut m = WorkingMemory::new(100);
        m.set("k", "v", Some(10), 100).unwrap();
        assert_eq!(m.get("k", 109), Some("v"));
        assert_eq!(m.expires_at_ms("k", 109), Some(Some(110)));
        // Expired iff now >= expires_at.
        assert_eq!(m.get("k", 110), None);
        assert_eq!(m.used_bytes(110), 0);
        assert_eq!(m.len(110), 0);
        assert_eq!(m.expire(109), 0);
        assert_eq!(m.expire(110), 1);
        assert_eq!(m.get("k", 0), None);
    }

    #[test]
    fn ttl_zero_is_never_stored_and_removes_the_old_entry() {
        let mut m = WorkingMemory::new(100);
        m.set("k", "old", None, 50).unwrap();
        m.set("k", "new", Some(0), 50).unwrap();
        assert_eq!(m.get("k", 50), None);
        assert_eq!(m.get("k", 0), None);
        assert_eq!(m.len(0), 0);
        assert_eq!(m, WorkingMemory::new(100));
        // At the end of time every TTL is already over.
        m.set("k", "v", Some(1_000), u64::MAX).unwrap();
        assert!(m.is_empty(0));
    }

    #[test]
    fn huge_ttl_saturates() {
        let mut m = WorkingMemory::new(100);
        m.set("k", "v", Some(u64::MAX), 10).unwrap();
        assert_eq!(m.expires_at_ms("k", 10), Some(Some(u64::MAX)));
        assert_eq!(m.get("k", u64::MAX - 1), Some("v"));
        assert_eq!(m.get("k", u64::MAX), None);
    }

    #[test]
    fn capacity_counts_live_entries_only() {
        let mut m = WorkingMemory::new(10);
        m.set("a", "1234", Some(5), 0).unwrap(); // 5 bytes, expires at 5
        m.set("b", "1234", None, 0).unwrap(); // 5 bytes
        let before = m.clone();
        assert_eq!(
            m.set("c", "1", None, 4),
            Err(MemoryError::CapacityExceeded {
                needed: 2,
                available: 0,
            })
        );
        assert_eq!(m, before);
        // Once "a" has expired its bytes are free again, without `expire`.
        m.set("c", "1234", None, 5).unwrap();
        assert_eq!(m.used_bytes(5), 10);
        assert_eq!(m.len(5), 2);
        // Replacing a key frees its old size first.
        m.set("c", "5678", None, 6).unwrap();
        assert_eq!(m.used_bytes(6), 10);
    }

    #[test]
    fn larger_than_capacity_changes_nothing() {
        let mut m = WorkingMemory::new(8);
        m.set("k", "v", Some(1), 0).unwrap();
        let before = m.clone();
        for ttl in [None, Some(0), Some(5)] {
            assert_eq!(
                m.set("key", "123456", ttl, 100),
                Err(MemoryError::CapacityExceeded {
                    needed: 9,
                    available: 8,
                })
            );
        }
        // Not even the expired entry was dropped.
        assert_eq!(m, before);
        assert_eq!(m.get("k", 0), Some("v"));
    }

    #[test]
    fn multibyte_values_count_bytes() {
        let mut m = WorkingMemory::new(7);
        m.set("k", "日本", None, 0).unwrap(); // 1 + 6 bytes
        assert_eq!(m.used_bytes(0), 7);
    }

    #[test]
    fn time_going_backwards() {
        let mut m = WorkingMemory::new(100);
        m.set("k", "v", Some(10), 1_000).unwrap(); // expires at 1010
        assert_eq!(m.get("k", 2_000), None);
        // Not dropped yet: live again at an earlier time.
        assert_eq!(m.get("k", 500), Some("v"));
        // A set at a later time drops it; an earlier time cannot bring it back.
        m.set("other", "x", None, 2_000).unwrap();
        assert_eq!(m.get("k", 500), None);
        assert_eq!(m.used_bytes(500), 6);
        // An entry stored "in the past" relative to other calls is fine too.
        m.set("late", "y", Some(10), 0).unwrap();
        assert_eq!(m.get("late", 9), Some("y"));
        assert_eq!(m.get("late", 2_000), None);
    }

    #[test]
    fn iter_lists_live_entries_in_key_order() {
        let mut m = WorkingMemory::new(100);
        m.set("b", "2", None, 0).unwrap();
        m.set("a", "1", None, 0).unwrap();
        m.set("c", "3", Some(1), 0).unwrap();
        assert_eq!(m.iter(0).collect::<Vec<_>>(), [("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(m.iter(1).collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
    }

    #[test]
    fn serde_round_trip_and_checks() {
        let mut m = WorkingMemory::new(50);
        m.set("a", "1", Some(100), 0).unwrap();
        m.set("b", "22", None, 0).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"capacity_bytes":50,"entries":{"a":{"value":"1","expires_at_ms":100},"b":{"value":"22","expires_at_ms":null}}}"#
        );
        let back: WorkingMemory = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.used_bytes(0), 5);

        let too_big = r#"{"capacity_bytes":2,"entries":{"abc":{"value":"","expires_at_ms":null}}}"#;
        let err = serde_json::from_str::<WorkingMemory>(too_big).unwrap_err();
        assert!(
            err.to_string()
                .contains("working memory entry needs 3 bytes but only 2 are available"),
            "{err}"
        );
    }
}
