//! `KelpieHeartbeat` (specs/tla/KelpieHeartbeat.tla) on the production code:
//! each boot of a node advances its incarnation with the production
//! [`incarnation::advance`] on an in-memory [`MemDisk`] (kept in the state
//! as a [`DiskImage`]), then runs the production sans-IO
//! [`FailureDetector`], fed ticks and pings at the node's clock reading.
//! Nothing of the detector's logic is re-implemented here: suspicion,
//! staleness and incarnations are read back from
//! [`FailureDetector::peers`].
//!
//! Time: real time advances by one unit (1 ms, [`common::UNIT_NANOS`]) per
//! `Tick`; each detector's clock advances by 0, 1 or 2 units, its deviation
//! from real time kept inside a band of width `max_drift` (as in
//! `KelpieLease`). The detector works with absolute instants, so unlike the
//! spec (relative, capped times) the state keeps absolute ones, and real
//! time is bounded by a horizon, `max_time`. As in the spec and the
//! simulator, time does not advance while a running node has work ready: a
//! due detector tick, or a boot's advance (unless it backs off after a
//! disk error, until the next `Tick`).
//!
//! Messages, as in the spec: every ping of one boot is the same message
//! (from, to, incarnation), which may arrive late, reordered, twice or
//! never, so `Ping(p, o)` delivers one at any time while p's boot lives.
//! Only pings a crashed boot left in flight are state (one to every other
//! node; `Drop` loses any of them), arriving within `max_delay` of the
//! crash (later only into the inbox of a node paused or backing off).
//! Acks are not modelled: an ack is a message from the pinged node with its
//! current incarnation, which `Ping` already delivers.
//!
//! Actions (the spec's names): `Advance(n, dev)` (the boot's
//! [`incarnation::advance`], then [`FailureDetector::new`] with the
//! incarnation it returned, and a clock deviation `dev`; the detector ticks
//! at once), `AdvanceFailed(n, at_op)` (the advance fails with a disk error
//! injected at its `at_op`-th mutating disk operation, [`MemDisk::fail_after`]:
//! the first sync, the rewrite of the value read or its sync, the write of
//! the next value or the last sync; a read error is the same as
//! a failed write; the boot retries after the next `Tick`),
//! `DetectorTick(n)` ([`FailureDetector::step`] with
//! [`DetectorInput::Tick`], every node a member), `Ping(p, o)` (o's detector
//! steps with [`DetectorInput::Received`] of a ping carrying p's current
//! incarnation), `Deliver(m, keep)` (a crashed boot's ping arrives; `keep`:
//! a duplicate stays in flight), `Drop(m)`, `Tick(devs)` (real time +1, the
//! detectors' new clock deviations), `Crash(n, kept)` (volatile state lost;
//! of the disk's unsynced operations the `i`-th survives if bit `i` of
//! `kept` is set: all of them is a process crash, fewer a machine crash,
//! [`MemDisk::restart`]), `Restart(n)`, `Pause(n)`, `Resume(n)`.
//!
//! Properties: `always` `IncarnationMonotonic` (every boot's detector runs
//! at an incarnation above any an earlier boot of the node used: a ghost),
//! `PeerIncarnationMonotonic` (an observer's detector never holds a peer at
//! an incarnation below one it held before during the boot: a ghost
//! updated after every step from [`FailureDetector::peers`]),
//! `CrashedNodeSuspected` (the spec's bounded-time form: with `Detect =
//! SuspectAfter + Interval + MaxDrift` and `InFlight = MaxDelay`, a peer
//! down for `Detect + InFlight` is suspected by every observer that heard
//! of it and whose detector has run for `Detect` since it started or the
//! node resumed); `sometimes` `PeerSuspected`, `RestartedPeerSeenAlive` (a
//! step made an observer hold a peer alive at a higher incarnation than it
//! held) and `StalePingDelivered` (a crashed boot's ping arrived after a
//! newer boot's); with disk errors, also `IncarnationSkipped` (a boot
//! runs at an incarnation more than one above the last boot's: a failed
//! advance cached a number it never used).
//!
//! The two nodes are symmetric (same code, same configuration, every
//! combination of clock deviations), so only node 0 crashes: every
//! behaviour where node 1 crashes has a mirror image where node 0 does.
//! Either node may pause.
//!
//! Bounds (`Default`, as `KelpieHeartbeat.cfg`): 2 nodes, Interval =
//! SuspectAfter = MaxDrift = MaxDelay = 1 unit, 1 crash, 1 pause, no disk
//! error, real time up to 5 (a crash at time 0 or 1 is suspected within
//! the horizon: `Detect + InFlight` = 4). [`KelpieHeartbeat::with_disk_errors`]:
//! the same with 1 disk error and no pause.

use std::collections::BTreeSet;

use kelpie_cluster::heartbeat::{
    DetectorInput, FailureDetector, HeartbeatConfig, HeartbeatMessage, PeerStatus, PeerView,
};
use kelpie_cluster::incarnation;
use kelpie_core::clock::MonotonicInstant;
use kelpie_core::NodeId;
use stateright::{Model, Property};

use crate::common;
pub use crate::lease::Status;
use crate::memdisk::{DiskImage, MemDisk};

/// More mutating disk operations than [`incarnation::advance`] takes (sync,
/// rewrite of the value read, sync, write of the next, sync): the failure
/// points `AdvanceFailed` enumerates (an advance that takes more fails the
/// model, so none is missed).
pub const ADVANCE_OPS_MAX: u8 = 5;

/// The most unsynced disk operations a crash may find (`Crash` enumerates
/// every subset of them; more fails the model).
pub const UNSYNCED_OPS_MAX: usize = 4;

/// One node: its process (the detector, its clock) and its disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HbNode {
    /// Up, paused or down.
    pub status: Status,
    /// The node's disk: the incarnation file.
    pub disk: DiskImage,
    /// The production detector, once the boot's advance succeeded (the
    /// spec's `inc # 0`).
    pub detector: Option<FailureDetector>,
    /// The boot's advance failed; it retries after the next `Tick`.
    pub retry: bool,
    /// The clock's deviation from real time, in units (0 without a detector).
    pub dev: i64,
    /// When the driver ticks the detector next, on the node's clock.
    pub next_tick: MonotonicInstant,
    /// Real time the detector has run since it started or the node
    /// resumed (capped at `Detect`).
    pub up_for: u64,
    /// Real time since the node crashed (capped at `Detect + InFlight`).
    pub down_for: u64,
    /// Ghost: the highest incarnation an earlier boot of the node used.
    pub prev_max: u64,
    /// Ghost: for each peer, the highest incarnation this boot's detector
    /// has held for it.
    pub pmax: Vec<u64>,
}

/// A ping a crashed boot left in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InFlightPing {
    /// The crashed node.
    pub from: usize,
    /// The destination.
    pub to: usize,
    /// The crashed boot's incarnation.
    pub incarnation: u64,
    /// Real time since the crash (capped at `InFlight`).
    pub age: u64,
}

/// A state of the `KelpieHeartbeat` model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HbState {
    /// Real time, in units.
    pub time: u64,
    /// The nodes.
    pub nodes: Vec<HbNode>,
    /// Pings crashed boots left in flight.
    pub msgs: BTreeSet<InFlightPing>,
    /// Crashes so far.
    pub crashes: u8,
    /// Failed advances so far.
    pub derrs: u8,
    /// Pauses so far.
    pub pauses: u8,
    /// Ghost: the last step made an observer hold a peer alive at a higher
    /// incarnation than it held before.
    pub revived: bool,
    /// Ghost: the last step delivered a crashed boot's ping to an observer
    /// holding a newer incarnation of its sender.
    pub stale_delivered: bool,
}

/// An action of the model (the spec's action names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HbAction {
    /// Node `n`'s boot advances its incarnation and starts its detector,
    /// its clock at deviation `dev`.
    Advance(usize, i64),
    /// Node `n`'s advance fails at its `at_op`-th mutating disk operation.
    AdvanceFailed(usize, u8),
    /// Node `n`'s detector ticks.
    DetectorTick(usize),
    /// A ping of node `p`'s current boot arrives at node `o`: `Ping(p, o)`.
    Ping(usize, usize),
    /// A crashed boot's ping arrives; if the flag is set a duplicate stays
    /// in flight.
    Deliver(InFlightPing, bool),
    /// A crashed boot's ping is lost.
    Drop(InFlightPing),
    /// Real time +1; the nodes' new clock deviations.
    Tick(Vec<i64>),
    /// Node `n` crashes; the `i`-th unsynced disk operation survives if bit
    /// `i` of `kept` is set.
    Crash(usize, u64),
    /// Node `n` restarts (a new process, which advances its incarnation).
    Restart(usize),
    /// Node `n` pauses.
    Pause(usize),
    /// Node `n` resumes.
    Resume(usize),
}

/// The `KelpieHeartbeat` model.
#[derive(Clone, Debug)]
pub struct KelpieHeartbeat {
    /// Number of nodes.
    pub nodes: usize,
    /// Time between detector ticks, in units (own clock).
    pub interval: u64,
    /// Silence after which a peer is suspected, in units (own clock).
    pub suspect_after: u64,
    /// Clock drift bound, in units (the width of the deviation band).
    pub max_drift: u64,
    /// Latest arrival of a crashed boot's ping after the crash, in units.
    pub max_delay: u64,
    /// Crash bound.
    pub max_crashes: u8,
    /// Bound on failed advances.
    pub max_disk_errors: u8,
    /// Pause bound.
    pub max_pauses: u8,
    /// Real time bound, in units.
    pub max_time: u64,
}

impl Default for KelpieHeartbeat {
    fn default() -> Self {
        Self {
            nodes: 2,
            interval: 1,
            suspect_after: 1,
            max_drift: 1,
            max_delay: 1,
            max_crashes: 1,
            max_disk_errors: 0,
            max_pauses: 1,
            max_time: 5,
        }
    }
}

fn node_id(n: usize) -> NodeId {
    NodeId::from_index(u32::try_from(n).expect("few nodes"))
}

/// `o`'s detector's view of `p`, if it has one.
pub fn view(state: &HbState, o: usize, p: usize) -> Option<PeerView> {
    state.nodes[o].detector.as_ref()?.peers().get(&node_id(p)).copied()
}

impl KelpieHeartbeat {
    /// The default bounds with one failed advance and no pause (a pause
    /// too would take the check past a minute).
    pub fn with_disk_errors() -> Self {
        Self {
            max_disk_errors: 1,
            max_pauses: 0,
            ..Self::default()
        }
    }

    /// The production configuration, in model units.
    pub fn config(&self) -> HeartbeatConfig {
        HeartbeatConfig {
            interval: common::units(self.interval),
            suspect_after: common::units(self.suspect_after),
            ..HeartbeatConfig::default()
        }
    }

    /// Real time within which a running detector suspects a silent peer.
    pub fn detect(&self) -> u64 {
        self.suspect_after + self.interval + self.max_drift
    }

    /// The latest a crashed boot's ping arrives after the crash.
    pub fn in_flight(&self) -> u64 {
        self.max_delay
    }

    fn band(&self) -> std::ops::RangeInclusive<i64> {
        let width = i64::try_from(self.max_drift).expect("small drift");
        -(width / 2)..=(width - width / 2)
    }

    fn origin(&self) -> u64 {
        self.max_drift + 1
    }

    /// Node `n`'s clock.
    pub fn local_now(&self, state: &HbState, n: usize) -> MonotonicInstant {
        let local = i64::try_from(self.origin() + state.time).expect("small time") + state.nodes[n].dev;
        common::instant(u64::try_from(local).expect("the origin keeps clocks positive"))
    }

    /// The detector exists and the node executes.
    pub fn running(state: &HbState, n: usize) -> bool {
        state.nodes[n].status == Status::Up && state.nodes[n].detector.is_some()
    }

    /// Started, advancing its incarnation (no detector yet).
    pub fn booting(state: &HbState, n: usize) -> bool {
        state.nodes[n].status == Status::Up && state.nodes[n].detector.is_none()
    }

    fn tick_due(&self, state: &HbState, n: usize) -> bool {
        Self::running(state, n) && self.local_now(state, n) >= state.nodes[n].next_tick
    }

    /// A paused node, or a booting one backing off: it reads its inbox later.
    fn waiting(state: &HbState, n: usize) -> bool {
        state.nodes[n].status == Status::Paused || (Self::booting(state, n) && state.nodes[n].retry)
    }

    /// Nothing ready is left waiting when time moves on.
    fn ready_work(&self, state: &HbState) -> bool {
        (0..state.nodes.len()).any(|n| self.tick_due(state, n) || (Self::booting(state, n) && !state.nodes[n].retry))
    }

    fn fresh_node(&self) -> HbNode {
        HbNode {
            status: Status::Up,
            disk: DiskImage::default(),
            detector: None,
            retry: false,
            dev: 0,
            next_tick: MonotonicInstant::default(),
            up_for: 0,
            down_for: 0,
            prev_max: 0,
            pmax: vec![0; self.nodes],
        }
    }

    fn tick_devs(&self, state: &HbState) -> Vec<Vec<i64>> {
        let mut devs = vec![Vec::new()];
        for node in &state.nodes {
            let choices: Vec<i64> = if node.detector.is_some() {
                self.band().filter(|d| (0..=2).contains(&(1 + d - node.dev))).collect()
            } else {
                vec![0]
            };
            let previous = std::mem::take(&mut devs);
            for prefix in previous {
                for d in &choices {
                    let mut next = prefix.clone();
                    next.push(*d);
                    devs.push(next);
                }
            }
        }
        devs
    }

    /// `o`'s detector receives `message` from `p` (`DetectorInput::Received`).
    fn receive(&self, state: &mut HbState, o: usize, p: usize, message: HeartbeatMessage) {
        let now = self.local_now(state, o);
        let before = view(state, o, p);
        let detector = state.nodes[o]
            .detector
            .as_mut()
            .expect("a message is received only by a running detector");
        // The ack it answers a ping with is not modelled: `Ping(o, p)`.
        detector.step(
            DetectorInput::Received {
                from: node_id(p),
                message,
            },
            now,
        );
        let after = view(state, o, p);
        if let (Some(before), Some(after)) = (before, after) {
            state.revived |= after.status == PeerStatus::Alive && after.incarnation > before.incarnation;
        }
    }

    /// Node `n`'s boot runs the production advance on its disk, with an
    /// error injected at mutating operation `fail_at` if given. Returns the
    /// advance's answer and the disk it leaves.
    fn advance(state: &HbState, n: usize, fail_at: Option<u8>) -> (Option<u64>, DiskImage) {
        let disk = MemDisk::from_image(&state.nodes[n].disk);
        disk.count_ops();
        if let Some(ops) = fail_at {
            disk.fail_after(usize::from(ops));
        }
        let answer = incarnation::advance(&disk);
        assert!(
            disk.ops_counted() <= usize::from(ADVANCE_OPS_MAX),
            "advance took {} mutating disk operations: raise ADVANCE_OPS_MAX",
            disk.ops_counted()
        );
        match (answer, fail_at) {
            (Ok(incarnation), _) => (Some(incarnation), disk.image()),
            (Err(error), None) => panic!("advance failed on a disk without injected errors: {error}"),
            (Err(_), Some(_)) => (None, disk.image()),
        }
    }
}

impl Model for KelpieHeartbeat {
    type State = HbState;
    type Action = HbAction;

    fn init_states(&self) -> Vec<HbState> {
        vec![HbState {
            time: 0,
            nodes: (0..self.nodes).map(|_| self.fresh_node()).collect(),
            msgs: BTreeSet::new(),
            crashes: 0,
            derrs: 0,
            pauses: 0,
            revived: false,
            stale_delivered: false,
        }]
    }

    fn actions(&self, state: &HbState, actions: &mut Vec<HbAction>) {
        if state.time < self.max_time && !self.ready_work(state) {
            actions.extend(self.tick_devs(state).into_iter().map(HbAction::Tick));
        }
        for m in &state.msgs {
            if Self::running(state, m.to) {
                actions.push(HbAction::Deliver(*m, false));
                actions.push(HbAction::Deliver(*m, true));
            }
            actions.push(HbAction::Drop(*m));
        }
        for p in 0..self.nodes {
            if state.nodes[p].status == Status::Down || state.nodes[p].detector.is_none() {
                continue;
            }
            for o in (0..self.nodes).filter(|o| *o != p && Self::running(state, *o)) {
                actions.push(HbAction::Ping(p, o));
            }
        }
        for (n, node) in state.nodes.iter().enumerate() {
            if Self::booting(state, n) && !node.retry {
                actions.extend(self.band().map(|dev| HbAction::Advance(n, dev)));
                if state.derrs < self.max_disk_errors {
                    actions.extend((0..ADVANCE_OPS_MAX).map(|at_op| HbAction::AdvanceFailed(n, at_op)));
                }
            }
            if self.tick_due(state, n) {
                actions.push(HbAction::DetectorTick(n));
            }
            match node.status {
                Status::Down => actions.push(HbAction::Restart(n)),
                Status::Paused => actions.push(HbAction::Resume(n)),
                Status::Up => {
                    if node.detector.is_some() && state.pauses < self.max_pauses {
                        actions.push(HbAction::Pause(n));
                    }
                }
            }
            // Symmetry: only node 0 crashes (see the module docs).
            if n == 0 && node.status != Status::Down && state.crashes < self.max_crashes {
                let unsynced = node.disk.unsynced();
                assert!(
                    unsynced <= UNSYNCED_OPS_MAX,
                    "{unsynced} unsynced disk operations: raise UNSYNCED_OPS_MAX"
                );
                actions.extend((0..1u64 << unsynced).map(|kept| HbAction::Crash(n, kept)));
            }
        }
    }

    fn next_state(&self, last: &HbState, action: HbAction) -> Option<HbState> {
        let mut state = last.clone();
        // The ghost flags describe the last step only.
        state.revived = false;
        state.stale_delivered = false;
        match action {
            HbAction::Advance(n, dev) => {
                let (incarnation, disk) = Self::advance(&state, n, None);
                let incarnation = incarnation.expect("an advance without injected errors answers");
                state.nodes[n].disk = disk;
                state.nodes[n].dev = dev;
                state.nodes[n].detector = Some(FailureDetector::new(
                    node_id(n),
                    incarnation,
                    self.config().suspect_after,
                ));
                // The driver ticks the detector at once.
                state.nodes[n].next_tick = self.local_now(&state, n);
                state.nodes[n].up_for = 0;
            }
            HbAction::AdvanceFailed(n, at_op) => {
                let (incarnation, disk) = Self::advance(&state, n, Some(at_op));
                if incarnation.is_some() {
                    // The advance took fewer operations: no failure point.
                    return None;
                }
                state.derrs += 1;
                state.nodes[n].disk = disk;
                state.nodes[n].retry = true;
            }
            HbAction::DetectorTick(n) => {
                let now = self.local_now(&state, n);
                let members = (0..self.nodes).map(node_id).collect();
                let detector = state.nodes[n].detector.as_mut().expect("a due tick has a detector");
                // Its pings are `Ping(n, _)`.
                detector.step(DetectorInput::Tick { members }, now);
                state.nodes[n].next_tick = now.saturating_add(self.config().interval);
            }
            HbAction::Ping(p, o) => {
                let incarnation = state.nodes[p]
                    .detector
                    .as_ref()
                    .expect("a ping comes from a live boot")
                    .incarnation();
                self.receive(&mut state, o, p, HeartbeatMessage::Ping { incarnation, seq: 0 });
            }
            HbAction::Deliver(m, keep) => {
                if !keep {
                    state.msgs.remove(&m);
                }
                state.stale_delivered = view(&state, m.to, m.from).is_some_and(|v| v.incarnation > m.incarnation);
                let message = HeartbeatMessage::Ping {
                    incarnation: m.incarnation,
                    seq: 0,
                };
                self.receive(&mut state, m.to, m.from, message);
            }
            HbAction::Drop(m) => {
                state.msgs.remove(&m);
            }
            HbAction::Tick(devs) => {
                let (detect, in_flight) = (self.detect(), self.in_flight());
                for (node, dev) in state.nodes.iter_mut().zip(devs) {
                    node.dev = dev;
                    // Running: up, its detector started.
                    if node.status == Status::Up && node.detector.is_some() {
                        node.up_for = (node.up_for + 1).min(detect);
                    }
                    node.down_for = if node.status == Status::Down {
                        (node.down_for + 1).min(detect + in_flight)
                    } else {
                        0
                    };
                }
                let msgs = std::mem::take(&mut state.msgs);
                state.msgs = msgs
                    .into_iter()
                    .filter(|m| m.age < in_flight || Self::waiting(&state, m.to))
                    .map(|m| InFlightPing {
                        age: (m.age + 1).min(in_flight),
                        ..m
                    })
                    .collect();
                for node in &mut state.nodes {
                    node.retry = false;
                }
                state.time += 1;
            }
            HbAction::Crash(n, kept) => {
                state.crashes += 1;
                let disk = MemDisk::from_image(&state.nodes[n].disk);
                disk.kill();
                disk.restart(kept);
                let incarnation = state.nodes[n].detector.as_ref().map(FailureDetector::incarnation);
                if let Some(incarnation) = incarnation {
                    // Its last pings may still be in flight, to every other
                    // node (`Drop` loses any of them).
                    for to in (0..self.nodes).filter(|to| *to != n) {
                        state.msgs.insert(InFlightPing {
                            from: n,
                            to,
                            incarnation,
                            age: 0,
                        });
                    }
                }
                let prev_max = state.nodes[n].prev_max.max(incarnation.unwrap_or(0));
                state.nodes[n] = HbNode {
                    status: Status::Down,
                    disk: disk.image(),
                    prev_max,
                    ..self.fresh_node()
                };
            }
            HbAction::Restart(n) => {
                state.nodes[n].status = Status::Up;
                state.nodes[n].down_for = 0;
            }
            HbAction::Pause(n) => {
                state.pauses += 1;
                state.nodes[n].status = Status::Paused;
                state.nodes[n].up_for = 0;
            }
            HbAction::Resume(n) => {
                state.nodes[n].status = Status::Up;
                state.nodes[n].up_for = 0;
            }
        }
        // Ghost: the highest incarnation each detector has held per peer.
        for o in 0..self.nodes {
            for p in 0..self.nodes {
                if let Some(v) = view(&state, o, p) {
                    state.nodes[o].pmax[p] = state.nodes[o].pmax[p].max(v.incarnation);
                }
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always("IncarnationMonotonic", |_: &Self, state: &HbState| {
                state
                    .nodes
                    .iter()
                    .all(|node| node.detector.as_ref().is_none_or(|d| d.incarnation() > node.prev_max))
            }),
            Property::always("PeerIncarnationMonotonic", |_: &Self, state: &HbState| {
                (0..state.nodes.len()).all(|o| {
                    (0..state.nodes.len())
                        .all(|p| view(state, o, p).map_or(0, |v| v.incarnation) >= state.nodes[o].pmax[p])
                })
            }),
            Property::always("CrashedNodeSuspected", |model: &Self, state: &HbState| {
                let (detect, in_flight) = (model.detect(), model.in_flight());
                (0..state.nodes.len()).all(|o| {
                    (0..state.nodes.len()).all(|p| {
                        let Some(v) = view(state, o, p) else {
                            return true;
                        };
                        let due = Self::running(state, o)
                            && state.nodes[o].up_for >= detect
                            && state.nodes[p].status == Status::Down
                            && state.nodes[p].down_for >= detect + in_flight;
                        !due || v.status == PeerStatus::Suspect
                    })
                })
            }),
            Property::sometimes("PeerSuspected", |_: &Self, state: &HbState| {
                (0..state.nodes.len()).any(|o| {
                    (0..state.nodes.len()).any(|p| view(state, o, p).is_some_and(|v| v.status == PeerStatus::Suspect))
                })
            }),
            Property::sometimes("RestartedPeerSeenAlive", |_: &Self, state: &HbState| state.revived),
            Property::sometimes("StalePingDelivered", |_: &Self, state: &HbState| state.stale_delivered),
        ];
        if self.max_disk_errors > 0 {
            properties.push(Property::sometimes(
                "IncarnationSkipped",
                |_: &Self, state: &HbState| {
                    state.nodes.iter().any(|node| {
                        node.detector
                            .as_ref()
                            .is_some_and(|d| d.incarnation() > node.prev_max + 1)
                    })
                },
            ));
        }
        properties
    }
}
