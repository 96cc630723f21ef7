//! The heartbeat service: membership registration and failure detection.
//!
//! [`FailureDetector`] is the protocol, as a sans-IO state machine: it is fed
//! ticks and received messages with the node's monotonic time and returns
//! messages to send and status changes. [`HeartbeatNode::start`] is the thin
//! driver that does the I/O through a [`NodeEnv`]: it advances the durable
//! incarnation, registers `members/<node>` under a session lease with a
//! compare-and-set, and then pings every registered member each interval.
//!
//! A peer is suspected once nothing was heard from it for `suspect_after` on
//! the observer's own monotonic clock. Messages from an older incarnation of
//! a peer than one already heard are ignored, so a node's view of each peer's
//! incarnation never goes backwards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kelpie_core::clock::MonotonicInstant;
use kelpie_core::coordination::{Compare, CoordinationError, LeaseId, Txn, TxnOp};
use kelpie_core::{NodeEnv, NodeId};
use serde::{Deserialize, Serialize};

use crate::incarnation;

/// The coordination-store prefix under which members register.
pub const MEMBERS_PREFIX: &str = "members/";

/// Timing of the heartbeat service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Time between pings (and membership refreshes).
    pub interval: Duration,
    /// Silence after which a peer is suspected.
    pub suspect_after: Duration,
    /// TTL of the node's session lease in the coordination store.
    pub session_ttl: Duration,
    /// Pause between retries of a failed start-up step.
    pub retry_backoff: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            suspect_after: Duration::from_millis(500),
            session_ttl: Duration::from_millis(1_000),
            retry_backoff: Duration::from_millis(50),
        }
    }
}

/// A heartbeat message between nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatMessage {
    /// "I am alive"; the receiver answers with an `Ack` of the same `seq`.
    Ping {
        /// The sender's incarnation.
        incarnation: u64,
        /// The sender's ping counter.
        seq: u64,
    },
    /// The answer to a ping.
    Ack {
        /// The sender's incarnation.
        incarnation: u64,
        /// The `seq` of the ping answered.
        seq: u64,
    },
}

impl HeartbeatMessage {
    /// The sender's incarnation.
    pub fn incarnation(&self) -> u64 {
        match self {
            HeartbeatMessage::Ping { incarnation, .. } | HeartbeatMessage::Ack { incarnation, .. } => *incarnation,
        }
    }
}

/// A peer's status as one node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerStatus {
    /// Heard from within `suspect_after`.
    Alive,
    /// Silent for at least `suspect_after`.
    Suspect,
}

/// What one node knows about a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerView {
    /// The highest incarnation heard from the peer.
    pub incarnation: u64,
    /// When the peer was last heard from, on this node's monotonic clock.
    pub last_heard: MonotonicInstant,
    /// Alive or suspected.
    pub status: PeerStatus,
}

/// An input to the failure detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectorInput {
    /// The interval passed; `members` are the currently registered nodes.
    Tick {
        /// Nodes to ping (this node is skipped if present).
        members: Vec<NodeId>,
    },
    /// A message arrived.
    Received {
        /// The sender.
        from: NodeId,
        /// The message.
        message: HeartbeatMessage,
    },
}

/// An action or event from the failure detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectorOutput {
    /// Send `message` to `to`.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        message: HeartbeatMessage,
    },
    /// `peer` became suspected.
    Suspected {
        /// The peer.
        peer: NodeId,
    },
    /// `peer` is alive (first heard, heard again after suspicion, or restarted).
    Alive {
        /// The peer.
        peer: NodeId,
        /// Its incarnation.
        incarnation: u64,
    },
}

/// The failure-detection protocol, sans I/O.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FailureDetector {
    local: NodeId,
    incarnation: u64,
    suspect_after: Duration,
    next_seq: u64,
    peers: BTreeMap<NodeId, PeerView>,
}

impl FailureDetector {
    /// A detector for `local` at `incarnation`.
    pub fn new(local: NodeId, incarnation: u64, suspect_after: Duration) -> Self {
        assert!(incarnation > 0, "incarnations start at 1");
        Self {
            local,
            incarnation,
            suspect_after,
            next_seq: 0,
            peers: BTreeMap::new(),
        }
    }

    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Every peer heard from, in id order.
    pub fn peers(&self) -> &BTreeMap<NodeId, PeerView> {
        &self.peers
    }

    /// Feeds one input at `now` (this node's monotonic time).
    pub fn step(&mut self, input: DetectorInput, now: MonotonicInstant) -> Vec<DetectorOutput> {
        let mut outputs = Vec::new();
        match input {
            DetectorInput::Tick { members } => {
                for member in members.into_iter().filter(|member| *member != self.local) {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    outputs.push(DetectorOutput::Send {
                        to: member,
                        message: HeartbeatMessage::Ping {
                            incarnation: self.incarnation,
                            seq,
                        },
                    });
                }
                for (peer, view) in &mut self.peers {
                    let silent = now.saturating_duration_since(view.last_heard);
                    let suspect = silent >= self.suspect_after && !cfg!(feature = "bug-heartbeat-never-suspect");
                    if view.status == PeerStatus::Alive && suspect {
                        view.status = PeerStatus::Suspect;
                        outputs.push(DetectorOutput::Suspected { peer: peer.clone() });
                    }
                }
            }
            DetectorInput::Received { from, message } => {
                if from == self.local {
                    return outputs;
                }
                let incarnation = message.incarnation();
                let heard = match self.peers.get_mut(&from) {
                    Some(view)
                        if incarnation < view.incarnation
                            && !cfg!(feature = "bug-heartbeat-accept-stale-incarnation") =>
                    {
                        false
                    }
                    Some(view) => {
                        let changed = view.status == PeerStatus::Suspect || incarnation > view.incarnation;
                        view.incarnation = incarnation;
                        view.last_heard = view.last_heard.max(now);
                        view.status = PeerStatus::Alive;
                        if changed {
                            outputs.push(DetectorOutput::Alive {
                                peer: from.clone(),
                                incarnation,
                            });
                        }
                        true
                    }
                    None => {
                        self.peers.insert(
                            from.clone(),
                            PeerView {
                                incarnation,
                                last_heard: now,
                                status: PeerStatus::Alive,
                            },
                        );
                        outputs.push(DetectorOutput::Alive {
                            peer: from.clone(),
                            incarnation,
                        });
                        true
                    }
                };
                if let (true, HeartbeatMessage::Ping { seq, .. }) = (heard, message) {
                    outputs.push(DetectorOutput::Send {
                        to: from,
                        message: HeartbeatMessage::Ack {
                            incarnation: self.incarnation,
                            seq,
                        },
                    });
                }
            }
        }
        outputs
    }
}

/// What a heartbeat node exposes for inspection (tests, the simulator's
/// invariants, metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatSnapshot {
    /// The incarnation in use: `None` until it is durable.
    pub incarnation: Option<u64>,
    /// Whether `members/<node>` is registered under the current session.
    pub registered: bool,
    /// Peers heard from, with their status.
    pub peers: BTreeMap<NodeId, PeerView>,
    /// Registration attempts that lost a compare-and-set race.
    pub registration_conflicts: u64,
    /// Peers ever suspected.
    pub suspicions: u64,
}

#[derive(Debug, Default)]
struct NodeState {
    detector: Option<FailureDetector>,
    members: Vec<NodeId>,
    registered: bool,
    registration_conflicts: u64,
    suspicions: u64,
}

/// A running heartbeat service on one node.
#[derive(Debug)]
pub struct HeartbeatNode {
    id: NodeId,
    state: Mutex<NodeState>,
}

impl HeartbeatNode {
    /// Starts the service on `env`: spawns the main loop and the receiver.
    /// Returns at once; the incarnation appears in the snapshot once durable.
    pub fn start(env: NodeEnv, config: HeartbeatConfig) -> Arc<HeartbeatNode> {
        let node = Arc::new(HeartbeatNode {
            id: env.node_id.clone(),
            state: Mutex::new(NodeState::default()),
        });
        let main = node.clone();
        let spawner = env.spawner.clone();
        // Detached: the task ends with the node (crash or shutdown).
        let _main_task = spawner.spawn("heartbeat-main", Box::pin(async move { main.run(env, config).await }));
        node
    }

    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state.
    pub fn snapshot(&self) -> HeartbeatSnapshot {
        let state = self.lock();
        HeartbeatSnapshot {
            incarnation: state.detector.as_ref().map(FailureDetector::incarnation),
            registered: state.registered,
            peers: state.detector.as_ref().map(|d| d.peers().clone()).unwrap_or_default(),
            registration_conflicts: state.registration_conflicts,
            suspicions: state.suspicions,
        }
    }

    fn apply(&self, env: &NodeEnv, input: DetectorInput) {
        let now = env.clock.now_monotonic();
        let outputs = {
            let mut state = self.lock();
            let Some(detector) = state.detector.as_mut() else {
                return;
            };
            let outputs = detector.step(input, now);
            state.suspicions += outputs
                .iter()
                .filter(|output| matches!(output, DetectorOutput::Suspected { .. }))
                .count() as u64;
            outputs
        };
        for output in outputs {
            match output {
                DetectorOutput::Send { to, message } => match serde_json::to_vec(&message) {
                    // Loss is normal for heartbeats; the next interval retries.
                    Ok(bytes) => {
                        let _ = env.transport.send(&to, Bytes::from(bytes));
                    }
                    Err(error) => tracing::error!(%error, "cannot encode heartbeat"),
                },
                DetectorOutput::Suspected { peer } => {
                    tracing::info!(node = %self.id, %peer, "peer suspected")
                }
                DetectorOutput::Alive { peer, incarnation } => {
                    tracing::debug!(node = %self.id, %peer, incarnation, "peer alive")
                }
            }
        }
    }

    async fn run(self: Arc<Self>, env: NodeEnv, config: HeartbeatConfig) {
        let incarnation = loop {
            match incarnation::advance(env.disk.as_ref()) {
                Ok(incarnation) => break incarnation,
                Err(error) => {
                    tracing::warn!(node = %self.id, %error, "cannot advance incarnation; retrying");
                    env.clock.sleep(config.retry_backoff).await;
                }
            }
        };
        self.lock().detector = Some(FailureDetector::new(
            env.node_id.clone(),
            incarnation,
            config.suspect_after,
        ));
        let receiver = self.clone();
        let receiver_env = env.clone();
        let _receiver_task = env.spawner.spawn(
            "heartbeat-recv",
            Box::pin(async move { receiver.receive_loop(receiver_env).await }),
        );
        let registrar = self.clone();
        let registrar_env = env.clone();
        let _registration_task = env.spawner.spawn(
            "heartbeat-membership",
            Box::pin(async move { registrar.membership_loop(registrar_env, config, incarnation).await }),
        );
        // Ticks never wait on the coordination store, so a slow or
        // unreachable store cannot delay failure detection.
        loop {
            let members = self.lock().members.clone();
            self.apply(&env, DetectorInput::Tick { members });
            env.clock.sleep(config.interval).await;
        }
    }

    async fn membership_loop(self: Arc<Self>, env: NodeEnv, config: HeartbeatConfig, incarnation: u64) {
        let mut lease: Option<LeaseId> = None;
        loop {
            if let Err(error) = self.refresh_registration(&env, config, incarnation, &mut lease).await {
                tracing::debug!(node = %self.id, %error, "registration not refreshed");
            }
            if let Ok(members) = env.coordination.range(MEMBERS_PREFIX).await {
                self.lock().members = members
                    .iter()
                    .filter_map(|kv| kv.key.strip_prefix(MEMBERS_PREFIX)?.parse::<NodeId>().ok())
                    .collect();
            }
            env.clock.sleep(config.interval).await;
        }
    }

    async fn receive_loop(self: Arc<Self>, env: NodeEnv) {
        while let Ok(envelope) = env.transport.recv().await {
            match serde_json::from_slice::<HeartbeatMessage>(&envelope.payload) {
                Ok(message) => self.apply(
                    &env,
                    DetectorInput::Received {
                        from: envelope.from,
                        message,
                    },
                ),
                Err(error) => {
                    tracing::warn!(node = %self.id, from = %envelope.from, %error, "malformed heartbeat")
                }
            }
        }
    }

    /// Keeps `members/<node>` = incarnation under a live session lease.
    /// Registration is a compare-and-set on the key's revision, so a racing
    /// writer makes it retry rather than be overwritten blindly.
    async fn refresh_registration(
        &self,
        env: &NodeEnv,
        config: HeartbeatConfig,
        incarnation: u64,
        lease: &mut Option<LeaseId>,
    ) -> Result<(), CoordinationError> {
        if let Some(id) = *lease {
            match env.coordination.lease_keep_alive(id).await {
                Ok(_) => {
                    if self.lock().registered {
                        return Ok(());
                    }
                }
                Err(CoordinationError::LeaseNotFound { .. }) => {
                    *lease = None;
                    self.lock().registered = false;
                }
                Err(error) => return Err(error),
            }
        }
        let id = match *lease {
            Some(id) => id,
            None => {
                let grant = env.coordination.lease_grant(config.session_ttl).await?;
                *lease = Some(grant.id);
                grant.id
            }
        };
        let key = format!("{MEMBERS_PREFIX}{}", env.node_id);
        let value = Bytes::from(incarnation.to_string());
        let current = env.coordination.get(&key).await?;
        if let Some(kv) = &current {
            if kv.value == value && kv.lease == Some(id) {
                // An earlier attempt was applied but its answer was lost.
                self.lock().registered = true;
                return Ok(());
            }
        }
        let guard = match &current {
            Some(kv) => Compare::mod_revision_is(key.clone(), kv.mod_revision),
            None => Compare::missing(key.clone()),
        };
        let response = env
            .coordination
            .txn(Txn {
                compares: vec![guard],
                success: vec![TxnOp::Put {
                    key,
                    value,
                    lease: Some(id),
                }],
                failure: vec![],
            })
            .await?;
        let mut state = self.lock();
        if response.succeeded {
            state.registered = true;
        } else {
            state.registration_conflicts += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u32) -> NodeId {
        NodeId::from_index(i)
    }

    fn ms(ms: u64) -> MonotonicInstant {
        MonotonicInstant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn tick_pings_every_other_member() {
        let mut detector = FailureDetector::new(node(0), 3, Duration::from_millis(500));
        let outputs = detector.step(
            DetectorInput::Tick {
                members: vec![node(0), node(1), node(2)],
            },
            ms(0),
        );
        assert_eq!(
            outputs,
            vec![
                DetectorOutput::Send {
                    to: node(1),
                    message: HeartbeatMessage::Ping { incarnation: 3, seq: 0 }
                },
                DetectorOutput::Send {
                    to: node(2),
                    message: HeartbeatMessage::Ping { incarnation: 3, seq: 1 }
                },
            ]
        );
    }

    #[test]
    fn silence_leads_to_suspicion_and_a_new_message_revives() {
        let mut detector = FailureDetector::new(node(0), 1, Duration::from_millis(500));
        let ping = HeartbeatMessage::Ping { incarnation: 2, seq: 9 };
        let outputs = detector.step(
            DetectorInput::Received {
                from: node(1),
                message: ping,
            },
            ms(100),
        );
        assert_eq!(
            outputs,
            vec![
                DetectorOutput::Alive {
                    peer: node(1),
                    incarnation: 2
                },
                DetectorOutput::Send {
                    to: node(1),
                    message: HeartbeatMessage::Ack { incarnation: 1, seq: 9 }
                },
            ]
        );
        assert_eq!(detector.step(DetectorInput::Tick { members: vec![] }, ms(599)), vec![]);
        assert_eq!(
            detector.step(DetectorInput::Tick { members: vec![] }, ms(600)),
            vec![DetectorOutput::Suspected { peer: node(1) }]
        );
        let ack = HeartbeatMessage::Ack { incarnation: 2, seq: 0 };
        assert_eq!(
            detector.step(
                DetectorInput::Received {
                    from: node(1),
                    message: ack
                },
                ms(700)
            ),
            vec![DetectorOutput::Alive {
                peer: node(1),
                incarnation: 2
            }]
        );
    }

    #[test]
    fn messages_from_an_older_incarnation_are_ignored() {
        let mut detector = FailureDetector::new(node(0), 1, Duration::from_millis(500));
        let fresh = HeartbeatMessage::Ack { incarnation: 5, seq: 0 };
        detector.step(
            DetectorInput::Received {
                from: node(1),
                message: fresh,
            },
            ms(10),
        );
        let stale = HeartbeatMessage::Ping { incarnation: 4, seq: 3 };
        assert_eq!(
            detector.step(
                DetectorInput::Received {
                    from: node(1),
                    message: stale
                },
                ms(20)
            ),
            vec![]
        );
        let view = detector.peers()[&node(1)];
        assert_eq!((view.incarnation, view.last_heard), (5, ms(10)));
    }
}
