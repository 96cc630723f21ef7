//! Single activation: the ownership protocol (kelpie-runtime's sans-IO core
//! and its driver) on several nodes sharing one store, under pauses longer
//! than the lease, clock skew and jumps, crashes, partitions, coordination
//! timeouts and lost answers.
//!
//! Each node serves register actors: a request claims the actor if needed
//! (one compare-and-set), installs the fencing token in the shared store,
//! does some work (where a pause turns the node into a zombie), and commits
//! fenced by its token. Clients send sets (unique values) and gets to random
//! nodes, retrying elsewhere when told who the owner is.
//!
//! Invariants after every event:
//! - `SingleActivation`: at most one node believes (on its own clock) that
//!   it may serve an actor.
//! - `LeaseUniqueness`: at most one node holds an actor under a session lease
//!   that is alive in the store.
//! - `FencingTokenMonotonic`: an actor's fencing token in the store never
//!   decreases.
//! - `NoZombieWrite`: every applied commit (audited in commit order through
//!   the store's commit observer) carries a token no older than the fence
//!   installed before it.
//! - `Linearizable`: every acknowledged get returns the value of the last
//!   set committed before it (or of a set whose outcome is unknown).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use kelpie_core::{ActorId, NodeEnv, NodeId};
use kelpie_runtime::driver::{install_fence, ClaimError, OwnershipDriver};
use kelpie_runtime::ownership::{FencingToken, OwnershipConfig};
use kelpie_storage::{MemoryEngine, StorageError, Store};

use crate::faults::{FaultConfig, FaultKind};
use crate::simulation::{HarnessEnv, SimFailure, SimReport, Simulation, WorldView};

/// Invariant names.
pub const SINGLE_ACTIVATION: &str = "SingleActivation";
/// See the module docs.
pub const LEASE_UNIQUENESS: &str = "LeaseUniqueness";
/// See the module docs.
pub const FENCING_TOKEN_MONOTONIC: &str = "FencingTokenMonotonic";
/// See the module docs.
pub const NO_ZOMBIE_WRITE: &str = "NoZombieWrite";
/// See the module docs.
pub const LINEARIZABLE: &str = "Linearizable";

const ACTORS: usize = 3;

fn actor(index: usize) -> ActorId {
    ActorId::new("register", format!("r{index}")).expect("generated id is valid")
}

/// A client request to a node.
#[derive(Debug)]
enum Op {
    Set(String),
    Get,
}

#[derive(Debug)]
enum Answer {
    Done,
    NotOwner(NodeId),
    Failed,
}

struct Request {
    actor: ActorId,
    op: Op,
    reply: oneshot::Sender<Answer>,
}

/// One applied commit, as its node saw it acknowledged.
#[derive(Clone, Debug)]
struct Applied {
    version: u64,
    op: AppliedOp,
}

#[derive(Clone, Debug)]
enum AppliedOp {
    Set(String),
    Get(Option<String>),
}

#[derive(Default)]
struct Ghost {
    store: Option<Store>,
    nodes: BTreeMap<usize, mpsc::UnboundedSender<Request>>,
    applied: BTreeMap<ActorId, Vec<Applied>>,
    /// Values of sets sent whose outcome is unknown or known.
    sets_sent: BTreeMap<ActorId, Vec<String>>,
    successes_after_quiet: BTreeMap<ActorId, u64>,
    audit: FenceAudit,
}

type SharedGhost = Arc<Mutex<Ghost>>;

fn lock(ghost: &SharedGhost) -> MutexGuard<'_, Ghost> {
    ghost.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A node serving registers.
pub struct OwnershipNode {
    driver: Arc<OwnershipDriver>,
}

impl OwnershipNode {
    fn start(env: NodeEnv, config: OwnershipConfig, ghost: SharedGhost) -> Arc<OwnershipNode> {
        let driver = OwnershipDriver::start(env.clone(), config);
        let (sender, mut receiver) = mpsc::unbounded::<Request>();
        let index = env
            .node_id
            .as_str()
            .trim_start_matches("node-")
            .parse::<usize>()
            .unwrap_or(0);
        lock(&ghost).nodes.insert(index, sender);
        let node = Arc::new(OwnershipNode { driver: driver.clone() });
        let installed: Arc<Mutex<BTreeMap<ActorId, FencingToken>>> = Arc::default();
        let spawner = env.spawner.clone();
        let _server = spawner.spawn(
            "register-server",
            Box::pin(async move {
                while let Some(request) = receiver.next().await {
                    let driver = driver.clone();
                    let env2 = env.clone();
                    let ghost = ghost.clone();
                    let installed = installed.clone();
                    let _handler = env.spawner.spawn(
                        "register-request",
                        Box::pin(async move {
                            let answer = serve(&env2, &driver, &ghost, &installed, &request.actor, request.op).await;
                            let _ = request.reply.send(answer);
                        }),
                    );
                }
            }),
        );
        node
    }
}

async fn serve(
    env: &NodeEnv,
    driver: &Arc<OwnershipDriver>,
    ghost: &SharedGhost,
    installed: &Mutex<BTreeMap<ActorId, FencingToken>>,
    actor: &ActorId,
    op: Op,
) -> Answer {
    let Some(store) = lock(ghost).store.clone() else {
        return Answer::Failed;
    };
    let token = match driver.serving_token(actor) {
        Some(token) => token,
        None => match driver.claim(actor).await {
            Ok(token) => token,
            Err(ClaimError::OwnedElsewhere { owner }) => return Answer::NotOwner(owner),
            Err(_) => return Answer::Failed,
        },
    };
    let fenced_at = installed.lock().unwrap_or_else(|p| p.into_inner()).get(actor).copied();
    if fenced_at != Some(token) {
        if install_fence(&store, actor, token).await.is_err() {
            return Answer::Failed;
        }
        installed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(actor.clone(), token);
    }
    // The handler's work: a pause here makes this node a zombie.
    env.clock.sleep(Duration::from_millis(env.rng.in_range(0, 20))).await;
    let Ok(mut txn) = store.begin() else {
        return Answer::Failed;
    };
    let value = match &op {
        Op::Set(value) => {
            if txn.put(actor, b"value", Bytes::from(value.clone())).is_err() {
                return Answer::Failed;
            }
            None
        }
        Op::Get => match txn.get(actor, b"value") {
            Ok(value) => value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            Err(_) => return Answer::Failed,
        },
    };
    if !cfg!(feature = "bug-ownership-unfenced-commit") {
        txn.require_fence(actor, token.to_bytes());
    }
    // Every commit goes through the committer (fenced), so it has a version.
    let _ = txn.put(actor, b"last-token", token.to_bytes());
    match txn.commit().await {
        Ok(info) => {
            let applied = Applied {
                version: info.version,
                op: match op {
                    Op::Set(value) => AppliedOp::Set(value),
                    Op::Get => AppliedOp::Get(value.clone()),
                },
            };
            lock(ghost).applied.entry(actor.clone()).or_default().push(applied);
            Answer::Done
        }
        Err(StorageError::FencingRejected { .. }) => {
            installed.lock().unwrap_or_else(|p| p.into_inner()).remove(actor);
            Answer::Failed
        }
        Err(_) => Answer::Failed,
    }
}

async fn client(env: HarnessEnv, ghost: SharedGhost, client: usize, nodes: usize, quiet_after: Duration) {
    let mut sequence = 0u64;
    loop {
        sequence += 1;
        let index = env.rng.below(ACTORS as u64) as usize;
        let target = actor(index);
        let op = if env.rng.chance(1, 2) {
            let value = format!("c{client}-{sequence}");
            lock(&ghost)
                .sets_sent
                .entry(target.clone())
                .or_default()
                .push(value.clone());
            Op::Set(value)
        } else {
            Op::Get
        };
        let mut node = env.rng.below(nodes as u64) as usize;
        let mut op = Some(op);
        for _attempt in 0..3 {
            let Some(this_op) = op.take() else { break };
            let sender = lock(&ghost).nodes.get(&node).cloned();
            let Some(sender) = sender else { break };
            let (reply, answer) = oneshot::channel();
            let is_set = matches!(this_op, Op::Set(_));
            let value = match &this_op {
                Op::Set(value) => Some(value.clone()),
                Op::Get => None,
            };
            if sender
                .unbounded_send(Request {
                    actor: target.clone(),
                    op: this_op,
                    reply,
                })
                .is_err()
            {
                break;
            }
            let answer = kelpie_core::clock::timeout(env.clock.as_ref(), Duration::from_secs(2), answer).await;
            match answer {
                Ok(Ok(Answer::Done)) => {
                    if env.clock.now_monotonic().as_nanos() >= quiet_after.as_nanos() as u64 {
                        *lock(&ghost).successes_after_quiet.entry(target.clone()).or_insert(0) += 1;
                    }
                    break;
                }
                Ok(Ok(Answer::NotOwner(owner))) => {
                    node = owner.as_str().trim_start_matches("node-").parse().unwrap_or(0);
                    op = Some(match value {
                        Some(value) => Op::Set(value),
                        None => Op::Get,
                    });
                    let _ = is_set;
                }
                _ => break,
            }
        }
        env.clock.sleep(Duration::from_millis(env.rng.in_range(1, 30))).await;
    }
}

/// Audits applied commits, in commit order, for `NoZombieWrite`: fencing
/// tokens installed per actor, and the first commit that carried an actor's
/// token (under `token_key`) older than the fence installed before it.
#[derive(Debug, Default)]
pub struct FenceAudit {
    fences: BTreeMap<ActorId, u64>,
    violation: Option<String>,
    /// Per actor: the token of the last applied commit and how many
    /// commits carrying a token were applied.
    applied: BTreeMap<ActorId, (u64, u64)>,
}

impl FenceAudit {
    /// Feeds one applied commit's writes (raw key to value), as the engine
    /// or the store shows them.
    pub fn commit<K: AsRef<[u8]>>(&mut self, writes: &BTreeMap<K, Option<Bytes>>, token_key: &[u8]) {
        use kelpie_storage::key::{split_raw_key, Space};
        for (raw, value) in writes {
            let Some((space, actor, key)) = split_raw_key(raw.as_ref()) else {
                continue;
            };
            let token = value
                .as_ref()
                .and_then(|value| <[u8; 8]>::try_from(value.as_ref()).ok())
                .map(u64::from_be_bytes);
            match (space, token) {
                (Space::Fence, Some(token)) => {
                    self.fences.insert(actor, token);
                }
                (Space::State, Some(token)) if key == token_key => {
                    let applied = self.applied.entry(actor.clone()).or_insert((0, 0));
                    *applied = (token, applied.1 + 1);
                    let fence = self.fences.get(&actor).copied().unwrap_or(0);
                    if token < fence && self.violation.is_none() {
                        self.violation = Some(format!(
                            "{actor}: a commit with token {token} was applied after fence {fence} was installed"
                        ));
                    }
                }
                _ => {}
            }
        }
    }

    /// The first zombie write seen, if any.
    pub fn violation(&self) -> Option<&String> {
        self.violation.as_ref()
    }

    /// The token of `actor`'s last applied commit and the number of its
    /// applied commits, if any was applied.
    pub fn last_commit(&self, actor: &ActorId) -> Option<(u64, u64)> {
        self.applied.get(actor).copied()
    }
}

/// A simulated node that runs an ownership driver.
pub trait HasOwnership: Send + Sync + 'static {
    /// The node's driver.
    fn driver(&self) -> &Arc<OwnershipDriver>;
}

impl HasOwnership for OwnershipNode {
    fn driver(&self) -> &Arc<OwnershipDriver> {
        &self.driver
    }
}

/// `SingleActivation`: at most one node believes, on its own clock, that it
/// may serve each actor.
pub fn check_single_activation<N: HasOwnership>(view: &WorldView<'_, N>) -> Result<(), String> {
    let mut believers: BTreeMap<ActorId, Vec<(NodeId, FencingToken)>> = BTreeMap::new();
    for node in view.nodes {
        let Some(state) = &node.state else { continue };
        for (actor, token) in state.driver().serving() {
            believers.entry(actor).or_default().push((node.id.clone(), token));
        }
    }
    match believers.into_iter().find(|(_, nodes)| nodes.len() > 1) {
        Some((actor, nodes)) => Err(format!("{actor} is served by {nodes:?} at once")),
        None => Ok(()),
    }
}

/// `LeaseUniqueness`: at most one node holds each actor under a session
/// lease that is alive in the coordination store.
pub fn check_lease_uniqueness<N: HasOwnership>(view: &WorldView<'_, N>) -> Result<(), String> {
    let mut holders: BTreeMap<ActorId, Vec<NodeId>> = BTreeMap::new();
    for node in view.nodes {
        let Some(state) = &node.state else { continue };
        for (actor, _, lease) in state.driver().owned_with_lease() {
            if view.coordination.lease_alive(lease) {
                holders.entry(actor).or_default().push(node.id.clone());
            }
        }
    }
    match holders.into_iter().find(|(_, nodes)| nodes.len() > 1) {
        Some((actor, nodes)) => Err(format!("{actor} is held under live leases by {nodes:?}")),
        None => Ok(()),
    }
}

/// An actor's fencing token in `store`.
pub fn stored_fence(store: &Store, actor: &ActorId) -> Option<u64> {
    let mut txn = store.begin().ok()?;
    let bytes = txn.fence_token(actor).ok()??;
    let array: [u8; 8] = bytes.as_ref().try_into().ok()?;
    Some(u64::from_be_bytes(array))
}

fn check_linearizable(ghost: &Ghost) -> Result<(), String> {
    for (actor, applied) in &ghost.applied {
        let mut sorted = applied.clone();
        sorted.sort_by_key(|applied| applied.version);
        let acked_sets: BTreeMap<&str, u64> = sorted
            .iter()
            .filter_map(|a| match &a.op {
                AppliedOp::Set(value) => Some((value.as_str(), a.version)),
                AppliedOp::Get(_) => None,
            })
            .collect();
        let mut last_acked_set: Option<(&str, u64)> = None;
        for entry in &sorted {
            match &entry.op {
                AppliedOp::Set(value) => last_acked_set = Some((value.as_str(), entry.version)),
                AppliedOp::Get(seen) => {
                    let ok = match (seen.as_deref(), last_acked_set) {
                        (None, None) => true,
                        (None, Some(_)) => false,
                        (Some(value), last) => match acked_sets.get(value) {
                            // Acknowledged: it must be the latest acknowledged set before the get.
                            Some(version) => last.is_some_and(|(_, last_version)| *version == last_version),
                            // Outcome unknown to the client: it must at least have been sent,
                            // and be newer than the last acknowledged set (checked weakly).
                            None => ghost
                                .sets_sent
                                .get(actor)
                                .is_some_and(|sent| sent.iter().any(|s| s == value)),
                        },
                    };
                    if !ok {
                        return Err(format!(
                            "{actor}: get at v{} returned {seen:?}, but the last acknowledged set before it was {last_acked_set:?}",
                            entry.version
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// An ownership simulation.
#[derive(Clone, Debug)]
pub struct OwnershipScenario {
    /// Nodes (at least 3).
    pub nodes: usize,
    /// Clients.
    pub clients: usize,
    /// Faults (random ones stop at `faults.quiet_after`).
    pub faults: FaultConfig,
    /// Lease timing.
    pub config: OwnershipConfig,
    /// Virtual time to run.
    pub max_virtual_time: Duration,
}

/// The faults of the single-activation scenarios: pauses past the lease,
/// clocks drifting up to 9% either way (just inside the 100 ms per 1 s TTL
/// drift bound of [`lease_timing`], so the margin is what keeps it safe),
/// crashes and partitions; random faults stop at 7 s.
pub fn single_activation_faults() -> FaultConfig {
    let mut faults = FaultConfig::all_moderate()
        .with(FaultKind::NodePause, 0.03)
        .with(FaultKind::ClockSkew, 0.1)
        .with(FaultKind::NodeCrash, 0.01)
        .with(FaultKind::Partition, 0.01);
    faults.pause_max = Duration::from_secs(3);
    faults.clock_skew_ppm_max = 90_000;
    faults.quiet_after = Some(Duration::from_secs(7));
    faults
}

/// Lease timing of the single-activation scenarios: 1 s TTL, renewed every
/// 250 ms, 100 ms drift bound.
pub fn lease_timing() -> OwnershipConfig {
    OwnershipConfig::new(
        Duration::from_secs(1),
        Duration::from_millis(250),
        Duration::from_millis(100),
    )
    .expect("valid timing")
}

/// When liveness is judged: once every fault already started has run its
/// course (the longest pause, partition or outage) plus two TTLs.
pub fn liveness_from(faults: &FaultConfig, config: &OwnershipConfig, max_virtual_time: Duration) -> Duration {
    let longest_fault = faults
        .pause_max
        .max(faults.partition_max)
        .max(faults.crash_downtime_max);
    faults.quiet_after.unwrap_or(max_virtual_time) + longest_fault + config.lease_ttl() * 2
}

/// `FencingTokenMonotonic` over `actors`: each stored fence is at least the
/// last one seen (kept in `last`).
pub fn check_fence_monotonic(
    store: &Store,
    actors: &[ActorId],
    last: &mut BTreeMap<ActorId, u64>,
) -> Result<(), String> {
    for actor in actors {
        if let Some(token) = stored_fence(store, actor) {
            let previous = last.insert(actor.clone(), token).unwrap_or(0);
            if token < previous {
                return Err(format!("{actor}: fencing token went back from {previous} to {token}"));
            }
        }
    }
    Ok(())
}

impl Default for OwnershipScenario {
    fn default() -> Self {
        Self {
            nodes: 3,
            clients: 3,
            faults: single_activation_faults(),
            config: lease_timing(),
            // Faults for 7 s; liveness judged from 7 + 3 + 2 = 12 s on.
            max_virtual_time: Duration::from_secs(14),
        }
    }
}

/// What a run showed about liveness.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnershipCoverage {
    /// Acknowledged requests per actor after faults stopped (+ TTL).
    pub successes_after_quiet: BTreeMap<String, u64>,
    /// Acknowledged commits in all.
    pub commits: u64,
}

impl OwnershipScenario {
    /// Runs the scenario with `seed`.
    pub fn run(&self, seed: u64) -> Result<(SimReport, OwnershipCoverage), Box<SimFailure>> {
        self.run_with(seed, None)
    }

    /// Runs the scenario with `seed`, recording the store-level abstract
    /// state ([`AbstractOwnership`]) after every event, stutters dropped:
    /// the first element is the state before the first event, and each next
    /// one differs from the one before. Recording only reads the
    /// coordination state, the shared store and the commit audit; it adds
    /// no event and draws no randomness, so the run (and its trace hash) is
    /// the one [`Self::run`] makes.
    pub fn run_recording(&self, seed: u64) -> Result<(SimReport, Vec<AbstractOwnership>), Box<SimFailure>> {
        let (outcome, states) = self.record(seed);
        outcome.map(|(report, _)| (report, states))
    }

    /// As [`Self::run_recording`], but the states are returned even when an
    /// invariant fails: then the last one is the state after the violating
    /// event (the recorder is evaluated before the invariants).
    pub fn record(&self, seed: u64) -> RecordedRun {
        let states: Arc<Mutex<Vec<AbstractOwnership>>> = Arc::default();
        let outcome = self.run_with(seed, Some(states.clone()));
        let states = std::mem::take(&mut *states.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        (outcome, states)
    }

    fn run_with(
        &self,
        seed: u64,
        recording: Option<Arc<Mutex<Vec<AbstractOwnership>>>>,
    ) -> Result<(SimReport, OwnershipCoverage), Box<SimFailure>> {
        let ghost: SharedGhost = Arc::default();
        let config = self.config;
        let nodes = self.nodes;
        let quiet = liveness_from(&self.faults, &config, self.max_virtual_time);
        let boot_ghost = ghost.clone();
        let mut simulation = Simulation::new(seed)
            .nodes(self.nodes, move |env| {
                OwnershipNode::start(env, config, boot_ghost.clone())
            })
            .faults(self.faults.clone())
            .max_virtual_time(self.max_virtual_time);
        let store_ghost = ghost.clone();
        simulation = simulation.harness("shared-store", move |env| {
            Box::pin(async move {
                let store = Store::new(Arc::new(MemoryEngine::new()), env.spawner.clone());
                // Weak: the ghost keeps the store, which keeps this.
                let audit = Arc::downgrade(&store_ghost);
                store.observe_commits(Arc::new(move |_version, writes| {
                    if let Some(ghost) = audit.upgrade() {
                        lock(&ghost).audit.commit(writes, b"last-token");
                    }
                }));
                lock(&store_ghost).store = Some(store);
            })
        });
        for index in 0..self.clients {
            let client_ghost = ghost.clone();
            simulation = simulation.harness("client", move |env| {
                Box::pin(client(env, client_ghost, index, nodes, quiet))
            });
        }
        if let Some(states) = recording {
            // Evaluated before the invariants, so a failing run still
            // records the state after the violating event. Always holds.
            let record_ghost = ghost.clone();
            let actors: Vec<ActorId> = (0..ACTORS).map(actor).collect();
            let mut last: Option<AbstractOwnership> = None;
            simulation = simulation.invariant(ABSTRACT_STATE_RECORDER, move |view| {
                let ghost = lock(&record_ghost);
                let state = abstract_ownership(view.coordination, ghost.store.as_ref(), &ghost.audit, &actors);
                drop(ghost);
                if last.as_ref() != Some(&state) {
                    states
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(state.clone());
                    last = Some(state);
                }
                Ok(())
            });
        }
        let fence_ghost = ghost.clone();
        let mut last_fence: BTreeMap<ActorId, u64> = BTreeMap::new();
        let (zombie_ghost, linear_ghost) = (ghost.clone(), ghost.clone());
        let report = simulation
            .invariant(SINGLE_ACTIVATION, check_single_activation)
            .invariant(LEASE_UNIQUENESS, check_lease_uniqueness)
            .invariant(FENCING_TOKEN_MONOTONIC, move |_| {
                let Some(store) = lock(&fence_ghost).store.clone() else {
                    return Ok(());
                };
                let actors: Vec<ActorId> = (0..ACTORS).map(actor).collect();
                check_fence_monotonic(&store, &actors, &mut last_fence)
            })
            .invariant(NO_ZOMBIE_WRITE, move |_| {
                // Every applied commit, acknowledged or not, in commit order.
                match lock(&zombie_ghost).audit.violation() {
                    Some(violation) => Err(violation.clone()),
                    None => Ok(()),
                }
            })
            .invariant(LINEARIZABLE, {
                let mut checked = 0;
                move |_| {
                    let ghost = lock(&linear_ghost);
                    let total: usize = ghost.applied.values().map(Vec::len).sum();
                    if total == checked {
                        return Ok(());
                    }
                    checked = total;
                    check_linearizable(&ghost)
                }
            })
            .run()?;
        super::assert_ghost_released(&ghost, seed);
        let ghost = lock(&ghost);
        let coverage = OwnershipCoverage {
            successes_after_quiet: ghost
                .successes_after_quiet
                .iter()
                .map(|(actor, count)| (actor.to_string(), *count))
                .collect(),
            commits: ghost.applied.values().map(|applied| applied.len() as u64).sum(),
        };
        Ok((report, coverage))
    }
}

/// A run's outcome and the abstract states it went through
/// ([`OwnershipScenario::record`]).
pub type RecordedRun = (
    Result<(SimReport, OwnershipCoverage), Box<SimFailure>>,
    Vec<AbstractOwnership>,
);

/// Name under which [`OwnershipScenario::record`] registers its recorder (a
/// pseudo-invariant that always holds; not one of the scenario's checks).
const ABSTRACT_STATE_RECORDER: &str = "AbstractStateRecorder";

/// One `owners/<actor>` key of the coordination store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbstractOwner {
    /// The key's value: the owning node's id.
    pub node: String,
    /// The session lease the key is attached to (0 if none).
    pub lease: i64,
    /// The key's create revision: the owner's fencing token.
    pub token: u64,
}

/// The store-level variables of `KelpieSingleActivation`
/// (`specs/tla/KelpieSingleActivation.tla`: `owner`, `rev`, `fence`, and the
/// token of `lastCommit`) for every actor of the ownership scenario, read
/// from the real state by [`abstract_ownership`] (the refinement mapping).
/// Actors are keyed by their display form (`register/r0`); an actor without
/// an owner key, fence or commit has no entry in that map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AbstractOwnership {
    /// `owner`: the actor's ownership key in the coordination store.
    pub owners: BTreeMap<String, AbstractOwner>,
    /// `fence`: the fencing token installed in the shared store.
    pub fences: BTreeMap<String, u64>,
    /// The token of the last applied commit (`lastCommit`), as the commit
    /// wrote it under the register's `last-token` key (from the commit
    /// audit, which sees every commit the store applied).
    pub last_write: BTreeMap<String, u64>,
    /// How many commits were applied (so that a second commit with the
    /// same token is a step, not a stutter).
    pub commits: BTreeMap<String, u64>,
    /// `rev`: the coordination store's revision (every token issued so far
    /// is at most this).
    pub revision: i64,
}

/// The refinement mapping: the abstract state of `actors` in the
/// coordination state (as of the last event, leases due by then expired),
/// the shared store (`None` before the store exists: no fences yet) and the
/// audit of the commits it applied.
pub fn abstract_ownership(
    coordination: &kelpie_core::coordination::CoordinationState,
    store: Option<&Store>,
    audit: &FenceAudit,
    actors: &[ActorId],
) -> AbstractOwnership {
    let mut state = AbstractOwnership {
        revision: coordination.revision(),
        ..AbstractOwnership::default()
    };
    for actor in actors {
        let name = actor.to_string();
        if let Some(kv) = coordination.peek(&kelpie_runtime::ownership::owner_key(actor)) {
            state.owners.insert(
                name.clone(),
                AbstractOwner {
                    node: String::from_utf8_lossy(&kv.value).into_owned(),
                    lease: kv.lease.map_or(0, |lease| lease.0),
                    token: u64::try_from(kv.create_revision).unwrap_or(0),
                },
            );
        }
        if let Some(fence) = store.and_then(|store| stored_fence(store, actor)) {
            state.fences.insert(name.clone(), fence);
        }
        if let Some((token, commits)) = audit.last_commit(actor) {
            state.last_write.insert(name.clone(), token);
            state.commits.insert(name, commits);
        }
    }
    state
}
