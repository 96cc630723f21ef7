//! The runtime on one node (tokio, in-memory store and coordination):
//! activation, state, idempotency, supervision, mailbox bounds, replay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use kelpie_core::clock::SystemClock;
use kelpie_core::coordination::MemoryCoordinationStore;
use kelpie_core::disk::OsDisk;
use kelpie_core::rng::SeededRng;
use kelpie_core::spawn::TokioSpawner;
use kelpie_core::transport::NoTransport;
use kelpie_core::{ActorId, NodeEnv, NodeId};
use kelpie_runtime::driver::OwnershipDriver;
use kelpie_runtime::ownership::OwnershipConfig;
use kelpie_runtime::runtime::{Actor, ActorContext, HandlerError, InvokeError, InvokeOptions, Runtime, RuntimeConfig};
use kelpie_storage::journal::{AppendOutcome, Journal};
use kelpie_storage::{MemoryEngine, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum CounterMessage {
    Add(u64),
    Get,
    Panic,
    Fail,
    Slow(u64),
}

#[derive(Default)]
struct Counter {
    executions: AtomicU64,
}

impl Actor for Counter {
    type State = u64;
    type Message = CounterMessage;
    type Reply = u64;

    fn handle<'a>(
        &'a self,
        ctx: &'a mut ActorContext<'_>,
        state: &'a mut u64,
        message: CounterMessage,
    ) -> BoxFuture<'a, Result<u64, HandlerError>> {
        Box::pin(async move {
            self.executions.fetch_add(1, Ordering::SeqCst);
            match message {
                CounterMessage::Add(amount) => {
                    *state += amount;
                    ctx.put(b"last-add", Bytes::from(amount.to_string()))
                        .map_err(|error| HandlerError::new(error.to_string()))?;
                    Ok(*state)
                }
                CounterMessage::Get => Ok(*state),
                CounterMessage::Panic => {
                    *state += 1_000;
                    ctx.put(b"last-add", Bytes::from_static(b"from the panicking handler"))
                        .map_err(|error| HandlerError::new(error.to_string()))?;
                    panic!("counter exploded")
                }
                CounterMessage::Fail => Err(HandlerError::new("refused")),
                CounterMessage::Slow(ms) => {
                    #[allow(clippy::disallowed_methods)] // A test handler that takes real time.
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(*state)
                }
            }
        })
    }
}

struct Node {
    runtime: Runtime<Counter>,
    store: Store,
}

fn node(config: RuntimeConfig) -> Node {
    let engine = Arc::new(MemoryEngine::new());
    let (runtime, store) = runtime_on(engine, Counter::default(), config);
    Node { runtime, store }
}

/// A single-node runtime for `actor` over `engine` (tokio, in-memory
/// coordination, 10 s leases), with its store.
fn runtime_on<A: Actor>(
    engine: Arc<dyn kelpie_storage::Engine>,
    actor: A,
    config: RuntimeConfig,
) -> (Runtime<A>, Store) {
    let clock = Arc::new(SystemClock::new());
    let env = NodeEnv {
        node_id: NodeId::from_index(0),
        clock: clock.clone(),
        rng: Arc::new(SeededRng::from_seed(1)),
        spawner: Arc::new(TokioSpawner::current().expect("runtime")),
        disk: Arc::new(OsDisk::open_dir(std::env::temp_dir()).expect("disk")),
        transport: Arc::new(NoTransport::new(NodeId::from_index(0))),
        coordination: Arc::new(MemoryCoordinationStore::new(clock)),
    };
    let store = Store::new(engine, env.spawner.clone());
    let ownership_config = OwnershipConfig::new(
        Duration::from_secs(10),
        Duration::from_secs(3),
        Duration::from_millis(500),
    )
    .expect("valid");
    let ownership = OwnershipDriver::start(env.clone(), ownership_config);
    (Runtime::new(env, actor, store.clone(), ownership, config), store)
}

fn counter(key: &str) -> ActorId {
    ActorId::new("counter", key).expect("valid")
}

fn options() -> InvokeOptions {
    InvokeOptions::default()
}

// Paused tokio time: the idle timeout elapses exactly, however loaded the machine.
#[tokio::test(start_paused = true)]
async fn an_idle_timer_that_fires_during_a_slow_invocation_still_deactivates_the_actor() {
    let mut config = RuntimeConfig::new("counter");
    config.idle_timeout = Duration::from_millis(20);
    let node = node(config);
    let a = counter("a");
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Add(1), options()).await, Ok(1));
    // The idle timer fires while the handler awaits: its wake-up is taken
    // by the handler's await, and the actor must still notice it.
    assert_eq!(
        node.runtime.invoke(&a, CounterMessage::Slow(50), options()).await,
        Ok(1)
    );
    #[allow(clippy::disallowed_methods)] // Let time pass for the idle timeout.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node.runtime.active(), Vec::<ActorId>::new());
    assert_eq!(node.runtime.stats().deactivations, 1);
}

// Paused tokio time: the idle timeout elapses exactly, however loaded the machine.
#[tokio::test(start_paused = true)]
async fn idle_time_counts_from_the_end_of_the_last_invocation() {
    let mut config = RuntimeConfig::new("counter");
    config.idle_timeout = Duration::from_millis(40);
    let node = node(config);
    let a = counter("a");
    // Handling takes 100 ms, longer than the idle timeout (an LLM call,
    // say): the actor stays active for an idle period after it ends.
    assert_eq!(
        node.runtime.invoke(&a, CounterMessage::Slow(100), options()).await,
        Ok(0)
    );
    #[allow(clippy::disallowed_methods)] // Let time pass, short of the idle timeout.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(node.runtime.active(), vec![a.clone()]);
    #[allow(clippy::disallowed_methods)] // Past the idle timeout.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(node.runtime.active(), Vec::<ActorId>::new());
    assert_eq!(node.runtime.stats().deactivations, 1);
}

// Paused tokio time: the idle timeout elapses exactly, however loaded the machine.
#[tokio::test(start_paused = true)]
async fn state_persists_across_invocations_and_deactivation() {
    let mut config = RuntimeConfig::new("counter");
    config.idle_timeout = Duration::from_millis(20);
    let node = node(config);
    let a = counter("a");
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Add(2), options()).await, Ok(2));
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Add(3), options()).await, Ok(5));
    assert_eq!(node.runtime.active(), vec![a.clone()]);
    // Idle: deactivated, then reactivated from storage.
    #[allow(clippy::disallowed_methods)] // Let real time pass for the idle timeout.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(node.runtime.active(), Vec::<ActorId>::new());
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Get, options()).await, Ok(5));
    let stats = node.runtime.stats();
    assert_eq!((stats.activations, stats.deactivations), (2, 1));
    let mut txn = node.store.begin().expect("begin");
    assert_eq!(txn.get(&a, b"last-add"), Ok(Some(Bytes::from_static(b"3"))));
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_return_the_first_reply() {
    let node = node(RuntimeConfig::new("counter"));
    let a = counter("a");
    let keyed = InvokeOptions {
        idempotency_key: Some("req-1".into()),
        ..options()
    };
    assert_eq!(
        node.runtime.invoke(&a, CounterMessage::Add(7), keyed.clone()).await,
        Ok(7)
    );
    assert_eq!(
        node.runtime.invoke(&a, CounterMessage::Add(7), keyed.clone()).await,
        Ok(7)
    );
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Get, options()).await, Ok(7));
    assert_eq!(node.runtime.stats().handled, 2, "the retry did not run the handler");
    // A recorded handler error is returned again too.
    let failing = InvokeOptions {
        idempotency_key: Some("req-2".into()),
        ..options()
    };
    let expected = Err(InvokeError::Handler(HandlerError::new("refused")));
    assert_eq!(
        node.runtime.invoke(&a, CounterMessage::Fail, failing.clone()).await,
        expected
    );
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Fail, failing).await, expected);
}

#[tokio::test]
async fn a_panicking_handler_fails_one_invocation_and_the_actor_goes_on() {
    let node = node(RuntimeConfig::new("counter"));
    let (a, b) = (counter("a"), counter("b"));
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Add(1), options()).await, Ok(1));
    assert_eq!(
        node.runtime.invoke(&b, CounterMessage::Add(10), options()).await,
        Ok(10)
    );
    assert_eq!(
        node.runtime.invoke(&a, CounterMessage::Panic, options()).await,
        Err(InvokeError::HandlerPanicked {
            message: "counter exploded".into()
        })
    );
    // The panic's state change (+1000) and its write were discarded.
    let mut txn = node.store.begin().expect("begin");
    assert_eq!(txn.get(&a, b"last-add"), Ok(Some(Bytes::from_static(b"1"))));
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Add(1), options()).await, Ok(2));
    assert_eq!(node.runtime.invoke(&b, CounterMessage::Get, options()).await, Ok(10));
    assert_eq!(node.runtime.stats().panics, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_is_overloaded_and_messages_run_in_arrival_order() {
    let mut config = RuntimeConfig::new("counter");
    config.mailbox_depth = 2;
    let node = Arc::new(node(config));
    let a = counter("a");
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Get, options()).await, Ok(0));
    // One message in the handler, two queued: a fourth concurrent caller overflows.
    let mut pending = Vec::new();
    for _ in 0..4 {
        let node = node.clone();
        let a = a.clone();
        #[allow(clippy::disallowed_methods)] // Concurrent callers in a test.
        pending.push(tokio::spawn(async move {
            node.runtime.invoke(&a, CounterMessage::Slow(200), options()).await
        }));
    }
    let mut results = Vec::new();
    for handle in pending {
        results.push(handle.await.expect("caller"));
    }
    let overloaded = results
        .iter()
        .filter(|result| **result == Err(InvokeError::Overloaded { actor: a.clone() }))
        .count();
    let served = results.iter().filter(|result| **result == Ok(0)).count();
    // Exactly how many are queued before the handler picks the first one up
    // depends on thread timing: 3 served + 1 refused, or 2 + 2.
    assert_eq!(served + overloaded, 4, "{results:?}");
    assert!(overloaded >= 1 && served >= 2, "{results:?}");
    // Arrival order: each add sees the previous.
    for expected in 1..=5u64 {
        assert_eq!(
            node.runtime.invoke(&a, CounterMessage::Add(1), options()).await,
            Ok(expected)
        );
    }
}

#[tokio::test]
async fn pending_journal_entries_are_replayed_once_on_activation() {
    let node = node(RuntimeConfig::new("counter"));
    let a = counter("a");
    // A crash left an appended, never completed invocation behind.
    let journal = Journal::new(
        node.store.clone(),
        Arc::new(SystemClock::new()),
        Duration::from_secs(60),
    );
    let payload = Bytes::from(serde_json::to_vec(&CounterMessage::Add(5)).expect("encode"));
    let appended = journal
        .append(&a, Some("crashed"), payload, None)
        .await
        .expect("append");
    assert!(matches!(appended, AppendOutcome::Appended(_)));
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Get, options()).await, Ok(5));
    assert_eq!(node.runtime.stats().replayed, 1);
    // The client retrying the crashed request gets the replayed result.
    let retry = InvokeOptions {
        idempotency_key: Some("crashed".into()),
        ..options()
    };
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Add(5), retry).await, Ok(5));
    assert_eq!(journal.pending(&a), Ok(vec![]));
}

#[tokio::test]
async fn bad_invocations_are_typed_errors() {
    let node = node(RuntimeConfig::new("counter"));
    let other = ActorId::new("agents", "x").expect("valid");
    assert_eq!(
        node.runtime.invoke(&other, CounterMessage::Get, options()).await,
        Err(InvokeError::WrongNamespace {
            actor: other.clone(),
            namespace: "counter".into()
        })
    );
    let slow = InvokeOptions {
        deadline: Some(Duration::from_millis(10)),
        ..options()
    };
    assert_eq!(
        node.runtime
            .invoke(&counter("a"), CounterMessage::Slow(200), slow)
            .await,
        Err(InvokeError::DeadlineExceeded { deadline_ms: 10 })
    );
    node.runtime.shutdown().await;
    assert_eq!(
        node.runtime.invoke(&counter("a"), CounterMessage::Get, options()).await,
        Err(InvokeError::ShuttingDown)
    );
}

#[tokio::test]
async fn an_invocation_without_a_deadline_waits_for_a_slow_reply() {
    let node = node(RuntimeConfig::new("counter"));
    let a = counter("a");
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Add(7), options()).await, Ok(7));
    let patient = InvokeOptions {
        deadline: None,
        ..options()
    };
    // Longer than the 10 ms deadline that fails the same message above.
    assert_eq!(
        node.runtime.invoke(&a, CounterMessage::Slow(60), patient.clone()).await,
        Ok(7)
    );
    assert_eq!(node.runtime.invoke(&a, CounterMessage::Add(1), patient).await, Ok(8));
}

#[tokio::test]
async fn a_single_node_restart_keeps_fencing_tokens_increasing() {
    use kelpie_storage::EmbeddedEngine;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = counter("a");
    let mut previous_token = 0u64;
    for (round, expected) in [(0u64, 1u64), (1, 2), (2, 3)] {
        let clock = Arc::new(SystemClock::new());
        let spawner: kelpie_core::spawn::SharedSpawner = Arc::new(TokioSpawner::current().expect("runtime"));
        let engine = Arc::new(EmbeddedEngine::open_dir(dir.path()).expect("open"));
        let store = Store::new(engine, spawner.clone());
        // What a node does at start-up: continue revisions above every
        // fencing token already installed, so a new owner is never "stale"
        // and never reuses an old token.
        let highest = store.begin().expect("begin").highest_fence_token().expect("scan");
        assert_eq!(highest, previous_token, "round {round}");
        let coordination =
            MemoryCoordinationStore::starting_after(clock.clone(), i64::try_from(highest).expect("fits"));
        let env = NodeEnv {
            node_id: NodeId::from_index(0),
            clock,
            rng: Arc::new(SeededRng::from_seed(round)),
            spawner,
            disk: Arc::new(OsDisk::open_dir(dir.path()).expect("disk")),
            transport: Arc::new(NoTransport::new(NodeId::from_index(0))),
            coordination: Arc::new(coordination),
        };
        let config = OwnershipConfig::new(
            Duration::from_secs(10),
            Duration::from_secs(3),
            Duration::from_millis(500),
        )
        .expect("valid");
        let ownership = OwnershipDriver::start(env.clone(), config);
        let runtime = Runtime::new(
            env,
            Counter::default(),
            store.clone(),
            ownership,
            RuntimeConfig::new("counter"),
        );
        assert_eq!(
            runtime.invoke(&a, CounterMessage::Add(1), options()).await,
            Ok(expected)
        );
        let token = store
            .begin()
            .expect("begin")
            .fence_token(&a)
            .expect("read")
            .expect("installed");
        let token = u64::from_be_bytes(token.as_ref().try_into().expect("8 bytes"));
        assert!(
            token > previous_token,
            "round {round}: token {token} after {previous_token}"
        );
        previous_token = token;
        runtime.shutdown().await;
        store.close();
        // Let the committer release the database file before the next round.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }
}

/// State whose encoding panics once when it reaches 13: the panic happens
/// in the runtime's own code (after the handler returned), so it kills the
/// actor's task instead of failing one invocation.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
struct FragileState(u64);

static FRAGILE_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

impl Serialize for FragileState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 && FRAGILE_ARMED.swap(false, Ordering::SeqCst) {
            panic!("state encoder exploded");
        }
        serializer.serialize_newtype_struct("FragileState", &self.0)
    }
}

struct Fragile;

impl Actor for Fragile {
    type State = FragileState;
    type Message = u64;
    type Reply = u64;

    fn handle<'a>(
        &'a self,
        _ctx: &'a mut ActorContext<'_>,
        state: &'a mut FragileState,
        add: u64,
    ) -> BoxFuture<'a, Result<u64, HandlerError>> {
        Box::pin(async move {
            state.0 += add;
            Ok(state.0)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_actor_task_is_restarted_and_no_acknowledged_invocation_is_lost() {
    let (runtime, _store) = runtime_on(Arc::new(MemoryEngine::new()), Fragile, RuntimeConfig::new("fragile"));
    let actor = ActorId::new("fragile", "f").expect("valid");
    let keyed = |key: &str| InvokeOptions {
        idempotency_key: Some(key.to_string()),
        ..InvokeOptions::default()
    };
    // Acknowledged: 10.
    assert_eq!(runtime.invoke(&actor, 10, keyed("k1")).await, Ok(10));
    // 10 + 3 = 13: encoding the new state panics inside the actor's task,
    // which dies with the invocation journaled but not completed. The
    // caller gets a retryable error: the outcome is unknown to it.
    let died = runtime.invoke(&actor, 3, keyed("k2")).await;
    assert_eq!(
        died,
        Err(InvokeError::Unavailable {
            actor: actor.clone(),
            reason: "actor task stopped".into()
        })
    );
    assert!(died.expect_err("failed").is_retryable());
    assert_eq!((runtime.stats().activations, runtime.stats().task_failures), (1, 1));
    // The dead task's actor was released and deregistered.
    assert_eq!(runtime.active(), Vec::<ActorId>::new());
    // The retry starts a new task, which replays the pending entry once
    // (now the encoder works) and returns its recorded result.
    assert_eq!(runtime.invoke(&actor, 3, keyed("k2")).await, Ok(13));
    let stats = runtime.stats();
    assert_eq!((stats.activations, stats.replayed), (2, 1));
    // The acknowledged invocation's effect is there, and nothing ran twice.
    assert_eq!(runtime.invoke(&actor, 0, InvokeOptions::default()).await, Ok(13));
    assert_eq!(runtime.invoke(&actor, 1, InvokeOptions::default()).await, Ok(14));
}

/// An engine whose next write is applied but reported failed, and whose next
/// snapshot after that fails: the runtime cannot tell whether its commit
/// happened, nor reload the state.
#[derive(Default)]
struct LostAnswer {
    inner: MemoryEngine,
    armed: std::sync::atomic::AtomicBool,
    fail_snapshot: std::sync::atomic::AtomicBool,
}

impl kelpie_storage::Engine for LostAnswer {
    fn snapshot(&self) -> Result<Box<dyn kelpie_storage::engine::Snapshot>, kelpie_storage::StorageError> {
        if self.fail_snapshot.swap(false, Ordering::SeqCst) {
            return Err(kelpie_storage::StorageError::Io {
                message: "read failed".into(),
            });
        }
        self.inner.snapshot()
    }

    fn write(&self, body: kelpie_storage::engine::WriteBody<'_>) -> Result<(), kelpie_storage::StorageError> {
        self.inner.write(body)?;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.fail_snapshot.store(true, Ordering::SeqCst);
            return Err(kelpie_storage::StorageError::Io {
                message: "answer lost".into(),
            });
        }
        Ok(())
    }

    fn is_durable(&self) -> bool {
        false
    }
}

#[tokio::test(start_paused = true)]
async fn a_commit_of_unknown_outcome_that_cannot_be_reloaded_deactivates_the_actor() {
    let engine = Arc::new(LostAnswer::default());
    let (runtime, _store) = runtime_on(engine.clone(), Counter::default(), RuntimeConfig::new("counter"));
    let a = counter("a");
    assert_eq!(runtime.invoke(&a, CounterMessage::Add(1), options()).await, Ok(1));
    engine.armed.store(true, Ordering::SeqCst);
    // The commit of +1 is applied but reported failed, and the reload fails:
    // the actor must not go on from its in-memory 1.
    assert_eq!(
        runtime.invoke(&a, CounterMessage::Add(1), options()).await,
        Err(InvokeError::Unavailable {
            actor: a.clone(),
            reason: "commit outcome unknown and the state could not be reloaded; deactivating".into()
        })
    );
    // A fresh activation reads the durable 2: no lost update.
    assert_eq!(runtime.invoke(&a, CounterMessage::Add(1), options()).await, Ok(3));
    assert_eq!(runtime.stats().activations, 2);
}
