//! `KelpieJournal` (specs/tla/KelpieJournal.tla) on the production
//! [`Journal`] over the production [`kelpie_storage::Store`]: one actor's
//! invocations with idempotency keys, executed with their journal
//! completion in one commit, retried by clients, and replayed by recovery
//! after a crash.
//!
//! The store is the node's disk: a crash loses the node's process state
//! (the invocation in flight, the recovery in progress), never a
//! committed write (production acknowledges a commit only once durable;
//! the disk-level bug `storage-ack-before-sync` needs the embedded engine:
//! [`crate::durability::KelpieDurability`] checks `Durability` there). As with `KelpieTransaction`, the state keeps
//! the action log and each step replays it on a fresh production store and
//! journal, recording what they answered.
//!
//! The store's tasks run on a [`StepSpawner`]: the memory engine commits
//! inline, so in production builds every commit completes within its
//! action. Under `bug-storage-nonatomic-apply` commits go through the
//! store's committer task, which applies each write as its own engine
//! write; `Complete`'s commit then stops after the committer queued its
//! first engine write, and each `ApplyWrite` runs the next one (a `Crash`
//! may come between them). Only `Complete`'s commit is split this way; the
//! other commits (`Journal::append`'s) are driven to completion within
//! their action.
//!
//! The invocation's effect appends its idempotency key to the actor's
//! state, so the state is the sequence of applied effects.
//!
//! Actions (the spec's names): `ApplyWrite` (the committer applies the
//! next engine write of the commit in flight; enabled only under
//! `bug-storage-nonatomic-apply`), `Append(k)` (invocation `k` arrives:
//! `Journal::append`; a completed duplicate is answered from its record, a
//! pending one executed), `Complete` (effect + `Journal::complete` in one
//! commit; acknowledges the client unless it is a replay), `Crash`,
//! `Restart` (`Journal::recover` hands over the entries to replay),
//! `Recover` (the next of them is executed), and `WriteFailed` (the engine
//! write of `Append(k)`'s new entry, or of `Complete`'s commit, fails with an
//! I/O error: the [`FaultyEngine`] under the production store fails it
//! before applying anything or after applying all of it; the client is not
//! acknowledged, and the node reopens the store over the same engine and
//! runs `Journal::recover`, as after `Restart`).
//!
//! Properties: `always` `Durability`, `AtomicVisibility`,
//! `ReplayIdempotent`, `EffectsInOrder`; `sometimes` `ReplayAfterCrash`,
//! `DuplicateAnswered`, `WriteFailedThenRecovered` (after a failed write,
//! recovery replayed an entry to completion).
//!
//! Bounds (`Default`): 3 invocations, each arriving at most twice, 2
//! crashes, 1 write failure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use kelpie_storage::journal::{AppendOutcome, EntryStatus, Journal, JournalEntry};
use kelpie_storage::{CommitInfo, StorageError, Store, Transaction};
use stateright::{Model, Property};

use crate::common::{actor, StepSpawner, StillClock, STATE_KEY};
use crate::faulty::{Fault, FaultyEngine};

/// An action of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JAction {
    /// Invocation `k` arrives (first time or a client retry).
    Append(u8),
    /// The invocation being executed commits its effect and completion.
    Complete,
    /// The node crashes.
    Crash,
    /// The node restarts and runs recovery.
    Restart,
    /// Recovery executes the next entry it was handed.
    Recover,
    /// The store's committer applies the next engine write of the commit
    /// in flight (only under `bug-storage-nonatomic-apply`).
    ApplyWrite,
    /// An engine write fails with an I/O error: `Some(k)` the write of
    /// invocation `k`'s new journal entry (`Journal::append`), `None` the
    /// running invocation's effect + completion; `applied`: the write
    /// landed and only its answer was lost. Recovery follows.
    WriteFailed {
        /// The invocation whose append fails, or `None` for the completion.
        key: Option<u8>,
        /// Whether the failed write was applied.
        applied: bool,
    },
}

/// What the node is doing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Serving; nothing in flight.
    Idle,
    /// Executing entry `sequence` (invocation `key`); `replay` if recovery runs it.
    Running {
        /// The entry's sequence.
        sequence: u64,
        /// Its invocation.
        key: u8,
        /// Whether recovery runs it.
        replay: bool,
    },
    /// Committing entry `sequence`'s effect and completion: the commit is
    /// with the store's committer, some of its engine writes applied.
    Committing {
        /// The entry's sequence.
        sequence: u64,
        /// Its invocation.
        key: u8,
        /// Whether recovery runs it.
        replay: bool,
    },
    /// Recovering: these entries are still to be replayed, in order.
    Recovering(Vec<u64>),
    /// Down.
    Down,
}

/// What the production journal and store answered along the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JView {
    /// The node's phase.
    pub phase: Phase,
    /// Invocations acknowledged to their client.
    pub acked: BTreeSet<u8>,
    /// The actor's state: the effects applied, in order.
    pub effects: Vec<u8>,
    /// Journal entries: sequence -> (invocation, completed).
    pub entries: BTreeMap<u64, (u8, bool)>,
    /// Entries recovery executed.
    pub replays: u8,
    /// Duplicates answered from their record.
    pub duplicates: u8,
    /// Engine writes that failed.
    pub write_failures: u8,
    /// Entries recovery executed after a write failure.
    pub replays_after_failure: u8,
}

/// A state: the log and the view it leads to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JState {
    /// Every action so far.
    pub log: Vec<JAction>,
    /// What the production code answered.
    pub view: JView,
}

/// The `KelpieJournal` model.
#[derive(Clone, Debug)]
pub struct KelpieJournal {
    /// Number of distinct invocations (idempotency keys).
    pub invocations: u8,
    /// How often each invocation may arrive (first time and retries).
    pub max_arrivals: usize,
    /// Crash bound.
    pub max_crashes: usize,
    /// Bound on failed engine writes.
    pub max_write_failures: usize,
}

impl Default for KelpieJournal {
    fn default() -> Self {
        Self {
            invocations: 3,
            max_arrivals: 2,
            max_crashes: 2,
            max_write_failures: 1,
        }
    }
}

fn idempotency_key(k: u8) -> String {
    format!("inv-{k}")
}

type CommitFuture = LocalBoxFuture<'static, Result<CommitInfo, StorageError>>;

struct World {
    engine: Arc<FaultyEngine>,
    spawner: Arc<StepSpawner>,
    store: Store,
    /// The commit with the store's committer: its future, entry and
    /// whether recovery runs it.
    committing: Option<(CommitFuture, JournalEntry, bool)>,
    journal: Journal,
    running: Option<(JournalEntry, bool)>,
    queue: Vec<JournalEntry>,
    up: bool,
    acked: BTreeSet<u8>,
    replays: u8,
    duplicates: u8,
    write_failures: u8,
    replays_after_failure: u8,
}

impl World {
    fn open(engine: &Arc<FaultyEngine>) -> (Arc<StepSpawner>, Store, Journal) {
        let spawner = Arc::new(StepSpawner::default());
        let store = Store::new(engine.clone(), spawner.clone());
        let journal = Journal::new(store.clone(), Arc::new(StillClock), Duration::from_secs(60));
        (spawner, store, journal)
    }

    fn new() -> Self {
        let engine = Arc::new(FaultyEngine::new());
        let (spawner, store, journal) = Self::open(&engine);
        Self {
            engine,
            spawner,
            store,
            committing: None,
            journal,
            running: None,
            queue: Vec::new(),
            up: true,
            acked: BTreeSet::new(),
            replays: 0,
            duplicates: 0,
            write_failures: 0,
            replays_after_failure: 0,
        }
    }

    fn fault(applied: bool) -> Fault {
        if applied {
            Fault::WriteAfterApply
        } else {
            Fault::WriteBeforeApply
        }
    }

    /// `Journal::recover`: the pending entries, to be replayed in order.
    fn recover(&mut self) {
        self.up = true;
        let collected = Arc::new(Mutex::new(Vec::new()));
        let sink = collected.clone();
        let mut replay = move |entry: JournalEntry| -> futures::future::BoxFuture<'static, Result<(), StorageError>> {
            sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(entry);
            Box::pin(async { Ok(()) })
        };
        self.spawner
            .drive(self.journal.recover::<StorageError>(&mut replay))
            .expect("recover");
        let entries = std::mem::take(&mut *collected.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        self.queue = entries;
    }

    /// Invocation `k`'s effect and its entry's completion in one commit;
    /// `Some` with the commit's outcome, `None` if the entry was completed
    /// meanwhile (nothing to commit).
    fn commit_completion(&mut self, entry: &JournalEntry) -> Option<Result<(), StorageError>> {
        let txn = self.prepare_completion(entry)?;
        Some(self.spawner.drive(txn.commit()).map(|_| ()))
    }

    /// The transaction of invocation `k`'s effect and its entry's
    /// completion, uncommitted; `None` if the entry was completed meanwhile.
    fn prepare_completion(&mut self, entry: &JournalEntry) -> Option<Transaction> {
        let actor = actor();
        let k = entry.payload.first().copied().expect("payload");
        let mut txn = self.store.begin().expect("begin");
        let mut effects = txn
            .get(&actor, STATE_KEY)
            .expect("read state")
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
        effects.push(k);
        txn.put(&actor, STATE_KEY, Bytes::from(effects)).expect("write state");
        match self.journal.complete(&mut txn, entry, Bytes::from_static(b"ok")) {
            Ok(()) => Some(txn),
            // Completed meanwhile: nothing is applied.
            Err(StorageError::AlreadyCompleted { .. }) => None,
            Err(other) => panic!("complete: {other}"),
        }
    }

    fn apply(&mut self, action: JAction) {
        let actor = actor();
        match action {
            JAction::Append(k) => {
                let key = idempotency_key(k);
                let appended = self.journal.append(&actor, Some(&key), Bytes::from(vec![k]), None);
                let outcome = self.spawner.drive(appended).expect("append on the memory engine");
                match outcome {
                    AppendOutcome::Appended(entry) => self.running = Some((entry, false)),
                    AppendOutcome::Duplicate {
                        status: EntryStatus::Completed { .. },
                        ..
                    } => {
                        self.duplicates += 1;
                        self.acked.insert(k);
                    }
                    AppendOutcome::Duplicate { sequence, .. } => {
                        let entry = self
                            .journal
                            .entries(&actor)
                            .expect("entries")
                            .into_iter()
                            .find(|entry| entry.sequence == sequence)
                            .expect("the pending entry is in the journal");
                        self.running = Some((entry, false));
                    }
                }
            }
            JAction::Complete => {
                let (entry, replay) = self.running.take().expect("an invocation runs");
                if let Some(txn) = self.prepare_completion(&entry) {
                    let mut commit: CommitFuture = Box::pin(txn.commit());
                    match self.spawner.poll_once(&mut commit) {
                        Some(outcome) => self.completed(&entry, replay, outcome),
                        None => self.committing = Some((commit, entry, replay)),
                    }
                }
            }
            JAction::ApplyWrite => {
                let (mut commit, entry, replay) = self.committing.take().expect("a commit in flight");
                assert!(self.spawner.run_blocking(), "an engine write is queued");
                match self.spawner.poll_once(&mut commit) {
                    Some(outcome) => self.completed(&entry, replay, outcome),
                    None => self.committing = Some((commit, entry, replay)),
                }
            }
            JAction::WriteFailed { key, applied } => {
                self.engine.arm(Self::fault(applied));
                let failed = match key {
                    Some(k) => {
                        let key = idempotency_key(k);
                        let appended = self.journal.append(&actor, Some(&key), Bytes::from(vec![k]), None);
                        match self.spawner.drive(appended) {
                            Err(StorageError::Io { .. }) => true,
                            Err(other) => panic!("append: {other}"),
                            Ok(outcome) => panic!("append wrote nothing to fail: {outcome:?}"),
                        }
                    }
                    None => {
                        let (entry, _) = self.running.take().expect("an invocation runs");
                        match self.commit_completion(&entry) {
                            Some(Err(StorageError::Io { .. })) => true,
                            Some(other) => panic!("failed completion: {other:?}"),
                            None => false,
                        }
                    }
                };
                // Still armed only if nothing was written (completed meanwhile).
                self.engine.disarm();
                if failed {
                    // Not acknowledged. The store refuses everything until
                    // reopened; reopening runs recovery.
                    self.write_failures += 1;
                    self.running = None;
                    self.queue.clear();
                    (self.spawner, self.store, self.journal) = Self::open(&self.engine);
                    self.recover();
                }
            }
            JAction::Crash => {
                self.up = false;
                self.running = None;
                self.queue.clear();
                if self.committing.take().is_some() {
                    // The committer dies with the process, its remaining
                    // engine writes unapplied; the node reopens the store.
                    (self.spawner, self.store, self.journal) = Self::open(&self.engine);
                }
            }
            JAction::Restart => self.recover(),
            JAction::Recover => {
                let entry = self.queue.remove(0);
                self.running = Some((entry, true));
            }
        }
    }

    /// `Complete`'s commit answered: acknowledge (or count the replay).
    fn completed(&mut self, entry: &JournalEntry, replay: bool, outcome: Result<CommitInfo, StorageError>) {
        outcome.expect("commit on the memory engine");
        let k = entry.payload.first().copied().expect("payload");
        if replay {
            self.replays += 1;
            if self.write_failures > 0 {
                self.replays_after_failure += 1;
            }
        } else {
            self.acked.insert(k);
        }
    }

    fn view(&self) -> JView {
        let actor = actor();
        let mut txn = self.store.begin().expect("begin");
        let effects = txn
            .get(&actor, STATE_KEY)
            .expect("read state")
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
        let entries = self
            .journal
            .entries(&actor)
            .expect("entries")
            .into_iter()
            .map(|entry| {
                let k = entry.payload.first().copied().unwrap_or(0);
                let done = matches!(entry.status, EntryStatus::Completed { .. });
                (entry.sequence, (k, done))
            })
            .collect();
        let phase = if !self.up {
            Phase::Down
        } else if let Some((_, entry, replay)) = &self.committing {
            Phase::Committing {
                sequence: entry.sequence,
                key: entry.payload.first().copied().unwrap_or(0),
                replay: *replay,
            }
        } else if let Some((entry, replay)) = &self.running {
            Phase::Running {
                sequence: entry.sequence,
                key: entry.payload.first().copied().unwrap_or(0),
                replay: *replay,
            }
        } else if !self.queue.is_empty() {
            Phase::Recovering(self.queue.iter().map(|entry| entry.sequence).collect())
        } else {
            Phase::Idle
        };
        JView {
            phase,
            acked: self.acked.clone(),
            effects,
            entries,
            replays: self.replays,
            duplicates: self.duplicates,
            write_failures: self.write_failures,
            replays_after_failure: self.replays_after_failure,
        }
    }
}

/// Replays `log` on a fresh production store and journal.
pub fn replay(log: &[JAction]) -> JView {
    let mut world = World::new();
    for action in log {
        world.apply(*action);
    }
    world.view()
}

impl Model for KelpieJournal {
    type State = JState;
    type Action = JAction;

    fn init_states(&self) -> Vec<JState> {
        vec![JState {
            log: Vec::new(),
            view: replay(&[]),
        }]
    }

    fn actions(&self, state: &JState, actions: &mut Vec<JAction>) {
        let crashes = state.log.iter().filter(|a| **a == JAction::Crash).count();
        let may_fail = state
            .log
            .iter()
            .filter(|a| matches!(a, JAction::WriteFailed { .. }))
            .count()
            < self.max_write_failures;
        match &state.view.phase {
            Phase::Down => actions.push(JAction::Restart),
            Phase::Idle => {
                for k in 0..self.invocations {
                    let arrivals = state.log.iter().filter(|a| **a == JAction::Append(k)).count();
                    if arrivals < self.max_arrivals {
                        actions.push(JAction::Append(k));
                    }
                }
                // A write fails only if the append writes: a new entry. The
                // invocations never appended are interchangeable (none is in
                // the log yet), so the lowest stands for all of them.
                let fresh = (0..self.invocations).find(|k| !state.view.entries.values().any(|(key, _)| key == k));
                if let Some(k) = fresh.filter(|_| may_fail) {
                    for applied in [false, true] {
                        actions.push(JAction::WriteFailed { key: Some(k), applied });
                    }
                }
            }
            Phase::Running { .. } => {
                actions.push(JAction::Complete);
                if may_fail {
                    for applied in [false, true] {
                        actions.push(JAction::WriteFailed { key: None, applied });
                    }
                }
            }
            Phase::Committing { .. } => actions.push(JAction::ApplyWrite),
            Phase::Recovering(_) => actions.push(JAction::Recover),
        }
        if state.view.phase != Phase::Down && crashes < self.max_crashes {
            actions.push(JAction::Crash);
        }
    }

    fn next_state(&self, last: &JState, action: JAction) -> Option<JState> {
        let mut log = last.log.clone();
        log.push(action);
        let view = replay(&log);
        if matches!(action, JAction::WriteFailed { .. }) && view.write_failures == last.view.write_failures {
            // Nothing was written (the entry was completed meanwhile).
            return None;
        }
        Some(JState { log, view })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("Durability", |_: &Self, state: &JState| {
                let view = &state.view;
                view.acked
                    .iter()
                    .all(|k| view.effects.contains(k) && view.entries.values().any(|(key, done)| key == k && *done))
            }),
            Property::always("AtomicVisibility", |_: &Self, state: &JState| {
                let view = &state.view;
                view.entries.values().all(|(k, done)| view.effects.contains(k) == *done)
            }),
            Property::always("ReplayIdempotent", |_: &Self, state: &JState| {
                let effects = &state.view.effects;
                effects.iter().collect::<BTreeSet<_>>().len() == effects.len()
            }),
            Property::always("EffectsInOrder", |_: &Self, state: &JState| {
                // Effects follow journal (append) order.
                let order: Vec<u8> = state.view.entries.values().map(|(k, _)| *k).collect();
                let positions: Vec<usize> = state
                    .view
                    .effects
                    .iter()
                    .filter_map(|k| order.iter().position(|o| o == k))
                    .collect();
                positions.windows(2).all(|pair| pair[0] < pair[1])
            }),
            Property::sometimes("ReplayAfterCrash", |_: &Self, state: &JState| state.view.replays > 0),
            Property::sometimes("DuplicateAnswered", |_: &Self, state: &JState| {
                state.view.duplicates > 0
            }),
            Property::sometimes("WriteFailedThenRecovered", |_: &Self, state: &JState| {
                state.view.replays_after_failure > 0
            }),
        ]
    }
}
