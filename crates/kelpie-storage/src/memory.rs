//! The in-memory engine: a multi-version ordered map.
//!
//! Every key keeps its newest value plus the older versions some live
//! snapshot may still read. A write transaction buffers its writes and
//! applies them under the map's write lock with the next sequence number,
//! then publishes that number: a snapshot (a sequence number) sees every
//! write of a commit or none. Versions no live snapshot can read are pruned
//! as keys are written again.
//!
//! Point reads and writes (the hot path: an actor's state and fencing
//! token) go through a hash index; scans walk an ordered set of the keys.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;

use crate::engine::{Engine, Snapshot, WriteBody, WriteView};
use crate::error::StorageError;

/// One key's versions: the newest inline, older ones (newest last) only
/// while a live snapshot may read them.
#[derive(Debug)]
struct Versions {
    latest: (u64, Option<Bytes>),
    older: Vec<(u64, Option<Bytes>)>,
}

impl Versions {
    /// The value visible at sequence `at`; `None` if the key did not exist.
    fn at(&self, at: u64) -> Option<&Option<Bytes>> {
        if self.latest.0 <= at {
            return Some(&self.latest.1);
        }
        self.older
            .iter()
            .rev()
            .find(|(sequence, _)| *sequence <= at)
            .map(|(_, value)| value)
    }

    /// Records `value` at `sequence`, keeping only the older versions some
    /// reader at or after `oldest_reader` can still see.
    fn push(&mut self, sequence: u64, value: Option<Bytes>, oldest_reader: u64) {
        let previous = std::mem::replace(&mut self.latest, (sequence, value));
        if oldest_reader < sequence {
            self.older.push(previous);
        }
        self.prune(oldest_reader);
    }

    /// Drops the older versions no reader at or after `oldest_reader` can
    /// see: the oldest reader sees the newest version at or before it.
    fn prune(&mut self, oldest_reader: u64) {
        if oldest_reader >= self.latest.0 {
            // Every reader sees the latest version.
            self.older = Vec::new();
            return;
        }
        if let Some(visible) = self.older.iter().rposition(|(version, _)| *version <= oldest_reader) {
            self.older.drain(..visible);
        }
    }

    /// Whether nothing is left to keep: deleted, and no reader can see an
    /// older value.
    fn is_gone(&self) -> bool {
        self.latest.1.is_none() && self.older.is_empty()
    }
}

/// How many retained keys each write transaction re-prunes.
const RECLAIM_PER_WRITE: usize = 8;

/// The largest write buffer kept for the next write transaction.
const SCRATCH_CAPACITY_MAX: usize = 1024;

/// Every key's versions: hashed for point access, and the keys in order
/// for scans. Both always hold the same keys. The hash index has a fixed
/// hasher and a deterministic order, so simulated runs replay exactly.
#[derive(Debug, Default)]
struct Map {
    versions: IndexMap<Arc<[u8]>, Versions, FxBuildHasher>,
    order: BTreeSet<Arc<[u8]>>,
    /// Keys holding older versions (or a deleted key's tombstone) for some
    /// reader: each write transaction re-prunes a few of them, so versions
    /// of keys never written again are freed once their readers are gone.
    retained: Retained,
    /// The buffer of writes to existing keys, kept between write
    /// transactions (empty in between) so a write allocates none.
    scratch: Vec<(usize, Option<Bytes>)>,
}

impl Map {
    fn get(&self, key: &[u8]) -> Option<&Versions> {
        self.versions.get(key)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Versions> {
        self.versions.get_mut(key)
    }

    fn insert(&mut self, key: Vec<u8>, versions: Versions) {
        let key: Arc<[u8]> = key.into();
        self.order.insert(key.clone());
        self.versions.insert(key, versions);
    }

    fn remove(&mut self, key: &[u8]) {
        self.versions.swap_remove(key);
        self.order.remove(key);
        self.retained.remove(key);
    }

    /// Entries with `start <= key < end`, in key order.
    fn range<'a>(&'a self, start: &[u8], end: &[u8]) -> impl Iterator<Item = (&'a Arc<[u8]>, &'a Versions)> + 'a {
        self.order
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .filter_map(|key| self.versions.get(key).map(|versions| (key, versions)))
    }
}

#[derive(Debug, Default)]
struct Shared {
    map: RwLock<Map>,
    /// The sequence of the last applied write transaction.
    sequence: AtomicU64,
    /// Live snapshots by sequence (count per sequence). Lock order: `map`,
    /// then `readers`.
    readers: Mutex<BTreeMap<u64, usize>>,
}

/// The retained keys and where the next re-pruning starts: it walks them
/// round-robin, so keys that stay retained (written often while readers
/// come and go) cannot keep the others from ever being visited.
#[derive(Debug, Default)]
struct Retained {
    keys: BTreeSet<Arc<[u8]>>,
    cursor: Option<Arc<[u8]>>,
}

impl Retained {
    fn insert(&mut self, key: Arc<[u8]>) {
        self.keys.insert(key);
    }

    fn remove(&mut self, key: &[u8]) {
        self.keys.remove(key);
    }

    /// The next `count` keys after the cursor, wrapping around once; moves
    /// the cursor past them.
    fn due(&mut self, count: usize) -> Vec<Arc<[u8]>> {
        let mut due: Vec<Arc<[u8]>> = match &self.cursor {
            Some(cursor) => self
                .keys
                .range::<[u8], _>((Bound::Excluded(&cursor[..]), Bound::Unbounded))
                .take(count)
                .cloned()
                .collect(),
            None => self.keys.iter().take(count).cloned().collect(),
        };
        if due.len() < count {
            // Wrap: the keys up to the cursor, none of them taken yet.
            let room = (count - due.len()).min(self.keys.len() - due.len());
            due.extend(self.keys.iter().take(room).cloned());
        }
        self.cursor = due.last().cloned();
        due
    }
}

impl Shared {
    // Every update under these locks is a single map operation or a
    // version push that cannot panic midway: a poisoned lock still guards a
    // consistent value.
    fn read(&self) -> RwLockReadGuard<'_, Map> {
        self.map.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn readers(&self) -> MutexGuard<'_, BTreeMap<u64, usize>> {
        self.readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Volatile storage for tests and single-process use.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    shared: Arc<Shared>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many old versions are kept for live snapshots (for tests).
    pub fn retained_versions(&self) -> usize {
        self.shared
            .read()
            .versions
            .values()
            .map(|versions| versions.older.len() + usize::from(versions.latest.1.is_none()))
            .sum()
    }
}

struct MemorySnapshot {
    shared: Arc<Shared>,
    sequence: u64,
}

impl Drop for MemorySnapshot {
    fn drop(&mut self) {
        let mut readers = self.shared.readers();
        if let Some(count) = readers.get_mut(&self.sequence) {
            *count -= 1;
            if *count == 0 {
                readers.remove(&self.sequence);
            }
        }
    }
}

impl Snapshot for MemorySnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let map = self.shared.read();
        Ok(map
            .get(key)
            .and_then(|versions| versions.at(self.sequence))
            .and_then(Clone::clone))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Bytes)>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let map = self.shared.read();
        Ok(map
            .range(start, end)
            .filter_map(|(key, versions)| match versions.at(self.sequence) {
                Some(Some(value)) => Some((key.to_vec(), value.clone())),
                _ => None,
            })
            .take(limit)
            .collect())
    }
}

/// Up to this many buffered writes to existing keys are found by a linear
/// search; past it, through `MemoryWrite::positions`.
const LINEAR_WRITES_MAX: usize = 16;

/// A write transaction's view: its own buffered writes over the newest
/// committed values (the map is write-locked, so those cannot change, nor
/// can its indices). A write to a key the map has is buffered by the key's
/// index (one hash, no copy of the key), once per key; one to a new key by
/// the key.
struct MemoryWrite<'a> {
    map: &'a Map,
    /// (index in the map, value), one entry per index.
    existing: Vec<(usize, Option<Bytes>)>,
    /// Index in the map → position in `existing`, kept once `existing`
    /// outgrows a linear search (a large transaction or batch).
    positions: BTreeMap<usize, usize>,
    fresh: BTreeMap<Vec<u8>, Option<Bytes>>,
}

impl MemoryWrite<'_> {
    /// Where the write to the map's key `index` is buffered, if it is.
    fn position(&self, index: usize) -> Option<usize> {
        if self.existing.len() <= LINEAR_WRITES_MAX {
            self.existing.iter().position(|(buffered, _)| *buffered == index)
        } else {
            self.positions.get(&index).copied()
        }
    }

    fn buffer(&mut self, key: &[u8], value: Option<Bytes>) {
        let Some(index) = self.map.versions.get_index_of(key) else {
            self.fresh.insert(key.to_vec(), value);
            return;
        };
        if let Some(position) = self.position(index) {
            self.existing[position].1 = value;
            return;
        }
        self.existing.push((index, value));
        let count = self.existing.len();
        if count == LINEAR_WRITES_MAX + 1 {
            self.positions = self
                .existing
                .iter()
                .enumerate()
                .map(|(position, (index, _))| (*index, position))
                .collect();
        } else if count > LINEAR_WRITES_MAX {
            self.positions.insert(index, count - 1);
        }
    }
}

impl WriteView for MemoryWrite<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(match self.map.versions.get_full(key) {
            Some((index, _, versions)) => match self.position(index) {
                Some(position) => self.existing[position].1.clone(),
                None => versions.latest.1.clone(),
            },
            None => self.fresh.get(key).cloned().flatten(),
        })
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.buffer(key, Some(Bytes::copy_from_slice(value)));
        Ok(())
    }

    fn put_shared(&mut self, key: &[u8], value: &Bytes) -> Result<(), StorageError> {
        self.buffer(key, Some(value.clone()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.buffer(key, None);
        Ok(())
    }
}

impl Engine for MemoryEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StorageError> {
        // Reading the sequence and registering it happen under the readers
        // lock, so no writer can prune the versions it needs in between.
        let sequence = {
            let mut readers = self.shared.readers();
            let sequence = self.shared.sequence.load(Ordering::Acquire);
            *readers.entry(sequence).or_insert(0) += 1;
            sequence
        };
        Ok(Box::new(MemorySnapshot {
            shared: self.shared.clone(),
            sequence,
        }))
    }

    fn write(&self, body: WriteBody<'_>) -> Result<(), StorageError> {
        // The map's write lock serialises write transactions, from the
        // body's reads to the publication of the sequence.
        let mut guard = self.shared.write();
        let map = &mut *guard;
        let mut view = MemoryWrite {
            existing: std::mem::take(&mut map.scratch),
            map,
            positions: BTreeMap::new(),
            fresh: BTreeMap::new(),
        };
        let body_result = body(&mut view);
        let MemoryWrite {
            mut existing, fresh, ..
        } = view;
        if let Err(error) = body_result {
            existing.clear();
            map.scratch = existing;
            return Err(error);
        }
        // Keys of the map first, in index order. The body's indices still
        // hold: only a writer changes the map, and this one holds it. Were
        // one out of range, nothing is applied.
        existing.sort_unstable_by_key(|(index, _)| *index);
        if existing.last().is_some_and(|(last, _)| *last >= map.versions.len()) {
            existing.clear();
            map.scratch = existing;
            return Err(StorageError::Corrupt {
                location: "memory engine".to_string(),
                reason: "a buffered write's key index is out of range".to_string(),
            });
        }
        if existing.is_empty() && fresh.is_empty() {
            map.scratch = existing;
            return Ok(());
        }
        // Holding the readers lock until the sequence is published: no
        // snapshot can start in between, so a reader older than this
        // transaction is one registered now.
        let readers = self.shared.readers();
        let oldest_reader = readers.keys().next().copied().unwrap_or(u64::MAX);
        let sequence = self.shared.sequence.load(Ordering::Acquire) + 1;
        let mut gone: Vec<Arc<[u8]>> = Vec::new();
        for (index, value) in existing.drain(..) {
            let Some((key, versions)) = map.versions.get_index_mut(index) else {
                continue; // Checked above: every index is in range.
            };
            versions.push(sequence, value, oldest_reader);
            if versions.is_gone() {
                gone.push(key.clone());
            } else if !versions.older.is_empty() || versions.latest.1.is_none() {
                map.retained.insert(key.clone());
            } else {
                map.retained.remove(key);
            }
        }
        // Kept for the next write, unless a large one grew it.
        if existing.capacity() <= SCRATCH_CAPACITY_MAX {
            map.scratch = existing;
        }
        for key in gone {
            map.remove(&key);
        }
        for (key, value) in fresh {
            // A new key: readers before `sequence` see it absent.
            if value.is_some() {
                map.insert(
                    key,
                    Versions {
                        latest: (sequence, value),
                        older: Vec::new(),
                    },
                );
            }
        }
        // Reclaim versions of earlier writes that no reader needs any more.
        let due = map.retained.due(RECLAIM_PER_WRITE);
        for key in due {
            let keep = match map.get_mut(&key) {
                Some(versions) => {
                    versions.prune(oldest_reader);
                    if versions.is_gone() {
                        map.remove(&key);
                        false
                    } else {
                        !versions.older.is_empty() || versions.latest.1.is_none()
                    }
                }
                None => false,
            };
            if !keep {
                map.retained.remove(&key);
            }
        }
        // Published while the map is still locked: a snapshot taken from
        // now on sees the whole transaction.
        self.shared.sequence.store(sequence, Ordering::Release);
        drop(readers);
        drop(guard);
        Ok(())
    }

    fn is_durable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(engine: &MemoryEngine, key: &[u8], value: Option<&[u8]>) {
        engine
            .write(&mut |view| match value {
                Some(value) => view.put(key, value),
                None => view.delete(key),
            })
            .expect("write");
    }

    #[test]
    fn snapshots_see_their_own_version_through_overwrites_and_deletes() {
        let engine = MemoryEngine::new();
        put(&engine, b"k", Some(b"1"));
        let first = engine.snapshot().expect("snapshot");
        put(&engine, b"k", Some(b"2"));
        let second = engine.snapshot().expect("snapshot");
        put(&engine, b"k", None);
        put(&engine, b"n", Some(b"new"));
        let third = engine.snapshot().expect("snapshot");
        assert_eq!(first.get(b"k").expect("get"), Some(Bytes::from_static(b"1")));
        assert_eq!(second.get(b"k").expect("get"), Some(Bytes::from_static(b"2")));
        assert_eq!(third.get(b"k").expect("get"), None);
        assert_eq!(first.get(b"n").expect("get"), None);
        assert_eq!(
            first.scan(b"a", b"z", 10).expect("scan"),
            vec![(b"k".to_vec(), Bytes::from_static(b"1"))]
        );
        assert_eq!(
            third.scan(b"a", b"z", 10).expect("scan"),
            vec![(b"n".to_vec(), Bytes::from_static(b"new"))]
        );
        // Both old versions of `k` and its tombstone are kept for the
        // first two snapshots.
        assert_eq!(engine.retained_versions(), 3);
        drop(first);
        drop(second);
        drop(third);
        put(&engine, b"n", Some(b"newer"));
        put(&engine, b"k", Some(b"3"));
        assert_eq!(engine.retained_versions(), 0);
    }

    #[test]
    fn a_failed_write_body_applies_nothing() {
        let engine = MemoryEngine::new();
        let result = engine.write(&mut |view| {
            view.put(b"a", b"1")?;
            Err(StorageError::Closed)
        });
        assert_eq!(result, Err(StorageError::Closed));
        assert_eq!(engine.snapshot().expect("snapshot").get(b"a").expect("get"), None);
    }

    #[test]
    fn a_write_view_reads_its_own_writes() {
        let engine = MemoryEngine::new();
        put(&engine, b"a", Some(b"1"));
        engine
            .write(&mut |view| {
                assert_eq!(view.get(b"a")?, Some(Bytes::from_static(b"1")));
                view.put(b"a", b"2")?;
                assert_eq!(view.get(b"a")?, Some(Bytes::from_static(b"2")));
                view.delete(b"a")?;
                assert_eq!(view.get(b"a")?, None);
                Ok(())
            })
            .expect("write");
        assert_eq!(engine.snapshot().expect("snapshot").get(b"a").expect("get"), None);
    }

    #[test]
    fn reclaim_reaches_every_retained_key_while_others_stay_retained() {
        let engine = MemoryEngine::new();
        let early: Vec<[u8; 1]> = (b'a'..=b'j').map(|key| [key]).collect();
        for key in &early {
            put(&engine, key, Some(b"0"));
        }
        put(&engine, b"z", Some(b"old"));
        // `z` is deleted while `first` reads; the early keys are rewritten
        // while `second` reads, so their old values stay needed as long as
        // `second` lives, and they sort before `z`.
        let first = engine.snapshot().expect("snapshot");
        put(&engine, b"z", None);
        let second = engine.snapshot().expect("snapshot");
        for key in &early {
            put(&engine, key, Some(b"1"));
        }
        drop(first);
        // Nobody needs z's versions now. A few more writes re-prune the
        // retained keys: they must reach `z` past the ten that stay.
        for round in 0..4u8 {
            put(&engine, b"0", Some(&[round]));
        }
        assert!(
            engine.shared.read().get(b"z").is_none(),
            "z's tombstone and old value are freed once their reader is gone"
        );
        assert_eq!(second.get(b"a").expect("get"), Some(Bytes::from_static(b"0")));
    }

    #[test]
    fn a_write_view_reads_a_new_key_it_wrote_then_deleted_as_absent() {
        let engine = MemoryEngine::new();
        engine
            .write(&mut |view| {
                view.put(b"new", b"1")?;
                assert_eq!(view.get(b"new")?, Some(Bytes::from_static(b"1")));
                view.delete(b"new")?;
                assert_eq!(view.get(b"new")?, None);
                view.put(b"other", b"2")?;
                Ok(())
            })
            .expect("write");
        let snapshot = engine.snapshot().expect("snapshot");
        assert_eq!(snapshot.get(b"new").expect("get"), None);
        assert_eq!(snapshot.get(b"other").expect("get"), Some(Bytes::from_static(b"2")));
    }

    #[test]
    fn a_large_write_reads_and_applies_its_last_write_to_each_key() {
        let engine = MemoryEngine::new();
        let key = |i: u8| format!("k{i:02}").into_bytes();
        engine
            .write(&mut |view| (0..40).try_for_each(|i| view.put(&key(i), b"0")))
            .expect("write");
        engine
            .write(&mut |view| {
                // Past `LINEAR_WRITES_MAX` buffered writes to existing keys.
                for i in 0..40 {
                    view.put(&key(i), b"1")?;
                }
                view.put(&key(5), b"2")?;
                view.delete(&key(30))?;
                view.put(&key(39), b"3")?;
                assert_eq!(view.get(&key(5))?, Some(Bytes::from_static(b"2")));
                assert_eq!(view.get(&key(30))?, None);
                assert_eq!(view.get(&key(39))?, Some(Bytes::from_static(b"3")));
                assert_eq!(view.get(&key(0))?, Some(Bytes::from_static(b"1")));
                Ok(())
            })
            .expect("write");
        let snapshot = engine.snapshot().expect("snapshot");
        let expected = |i: u8| match i {
            5 => Some(Bytes::from_static(b"2")),
            30 => None,
            39 => Some(Bytes::from_static(b"3")),
            _ => Some(Bytes::from_static(b"1")),
        };
        for i in 0..40 {
            assert_eq!(snapshot.get(&key(i)).expect("get"), expected(i), "key {i}");
        }
        assert_eq!(snapshot.scan(b"k", b"l", 100).expect("scan").len(), 39);
    }

    type Model = BTreeMap<Vec<u8>, Bytes>;

    #[derive(Clone, Debug)]
    enum Op {
        Write(Vec<(u8, Option<u8>)>),
        Take,
        Drop(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => proptest::collection::vec((0u8..6, proptest::option::of(any::<u8>())), 1..4).prop_map(Op::Write),
            // Past a linear search of the buffered writes, with overwrites.
            1 => proptest::collection::vec((0u8..24, proptest::option::of(any::<u8>())), 17..48).prop_map(Op::Write),
            1 => Just(Op::Take),
            1 => any::<usize>().prop_map(Op::Drop),
        ]
    }

    proptest::proptest! {
        /// Every live snapshot reads exactly the committed state of the
        /// moment it was taken, whatever was written or pruned since; with
        /// no live snapshot no old version is kept.
        #[test]
        fn snapshots_match_a_copy_of_the_model(ops in proptest::collection::vec(op(), 1..60)) {
            let engine = MemoryEngine::new();
            let mut model = Model::new();
            let mut live: Vec<(Box<dyn Snapshot>, Model)> = Vec::new();
            for op in ops {
                match op {
                    Op::Write(writes) => {
                        engine.write(&mut |view| {
                            for (key, value) in &writes {
                                match value {
                                    Some(value) => view.put(&[*key], &[*value])?,
                                    None => view.delete(&[*key])?,
                                }
                            }
                            Ok(())
                        }).expect("write");
                        for (key, value) in writes {
                            match value {
                                Some(value) => model.insert(vec![key], Bytes::from(vec![value])),
                                None => model.remove(&vec![key]),
                            };
                        }
                    }
                    Op::Take => live.push((engine.snapshot().expect("snapshot"), model.clone())),
                    Op::Drop(index) => {
                        if !live.is_empty() {
                            let index = index % live.len();
                            live.remove(index);
                        }
                    }
                }
                for (snapshot, expected) in &live {
                    let scanned: BTreeMap<Vec<u8>, Bytes> =
                        snapshot.scan(&[0], &[255], 100).expect("scan").into_iter().collect();
                    proptest::prop_assert_eq!(&scanned, expected);
                    for key in 0u8..24 {
                        proptest::prop_assert_eq!(snapshot.get(&[key]).expect("get"), expected.get(&vec![key]).cloned());
                    }
                }
            }
            drop(live);
            // Writes of another key reclaim every version kept for the
            // readers now gone, also of keys never written again: each
            // re-prunes the next `RECLAIM_PER_WRITE` of the (at most 24)
            // retained keys.
            for _ in 0..24usize.div_ceil(RECLAIM_PER_WRITE) {
                engine.write(&mut |view| view.put(&[200], b"x")).expect("write");
            }
            proptest::prop_assert_eq!(engine.retained_versions(), 0);
            let scanned: Model = engine.snapshot().expect("snapshot").scan(&[0], &[100], 100).expect("scan").into_iter().collect();
            proptest::prop_assert_eq!(scanned, model);
        }
    }
}
