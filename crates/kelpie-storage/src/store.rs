//! [`Store`]: transactions over an [`Engine`] with snapshot reads,
//! read-your-writes, optimistic conflict detection, fencing preconditions and
//! group commit.
//!
//! **Isolation.** A transaction reads one snapshot taken when it began, plus
//! its own writes. At commit, its read set (keys and scanned ranges) is
//! validated against every commit since its snapshot; any overlap fails it
//! with [`StorageError::Conflict`] and applies nothing. So committed
//! read-write transactions are serializable in commit order. A read-only
//! transaction commits at its snapshot without validation.
//!
//! **Deferred snapshots.** [`Store::begin_deferred`] takes the snapshot at
//! the transaction's first read instead of at begin (as if it began then).
//! One that never reads has nothing to validate: it serializes at its
//! commit, and costs no snapshot at all (the runtime's handlers that only
//! write, the common case, take this path).
//!
//! **Group commit.** On an engine that blocks (a durable one), commits
//! queue to one committer task, which takes every queued commit (up to
//! [`COMMIT_BATCH_MAX`]) and runs them in one engine write transaction —
//! one fsync for the whole batch — validating each in order and skipping
//! (failing) those that conflict or are fenced. Each caller is answered
//! only after the batch is durable. On an engine that never blocks (the
//! in-memory one), each commit is validated, applied and numbered at once,
//! in the caller, under the store's validation lock.
//!
//! **Fencing.** A commit may carry a precondition "key K holds token T",
//! checked inside the same engine transaction as its writes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::channel::oneshot;
use kelpie_core::limits::{
    SCAN_PAGE_ENTRIES_MAX, STORAGE_VALUE_BYTES_MAX, TRANSACTION_BYTES_MAX, TRANSACTION_KEYS_MAX,
};
use kelpie_core::spawn::SharedSpawner;
use kelpie_core::ActorId;

use crate::engine::{Engine, Snapshot, WriteView};
use crate::error::{printable, StorageError};
use crate::key::{actor_range, check_user_key, raw_key, Space};

/// Most commits in one group-commit batch.
pub const COMMIT_BATCH_MAX: usize = 256;
/// Most commits waiting for the committer; senders wait beyond it.
pub const COMMIT_QUEUE_MAX: usize = 4096;
/// Most committed write sets kept for validation; transactions whose
/// snapshot is older than the oldest kept get `Conflict`.
pub const VALIDATION_LOG_ENTRIES_MAX: usize = 100_000;

/// What a successful commit reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit's position in the store's total commit order (for a
    /// read-only transaction, the snapshot it read; for a read-only deferred
    /// one that never read, the version current at its commit).
    pub version: u64,
}

struct CommittedWrites {
    version: u64,
    keys: Vec<Bytes>,
}

#[derive(Default)]
struct OccState {
    version: u64,
    /// Versions at or below the floor were pruned from the log.
    floor: u64,
    log: VecDeque<CommittedWrites>,
    active: BTreeMap<u64, usize>,
    /// Kept here, not in atomics of their own: every commit already holds
    /// this lock when it counts.
    stats: StoreStats,
}

impl OccState {
    fn prune(&mut self) {
        let oldest_needed = self.active.keys().next().copied().unwrap_or(self.version);
        while self.log.front().is_some_and(|entry| entry.version <= oldest_needed) {
            if let Some(entry) = self.log.pop_front() {
                self.floor = self.floor.max(entry.version);
            }
        }
        while self.log.len() > VALIDATION_LOG_ENTRIES_MAX {
            if let Some(entry) = self.log.pop_front() {
                self.floor = self.floor.max(entry.version);
            }
        }
    }
}

/// Commit counters (of the committer, or of inline commits: one batch each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Commits rejected (conflict or fencing).
    pub rejected: u64,
    /// Engine write transactions (durable writes) used for them.
    pub batches: u64,
}

/// Sees every applied commit, in commit order: its version and its writes
/// (raw key to value; `None` deletes). For audits and the simulator.
pub type CommitObserver = Arc<dyn Fn(u64, &BTreeMap<Bytes, Option<Bytes>>) + Send + Sync>;

struct StoreInner {
    observer: Mutex<Option<CommitObserver>>,
    /// Whether `observer` is set (read on every commit without the lock).
    observed: AtomicBool,
    engine: Arc<dyn Engine>,
    /// The validation state. Lock order: `observing` (when held), `occ`,
    /// then the engine's own locks: an inline commit validates, applies and
    /// publishes under `occ`, and a snapshot is taken under it. A blocking
    /// engine's write (the committer task) takes `occ` inside its write
    /// transaction, so that engine's snapshots must never wait for its
    /// writer.
    occ: Mutex<OccState>,
    queue: Mutex<Option<futures::channel::mpsc::Sender<CommitRequest>>>,
    /// Set once `queue` is taken: the store accepts no more commits.
    closed: AtomicBool,
    /// Held around an inline commit while commits are observed, so the
    /// observer (called without `occ`) sees them in commit order.
    observing: Mutex<()>,
}

impl StoreInner {
    fn occ(&self) -> MutexGuard<'_, OccState> {
        // Every update of the OCC state is a few assignments that cannot panic midway.
        self.occ.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Refuses every later commit.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        lock(&self.queue).take();
    }
}

/// Keeps a snapshot version registered while a transaction (or its queued
/// commit) may still need validation against it.
struct ActiveSnapshot {
    inner: Arc<StoreInner>,
    version: u64,
}

impl Drop for ActiveSnapshot {
    fn drop(&mut self) {
        let mut occ = self.inner.occ();
        if let Some(count) = occ.active.get_mut(&self.version) {
            *count -= 1;
            if *count == 0 {
                occ.active.remove(&self.version);
            }
        }
        occ.prune();
    }
}

struct Fence {
    key: Bytes,
    token: Bytes,
}

/// A key of one actor's state, built and checked once, for an actor that
/// writes it in many transactions ([`Transaction::put_key`]): the key is
/// shared, not built and copied again for each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorKey(Bytes);

impl ActorKey {
    /// `actor`'s `key`, checked as [`Transaction::put`] checks it.
    pub fn new(actor: &ActorId, key: &[u8]) -> Result<Self, StorageError> {
        check_user_key(key)?;
        Ok(Self(Bytes::from(raw_key(Space::State, actor, key))))
    }
}

/// The key of one actor's fencing token, built once, for an actor that
/// fences many transactions ([`Transaction::require_fence_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceKey(Bytes);

impl FenceKey {
    /// `actor`'s fencing-token key.
    pub fn new(actor: &ActorId) -> Self {
        Self(Bytes::from(raw_key(Space::Fence, actor, b"")))
    }
}

struct CommitRequest {
    /// The snapshot it read (`None`: it never read, nothing to validate).
    active: Option<ActiveSnapshot>,
    reads: BTreeSet<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    writes: BTreeMap<Bytes, Option<Bytes>>,
    fence: Option<Fence>,
    /// Where the committer task sends the outcome (`None` for inline commits).
    reply: Option<oneshot::Sender<Result<CommitInfo, StorageError>>>,
}

/// A transactional key-value store shared by every actor of a node.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("version", &self.inner.occ().version)
            .finish()
    }
}

impl Store {
    /// A store over `engine`; its committer task runs on `spawner`.
    pub fn new(engine: Arc<dyn Engine>, spawner: SharedSpawner) -> Self {
        let (sender, receiver) = futures::channel::mpsc::channel(COMMIT_QUEUE_MAX);
        let inner = Arc::new(StoreInner {
            engine,
            occ: Mutex::new(OccState::default()),
            observer: Mutex::new(None),
            observed: AtomicBool::new(false),
            queue: Mutex::new(Some(sender)),
            closed: AtomicBool::new(false),
            observing: Mutex::new(()),
        });
        let committer = Committer {
            inner: inner.clone(),
            spawner: spawner.clone(),
        };
        // Detached: it ends when the store is closed (or its node crashes).
        let _committer = spawner.spawn("storage-committer", Box::pin(committer.run(receiver)));
        Self { inner }
    }

    /// Begins a transaction reading a snapshot of everything committed.
    pub fn begin(&self) -> Result<Transaction, StorageError> {
        let mut txn = self.begin_deferred();
        txn.view = Some(View::open(&self.inner)?);
        Ok(txn)
    }

    /// Begins a transaction whose snapshot is taken at its first read (see
    /// the module docs): one that only writes never takes one.
    pub fn begin_deferred(&self) -> Transaction {
        Transaction {
            inner: self.inner.clone(),
            view: None,
            reads: BTreeSet::new(),
            ranges: Vec::new(),
            writes: BTreeMap::new(),
            write_bytes: 0,
            fence: None,
        }
    }

    /// The version of the last commit.
    pub fn version(&self) -> u64 {
        self.inner.occ().version
    }

    /// Commit counters: with group commit, `batches` grows slower than
    /// `commits` under concurrency.
    pub fn stats(&self) -> StoreStats {
        self.inner.occ().stats
    }

    /// Calls `observer` for every commit applied from now on, in commit
    /// order, before the committer answers it. Set it before the first
    /// commit: commits already under way when it is set are seen, but may
    /// be seen out of order. The observer must not commit to this store.
    /// (It may read: it is called without the store's locks.)
    pub fn observe_commits(&self, observer: CommitObserver) {
        *self
            .inner
            .observer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(observer);
        self.inner.observed.store(true, Ordering::SeqCst);
    }

    /// Whether commits survive a crash.
    pub fn is_durable(&self) -> bool {
        self.inner.engine.is_durable()
    }

    /// Stops accepting commits; queued ones still complete. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// What a transaction reads: an engine snapshot, registered for validation.
struct View {
    active: ActiveSnapshot,
    snapshot: Box<dyn Snapshot>,
}

impl View {
    fn open(inner: &Arc<StoreInner>) -> Result<Self, StorageError> {
        let mut occ = inner.occ();
        let snapshot = inner.engine.snapshot()?;
        let version = occ.version;
        *occ.active.entry(version).or_insert(0) += 1;
        drop(occ);
        Ok(Self {
            active: ActiveSnapshot {
                inner: inner.clone(),
                version,
            },
            snapshot,
        })
    }
}

/// One transaction. Reads see the snapshot taken at [`Store::begin`] (or,
/// for [`Store::begin_deferred`], at the first read) plus this transaction's
/// own writes. Nothing is visible to others until [`Transaction::commit`]
/// succeeds; dropping it discards everything.
pub struct Transaction {
    inner: Arc<StoreInner>,
    /// `None` until a deferred transaction first reads.
    view: Option<View>,
    reads: BTreeSet<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    writes: BTreeMap<Bytes, Option<Bytes>>,
    write_bytes: usize,
    fence: Option<Fence>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot_version", &self.snapshot_version())
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Transaction {
    /// The version of the snapshot this transaction reads (0 for a
    /// deferred transaction that has not read yet).
    pub fn snapshot_version(&self) -> u64 {
        self.view.as_ref().map_or(0, |view| view.active.version)
    }

    /// The snapshot, taken now if this deferred transaction had none.
    fn snapshot(&mut self) -> Result<&dyn Snapshot, StorageError> {
        let view = match self.view.take() {
            Some(view) => self.view.insert(view),
            None => self.view.insert(View::open(&self.inner)?),
        };
        Ok(view.snapshot.as_ref())
    }

    /// Reads `key` of `actor`.
    pub fn get(&mut self, actor: &ActorId, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        check_user_key(key)?;
        self.raw_get(raw_key(Space::State, actor, key))
    }

    /// Writes `value` at `key` of `actor`. Limits are checked now; on error
    /// the transaction is unchanged. The value is kept as given: a `Bytes`
    /// slice of a larger buffer keeps that buffer alive in the in-memory
    /// engine (copy it first if that matters).
    pub fn put(&mut self, actor: &ActorId, key: &[u8], value: impl Into<Bytes>) -> Result<(), StorageError> {
        check_user_key(key)?;
        self.raw_put(raw_key(Space::State, actor, key), value.into())
    }

    /// Like [`Transaction::put`], at a key built once ([`ActorKey`]).
    pub fn put_key(&mut self, key: &ActorKey, value: impl Into<Bytes>) -> Result<(), StorageError> {
        self.put_checked(key.0.clone(), value.into())
    }

    /// Deletes `key` of `actor`.
    pub fn delete(&mut self, actor: &ActorId, key: &[u8]) -> Result<(), StorageError> {
        check_user_key(key)?;
        self.raw_delete(raw_key(Space::State, actor, key))
    }

    /// Up to `limit` entries of `actor` with keys in `(start, end)`, in key
    /// order, including this transaction's writes.
    pub fn scan(
        &mut self,
        actor: &ActorId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        let (actor_start, actor_end) = actor_range(Space::State, actor);
        let prefix_len = actor_start.len();
        let bound = |key: &[u8], inclusive_start: bool| {
            let mut raw = actor_start.clone();
            raw.extend_from_slice(key);
            if !inclusive_start {
                raw.push(0);
            }
            raw
        };
        let raw_start = match start {
            Bound::Included(key) => bound(key, true),
            Bound::Excluded(key) => bound(key, false),
            Bound::Unbounded => actor_start.clone(),
        };
        let raw_end = match end {
            Bound::Included(key) => bound(key, false),
            Bound::Excluded(key) => bound(key, true),
            Bound::Unbounded => actor_end,
        };
        let entries = self.raw_scan(raw_start, raw_end, limit)?;
        Ok(entries
            .into_iter()
            .map(|(key, value)| (Bytes::copy_from_slice(&key[prefix_len..]), value))
            .collect())
    }

    /// Requires, at commit, that the fencing token of `actor` equals `token`,
    /// checked atomically with the writes.
    pub fn require_fence(&mut self, actor: &ActorId, token: impl Into<Bytes>) {
        // The key is used once: moved in, not shared (a clone would share it).
        self.fence = Some(Fence {
            key: FenceKey::new(actor).0,
            token: token.into(),
        });
    }

    /// Like [`Transaction::require_fence`], with the actor's fencing-token
    /// key built once ([`FenceKey`]).
    pub fn require_fence_key(&mut self, key: &FenceKey, token: impl Into<Bytes>) {
        self.fence = Some(Fence {
            key: key.0.clone(),
            token: token.into(),
        });
    }

    /// Writes the fencing token of `actor` (the ownership layer's job).
    pub fn set_fence_token(&mut self, actor: &ActorId, token: impl Into<Bytes>) -> Result<(), StorageError> {
        self.raw_put(raw_key(Space::Fence, actor, b""), token.into())
    }

    /// Reads the fencing token of `actor`.
    pub fn fence_token(&mut self, actor: &ActorId) -> Result<Option<Bytes>, StorageError> {
        self.raw_get(raw_key(Space::Fence, actor, b""))
    }

    /// Checks that `keys` more new keys and `bytes` more bytes would fit in
    /// this transaction, without writing anything.
    pub fn reserve(&self, keys: usize, bytes: usize) -> Result<(), StorageError> {
        let count = self.writes.len() + keys;
        if count > TRANSACTION_KEYS_MAX {
            return Err(StorageError::TooManyKeys {
                count,
                max: TRANSACTION_KEYS_MAX,
            });
        }
        let total = self.write_bytes + bytes;
        if total > TRANSACTION_BYTES_MAX {
            return Err(StorageError::TransactionTooLarge {
                bytes: total,
                max: TRANSACTION_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// The highest fencing token installed for any actor (0 if none). A
    /// single-node coordination store restarted in memory must issue tokens
    /// above it.
    pub fn highest_fence_token(&mut self) -> Result<u64, StorageError> {
        let (mut from, end) = crate::key::space_range(Space::Fence);
        let mut highest = 0;
        loop {
            let page = self.raw_scan(from.clone(), end.clone(), SCAN_PAGE_ENTRIES_MAX)?;
            for (key, value) in &page {
                let token: [u8; 8] = value.as_ref().try_into().map_err(|_| StorageError::Corrupt {
                    location: format!("fencing token {}", printable(key)),
                    reason: format!("{} bytes, expected 8", value.len()),
                })?;
                highest = highest.max(u64::from_be_bytes(token));
            }
            match page.last() {
                Some((last, _)) if page.len() == SCAN_PAGE_ENTRIES_MAX => {
                    from = last.clone();
                    from.push(0);
                }
                _ => return Ok(highest),
            }
        }
    }

    /// Keys written so far.
    pub fn write_count(&self) -> usize {
        self.writes.len()
    }

    pub(crate) fn raw_get(&mut self, key: Vec<u8>) -> Result<Option<Bytes>, StorageError> {
        if let Some(write) = self.writes.get(key.as_slice()) {
            return Ok(write.clone());
        }
        let value = self.snapshot()?.get(&key)?;
        self.reads.insert(key);
        Ok(value)
    }

    pub(crate) fn raw_put(&mut self, key: Vec<u8>, value: Bytes) -> Result<(), StorageError> {
        self.put_checked(Bytes::from(key), value)
    }

    /// Puts `value` at the raw `key` if within the value size limit.
    fn put_checked(&mut self, key: Bytes, value: Bytes) -> Result<(), StorageError> {
        if value.len() > STORAGE_VALUE_BYTES_MAX {
            return Err(StorageError::ValueTooLarge {
                key: printable(&key),
                bytes: value.len(),
                max: STORAGE_VALUE_BYTES_MAX,
            });
        }
        self.record_write(key, Some(value))
    }

    pub(crate) fn raw_delete(&mut self, key: Vec<u8>) -> Result<(), StorageError> {
        self.record_write(Bytes::from(key), None)
    }

    fn record_write(&mut self, key: Bytes, value: Option<Bytes>) -> Result<(), StorageError> {
        let new_bytes = key.len() + value.as_ref().map_or(0, Bytes::len);
        let old_bytes = self
            .writes
            .get(&key)
            .map(|old| key.len() + old.as_ref().map_or(0, Bytes::len))
            .unwrap_or(0);
        let count = self.writes.len() + usize::from(old_bytes == 0 && !self.writes.contains_key(&key));
        if count > TRANSACTION_KEYS_MAX {
            return Err(StorageError::TooManyKeys {
                count,
                max: TRANSACTION_KEYS_MAX,
            });
        }
        let bytes = self.write_bytes - old_bytes + new_bytes;
        if bytes > TRANSACTION_BYTES_MAX {
            return Err(StorageError::TransactionTooLarge {
                bytes,
                max: TRANSACTION_BYTES_MAX,
            });
        }
        self.write_bytes = bytes;
        self.writes.insert(key, value);
        Ok(())
    }

    pub(crate) fn raw_scan(
        &mut self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StorageError> {
        if limit == 0 || limit > SCAN_PAGE_ENTRIES_MAX {
            return Err(StorageError::ScanLimit {
                limit,
                max: SCAN_PAGE_ENTRIES_MAX,
            });
        }
        if start >= end {
            return Ok(Vec::new());
        }
        let deleted = self
            .writes
            .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
            .filter(|(_, value)| value.is_none())
            .count();
        let mut merged: BTreeMap<Vec<u8>, Bytes> = self
            .snapshot()?
            .scan(&start, &end, limit + deleted)?
            .into_iter()
            .collect();
        let own: Vec<(&Bytes, &Option<Bytes>)> = self
            .writes
            .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
            .collect();
        let fetched_all = merged.len() < limit + deleted;
        let horizon = merged.keys().next_back().cloned();
        for (key, value) in own {
            // Own writes past what the snapshot page covered are only
            // merged if the page reached the end of the range.
            if !fetched_all && horizon.as_ref().is_some_and(|last| key[..] > last[..]) {
                continue;
            }
            match value {
                Some(value) => merged.insert(key.to_vec(), value.clone()),
                None => merged.remove(&key[..]),
            };
        }
        self.ranges.push((start, end));
        Ok(merged.into_iter().take(limit).collect())
    }

    /// Commits atomically: every write or none, validated against commits
    /// since this transaction's snapshot, with the fencing precondition if
    /// set. Returns once the commit is durable (for a durable engine).
    ///
    /// Cancellation: dropping the future after it started may still let the
    /// commit happen; the outcome is then unknown, as with a lost reply.
    pub async fn commit(self) -> Result<CommitInfo, StorageError> {
        let mut txn = match self.commit_now() {
            CommitNow::Done(result) => return result,
            CommitNow::Wait(txn) => txn,
        };
        let inner = txn.inner.clone();
        let mut request = txn.take_request();
        let (reply, answer) = oneshot::channel();
        request.reply = Some(reply);
        let sender = lock(&inner.queue).clone();
        let Some(mut sender) = sender else {
            return Err(StorageError::Closed);
        };
        futures::SinkExt::send(&mut sender, request)
            .await
            .map_err(|_| StorageError::Closed)?;
        answer.await.unwrap_or(Err(StorageError::Closed))
    }

    /// Commits as [`Transaction::commit`] does, at once, when nothing needs
    /// to wait: a transaction with nothing to write, or a store whose engine
    /// never waits on I/O (the in-memory engine: its commits are validated
    /// and applied inline). Otherwise gives the transaction back, for
    /// [`Transaction::commit`]. Saves the caller a future per commit.
    pub fn commit_now(mut self) -> CommitNow {
        if self.writes.is_empty() && self.fence.is_none() {
            // Read-only: serializable at its snapshot.
            let version = match &self.view {
                Some(view) => view.active.version,
                None => self.inner.occ().version,
            };
            return CommitNow::Done(Ok(CommitInfo { version }));
        }
        if self.inner.engine.blocks() || cfg!(feature = "bug-storage-nonatomic-apply") {
            return CommitNow::Wait(Box::new(self));
        }
        // An engine that never waits on I/O gains nothing from group
        // commit: validate and apply here, without a hop to the committer.
        let request = self.take_request();
        let answer = commit_inline(&self.inner, std::slice::from_ref(&request), false).pop();
        CommitNow::Done(answer.unwrap_or(Err(StorageError::Closed)))
    }

    /// What the commit sends to be validated and applied.
    fn take_request(&mut self) -> CommitRequest {
        CommitRequest {
            // The engine snapshot is not needed past the reads.
            active: self.view.take().map(|view| view.active),
            reads: std::mem::take(&mut self.reads),
            ranges: std::mem::take(&mut self.ranges),
            writes: std::mem::take(&mut self.writes),
            fence: self.fence.take(),
            reply: None,
        }
    }
}

/// What [`Transaction::commit_now`] came to.
#[derive(Debug)]
pub enum CommitNow {
    /// Committed (or refused) at once.
    Done(Result<CommitInfo, StorageError>),
    /// The commit must wait (for the committer and a durable write): the
    /// transaction, for [`Transaction::commit`].
    Wait(Box<Transaction>),
}

/// Locks `mutex`. Every update under the store's locks is a few
/// assignments or a single collection operation that cannot panic midway, so
/// a poisoned lock still guards a consistent value.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Committer {
    inner: Arc<StoreInner>,
    spawner: SharedSpawner,
}

/// Whether `request` conflicts with any write set in `log` or `batch`
/// committed after its snapshot. Returns the conflicting key.
fn conflict(request: &CommitRequest, occ: &OccState, batch: &[&CommitRequest]) -> Option<Vec<u8>> {
    if cfg!(feature = "bug-storage-skip-occ-check") {
        return None;
    }
    let Some(active) = &request.active else {
        // It never read: nothing it saw can have changed.
        return None;
    };
    let snapshot = active.version;
    if snapshot < occ.floor {
        return Some(b"<validation history pruned>".to_vec());
    }
    let read = |key: &Bytes| {
        let key: &[u8] = key;
        request.reads.contains(key)
            || request
                .ranges
                .iter()
                .any(|(start, end)| &start[..] <= key && key < &end[..])
    };
    let logged = occ
        .log
        .iter()
        .filter(|entry| entry.version > snapshot)
        .flat_map(|entry| entry.keys.iter());
    let batched = batch.iter().flat_map(|earlier| earlier.writes.keys());
    logged.chain(batched).find(|key| read(key)).map(|key| key.to_vec())
}

fn check_fence(view: &mut dyn WriteView, fence: &Option<Fence>) -> Result<(), StorageError> {
    let Some(fence) = fence else { return Ok(()) };
    let found = view.get(&fence.key)?;
    if found.as_ref() == Some(&fence.token) {
        return Ok(());
    }
    Err(StorageError::FencingRejected {
        key: printable(&fence.key),
        expected: fence.token.to_vec(),
        found: found.map(|value| value.to_vec()),
    })
}

type BatchOutcome = Vec<Result<(), StorageError>>;

impl Committer {
    async fn run(self, mut receiver: futures::channel::mpsc::Receiver<CommitRequest>) {
        use futures::StreamExt;
        while let Some(first) = receiver.next().await {
            let mut batch = vec![first];
            while batch.len() < COMMIT_BATCH_MAX {
                match receiver.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            if cfg!(feature = "bug-storage-nonatomic-apply") {
                for request in batch {
                    self.commit_nonatomic(request).await;
                }
            } else {
                self.commit_batch(batch).await;
            }
        }
    }

    /// Runs `work` on the blocking seam and waits for its result.
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (sender, receiver) = oneshot::channel();
        let _task = self.spawner.spawn_blocking(
            "storage-commit",
            Box::new(move || {
                let _ = sender.send(work());
            }),
        );
        receiver.await.ok()
    }

    async fn commit_batch(&self, batch: Vec<CommitRequest>) {
        if !self.inner.engine.blocks() {
            // A memory engine never waits on I/O: no hop to the blocking pool.
            // (Its commits are made inline by `commit_now` and do not reach
            // the committer today; this keeps the committer correct for any
            // engine.)
            let answers = commit_inline(&self.inner, &batch, true);
            self.answer(batch, answers);
            return;
        }
        let inner = self.inner.clone();
        let applied = self.blocking(move || {
            let outcomes = apply_batch(&inner, &batch, None);
            (batch, outcomes)
        });
        let (batch, outcomes) = match applied.await {
            Some(result) => result,
            None => {
                // The engine work died (a panic inside the engine): whether
                // the batch committed is unknown, and its writes are not in
                // the validation log. Refuse all further commits.
                tracing::error!("storage commit task died; closing the store");
                self.inner.close();
                return;
            }
        };
        self.publish(batch, outcomes);
    }

    /// Publishes the batch's outcomes and answers every waiting committer.
    fn publish(&self, batch: Vec<CommitRequest>, outcomes: BatchOutcome) {
        let answers = record(&mut self.inner.occ(), &batch, outcomes);
        observe(&self.inner, &batch, &answers);
        self.answer(batch, answers);
    }

    /// Answers every waiting committer of `batch`.
    fn answer(&self, batch: Vec<CommitRequest>, answers: Vec<Result<CommitInfo, StorageError>>) {
        for (request, answer) in batch.into_iter().zip(answers) {
            let CommitRequest { active, reply, .. } = request;
            drop(active);
            if let Some(reply) = reply {
                let _ = reply.send(answer);
            }
        }
    }

    /// The `bug-storage-nonatomic-apply` path: each write is its own engine
    /// transaction, with a yield between them, so readers and crashes can
    /// see half a commit.
    async fn commit_nonatomic(&self, request: CommitRequest) {
        let verdict = {
            let occ = self.inner.occ();
            match conflict(&request, &occ, &[]) {
                Some(key) => Err(StorageError::Conflict { key: printable(&key) }),
                None => Ok(()),
            }
        };
        let mut result = verdict;
        if result.is_ok() {
            let writes: Vec<(Bytes, Option<Bytes>)> = request
                .writes
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            for (key, value) in writes {
                let engine = self.inner.engine.clone();
                let applied = self
                    .blocking(move || {
                        engine.write(&mut |view| match &value {
                            Some(value) => view.put(&key, value),
                            None => view.delete(&key),
                        })
                    })
                    .await
                    .unwrap_or(Err(StorageError::Closed));
                if let Err(error) = applied {
                    result = Err(error);
                    break;
                }
            }
        }
        self.publish(vec![request], vec![result]);
    }
}

/// Validates, applies and publishes `batch` under one hold of the
/// validation lock: for an engine that never blocks, so holding it across the
/// engine's write costs no I/O wait. `closed_ok`: commit even if the store
/// is closed (the committer's queued commits still complete).
fn commit_inline(
    inner: &StoreInner,
    batch: &[CommitRequest],
    closed_ok: bool,
) -> Vec<Result<CommitInfo, StorageError>> {
    let observed = inner.observed.load(Ordering::SeqCst);
    let _order = observed.then(|| lock(&inner.observing));
    let answers = {
        let mut occ = inner.occ();
        if !closed_ok && inner.closed.load(Ordering::SeqCst) {
            return batch.iter().map(|_| Err(StorageError::Closed)).collect();
        }
        let outcomes = apply_batch(inner, batch, Some(&occ));
        record(&mut occ, batch, outcomes)
    };
    // Read again: a commit under way when the observer was set is shown
    // too (perhaps out of order).
    observe(inner, batch, &answers);
    answers
}

/// Publishes versions for the successful commits of a batch (in order) and
/// counts them; returns every request's answer, in order.
fn record(
    occ: &mut OccState,
    batch: &[CommitRequest],
    outcomes: BatchOutcome,
) -> Vec<Result<CommitInfo, StorageError>> {
    occ.stats.batches += 1;
    let mut answers = Vec::with_capacity(batch.len());
    // A write set is logged only while some snapshot may need validating
    // against it: one registered now (snapshots register under this lock,
    // at the current version).
    let log = |occ: &mut OccState, request: &CommitRequest| {
        occ.version += 1;
        let version = occ.version;
        if !occ.active.is_empty() {
            let keys = request.writes.keys().cloned().collect();
            occ.log.push_back(CommittedWrites { version, keys });
        }
        version
    };
    for (request, outcome) in batch.iter().zip(outcomes) {
        if matches!(outcome, Err(StorageError::Io { .. } | StorageError::Failed { .. })) {
            // The engine failed: its write may still have been applied
            // (e.g. written, then the sync failed). Validate later commits
            // against these writes as if they were, so no transaction that
            // read the old values can commit on them.
            log(occ, request);
        }
        match outcome {
            Ok(()) => {
                occ.stats.commits += 1;
                answers.push(Ok(CommitInfo {
                    version: log(occ, request),
                }));
            }
            Err(error) => {
                occ.stats.rejected += 1;
                answers.push(Err(error));
            }
        }
    }
    // Commits that never read register no snapshot, whose release would
    // prune: keep the log to what live snapshots still need.
    occ.prune();
    answers
}

/// Shows the batch's applied commits to the observer, if one is set.
fn observe(inner: &StoreInner, batch: &[CommitRequest], answers: &[Result<CommitInfo, StorageError>]) {
    if !inner.observed.load(Ordering::SeqCst) {
        return;
    }
    let observer = lock(&inner.observer).clone();
    if let Some(observer) = observer {
        for (request, answer) in batch.iter().zip(answers) {
            if let Ok(info) = answer {
                observer(info.version, &request.writes);
            }
        }
    }
}

/// Validates and applies a batch in one engine transaction, against `held`
/// (the validation state, locked by the caller) or else locking it inside
/// the engine's transaction.
fn apply_batch(inner: &StoreInner, batch: &[CommitRequest], held: Option<&OccState>) -> BatchOutcome {
    let mut outcomes: BatchOutcome = Vec::with_capacity(batch.len());
    let written = inner.engine.write(&mut |view| {
        outcomes.clear();
        let locked;
        let occ: &OccState = match held {
            Some(occ) => occ,
            None => {
                locked = inner.occ();
                &locked
            }
        };
        let mut applied: Vec<&CommitRequest> = Vec::new();
        for request in batch {
            if let Some(key) = conflict(request, occ, &applied) {
                outcomes.push(Err(StorageError::Conflict { key: printable(&key) }));
                continue;
            }
            if let Err(error) = check_fence(view, &request.fence) {
                if matches!(error, StorageError::FencingRejected { .. }) {
                    outcomes.push(Err(error));
                    continue;
                }
                return Err(error);
            }
            for (key, value) in &request.writes {
                match value {
                    Some(value) => view.put_shared(key, value)?,
                    None => view.delete(key)?,
                }
            }
            if batch.len() > 1 {
                applied.push(request);
            }
            outcomes.push(Ok(()));
        }
        Ok(())
    });
    if let Err(error) = written {
        outcomes = batch.iter().map(|_| Err(error.clone())).collect();
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryEngine;
    use kelpie_core::spawn::TokioSpawner;

    #[tokio::test]
    async fn the_validation_log_keeps_only_what_live_snapshots_need() {
        let store = Store::new(
            Arc::new(MemoryEngine::new()),
            Arc::new(TokioSpawner::current().expect("in a runtime")),
        );
        let actor = ActorId::new("test", "log").expect("valid id");
        let log_len = || store.inner.occ().log.len();
        for round in 0..100u8 {
            let mut blind = store.begin_deferred();
            blind.put(&actor, b"k", vec![round]).expect("put");
            blind.commit().await.expect("commit");
        }
        assert_eq!(log_len(), 0, "no snapshot is live: nothing to validate against");
        let mut reader = store.begin().expect("begin");
        for round in 0..3u8 {
            let mut blind = store.begin_deferred();
            blind.put(&actor, b"k", vec![round]).expect("put");
            blind.commit().await.expect("commit");
        }
        assert_eq!(log_len(), 3, "the reader's snapshot needs the commits since it");
        assert_eq!(reader.get(&actor, b"k"), Ok(Some(Bytes::from(vec![99u8]))));
        reader.put(&actor, b"k", vec![7]).expect("put");
        assert!(matches!(reader.commit().await, Err(StorageError::Conflict { .. })));
        assert_eq!(log_len(), 0);
    }
}
