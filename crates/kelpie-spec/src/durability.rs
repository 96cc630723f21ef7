//! `KelpieJournal`'s `Durability` (specs/tla/KelpieJournal.tla) on the
//! production durable engine: the production [`Store`] over the production
//! [`EmbeddedEngine`] (redb, through `DiskBackend`) over an in-memory
//! [`MemDisk`] whose crash loses unsynced writes.
//!
//! The memory engine the other models drive has no disk, so a commit
//! acknowledged before it is synced (the bug switch
//! `bug-storage-ack-before-sync`: redb commits with `Durability::None`) is
//! invisible to them. Here every commit goes through redb to the disk seam;
//! a crash may fall between any two mutating disk operations (`write`,
//! `set_len`, `sync_data`) of a commit, or between commits; and the restart
//! finds any subset of the unsynced operations on the disk (the simulator's
//! `FsyncLoss`, without `TornWrite`). It reopens the database on what the
//! disk kept (redb's recovery runs) and reads the actor's state back.
//!
//! As with `KelpieJournal`, the state keeps the action log and each step
//! replays it on a fresh disk, engine and store, recording what they
//! answered. The store's committer and its blocking engine writes run on a
//! [`StepSpawner`], driven to completion within the action.
//!
//! Invocation `k`'s effect appends `k` to the actor's state (read, append,
//! put, commit), so the state is the sequence of committed effects.
//!
//! Actions (`KelpieJournal`'s names where they exist): `Commit` (the next
//! invocation's effect commits; its client is acknowledged if the commit
//! answers `Ok`), `CrashInCommit { ops }` (the node crashes while the next
//! invocation's commit runs, after `ops` of its mutating disk operations;
//! not enabled where the commit needs no more: that is `Commit` then
//! `Crash`), `Crash` (between commits), `Restart { kept }` (the node comes
//! back: of the unsynced disk operations, the `i`-th survived if bit `i` of
//! `kept` is set; then the database is reopened) and `CrashInRestart { kept,
//! ops }` (as `Restart`, but the node crashes again after `ops` mutating disk
//! operations of the open: during redb's recovery).
//!
//! Properties: `always` `Durability` (while up, every acknowledged effect is
//! in the state read back), `EffectsInOrder` (the state holds attempted
//! effects only, each once, in commit order); `sometimes`
//! `InterruptedCommitLost` (a crash in a commit lost it),
//! `InterruptedCommitSurvived` (the commit was on the disk when the crash
//! stopped it from answering: durable, never acknowledged) and
//! `CommitAfterCrash` (the reopened database takes commits).
//!
//! Bounds (`Default`): 2 invocations, 2 crashes (those in a restart count).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use kelpie_storage::{EmbeddedEngine, StorageError, Store};
use stateright::{Model, Property};

use crate::common::{actor, StepSpawner, STATE_KEY};
use crate::memdisk::MemDisk;

/// More mutating disk operations than any one commit takes: the crash
/// points `CrashInCommit` enumerates (a commit that takes more fails the
/// model, so no crash point is missed).
pub const COMMIT_OPS_MAX: u8 = 12;

/// More mutating disk operations than opening the database takes (its
/// recovery included): the crash points `CrashInRestart` enumerates.
pub const OPEN_OPS_MAX: u8 = 24;

/// The most unsynced disk operations a crash may find (`Restart` enumerates
/// every subset of them; more fails the model).
pub const UNSYNCED_OPS_MAX: usize = 8;

/// An action of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DAction {
    /// The next invocation's effect commits; acknowledged if the commit
    /// answers `Ok`.
    Commit,
    /// The node crashes while the next invocation's commit runs, after
    /// `ops` of its mutating disk operations.
    CrashInCommit {
        /// Mutating disk operations the commit completed before the crash.
        ops: u8,
    },
    /// The node crashes between commits.
    Crash,
    /// The node restarts: the `i`-th unsynced disk operation survived the
    /// crash if bit `i` of `kept` is set. The database is reopened.
    Restart {
        /// Which unsynced operations survived.
        kept: u8,
    },
    /// As `Restart`, but the node crashes again while the database opens
    /// (redb's recovery), after `ops` of its mutating disk operations.
    CrashInRestart {
        /// Which unsynced operations survived the first crash.
        kept: u8,
        /// Mutating disk operations the open completed before the crash.
        ops: u8,
    },
}

/// What the production engine and store answered along the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DView {
    /// Whether the node is up (down between a crash and its restart).
    pub up: bool,
    /// Invocations attempted (their effects are `0..attempted`).
    pub attempted: u8,
    /// Invocations acknowledged to their client.
    pub acked: BTreeSet<u8>,
    /// Invocations whose commit a crash interrupted (never acknowledged).
    pub interrupted: BTreeSet<u8>,
    /// The actor's state as the store reads it (while up; kept from the
    /// last read while down).
    pub effects: Vec<u8>,
    /// Crashes so far.
    pub crashes: u8,
    /// Unsynced disk operations (what a crash now may lose; while down,
    /// what the crash may have lost).
    pub unsynced: usize,
    /// Commits acknowledged after a restart.
    pub acked_after_crash: u8,
    /// Whether the last action was a no-op: a `CrashInCommit` or
    /// `CrashInRestart` whose commit or open finished before its crash
    /// point (the same as the action without the crash, then `Crash`).
    pub redundant: bool,
}

/// A state: the log and the view it leads to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DState {
    /// Every action so far.
    pub log: Vec<DAction>,
    /// What the production code answered.
    pub view: DView,
}

/// The model.
#[derive(Clone, Debug)]
pub struct KelpieDurability {
    /// Number of invocations (each commits once).
    pub invocations: u8,
    /// Crash bound.
    pub max_crashes: u8,
}

impl Default for KelpieDurability {
    fn default() -> Self {
        Self {
            invocations: 2,
            max_crashes: 2,
        }
    }
}

/// The node's open database: the store and the spawner its committer runs on.
struct Node {
    spawner: Arc<StepSpawner>,
    store: Store,
}

impl Node {
    /// Opens the database on `disk`: the production engine and store.
    fn open(disk: &MemDisk) -> Self {
        let engine = EmbeddedEngine::open_on_disk(disk).expect("the embedded engine opens on what the disk kept");
        let spawner = Arc::new(StepSpawner::default());
        let store = Store::new(Arc::new(engine), spawner.clone());
        Self { spawner, store }
    }

    /// Invocation `k`'s effect: read the state, append `k`, commit.
    fn commit(&self, k: u8) -> Result<(), StorageError> {
        let actor = actor();
        let mut txn = self.store.begin()?;
        let mut effects = txn
            .get(&actor, STATE_KEY)?
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
        effects.push(k);
        txn.put(&actor, STATE_KEY, Bytes::from(effects))?;
        self.spawner.drive(txn.commit()).map(|_| ())
    }

    /// The actor's state.
    fn effects(&self) -> Result<Vec<u8>, StorageError> {
        let mut txn = self.store.begin()?;
        let value = txn.get(&actor(), STATE_KEY)?;
        Ok(value.map(|bytes| bytes.to_vec()).unwrap_or_default())
    }
}

impl Drop for Node {
    /// Ends the store's committer task, which holds the spawner and the
    /// engine: without this they would keep each other alive.
    fn drop(&mut self) {
        self.store.close();
        self.spawner.run_tasks();
    }
}

struct World {
    disk: MemDisk,
    node: Option<Node>,
    view: DView,
}

impl World {
    fn new() -> Self {
        let disk = MemDisk::new();
        let node = Node::open(&disk);
        Self {
            node: Some(node),
            view: DView {
                up: true,
                attempted: 0,
                acked: BTreeSet::new(),
                interrupted: BTreeSet::new(),
                effects: Vec::new(),
                crashes: 0,
                unsynced: disk.unsynced(),
                acked_after_crash: 0,
                redundant: false,
            },
            disk,
        }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("the node is up")
    }

    /// Invocation `k`'s commit answered `Ok`: its client is acknowledged.
    fn acknowledge(&mut self, k: u8) {
        self.view.acked.insert(k);
        if self.view.crashes > 0 {
            self.view.acked_after_crash += 1;
        }
    }

    /// The process is gone: the disk refuses everything from now on (the
    /// database, dropped, writes nothing more).
    fn crash(&mut self) {
        self.disk.kill();
        self.view.unsynced = self.disk.unsynced();
        self.node = None;
        self.view.up = false;
        self.view.crashes += 1;
    }

    fn apply(&mut self, action: DAction) {
        match action {
            DAction::Commit => {
                let k = self.view.attempted;
                self.view.attempted += 1;
                self.disk.count_ops();
                self.node().commit(k).expect("a commit on a healthy disk");
                let ops = self.disk.ops_counted();
                assert!(
                    ops < usize::from(COMMIT_OPS_MAX),
                    "a commit took {ops} mutating disk operations; raise COMMIT_OPS_MAX"
                );
                self.acknowledge(k);
            }
            DAction::CrashInCommit { ops } => {
                let k = self.view.attempted;
                self.view.attempted += 1;
                self.disk.crash_after(usize::from(ops));
                let answer = self.node().commit(k);
                if !self.disk.crashed() {
                    // The commit finished before the crash point.
                    self.view.redundant = true;
                    return;
                }
                match answer {
                    // It answered before the process died.
                    Ok(()) => self.acknowledge(k),
                    Err(_) => {
                        self.view.interrupted.insert(k);
                    }
                }
                self.crash();
            }
            DAction::Crash => self.crash(),
            DAction::Restart { kept } => {
                self.disk.restart(u64::from(kept));
                self.disk.count_ops();
                self.node = Some(Node::open(&self.disk));
                let ops = self.disk.ops_counted();
                assert!(
                    ops < usize::from(OPEN_OPS_MAX),
                    "opening the database took {ops} mutating disk operations; raise OPEN_OPS_MAX"
                );
                self.view.up = true;
            }
            DAction::CrashInRestart { kept, ops } => {
                self.disk.restart(u64::from(kept));
                self.disk.crash_after(usize::from(ops));
                let opened = EmbeddedEngine::open_on_disk(&self.disk);
                if !self.disk.crashed() {
                    // The open finished before the crash point.
                    self.view.redundant = true;
                    return;
                }
                drop(opened);
                self.view.unsynced = self.disk.unsynced();
                self.view.crashes += 1;
            }
        }
        if self.view.up {
            self.view.effects = self.node().effects().expect("read the state");
            self.view.unsynced = self.disk.unsynced();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Discarded like a crash: nothing more reaches the disk.
        self.disk.kill();
    }
}

/// Replays `log` on a fresh disk, engine and store.
pub fn replay(log: &[DAction]) -> DView {
    let mut world = World::new();
    for action in log {
        world.apply(*action);
        if world.view.redundant {
            break;
        }
    }
    world.view.clone()
}

impl Model for KelpieDurability {
    type State = DState;
    type Action = DAction;

    fn init_states(&self) -> Vec<DState> {
        vec![DState {
            log: Vec::new(),
            view: replay(&[]),
        }]
    }

    fn actions(&self, state: &DState, actions: &mut Vec<DAction>) {
        let view = &state.view;
        if !view.up {
            assert!(
                view.unsynced <= UNSYNCED_OPS_MAX,
                "a crash found {} unsynced disk operations; raise UNSYNCED_OPS_MAX",
                view.unsynced
            );
            for kept in 0..1u16 << view.unsynced {
                let kept = u8::try_from(kept).expect("at most 8 unsynced operations");
                actions.push(DAction::Restart { kept });
                if view.crashes < self.max_crashes {
                    for ops in 0..OPEN_OPS_MAX {
                        actions.push(DAction::CrashInRestart { kept, ops });
                    }
                }
            }
            return;
        }
        let may_crash = view.crashes < self.max_crashes;
        if view.attempted < self.invocations {
            actions.push(DAction::Commit);
            if may_crash {
                for ops in 0..COMMIT_OPS_MAX {
                    actions.push(DAction::CrashInCommit { ops });
                }
            }
        }
        if may_crash {
            actions.push(DAction::Crash);
        }
    }

    fn next_state(&self, last: &DState, action: DAction) -> Option<DState> {
        let mut log = last.log.clone();
        log.push(action);
        let view = replay(&log);
        if view.redundant {
            return None;
        }
        Some(DState { log, view })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("Durability", |_: &Self, state: &DState| {
                let view = &state.view;
                !view.up || view.acked.iter().all(|k| view.effects.contains(k))
            }),
            Property::always("EffectsInOrder", |_: &Self, state: &DState| {
                let view = &state.view;
                view.effects.windows(2).all(|pair| pair[0] < pair[1])
                    && view.effects.iter().all(|k| *k < view.attempted)
            }),
            Property::sometimes("InterruptedCommitLost", |_: &Self, state: &DState| {
                let view = &state.view;
                view.up && view.interrupted.iter().any(|k| !view.effects.contains(k))
            }),
            Property::sometimes("InterruptedCommitSurvived", |_: &Self, state: &DState| {
                let view = &state.view;
                view.up && view.interrupted.iter().any(|k| view.effects.contains(k))
            }),
            Property::sometimes("CommitAfterCrash", |_: &Self, state: &DState| {
                state.view.acked_after_crash > 0
            }),
        ]
    }
}
