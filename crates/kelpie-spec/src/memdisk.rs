//! An in-memory [`Disk`] with explicit durability, for driving the
//! production [`EmbeddedEngine`](kelpie_storage::EmbeddedEngine) in a model.
//!
//! Each file keeps its current bytes (what reads see), its durable bytes (as
//! of the last successful `sync_data`) and the unsynced operations since. A
//! model can arm a crash after the next `n` mutating operations (`write`,
//! `set_len`, `sync_data`): from then on every operation fails, as if the
//! process were gone, so a crash can fall between any two disk operations of
//! a commit. [`MemDisk::restart`] then decides which of the unsynced
//! operations the machine kept: any subset, from none (a power loss: fsync
//! was the only guarantee) to all (a process crash: the page cache
//! survives). Handles opened before a crash stay dead afterwards, so nothing
//! the crashed process left behind (a database being dropped) can write to
//! the disk again.
//!
//! A model that keeps the disk in its state takes a [`DiskImage`] (the
//! durable bytes and the unsynced operations of every file, `Hash + Eq`)
//! with [`MemDisk::image`] and rebuilds the disk from it with
//! [`MemDisk::from_image`]. [`MemDisk::fail_after`] injects one disk error
//! (a failed `write` or `sync_data`) that, unlike a crash, leaves the
//! process and the disk running.
//!
//! The same idea as the simulator's disk (kelpie-dst: a machine crash keeps
//! an arbitrary subset of the unsynced writes), without its seeded faults:
//! the models enumerate the crash points and the subsets instead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kelpie_core::disk::{validate_file_name, Disk, DiskError, DiskFile};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PendingOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl PendingOp {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Self::Write { offset, data } => {
                let start = usize::try_from(*offset).expect("offset fits in memory");
                let end = start + data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(data);
            }
            Self::SetLen(len) => bytes.resize(usize::try_from(*len).expect("length fits in memory"), 0),
        }
    }
}

#[derive(Debug, Default)]
struct FileState {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<PendingOp>,
}

#[derive(Debug, Default)]
struct DiskState {
    files: BTreeMap<String, FileState>,
    /// Bumped by every restart; handles of an older epoch are dead.
    epoch: u64,
    /// Mutating operations left before the armed crash.
    budget: Option<usize>,
    /// The process is gone: every operation fails until [`MemDisk::restart`].
    dead: bool,
    /// Mutating operations done since [`MemDisk::count_ops`].
    ops: usize,
    /// Mutating operations left before the injected error.
    fail: Option<usize>,
}

/// A snapshot of a [`MemDisk`]'s files: for each, its durable bytes and
/// the unsynced operations since (what reads see is the durable bytes with
/// them applied). Comparable and hashable, so a model state can hold it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DiskImage {
    files: BTreeMap<String, FileImage>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct FileImage {
    durable: Vec<u8>,
    pending: Vec<PendingOp>,
}

impl DiskImage {
    /// Unsynced operations on every file: what a crash may lose.
    pub fn unsynced(&self) -> usize {
        self.files.values().map(|file| file.pending.len()).sum()
    }
}

/// The in-memory disk. Clones share the same files.
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    state: Arc<Mutex<DiskState>>,
}

fn lock(state: &Mutex<DiskState>) -> MutexGuard<'_, DiskState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn dead(name: &str, operation: &'static str) -> DiskError {
    DiskError::Io {
        file: name.to_string(),
        operation,
        message: "the process crashed".to_string(),
    }
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// A running disk holding `image`'s files (fresh handles; no armed
    /// crash or error).
    pub fn from_image(image: &DiskImage) -> Self {
        let files = image
            .files
            .iter()
            .map(|(name, file)| {
                let mut current = file.durable.clone();
                for op in &file.pending {
                    op.apply(&mut current);
                }
                let state = FileState {
                    current,
                    durable: file.durable.clone(),
                    pending: file.pending.clone(),
                };
                (name.clone(), state)
            })
            .collect();
        Self {
            state: Arc::new(Mutex::new(DiskState {
                files,
                ..DiskState::default()
            })),
        }
    }

    /// The files as they are now: durable bytes and unsynced operations
    /// (of a crashed disk too: what [`MemDisk::restart`] will choose from).
    pub fn image(&self) -> DiskImage {
        let state = lock(&self.state);
        DiskImage {
            files: state
                .files
                .iter()
                .map(|(name, file)| {
                    let image = FileImage {
                        durable: file.durable.clone(),
                        pending: file.pending.clone(),
                    };
                    (name.clone(), image)
                })
                .collect(),
        }
    }

    /// Injects one disk error after `ops` more mutating operations: the
    /// next one after them fails with [`DiskError::Io`] and changes
    /// nothing; the disk keeps running (operations after it succeed). An
    /// armed crash due at the same operation comes first.
    pub fn fail_after(&self, ops: usize) {
        lock(&self.state).fail = Some(ops);
    }

    /// Arms a crash after `ops` more mutating operations: the next one after
    /// them, and everything after it, fails.
    pub fn crash_after(&self, ops: usize) {
        let mut state = lock(&self.state);
        state.budget = Some(ops);
    }

    /// Whether the process is gone (the armed crash happened, or
    /// [`MemDisk::kill`]), until [`MemDisk::restart`].
    pub fn crashed(&self) -> bool {
        lock(&self.state).dead
    }

    /// Stops the process now: every operation fails until [`MemDisk::restart`].
    pub fn kill(&self) {
        let mut state = lock(&self.state);
        state.dead = true;
        state.budget = None;
    }

    /// The restart after the crash ([`MemDisk::kill`] or the armed crash):
    /// of the unsynced operations (all files, in order) the `i`-th survived
    /// if bit `i` of `kept` is set; the others are lost. Every handle opened
    /// before is dead from now on.
    pub fn restart(&self, kept: u64) {
        let mut state = lock(&self.state);
        assert!(state.dead, "restart without a crash");
        state.epoch += 1;
        state.dead = false;
        state.budget = None;
        let mut index: u32 = 0;
        for file in state.files.values_mut() {
            let mut durable = std::mem::take(&mut file.durable);
            for op in std::mem::take(&mut file.pending) {
                if index < u64::BITS && kept & (1 << index) != 0 {
                    op.apply(&mut durable);
                }
                index += 1;
            }
            file.current = durable.clone();
            file.durable = durable;
        }
    }

    /// Starts counting mutating operations from zero.
    pub fn count_ops(&self) {
        lock(&self.state).ops = 0;
    }

    /// Mutating operations done since [`MemDisk::count_ops`].
    pub fn ops_counted(&self) -> usize {
        lock(&self.state).ops
    }

    /// Unsynced operations on every file: what a crash now may lose.
    pub fn unsynced(&self) -> usize {
        lock(&self.state).files.values().map(|file| file.pending.len()).sum()
    }
}

impl Disk for MemDisk {
    fn open(&self, name: &str) -> Result<Arc<dyn DiskFile>, DiskError> {
        validate_file_name(name)?;
        let mut state = lock(&self.state);
        if state.dead {
            return Err(dead(name, "open"));
        }
        state.files.entry(name.to_string()).or_default();
        Ok(Arc::new(MemFile {
            state: self.state.clone(),
            epoch: state.epoch,
            name: name.to_string(),
        }))
    }

    fn exists(&self, name: &str) -> Result<bool, DiskError> {
        validate_file_name(name)?;
        Ok(lock(&self.state).files.contains_key(name))
    }
}

/// A file of [`MemDisk`].
#[derive(Debug)]
struct MemFile {
    state: Arc<Mutex<DiskState>>,
    epoch: u64,
    name: String,
}

impl MemFile {
    /// Runs `apply` on the file unless the process is dead; a mutating
    /// operation spends the armed crash's budget (and dies when it is out).
    fn with_file<T>(
        &self,
        operation: &'static str,
        mutating: bool,
        apply: impl FnOnce(&mut FileState) -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        let mut state = lock(&self.state);
        if state.dead || state.epoch != self.epoch {
            return Err(dead(&self.name, operation));
        }
        if mutating {
            match state.budget {
                Some(0) => {
                    state.dead = true;
                    state.budget = None;
                    return Err(dead(&self.name, operation));
                }
                Some(left) => state.budget = Some(left - 1),
                None => {}
            }
            match state.fail {
                Some(0) => {
                    state.fail = None;
                    return Err(DiskError::Io {
                        file: self.name.clone(),
                        operation,
                        message: "injected disk error".to_string(),
                    });
                }
                Some(left) => state.fail = Some(left - 1),
                None => {}
            }
            state.ops += 1;
        }
        let file = state.files.entry(self.name.clone()).or_default();
        apply(file)
    }
}

impl DiskFile for MemFile {
    fn len(&self) -> Result<u64, DiskError> {
        self.with_file("len", false, |file| Ok(file.current.len() as u64))
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        self.with_file("read", false, |file| {
            let file_len = file.current.len() as u64;
            match offset.checked_add(len as u64) {
                Some(end) if end <= file_len => {
                    let start = usize::try_from(offset).expect("offset fits in memory");
                    Ok(file.current[start..start + len].to_vec())
                }
                _ => Err(DiskError::ReadPastEnd {
                    file: self.name.clone(),
                    offset,
                    len,
                    file_len,
                }),
            }
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.with_file("write", true, |file| {
            let op = PendingOp::Write {
                offset,
                data: data.to_vec(),
            };
            op.apply(&mut file.current);
            file.pending.push(op);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> Result<(), DiskError> {
        self.with_file("set_len", true, |file| {
            let op = PendingOp::SetLen(len);
            op.apply(&mut file.current);
            file.pending.push(op);
            Ok(())
        })
    }

    fn sync_data(&self) -> Result<(), DiskError> {
        self.with_file("sync_data", true, |file| {
            file.durable = file.current.clone();
            file.pending.clear();
            Ok(())
        })
    }
}
