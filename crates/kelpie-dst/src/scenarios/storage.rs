//! The embedded storage engine (redb over the simulated disk), the store
//! (OCC, group commit) and the journal, under crashes, disk faults, fsync
//! loss, torn writes, disk latency, pauses and clock faults.
//!
//! Each node runs its own store on its own disk: writer clients commit
//! group writes (one tag to all three keys of a group) and counter
//! increments (read, then write +1); a journal client appends entries and
//! applies them (increment a counter and complete the entry in one
//! transaction); a reader takes full snapshots. At every boot the node
//! recovers the journal and takes a snapshot before any client starts.
//!
//! Clients report acknowledgements and snapshots to ghost state that outlives
//! crashes; invariants check them after every event:
//!
//! - `Durability`: a snapshot shows every write acknowledged before it (in an
//!   earlier boot, or at a version up to the snapshot's).
//! - `AtomicVisibility`: in every snapshot, the three keys of a group hold the
//!   same tag, and no rejected commit is ever visible.
//! - `SerializableIsolation`: a history check — every acknowledged
//!   increment read exactly what the last commit applied before it (as the
//!   store's commit observer reports applied commits, in order) wrote.
//! - `ReplayIdempotent`: each journal actor's applied counter equals its
//!   number of completed entries (no entry applied twice by replay).
//! - `EffectsInOrder`: each journal actor's effects, live and replayed, are
//!   applied in journal (append) order. Applying an entry also appends its
//!   sequence to the actor's effect log in the same transaction, so the
//!   durable effect log is the order the effects were applied in; in every
//!   snapshot it is strictly increasing (an effect applied before an
//!   earlier entry's, or applied twice, breaks it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kelpie_core::{ActorId, NodeEnv};
use kelpie_storage::journal::{AppendOutcome, EntryStatus, Journal, JournalEntry};
use kelpie_storage::{EmbeddedEngine, StorageError, Store};

use crate::faults::{FaultConfig, FaultKind};
use crate::simulation::{SimFailure, SimReport, Simulation, WorldView};

/// Invariant names.
pub const DURABILITY: &str = "Durability";
/// See the module docs.
pub const ATOMIC_VISIBILITY: &str = "AtomicVisibility";
/// See the module docs.
pub const SERIALIZABLE_ISOLATION: &str = "SerializableIsolation";
/// See the module docs.
pub const REPLAY_IDEMPOTENT: &str = "ReplayIdempotent";
/// See the module docs.
pub const EFFECTS_IN_ORDER: &str = "EffectsInOrder";

const GROUPS: usize = 3;
const KEYS_PER_GROUP: usize = 3;
const COUNTERS: usize = 2;
const JOURNAL_ACTORS: usize = 2;
const WRITERS: usize = 3;

fn groups_actor() -> ActorId {
    ActorId::new("dst", "groups").expect("constant id is valid")
}

fn counters_actor() -> ActorId {
    ActorId::new("dst", "counters").expect("constant id is valid")
}

fn journal_actor(index: usize) -> ActorId {
    ActorId::new("dst", format!("journal-{index}")).expect("generated id is valid")
}

fn group_key(group: usize, key: usize) -> Vec<u8> {
    format!("g{group}k{key}").into_bytes()
}

fn counter_key(counter: usize) -> Vec<u8> {
    format!("c{counter}").into_bytes()
}

/// Commit order on one node: (boot epoch, store version).
type Order = (u64, u64);

/// One snapshot a node took.
#[derive(Clone, Debug)]
struct Observation {
    at: Order,
    groups: Vec<Vec<Option<String>>>,
    counters: Vec<u64>,
    journal: Vec<(u64, u64)>,
    /// Pending journal entries per journal actor.
    pending: Vec<u64>,
    /// Per journal actor: the sequences of the entries whose effect was
    /// applied, in the order they were applied.
    effect_logs: Vec<Vec<u64>>,
    /// Taken right after recovery, before any client ran.
    after_recovery: bool,
}

#[derive(Default)]
struct NodeGhost {
    epoch: u64,
    /// Acknowledged group writes: tag -> (order, group).
    acked_groups: BTreeMap<String, (Order, usize)>,
    rejected: BTreeSet<String>,
    /// Acknowledged increments: (counter, value read) -> order.
    increments: Vec<(usize, u64, Order)>,
    /// Every applied commit's counter writes, in commit order, as the store
    /// reported them: (order, counter, value written).
    applied_counter_writes: Vec<(Order, usize, u64)>,
    observations: Vec<Observation>,
}

/// What clients report; outlives every crash.
#[derive(Default)]
pub struct StorageGhost {
    nodes: BTreeMap<String, NodeGhost>,
}

type Ghost = Arc<Mutex<StorageGhost>>;

fn ghost_lock(ghost: &Ghost) -> MutexGuard<'_, StorageGhost> {
    ghost.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A storage node's handle (the interesting state is in the ghost and on disk).
#[derive(Debug, Default)]
pub struct StorageNode;

/// The journal actors' effect log: applied entries' sequences, in order.
const EFFECT_LOG_KEY: &[u8] = b"effects";

fn parse_effect_log(bytes: Option<Bytes>) -> Vec<u64> {
    let Some(bytes) = bytes else { return Vec::new() };
    String::from_utf8_lossy(&bytes)
        .split(',')
        .filter_map(|sequence| sequence.parse().ok())
        .collect()
}

fn parse_u64(bytes: Option<Bytes>) -> u64 {
    bytes
        .and_then(|bytes| std::str::from_utf8(&bytes).ok().and_then(|text| text.parse().ok()))
        .unwrap_or(0)
}

struct Client {
    env: NodeEnv,
    store: Store,
    journal: Journal,
    ghost: Ghost,
    node: String,
    epoch: u64,
    plant_reorder: bool,
}

impl Client {
    fn ghost(&self) -> MutexGuard<'_, StorageGhost> {
        ghost_lock(&self.ghost)
    }

    fn observe(&self) -> Result<Observation, StorageError> {
        let mut txn = self.store.begin()?;
        let groups_actor = groups_actor();
        let mut groups = Vec::new();
        for group in 0..GROUPS {
            let mut keys = Vec::new();
            for key in 0..KEYS_PER_GROUP {
                let value = txn.get(&groups_actor, &group_key(group, key))?;
                keys.push(value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()));
            }
            groups.push(keys);
        }
        let counters_actor = counters_actor();
        let mut counters = Vec::new();
        for counter in 0..COUNTERS {
            counters.push(parse_u64(txn.get(&counters_actor, &counter_key(counter))?));
        }
        let version = txn.snapshot_version();
        drop(txn);
        let mut journal = Vec::new();
        let mut pending = Vec::new();
        let mut effect_logs = Vec::new();
        for index in 0..JOURNAL_ACTORS {
            // Same poll as the snapshot above: no commit can interleave.
            let actor = journal_actor(index);
            let mut txn = self.store.begin()?;
            let applied = parse_u64(txn.get(&actor, b"applied")?);
            effect_logs.push(parse_effect_log(txn.get(&actor, EFFECT_LOG_KEY)?));
            let completed = self
                .journal
                .entries(&actor)?
                .iter()
                .filter(|entry| matches!(entry.status, EntryStatus::Completed { .. }))
                .count() as u64;
            journal.push((applied, completed));
            pending.push(self.journal.pending(&actor)?.len() as u64);
        }
        Ok(Observation {
            at: (self.epoch, version),
            groups,
            counters,
            journal,
            pending,
            effect_logs,
            after_recovery: false,
        })
    }

    fn record_observation(&self, observation: Observation) {
        let mut ghost = self.ghost();
        if let Some(node) = ghost.nodes.get_mut(&self.node) {
            node.observations.push(observation);
        }
    }

    async fn pause(&self) {
        let wait = self.env.rng.in_range(1, 10);
        self.env.clock.sleep(Duration::from_millis(wait)).await;
    }

    async fn group_write(&self, sequence: u64) {
        let group = self.env.rng.below(GROUPS as u64) as usize;
        let tag = format!("{}.{}.{sequence}", self.node, self.epoch);
        let Ok(mut txn) = self.store.begin() else { return };
        let actor = groups_actor();
        for key in 0..KEYS_PER_GROUP {
            if txn
                .put(&actor, &group_key(group, key), Bytes::from(tag.clone()))
                .is_err()
            {
                return;
            }
        }
        match txn.commit().await {
            Ok(info) => {
                let order = (self.epoch, info.version);
                if let Some(node) = self.ghost().nodes.get_mut(&self.node) {
                    node.acked_groups.insert(tag, (order, group));
                }
            }
            Err(StorageError::Conflict { .. }) | Err(StorageError::FencingRejected { .. }) => {
                if let Some(node) = self.ghost().nodes.get_mut(&self.node) {
                    node.rejected.insert(tag);
                }
            }
            Err(_) => {} // Outcome unknown.
        }
    }

    async fn increment(&self) {
        let counter = self.env.rng.below(COUNTERS as u64) as usize;
        let actor = counters_actor();
        let Ok(mut txn) = self.store.begin() else { return };
        let Ok(read) = txn.get(&actor, &counter_key(counter)) else {
            return;
        };
        let read = parse_u64(read);
        if txn
            .put(&actor, &counter_key(counter), Bytes::from((read + 1).to_string()))
            .is_err()
        {
            return;
        }
        // Let other clients interleave between the read and the commit.
        self.pause().await;
        if let Ok(info) = txn.commit().await {
            if let Some(node) = self.ghost().nodes.get_mut(&self.node) {
                node.increments.push((counter, read, (self.epoch, info.version)));
            }
        }
    }

    async fn journal_op(&self, sequence: u64) {
        let actor = journal_actor(self.env.rng.below(JOURNAL_ACTORS as u64) as usize);
        let key = format!("{}.{}.{sequence}", self.node, self.epoch);
        let appended = self
            .journal
            .append(&actor, Some(&key), Bytes::from(key.clone()), None)
            .await;
        let Ok(AppendOutcome::Appended(entry)) = appended else {
            return;
        };
        if self.plant_reorder {
            // Planted defect: a second entry is appended and applied before
            // the first.
            let second = format!("{key}.b");
            if let Ok(AppendOutcome::Appended(later)) = self
                .journal
                .append(&actor, Some(&second), Bytes::from(second.clone()), None)
                .await
            {
                let _ = apply_entry(&self.journal, &later).await;
            }
        }
        // A crash here leaves the entry pending for recovery to replay.
        self.pause().await;
        let _ = apply_entry(&self.journal, &entry).await;
    }
}

/// Applies a journal entry: increments the actor's applied counter, appends
/// the entry's sequence to its effect log and completes the entry, in one
/// transaction.
async fn apply_entry(journal: &Journal, entry: &JournalEntry) -> Result<(), StorageError> {
    let mut txn = journal.store().begin()?;
    let applied = parse_u64(txn.get(&entry.actor, b"applied")?);
    txn.put(&entry.actor, b"applied", Bytes::from((applied + 1).to_string()))?;
    let mut effects = txn
        .get(&entry.actor, EFFECT_LOG_KEY)?
        .map(|bytes| bytes.to_vec())
        .unwrap_or_default();
    if !effects.is_empty() {
        effects.push(b',');
    }
    effects.extend_from_slice(entry.sequence.to_string().as_bytes());
    txn.put(&entry.actor, EFFECT_LOG_KEY, Bytes::from(effects))?;
    journal.complete(&mut txn, entry, Bytes::from_static(b"ok"))?;
    txn.commit().await.map(|_| ())
}

async fn retry<T>(env: &NodeEnv, mut attempt: impl FnMut() -> Result<T, StorageError>) -> T {
    loop {
        if let Ok(value) = attempt() {
            return value;
        }
        env.clock.sleep(Duration::from_millis(5)).await;
    }
}

impl StorageNode {
    /// Boots a node: opens its store, recovers, observes, starts clients.
    pub fn start(env: NodeEnv, ghost: Ghost, plant_reorder: bool) -> Arc<StorageNode> {
        let node = env.node_id.to_string();
        let epoch = {
            let mut ghost = ghost_lock(&ghost);
            let entry = ghost.nodes.entry(node.clone()).or_default();
            entry.epoch += 1;
            entry.epoch
        };
        let spawner = env.spawner.clone();
        let _boot = spawner.spawn(
            "storage-boot",
            Box::pin(async move {
                let engine = retry(&env, || EmbeddedEngine::open_on_disk(env.disk.as_ref())).await;
                let store = Store::new(Arc::new(engine), env.spawner.clone());
                let audit = ghost.clone();
                let audited_node = node.clone();
                store.observe_commits(Arc::new(move |version, writes| {
                    let counters = counters_actor();
                    let mut ghost = ghost_lock(&audit);
                    let Some(state) = ghost.nodes.get_mut(&audited_node) else {
                        return;
                    };
                    for (raw, value) in writes {
                        let Some((_, actor, key)) = kelpie_storage::key::split_raw_key(raw) else {
                            continue;
                        };
                        if actor != counters {
                            continue;
                        }
                        let Some(counter) = (0..COUNTERS).find(|counter| counter_key(*counter) == key) else {
                            continue;
                        };
                        state
                            .applied_counter_writes
                            .push(((epoch, version), counter, parse_u64(value.clone())));
                    }
                }));
                let journal = Journal::new(store.clone(), env.clock.clone(), Duration::from_secs(3600));
                loop {
                    let replayer = journal.clone();
                    let recovered = journal
                        .recover::<StorageError>(&mut move |entry| {
                            let journal = replayer.clone();
                            Box::pin(async move { apply_entry(&journal, &entry).await })
                        })
                        .await;
                    if recovered.is_ok() {
                        break;
                    }
                    env.clock.sleep(Duration::from_millis(5)).await;
                }
                let client = Arc::new(Client {
                    env: env.clone(),
                    store,
                    journal,
                    ghost,
                    node,
                    epoch,
                    plant_reorder,
                });
                let mut observation = retry(&env, || client.observe()).await;
                observation.after_recovery = true;
                client.record_observation(observation);
                for writer in 0..WRITERS {
                    let client = client.clone();
                    let _task = env.spawner.spawn(
                        "storage-writer",
                        Box::pin(async move {
                            let mut sequence = writer as u64 * 1_000_000;
                            loop {
                                sequence += 1;
                                if client.env.rng.chance(3, 5) {
                                    client.group_write(sequence).await;
                                } else {
                                    client.increment().await;
                                }
                                client.pause().await;
                            }
                        }),
                    );
                }
                let journal_client = client.clone();
                let _journal = env.spawner.spawn(
                    "storage-journal",
                    Box::pin(async move {
                        let mut sequence = 0;
                        loop {
                            sequence += 1;
                            journal_client.journal_op(sequence).await;
                            journal_client.pause().await;
                        }
                    }),
                );
                loop {
                    if let Ok(observation) = client.observe() {
                        client.record_observation(observation);
                    }
                    client.env.clock.sleep(Duration::from_millis(15)).await;
                }
            }),
        );
        Arc::new(StorageNode)
    }
}

/// Checks every observation not yet checked, per node.
fn check_durability(ghost: &StorageGhost, checked: &mut BTreeMap<String, usize>) -> Result<(), String> {
    for (node, state) in &ghost.nodes {
        let from = checked.get(node).copied().unwrap_or(0);
        for observation in &state.observations[from..] {
            for group in 0..GROUPS {
                let latest = state
                    .acked_groups
                    .iter()
                    .filter(|(_, (order, g))| *g == group && *order <= observation.at)
                    .max_by_key(|(_, (order, _))| *order);
                let Some((latest_tag, (latest_order, _))) = latest else {
                    continue;
                };
                for value in &observation.groups[group] {
                    let fresh = match value {
                        None => false,
                        Some(tag) => match state.acked_groups.get(tag) {
                            Some((order, _)) => order >= latest_order,
                            None => true, // Unacknowledged: outcome unknown, order unknown.
                        },
                    };
                    if !fresh {
                        return Err(format!(
                            "{node} snapshot at {:?} shows group {group} = {value:?}, but {latest_tag} was acknowledged at {latest_order:?}",
                            observation.at
                        ));
                    }
                }
            }
            for counter in 0..COUNTERS {
                let floor = state
                    .increments
                    .iter()
                    .filter(|(c, _, order)| *c == counter && *order <= observation.at)
                    .map(|(_, read, _)| read + 1)
                    .max()
                    .unwrap_or(0);
                if observation.counters[counter] < floor {
                    return Err(format!(
                        "{node} snapshot at {:?} shows counter {counter} = {}, but an acknowledged increment wrote {floor}",
                        observation.at, observation.counters[counter]
                    ));
                }
            }
        }
        checked.insert(node.clone(), state.observations.len());
    }
    Ok(())
}

fn check_atomic_visibility(ghost: &StorageGhost, checked: &mut BTreeMap<String, usize>) -> Result<(), String> {
    for (node, state) in &ghost.nodes {
        let from = checked.get(node).copied().unwrap_or(0);
        for observation in &state.observations[from..] {
            for (group, values) in observation.groups.iter().enumerate() {
                if values.iter().any(|value| value != &values[0]) {
                    return Err(format!(
                        "{node} snapshot at {:?} shows group {group} half-written: {values:?}",
                        observation.at
                    ));
                }
                if let Some(Some(tag)) = values.first() {
                    if state.rejected.contains(tag) {
                        return Err(format!("{node} snapshot shows {tag}, a commit that was rejected"));
                    }
                }
            }
        }
        checked.insert(node.clone(), state.observations.len());
    }
    Ok(())
}

/// History check: every acknowledged increment read the value written by
/// the last commit to its counter applied before it (same boot), as the
/// store's commit observer reported the applied commits in commit order.
/// So committed read-write transactions are serializable in commit order
/// (a lost update, a write skew or a stale read all break this).
fn check_serializable(ghost: &StorageGhost, checked: &mut BTreeMap<String, usize>) -> Result<(), String> {
    for (node, state) in &ghost.nodes {
        let from = checked.get(node).copied().unwrap_or(0);
        for (counter, read, order) in &state.increments[from.min(state.increments.len())..] {
            let previous = state
                .applied_counter_writes
                .iter()
                .filter(|(applied, c, _)| c == counter && applied.0 == order.0 && applied < order)
                .max_by_key(|(applied, _, _)| *applied);
            if let Some((applied, _, written)) = previous {
                if written != read {
                    return Err(format!(
                        "{node}: the increment committed at {order:?} read counter {counter} = {read}, \
                         but the last commit before it ({applied:?}) wrote {written}"
                    ));
                }
            }
        }
        checked.insert(node.clone(), state.increments.len());
    }
    Ok(())
}

fn check_replay(ghost: &StorageGhost, checked: &mut BTreeMap<String, usize>) -> Result<(), String> {
    for (node, state) in &ghost.nodes {
        let from = checked.get(node).copied().unwrap_or(0);
        for observation in &state.observations[from..] {
            if observation.after_recovery {
                if let Some(index) = observation.pending.iter().position(|pending| *pending > 0) {
                    return Err(format!(
                        "{node} snapshot right after recovery at {:?}: journal-{index} still has {} pending entries",
                        observation.at, observation.pending[index]
                    ));
                }
            }
            for (index, (applied, completed)) in observation.journal.iter().enumerate() {
                if applied != completed {
                    return Err(format!(
                        "{node} snapshot at {:?}: journal-{index} applied {applied} times for {completed} completed entries",
                        observation.at
                    ));
                }
            }
        }
        checked.insert(node.clone(), state.observations.len());
    }
    Ok(())
}

/// `EffectsInOrder`: in every snapshot, each journal actor's effect log
/// (the sequences of the entries applied, in the order their effects were
/// committed) is strictly increasing: effects follow journal order, none
/// applied twice.
fn check_effects_in_order(ghost: &StorageGhost, checked: &mut BTreeMap<String, usize>) -> Result<(), String> {
    for (node, state) in &ghost.nodes {
        let from = checked.get(node).copied().unwrap_or(0);
        for observation in &state.observations[from..] {
            for (index, log) in observation.effect_logs.iter().enumerate() {
                if let Some(pair) = log.windows(2).find(|pair| pair[0] >= pair[1]) {
                    return Err(format!(
                        "{node} snapshot at {:?}: journal-{index}'s effect of entry {} was applied after entry {}'s",
                        observation.at, pair[1], pair[0]
                    ));
                }
            }
        }
        checked.insert(node.clone(), state.observations.len());
    }
    Ok(())
}

/// A storage simulation.
#[derive(Clone, Debug)]
pub struct StorageScenario {
    /// Number of nodes (each with its own store).
    pub nodes: usize,
    /// Faults to inject.
    pub faults: FaultConfig,
    /// Virtual time to run for.
    pub max_virtual_time: Duration,
    /// Step bound.
    pub max_steps: u64,
    /// Test-only planted defect, off by default: the journal client appends
    /// a second entry and applies it before the first, which
    /// `EffectsInOrder` must report.
    pub plant_reorder: bool,
}

impl Default for StorageScenario {
    fn default() -> Self {
        let faults = FaultConfig::all_moderate()
            .with(FaultKind::NodeCrash, 0.03)
            .with(FaultKind::DiskWriteError, 0.002)
            .with(FaultKind::DiskReadError, 0.002);
        Self {
            nodes: 2,
            faults,
            max_virtual_time: Duration::from_secs(5),
            max_steps: 1_000_000,
            plant_reorder: false,
        }
    }
}

impl StorageScenario {
    /// Runs the scenario with `seed`.
    pub fn run(&self, seed: u64) -> Result<SimReport, Box<SimFailure>> {
        let ghost: Ghost = Arc::new(Mutex::new(StorageGhost::default()));
        let boot_ghost = ghost.clone();
        let (g1, g2, g3, g4) = (ghost.clone(), ghost.clone(), ghost.clone(), ghost.clone());
        let g5 = ghost.clone();
        let plant_reorder = self.plant_reorder;
        let mut durable_checked = BTreeMap::new();
        let mut atomic_checked = BTreeMap::new();
        let mut replay_checked = BTreeMap::new();
        let outcome = Simulation::new(seed)
            .nodes(self.nodes, move |env| {
                StorageNode::start(env, boot_ghost.clone(), plant_reorder)
            })
            .faults(self.faults.clone())
            .max_virtual_time(self.max_virtual_time)
            .max_steps(self.max_steps)
            .invariant(DURABILITY, move |_: &WorldView<'_, StorageNode>| {
                check_durability(&ghost_lock(&g1), &mut durable_checked)
            })
            .invariant(ATOMIC_VISIBILITY, move |_| {
                check_atomic_visibility(&ghost_lock(&g2), &mut atomic_checked)
            })
            .invariant(SERIALIZABLE_ISOLATION, {
                let mut checked = BTreeMap::new();
                move |_| check_serializable(&ghost_lock(&g3), &mut checked)
            })
            .invariant(REPLAY_IDEMPOTENT, move |_| {
                check_replay(&ghost_lock(&g4), &mut replay_checked)
            })
            .invariant(EFFECTS_IN_ORDER, {
                let mut checked = BTreeMap::new();
                move |_| check_effects_in_order(&ghost_lock(&g5), &mut checked)
            })
            .run();
        super::assert_ghost_released(&ghost, seed);
        outcome
    }
}
