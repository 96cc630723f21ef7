//! The fault catalogue, its configuration, and the effect counters.
//!
//! Every fault type names the code path that consumes it. A fault "has an
//! effect" only when it changed what the code under test observed (a message
//! really dropped, a write really torn, a paused node really kept from
//! running), and only then is its counter incremented. A test runs the
//! catalogue with every fault enabled and asserts every counter is above
//! zero, so no fault type can be declared and never injected.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Every fault the simulator can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A node's clock starts running faster or slower than real time.
    ClockSkew,
    /// A node's wall clock jumps (either way); its monotonic clock jumps forward.
    ClockJump,
    /// A node stops executing (a GC pause) while time goes on.
    NodePause,
    /// A node crashes (volatile state lost) and restarts later.
    NodeCrash,
    /// A message is lost.
    MessageDrop,
    /// A message is delivered late.
    MessageDelay,
    /// A message is delivered twice.
    MessageDuplicate,
    /// A message overtakes one sent before it on the same link.
    MessageReorder,
    /// The nodes split in two groups that cannot talk; the coordination store
    /// is reachable from one side only. Heals after a while.
    Partition,
    /// A disk write fails (nothing written).
    DiskWriteError,
    /// A disk read fails.
    DiskReadError,
    /// Blocking disk work (a commit's writes and fsync) is delayed.
    DiskLatency,
    /// A machine crash loses writes that were not yet synced.
    FsyncLoss,
    /// A machine crash leaves the last unsynced write half-written.
    TornWrite,
    /// A coordination request times out; it may have been applied.
    CoordinationTimeout,
    /// Another writer changes a key a transaction compares on, just before it.
    ConcurrentConflict,
}

impl FaultKind {
    /// The whole catalogue, in a fixed order.
    pub const ALL: [FaultKind; 16] = [
        FaultKind::ClockSkew,
        FaultKind::ClockJump,
        FaultKind::NodePause,
        FaultKind::NodeCrash,
        FaultKind::MessageDrop,
        FaultKind::MessageDelay,
        FaultKind::MessageDuplicate,
        FaultKind::MessageReorder,
        FaultKind::Partition,
        FaultKind::DiskWriteError,
        FaultKind::DiskReadError,
        FaultKind::DiskLatency,
        FaultKind::FsyncLoss,
        FaultKind::TornWrite,
        FaultKind::CoordinationTimeout,
        FaultKind::ConcurrentConflict,
    ];

    /// The fault's name, as used in reports and the alignment table.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::ClockSkew => "clock_skew",
            FaultKind::ClockJump => "clock_jump",
            FaultKind::NodePause => "node_pause",
            FaultKind::NodeCrash => "node_crash",
            FaultKind::MessageDrop => "message_drop",
            FaultKind::MessageDelay => "message_delay",
            FaultKind::MessageDuplicate => "message_duplicate",
            FaultKind::MessageReorder => "message_reorder",
            FaultKind::Partition => "partition",
            FaultKind::DiskWriteError => "disk_write_error",
            FaultKind::DiskReadError => "disk_read_error",
            FaultKind::DiskLatency => "disk_latency",
            FaultKind::FsyncLoss => "fsync_loss",
            FaultKind::TornWrite => "torn_write",
            FaultKind::CoordinationTimeout => "coordination_timeout",
            FaultKind::ConcurrentConflict => "concurrent_conflict",
        }
    }

    /// The simulator code path that injects this fault.
    pub const fn consumer(self) -> &'static str {
        match self {
            FaultKind::ClockSkew | FaultKind::ClockJump | FaultKind::NodePause => "Simulation::fault_tick -> NodeClock",
            FaultKind::NodeCrash => "Simulation::fault_tick -> Simulation::crash_node",
            FaultKind::Partition => "Simulation::fault_tick -> World::partition",
            FaultKind::MessageDrop
            | FaultKind::MessageDelay
            | FaultKind::MessageDuplicate
            | FaultKind::MessageReorder => "SimTransport::send",
            FaultKind::DiskWriteError => "SimFile::write / SimFile::sync_data / FaultyEngine::write",
            FaultKind::DiskReadError => "SimFile::read / FaultyEngine::snapshot",
            FaultKind::DiskLatency => "SimSpawner::spawn_blocking",
            FaultKind::FsyncLoss | FaultKind::TornWrite => "SimDisk::crash",
            FaultKind::CoordinationTimeout | FaultKind::ConcurrentConflict => "SimCoordination::request",
        }
    }

    /// Whether the fault is drawn on the periodic fault tick (node-level)
    /// rather than at each operation that could suffer it.
    pub const fn is_scheduled(self) -> bool {
        matches!(
            self,
            FaultKind::ClockSkew
                | FaultKind::ClockJump
                | FaultKind::NodePause
                | FaultKind::NodeCrash
                | FaultKind::Partition
        )
    }

    /// Parses a name produced by [`FaultKind::name`].
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How often each fault fires and how large it is.
///
/// Scheduled faults (see [`FaultKind::is_scheduled`]) fire with their
/// probability on each fault tick; the others with their probability on each
/// operation that could suffer them (a send, a write, a request, a crash).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Probability per fault kind; missing means never.
    pub probability: BTreeMap<FaultKind, f64>,
    /// Virtual time between fault ticks.
    pub tick: Duration,
    /// Largest clock rate deviation, in parts per million, either way.
    pub clock_skew_ppm_max: u32,
    /// Largest wall-clock jump, either way; monotonic jumps are forward only
    /// and at most this.
    pub clock_jump_max: Duration,
    /// Longest node pause.
    pub pause_max: Duration,
    /// Longest time a crashed node stays down before restarting.
    pub crash_downtime_max: Duration,
    /// Longest extra time of delayed blocking disk work.
    pub disk_latency_max: Duration,
    /// Longest partition before it heals.
    pub partition_max: Duration,
    /// Network latency without faults.
    pub network_latency: Duration,
    /// Largest extra latency of a delayed message.
    pub message_delay_max: Duration,
    /// Largest extra latency of a reordered message.
    pub message_reorder_max: Duration,
    /// Latency of a coordination request, each way.
    pub coordination_latency: Duration,
    /// How long a coordination client waits before reporting a timeout.
    pub coordination_timeout: Duration,
    /// If set, no fault starts after this virtual time, neither a scheduled
    /// one (skew, jump, pause, crash, partition) nor one drawn per
    /// operation (coordination timeout, disk error, message loss, ...):
    /// a liveness phase follows, in which only faults already running (a
    /// pause, a partition, a crashed node's downtime) play out.
    pub quiet_after: Option<Duration>,
}

impl FaultConfig {
    /// No faults at all.
    pub fn none() -> Self {
        Self {
            probability: BTreeMap::new(),
            tick: Duration::from_millis(100),
            clock_skew_ppm_max: 50_000,
            clock_jump_max: Duration::from_millis(200),
            pause_max: Duration::from_secs(3),
            crash_downtime_max: Duration::from_secs(2),
            disk_latency_max: Duration::from_millis(20),
            partition_max: Duration::from_secs(3),
            network_latency: Duration::from_millis(1),
            message_delay_max: Duration::from_millis(150),
            message_reorder_max: Duration::from_millis(5),
            coordination_latency: Duration::from_millis(2),
            coordination_timeout: Duration::from_millis(500),
            quiet_after: None,
        }
    }

    /// Every fault in the catalogue enabled at a rate that keeps a run
    /// eventful but lets protocols make progress.
    pub fn all_moderate() -> Self {
        let mut config = Self::none();
        for kind in FaultKind::ALL {
            let probability = match kind {
                FaultKind::ClockSkew | FaultKind::ClockJump => 0.02,
                FaultKind::NodePause => 0.01,
                FaultKind::NodeCrash => 0.01,
                FaultKind::Partition => 0.005,
                FaultKind::MessageDrop | FaultKind::MessageDelay | FaultKind::MessageDuplicate => 0.03,
                FaultKind::MessageReorder => 0.05,
                FaultKind::DiskWriteError | FaultKind::DiskReadError => 0.05,
                FaultKind::DiskLatency => 0.2,
                FaultKind::FsyncLoss | FaultKind::TornWrite => 0.5,
                FaultKind::CoordinationTimeout | FaultKind::ConcurrentConflict => 0.05,
            };
            config.probability.insert(kind, probability);
        }
        config
    }

    /// This configuration with `kind` at `probability`.
    pub fn with(mut self, kind: FaultKind, probability: f64) -> Self {
        self.probability.insert(kind, probability);
        self
    }

    /// The probability of `kind` (0 when not configured).
    pub fn probability_of(&self, kind: FaultKind) -> f64 {
        self.probability.get(&kind).copied().unwrap_or(0.0)
    }

    /// Whether any scheduled fault is enabled (so fault ticks are needed).
    pub fn any_scheduled(&self) -> bool {
        FaultKind::ALL
            .into_iter()
            .any(|kind| kind.is_scheduled() && self.probability_of(kind) > 0.0)
    }
}

/// How many times each fault actually changed behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters {
    counts: BTreeMap<FaultKind, u64>,
}

impl FaultCounters {
    /// Records one effect of `kind`.
    pub fn record(&mut self, kind: FaultKind) {
        *self.counts.entry(kind).or_insert(0) += 1;
    }

    /// The effects recorded for `kind`.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    /// Adds another run's counts to these.
    pub fn merge(&mut self, other: &FaultCounters) {
        for (kind, count) in &other.counts {
            *self.counts.entry(*kind).or_insert(0) += count;
        }
    }

    /// Every kind in the catalogue with its count, zeros included.
    pub fn all(&self) -> Vec<(FaultKind, u64)> {
        FaultKind::ALL.into_iter().map(|kind| (kind, self.get(kind))).collect()
    }
}

impl fmt::Display for FaultCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (kind, count) in self.all() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{kind}={count}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
        for kind in FaultKind::ALL {
            assert_eq!(FaultKind::from_name(kind.name()), Some(kind));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FaultKind::ALL.len());
        assert_eq!(FaultKind::from_name("cosmic_ray"), None);
    }

    #[test]
    fn moderate_config_enables_the_whole_catalogue() {
        let config = FaultConfig::all_moderate();
        for kind in FaultKind::ALL {
            assert!(config.probability_of(kind) > 0.0, "{kind} disabled");
        }
        assert!(config.any_scheduled());
        assert!(!FaultConfig::none().any_scheduled());
    }
}
