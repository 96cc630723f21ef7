//! The embedded durable engine: redb, crash-safe, one file in the data
//! directory.
//!
//! In production it opens `<dir>/kelpie.redb` with redb's own file backend,
//! which takes an exclusive lock: a second process on the same directory
//! fails at once with [`StorageError::Locked`]. In simulation it runs over
//! the [`Disk`] seam ([`DiskBackend`]), so the simulator's disk can fail
//! I/O, lose unsynced writes and tear the last one.
//!
//! Every write transaction commits with `Durability::Immediate`: redb has
//! synced it before [`Engine::write`] returns. (The bug switch
//! `bug-storage-ack-before-sync` commits with `Durability::None` instead.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kelpie_core::disk::{Disk, DiskFile};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::engine::{Engine, Snapshot, WriteBody, WriteView};
use crate::error::StorageError;

/// The one table: raw key to value.
const KV: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("kv");
/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "kelpie.redb";

fn io(context: &str, error: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        message: format!("{context}: {error}"),
    }
}

/// redb errors after which the database does nothing more until reopened
/// are `Failed`, not a retryable `Io`.
fn storage(context: &str, error: &redb::StorageError) -> StorageError {
    match error {
        redb::StorageError::PreviousIo | redb::StorageError::DatabaseClosed | redb::StorageError::Corrupted(_) => {
            StorageError::Failed {
                message: format!("{context}: {error}"),
            }
        }
        other => io(context, other),
    }
}

/// The lock file that keeps a second process out of the data directory.
pub const LOCK_FILE: &str = "kelpie.lock";
/// Where a new database is built before it is renamed into place.
const CREATING_FILE: &str = "kelpie.redb.creating";

/// Creates an empty database at `path` so that a crash at any moment leaves
/// either no database or a complete one: build it under another name, sync
/// it, rename it into place, sync the directory. (A process killed while
/// redb initializes a file in place leaves a file redb cannot open.)
fn create_atomically(dir: &Path, path: &Path) -> Result<(), StorageError> {
    let creating = dir.join(CREATING_FILE);
    let context = |what: &str| format!("{what} {}", creating.display());
    // A leftover from a crash during an earlier creation held no data.
    if creating.exists() {
        std::fs::remove_file(&creating).map_err(|error| io(&context("remove"), error))?;
    }
    {
        let db = Database::create(&creating).map_err(|error| io(&context("create"), error))?;
        EmbeddedEngine::create_table(&db)?;
    }
    std::fs::File::open(&creating)
        .and_then(|file| file.sync_all())
        .map_err(|error| io(&context("sync"), error))?;
    std::fs::rename(&creating, path).map_err(|error| io(&context("rename"), error))?;
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| io(&format!("sync {}", dir.display()), error))?;
    Ok(())
}

/// redb as a Kelpie engine.
pub struct EmbeddedEngine {
    db: Database,
    location: String,
    /// Held (and locked) while the engine lives; `None` on a [`Disk`].
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for EmbeddedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedEngine")
            .field("location", &self.location)
            .finish()
    }
}

impl EmbeddedEngine {
    /// Opens (or creates) the database in directory `dir`.
    ///
    /// Fails with [`StorageError::Locked`] if another process has it open.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|error| io(&format!("create {}", dir.display()), error))?;
        let locked = || StorageError::Locked {
            path: dir.display().to_string(),
        };
        // One process per data directory, for the engine's whole life.
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| io(&format!("open {}", lock_path.display()), error))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(locked()),
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(io(&format!("lock {}", lock_path.display()), error))
            }
        }
        let path: PathBuf = dir.join(DATABASE_FILE);
        if !path.exists() {
            create_atomically(dir, &path)?;
        }
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(locked()),
            Err(error) => return Err(io(&format!("open {}", path.display()), error)),
        };
        let mut engine = Self::initialized(db, path.display().to_string())?;
        engine._lock = Some(lock);
        Ok(engine)
    }

    /// Opens (or creates) the database on `disk` (the simulator's disk, or
    /// any other [`Disk`]).
    pub fn open_on_disk(disk: &dyn Disk) -> Result<Self, StorageError> {
        let file = disk
            .open(DATABASE_FILE)
            .map_err(|error| io("open database file", error))?;
        let db = redb::Builder::new()
            .create_with_backend(DiskBackend { file })
            .map_err(|error| io("open database", error))?;
        Self::initialized(db, format!("disk:{DATABASE_FILE}"))
    }

    fn create_table(db: &Database) -> Result<(), StorageError> {
        let txn = db.begin_write().map_err(|error| io("begin write", error))?;
        txn.open_table(KV).map_err(|error| io("open table", error))?;
        txn.commit().map_err(|error| io("commit", error))
    }

    fn initialized(db: Database, location: String) -> Result<Self, StorageError> {
        let engine = Self {
            db,
            location,
            _lock: None,
        };
        // Create the table so read transactions always find it.
        engine.write(&mut |_| Ok(()))?;
        Ok(engine)
    }
}

struct EmbeddedSnapshot {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Snapshot for EmbeddedSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let value = self.table.get(key).map_err(|error| storage("read", &error))?;
        Ok(value.map(|guard| Bytes::copy_from_slice(guard.value())))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Bytes)>, StorageError> {
        let range = self.table.range(start..end).map_err(|error| io("scan", error))?;
        let mut entries = Vec::new();
        for entry in range.take(limit) {
            let (key, value) = entry.map_err(|error| io("scan", error))?;
            entries.push((key.value().to_vec(), Bytes::copy_from_slice(value.value())));
        }
        Ok(entries)
    }
}

struct EmbeddedWrite<'a, 'txn> {
    table: &'a mut redb::Table<'txn, &'static [u8], &'static [u8]>,
}

impl WriteView for EmbeddedWrite<'_, '_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let value = self.table.get(key).map_err(|error| storage("read", &error))?;
        Ok(value.map(|guard| Bytes::copy_from_slice(guard.value())))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.table
            .insert(key, value)
            .map_err(|error| storage("write", &error))?;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.table.remove(key).map_err(|error| storage("delete", &error))?;
        Ok(())
    }
}

impl Engine for EmbeddedEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StorageError> {
        let txn = self.db.begin_read().map_err(|error| io("begin read", error))?;
        let table = txn.open_table(KV).map_err(|error| io("open table", error))?;
        Ok(Box::new(EmbeddedSnapshot { table }))
    }

    fn write(&self, body: WriteBody<'_>) -> Result<(), StorageError> {
        #[allow(unused_mut)] // Mutable only with the bug switch.
        let mut txn = self.db.begin_write().map_err(|error| match &error {
            redb::TransactionError::Storage(inner) => storage("begin write", inner),
            other => io("begin write", other),
        })?;
        #[cfg(feature = "bug-storage-ack-before-sync")]
        txn.set_durability(redb::Durability::None)
            .map_err(|error| io("set durability", error))?;
        {
            let mut table = txn.open_table(KV).map_err(|error| io("open table", error))?;
            body(&mut EmbeddedWrite { table: &mut table })?;
        }
        txn.commit().map_err(|error| match &error {
            redb::CommitError::Storage(inner) => storage("commit", inner),
            other => io("commit", other),
        })
    }

    fn is_durable(&self) -> bool {
        true
    }
}

/// redb's storage backend over a Kelpie [`DiskFile`].
#[derive(Debug)]
pub struct DiskBackend {
    file: Arc<dyn DiskFile>,
}

fn backend_error(error: kelpie_core::disk::DiskError) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

impl redb::StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len().map_err(backend_error)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let bytes = self.file.read(offset, out.len()).map_err(backend_error)?;
        if bytes.len() != out.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("short read: {} of {} bytes at offset {offset}", bytes.len(), out.len()),
            ));
        }
        out.copy_from_slice(&bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len).map_err(backend_error)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.file.sync_data().map_err(backend_error)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.file.write(offset, data).map_err(backend_error)
    }
}
