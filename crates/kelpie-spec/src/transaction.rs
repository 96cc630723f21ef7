//! `KelpieTransaction` (specs/tla/KelpieTransaction.tla) on the production
//! [`kelpie_storage::Store`] over [`kelpie_storage::MemoryEngine`]:
//! concurrent transactions reading and writing two keys, with snapshot
//! reads, optimistic validation at commit and commit-order serializability.
//!
//! Live transactions are not values a model state can hold, so the state
//! keeps the action log, and every step replays it on a fresh production
//! store (the log is short: the bounds are a few transactions of a few
//! operations), recording what the store answered: each read's value and
//! each commit's outcome. Every transaction writes its own id, so each
//! committed value names its writer.
//!
//! Actions (the spec's names): `Begin(t)`, `Read(t, k)`, `Write(t, k)`,
//! `Commit(t)`, `ReadFailed(t)` (a snapshot read of a key `t` has neither
//! read nor written fails with an I/O error — the [`FaultyEngine`] under the
//! production store fails it — and the caller drops the transaction: it
//! aborts with no effect). (`ApplyWrite`, the non-atomic-apply bug's step, is not
//! modelled: that bug routes commits through the committer task, which the
//! inline memory engine does not use.)
//!
//! Properties: `always` `SerializableIsolation` (every committed
//! transaction read exactly what the serial execution of the committed
//! read-write transactions in commit order gives at its position; a
//! read-only one at its snapshot); `sometimes` `ConflictAborts`,
//! `ConcurrentCommits`, `ReadFailedAborts` (a transaction with a buffered
//! write failed a read and was dropped, and the other committed).
//!
//! Bounds (`Default`): 2 transactions, 2 keys, 1 read failure.

use std::collections::BTreeMap;

use bytes::Bytes;
use std::sync::Arc;

use kelpie_storage::{StorageError, Store, Transaction};
use stateright::{Model, Property};

use crate::common::{actor, complete, NoSpawner};
use crate::faulty::{Fault, FaultyEngine};

/// An action (transaction `t`, key `k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxAction {
    /// `Store::begin`: take a snapshot.
    Begin(u8),
    /// `Transaction::get` of key `k` (not already read or written).
    Read(u8, u8),
    /// `Transaction::put` of key `k` (the value is `t + 1`).
    Write(u8, u8),
    /// `Transaction::commit`.
    Commit(u8),
    /// `Transaction::get` fails with an I/O error; the transaction is dropped.
    ReadFailed(u8),
}

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// Not begun.
    Idle,
    /// Begun, not committed.
    Active,
    /// Committed at this version of the store's commit order.
    Committed(u64),
    /// Refused with `Conflict`; nothing applied.
    Aborted,
    /// A read failed; dropped, nothing applied.
    ReadFailed,
}

/// What the store answered one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxView {
    /// Its status.
    pub status: TxStatus,
    /// The version of its snapshot.
    pub snapshot: u64,
    /// Keys read, with the value read (0: absent).
    pub reads: BTreeMap<u8, u8>,
    /// Keys written, with the value written.
    pub writes: BTreeMap<u8, u8>,
}

/// A state: the log, and what the production store answered along it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxState {
    /// Every action so far, in order.
    pub log: Vec<TxAction>,
    /// Each transaction, as the store answered it.
    pub txns: Vec<TxView>,
    /// Ghost: at least two commits had overlapping lifetimes.
    pub overlapped: bool,
}

/// The `KelpieTransaction` model.
#[derive(Clone, Debug)]
pub struct KelpieTransaction {
    /// Number of transactions.
    pub txns: u8,
    /// Number of keys.
    pub keys: u8,
    /// Bound on failed reads.
    pub max_read_failures: usize,
}

impl Default for KelpieTransaction {
    fn default() -> Self {
        Self {
            txns: 2,
            keys: 2,
            max_read_failures: 1,
        }
    }
}

fn key(k: u8) -> Vec<u8> {
    vec![b'k', b'0' + k]
}

/// Replays `log` on a fresh production store; returns each transaction's view.
pub fn replay(log: &[TxAction], txns: u8) -> Vec<TxView> {
    let engine = Arc::new(FaultyEngine::new());
    let store = Store::new(engine.clone(), Arc::new(NoSpawner));
    let actor = actor();
    let mut views = vec![
        TxView {
            status: TxStatus::Idle,
            snapshot: 0,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
        };
        usize::from(txns)
    ];
    let mut live: Vec<Option<Transaction>> = (0..txns).map(|_| None).collect();
    for action in log {
        match *action {
            TxAction::Begin(t) => {
                let txn = store.begin().expect("begin");
                views[usize::from(t)].snapshot = txn.snapshot_version();
                views[usize::from(t)].status = TxStatus::Active;
                live[usize::from(t)] = Some(txn);
            }
            TxAction::Read(t, k) => {
                let txn = live[usize::from(t)].as_mut().expect("active");
                let value = txn.get(&actor, &key(k)).expect("read");
                let value = value.and_then(|bytes| bytes.first().copied()).unwrap_or(0);
                views[usize::from(t)].reads.insert(k, value);
            }
            TxAction::Write(t, k) => {
                let txn = live[usize::from(t)].as_mut().expect("active");
                txn.put(&actor, &key(k), Bytes::from(vec![t + 1])).expect("write");
                views[usize::from(t)].writes.insert(k, t + 1);
            }
            TxAction::Commit(t) => {
                let txn = live[usize::from(t)].take().expect("active");
                views[usize::from(t)].status = match complete(txn.commit()) {
                    Ok(info) => TxStatus::Committed(info.version),
                    Err(StorageError::Conflict { .. }) => TxStatus::Aborted,
                    Err(other) => panic!("commit on the memory engine: {other}"),
                };
            }
            TxAction::ReadFailed(t) => {
                let view = &mut views[usize::from(t)];
                let k = (0..)
                    .find(|k| !view.reads.contains_key(k) && !view.writes.contains_key(k))
                    .expect("a key not read or written");
                let mut txn = live[usize::from(t)].take().expect("active");
                engine.arm(Fault::Read);
                match txn.get(&actor, &key(k)) {
                    Err(StorageError::Io { .. }) => {}
                    other => panic!("the failing read answered {other:?}"),
                }
                // The caller gives up: the transaction is dropped.
                drop(txn);
                view.status = TxStatus::ReadFailed;
            }
        }
    }
    views
}

/// Whether every committed transaction read what the serial execution of
/// the committed read-write transactions, in commit order, gives at its
/// position (a read-only one: at its snapshot).
pub fn serializable(txns: &[TxView]) -> bool {
    let mut writers: Vec<(u64, &TxView)> = txns
        .iter()
        .filter_map(|txn| match txn.status {
            TxStatus::Committed(version) if !txn.writes.is_empty() => Some((version, txn)),
            _ => None,
        })
        .collect();
    writers.sort_by_key(|(version, _)| *version);
    let reads_match = |db: &BTreeMap<u8, u8>, txn: &TxView| {
        txn.reads
            .iter()
            .all(|(k, value)| db.get(k).copied().unwrap_or(0) == *value)
    };
    // The state after each prefix of the commit order, by commit version.
    let mut db = BTreeMap::new();
    let mut after: Vec<(u64, BTreeMap<u8, u8>)> = vec![(0, db.clone())];
    for (version, txn) in &writers {
        if !reads_match(&db, txn) {
            return false;
        }
        db.extend(txn.writes.iter().map(|(k, v)| (*k, *v)));
        after.push((*version, db.clone()));
    }
    txns.iter().all(|txn| match txn.status {
        TxStatus::Committed(version) if txn.writes.is_empty() => {
            let at = after
                .iter()
                .rev()
                .find(|(v, _)| *v <= version)
                .map(|(_, db)| db.clone())
                .unwrap_or_default();
            reads_match(&at, txn)
        }
        _ => true,
    })
}

impl Model for KelpieTransaction {
    type State = TxState;
    type Action = TxAction;

    fn init_states(&self) -> Vec<TxState> {
        vec![TxState {
            log: Vec::new(),
            txns: replay(&[], self.txns),
            overlapped: false,
        }]
    }

    fn actions(&self, state: &TxState, actions: &mut Vec<TxAction>) {
        for (t, view) in (0..self.txns).zip(&state.txns) {
            match view.status {
                TxStatus::Idle => actions.push(TxAction::Begin(t)),
                TxStatus::Active => {
                    for k in 0..self.keys {
                        if !view.reads.contains_key(&k) && !view.writes.contains_key(&k) {
                            actions.push(TxAction::Read(t, k));
                        }
                        if !view.writes.contains_key(&k) {
                            actions.push(TxAction::Write(t, k));
                        }
                    }
                    actions.push(TxAction::Commit(t));
                    let failures = state
                        .log
                        .iter()
                        .filter(|a| matches!(a, TxAction::ReadFailed(_)))
                        .count();
                    let unread = (0..self.keys).any(|k| !view.reads.contains_key(&k) && !view.writes.contains_key(&k));
                    if failures < self.max_read_failures && unread {
                        actions.push(TxAction::ReadFailed(t));
                    }
                }
                TxStatus::Committed(_) | TxStatus::Aborted | TxStatus::ReadFailed => {}
            }
        }
    }

    fn next_state(&self, last: &TxState, action: TxAction) -> Option<TxState> {
        let mut log = last.log.clone();
        log.push(action);
        let txns = replay(&log, self.txns);
        let overlapped = last.overlapped
            || matches!(action, TxAction::Commit(t) if matches!(txns[usize::from(t)].status, TxStatus::Committed(_))
            && last.txns.iter().enumerate().any(|(other, view)| {
                other != usize::from(t)
                    && matches!(view.status, TxStatus::Committed(_))
                    && log.iter().position(|a| *a == TxAction::Commit(u8::try_from(other).unwrap_or(0)))
                        > log.iter().position(|a| *a == TxAction::Begin(t))
            }));
        Some(TxState { log, txns, overlapped })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("SerializableIsolation", |_: &Self, state: &TxState| {
                serializable(&state.txns)
            }),
            Property::sometimes("ConflictAborts", |_: &Self, state: &TxState| {
                state.txns.iter().any(|txn| txn.status == TxStatus::Aborted)
            }),
            Property::sometimes("ConcurrentCommits", |_: &Self, state: &TxState| state.overlapped),
            Property::sometimes("ReadFailedAborts", |_: &Self, state: &TxState| {
                state
                    .txns
                    .iter()
                    .any(|txn| txn.status == TxStatus::ReadFailed && !txn.writes.is_empty())
                    && state
                        .txns
                        .iter()
                        .any(|txn| matches!(txn.status, TxStatus::Committed(_)))
            }),
        ]
    }
}
