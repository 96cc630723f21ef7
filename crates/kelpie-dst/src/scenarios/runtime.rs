//! The actor runtime (kelpie-runtime) on several nodes sharing one store:
//! clients invoke counter and register actors with idempotency keys and
//! retries, while nodes crash, pause past their lease, drift, jump and
//! partition, and the coordination store times out and loses answers.
//!
//! Invariants after every event, from the nodes' real state and the
//! clients' histories:
//! - `SingleActivation`, `LeaseUniqueness` (as in the ownership scenario);
//! - `FencingTokenMonotonic`: an actor's fencing token never decreases;
//! - `NoZombieWrite`: every applied commit of an actor's state carries a
//!   token no older than the fence installed before it (audited in commit
//!   order through the store's commit observer);
//! - `GracefulDeactivation`: on a running node with no active actor, every
//!   message ever accepted was answered (handled or bounced);
//! - `NoResurrection` (the TLA+ `mem = store` of a serving activation, seen
//!   where the in-memory state becomes observable: its commits): every
//!   counter state the shared store applies is the durable value it
//!   replaces plus one. A counter handler adds one to the activation's
//!   in-memory state, so this holds iff the activation that committed held
//!   exactly the durable state — not the state of an earlier activation,
//!   nor one another node has since moved past (audited in commit order
//!   through the engine's applied-writes observer, which also sees writes
//!   whose answer was lost);
//! - `Linearizable`: each actor's client history is linearizable with
//!   respect to its sequential specification (a counter, a register),
//!   checked by a Wing–Gong search ([`crate::linearizability`]) whenever the
//!   actor's history gains a reply. One logical operation — every retry
//!   under one idempotency key — is one operation, from its first attempt
//!   to the reply that ended it; an operation the client gave up on stays
//!   in flight forever (it may take effect at any later time, or never),
//!   and the client goes on as a new thread.
//!
//! A liveness phase follows the faults: every actor must be served again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use kelpie_core::{ActorId, NodeEnv};
use kelpie_runtime::driver::OwnershipDriver;
use kelpie_runtime::ownership::OwnershipConfig;
use kelpie_runtime::runtime::{
    Actor, ActorContext, HandlerError, InvokeError, InvokeOptions, Runtime, RuntimeConfig, STATE_KEY, TOKEN_KEY,
};
use kelpie_storage::Store;

use crate::shared_store::FaultyEngine;
use serde::{Deserialize, Serialize};

use super::ownership::{
    check_fence_monotonic, check_lease_uniqueness, check_single_activation, lease_timing, liveness_from,
    single_activation_faults, FenceAudit, HasOwnership,
};
use crate::faults::FaultConfig;
use crate::linearizability::{
    Counter, CounterOp, History, Linearization, NotLinearizable, Register, RegisterOp, SequentialSpec, ThreadId,
};
use crate::simulation::{HarnessEnv, SimFailure, SimReport, Simulation, WorldView};

/// Invariant names (see the module docs).
pub const GRACEFUL_DEACTIVATION: &str = "GracefulDeactivation";
/// Invariant: no runtime answers more messages than it accepted.
pub const ANSWERED_WERE_ACCEPTED: &str = "AnsweredWereAccepted";
/// Invariant: an activation commits from exactly the durable state.
pub const NO_RESURRECTION: &str = "NoResurrection";
pub use super::ownership::{
    FENCING_TOKEN_MONOTONIC, LEASE_UNIQUENESS, LINEARIZABLE, NO_ZOMBIE_WRITE, SINGLE_ACTIVATION,
};

const COUNTERS: usize = 2;
const REGISTERS: usize = 2;

/// Simulated handler work (an LLM call, say): a pause landing here turns
/// the node into a zombie holding an invocation.
async fn work(clock: &kelpie_core::clock::SharedClock, rng: &kelpie_core::rng::SharedRng) {
    clock.sleep(Duration::from_millis(rng.in_range(0, 15))).await;
}

/// A counter actor.
pub struct CounterActor {
    clock: kelpie_core::clock::SharedClock,
    rng: kelpie_core::rng::SharedRng,
    /// Planted defect ([`RuntimeScenario::plant_resurrection`]): the node
    /// remembers each counter's state across deactivations and hands it to
    /// the next activation instead of the state it loaded.
    resurrect: Option<Mutex<BTreeMap<ActorId, u64>>>,
}

/// Counter messages.
#[derive(Debug, Serialize, Deserialize)]
pub enum CounterMessage {
    /// Add one; replies with the new value.
    Increment,
}

impl Actor for CounterActor {
    type State = u64;
    type Message = CounterMessage;
    type Reply = u64;

    fn handle<'a>(
        &'a self,
        ctx: &'a mut ActorContext<'_>,
        state: &'a mut u64,
        _message: CounterMessage,
    ) -> BoxFuture<'a, Result<u64, HandlerError>> {
        Box::pin(async move {
            if let Some(memory) = &self.resurrect {
                let memory = memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(remembered) = memory.get(ctx.actor()) {
                    *state = *remembered;
                }
            }
            work(&self.clock, &self.rng).await;
            *state += 1;
            if let Some(memory) = &self.resurrect {
                let mut memory = memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                memory.insert(ctx.actor().clone(), *state);
            }
            Ok(*state)
        })
    }
}

/// A register actor.
pub struct RegisterActor {
    clock: kelpie_core::clock::SharedClock,
    rng: kelpie_core::rng::SharedRng,
}

/// Register messages.
#[derive(Debug, Serialize, Deserialize)]
pub enum RegisterMessage {
    /// Write a value; replies with it.
    Set(String),
    /// Read the value.
    Get,
}

impl Actor for RegisterActor {
    type State = Option<String>;
    type Message = RegisterMessage;
    type Reply = Option<String>;

    fn handle<'a>(
        &'a self,
        _ctx: &'a mut ActorContext<'_>,
        state: &'a mut Option<String>,
        message: RegisterMessage,
    ) -> BoxFuture<'a, Result<Option<String>, HandlerError>> {
        Box::pin(async move {
            work(&self.clock, &self.rng).await;
            match message {
                RegisterMessage::Set(value) => {
                    *state = Some(value.clone());
                    Ok(Some(value))
                }
                // A read commits nothing: the runtime replies only if the
                // node still serves the actor after the handler ran
                // (self-fencing), so a stale owner cannot answer it.
                RegisterMessage::Get => Ok(state.clone()),
            }
        })
    }
}

/// One node: its ownership driver and runtimes (once the store exists).
pub struct RuntimeNode {
    driver: Arc<OwnershipDriver>,
    runtimes: Mutex<Option<(Runtime<CounterActor>, Runtime<RegisterActor>)>>,
}

impl HasOwnership for RuntimeNode {
    fn driver(&self) -> &Arc<OwnershipDriver> {
        &self.driver
    }
}

impl RuntimeNode {
    fn runtimes(&self) -> Option<(Runtime<CounterActor>, Runtime<RegisterActor>)> {
        self.runtimes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[derive(Clone, Debug)]
enum Done {
    Counter(u64),
    Register(Option<String>),
}

/// One actor's client history, and the linearization last found for it.
enum ActorHistory {
    Counter(History<Counter>, Option<Linearization<Counter>>),
    Register(History<Register<String>>, Option<Linearization<Register<String>>>),
}

/// A client operation, as the linearizability checker sees it.
#[derive(Clone, Debug)]
enum ClientOp {
    Counter(CounterOp),
    Register(RegisterOp<String>),
}

#[derive(Default)]
struct Ghost {
    store: Option<Store>,
    nodes: BTreeMap<usize, Arc<RuntimeNode>>,
    /// Per actor: the clients' operations and replies.
    histories: BTreeMap<ActorId, ActorHistory>,
    /// Actors whose history gained a reply since it was last checked.
    unchecked: BTreeSet<ActorId>,
    /// A client recorded an ill-formed history (a harness bug).
    history_error: Option<String>,
    acknowledged: u64,
    served_after_quiet: BTreeMap<ActorId, u64>,
    /// Applied commits audited for zombie writes.
    audit: FenceAudit,
    /// Applied counter states audited for resurrection.
    resurrection: ResurrectionAudit,
}

/// `NoResurrection`, audited on the shared store's applied writes, in
/// order: every applied state of a counter actor is the durable state it
/// replaces plus one (a counter handler's commit is its activation's
/// in-memory state plus one, so a commit from any other state than the
/// durable one — an earlier activation's, or one another owner has moved
/// past — breaks it). Register writes are blind (the value written does not
/// depend on the state), so registers are left to `Linearizable`.
#[derive(Default)]
pub struct ResurrectionAudit {
    durable: BTreeMap<ActorId, u64>,
    violation: Option<String>,
}

impl ResurrectionAudit {
    /// Feeds one applied write transaction.
    pub fn commit(&mut self, writes: &BTreeMap<Vec<u8>, Option<Bytes>>) {
        use kelpie_storage::key::{split_raw_key, Space};
        for (raw, value) in writes {
            let Some((Space::State, actor, key)) = split_raw_key(raw) else {
                continue;
            };
            if key != STATE_KEY || actor.namespace() != "counter" {
                continue;
            }
            let written = value
                .as_ref()
                .and_then(|value| serde_json::from_slice::<u64>(value).ok());
            let before = self.durable.get(&actor).copied().unwrap_or(0);
            match written {
                Some(written) if written == before + 1 => {
                    self.durable.insert(actor, written);
                }
                other => {
                    if self.violation.is_none() {
                        self.violation = Some(format!(
                            "{actor}: a commit replaced durable state {before} with {other:?}: \
                             the committing activation did not hold the durable state"
                        ));
                    }
                    if let Some(written) = other {
                        self.durable.insert(actor, written);
                    }
                }
            }
        }
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<&String> {
        self.violation.as_ref()
    }
}

/// `NoResurrection` over the audit so far.
pub fn check_no_resurrection(audit: &ResurrectionAudit) -> Result<(), String> {
    match audit.violation() {
        Some(violation) => Err(violation.clone()),
        None => Ok(()),
    }
}

type SharedGhost = Arc<Mutex<Ghost>>;

fn lock(ghost: &SharedGhost) -> MutexGuard<'_, Ghost> {
    ghost.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Ghost {
    fn on_invoke(&mut self, actor: &ActorId, thread: ThreadId, op: ClientOp) {
        let history = self.histories.entry(actor.clone()).or_insert_with(|| match op {
            ClientOp::Counter(_) => ActorHistory::Counter(History::new(), None),
            ClientOp::Register(_) => ActorHistory::Register(History::new(), None),
        });
        let recorded = match (history, op) {
            (ActorHistory::Counter(history, _), ClientOp::Counter(op)) => history.on_invoke(thread, op),
            (ActorHistory::Register(history, _), ClientOp::Register(op)) => history.on_invoke(thread, op),
            (_, op) => Err(format!("{op:?} on an actor of another kind")),
        };
        self.record_error(actor, recorded);
    }

    fn on_return(&mut self, actor: &ActorId, thread: ThreadId, done: Done) {
        self.acknowledged += 1;
        let recorded = match (self.histories.get_mut(actor), done) {
            (Some(ActorHistory::Counter(history, _)), Done::Counter(value)) => history.on_return(thread, value),
            (Some(ActorHistory::Register(history, _)), Done::Register(value)) => history.on_return(thread, value),
            (_, done) => Err(format!("reply {done:?} with no matching invocation")),
        };
        self.record_error(actor, recorded);
        self.unchecked.insert(actor.clone());
    }

    fn record_error(&mut self, actor: &ActorId, recorded: Result<(), String>) {
        if let Err(error) = recorded {
            self.history_error.get_or_insert_with(|| format!("{actor}: {error}"));
        }
    }

    /// Checks the histories that gained a reply since the last check.
    fn check_linearizable(&mut self) -> Result<(), String> {
        if let Some(error) = &self.history_error {
            return Err(format!("ill-formed client history: {error}"));
        }
        while let Some(actor) = self.unchecked.pop_first() {
            let verdict = match self.histories.get_mut(&actor) {
                Some(ActorHistory::Counter(history, found)) => check_linearizable(history, &Counter(0), found),
                Some(ActorHistory::Register(history, found)) => check_linearizable(history, &Register(None), found),
                None => Ok(()),
            };
            verdict.map_err(|failure| format!("{actor}: {failure}"))?;
        }
        Ok(())
    }
}

fn boot(env: NodeEnv, config: OwnershipConfig, ghost: SharedGhost, plant_resurrection: bool) -> Arc<RuntimeNode> {
    let driver = OwnershipDriver::start(env.clone(), config);
    let node = Arc::new(RuntimeNode {
        driver: driver.clone(),
        runtimes: Mutex::new(None),
    });
    let index = env
        .node_id
        .as_str()
        .trim_start_matches("node-")
        .parse::<usize>()
        .unwrap_or(0);
    lock(&ghost).nodes.insert(index, node.clone());
    let handle = node.clone();
    let spawner = env.spawner.clone();
    let _boot = spawner.spawn(
        "runtime-boot",
        Box::pin(async move {
            let store = loop {
                if let Some(store) = lock(&ghost).store.clone() {
                    break store;
                }
                env.clock.sleep(Duration::from_millis(1)).await;
            };
            let mut counter = RuntimeConfig::new("counter");
            counter.idle_timeout = Duration::from_millis(400);
            counter.mailbox_depth = 16;
            let mut register = RuntimeConfig::new("register");
            register.idle_timeout = Duration::from_millis(400);
            register.mailbox_depth = 16;
            let counter_actor = CounterActor {
                clock: env.clock.clone(),
                rng: env.rng.clone(),
                resurrect: plant_resurrection.then(Mutex::default),
            };
            let register_actor = RegisterActor {
                clock: env.clock.clone(),
                rng: env.rng.clone(),
            };
            let counters = Runtime::new(env.clone(), counter_actor, store.clone(), driver.clone(), counter);
            let registers = Runtime::new(env.clone(), register_actor, store, driver, register);
            *handle.runtimes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((counters, registers));
        }),
    );
    node
}

fn actor_for(kind: usize, index: usize) -> ActorId {
    let namespace = if kind == 0 { "counter" } else { "register" };
    ActorId::new(namespace, format!("a{index}")).expect("generated id is valid")
}

fn node_index(id: &kelpie_core::NodeId) -> usize {
    id.as_str().trim_start_matches("node-").parse().unwrap_or(0)
}

async fn client(env: HarnessEnv, ghost: SharedGhost, client: usize, nodes: usize, quiet: Duration) {
    let mut sequence = 0u64;
    // This client's thread in the histories (client c's are c000000,
    // c000001, ...); it moves to the next whenever it gives up on an
    // operation, which stays in flight.
    let mut thread: ThreadId = client as u64 * 1_000_000;
    loop {
        sequence += 1;
        let is_counter = env.rng.chance(1, 2);
        let index = env.rng.below(if is_counter { COUNTERS } else { REGISTERS } as u64) as usize;
        let actor = actor_for(if is_counter { 0 } else { 1 }, index);
        let key = format!("client{client}-{sequence}");
        let write = (!is_counter && env.rng.chance(1, 2)).then(|| key.clone());
        // One logical operation however many attempts it takes: invoked
        // before the first, returned at the reply that ends it.
        let op = match (is_counter, &write) {
            (true, _) => ClientOp::Counter(CounterOp::Increment),
            (false, Some(value)) => ClientOp::Register(RegisterOp::Set(value.clone())),
            (false, None) => ClientOp::Register(RegisterOp::Get),
        };
        lock(&ghost).on_invoke(&actor, thread, op);
        let mut answered = false;
        // Increments need exactly-once (keyed, journaled); register writes
        // are idempotent by value, so they go unjournaled: the fence alone
        // must stop a zombie's blind write.
        let options = InvokeOptions {
            deadline: Some(Duration::from_millis(1_500)),
            idempotency_key: is_counter.then(|| key.clone()),
        };
        let mut node = env.rng.below(nodes as u64) as usize;
        for _attempt in 0..12 {
            let Some(target) = lock(&ghost).nodes.get(&node).cloned() else {
                break;
            };
            let Some((counters, registers)) = target.runtimes() else {
                env.clock.sleep(Duration::from_millis(20)).await;
                node = env.rng.below(nodes as u64) as usize;
                continue;
            };
            let result = if is_counter {
                counters
                    .invoke(&actor, CounterMessage::Increment, options.clone())
                    .await
                    .map(Done::Counter)
            } else {
                let message = match &write {
                    Some(value) => RegisterMessage::Set(value.clone()),
                    None => RegisterMessage::Get,
                };
                registers
                    .invoke(&actor, message, options.clone())
                    .await
                    .map(Done::Register)
            };
            match result {
                Ok(done) => {
                    let responded = Duration::from_nanos(env.clock.now_monotonic().as_nanos());
                    let mut ghost = lock(&ghost);
                    if responded >= quiet {
                        *ghost.served_after_quiet.entry(actor.clone()).or_insert(0) += 1;
                    }
                    ghost.on_return(&actor, thread, done);
                    answered = true;
                    break;
                }
                Err(InvokeError::NotOwner { owner, .. }) => node = node_index(&owner),
                // An unjournaled write whose outcome is unknown is not retried:
                // a retry could run after a later write (at-least-once).
                Err(InvokeError::DeadlineExceeded { .. } | InvokeError::Unavailable { .. }) if write.is_some() => break,
                Err(error) if error.is_retryable() => {
                    env.clock.sleep(Duration::from_millis(env.rng.in_range(5, 50))).await;
                    node = env.rng.below(nodes as u64) as usize;
                }
                Err(_) => break,
            }
        }
        if !answered {
            // Abandoned with its outcome unknown (conservatively, even after
            // an error that means it had no effect): it stays in flight.
            thread += 1;
        }
        env.clock.sleep(Duration::from_millis(env.rng.in_range(1, 20))).await;
    }
}

/// Checks `history`, extending the linearization `found` for it last time
/// (the history only grows), and keeps the new one.
fn check_linearizable<S>(
    history: &History<S>,
    init: &S,
    found: &mut Option<Linearization<S>>,
) -> Result<(), NotLinearizable>
where
    S: SequentialSpec + Clone + Ord,
    S::Op: Clone + std::fmt::Debug + PartialEq,
    S::Ret: Clone + std::fmt::Debug + PartialEq,
{
    let linearization = match found {
        Some(previous) => history.check_extending(init, previous)?,
        None => history.check(init)?,
    };
    *found = Some(linearization);
    Ok(())
}

/// `GracefulDeactivation`: a node's runtime with no active actor has
/// answered every message it accepted (handled or bounced, never dropped).
pub fn check_graceful_deactivation(view: &WorldView<'_, RuntimeNode>) -> Result<(), String> {
    for node in view.nodes {
        let Some(state) = &node.state else { continue };
        let Some((counters, registers)) = state.runtimes() else {
            continue;
        };
        for (name, idle, stats) in [
            ("counter", counters.active().is_empty(), counters.stats()),
            ("register", registers.active().is_empty(), registers.stats()),
        ] {
            if idle && stats.accepted != stats.answered {
                return Err(format!(
                    "{} {name} runtime has no active actor but answered {} of {} accepted messages",
                    node.id, stats.answered, stats.accepted
                ));
            }
        }
    }
    Ok(())
}

/// `AnsweredWereAccepted`: no runtime answers more messages than its
/// mailboxes accepted (no answer without a request, none answered twice).
pub fn check_answered_were_accepted(view: &WorldView<'_, RuntimeNode>) -> Result<(), String> {
    for node in view.nodes {
        let Some(state) = &node.state else { continue };
        let Some((counters, registers)) = state.runtimes() else {
            continue;
        };
        for (name, stats) in [("counter", counters.stats()), ("register", registers.stats())] {
            if stats.answered > stats.accepted {
                return Err(format!(
                    "{} {name} runtime answered {} messages but accepted only {}",
                    node.id, stats.answered, stats.accepted
                ));
            }
        }
    }
    Ok(())
}

/// A runtime simulation.
#[derive(Clone, Debug)]
pub struct RuntimeScenario {
    /// Nodes (at least 3).
    pub nodes: usize,
    /// Clients.
    pub clients: usize,
    /// Faults; random ones stop at `faults.quiet_after`.
    pub faults: FaultConfig,
    /// Lease timing.
    pub config: OwnershipConfig,
    /// Virtual time to run.
    pub max_virtual_time: Duration,
    /// Test-only planted defect, off by default: each node's counter actor
    /// keeps its state across deactivations and a later activation on the
    /// same node resumes from it (a resurrection), which `NoResurrection`
    /// must report.
    pub plant_resurrection: bool,
}

impl Default for RuntimeScenario {
    fn default() -> Self {
        Self {
            nodes: 3,
            clients: 3,
            faults: single_activation_faults(),
            config: lease_timing(),
            // Faults for 7 s; liveness judged from 7 + 3 + 2 = 12 s on.
            max_virtual_time: Duration::from_secs(14),
            plant_resurrection: false,
        }
    }
}

/// What a run showed beyond the invariants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeCoverage {
    /// Acknowledged invocations.
    pub acknowledged: u64,
    /// Actors served after faults stopped (+ 2 TTL), of the 4.
    pub served_after_quiet: usize,
}

impl RuntimeScenario {
    /// Runs the scenario with `seed`.
    pub fn run(&self, seed: u64) -> Result<(SimReport, RuntimeCoverage), Box<SimFailure>> {
        let ghost: SharedGhost = Arc::default();
        let config = self.config;
        let nodes = self.nodes;
        let plant_resurrection = self.plant_resurrection;
        // Liveness is judged once every fault already started has run its
        // course (the longest pause, partition or outage) plus two TTLs.
        let quiet = liveness_from(&self.faults, &config, self.max_virtual_time);
        let boot_ghost = ghost.clone();
        let store_ghost = ghost.clone();
        let mut simulation = Simulation::new(seed)
            .nodes(self.nodes, move |env| {
                boot(env, config, boot_ghost.clone(), plant_resurrection)
            })
            .faults(self.faults.clone())
            .max_virtual_time(self.max_virtual_time)
            .harness("shared-store", move |env| {
                Box::pin(async move {
                    // The audit sees what the engine applied, including
                    // writes whose commit was reported failed.
                    // Weak: the ghost keeps the store, which keeps this.
                    let audit = Arc::downgrade(&store_ghost);
                    let engine = FaultyEngine::new(
                        env.faults.clone(),
                        Arc::new(move |writes| {
                            let Some(ghost) = audit.upgrade() else { return };
                            let mut ghost = lock(&ghost);
                            ghost.audit.commit(writes, TOKEN_KEY);
                            ghost.resurrection.commit(writes);
                        }),
                    );
                    let store = Store::new(Arc::new(engine), env.spawner.clone());
                    lock(&store_ghost).store = Some(store);
                })
            });
        for index in 0..self.clients {
            let client_ghost = ghost.clone();
            simulation = simulation.harness("client", move |env| {
                Box::pin(client(env, client_ghost, index, nodes, quiet))
            });
        }
        let fence_ghost = ghost.clone();
        let mut fences: BTreeMap<ActorId, u64> = BTreeMap::new();
        let history_ghost = ghost.clone();
        let resurrection_ghost = ghost.clone();
        let report = simulation
            .invariant(SINGLE_ACTIVATION, check_single_activation::<RuntimeNode>)
            .invariant(LEASE_UNIQUENESS, check_lease_uniqueness::<RuntimeNode>)
            .invariant(FENCING_TOKEN_MONOTONIC, {
                let ghost = fence_ghost.clone();
                move |_| {
                    let Some(store) = lock(&ghost).store.clone() else {
                        return Ok(());
                    };
                    check_fence_monotonic(&store, &all_actors(), &mut fences)
                }
            })
            .invariant(NO_ZOMBIE_WRITE, move |_| match lock(&fence_ghost).audit.violation() {
                Some(violation) => Err(violation.clone()),
                None => Ok(()),
            })
            .invariant(GRACEFUL_DEACTIVATION, check_graceful_deactivation)
            .invariant(ANSWERED_WERE_ACCEPTED, check_answered_were_accepted)
            .invariant(NO_RESURRECTION, move |_| {
                check_no_resurrection(&lock(&resurrection_ghost).resurrection)
            })
            .invariant(LINEARIZABLE, move |_| lock(&history_ghost).check_linearizable())
            .run()?;
        super::assert_ghost_released(&ghost, seed);
        let ghost = lock(&ghost);
        let coverage = RuntimeCoverage {
            acknowledged: ghost.acknowledged,
            served_after_quiet: ghost.served_after_quiet.len(),
        };
        Ok((report, coverage))
    }
}

fn all_actors() -> Vec<ActorId> {
    (0..COUNTERS)
        .map(|index| actor_for(0, index))
        .chain((0..REGISTERS).map(|index| actor_for(1, index)))
        .collect()
}
