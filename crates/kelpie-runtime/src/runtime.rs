//! The actor runtime: activation on demand, one message at a time, state in
//! transactional storage, fenced commits, idle deactivation, supervision.
//!
//! **Model.** Every active actor is one task that owns its state and its
//! bounded mailbox; nothing else touches either, so there are no locks
//! around actor state and no lock is ever held across an `.await`. The
//! registry (actor id → mailbox) is a map in shards, each under its own
//! mutex (an actor's shard is fixed by its id), locked briefly and never
//! together with another lock.
//!
//! **An invocation**, inside the actor's task:
//! 1. with an idempotency key, append a journal entry (fenced); a duplicate
//!    key returns the stored reply without running the handler again;
//! 2. run the handler on a copy of the state (a panic is caught: the caller
//!    gets [`InvokeError::HandlerPanicked`] and the state is reloaded);
//! 3. commit the new state, the handler's other writes and the journal
//!    completion in one transaction fenced by the actor's token;
//! 4. only then reply.
//!
//! An invocation that changes nothing (an equal state, no writes, no
//! journal entry: a read) commits nothing. It replies only if this node
//! still serves the actor after the handler ran: while its lease is valid
//! on its own clock (self-fencing, with the drift margin) no other node can
//! own the actor, so the state it read is the latest.
//!
//! **Activation** claims the actor (one compare-and-set), installs its
//! fencing token in the store, loads the state and replays the actor's
//! pending journal entries in order. **Deactivation** after an idle timeout
//! closes the mailbox, handles every message already accepted, then releases
//! the actor. A node whose session cannot be renewed in time stops serving
//! (self-fencing); a stale node's commits are rejected by the store.

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Either};
use futures::FutureExt;
use kelpie_core::clock::MonotonicInstant;
use kelpie_core::{ActorId, NodeEnv, NodeId};
use kelpie_storage::journal::{AppendOutcome, EntryStatus, Journal, JournalEntry};
use kelpie_storage::{ActorKey, CommitNow, FenceKey, StorageError, Store, Transaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::driver::{install_fence, ClaimError, OwnershipDriver, ServingGrant};
use crate::lifecycle::{Admission, Disposition, Lifecycle, Phase, Registration};
use crate::ownership::FencingToken;

/// The storage key of an actor's state.
pub const STATE_KEY: &[u8] = b"__state";
/// Why an invocation failed when the store rejected its commit's fencing
/// token: another node owns the actor now.
const FENCED_OUT: &str = "fenced out by a newer owner; nothing was applied";
/// Why an invocation failed when this node's lease may have run out
/// (self-fencing): it stopped serving the actor.
const SELF_FENCED: &str = "this node stopped owning the actor (self-fenced)";

/// Why an invocation failed when its commit's outcome is unknown and the
/// state could not be reloaded: the actor deactivates rather than go on
/// from a state that may be stale.
const STATE_UNKNOWN: &str = "commit outcome unknown and the state could not be reloaded; deactivating";

/// Whether an invocation's result means this activation must stop serving.
fn stops_serving<T>(result: &Result<T, InvokeError>) -> bool {
    matches!(result, Err(InvokeError::Unavailable { reason, .. })
        if reason == FENCED_OUT || reason == SELF_FENCED || reason == STATE_UNKNOWN)
}

/// The storage key holding the fencing token of the last commit (so every
/// commit's token is observable, for audits and the simulator).
pub const TOKEN_KEY: &[u8] = b"__token";

/// An error a handler returns: an application-level failure, recorded as
/// the invocation's result (a retry with the same idempotency key gets it
/// again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// What went wrong.
    pub message: String,
}

impl HandlerError {
    /// A handler error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Transactional access for a handler to keys of its own actor, beyond its
/// typed state. Everything written commits with the state, or not at all.
pub struct ActorContext<'a> {
    actor: &'a ActorId,
    store: &'a Store,
    /// Begun at the handler's first access: a handler that touches no key
    /// (a read of the typed state) begins none.
    txn: &'a mut Option<Transaction>,
    now: MonotonicInstant,
}

impl ActorContext<'_> {
    /// The invocation's transaction, begun on first use (deferred: a
    /// handler that only writes takes no snapshot).
    fn txn(&mut self) -> &mut Transaction {
        self.txn.get_or_insert_with(|| self.store.begin_deferred())
    }

    /// The actor being invoked.
    pub fn actor(&self) -> &ActorId {
        self.actor
    }

    /// The node's monotonic time when the invocation started.
    pub fn now(&self) -> MonotonicInstant {
        self.now
    }

    /// Reads `key` (snapshot of the invocation's start plus own writes).
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let actor = self.actor;
        self.txn().get(actor, key)
    }

    /// Writes `key`.
    pub fn put(&mut self, key: &[u8], value: impl Into<Bytes>) -> Result<(), StorageError> {
        let actor = self.actor;
        self.txn().put(actor, key, value)
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        let actor = self.actor;
        self.txn().delete(actor, key)
    }

    /// Up to `limit` of the actor's own entries with keys in `(start, end)`,
    /// in key order (snapshot plus own writes).
    pub fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        let actor = self.actor;
        self.txn().scan(actor, start, end, limit)
    }

    /// Reads `key` of a shared keyspace. The read is validated at commit
    /// (optimistic concurrency): if another transaction changed the key in
    /// between, the commit fails with a retryable conflict.
    pub fn shared_get(&mut self, space: &SharedSpace, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.txn().get(&space.0, key)
    }

    /// Writes `key` of a shared keyspace, atomically with this invocation.
    pub fn shared_put(&mut self, space: &SharedSpace, key: &[u8], value: impl Into<Bytes>) -> Result<(), StorageError> {
        self.txn().put(&space.0, key, value)
    }

    /// Deletes `key` of a shared keyspace, atomically with this invocation.
    pub fn shared_delete(&mut self, space: &SharedSpace, key: &[u8]) -> Result<(), StorageError> {
        self.txn().delete(&space.0, key)
    }

    /// Up to `limit` entries of a shared keyspace with keys in `(start, end)`.
    pub fn shared_scan(
        &mut self,
        space: &SharedSpace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        self.txn().scan(&space.0, start, end, limit)
    }
}

/// A keyspace that no single actor owns: records several actors may write
/// (an index of every agent, records shared between agents). Writes to it
/// commit atomically with the invoking actor's state and carry that actor's
/// fencing precondition, so a zombie cannot write them either; concurrent
/// writers are serialized by the store's optimistic concurrency control.
/// Its namespace (`shared`) is never served by a runtime.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedSpace(ActorId);

/// The actor-id namespace of shared keyspaces.
pub const SHARED_NAMESPACE: &str = "shared";

impl SharedSpace {
    /// The shared keyspace `name` (a valid actor key).
    pub fn new(name: &str) -> Result<Self, kelpie_core::id::IdError> {
        ActorId::new(SHARED_NAMESPACE, name).map(SharedSpace)
    }

    /// The keyspace as the store addresses it, for reads outside an actor.
    pub fn id(&self) -> &ActorId {
        &self.0
    }
}

/// An actor type: typed state, messages and replies, and a handler.
pub trait Actor: Send + Sync + 'static {
    /// The actor's durable state (starts as `Default`). Its `PartialEq` must
    /// be structural (equal states encode equally): a handler that leaves
    /// the state equal commits no state write.
    type State: Serialize + DeserializeOwned + Default + Clone + PartialEq + Send + Sync + 'static;
    /// What callers send. An invocation with an idempotency key journals
    /// it as JSON, and a replay handles the decoded copy: it must survive a
    /// JSON round trip unchanged.
    type Message: Serialize + DeserializeOwned + Send + 'static;
    /// What callers get back. A retry of a completed keyed invocation gets
    /// the journaled JSON, decoded: it must survive the round trip too.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// Handles one message. May change `state` and write through `ctx`;
    /// nothing is visible until the runtime commits after it returns `Ok`.
    fn handle<'a>(
        &'a self,
        ctx: &'a mut ActorContext<'_>,
        state: &'a mut Self::State,
        message: Self::Message,
    ) -> BoxFuture<'a, Result<Self::Reply, HandlerError>>;
}

/// Per-invocation options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvokeOptions {
    /// Give up (with [`InvokeError::DeadlineExceeded`]) after this long
    /// (default 30 s). `None` waits for the reply however long it takes,
    /// as a plain ask of an in-process actor framework does: it saves the
    /// timer an invocation otherwise arms (a sixth of a local read's CPU).
    /// The wait still ends if the actor's task dies (with
    /// [`InvokeError::Unavailable`]) or the caller drops the future.
    pub deadline: Option<Duration>,
    /// Makes the invocation's effects exactly-once: a retry with the same
    /// key returns the first reply without running the handler again.
    pub idempotency_key: Option<String>,
}

impl Default for InvokeOptions {
    fn default() -> Self {
        Self {
            deadline: Some(Duration::from_secs(30)),
            idempotency_key: None,
        }
    }
}

/// Why an invocation failed. `is_retryable` says whether trying again
/// (with the same idempotency key) may succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The actor's mailbox is full.
    #[error("actor {actor} is overloaded (mailbox full); retry later")]
    Overloaded {
        /// The actor.
        actor: ActorId,
    },
    /// Another node owns the actor.
    #[error("actor {actor} is owned by node {owner}")]
    NotOwner {
        /// The actor.
        actor: ActorId,
        /// Its owner.
        owner: NodeId,
    },
    /// The actor could not be activated or lost its ownership mid-flight;
    /// the invocation had no effect unless it was journaled (then a retry
    /// with the same key returns its result).
    #[error("actor {actor} is unavailable: {reason}; retry")]
    Unavailable {
        /// The actor.
        actor: ActorId,
        /// Why.
        reason: String,
    },
    /// The deadline passed before a reply; the outcome is unknown.
    #[error("deadline of {deadline_ms} ms exceeded; the outcome is unknown")]
    DeadlineExceeded {
        /// The deadline.
        deadline_ms: u64,
    },
    /// The handler returned an error (recorded; retries get it too).
    #[error("handler failed: {0}")]
    Handler(HandlerError),
    /// The handler panicked; nothing it did was committed.
    #[error("handler panicked: {message}; its changes were discarded")]
    HandlerPanicked {
        /// The panic message.
        message: String,
    },
    /// The message, reply or state could not be (de)serialized.
    #[error("codec error: {reason}")]
    Codec {
        /// What failed.
        reason: String,
    },
    /// The actor id belongs to no actor type of this runtime.
    #[error("actor {actor} is not in namespace {namespace:?}")]
    WrongNamespace {
        /// The actor.
        actor: ActorId,
        /// The runtime's namespace.
        namespace: String,
    },
    /// The runtime is shutting down; no new invocations are accepted.
    #[error("runtime is shutting down; retry on another node or later")]
    ShuttingDown,
    /// Storage failed in a way a retry will not fix.
    #[error("storage: {0}")]
    Storage(StorageError),
}

/// Why an invocation failed when its actor task stopped with it accepted.
const TASK_STOPPED: &str = "actor task stopped";

impl InvokeError {
    /// Whether the invocation may have taken effect although it failed:
    /// its commit's outcome is unknown (a storage I/O error at commit, an
    /// actor task that died with it, a deadline). Retrying such an
    /// invocation without an idempotency key may apply it twice; every
    /// other error means nothing was applied.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            InvokeError::DeadlineExceeded { .. } => true,
            InvokeError::Unavailable { reason, .. } => {
                reason == STATE_UNKNOWN || reason == TASK_STOPPED || reason.starts_with("storage I/O error")
            }
            _ => false,
        }
    }

    /// Whether the same invocation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            InvokeError::Overloaded { .. }
                | InvokeError::NotOwner { .. }
                | InvokeError::Unavailable { .. }
                | InvokeError::DeadlineExceeded { .. }
                | InvokeError::ShuttingDown
        )
    }
}

/// Runtime settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The namespace of actor ids this runtime serves.
    pub namespace: String,
    /// Mailbox capacity per actor.
    pub mailbox_depth: usize,
    /// Deactivate an actor idle this long (since its last invocation ended).
    pub idle_timeout: Duration,
}

impl RuntimeConfig {
    /// Defaults from `kelpie-core` limits for `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            mailbox_depth: kelpie_core::limits::MAILBOX_DEPTH_DEFAULT,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Activations started.
    pub activations: u64,
    /// Deactivations completed.
    pub deactivations: u64,
    /// Invocations handled (replayed ones included).
    pub handled: u64,
    /// Journal entries replayed at activation.
    pub replayed: u64,
    /// Handler panics caught.
    pub panics: u64,
    /// Messages accepted into a mailbox.
    pub accepted: u64,
    /// Accepted messages answered (handled or bounced).
    pub answered: u64,
    /// Actor tasks that died of a panic outside a handler (the runtime's own
    /// code); the next message to the actor starts a new one.
    pub task_failures: u64,
}

/// A counter of [`RuntimeStats`].
#[derive(Clone, Copy)]
enum Stat {
    Activations,
    Deactivations,
    Handled,
    Replayed,
    Panics,
    Accepted,
    Answered,
    TaskFailures,
}

/// How many [`Stat`]s there are.
const STATS: usize = 8;

/// Shards of the counters: each thread counts in its own, so the threads
/// that run callers and actors do not pass one cache line back and forth
/// on every ask.
const COUNTER_SHARDS: usize = 8;

/// One shard's counters, on a cache line (pair) of their own.
#[derive(Default)]
#[repr(align(128))]
struct CounterShard([AtomicU64; STATS]);

/// The counters behind [`RuntimeStats`].
#[derive(Default)]
struct Counters {
    shards: [CounterShard; COUNTER_SHARDS],
}

/// The counter shard of the current thread (threads take shards in turn).
fn counter_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % COUNTER_SHARDS;
    }
    SHARD.with(|shard| *shard)
}

impl Counters {
    fn count(&self, stat: Stat) {
        self.shards[counter_shard()].0[stat as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self, stat: Stat) -> u64 {
        self.shards
            .iter()
            .map(|shard| shard.0[stat as usize].load(Ordering::Relaxed))
            .sum()
    }

    fn snapshot(&self) -> RuntimeStats {
        RuntimeStats {
            activations: self.total(Stat::Activations),
            deactivations: self.total(Stat::Deactivations),
            handled: self.total(Stat::Handled),
            replayed: self.total(Stat::Replayed),
            panics: self.total(Stat::Panics),
            accepted: self.total(Stat::Accepted),
            answered: self.total(Stat::Answered),
            task_failures: self.total(Stat::TaskFailures),
        }
    }
}

/// The token an activation serves with, its cached permission, and what
/// each commit writes and is fenced with, built once per activation.
struct Serving {
    token: FencingToken,
    /// `token` as the store holds it.
    fence: Bytes,
    fence_key: FenceKey,
    state_key: ActorKey,
    token_key: ActorKey,
    grant: Option<ServingGrant>,
}

impl Serving {
    fn new(actor: &ActorId, token: FencingToken) -> Result<Self, StorageError> {
        Ok(Self {
            token,
            fence: token.to_bytes(),
            fence_key: FenceKey::new(actor),
            state_key: ActorKey::new(actor, STATE_KEY)?,
            token_key: ActorKey::new(actor, TOKEN_KEY)?,
            grant: None,
        })
    }
}

/// A mailbox slot: an invocation, boxed so an idle actor's mailbox (whose
/// first block of slots is allocated up front) stays small, or a wake-up
/// from [`Runtime::shutdown`].
enum Mail<A: Actor> {
    Invoke(Box<Envelope<A>>),
    Shutdown,
}

/// An invocation as the caller hands it to the actor's task: typed, so a
/// local ask pays no encoding (the message is encoded only for the journal,
/// when the invocation has an idempotency key).
struct Envelope<A: Actor> {
    message: A::Message,
    idempotency_key: Option<String>,
    reply: oneshot::Sender<Result<A::Reply, InvokeError>>,
}

/// Actor id → mailbox. A hash map (a lookup per invocation, where an
/// ordered map of 10,000 ids cost a quarter of a read's CPU in the W2
/// benchmark) with a fixed hasher and insertion-ordered iteration, so the
/// simulator's runs stay deterministic.
type Registry<A> = IndexMap<ActorId, Slot<A>, FxBuildHasher>;

/// Registry shards: callers on different threads rarely wait for, or pass
/// around, the same lock.
const REGISTRY_SHARDS: usize = 16;

enum Slot<A: Actor> {
    Active {
        sender: mpsc::Sender<Mail<A>>,
        generation: u64,
    },
    Draining,
}

/// What an invocation came to, typed: what the caller gets.
enum Done<R> {
    Replied(R),
    Failed(HandlerError),
    Panicked(String),
}

impl<R: Serialize> Done<R> {
    /// Its journal record (an encoded [`Outcome`]).
    fn record(&self) -> Result<Bytes, serde_json::Error> {
        let outcome = match self {
            Done::Replied(reply) => Outcome::Json(serde_json::to_string(reply)?),
            Done::Failed(error) => Outcome::Failed(error.clone()),
            Done::Panicked(message) => Outcome::Panicked(message.clone()),
        };
        Ok(Bytes::from(serde_json::to_vec(&outcome)?))
    }

    fn into_result(self) -> Result<R, InvokeError> {
        match self {
            Done::Replied(reply) => Ok(reply),
            Done::Failed(error) => Err(InvokeError::Handler(error)),
            Done::Panicked(message) => Err(InvokeError::HandlerPanicked { message }),
        }
    }
}

/// What the journal stores as an invocation's result.
#[derive(Serialize, Deserialize)]
enum Outcome {
    /// A reply, as a JSON array of byte values (records written before
    /// `Json`; still decoded).
    Reply(Vec<u8>),
    /// A reply: its JSON text (a quarter of `Reply`'s size).
    Json(String),
    Failed(HandlerError),
    Panicked(String),
}

struct Inner<A: Actor> {
    env: NodeEnv,
    actor: A,
    store: Store,
    journal: Journal,
    ownership: Arc<OwnershipDriver>,
    config: RuntimeConfig,
    /// The registry's shards; an actor's is [`Inner::shard`].
    registry: Box<[Mutex<Registry<A>>]>,
    next_generation: AtomicU64,
    shutting_down: AtomicBool,
    stats: Counters,
}

/// A node's runtime for one actor type. Cheap to clone.
pub struct Runtime<A: Actor> {
    inner: Arc<Inner<A>>,
}

impl<A: Actor> Clone for Runtime<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

fn codec(error: impl std::fmt::Display) -> InvokeError {
    InvokeError::Codec {
        reason: error.to_string(),
    }
}

impl<A: Actor> Runtime<A> {
    /// A runtime serving `actor` for ids in `config.namespace`, over `store`
    /// (shared by every node that may own these actors) and `ownership`.
    pub fn new(env: NodeEnv, actor: A, store: Store, ownership: Arc<OwnershipDriver>, config: RuntimeConfig) -> Self {
        let journal = Journal::new(
            store.clone(),
            env.clock.clone(),
            kelpie_storage::journal::IDEMPOTENCY_RETENTION_DEFAULT,
        );
        Self {
            inner: Arc::new(Inner {
                env,
                actor,
                store,
                journal,
                ownership,
                config,
                registry: (0..REGISTRY_SHARDS).map(|_| Mutex::new(Registry::default())).collect(),
                next_generation: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                stats: Counters::default(),
            }),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RuntimeStats {
        self.inner.stats.snapshot()
    }

    /// Actors active on this node now.
    pub fn active(&self) -> Vec<ActorId> {
        let mut active: Vec<ActorId> = (0..REGISTRY_SHARDS)
            .flat_map(|shard| self.inner.lock_shard(shard).keys().cloned().collect::<Vec<_>>())
            .collect();
        active.sort();
        active
    }

    /// Sends `message` to `actor` and waits for the reply.
    ///
    /// Cancellation: dropping the future abandons the wait; an invocation
    /// already accepted by the actor still runs (and, with an idempotency
    /// key, a retry returns its result).
    pub async fn invoke(
        &self,
        actor: &ActorId,
        message: A::Message,
        options: InvokeOptions,
    ) -> Result<A::Reply, InvokeError> {
        if actor.namespace() != self.inner.config.namespace {
            return Err(InvokeError::WrongNamespace {
                actor: actor.clone(),
                namespace: self.inner.config.namespace.clone(),
            });
        }
        let (reply, answer) = oneshot::channel();
        let mut envelope = Box::new(Envelope {
            message,
            idempotency_key: options.idempotency_key,
            reply,
        });
        let clock = &self.inner.env.clock;
        let attempt = async move {
            loop {
                if self.inner.shutting_down.load(Ordering::SeqCst) {
                    return Err(InvokeError::ShuttingDown);
                }
                match self.deliver(actor, envelope) {
                    Delivery::Accepted => {
                        return match answer.await {
                            Ok(result) => result,
                            // The actor task died with the message: nothing was acknowledged.
                            Err(_) => Err(InvokeError::Unavailable {
                                actor: actor.clone(),
                                reason: TASK_STOPPED.to_string(),
                            }),
                        };
                    }
                    Delivery::Full => return Err(InvokeError::Overloaded { actor: actor.clone() }),
                    // Deactivating: wait for the drain to finish, then activate anew.
                    Delivery::Busy(returned) => {
                        envelope = returned;
                        clock.sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        };
        let Some(deadline) = options.deadline else {
            return attempt.await;
        };
        match kelpie_core::clock::timeout(clock.as_ref(), deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(InvokeError::DeadlineExceeded {
                deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    fn deliver(&self, actor: &ActorId, envelope: Box<Envelope<A>>) -> Delivery<A> {
        let mut registry = self.inner.registry(actor);
        let slot = registry.get(actor);
        let registration = match slot {
            Some(Slot::Draining) => Registration::Closed,
            Some(Slot::Active { sender, .. }) if !sender.is_closed() => Registration::Open,
            // None, or a task that died: supervision deregisters it.
            _ => Registration::Vacant,
        };
        match (registration.admit(), slot) {
            (Admission::Busy, _) => return Delivery::Busy(envelope),
            // Posted under the shard's lock (a non-blocking send): the
            // sender is neither cloned nor dropped per message.
            (Admission::Accept, Some(Slot::Active { sender, .. })) => return self.post(sender, envelope),
            _ => {}
        }
        let (sender, receiver) = mpsc::channel(self.inner.config.mailbox_depth.max(1));
        let generation = self.inner.next_generation.fetch_add(1, Ordering::SeqCst);
        let delivery = self.post(&sender, envelope);
        registry.insert(actor.clone(), Slot::Active { sender, generation });
        let inner = self.inner.clone();
        let actor = actor.clone();
        let _task = self.inner.env.spawner.spawn(
            "actor",
            Box::pin(async move { inner.supervise(actor, receiver, generation).await }),
        );
        delivery
    }

    /// Puts `envelope` in the mailbox of `sender` if there is room.
    fn post(&self, sender: &mpsc::Sender<Mail<A>>, envelope: Box<Envelope<A>>) -> Delivery<A> {
        match sender.try_reserve() {
            Ok(permit) => {
                permit.send(Mail::Invoke(envelope));
                self.inner.stats.count(Stat::Accepted);
                Delivery::Accepted
            }
            Err(mpsc::error::TrySendError::Full(())) => Delivery::Full,
            Err(mpsc::error::TrySendError::Closed(())) => Delivery::Busy(envelope),
        }
    }

    /// Stops accepting invocations (they fail with
    /// [`InvokeError::ShuttingDown`]) and deactivates every actor after its
    /// accepted messages are handled. Returns when all are deactivated.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        loop {
            let active: Vec<mpsc::Sender<Mail<A>>> = (0..REGISTRY_SHARDS)
                .flat_map(|shard| {
                    self.inner
                        .lock_shard(shard)
                        .values()
                        .filter_map(|slot| match slot {
                            Slot::Active { sender, .. } => Some(sender.clone()),
                            Slot::Draining => None,
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            // Wake each idle actor so it sees the shutdown and deactivates.
            for sender in active {
                let _ = sender.try_send(Mail::Shutdown);
            }
            if (0..REGISTRY_SHARDS).all(|shard| self.inner.lock_shard(shard).is_empty()) {
                return;
            }
            self.inner.env.clock.sleep(Duration::from_millis(1)).await;
        }
    }
}

enum Delivery<A: Actor> {
    Accepted,
    Full,
    /// Not accepted now (the actor is deactivating): the envelope, to try again.
    Busy(Box<Envelope<A>>),
}

impl<A: Actor> Inner<A> {
    /// The registry shard that holds `actor`.
    fn shard(actor: &ActorId) -> usize {
        // A fixed hash (the same shard in every run), remixed so that the
        // shard does not pin bits of the hash the shard's own map uses.
        let mixed = FxBuildHasher.hash_one(actor).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 32) as usize % REGISTRY_SHARDS
    }

    fn lock_shard(&self, shard: usize) -> MutexGuard<'_, Registry<A>> {
        // Registry updates are single map operations: a poisoned lock still
        // guards a consistent map.
        self.registry[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The locked registry shard of `actor`.
    fn registry(&self, actor: &ActorId) -> MutexGuard<'_, Registry<A>> {
        self.lock_shard(Self::shard(actor))
    }

    /// Replies to an accepted message.
    fn answer(&self, reply: oneshot::Sender<Result<A::Reply, InvokeError>>, result: Result<A::Reply, InvokeError>) {
        self.stats.count(Stat::Answered);
        let _ = reply.send(result);
    }

    fn deregister(&self, actor: &ActorId, generation: u64) {
        let mut registry = self.registry(actor);
        match registry.get(actor) {
            Some(Slot::Active {
                generation: current, ..
            }) if *current != generation => {}
            _ => {
                registry.swap_remove(actor);
            }
        }
    }

    fn load_state(&self, actor: &ActorId) -> Result<A::State, InvokeError> {
        let mut txn = self.store.begin().map_err(InvokeError::Storage)?;
        match txn.get(actor, STATE_KEY).map_err(InvokeError::Storage)? {
            Some(encoded) => serde_json::from_slice(&encoded).map_err(codec),
            None => Ok(A::State::default()),
        }
    }

    async fn activate(&self, actor: &ActorId) -> Result<(Serving, A::State), InvokeError> {
        let token = match self.ownership.serving_token(actor) {
            Some(token) => token,
            None => self.ownership.claim(actor).await.map_err(|error| match error {
                ClaimError::OwnedElsewhere { owner } => InvokeError::NotOwner {
                    actor: actor.clone(),
                    owner,
                },
                other => InvokeError::Unavailable {
                    actor: actor.clone(),
                    reason: other.to_string(),
                },
            })?,
        };
        install_fence(&self.store, actor, token)
            .await
            .map_err(|error| InvokeError::Unavailable {
                actor: actor.clone(),
                reason: error.to_string(),
            })?;
        let state = self.load_state(actor)?;
        let serving = Serving::new(actor, token).map_err(InvokeError::Storage)?;
        Ok((serving, state))
    }

    /// Whether this node may still serve `actor` with `serving`'s token at
    /// `now`, a fresh reading of the node's clock (self-fencing): cheap
    /// while the cached grant holds.
    fn still_serving(&self, actor: &ActorId, serving: &mut Serving, now: MonotonicInstant) -> bool {
        if let Some(grant) = &serving.grant {
            if self.ownership.still_serving(grant, now) {
                return true;
            }
        }
        serving.grant = self
            .ownership
            .serving_grant(actor, now)
            .filter(|grant| grant.token == serving.token);
        serving.grant.is_some()
    }

    /// Runs an actor's task; if it dies of a panic (a bug outside any
    /// handler: handler panics are caught per invocation), the messages it
    /// had accepted are answered with a retryable error when their reply
    /// channels drop, nothing it did not commit is visible, and the actor is
    /// released and deregistered so the next message starts a fresh task,
    /// which replays the journal's pending entries first.
    async fn supervise(self: Arc<Self>, actor: ActorId, mailbox: mpsc::Receiver<Mail<A>>, generation: u64) {
        let task = AssertUnwindSafe(self.clone().run_actor(actor.clone(), mailbox, generation));
        if let Err(payload) = task.catch_unwind().await {
            self.stats.count(Stat::TaskFailures);
            let message = kelpie_core::spawn::panic_message(payload.as_ref());
            tracing::error!(%actor, %message, "actor task died; releasing the actor");
            self.ownership.release(&actor);
            self.deregister(&actor, generation);
        }
    }

    async fn run_actor(self: Arc<Self>, actor: ActorId, mut mailbox: mpsc::Receiver<Mail<A>>, generation: u64) {
        self.stats.count(Stat::Activations);
        let mut life = Lifecycle::spawned();
        let (mut serving, mut state) = match Box::pin(self.activate(&actor)).await {
            Ok(activated) => activated,
            Err(error) => {
                // Bounce what was accepted and, if the claim succeeded but
                // the rest of the activation did not, give the actor up
                // rather than hold it unserved. The slot is marked draining
                // first, so no new activation starts (and claims) before
                // this release.
                life.stop(false);
                Box::pin(self.finish(&actor, mailbox, generation, life, Some(error))).await;
                return;
            }
        };
        // Replay what a crash left pending, in order, before anything new.
        match self.journal.pending(&actor) {
            Ok(pending) => {
                for entry in pending {
                    self.stats.count(Stat::Replayed);
                    if let Err(error) = Box::pin(self.execute(&actor, &mut serving, &mut state, entry)).await {
                        tracing::warn!(%actor, %error, "replay failed; deactivating");
                        life.stop(false);
                        Box::pin(self.finish(&actor, mailbox, generation, life, Some(error))).await;
                        return;
                    }
                }
            }
            Err(error) => {
                life.stop(false);
                let error = InvokeError::Storage(error);
                Box::pin(self.finish(&actor, mailbox, generation, life, Some(error))).await;
                return;
            }
        }
        life.activated();
        let idle = self.config.idle_timeout;
        // One timer per idle period, not per message: when it fires, the
        // actor deactivates only if nothing arrived for a whole period.
        let mut last_activity = self.env.clock.now_monotonic();
        let mut timer = self.env.clock.sleep(idle);
        loop {
            // The next message or the timer, whichever is ready first
            // (messages first), without allocating per message. The timer
            // is polled whenever the mailbox is empty: its wake-up may have
            // been taken by an await inside the last invocation (a slow
            // handler, a commit), so only polling it tells whether it fired.
            let next = futures::future::poll_fn(|cx| match mailbox.poll_recv(cx) {
                Poll::Ready(mail) => Poll::Ready(Either::Left(mail)),
                Poll::Pending => timer.as_mut().poll(cx).map(Either::Right),
            });
            let envelope = match next.await {
                Either::Left(Some(Mail::Invoke(envelope))) => envelope,
                Either::Right(()) => {
                    let quiet = self.env.clock.now_monotonic().saturating_duration_since(last_activity);
                    if quiet < idle {
                        timer = self.env.clock.sleep(idle - quiet);
                        continue;
                    }
                    break;
                }
                // Shutdown: deactivate.
                Either::Left(_) => break,
            };
            let Envelope {
                message,
                idempotency_key,
                reply,
            } = *envelope;
            // One clock reading for the self-fencing check and the
            // handler's `ctx.now()`.
            let now = self.env.clock.now_monotonic();
            let serving_now = self.still_serving(&actor, &mut serving, now);
            if life.take(serving_now) != Disposition::Handle {
                // Not serving: answer with an error and drain (not graceful).
                let error = InvokeError::Unavailable {
                    actor: actor.clone(),
                    reason: SELF_FENCED.to_string(),
                };
                self.answer(reply, Err(error.clone()));
                Box::pin(self.finish(&actor, mailbox, generation, life, Some(error))).await;
                return;
            }
            let result = self
                .invoke_once(&actor, &mut serving, &mut state, message, idempotency_key, now)
                .await;
            // Idle counts from the end of the last invocation: a long one
            // (an LLM call) is not followed at once by a deactivation.
            last_activity = self.env.clock.now_monotonic();
            let lost = stops_serving(&result);
            self.answer(reply, result);
            if lost {
                life.lost_ownership();
                let error = InvokeError::Unavailable {
                    actor: actor.clone(),
                    reason: "fenced by a newer owner".to_string(),
                };
                Box::pin(self.finish(&actor, mailbox, generation, life, Some(error))).await;
                return;
            }
        }
        // Idle or shutdown: graceful while this node still serves the actor.
        life.stop(self.ownership.serving_token(&actor).is_some());
        Box::pin(self.finish(&actor, mailbox, generation, life, None)).await;
    }

    /// Deactivates (`life` is draining): closes the mailbox, then takes
    /// every message already accepted and does what the lifecycle core
    /// says: handle it (a graceful drain, while this node still serves the
    /// actor) or answer it with an error (`error`, or "actor deactivated");
    /// then releases the actor and deregisters.
    async fn finish(
        &self,
        actor: &ActorId,
        mut mailbox: mpsc::Receiver<Mail<A>>,
        generation: u64,
        mut life: Lifecycle,
        error: Option<InvokeError>,
    ) {
        {
            let mut registry = self.registry(actor);
            if matches!(registry.get(actor), Some(Slot::Active { generation: current, .. }) if *current == generation) {
                registry.insert(actor.clone(), Slot::Draining);
            }
        }
        mailbox.close();
        // A graceful drain handles with the token the node serves with now,
        // on the state as durable storage has it.
        let mut held = None;
        if life.phase() == (Phase::Draining { graceful: true }) {
            if let Some(token) = self.ownership.serving_token(actor) {
                if let Ok(state) = self.load_state(actor) {
                    held = Serving::new(actor, token).ok().map(|serving| (serving, state));
                }
            }
            if held.is_none() {
                // Nothing to handle with (the node stopped serving, or the
                // state cannot be read): bounce everything.
                life.lost_ownership();
            }
        }
        let bounce = error.unwrap_or_else(|| InvokeError::Unavailable {
            actor: actor.clone(),
            reason: "actor deactivated".to_string(),
        });
        while let Some(mail) = mailbox.recv().await {
            let Mail::Invoke(envelope) = mail else {
                continue;
            };
            let was_graceful = life.phase() == (Phase::Draining { graceful: true });
            let now = self.env.clock.now_monotonic();
            let serving_now = match held.as_mut() {
                Some((serving, _)) => self.still_serving(actor, serving, now),
                None => false,
            };
            match (life.take(serving_now), held.as_mut()) {
                (Disposition::Handle, Some((serving, state))) => {
                    let result = self
                        .invoke_once(actor, serving, state, envelope.message, envelope.idempotency_key, now)
                        .await;
                    if stops_serving(&result) {
                        life.lost_ownership();
                    }
                    self.answer(envelope.reply, result);
                }
                (Disposition::Drop, _) => drop(envelope),
                // Refused (or, defensively, Handle with nothing to handle with).
                _ => {
                    let error = if was_graceful {
                        InvokeError::Unavailable {
                            actor: actor.clone(),
                            reason: SELF_FENCED.to_string(),
                        }
                    } else {
                        bounce.clone()
                    };
                    self.answer(envelope.reply, Err(error));
                }
            }
        }
        life.drained();
        self.ownership.release(actor);
        self.stats.count(Stat::Deactivations);
        self.registry(actor).swap_remove(actor);
    }

    /// One invocation: journaled if it has an idempotency key.
    async fn invoke_once(
        &self,
        actor: &ActorId,
        serving: &mut Serving,
        state: &mut A::State,
        message: A::Message,
        idempotency_key: Option<String>,
        now: MonotonicInstant,
    ) -> Result<A::Reply, InvokeError> {
        match idempotency_key {
            None => self.run_handler(actor, serving, state, message, None, now).await,
            // Boxed: the journaled path's future is the larger, and an
            // idle actor's task holds room for the largest one it awaits.
            Some(key) => Box::pin(self.invoke_keyed(actor, serving, state, message, key, now)).await,
        }
    }

    /// A keyed invocation: journaled, so a retry returns its first result.
    async fn invoke_keyed(
        &self,
        actor: &ActorId,
        serving: &mut Serving,
        state: &mut A::State,
        message: A::Message,
        key: String,
        now: MonotonicInstant,
    ) -> Result<A::Reply, InvokeError> {
        let payload = Bytes::from(serde_json::to_vec(&message).map_err(codec)?);
        let appended = self
            .journal
            .append(actor, Some(&key), payload, Some(serving.token.0))
            .await
            .map_err(|error| self.storage_error(actor, error))?;
        match appended {
            AppendOutcome::Appended(entry) => self.run_handler(actor, serving, state, message, Some(entry), now).await,
            AppendOutcome::Duplicate {
                status: EntryStatus::Completed { result },
                ..
            } => decode_outcome(&result),
            AppendOutcome::Duplicate { sequence, .. } => {
                // Pending: a crash or an error interrupted it; run it now.
                let entries = self.journal.pending(actor).map_err(InvokeError::Storage)?;
                match entries.into_iter().find(|entry| entry.sequence == sequence) {
                    Some(entry) => self.execute(actor, serving, state, entry).await,
                    None => Err(InvokeError::Unavailable {
                        actor: actor.clone(),
                        reason: "duplicate invocation completed concurrently".to_string(),
                    }),
                }
            }
        }
    }

    fn storage_error(&self, actor: &ActorId, error: StorageError) -> InvokeError {
        if error.is_retryable() {
            InvokeError::Unavailable {
                actor: actor.clone(),
                reason: error.to_string(),
            }
        } else {
            InvokeError::Storage(error)
        }
    }

    /// Runs a journal entry and commits its completion with the state.
    async fn execute(
        &self,
        actor: &ActorId,
        serving: &mut Serving,
        state: &mut A::State,
        entry: JournalEntry,
    ) -> Result<A::Reply, InvokeError> {
        let message: A::Message = serde_json::from_slice(&entry.payload).map_err(codec)?;
        let now = self.env.clock.now_monotonic();
        self.run_handler(actor, serving, state, message, Some(entry), now).await
    }

    /// Stages an invocation's commit: its new state (and the token it was
    /// written with) and its journal completion.
    fn stage(
        &self,
        txn: &mut Transaction,
        serving: &Serving,
        changed: Option<Bytes>,
        entry: Option<&JournalEntry>,
        outcome: &Done<A::Reply>,
    ) -> Result<(), StorageError> {
        if let Some(encoded) = changed {
            txn.put_key(&serving.state_key, encoded)?;
            txn.put_key(&serving.token_key, serving.fence.clone())?;
        }
        if let Some(entry) = entry {
            let recorded = outcome.record().map_err(|error| StorageError::Corrupt {
                location: "journal result".to_string(),
                reason: format!("invocation outcome not encodable: {error}"),
            })?;
            self.journal.complete(txn, entry, recorded)?;
        }
        Ok(())
    }

    async fn run_handler(
        &self,
        actor: &ActorId,
        serving: &mut Serving,
        state: &mut A::State,
        message: A::Message,
        entry: Option<JournalEntry>,
        now: MonotonicInstant,
    ) -> Result<A::Reply, InvokeError> {
        self.stats.count(Stat::Handled);
        // Begun by the handler's first access to a key, if any.
        let mut txn: Option<Transaction> = None;
        let mut next = state.clone();
        let outcome = {
            let mut ctx = ActorContext {
                actor,
                store: &self.store,
                txn: &mut txn,
                now,
            };
            // The call itself is inside the guarded future: a panic in the
            // handler's synchronous part is caught too.
            AssertUnwindSafe(async { self.actor.handle(&mut ctx, &mut next, message).await })
                .catch_unwind()
                .await
        };
        // The new state's encoding, if the handler succeeded and changed it.
        let (outcome, changed) = match outcome {
            Ok(Ok(reply)) => {
                // Encoded only if it changed (a read encodes nothing).
                let changed = if next == *state {
                    None
                } else {
                    Some(Bytes::from(serde_json::to_vec(&next).map_err(codec)?))
                };
                (Done::Replied(reply), changed)
            }
            Ok(Err(error)) => {
                // A failed handler's writes are discarded.
                txn = None;
                (Done::Failed(error), None)
            }
            Err(payload) => {
                self.stats.count(Stat::Panics);
                let message = kelpie_core::spawn::panic_message(payload.as_ref());
                tracing::warn!(%actor, %message, "handler panicked; state reloaded");
                // The handler may have written through ctx: start clean.
                txn = None;
                *state = self.load_state(actor)?;
                (Done::Panicked(message), None)
            }
        };
        if changed.is_none() && txn.as_ref().is_none_or(|txn| txn.write_count() == 0) && entry.is_none() {
            // Nothing to make durable (a read, or a failure with no journal
            // entry): the reply is linearizable at this instant if this node
            // still serves the actor, since no other node can have committed
            // while this node's lease is valid (self-fencing).
            // A fresh reading: the handler may have awaited.
            if !self.still_serving(actor, serving, self.env.clock.now_monotonic()) {
                return Err(InvokeError::Unavailable {
                    actor: actor.clone(),
                    reason: SELF_FENCED.to_string(),
                });
            }
            return outcome.into_result();
        }
        let mut state_changed = changed.is_some();
        let mut outcome = outcome;
        let mut txn = txn.unwrap_or_else(|| self.store.begin_deferred());
        if let Err(error) = self.stage(&mut txn, serving, changed, entry.as_ref(), &outcome) {
            if error.is_retryable() {
                return Err(self.storage_error(actor, error));
            }
            // The invocation's effects or result cannot be stored (over a
            // limit): it fails as a whole, nothing of it applied, and its
            // journal entry records the failure, so a retry gets it too and
            // activation does not replay it again and again.
            tracing::warn!(%actor, %error, "invocation cannot be committed; recording its failure");
            txn = self.store.begin_deferred();
            state_changed = false;
            outcome = Done::Failed(HandlerError::new(format!(
                "the invocation's effects or result cannot be stored ({error}); nothing was applied"
            )));
            match &entry {
                Some(entry) => {
                    let recorded = outcome.record().map_err(codec)?;
                    self.journal
                        .complete(&mut txn, entry, recorded)
                        .map_err(InvokeError::Storage)?;
                }
                None => return outcome.into_result(),
            }
        }
        if !cfg!(feature = "bug-runtime-unfenced-commit") {
            txn.require_fence_key(&serving.fence_key, serving.fence.clone());
        }
        let committed = match txn.commit_now() {
            // The in-memory engine: committed at once, no future.
            CommitNow::Done(result) => result,
            // Boxed: an idle actor's task holds room for the largest future
            // it awaits.
            CommitNow::Wait(txn) => Box::pin(txn.commit()).await,
        };
        match committed {
            Ok(_) => {
                if state_changed {
                    *state = next;
                }
                outcome.into_result()
            }
            Err(error) => {
                // Whether the commit was applied may be unknown (an I/O
                // error after the write): continue only from the state as
                // durable storage has it. If even that cannot be read, the
                // in-memory state may be stale: stop serving (the caller
                // deactivates the actor; the next activation reloads).
                match self.load_state(actor) {
                    Ok(durable) => *state = durable,
                    Err(reload) => {
                        tracing::warn!(%actor, %error, %reload, "commit failed and the state could not be reloaded");
                        return Err(InvokeError::Unavailable {
                            actor: actor.clone(),
                            reason: STATE_UNKNOWN.to_string(),
                        });
                    }
                }
                match error {
                    // No effect: the caller may retry (on the new owner).
                    StorageError::FencingRejected { .. } => Err(InvokeError::Unavailable {
                        actor: actor.clone(),
                        reason: FENCED_OUT.to_string(),
                    }),
                    other => Err(self.storage_error(actor, other)),
                }
            }
        }
    }
}

/// A recorded outcome (a duplicate invocation's), as the caller gets it.
fn decode_outcome<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, InvokeError> {
    match serde_json::from_slice::<Outcome>(bytes).map_err(codec)? {
        Outcome::Reply(reply) => serde_json::from_slice(&reply).map_err(codec),
        Outcome::Json(reply) => serde_json::from_str(&reply).map_err(codec),
        Outcome::Failed(error) => Err(InvokeError::Handler(error)),
        Outcome::Panicked(message) => Err(InvokeError::HandlerPanicked { message }),
    }
}
