//! Kelpie's actor runtime against raw tokio (mpsc + oneshot), ractor and
//! kameo, all measured in this run on one multi-thread tokio runtime.
//!
//! Every system runs the same trivial counter actor (state `u64`, messages
//! `Add(n)` / `Get`, reply `u64`). The systems do not do the same work:
//! Kelpie commits every invocation that changes state (state and fence
//! check) through its transactional store before it replies, and answers a
//! read only after checking its lease; here that store is the in-memory
//! engine (no fsync), except for cold activations, which load from the
//! embedded durable engine. The peers keep state in memory only.
//!
//! Workloads:
//! - W1: one actor, one sequential caller: ask throughput and latency;
//! - W2: 10,000 actors, 64 concurrent callers asking random actors;
//! - cold: activate never-seen actors (Kelpie: claim, fence and load from the
//!   embedded store; peers: spawn + first ask), 64 callers;
//! - resident bytes per idle actor: RSS growth over 10,000 activations,
//!   each system in a fresh child process (so no system reuses memory
//!   another one freed).
//!
//! After criterion's groups, a separate timed pass measures every system
//! again, W1 and W2 in five rounds with the systems taking turns, and prints
//! each system's median in a summary table with Kelpie's ratio to the best
//! actor framework (ractor, kameo: the target; raw tokio is a
//! reference).
//!
//! Run: `cargo bench -p kelpie-bench --bench runtime`.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
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
use kelpie_runtime::runtime::{Actor, ActorContext, HandlerError, InvokeOptions, Runtime, RuntimeConfig};
use kelpie_storage::{EmbeddedEngine, Engine, MemoryEngine, Store, StoreStats};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};

/// Actors of W2 (and of W1, which asks actor 0 of them).
const ACTORS: usize = 10_000;
/// Concurrent callers (tokio tasks) of W2 and of the cold activations.
const CALLERS: usize = 64;
/// Activations measured per system in the summary's cold pass.
const SUMMARY_COLD: u64 = 2_000;
/// Activations whose RSS growth is divided up in the resident-memory probe.
const RSS_ACTORS: u64 = 10_000;
/// Activations before the probe's first RSS reading (warms up allocator and threads).
const RSS_WARMUP: u64 = 200;
const SUMMARY_W1_ASKS: u64 = 20_000;
const SUMMARY_LATENCY_SAMPLES: usize = 10_000;
const SUMMARY_W2_ASKS: u64 = 64_000;
/// Rounds of the summary's throughput passes, every system once per round
/// in turn; each system's median is reported, so a noisy moment on the
/// machine moves one round of one system, not the table.
const SUMMARY_ROUNDS: usize = 5;
/// W2 state-changing asks over the durable store (each waits for an fsync).
const SUMMARY_W2_DURABLE_ASKS: u64 = 16_000;
/// The child process measuring one system's resident memory gets its name here.
const RSS_PROBE_ENV: &str = "KELPIE_BENCH_RUNTIME_RSS_PROBE";

const KELPIE: &str = "kelpie";
const PEERS: [&str; 3] = ["tokio", "ractor", "kameo"];

/// The counter's messages, in every system.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum CounterMessage {
    Add(u64),
    Get,
}

fn apply(state: &mut u64, message: CounterMessage) -> u64 {
    if let CounterMessage::Add(amount) = message {
        *state += amount;
    }
    *state
}

/// One system under test: a set of actors addressed by index, and fresh
/// never-seen actors on demand.
trait System: Send + Sync + 'static {
    /// Asks actor `actor` (of the set created at start) and waits for the reply.
    fn ask(&self, actor: usize, message: CounterMessage) -> BoxFuture<'_, u64>;
    /// Activates one never-seen actor with its first ask (`Add(1)`).
    fn activate_fresh(&self) -> BoxFuture<'_, ()>;
    /// Stops the actors `activate_fresh` made (where the system can).
    fn clear_fresh(&self) -> BoxFuture<'_, ()>;
}

// ---------------------------------------------------------------- Kelpie

#[derive(Default)]
struct KelpieCounter;

impl Actor for KelpieCounter {
    type State = u64;
    type Message = CounterMessage;
    type Reply = u64;

    fn handle<'a>(
        &'a self,
        _ctx: &'a mut ActorContext<'_>,
        state: &'a mut u64,
        message: CounterMessage,
    ) -> BoxFuture<'a, Result<u64, HandlerError>> {
        Box::pin(async move { Ok(apply(state, message)) })
    }
}

struct Kelpie {
    runtime: Runtime<KelpieCounter>,
    store: Store,
    actors: Vec<ActorId>,
    next_fresh: AtomicU64,
    /// Asks with the default 30 s deadline (a timer per invocation) rather
    /// than none, as the peers' plain asks have.
    with_deadline: AtomicBool,
    _dir: TempDir,
}

fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create a temp dir under /tmp")
}

impl Kelpie {
    /// A single-node runtime over `engine` (built in `dir`), with the ids of
    /// `actors` actors, none activated yet. Must run inside the tokio runtime.
    fn new(engine: Arc<dyn Engine>, dir: TempDir, actors: usize) -> Self {
        let clock = Arc::new(SystemClock::new());
        let env = NodeEnv {
            node_id: NodeId::from_index(0),
            clock: clock.clone(),
            rng: Arc::new(SeededRng::from_seed(1)),
            spawner: Arc::new(TokioSpawner::current().expect("inside the tokio runtime")),
            disk: Arc::new(OsDisk::open_dir(dir.path()).expect("disk")),
            transport: Arc::new(NoTransport::new(NodeId::from_index(0))),
            coordination: Arc::new(MemoryCoordinationStore::new(clock)),
        };
        let store = Store::new(engine, env.spawner.clone());
        let ownership_config = OwnershipConfig::new(
            Duration::from_secs(10),
            Duration::from_secs(3),
            Duration::from_millis(500),
        )
        .expect("valid ownership config");
        let ownership = OwnershipDriver::start(env.clone(), ownership_config);
        let mut config = RuntimeConfig::new("counter");
        // No actor may go idle and deactivate in the middle of the run.
        config.idle_timeout = Duration::from_secs(3600);
        Self {
            runtime: Runtime::new(env, KelpieCounter, store.clone(), ownership, config),
            store,
            actors: (0..actors).map(|i| counter_id(&format!("a{i}"))).collect(),
            next_fresh: AtomicU64::new(0),
            with_deadline: AtomicBool::new(false),
            _dir: dir,
        }
    }

    /// Over the in-memory engine (commits do not fsync).
    fn in_memory(actors: usize) -> Self {
        Self::new(Arc::new(MemoryEngine::new()), temp_dir("kelpie-bench-runtime-"), actors)
    }

    /// Over the embedded durable engine (every commit is fsynced, group
    /// commit), with the ids of `actors` actors.
    fn embedded(actors: usize) -> Self {
        let dir = temp_dir("kelpie-bench-runtime-");
        let engine = Arc::new(EmbeddedEngine::open_dir(dir.path()).expect("open embedded engine"));
        Self::new(engine, dir, actors)
    }

    fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    async fn invoke(&self, actor: &ActorId, message: CounterMessage) -> u64 {
        let options = if self.with_deadline.load(Ordering::Relaxed) {
            InvokeOptions::default()
        } else {
            // Like the peers' asks (ractor `call` without a timeout, kameo
            // `ask`): no deadline timer.
            InvokeOptions {
                deadline: None,
                ..InvokeOptions::default()
            }
        };
        self.runtime
            .invoke(actor, message, options)
            .await
            .expect("kelpie invocation")
    }

    async fn close(&self) {
        self.runtime.shutdown().await;
        self.store.close();
    }
}

fn counter_id(key: &str) -> ActorId {
    ActorId::new("counter", key).expect("valid actor id")
}

impl System for Kelpie {
    fn ask(&self, actor: usize, message: CounterMessage) -> BoxFuture<'_, u64> {
        Box::pin(self.invoke(&self.actors[actor], message))
    }

    fn activate_fresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let n = self.next_fresh.fetch_add(1, Ordering::Relaxed);
            let reply = self
                .invoke(&counter_id(&format!("cold{n}")), CounterMessage::Add(1))
                .await;
            assert_eq!(reply, 1, "a never-seen actor starts at 0");
        })
    }

    fn clear_fresh(&self) -> BoxFuture<'_, ()> {
        // Kelpie's actors stay active (idle) until the idle timeout.
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------- peers

/// A raw tokio actor's mailbox item: the message and where to reply.
type TokioEnvelope = (CounterMessage, oneshot::Sender<u64>);
/// kameo's default bounded mailbox capacity, used for the raw tokio actor too.
const TOKIO_MAILBOX: usize = 64;

mod ractor_peer {
    use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};

    use super::{apply, CounterMessage};

    pub struct Counter;

    pub struct Ask(pub CounterMessage, pub RpcReplyPort<u64>);

    impl ractor::Actor for Counter {
        type Msg = Ask;
        type State = u64;
        type Arguments = ();

        async fn pre_start(&self, _myself: ActorRef<Ask>, _args: ()) -> Result<u64, ActorProcessingErr> {
            Ok(0)
        }

        async fn handle(
            &self,
            _myself: ActorRef<Ask>,
            Ask(message, reply): Ask,
            state: &mut u64,
        ) -> Result<(), ActorProcessingErr> {
            let _ = reply.send(apply(state, message));
            Ok(())
        }
    }
}

mod kameo_peer {
    use kameo::actor::ActorRef;
    use kameo::error::Infallible;
    use kameo::message::{Context, Message};

    use super::{apply, CounterMessage};

    pub struct Counter(pub u64);

    impl kameo::Actor for Counter {
        type Args = Self;
        type Error = Infallible;

        async fn on_start(counter: Self, _actor_ref: ActorRef<Self>) -> Result<Self, Infallible> {
            Ok(counter)
        }
    }

    impl Message<CounterMessage> for Counter {
        type Reply = u64;

        async fn handle(&mut self, message: CounterMessage, _ctx: &mut Context<Self, u64>) -> u64 {
            apply(&mut self.0, message)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Tokio,
    Ractor,
    Kameo,
}

enum PeerRef {
    Tokio(mpsc::Sender<TokioEnvelope>),
    Ractor(ractor::ActorRef<ractor_peer::Ask>),
    Kameo(kameo::actor::ActorRef<kameo_peer::Counter>),
}

impl Peer {
    fn named(name: &str) -> Self {
        match name {
            "tokio" => Peer::Tokio,
            "ractor" => Peer::Ractor,
            "kameo" => Peer::Kameo,
            other => panic!("unknown peer {other}"),
        }
    }

    /// Spawns one counter actor. Must run inside the tokio runtime.
    #[allow(clippy::disallowed_methods)] // the raw tokio peer is a real tokio task
    async fn spawn(self) -> PeerRef {
        match self {
            Peer::Tokio => {
                let (sender, mut receiver) = mpsc::channel::<TokioEnvelope>(TOKIO_MAILBOX);
                tokio::spawn(async move {
                    let mut state = 0;
                    while let Some((message, reply)) = receiver.recv().await {
                        let _ = reply.send(apply(&mut state, message));
                    }
                });
                PeerRef::Tokio(sender)
            }
            Peer::Ractor => {
                let (actor, _join) = ractor::Actor::spawn(None, ractor_peer::Counter, ())
                    .await
                    .expect("spawn ractor actor");
                PeerRef::Ractor(actor)
            }
            Peer::Kameo => PeerRef::Kameo(kameo::Actor::spawn(kameo_peer::Counter(0))),
        }
    }
}

impl PeerRef {
    async fn ask(&self, message: CounterMessage) -> u64 {
        match self {
            PeerRef::Tokio(sender) => {
                let (reply, answer) = oneshot::channel();
                sender.send((message, reply)).await.expect("tokio actor alive");
                answer.await.expect("tokio actor replied")
            }
            PeerRef::Ractor(actor) => match actor
                .call(|reply| ractor_peer::Ask(message, reply), None)
                .await
                .expect("ractor actor alive")
            {
                ractor::rpc::CallResult::Success(reply) => reply,
                other => panic!("ractor call failed: {other:?}"),
            },
            PeerRef::Kameo(actor) => actor.ask(message).await.expect("kameo actor replied"),
        }
    }

    fn stop(self) {
        match self {
            // Dropping the last sender ends the task.
            PeerRef::Tokio(sender) => drop(sender),
            PeerRef::Ractor(actor) => actor.stop(None),
            PeerRef::Kameo(actor) => actor.kill(),
        }
    }
}

struct PeerSystem {
    peer: Peer,
    actors: Vec<PeerRef>,
    fresh: Mutex<Vec<PeerRef>>,
}

impl PeerSystem {
    async fn start(peer: Peer, actors: usize) -> Self {
        let mut refs = Vec::with_capacity(actors);
        for _ in 0..actors {
            refs.push(peer.spawn().await);
        }
        Self {
            peer,
            actors: refs,
            fresh: Mutex::new(Vec::new()),
        }
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, Vec<PeerRef>> {
        self.fresh.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl System for PeerSystem {
    fn ask(&self, actor: usize, message: CounterMessage) -> BoxFuture<'_, u64> {
        Box::pin(self.actors[actor].ask(message))
    }

    fn activate_fresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let actor = self.peer.spawn().await;
            assert_eq!(actor.ask(CounterMessage::Add(1)).await, 1, "a new actor starts at 0");
            self.fresh().push(actor);
        })
    }

    fn clear_fresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let fresh = std::mem::take(&mut *self.fresh());
            for actor in fresh {
                actor.stop();
            }
        })
    }
}

// ---------------------------------------------------------------- workloads

/// A small deterministic generator for each caller's random actor choices.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Runs `work` as one task on the multi-thread runtime and waits for it
/// (so the caller is a worker task like the actors, not the blocked main thread).
#[allow(clippy::disallowed_methods)] // a benchmark spawns real tasks
fn on_runtime<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    runtime.block_on(async move { tokio::spawn(work).await.expect("benchmark task") })
}

/// W1: `count` asks (`Add(1)`) of actor 0, one after another.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn sequential(runtime: &tokio::runtime::Runtime, system: &Arc<dyn System>, count: u64) -> Duration {
    let system = system.clone();
    on_runtime(runtime, async move {
        let start = Instant::now();
        for _ in 0..count {
            std::hint::black_box(system.ask(0, CounterMessage::Add(1)).await);
        }
        start.elapsed()
    })
}

/// W1 latency: `samples` asks of actor 0, each timed; checks every reply
/// is one more than the last. Returns the sorted latencies.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn sampled(runtime: &tokio::runtime::Runtime, system: &Arc<dyn System>, samples: usize) -> Vec<Duration> {
    let system = system.clone();
    on_runtime(runtime, async move {
        let mut latencies = Vec::with_capacity(samples);
        let mut last = system.ask(0, CounterMessage::Get).await;
        for _ in 0..samples {
            let start = Instant::now();
            let reply = system.ask(0, CounterMessage::Add(1)).await;
            latencies.push(start.elapsed());
            assert_eq!(reply, last + 1, "each add sees the previous one");
            last = reply;
        }
        latencies.sort_unstable();
        latencies
    })
}

/// Splits `total` operations over `CALLERS` tasks.
fn share(total: u64, caller: usize) -> u64 {
    let callers = CALLERS as u64;
    total / callers + u64::from((caller as u64) < total % callers)
}

/// W2: `count` asks (`Add(1)`) spread over `CALLERS` concurrent tasks, each
/// choosing random actors among `ACTORS`.
fn concurrent(runtime: &tokio::runtime::Runtime, system: &Arc<dyn System>, count: u64, seed: u64) -> Duration {
    concurrent_asks(runtime, system, count, seed, CounterMessage::Add(1))
}

/// Like [`concurrent`], asking `message` (W2 reads ask `Get`).
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time and spawns real tasks
fn concurrent_asks(
    runtime: &tokio::runtime::Runtime,
    system: &Arc<dyn System>,
    count: u64,
    seed: u64,
    message: CounterMessage,
) -> Duration {
    let system = system.clone();
    on_runtime(runtime, async move {
        let start = Instant::now();
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let system = system.clone();
                let mut rng = SplitMix(seed ^ ((caller as u64) << 32));
                tokio::spawn(async move {
                    for _ in 0..share(count, caller) {
                        let actor = (rng.next() % ACTORS as u64) as usize;
                        std::hint::black_box(system.ask(actor, message).await);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.expect("caller task");
        }
        start.elapsed()
    })
}

/// `count` never-seen actors activated (first ask each) by `CALLERS`
/// concurrent tasks. The peers' fresh actors are stopped afterwards, untimed.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time and spawns real tasks
fn cold(runtime: &tokio::runtime::Runtime, system: &Arc<dyn System>, count: u64) -> Duration {
    let system = system.clone();
    on_runtime(runtime, async move {
        let elapsed = activate_concurrently(&system, count).await;
        system.clear_fresh().await;
        elapsed
    })
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time and spawns real tasks
async fn activate_concurrently(system: &Arc<dyn System>, count: u64) -> Duration {
    let start = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let system = system.clone();
            tokio::spawn(async move {
                for _ in 0..share(count, caller) {
                    system.activate_fresh().await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller task");
    }
    start.elapsed()
}

/// Activates all `ACTORS` of a system (one `Get` each) from `CALLERS` tasks.
#[allow(clippy::disallowed_methods)] // a benchmark spawns real tasks
fn warm_all(runtime: &tokio::runtime::Runtime, system: &Arc<dyn System>) {
    let system = system.clone();
    on_runtime(runtime, async move {
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let system = system.clone();
                tokio::spawn(async move {
                    for actor in (caller..ACTORS).step_by(CALLERS) {
                        system.ask(actor, CounterMessage::Get).await;
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.expect("caller task");
        }
    });
}

// ---------------------------------------------------------------- resident memory

/// This process's resident set size in bytes (VmRSS).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// In a child process: activates `RSS_ACTORS` actors of system `name` (one
/// ask each, kept alive and idle) and prints the RSS growth per actor.
fn rss_probe(name: &str) {
    let runtime = tokio_runtime();
    let (system, kelpie): (Arc<dyn System>, Option<Arc<Kelpie>>) = if name == KELPIE {
        let kelpie = Arc::new({
            let _entered = runtime.enter();
            Kelpie::in_memory(0)
        });
        (kelpie.clone(), Some(kelpie))
    } else {
        let system = runtime.block_on(PeerSystem::start(Peer::named(name), 0));
        (Arc::new(system), None)
    };
    let probe = system.clone();
    let (before, after) = on_runtime(&runtime, async move {
        activate_concurrently(&probe, RSS_WARMUP).await;
        let before = resident_bytes();
        activate_concurrently(&probe, RSS_ACTORS).await;
        (before, resident_bytes())
    });
    println!("{}", after.saturating_sub(before) / RSS_ACTORS);
    if let Some(kelpie) = kelpie {
        runtime.block_on(kelpie.close());
    }
}

/// Runs `rss_probe` for `name` in a fresh child process (this executable).
fn resident_per_actor(name: &str) -> f64 {
    let exe = std::env::current_exe().expect("current executable");
    let output = Command::new(exe)
        .env(RSS_PROBE_ENV, name)
        .output()
        .expect("run the resident-memory probe");
    assert!(
        output.status.success(),
        "probe for {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("probe prints bytes per actor")
}

// ---------------------------------------------------------------- criterion

struct Systems {
    /// Kelpie over the in-memory engine (W1, W2).
    kelpie: Arc<Kelpie>,
    /// Kelpie over the embedded durable engine (cold activations).
    kelpie_cold: Arc<Kelpie>,
    /// Kelpie over the embedded durable engine with W2's actors: what W2
    /// costs with every commit on disk (the summary only).
    kelpie_durable: Arc<Kelpie>,
    peers: Vec<(&'static str, Arc<dyn System>)>,
}

impl Systems {
    fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let (kelpie, kelpie_cold, kelpie_durable) = {
            let _entered = runtime.enter();
            (
                Arc::new(Kelpie::in_memory(ACTORS)),
                Arc::new(Kelpie::embedded(0)),
                Arc::new(Kelpie::embedded(ACTORS)),
            )
        };
        let peers = PEERS
            .iter()
            .map(|name| {
                let system: Arc<dyn System> = Arc::new(runtime.block_on(PeerSystem::start(Peer::named(name), ACTORS)));
                (*name, system)
            })
            .collect();
        let systems = Self {
            kelpie,
            kelpie_cold,
            kelpie_durable,
            peers,
        };
        for (_, system) in systems.hot() {
            warm_all(runtime, &system);
        }
        let durable: Arc<dyn System> = systems.kelpie_durable.clone();
        warm_all(runtime, &durable);
        systems
    }

    /// The systems of W1 and W2, Kelpie first.
    fn hot(&self) -> Vec<(&'static str, Arc<dyn System>)> {
        let mut all: Vec<(&'static str, Arc<dyn System>)> = vec![(KELPIE, self.kelpie.clone())];
        all.extend(self.peers.iter().cloned());
        all
    }

    /// The systems of the cold activations, Kelpie (embedded store) first.
    fn cold(&self) -> Vec<(&'static str, Arc<dyn System>)> {
        let mut all: Vec<(&'static str, Arc<dyn System>)> = vec![(KELPIE, self.kelpie_cold.clone())];
        all.extend(self.peers.iter().cloned());
        all
    }
}

fn bench_all(c: &mut Criterion, runtime: &tokio::runtime::Runtime, systems: &Systems) {
    let mut group = c.benchmark_group("w1_ask/1_actor_1_caller");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    for (name, system) in systems.hot() {
        group.bench_function(name, |b| b.iter_custom(|iters| sequential(runtime, &system, iters)));
    }
    group.finish();

    let mut group = c.benchmark_group(format!("w2_ask/{ACTORS}_actors_{CALLERS}_callers"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    for (name, system) in systems.hot() {
        let seed = AtomicU64::new(1);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| concurrent(runtime, &system, iters, seed.fetch_add(1, Ordering::Relaxed)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("cold_activation/{CALLERS}_callers"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    for (name, system) in systems.cold() {
        group.bench_function(name, |b| b.iter_custom(|iters| cold(runtime, &system, iters)));
    }
    group.finish();
}

// ---------------------------------------------------------------- summary

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn percentile_micros(sorted: &[Duration], percent: usize) -> f64 {
    let index = (sorted.len() * percent / 100).min(sorted.len() - 1);
    sorted[index].as_secs_f64() * 1e6
}

/// One summary row: Kelpie's value, then the peers' in `PEERS` order.
struct Row {
    case: String,
    values: Vec<f64>,
    higher_is_better: bool,
    decimals: usize,
}

impl Row {
    fn print(&self) {
        // The actor frameworks: every peer but raw tokio (`PEERS[0]`).
        let frameworks = &self.values[2..];
        let best = frameworks.iter().copied().fold(
            if self.higher_is_better { f64::MIN } else { f64::MAX },
            |best, value| {
                if self.higher_is_better {
                    best.max(value)
                } else {
                    best.min(value)
                }
            },
        );
        let best_name = PEERS[1 + frameworks.iter().position(|value| *value == best).unwrap_or(0)];
        let mut line = format!("{:<34}", self.case);
        for value in &self.values {
            line.push_str(&format!(" {:>11.*}", self.decimals, value));
        }
        line.push_str(&format!(" {:>10} {:>12.3}", best_name, self.values[0] / best));
        println!("{line}");
    }
}

/// Measures every system again, in this run, and prints the ratios.
/// Each system's median of `SUMMARY_ROUNDS` measurements by `rate`, the
/// systems taking turns within each round.
fn median_rates(systems: &[(&'static str, Arc<dyn System>)], rate: impl Fn(&Arc<dyn System>) -> f64) -> Vec<f64> {
    let mut rounds: Vec<Vec<f64>> = vec![Vec::with_capacity(SUMMARY_ROUNDS); systems.len()];
    for _ in 0..SUMMARY_ROUNDS {
        for (rates, (_, system)) in rounds.iter_mut().zip(systems) {
            rates.push(rate(system));
        }
    }
    rounds
        .into_iter()
        .map(|mut rates| {
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        })
        .collect()
}

fn print_summary(runtime: &tokio::runtime::Runtime, systems: &Systems) {
    let hot = systems.hot();
    let cold_systems = systems.cold();

    let w1 = median_rates(&hot, |system| {
        per_second(SUMMARY_W1_ASKS, sequential(runtime, system, SUMMARY_W1_ASKS))
    });
    let latencies: Vec<Vec<Duration>> = hot
        .iter()
        .map(|(_, system)| sampled(runtime, system, SUMMARY_LATENCY_SAMPLES))
        .collect();
    let stats_before = systems.kelpie.stats();
    let w2 = median_rates(&hot, |system| {
        per_second(SUMMARY_W2_ASKS, concurrent(runtime, system, SUMMARY_W2_ASKS, 0xC0FFEE))
    });
    let stats_after = systems.kelpie.stats();
    let w2_reads = median_rates(&hot, |system| {
        let elapsed = concurrent_asks(runtime, system, SUMMARY_W2_ASKS, 0xBEEF, CounterMessage::Get);
        per_second(SUMMARY_W2_ASKS, elapsed)
    });
    assert_eq!(
        systems.kelpie.stats().commits,
        stats_after.commits,
        "kelpie W2 reads change nothing and commit nothing"
    );
    // Kelpie again with the default deadline: what its timer costs.
    systems.kelpie.with_deadline.store(true, Ordering::Relaxed);
    let kelpie: [(&'static str, Arc<dyn System>); 1] = [(KELPIE, systems.kelpie.clone())];
    let w2_deadline = median_rates(&kelpie, |system| {
        per_second(SUMMARY_W2_ASKS, concurrent(runtime, system, SUMMARY_W2_ASKS, 0xC0FFEE))
    })[0];
    let w2_reads_deadline = median_rates(&kelpie, |system| {
        let elapsed = concurrent_asks(runtime, system, SUMMARY_W2_ASKS, 0xBEEF, CounterMessage::Get);
        per_second(SUMMARY_W2_ASKS, elapsed)
    })[0];
    systems.kelpie.with_deadline.store(false, Ordering::Relaxed);
    // Kelpie again over the embedded durable store: every commit fsynced.
    let durable: Arc<dyn System> = systems.kelpie_durable.clone();
    let durable_before = systems.kelpie_durable.stats();
    let w2_durable = per_second(
        SUMMARY_W2_DURABLE_ASKS,
        concurrent(runtime, &durable, SUMMARY_W2_DURABLE_ASKS, 0xC0FFEE),
    );
    let durable_after = systems.kelpie_durable.stats();
    let w2_reads_durable = median_rates(&[(KELPIE, durable.clone())], |system| {
        let elapsed = concurrent_asks(runtime, system, SUMMARY_W2_ASKS, 0xBEEF, CounterMessage::Get);
        per_second(SUMMARY_W2_ASKS, elapsed)
    })[0];
    let durable_commits = durable_after.commits - durable_before.commits;
    let durable_batches = durable_after.batches - durable_before.batches;
    assert_eq!(
        durable_commits, SUMMARY_W2_DURABLE_ASKS,
        "kelpie committed every durable W2 invocation"
    );
    let best_w2 = w2[2..].iter().copied().fold(f64::MIN, f64::max);
    let best_w2_reads = w2_reads[2..].iter().copied().fold(f64::MIN, f64::max);
    let cold_before = systems.kelpie_cold.stats();
    let cold_rates: Vec<f64> = cold_systems
        .iter()
        .map(|(_, system)| per_second(SUMMARY_COLD, cold(runtime, system, SUMMARY_COLD)))
        .collect();
    let cold_after = systems.kelpie_cold.stats();
    let resident: Vec<f64> = std::iter::once(KELPIE).chain(PEERS).map(resident_per_actor).collect();

    let w2_commits = stats_after.commits - stats_before.commits;
    let w2_batches = stats_after.batches - stats_before.batches;
    assert_eq!(
        w2_commits,
        SUMMARY_W2_ASKS * SUMMARY_ROUNDS as u64,
        "kelpie committed every W2 invocation"
    );
    let cold_commits = cold_after.commits - cold_before.commits;
    let cold_batches = cold_after.batches - cold_before.batches;

    let rows = [
        Row {
            case: "W1 ask throughput (msg/s)".into(),
            values: w1,
            higher_is_better: true,
            decimals: 0,
        },
        Row {
            case: "W1 ask latency p50 (us)".into(),
            values: latencies.iter().map(|l| percentile_micros(l, 50)).collect(),
            higher_is_better: false,
            decimals: 2,
        },
        Row {
            case: "W1 ask latency p99 (us)".into(),
            values: latencies.iter().map(|l| percentile_micros(l, 99)).collect(),
            higher_is_better: false,
            decimals: 2,
        },
        Row {
            case: format!("W2 {ACTORS} actors {CALLERS} callers (msg/s)"),
            values: w2,
            higher_is_better: true,
            decimals: 0,
        },
        Row {
            case: "W2 reads (Get) (msg/s)".into(),
            values: w2_reads,
            higher_is_better: true,
            decimals: 0,
        },
        Row {
            case: "cold activations (act/s)".into(),
            values: cold_rates,
            higher_is_better: true,
            decimals: 0,
        },
        Row {
            case: "resident bytes per idle actor".into(),
            values: resident,
            higher_is_better: false,
            decimals: 0,
        },
    ];

    println!();
    println!(
        "== summary: kelpie runtime vs tokio mpsc+oneshot, ractor 0.16, kameo 0.17; same run, {} tokio workers",
        runtime.metrics().num_workers()
    );
    println!(
        "{:<34} {:>11} {:>11} {:>11} {:>11} {:>10} {:>12}",
        "case", "kelpie", "tokio", "ractor", "kameo", "best fw", "kelpie/best"
    );
    for row in &rows {
        row.print();
    }
    println!(
        "kelpie commits every invocation that changes state through its transactional store before \
         replying (W1/W2: in-memory engine, no fsync); a read (Get) commits nothing and replies once \
         the node's lease is checked still valid; the peers keep state in memory only"
    );
    println!(
        "kelpie asks have no deadline, as the peers' asks have no timeout; with the default 30 s deadline \
         (a timer per invocation), kelpie W2 = {w2_deadline:.0} msg/s ({:.3} of best) and W2 reads = \
         {w2_reads_deadline:.0} msg/s ({:.3} of best)",
        w2_deadline / best_w2,
        w2_reads_deadline / best_w2_reads
    );
    println!(
        "kelpie W2: {w2_commits} commits in {w2_batches} store batches ({:.1} commits per batch)",
        w2_commits as f64 / w2_batches.max(1) as f64
    );
    println!(
        "kelpie W2 over the embedded durable store (each commit fsynced before the reply, group commit): \
         {w2_durable:.0} msg/s ({:.3} of best; {durable_commits} commits in {durable_batches} fsynced batches, \
         {:.1} per batch); W2 reads = {w2_reads_durable:.0} msg/s ({:.3} of best)",
        w2_durable / best_w2,
        durable_commits as f64 / durable_batches.max(1) as f64,
        w2_reads_durable / best_w2_reads
    );
    println!(
        "cold: kelpie = claim + fence + load from the embedded durable store (fsync, group commit) + first \
         invocation ({cold_commits} commits in {cold_batches} batches); peers = spawn + first ask"
    );
    println!(
        "resident: RSS growth over {RSS_ACTORS} activated idle actors / {RSS_ACTORS}, one child process \
         per system; kelpie's includes its in-memory store's copy of each state and fence"
    );
    println!("msg/s, act/s: higher is better; us, bytes: lower is better; ratio = kelpie / best actor framework (ractor or kameo; raw tokio is a reference)");
}

fn main() {
    if let Ok(name) = std::env::var(RSS_PROBE_ENV) {
        rss_probe(&name);
        return;
    }
    let runtime = tokio_runtime();
    let systems = Systems::start(&runtime);

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
        .configure_from_args();
    bench_all(&mut criterion, &runtime, &systems);
    criterion.final_summary();

    print_summary(&runtime, &systems);
    runtime.block_on(async {
        systems.kelpie.close().await;
        systems.kelpie_cold.close().await;
        systems.kelpie_durable.close().await;
    });
}
