//! The engine seam: what the transactional store needs from a key-value
//! engine. Engines know nothing of transactions across calls, conflicts or
//! fencing; [`Store`](crate::Store) builds those on top.

use bytes::Bytes;

use crate::error::StorageError;

/// A consistent, immutable view of the whole key space at one instant.
pub trait Snapshot: Send + Sync {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Entries with `start <= key < end`, in key order, at most `limit`.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Bytes)>, StorageError>;
}

/// Read and write access inside one engine write transaction.
pub trait WriteView {
    /// The value at `key`, including this transaction's writes.
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Writes `value` at `key`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError>;

    /// Like [`WriteView::put`], handing over `value`: an engine that keeps
    /// values in memory shares it instead of copying.
    fn put_shared(&mut self, key: &[u8], value: &Bytes) -> Result<(), StorageError> {
        self.put(key, value)
    }

    /// Deletes `key` (no-op if absent).
    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError>;
}

/// The body of an engine write transaction.
pub type WriteBody<'a> = &'a mut dyn FnMut(&mut dyn WriteView) -> Result<(), StorageError>;

/// A key-value engine with snapshots and atomic write transactions.
pub trait Engine: Send + Sync + 'static {
    /// A snapshot of everything committed so far. The store calls it under
    /// its validation lock: it must not wait for a write in progress, nor
    /// call back into the store.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StorageError>;

    /// Runs `body` in one write transaction. If it returns `Ok`, every write
    /// it made commits atomically — and, for a durable engine, is on stable
    /// storage before this returns `Ok`. If it returns `Err` (or the commit
    /// fails), none of its writes are applied. For an engine that never
    /// blocks, the store calls it under its validation lock: it must not call
    /// back into the store.
    fn write(&self, body: WriteBody<'_>) -> Result<(), StorageError>;

    /// Whether a successful [`Engine::write`] survives a crash.
    fn is_durable(&self) -> bool;

    /// Whether [`Engine::write`] may block on I/O (then the store's
    /// committer task runs it on the blocking seam, one batch of commits at
    /// a time; otherwise the committing caller runs it at once).
    fn blocks(&self) -> bool {
        self.is_durable()
    }
}
