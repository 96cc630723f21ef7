//! The agent server (kelpie-server) on several nodes sharing one store:
//! clients create agents with memory blocks through the server's own
//! operation (`ops::create_agent`, the code the HTTP route runs), each
//! logical request under one `Idempotency-Key`, retrying it (on any node)
//! when a node crashes under it, when it times out, or on a retryable error,
//! while nodes crash and restart, pause past their lease, drift and jump, and
//! the store and the coordination store fail.
//!
//! Each node boots the server's actors with [`App::over`] from its simulated
//! seams (no LLM). A request runs as a task of the node it was sent to, as an
//! HTTP handler would: a crash drops it with the node's invocations in
//! flight (the client sees its connection reset), a pause stalls it. A
//! restarted node builds a new `App` on the same shared store.
//!
//! Invariants after every event, from committed store state (every write
//! transaction the store's engine applied, read back with the server's own
//! record types and read functions) and the clients' histories:
//! - `AgentCreateAtomic` (BUG-001): every agent in committed state is in the
//!   `AGENTS` index iff its record exists, and an agent a client requested
//!   has exactly the requested blocks (labels and values) in `BLOCKS`.
//! - `IdempotentCreate` (BUG-002): for each idempotency key, at most one
//!   agent with that request's (unique) name exists, every successful
//!   response for the key carries the same agent id, and that agent exists.
//!
//! After the run, `CreateEventuallySucceeds`: once faults stop (plus the
//! longest fault and two lease TTLs), every client gets a create
//! acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{select, Either};
use kelpie_core::{ActorId, NodeEnv, NodeId};
use kelpie_runtime::driver::OwnershipDriver;
use kelpie_runtime::ownership::OwnershipConfig;
use kelpie_runtime::runtime::STATE_KEY;
use kelpie_server::agent::ArchivalEmbedder;
use kelpie_server::app::{read_json, scan_all, space, ApiError, App, RequestMeta};
use kelpie_server::config::ServerConfig;
use kelpie_server::ops::{self, CreateAgentBody};
use kelpie_server::records::{AgentRecord, AgentSlot, StoredBlock, AGENTS, AGENT_NAMESPACE, BLOCKS};
use kelpie_server::render::LlmInfo;
use kelpie_storage::key::{split_raw_key, Space};
use kelpie_storage::{Engine, MemoryEngine, Store};
use serde_json::{json, Value};

use super::ownership::{lease_timing, liveness_from, single_activation_faults};
use crate::faults::{FaultConfig, FaultKind};
use crate::shared_store::FaultyEngine;
use crate::simulation::{FailureKind, HarnessEnv, SimFailure, SimReport, Simulation};

/// Invariant: an agent exists with exactly its requested blocks, and is
/// indexed iff its record exists (see the module docs).
pub const AGENT_CREATE_ATOMIC: &str = "AgentCreateAtomic";
/// Invariant: one agent per idempotency key, one agent id in every
/// successful response for it.
pub const IDEMPOTENT_CREATE: &str = "IdempotentCreate";
/// Liveness, judged after the run: every client gets a create acknowledged
/// after the faults stopped.
pub const CREATE_EVENTUALLY_SUCCEEDS: &str = "CreateEventuallySucceeds";

/// Labels of the blocks a request creates (the first 2 or 3).
const LABELS: [&str; 3] = ["persona", "human", "notes"];
/// How long a client waits for one attempt before retrying elsewhere.
const ATTEMPT_DEADLINE: Duration = Duration::from_millis(1_500);
/// The route `ops::create_agent` serves.
const METHOD: &str = "POST";
const PATH: &str = "/v1/agents";

/// One simulated server node: its `App` (once the shared store exists),
/// built by [`App::over`] over the node's seams and ownership driver.
pub struct AgentServerNode {
    index: usize,
    app: Mutex<Option<Arc<App>>>,
    ghost: SharedGhost,
}

impl AgentServerNode {
    /// The node's server, once booted.
    pub fn app(&self) -> Option<Arc<App>> {
        self.app.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for AgentServerNode {
    /// The node crashed (the simulator dropped it): clients stop sending to
    /// its `App` until the next incarnation boots one.
    fn drop(&mut self) {
        let Some(app) = self.app() else { return };
        let mut ghost = lock(&self.ghost);
        if ghost
            .apps
            .get(&self.index)
            .is_some_and(|current| Arc::ptr_eq(current, &app))
        {
            ghost.apps.remove(&self.index);
        }
    }
}

/// One logical create request (every attempt under one idempotency key).
struct Request {
    key: String,
    /// Unique per request: how committed agents are matched to requests.
    name: String,
    /// (label, value), sorted by label.
    blocks: Vec<(String, String)>,
    /// The agent ids of the successful responses, in order.
    acknowledged: Vec<String>,
}

/// Committed state, kept up to date from the engine's applied writes.
#[derive(Default)]
struct Committed {
    /// Agent id → its record (`None`: the actor's state exists without an
    /// agent, or only the index names it).
    agents: BTreeMap<String, Option<AgentRecord>>,
    /// Ids in the `AGENTS` index.
    index: BTreeSet<String>,
    /// Block id → block, from `BLOCKS`.
    blocks: BTreeMap<String, StoredBlock>,
    /// Block id → the agents whose record lists it.
    block_users: BTreeMap<String, BTreeSet<String>>,
    /// Agent name → the agents with a record of that name.
    by_name: BTreeMap<String, BTreeSet<String>>,
}

impl Committed {
    /// Replaces agent `id`'s entry (`None`: no trace of it at all).
    fn set_agent(&mut self, id: &str, entry: Option<Option<AgentRecord>>) {
        if let Some(Some(old)) = self.agents.remove(id) {
            for block in &old.block_ids {
                if let Some(users) = self.block_users.get_mut(block) {
                    users.remove(id);
                    if users.is_empty() {
                        self.block_users.remove(block);
                    }
                }
            }
            if let Some(ids) = self.by_name.get_mut(&old.name) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_name.remove(&old.name);
                }
            }
        }
        if let Some(entry) = entry {
            if let Some(record) = &entry {
                for block in &record.block_ids {
                    self.block_users
                        .entry(block.clone())
                        .or_default()
                        .insert(id.to_string());
                }
                self.by_name
                    .entry(record.name.clone())
                    .or_default()
                    .insert(id.to_string());
            }
            self.agents.insert(id.to_string(), entry);
        }
    }

    fn name_of(&self, id: &str) -> Option<&str> {
        self.agents.get(id)?.as_ref().map(|record| record.name.as_str())
    }
}

#[derive(Default)]
struct Stats {
    requests: u64,
    attempts: u64,
    acknowledged: u64,
    acknowledged_after_retry: u64,
    retried_after_crash: u64,
    retried_after_deadline: u64,
    retried_after_error: u64,
    rejected: u64,
    rejections: Vec<String>,
}

#[derive(Default)]
struct Ghost {
    store: Option<Store>,
    /// A fault-free copy of everything the shared engine applied, read
    /// through a store of its own (so the checks draw no faults).
    mirror: Option<Store>,
    /// The running nodes' servers.
    apps: BTreeMap<usize, Arc<App>>,
    /// By idempotency key.
    requests: BTreeMap<String, Request>,
    /// Request name → idempotency key.
    names: BTreeMap<String, String>,
    /// Agent and block ids written since the last check.
    touched_agents: BTreeSet<String>,
    touched_blocks: BTreeSet<String>,
    committed: Committed,
    /// Agents and requests to re-check.
    pending_agents: BTreeSet<String>,
    pending_requests: BTreeSet<String>,
    /// Whether committed state or a history changed since the last check.
    dirty: bool,
    verdict: Option<Verdict>,
    /// A read of committed state failed (a harness bug).
    read_error: Option<String>,
    served_after_quiet: BTreeSet<usize>,
    stats: Stats,
}

#[derive(Clone)]
struct Verdict {
    atomic: Result<(), String>,
    idempotent: Result<(), String>,
}

type SharedGhost = Arc<Mutex<Ghost>>;

fn lock(ghost: &SharedGhost) -> MutexGuard<'_, Ghost> {
    ghost.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn agents_index() -> &'static ActorId {
    space(&AGENTS)
}

fn blocks_space() -> &'static ActorId {
    space(&BLOCKS)
}

fn api(error: ApiError) -> String {
    format!("{} {}", error.status, error.detail)
}

impl Ghost {
    /// Records an applied write transaction: into the mirror, and which
    /// agents and blocks it touched.
    fn applied(&mut self, mirror: &MemoryEngine, writes: &BTreeMap<Vec<u8>, Option<Bytes>>) {
        let copied = mirror.write(&mut |view| {
            for (key, value) in writes {
                match value {
                    Some(value) => view.put(key, value)?,
                    None => view.delete(key)?,
                }
            }
            Ok(())
        });
        if let Err(error) = copied {
            self.read_error.get_or_insert_with(|| format!("mirror write: {error}"));
        }
        for raw in writes.keys() {
            let Some((Space::State, actor, key)) = split_raw_key(raw) else {
                continue;
            };
            let key = String::from_utf8_lossy(key).into_owned();
            if actor.namespace() == AGENT_NAMESPACE && key.as_bytes() == STATE_KEY {
                self.touched_agents.insert(actor.key().to_string());
            } else if actor == *agents_index() {
                self.touched_agents.insert(key);
            } else if actor == *blocks_space() {
                self.touched_blocks.insert(key);
            }
        }
        self.dirty = true;
    }

    /// Re-reads the touched agents and blocks from committed state, and
    /// marks what their change may have broken for checking.
    fn refresh(&mut self) -> Result<(), String> {
        if self.touched_agents.is_empty() && self.touched_blocks.is_empty() {
            return Ok(());
        }
        let Some(mirror) = self.mirror.clone() else {
            return Ok(());
        };
        let mut txn = mirror.begin().map_err(|error| format!("mirror read: {error}"))?;
        for id in std::mem::take(&mut self.touched_agents) {
            let actor = ActorId::new(AGENT_NAMESPACE, id.clone()).map_err(|error| format!("agent id {id}: {error}"))?;
            let slot: Option<AgentSlot> = read_json(&mut txn, &actor, STATE_KEY).map_err(api)?;
            let indexed = txn
                .get(agents_index(), id.as_bytes())
                .map_err(|error| format!("read index: {error}"))?
                .is_some();
            if indexed {
                self.committed.index.insert(id.clone());
            } else {
                self.committed.index.remove(&id);
            }
            let old_name = self.committed.name_of(&id).map(str::to_string);
            let entry = match slot {
                None if !indexed => None,
                slot => Some(slot.and_then(|slot| slot.agent)),
            };
            self.committed.set_agent(&id, entry);
            let new_name = self.committed.name_of(&id).map(str::to_string);
            for name in [old_name, new_name].into_iter().flatten() {
                if let Some(key) = self.names.get(&name) {
                    self.pending_requests.insert(key.clone());
                }
            }
            self.pending_agents.insert(id);
        }
        for id in std::mem::take(&mut self.touched_blocks) {
            match read_json::<StoredBlock>(&mut txn, blocks_space(), id.as_bytes()).map_err(api)? {
                Some(block) => self.committed.blocks.insert(id.clone(), block),
                None => self.committed.blocks.remove(&id),
            };
            if let Some(users) = self.committed.block_users.get(&id) {
                self.pending_agents.extend(users.iter().cloned());
            }
        }
        Ok(())
    }

    /// Both invariants' verdicts: each agent and request is re-checked when
    /// something it depends on changed (its record, index entry or listed
    /// blocks; its request's responses), so a violation is found at the
    /// event that causes it.
    fn verdict(&mut self) -> Verdict {
        if let Some(verdict) = self.verdict.as_ref().filter(|_| !self.dirty) {
            return verdict.clone();
        }
        self.dirty = false;
        let previous = self.verdict.clone().unwrap_or(Verdict {
            atomic: Ok(()),
            idempotent: Ok(()),
        });
        let read = self.refresh().and_then(|()| match &self.read_error {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        });
        let verdict = match read {
            Err(error) => {
                let error = format!("cannot read committed state: {error}");
                Verdict {
                    atomic: Err(error.clone()),
                    idempotent: Err(error),
                }
            }
            Ok(()) => {
                let agents = std::mem::take(&mut self.pending_agents);
                let requests = std::mem::take(&mut self.pending_requests);
                Verdict {
                    atomic: previous
                        .atomic
                        .and_then(|()| agents.iter().try_for_each(|id| self.check_atomic(id))),
                    idempotent: previous
                        .idempotent
                        .and_then(|()| requests.iter().try_for_each(|key| self.check_idempotent(key))),
                }
            }
        };
        self.verdict = Some(verdict.clone());
        verdict
    }

    /// `AgentCreateAtomic` for agent `id`.
    fn check_atomic(&self, id: &str) -> Result<(), String> {
        let committed = &self.committed;
        let Some(record) = committed.agents.get(id) else {
            return Ok(());
        };
        let indexed = committed.index.contains(id);
        let record = match (record, indexed) {
            (None, false) => return Ok(()),
            (None, true) => return Err(format!("agent {id} is in the AGENTS index but has no committed record")),
            (Some(record), false) => {
                return Err(format!(
                    "agent {id} ({:?}) has a committed record but is not in the AGENTS index",
                    record.name
                ))
            }
            (Some(record), true) => record,
        };
        let Some(request) = self.names.get(&record.name).and_then(|key| self.requests.get(key)) else {
            return Ok(());
        };
        let mut present = Vec::with_capacity(record.block_ids.len());
        for block_id in &record.block_ids {
            match committed.blocks.get(block_id) {
                Some(block) => present.push((block.label.as_str(), block.value.as_str())),
                None => {
                    return Err(format!(
                        "agent {id} ({:?}, request {}) lists block {block_id}, which is not in BLOCKS",
                        record.name, request.key
                    ))
                }
            }
        }
        present.sort_unstable();
        let requested: Vec<(&str, &str)> = request
            .blocks
            .iter()
            .map(|(label, value)| (label.as_str(), value.as_str()))
            .collect();
        if present != requested {
            return Err(format!(
                "agent {id} ({:?}, request {}) is committed with blocks {present:?}; the request asked for {requested:?}",
                record.name, request.key
            ));
        }
        Ok(())
    }

    /// `IdempotentCreate` for the request under `key`.
    fn check_idempotent(&self, key: &str) -> Result<(), String> {
        let Some(request) = self.requests.get(key) else {
            return Ok(());
        };
        let agents: Vec<&str> = self
            .committed
            .by_name
            .get(&request.name)
            .map(|ids| ids.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if agents.len() > 1 {
            return Err(format!(
                "request {} ({:?}) created {} agents: {agents:?}",
                request.key,
                request.name,
                agents.len()
            ));
        }
        let Some(first) = request.acknowledged.first() else {
            return Ok(());
        };
        if let Some(other) = request.acknowledged.iter().find(|id| *id != first) {
            return Err(format!(
                "request {}: successful responses carried agent {first} and agent {other}",
                request.key
            ));
        }
        if agents != [first.as_str()] {
            return Err(format!(
                "request {}: acknowledged agent {first}, but committed state has {agents:?} named {:?}",
                request.key, request.name
            ));
        }
        Ok(())
    }

    /// Compares the incrementally kept state with a full scan of committed
    /// state (run once, at the end).
    fn full_scan_agrees(&mut self) -> Result<usize, String> {
        self.refresh()?;
        let Some(mirror) = self.mirror.clone() else {
            return Ok(0);
        };
        let mut txn = mirror.begin().map_err(|error| format!("mirror read: {error}"))?;
        let index: BTreeSet<String> = scan_all(&mut txn, agents_index(), b"", None)
            .map_err(api)?
            .into_iter()
            .map(|(key, _)| String::from_utf8_lossy(&key).into_owned())
            .collect();
        if index != self.committed.index {
            return Err(format!(
                "AGENTS index {index:?} differs from the tracked {:?}",
                self.committed.index
            ));
        }
        let blocks = scan_all(&mut txn, blocks_space(), b"", None).map_err(api)?;
        if blocks.len() != self.committed.blocks.len() {
            return Err(format!(
                "BLOCKS has {} entries, {} tracked",
                blocks.len(),
                self.committed.blocks.len()
            ));
        }
        Ok(self.committed.agents.values().filter(|record| record.is_some()).count())
    }

    /// Both invariants over every agent and request at once (a cross-check
    /// of the incremental checks, at the end of a run).
    fn check_all(&self) -> Result<(), (&'static str, String)> {
        for id in self.committed.agents.keys() {
            self.check_atomic(id).map_err(|error| (AGENT_CREATE_ATOMIC, error))?;
        }
        for key in self.requests.keys() {
            self.check_idempotent(key).map_err(|error| (IDEMPOTENT_CREATE, error))?;
        }
        Ok(())
    }
}

fn node_index(id: &NodeId) -> usize {
    id.as_str().trim_start_matches("node-").parse().unwrap_or(0)
}

fn llm_info() -> LlmInfo {
    LlmInfo {
        model: "none".to_string(),
        endpoint_type: "openai".to_string(),
        endpoint: None,
        context_window: 8192,
    }
}

fn boot(env: NodeEnv, config: OwnershipConfig, ghost: SharedGhost) -> Arc<AgentServerNode> {
    let index = node_index(&env.node_id);
    let driver = OwnershipDriver::start(env.clone(), config);
    let node = Arc::new(AgentServerNode {
        index,
        app: Mutex::new(None),
        ghost: ghost.clone(),
    });
    // The node's own task builds the server once the shared store exists;
    // only a weak handle, so a crash (dropping the node) is not delayed.
    let handle = Arc::downgrade(&node);
    let spawner = env.spawner.clone();
    let _boot = spawner.spawn(
        "agent-server-boot",
        Box::pin(async move {
            let store = loop {
                if let Some(store) = lock(&ghost).store.clone() {
                    break store;
                }
                env.clock.sleep(Duration::from_millis(1)).await;
            };
            let Some(node) = handle.upgrade() else { return };
            let config = ServerConfig::with_data_dir("/kelpie-simulated");
            let app = App::over(
                env,
                store,
                driver,
                None,
                llm_info(),
                ArchivalEmbedder::default(),
                &config,
            );
            *node.app.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(app.clone());
            lock(&ghost).apps.insert(index, app);
        }),
    );
    node
}

/// How one attempt ended.
enum Attempt {
    Done(Value),
    /// Retry (on `owner`, if the error named one).
    Retry {
        crashed: bool,
        deadline: bool,
        owner: Option<usize>,
    },
    Rejected(String),
}

/// Sends one attempt to `app`: the server runs it as a task of its node,
/// as its HTTP route would.
async fn attempt(env: &HarnessEnv, app: &Arc<App>, body: &Bytes, meta: &RequestMeta) -> Attempt {
    let (reply, answer) = oneshot::channel();
    let handler_app = app.clone();
    let handler_body = body.clone();
    let handler_meta = meta.clone();
    let _handler = app.env.spawner.spawn(
        "create-agent-request",
        Box::pin(async move {
            let result = match serde_json::from_slice::<CreateAgentBody>(&handler_body) {
                Ok(request) => ops::create_agent(&handler_app, request, &handler_meta).await,
                Err(error) => Err(ApiError::new(422, error.to_string())),
            };
            let _ = reply.send(result);
        }),
    );
    let retry = |crashed, deadline, owner| Attempt::Retry {
        crashed,
        deadline,
        owner,
    };
    match select(answer, env.clock.sleep(ATTEMPT_DEADLINE)).await {
        Either::Left((Ok(Ok(value)), _)) => Attempt::Done(value),
        // The handler task was dropped: its node crashed (or was down).
        Either::Left((Err(_), _)) => retry(true, false, None),
        Either::Right(((), _)) => retry(false, true, None),
        Either::Left((Ok(Err(error)), _)) => {
            // With an idempotency key every server error is safe to retry;
            // a 409 for a request still running under the key too.
            if error.status >= 500 || (error.status == 409 && error.detail.contains("still running")) {
                let owner = error
                    .detail
                    .split_once("is owned by node ")
                    .map(|(_, owner)| node_index(&NodeId::new(owner.trim()).unwrap_or(NodeId::from_index(0))));
                retry(false, false, owner)
            } else {
                Attempt::Rejected(api(error))
            }
        }
    }
}

async fn client(env: HarnessEnv, ghost: SharedGhost, client: usize, nodes: usize, quiet: Duration) {
    let mut sequence = 0u64;
    loop {
        sequence += 1;
        let key = format!("client{client}-{sequence}");
        let name = format!("agent-{client}-{sequence}");
        let count = usize::try_from(env.rng.in_range(2, 3)).unwrap_or(2);
        let mut blocks: Vec<(String, String)> = LABELS[..count]
            .iter()
            .map(|label| {
                (
                    label.to_string(),
                    format!("{label} of {name}: {}", env.rng.below(1_000_000)),
                )
            })
            .collect();
        let body = json!({
            "name": name,
            "memory_blocks": blocks
                .iter()
                .map(|(label, value)| json!({"label": label, "value": value}))
                .collect::<Vec<Value>>(),
        });
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let meta = RequestMeta::new(METHOD, PATH, &body, Some(&key));
        blocks.sort();
        {
            let mut ghost = lock(&ghost);
            ghost.stats.requests += 1;
            ghost.names.insert(name.clone(), key.clone());
            ghost.pending_requests.insert(key.clone());
            ghost.requests.insert(
                key.clone(),
                Request {
                    key: key.clone(),
                    name,
                    blocks,
                    acknowledged: Vec::new(),
                },
            );
            ghost.dirty = true;
        }
        let mut node = env.rng.below(nodes as u64) as usize;
        let mut attempts = 0u64;
        loop {
            let app = lock(&ghost).apps.get(&node).cloned();
            let Some(app) = app else {
                env.clock.sleep(Duration::from_millis(20)).await;
                node = env.rng.below(nodes as u64) as usize;
                continue;
            };
            attempts += 1;
            lock(&ghost).stats.attempts += 1;
            match attempt(&env, &app, &body, &meta).await {
                Attempt::Done(value) => {
                    let id = value.get("id").and_then(Value::as_str).unwrap_or("").to_string();
                    let responded = Duration::from_nanos(env.clock.now_monotonic().as_nanos());
                    let mut ghost = lock(&ghost);
                    if let Some(request) = ghost.requests.get_mut(&key) {
                        request.acknowledged.push(id);
                    }
                    ghost.pending_requests.insert(key.clone());
                    ghost.stats.acknowledged += 1;
                    if attempts > 1 {
                        ghost.stats.acknowledged_after_retry += 1;
                    }
                    if responded >= quiet {
                        ghost.served_after_quiet.insert(client);
                    }
                    ghost.dirty = true;
                    break;
                }
                Attempt::Retry {
                    crashed,
                    deadline,
                    owner,
                } => {
                    {
                        let mut ghost = lock(&ghost);
                        if crashed {
                            ghost.stats.retried_after_crash += 1;
                        } else if deadline {
                            ghost.stats.retried_after_deadline += 1;
                        } else {
                            ghost.stats.retried_after_error += 1;
                        }
                    }
                    env.clock.sleep(Duration::from_millis(env.rng.in_range(5, 50))).await;
                    node = match owner {
                        Some(owner) if owner < nodes => owner,
                        _ => env.rng.below(nodes as u64) as usize,
                    };
                }
                Attempt::Rejected(error) => {
                    let mut ghost = lock(&ghost);
                    ghost.stats.rejected += 1;
                    if ghost.stats.rejections.len() < 8 {
                        ghost.stats.rejections.push(format!("{key}: {error}"));
                    }
                    break;
                }
            }
        }
        // Think time: few enough agents that a run stays fast (every agent
        // stays active, holding an owner key, for the whole run).
        env.clock.sleep(Duration::from_millis(env.rng.in_range(10, 100))).await;
    }
}

/// An agent-server simulation.
#[derive(Clone, Debug)]
pub struct AgentServerScenario {
    /// Server nodes sharing the store (at least 2).
    pub nodes: usize,
    /// Clients.
    pub clients: usize,
    /// Faults; random ones stop at `faults.quiet_after`.
    pub faults: FaultConfig,
    /// Lease timing of the nodes' ownership drivers.
    pub config: OwnershipConfig,
    /// Virtual time to run.
    pub max_virtual_time: Duration,
    /// Keep the whole trace in the report.
    pub keep_trace: bool,
}

impl Default for AgentServerScenario {
    fn default() -> Self {
        Self {
            nodes: 3,
            clients: 3,
            // The runtime scenario's faults, with crashes twice as often:
            // BUG-001 and BUG-002 are crash-and-retry defects.
            faults: single_activation_faults().with(FaultKind::NodeCrash, 0.02),
            config: lease_timing(),
            // Faults for 7 s; liveness judged from 7 + 3 + 2 = 12 s on.
            max_virtual_time: Duration::from_secs(14),
            keep_trace: false,
        }
    }
}

/// What a run showed beyond the invariants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentServerCoverage {
    /// Logical create requests (idempotency keys) issued.
    pub requests: u64,
    /// Attempts sent to a node.
    pub attempts: u64,
    /// Requests acknowledged.
    pub acknowledged: u64,
    /// Requests acknowledged after more than one attempt.
    pub acknowledged_after_retry: u64,
    /// Attempts lost to a node crash (the handler dropped), then retried.
    pub retried_after_crash: u64,
    /// Attempts that timed out on the client, then retried.
    pub retried_after_deadline: u64,
    /// Attempts answered with a retryable error (5xx, 409 still running).
    pub retried_after_error: u64,
    /// Requests rejected with a client error (4xx), never retried.
    pub rejected: u64,
    /// The first few rejections, for the report.
    pub rejections: Vec<String>,
    /// Agents in committed state at the end.
    pub agents_committed: usize,
    /// Clients with a create acknowledged after faults stopped (+ the
    /// longest fault + 2 TTL).
    pub served_after_quiet: usize,
}

impl AgentServerScenario {
    /// Runs the scenario with `seed`.
    pub fn run(&self, seed: u64) -> Result<(SimReport, AgentServerCoverage), Box<SimFailure>> {
        let ghost: SharedGhost = Arc::default();
        let config = self.config;
        let nodes = self.nodes;
        let quiet = liveness_from(&self.faults, &config, self.max_virtual_time);
        let boot_ghost = ghost.clone();
        let store_ghost = ghost.clone();
        let mut simulation = Simulation::new(seed)
            .nodes(self.nodes, move |env| boot(env, config, boot_ghost.clone()))
            .faults(self.faults.clone())
            .max_virtual_time(self.max_virtual_time)
            .keep_trace(self.keep_trace)
            .harness("shared-store", move |env| {
                Box::pin(async move {
                    let mirror_engine = Arc::new(MemoryEngine::new());
                    // Weak: the ghost keeps the store, which keeps this.
                    let observed = Arc::downgrade(&store_ghost);
                    let copy = mirror_engine.clone();
                    let engine = FaultyEngine::new(
                        env.faults.clone(),
                        Arc::new(move |writes| {
                            if let Some(ghost) = observed.upgrade() {
                                lock(&ghost).applied(&copy, writes);
                            }
                        }),
                    );
                    let store = Store::new(Arc::new(engine), env.spawner.clone());
                    let mirror = Store::new(mirror_engine as Arc<dyn Engine>, env.spawner.clone());
                    let mut ghost = lock(&store_ghost);
                    ghost.store = Some(store);
                    ghost.mirror = Some(mirror);
                })
            });
        for index in 0..self.clients {
            let client_ghost = ghost.clone();
            simulation = simulation.harness("client", move |env| {
                Box::pin(client(env, client_ghost, index, nodes, quiet))
            });
        }
        let atomic_ghost = ghost.clone();
        let idempotent_ghost = ghost.clone();
        let report = simulation
            .invariant(AGENT_CREATE_ATOMIC, move |_| lock(&atomic_ghost).verdict().atomic)
            .invariant(IDEMPOTENT_CREATE, move |_| lock(&idempotent_ghost).verdict().idempotent)
            .run()?;
        super::assert_ghost_released(&ghost, seed);
        let mut ghost = lock(&ghost);
        // The harness's own consistency: a mismatch is a bug of this file.
        let agents_committed = match ghost.full_scan_agrees() {
            Ok(count) => count,
            Err(error) => panic!("seed {seed}: the tracked committed state is wrong: {error}"),
        };
        ghost
            .check_all()
            .map_err(|(invariant, message)| after_run_failure(&report, invariant, message))?;
        let stats = &ghost.stats;
        let coverage = AgentServerCoverage {
            requests: stats.requests,
            attempts: stats.attempts,
            acknowledged: stats.acknowledged,
            acknowledged_after_retry: stats.acknowledged_after_retry,
            retried_after_crash: stats.retried_after_crash,
            retried_after_deadline: stats.retried_after_deadline,
            retried_after_error: stats.retried_after_error,
            rejected: stats.rejected,
            rejections: stats.rejections.clone(),
            agents_committed,
            served_after_quiet: ghost.served_after_quiet.len(),
        };
        if coverage.served_after_quiet < self.clients {
            let waiting: Vec<usize> = (0..self.clients)
                .filter(|client| !ghost.served_after_quiet.contains(client))
                .collect();
            return Err(after_run_failure(
                &report,
                CREATE_EVENTUALLY_SUCCEEDS,
                format!(
                    "clients {waiting:?} got no create acknowledged from {:.3}s (faults stopped) to {:.3}s",
                    quiet.as_secs_f64(),
                    report.virtual_time.as_secs_f64()
                ),
            ));
        }
        Ok((report, coverage))
    }
}

/// A failure judged after the run (liveness, the final cross-check),
/// reported like a violation at the run's last step.
fn after_run_failure(report: &SimReport, invariant: &'static str, message: String) -> Box<SimFailure> {
    let tail = report
        .trace
        .as_ref()
        .map(|trace| trace[trace.len().saturating_sub(crate::simulation::TRACE_TAIL_EVENTS)..].to_vec())
        .unwrap_or_default();
    Box::new(SimFailure {
        seed: report.seed,
        step: report.steps,
        virtual_time: report.virtual_time,
        kind: FailureKind::InvariantViolated { invariant, message },
        trace_tail: tail,
        faults: report.faults.clone(),
        trace_hash: report.trace_hash.clone(),
    })
}
