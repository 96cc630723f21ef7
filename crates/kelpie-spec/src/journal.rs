//! `KelpieJournal` (specs/tla/KelpieJournal.tla) on the production
//! [`Journal`] over the production [`kelpie_storage::Store`]: one actor's
//! invocations with idempotency keys, executed with their journal
//! completion in one commit, retried by clients, and replayed by recovery
//! after a crash.
//!
//! The store is the node's disk: a crash loses the node's process state
//! (the invocation in flight, the recovery in progress), never a
//! committed write (production acknowledges a commit only once durable;
//! the disk-level bugs `storage-ack-before-sync` and
//! `storage-nonatomic-apply` need the embedded engine or the committer task
//! and are not modelled here). As with `KelpieTransaction`, the state keeps
//! the action log and each step replays it on a fresh production store and
//! journal, recording what they answered.
//!
//! The invocation's effect appends its idempotency key to the actor's
//! state, so the state is the sequence of applied effects.
//!
//! Actions (the spec's names): `Append(k)` (invocation `k` arrives:
//! `Journal::append`; a completed duplicate is answered from its record, a
//! pending one executed), `Complete` (effect + `Journal::complete` in one
//! commit; acknowledges the client unless it is a replay), `Crash`,
//! `Restart` (`Journal::recover` hands over the entries to replay),
//! `Recover` (the next of them is executed).
//!
//! Properties: `always` `Durability`, `AtomicVisibility`,
//! `ReplayIdempotent`, `EffectsInOrder`; `sometimes` `ReplayAfterCrash`,
//! `DuplicateAnswered`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kelpie_storage::journal::{AppendOutcome, EntryStatus, Journal, JournalEntry};
use kelpie_storage::{StorageError, Store};
use stateright::{Model, Property};

use crate::common::{actor, complete, new_store, StillClock, STATE_KEY};

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
}

impl Default for KelpieJournal {
    fn default() -> Self {
        Self {
            invocations: 3,
            max_arrivals: 2,
            max_crashes: 2,
        }
    }
}

fn idempotency_key(k: u8) -> String {
    format!("inv-{k}")
}

struct World {
    store: Store,
    journal: Journal,
    running: Option<(JournalEntry, bool)>,
    queue: Vec<JournalEntry>,
    up: bool,
    acked: BTreeSet<u8>,
    replays: u8,
    duplicates: u8,
}

impl World {
    fn new() -> Self {
        let store = new_store();
        let journal = Journal::new(store.clone(), Arc::new(StillClock), Duration::from_secs(60));
        Self {
            store,
            journal,
            running: None,
            queue: Vec::new(),
            up: true,
            acked: BTreeSet::new(),
            replays: 0,
            duplicates: 0,
        }
    }

    fn apply(&mut self, action: JAction) {
        let actor = actor();
        match action {
            JAction::Append(k) => {
                let key = idempotency_key(k);
                let outcome = complete(self.journal.append(&actor, Some(&key), Bytes::from(vec![k]), None))
                    .expect("append on the memory engine");
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
                let k = entry.payload.first().copied().expect("payload");
                let mut txn = self.store.begin().expect("begin");
                let mut effects = txn
                    .get(&actor, STATE_KEY)
                    .expect("read state")
                    .map(|bytes| bytes.to_vec())
                    .unwrap_or_default();
                effects.push(k);
                txn.put(&actor, STATE_KEY, Bytes::from(effects)).expect("write state");
                match self.journal.complete(&mut txn, &entry, Bytes::from_static(b"ok")) {
                    Ok(()) => {
                        complete(txn.commit()).expect("commit on the memory engine");
                        if replay {
                            self.replays += 1;
                        } else {
                            self.acked.insert(k);
                        }
                    }
                    // Completed meanwhile: nothing is applied.
                    Err(StorageError::AlreadyCompleted { .. }) => {}
                    Err(other) => panic!("complete: {other}"),
                }
            }
            JAction::Crash => {
                self.up = false;
                self.running = None;
                self.queue.clear();
            }
            JAction::Restart => {
                self.up = true;
                let collected = Arc::new(Mutex::new(Vec::new()));
                let sink = collected.clone();
                let mut replay =
                    move |entry: JournalEntry| -> futures::future::BoxFuture<'static, Result<(), StorageError>> {
                        sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(entry);
                        Box::pin(async { Ok(()) })
                    };
                complete(self.journal.recover::<StorageError>(&mut replay)).expect("recover");
                let entries = std::mem::take(&mut *collected.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
                self.queue = entries;
            }
            JAction::Recover => {
                let entry = self.queue.remove(0);
                self.running = Some((entry, true));
            }
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
        match &state.view.phase {
            Phase::Down => actions.push(JAction::Restart),
            Phase::Idle => {
                for k in 0..self.invocations {
                    let arrivals = state.log.iter().filter(|a| **a == JAction::Append(k)).count();
                    if arrivals < self.max_arrivals {
                        actions.push(JAction::Append(k));
                    }
                }
            }
            Phase::Running { .. } => actions.push(JAction::Complete),
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
        ]
    }
}
