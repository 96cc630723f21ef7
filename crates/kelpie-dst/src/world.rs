//! The simulated world: virtual time, the event timeline, and every node's
//! clock, inbox and disk. One lock guards it; the executor never holds it
//! while polling a task, so seams called from production code can take it.
//!
//! Lock order, everywhere: `world` before `ready`; `tasks` is never held
//! together with either.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use futures::future::BoxFuture;
use kelpie_core::coordination::CoordinationState;
use kelpie_core::rng::{Rng, SeededRng};
use kelpie_core::spawn::TaskExit;
use kelpie_core::transport::Envelope;
use kelpie_core::NodeId;

use crate::faults::{FaultConfig, FaultCounters, FaultKind};
use crate::trace::Trace;

/// Wall time of virtual time zero: 2026-01-01T00:00:00Z, in Unix ms.
pub(crate) const WALL_EPOCH_UNIX_MS: i64 = 1_767_225_600_000;
const PPM: i128 = 1_000_000;

pub(crate) type TaskId = u64;

/// Locks a mutex, ignoring poison: simulator state stays consistent because
/// a panic inside production code is caught outside every lock.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared between the simulation loop and the seams it hands out.
pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub ready: Arc<Mutex<BTreeSet<TaskId>>>,
    pub tasks: Mutex<BTreeMap<TaskId, TaskSlot>>,
}

impl Shared {
    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }
}

/// One spawned task.
pub(crate) struct TaskSlot {
    pub node: Option<usize>,
    pub name: &'static str,
    pub future: Option<BoxFuture<'static, ()>>,
    pub waker: Waker,
    pub aborted: Arc<AtomicBool>,
    pub exit: Option<futures::channel::oneshot::Sender<TaskExit>>,
}

/// A timer registered on the timeline.
#[derive(Default)]
pub(crate) struct TimerState {
    pub fired: AtomicBool,
    pub cancelled: AtomicBool,
    pub waker: Mutex<Option<Waker>>,
}

impl TimerState {
    /// Marks the timer fired and returns its waker, to wake once no
    /// simulator lock is held.
    pub fn fire(&self) -> Option<Waker> {
        self.fired.store(true, Ordering::SeqCst);
        lock(&self.waker).take()
    }
}

/// Something that happens at a virtual instant.
pub(crate) enum TimelineEvent {
    Timer(Arc<TimerState>),
    Deliver {
        envelope: Envelope,
        from: usize,
        to: usize,
        link_seq: u64,
        delayed: bool,
        duplicate: bool,
    },
    FaultTick,
    /// The `n`th fault of the simulation's explicit schedule.
    Scheduled(usize),
    Resume {
        node: usize,
        pause_id: u64,
    },
    Restart {
        node: usize,
    },
    Heal {
        partition_id: u64,
    },
    /// A coordination request reaching the store: applied whatever became
    /// of the node that sent it.
    Coordination(Box<dyn FnOnce(&mut World) + Send>),
}

/// A node's place in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Running { since: u64 },
    Paused { since: u64, pause_id: u64, deferred: bool },
    Down { since: u64 },
}

/// A node's clock as a function of virtual time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeClock {
    origin_mono: u64,
    base_virtual: u64,
    base_mono: u64,
    rate_ppm: i64,
    wall_offset_ms: i64,
}

/// Clock rates are kept within this many ppm of real time, so a clock never
/// stops or runs backwards.
pub(crate) const CLOCK_RATE_PPM_LIMIT: i64 = 500_000;

impl NodeClock {
    pub fn new(origin_mono: u64) -> Self {
        Self {
            origin_mono,
            base_virtual: 0,
            base_mono: origin_mono,
            rate_ppm: 0,
            wall_offset_ms: 0,
        }
    }

    pub fn rate_ppm(&self) -> i64 {
        self.rate_ppm
    }

    pub fn mono(&self, now: u64) -> u64 {
        let elapsed = i128::from(now.saturating_sub(self.base_virtual));
        let scaled = elapsed * (PPM + i128::from(self.rate_ppm)) / PPM;
        self.base_mono.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
    }

    /// The first virtual instant at which this clock reads at least `target`.
    pub fn virtual_at(&self, target_mono: u64, now: u64) -> u64 {
        if target_mono <= self.mono(now) {
            return now;
        }
        let ahead = i128::from(target_mono - self.base_mono);
        let rate = PPM + i128::from(self.rate_ppm);
        let elapsed = (ahead * PPM + rate - 1) / rate;
        let at = self
            .base_virtual
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX));
        at.max(now)
    }

    /// Wall time: the epoch plus this clock's own elapsed time (so every
    /// node starts at the epoch) plus jumps.
    pub fn wall_ms(&self, now: u64) -> i64 {
        let elapsed = self.mono(now).saturating_sub(self.origin_mono);
        let mono_ms = i64::try_from(elapsed / 1_000_000).unwrap_or(i64::MAX);
        WALL_EPOCH_UNIX_MS
            .saturating_add(self.wall_offset_ms)
            .saturating_add(mono_ms)
    }

    pub fn set_rate(&mut self, now: u64, rate_ppm: i64) {
        self.base_mono = self.mono(now);
        self.base_virtual = now;
        self.rate_ppm = rate_ppm.clamp(-CLOCK_RATE_PPM_LIMIT, CLOCK_RATE_PPM_LIMIT);
    }

    pub fn jump(&mut self, now: u64, mono_forward_nanos: u64, wall_delta_ms: i64) {
        self.base_mono = self.mono(now).saturating_add(mono_forward_nanos);
        self.base_virtual = now;
        // The wall clock follows the monotonic jump, then moves by the delta.
        self.wall_offset_ms = self.wall_offset_ms.saturating_add(wall_delta_ms);
    }
}

/// Largest simulated file, in bytes; writes beyond it fail.
pub(crate) const SIM_FILE_BYTES_MAX: u64 = 1 << 30;

/// One buffered operation on a simulated file not yet synced.
#[derive(Clone, Debug)]
pub(crate) enum PendingOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl PendingOp {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            PendingOp::Write { offset, data } => {
                let start = usize::try_from(*offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(data.len());
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(data);
            }
            PendingOp::SetLen(len) => bytes.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
        }
    }
}

/// A simulated file: what survives any crash, and what the node sees.
#[derive(Clone, Debug, Default)]
pub(crate) struct SimFileState {
    pub durable: Vec<u8>,
    pub current: Vec<u8>,
    pub pending: Vec<PendingOp>,
}

/// Per-node world state.
pub(crate) struct NodeMeta {
    pub id: NodeId,
    pub life: Life,
    pub boot: u64,
    pub clock: NodeClock,
    pub inbox: VecDeque<Envelope>,
    pub inbox_wakers: Vec<Waker>,
    pub disk: BTreeMap<String, SimFileState>,
    /// Timers waiting on this node's clock: re-examined when it speeds up or jumps.
    pub local_timers: Vec<std::sync::Weak<TimerState>>,
}

impl NodeMeta {
    pub fn is_down(&self) -> bool {
        matches!(self.life, Life::Down { .. })
    }
}

/// Per-link network bookkeeping, for reorder detection.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LinkState {
    pub next_seq: u64,
    pub max_delivered: Option<u64>,
}

/// Everything the simulator knows, under one lock.
pub(crate) struct World {
    pub now: u64,
    pub step: u64,
    pub rng: SeededRng,
    pub faults: FaultConfig,
    pub counters: FaultCounters,
    pub trace: Trace,
    pub timeline: BTreeMap<(u64, u64), TimelineEvent>,
    timeline_seq: u64,
    pub next_task_id: TaskId,
    pub nodes: Vec<NodeMeta>,
    /// While partitioned: the nodes on the side that reaches the coordination store.
    pub partition: Option<(u64, BTreeSet<usize>)>,
    pub next_partition_id: u64,
    pub next_pause_id: u64,
    pub coordination: CoordinationState,
    pub links: BTreeMap<(usize, usize), LinkState>,
}

impl World {
    pub fn new(seed: u64, faults: FaultConfig, trace: Trace) -> Self {
        Self {
            now: 0,
            step: 0,
            rng: SeededRng::from_seed(seed),
            faults,
            counters: FaultCounters::default(),
            trace,
            timeline: BTreeMap::new(),
            timeline_seq: 0,
            next_task_id: 1,
            nodes: Vec::new(),
            partition: None,
            next_partition_id: 1,
            next_pause_id: 1,
            coordination: CoordinationState::new(),
            links: BTreeMap::new(),
        }
    }

    /// Schedules `event` at virtual time `at` (never in the past). Events
    /// due at the same instant run in an order drawn from the seed.
    pub fn schedule(&mut self, at: u64, event: TimelineEvent) {
        let at = at.max(self.now);
        self.timeline_seq += 1;
        let tie = (self.rng.next_u64() >> 24) << 24 | (self.timeline_seq & 0xff_ffff);
        self.timeline.insert((at, tie), event);
    }

    /// Takes the wakers of every timer waiting on `node`'s clock (after a
    /// rate change or jump), to be woken once the world is unlocked; each
    /// timer then re-arms for its deadline on the changed clock.
    pub fn take_local_timers(&mut self, node: usize) -> Vec<Waker> {
        let timers = std::mem::take(&mut self.nodes[node].local_timers);
        timers
            .into_iter()
            .filter_map(|timer| timer.upgrade())
            .filter(|timer| !timer.cancelled.load(Ordering::SeqCst))
            .filter_map(|timer| {
                timer.fired.store(true, Ordering::SeqCst);
                lock(&timer.waker).take()
            })
            .collect()
    }

    /// Appends to the trace at the current step and time.
    pub fn record(&mut self, event: &str) {
        self.trace.record(self.step, self.now, event);
    }

    /// Whether random faults may still fire (before `quiet_after`).
    pub fn faults_active(&self) -> bool {
        self.faults
            .quiet_after
            .is_none_or(|quiet| self.now < u64::try_from(quiet.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Draws whether `kind` fires now (never once faults are quiet); does
    /// not count an effect.
    pub fn draw(&self, kind: FaultKind) -> bool {
        let probability = self.faults.probability_of(kind);
        probability > 0.0 && self.faults_active() && self.rng.bernoulli(probability)
    }

    /// Records that `kind` changed behaviour, with a trace line.
    pub fn effect(&mut self, kind: FaultKind, detail: &str) {
        self.counters.record(kind);
        let line = format!("fault {kind} {detail}");
        self.record(&line);
    }

    pub fn partitioned(&self, a: usize, b: usize) -> bool {
        match &self.partition {
            Some((_, side)) => side.contains(&a) != side.contains(&b),
            None => false,
        }
    }

    pub fn reaches_store(&self, node: usize) -> bool {
        match &self.partition {
            Some((_, side)) => side.contains(&node),
            None => true,
        }
    }

    /// Whether `node` is alive in the incarnation `boot`.
    pub fn is_current(&self, node: usize, boot: u64) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|meta| meta.boot == boot && !meta.is_down())
    }

    pub fn node_index(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|meta| &meta.id == id)
    }

    /// The store's notion of now, for lease expiry: true (virtual) time.
    pub fn store_now(&self) -> kelpie_core::MonotonicInstant {
        kelpie_core::MonotonicInstant::from_nanos(self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewed_clock_maps_both_ways() {
        let mut clock = NodeClock::new(5_000);
        assert_eq!(clock.mono(1_000), 6_000);
        clock.set_rate(1_000, 100_000); // 10% fast from t=1000
        assert_eq!(clock.mono(11_000), 6_000 + 11_000);
        assert_eq!(clock.virtual_at(17_000, 1_000), 11_000);
        clock.set_rate(11_000, -100_000); // 10% slow
        assert_eq!(clock.mono(21_000), 17_000 + 9_000);
        assert_eq!(clock.virtual_at(26_000, 11_000), 21_000);
        assert_eq!(clock.virtual_at(100, 11_000), 11_000, "a past target is now");
    }

    #[test]
    fn jumps_move_wall_both_ways_and_monotonic_forward_only() {
        let mut clock = NodeClock::new(0);
        let wall_before = clock.wall_ms(0);
        clock.jump(0, 2_000_000, -500);
        assert_eq!(clock.mono(0), 2_000_000);
        assert_eq!(clock.wall_ms(0), wall_before + 2 - 500);
    }

    #[test]
    fn pending_ops_apply_like_a_file() {
        let mut bytes = vec![1, 2, 3];
        PendingOp::Write {
            offset: 5,
            data: vec![9, 9],
        }
        .apply(&mut bytes);
        assert_eq!(bytes, vec![1, 2, 3, 0, 0, 9, 9]);
        PendingOp::SetLen(2).apply(&mut bytes);
        assert_eq!(bytes, vec![1, 2]);
    }
}
