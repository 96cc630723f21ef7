//! The heartbeat service (kelpie-cluster) under every fault in the catalogue.
//!
//! Invariants, evaluated after every event from the nodes' real state:
//!
//! - `IncarnationMonotonic`: every boot of a node uses an incarnation greater
//!   than any an earlier boot of it used. Broken by the bug switch
//!   `bug-incarnation-no-fsync` (a machine crash loses the unsynced number,
//!   and the next boot reuses it).
//! - `PeerIncarnationMonotonic`: a node's view of a peer's incarnation never
//!   decreases while it runs.
//! - `CrashedNodeSuspected`: a node that has been down long enough is
//!   suspected by every peer that knew it and has been running long enough,
//!   where "long enough" accounts for the configured clock-drift bound and
//!   the longest message delay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie_cluster::heartbeat::{HeartbeatConfig, HeartbeatNode, PeerStatus};

use crate::faults::{FaultConfig, FaultKind};
use crate::simulation::{NodeLife, SimFailure, SimReport, Simulation, WorldView};

/// Invariant names of this scenario.
pub const INCARNATION_MONOTONIC: &str = "IncarnationMonotonic";
/// See the module docs.
pub const PEER_INCARNATION_MONOTONIC: &str = "PeerIncarnationMonotonic";
/// See the module docs.
pub const CRASHED_NODE_SUSPECTED: &str = "CrashedNodeSuspected";

/// What happened in a run besides the report: evidence the interesting
/// states were reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatCoverage {
    /// Suspicions raised, summed over every node's lifetime seen.
    pub suspicions: u64,
    /// Boots after a crash.
    pub restarts: u64,
    /// Registration compare-and-set attempts that lost a race.
    pub registration_conflicts: u64,
    /// (observer, crashed peer) pairs `CrashedNodeSuspected` actually checked.
    pub crashed_pairs_checked: u64,
}

/// A heartbeat simulation.
#[derive(Clone, Debug)]
pub struct HeartbeatScenario {
    /// Number of nodes (at least 3 for the determinism gate).
    pub nodes: usize,
    /// Faults to inject.
    pub faults: FaultConfig,
    /// Heartbeat timing.
    pub config: HeartbeatConfig,
    /// Virtual time to run for.
    pub max_virtual_time: Duration,
    /// Step bound.
    pub max_steps: u64,
    /// Keep the whole trace in the report.
    pub keep_trace: bool,
}

impl Default for HeartbeatScenario {
    fn default() -> Self {
        Self {
            nodes: 3,
            faults: {
                // Short outages and late messages make stale-incarnation
                // messages arrive after fresh ones: the interesting case.
                let mut faults = FaultConfig::all_moderate()
                    .with(FaultKind::NodeCrash, 0.03)
                    .with(FaultKind::MessageDelay, 0.1)
                    .with(FaultKind::MessageDuplicate, 0.1);
                faults.crash_downtime_max = Duration::from_secs(3);
                faults.message_delay_max = Duration::from_millis(400);
                faults
            },
            config: HeartbeatConfig::default(),
            max_virtual_time: Duration::from_secs(20),
            max_steps: 1_000_000,
            keep_trace: false,
        }
    }
}

/// How long after a node goes down every running peer must suspect it,
/// given the drift bound and the longest in-flight message.
pub fn suspicion_bound(config: &HeartbeatConfig, faults: &FaultConfig) -> (Duration, Duration) {
    let detect = config.suspect_after + config.interval;
    let slowest_rate = 1.0 - f64::from(faults.clock_skew_ppm_max) / 1_000_000.0;
    let detect_virtual =
        Duration::from_secs_f64(detect.as_secs_f64() / slowest_rate.max(0.01)) + Duration::from_millis(1);
    let in_flight = faults.network_latency + faults.message_delay_max * 2 + faults.message_reorder_max;
    (detect_virtual, in_flight)
}

impl HeartbeatScenario {
    /// Runs the scenario with `seed`.
    pub fn run(&self, seed: u64) -> Result<(SimReport, HeartbeatCoverage), Box<SimFailure>> {
        let config = self.config;
        let coverage = Arc::new(Mutex::new(HeartbeatCoverage::default()));
        let (detect, in_flight) = suspicion_bound(&config, &self.faults);

        let mut used: BTreeMap<usize, (u64, u64, u64)> = BTreeMap::new(); // node -> (boot, incarnation, max before this boot)
        let incarnation_monotonic = move |view: &WorldView<'_, HeartbeatNode>| {
            for node in view.nodes {
                let Some(incarnation) = node.state.as_ref().and_then(|state| state.snapshot().incarnation) else {
                    continue;
                };
                match used.get(&node.index).copied() {
                    Some((boot, recorded, _)) if boot == node.boot => {
                        if recorded != incarnation {
                            return Err(format!(
                                "{} changed incarnation within boot {boot}: {recorded} -> {incarnation}",
                                node.id
                            ));
                        }
                    }
                    previous => {
                        let max_before = previous.map_or(0, |(_, recorded, max_before)| recorded.max(max_before));
                        if incarnation <= max_before {
                            return Err(format!(
                                "{} boot {} uses incarnation {incarnation}, but an earlier boot already used {max_before}",
                                node.id, node.boot
                            ));
                        }
                        used.insert(node.index, (node.boot, incarnation, max_before));
                    }
                }
            }
            Ok(())
        };

        let mut views: BTreeMap<(usize, u64, String), u64> = BTreeMap::new();
        let peer_incarnation_monotonic = move |view: &WorldView<'_, HeartbeatNode>| {
            for node in view.nodes {
                let Some(state) = &node.state else { continue };
                for (peer, peer_view) in state.snapshot().peers {
                    let key = (node.index, node.boot, peer.to_string());
                    let previous = views.insert(key, peer_view.incarnation).unwrap_or(0);
                    if peer_view.incarnation < previous {
                        return Err(format!(
                            "{} saw {peer}'s incarnation go back from {previous} to {}",
                            node.id, peer_view.incarnation
                        ));
                    }
                }
            }
            Ok(())
        };

        let checked = coverage.clone();
        let crashed_node_suspected = move |view: &WorldView<'_, HeartbeatNode>| {
            for observer in view.nodes {
                let NodeLife::Running { since } = observer.life else {
                    continue;
                };
                if view.now.saturating_sub(since) < detect {
                    continue;
                }
                let Some(state) = &observer.state else {
                    continue;
                };
                let peers = state.snapshot().peers;
                for peer in view.nodes {
                    let NodeLife::Down { since: down_since } = peer.life else {
                        continue;
                    };
                    if view.now.saturating_sub(down_since) < detect + in_flight {
                        continue;
                    }
                    if let Some(peer_view) = peers.get(&peer.id) {
                        checked
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .crashed_pairs_checked += 1;
                        if peer_view.status != PeerStatus::Suspect {
                            return Err(format!(
                                "{} still considers {} alive {:?} after it went down (bound {:?})",
                                observer.id,
                                peer.id,
                                view.now.saturating_sub(down_since),
                                detect + in_flight
                            ));
                        }
                    }
                }
            }
            Ok(())
        };

        let observed = coverage.clone();
        let mut last_boot: BTreeMap<usize, u64> = BTreeMap::new();
        let mut last_counts: BTreeMap<(usize, u64), (u64, u64)> = BTreeMap::new();
        let observe = move |view: &WorldView<'_, HeartbeatNode>| {
            let mut coverage = observed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for node in view.nodes {
                let previous_boot = last_boot.insert(node.index, node.boot).unwrap_or(node.boot);
                if node.boot > previous_boot {
                    coverage.restarts += 1;
                }
                if let Some(state) = &node.state {
                    let snapshot = state.snapshot();
                    let entry = last_counts.entry((node.index, node.boot)).or_insert((0, 0));
                    coverage.suspicions += snapshot.suspicions.saturating_sub(entry.0);
                    coverage.registration_conflicts += snapshot.registration_conflicts.saturating_sub(entry.1);
                    *entry = (snapshot.suspicions, snapshot.registration_conflicts);
                }
            }
            Ok(())
        };

        let report = Simulation::new(seed)
            .nodes(self.nodes, move |env| HeartbeatNode::start(env, config))
            .faults(self.faults.clone())
            .max_virtual_time(self.max_virtual_time)
            .max_steps(self.max_steps)
            .keep_trace(self.keep_trace)
            .invariant(INCARNATION_MONOTONIC, incarnation_monotonic)
            .invariant(PEER_INCARNATION_MONOTONIC, peer_incarnation_monotonic)
            .invariant(CRASHED_NODE_SUSPECTED, crashed_node_suspected)
            .observer(observe)
            .run()?;
        let coverage = coverage.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        Ok((report, coverage))
    }
}
