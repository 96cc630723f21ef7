//! `KelpieAgentCreate` (specs/tla/KelpieAgentCreate.tla) as a Stateright
//! model on the production server: every attempt runs the server's own
//! `ops::create_agent` (the code `POST /v1/agents` runs) on a real `App` —
//! its agent, block and tool runtimes, the ownership driver and the store —
//! single-node, on a step-by-step executor with a clock that stands still.
//!
//! One request (two memory blocks, one `Idempotency-Key`); the client sends
//! it, resends it after its connection drops and may send it again after a
//! success (a proxy's retry), up to [`MAX_ATTEMPTS`] times. Actions (the
//! spec's): `Retry { crash_after }` — the client sends the request; with
//! `crash_after: Some(k)`, the server process dies under it once `k` of its
//! invocations were answered (the spec's `Crash`: the attempt is lost, what
//! committed stays), and a new process boots over the same store, as
//! `App::open` does (its coordination store starts above every installed
//! fence, so the next attempt claims the agent's actor, fences it, loads
//! its state and answers from the journal's completed entry); else it runs
//! to its `Reply`. Enumerating every `k` up to the
//! plan's length cuts an attempt between any two of its invocations (the
//! spec's `Invoke` steps).
//!
//! As in kelpie-spec's durability model, a state is the action log plus
//! what the production code answered; each step replays the log on a fresh
//! store and server, so the executor's tasks need not be cloned.
//!
//! Properties, read from committed store state with the server's own
//! record types: `always` `AgentCreateAtomic` (every indexed agent has its
//! record, and lists exactly the requested blocks, each in BLOCKS with its
//! value) and `IdempotentCreate` (at most one agent exists, every response
//! is a success, and every one names that agent); `sometimes` `CreatedAfterCrash` (a retry
//! after a crash got the agent) and `CrashedAfterCommit` (a crash lost a
//! response whose create had committed).
//!
//! Under `bug-server-nonatomic-create` the model finds `AgentCreateAtomic`
//! (the bare agent commits first); under `bug-server-ignore-idempotency-key`
//! it finds `IdempotentCreate` (the request sent twice creates a second
//! agent; so does a retry after a crash lost the response, which a test
//! replays).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use kelpie_core::clock::SharedClock;
use kelpie_core::coordination::MemoryCoordinationStore;
use kelpie_core::rng::SeededRng;
use kelpie_core::transport::NoTransport;
use kelpie_core::{NodeEnv, NodeId};
use kelpie_runtime::driver::OwnershipDriver;
use kelpie_runtime::ownership::OwnershipConfig;
use kelpie_server::agent::ArchivalEmbedder;
use kelpie_server::app::{read_agent, read_json, scan_all, space, App, RequestMeta};
use kelpie_server::config::ServerConfig;
use kelpie_server::ops::{self, CreateAgentBody};
use kelpie_server::records::{StoredBlock, AGENTS, BLOCKS};
use kelpie_server::render::LlmInfo;
use kelpie_spec::check;
use kelpie_spec::common::{StepSpawner, StillClock};
use kelpie_spec::memdisk::MemDisk;
use kelpie_storage::{MemoryEngine, Store};
use serde_json::{json, Value};
use stateright::{Model, Property};

/// Attempts the client makes at most (the spec's MaxAttempts).
const MAX_ATTEMPTS: usize = 3;
/// More invocations than any create plan answers (a plan that needs more
/// fails the model, so no cut point is missed).
const PLAN_MAX: u8 = 6;
/// The requested blocks: (label, value).
const BLOCKS_REQUESTED: [(&str, &str); 2] = [("human", "Ann"), ("persona", "helpful")];
const NAME: &str = "model-agent";
const CLIENT_KEY: &str = "create-1";

/// An action: the client sends the request; the server crashes under it
/// after `crash_after` answered invocations, or runs it to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    Retry { crash_after: Option<u8> },
}

/// What the production code answered along the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct View {
    /// Attempts sent.
    attempts: usize,
    /// Agent ids in successful responses.
    acked: Vec<String>,
    /// Error responses (status, detail).
    errors: Vec<(u16, String)>,
    /// Committed agents: id -> its block labels and values (None: indexed
    /// without a record, or a record without an index entry).
    agents: BTreeMap<String, Option<Vec<(String, String)>>>,
    /// Attempts a crash cut.
    crashes: usize,
    /// A crash cut an attempt whose create had committed.
    crashed_after_commit: bool,
    /// A response after a crash.
    acked_after_crash: bool,
    /// The last action's cut fell after the attempt had ended (the same as
    /// the action without a crash).
    redundant: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    log: Vec<Action>,
    view: View,
}

/// A single-node server on the step executor.
struct Server {
    spawner: Arc<StepSpawner>,
    app: Arc<App>,
    store: Store,
}

/// Boots a server process over `engine` (the durable store, which outlives
/// the process), as `App::open` does: the in-process coordination store
/// starts above every fencing token already installed, so the new
/// process's claims fence out the old one's.
fn boot(engine: &Arc<MemoryEngine>, boot_number: u64) -> Server {
    let spawner = Arc::new(StepSpawner::default());
    let clock: SharedClock = Arc::new(StillClock);
    let node = NodeId::new("model-node").expect("a valid node id");
    let store = Store::new(engine.clone(), spawner.clone());
    let highest = store
        .begin()
        .and_then(|mut txn| txn.highest_fence_token())
        .expect("the store reads its fences");
    let env = NodeEnv {
        transport: Arc::new(NoTransport::new(node.clone())),
        coordination: Arc::new(MemoryCoordinationStore::starting_after(
            clock.clone(),
            i64::try_from(highest).expect("a small token"),
        )),
        node_id: node,
        clock,
        rng: Arc::new(SeededRng::from_seed(7 + boot_number)),
        spawner: spawner.clone(),
        disk: Arc::new(MemDisk::new()),
    };
    let ownership = OwnershipDriver::start(
        env.clone(),
        OwnershipConfig::new(
            std::time::Duration::from_millis(2_000),
            std::time::Duration::from_millis(500),
            std::time::Duration::from_millis(100),
        )
        .expect("valid lease timing"),
    );
    let llm_info = LlmInfo {
        model: "none".to_string(),
        endpoint_type: "openai".to_string(),
        endpoint: None,
        context_window: 8192,
    };
    let config = ServerConfig::with_data_dir("/kelpie-model");
    let app = App::over(
        env,
        store.clone(),
        ownership,
        None,
        llm_info,
        ArchivalEmbedder::default(),
        &config,
    );
    Server { spawner, app, store }
}

impl Server {
    /// Runs every task and blocking item until nothing is left to do.
    fn settle(&self) {
        for _ in 0..64 {
            self.spawner.run_tasks();
            while self.spawner.run_blocking() {
                self.spawner.run_tasks();
            }
        }
    }

    fn answered(&self) -> u64 {
        self.app
            .runtime_stats()
            .iter()
            .map(|(_, _, stats)| stats.answered)
            .sum()
    }

    /// One attempt; `None` if a crash cut it.
    fn attempt(&self, crash_after: Option<u8>) -> Option<Result<Value, (u16, String)>> {
        let body: CreateAgentBody = serde_json::from_value(request_body()).expect("a valid body");
        let bytes = serde_json::to_vec(&request_body()).expect("encodable");
        let meta = RequestMeta::new("POST", "/v1/agents", &bytes, Some(CLIENT_KEY));
        let base = self.answered();
        let mut future: LocalBoxFuture<'_, _> = Box::pin(ops::create_agent(&self.app, body, &meta));
        loop {
            if let Some(result) = self.spawner.poll_once(&mut future) {
                self.settle();
                return Some(result.map_err(|error| (error.status, error.detail)));
            }
            self.settle();
            let answered = self.answered() - base;
            assert!(answered <= u64::from(PLAN_MAX), "a plan longer than PLAN_MAX");
            if crash_after.is_some_and(|k| answered >= u64::from(k)) {
                // The process dies here: nothing of it runs again (the
                // caller drops this server and boots another).
                return None;
            }
        }
    }

    /// Committed agents, read back as the simulator's invariants read them.
    fn agents(&self) -> BTreeMap<String, Option<Vec<(String, String)>>> {
        let mut txn = self.store.begin().expect("a snapshot");
        let index: BTreeSet<String> = scan_all(&mut txn, space(&AGENTS), b"", None)
            .expect("the AGENTS index")
            .into_iter()
            .map(|(key, _)| String::from_utf8_lossy(&key).into_owned())
            .collect();
        let mut agents = BTreeMap::new();
        for id in index {
            let blocks = read_agent(&mut txn, &id).ok().map(|record| {
                let mut blocks: Vec<(String, String)> = record
                    .block_ids
                    .iter()
                    .map(|block_id| {
                        read_json::<StoredBlock>(&mut txn, space(&BLOCKS), block_id.as_bytes())
                            .expect("a readable block")
                            .map_or_else(
                                || ("<missing>".to_string(), block_id.clone()),
                                |block| (block.label, block.value),
                            )
                    })
                    .collect();
                blocks.sort();
                blocks
            });
            agents.insert(id, blocks);
        }
        agents
    }
}

fn request_body() -> Value {
    json!({
        "name": NAME,
        "memory_blocks": BLOCKS_REQUESTED
            .iter()
            .map(|(label, value)| json!({"label": label, "value": value}))
            .collect::<Vec<_>>(),
        "include_base_tools": false,
    })
}

fn requested() -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = BLOCKS_REQUESTED
        .iter()
        .map(|(label, value)| (label.to_string(), value.to_string()))
        .collect();
    blocks.sort();
    blocks
}

/// Replays `log` on a fresh store and server.
fn replay(log: &[Action]) -> View {
    let engine = Arc::new(MemoryEngine::new());
    let mut boots = 0;
    let mut server = boot(&engine, boots);
    let mut view = View::default();
    for (index, action) in log.iter().enumerate() {
        let Action::Retry { crash_after } = *action;
        view.attempts += 1;
        let before = server.agents();
        let outcome = server.attempt(crash_after);
        view.redundant = index + 1 == log.len() && crash_after.is_some() && outcome.is_some();
        match outcome {
            None => {
                view.crashes += 1;
                view.crashed_after_commit |= server.agents().len() > before.len();
                boots += 1;
                server = boot(&engine, boots);
            }
            Some(Ok(agent)) => {
                if view.crashes > 0 {
                    view.acked_after_crash = true;
                }
                view.acked.push(agent["id"].as_str().unwrap_or("<no id>").to_string());
            }
            Some(Err(error)) => view.errors.push(error),
        }
    }
    view.agents = server.agents();
    view
}

struct KelpieAgentCreate;

impl Model for KelpieAgentCreate {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            log: Vec::new(),
            view: View::default(),
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        // The client may send the request again even after a success (a
        // proxy's retry): every response must name the same agent.
        if state.view.attempts >= MAX_ATTEMPTS || state.view.redundant {
            return;
        }
        actions.push(Action::Retry { crash_after: None });
        // Crashes stay below the attempts, so the last attempt can finish.
        if state.view.crashes + 1 < MAX_ATTEMPTS {
            for k in 1..=PLAN_MAX {
                actions.push(Action::Retry { crash_after: Some(k) });
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut log = last.log.clone();
        log.push(action);
        let view = replay(&log);
        Some(State { log, view })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("AgentCreateAtomic", |_: &Self, state: &State| {
                state
                    .view
                    .agents
                    .values()
                    .all(|blocks| blocks.as_ref() == Some(&requested()))
            }),
            Property::always("IdempotentCreate", |_: &Self, state: &State| {
                let view = &state.view;
                view.agents.len() <= 1
                    && view.errors.is_empty()
                    && view.acked.iter().all(|id| view.agents.contains_key(id))
                    && view.acked.windows(2).all(|pair| pair[0] == pair[1])
            }),
            Property::sometimes("CreatedAfterCrash", |_: &Self, state: &State| {
                state.view.acked_after_crash
            }),
            Property::sometimes("CrashedAfterCommit", |_: &Self, state: &State| {
                state.view.crashed_after_commit
            }),
        ]
    }
}

#[cfg(not(any(
    feature = "bug-server-nonatomic-create",
    feature = "bug-server-ignore-idempotency-key"
)))]
#[test]
fn kelpie_agent_create_holds_within_bounds() {
    check::holds_within_bounds("KelpieAgentCreate", KelpieAgentCreate);
}

/// The production plan is one invocation: a crash after it answered lost
/// the response of a committed create, and the retry gets the same agent
/// from the journal.
#[cfg(not(any(
    feature = "bug-server-nonatomic-create",
    feature = "bug-server-ignore-idempotency-key"
)))]
#[test]
fn a_retry_after_a_lost_response_gets_the_same_agent() {
    let crash = Action::Retry { crash_after: Some(1) };
    let view = replay(&[crash, Action::Retry { crash_after: None }]);
    assert!(view.crashed_after_commit, "{view:?}");
    assert_eq!(view.acked.len(), 1, "{view:?}");
    assert_eq!(view.agents.len(), 1, "{view:?}");
    assert_eq!(view.agents.get(&view.acked[0]), Some(&Some(requested())), "{view:?}");
    assert!(view.errors.is_empty(), "{view:?}");
}

#[cfg(feature = "bug-server-nonatomic-create")]
#[test]
fn nonatomic_create_breaks_agent_create_atomic() {
    let path = check::discovers_shortest(KelpieAgentCreate, "AgentCreateAtomic");
    // The bare agent commits first: visible without its blocks.
    assert_eq!(path, vec![Action::Retry { crash_after: Some(1) }]);
}

#[cfg(feature = "bug-server-ignore-idempotency-key")]
#[test]
fn ignoring_the_key_breaks_idempotent_create() {
    let path = check::discovers_shortest(KelpieAgentCreate, "IdempotentCreate");
    // A request sent twice creates two agents.
    let again = Action::Retry { crash_after: None };
    assert_eq!(path, vec![again, again]);
    // So does a retry after a crash lost the response of a committed create.
    let view = replay(&[Action::Retry { crash_after: Some(1) }, again]);
    assert!(view.crashed_after_commit, "{view:?}");
    assert_eq!(view.agents.len(), 2, "{view:?}");
}
