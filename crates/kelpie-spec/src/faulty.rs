//! A [`MemoryEngine`] that can be told to fail its next engine operation
//! with an I/O error, as the simulator's disk faults do: the next write
//! fails before applying anything or after applying everything (the
//! answer lost, e.g. written, then the sync failed), or the next snapshot
//! read fails. The [`Store`](kelpie_storage::Store) above it is the
//! production one; it sees exactly what it would see from a failing disk.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kelpie_storage::engine::{Engine, Snapshot, WriteBody};
use kelpie_storage::{MemoryEngine, StorageError};

/// The fault the next matching operation suffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The next write fails without applying anything.
    WriteBeforeApply,
    /// The next write applies, then reports an I/O error.
    WriteAfterApply,
    /// The next snapshot read fails.
    Read,
}

type Armed = Arc<Mutex<Option<Fault>>>;

fn lock(armed: &Armed) -> MutexGuard<'_, Option<Fault>> {
    armed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn io_error(what: &str) -> StorageError {
    StorageError::Io {
        message: format!("injected {what} failure"),
    }
}

/// [`MemoryEngine`] with one armable fault.
#[derive(Debug, Default)]
pub struct FaultyEngine {
    inner: MemoryEngine,
    armed: Armed,
}

impl FaultyEngine {
    /// A fresh engine with no fault armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `fault` for the next matching operation.
    pub fn arm(&self, fault: Fault) {
        *lock(&self.armed) = Some(fault);
    }

    /// Disarms; returns the fault if it has not fired.
    pub fn disarm(&self) -> Option<Fault> {
        lock(&self.armed).take()
    }

    fn take_if(&self, wanted: impl Fn(Fault) -> bool) -> Option<Fault> {
        let mut armed = lock(&self.armed);
        match *armed {
            Some(fault) if wanted(fault) => armed.take(),
            _ => None,
        }
    }
}

struct FaultySnapshot {
    inner: Box<dyn Snapshot>,
    armed: Armed,
}

impl FaultySnapshot {
    fn check(&self) -> Result<(), StorageError> {
        let mut armed = lock(&self.armed);
        if *armed == Some(Fault::Read) {
            *armed = None;
            return Err(io_error("read"));
        }
        Ok(())
    }
}

impl Snapshot for FaultySnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.check()?;
        self.inner.get(key)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Bytes)>, StorageError> {
        self.check()?;
        self.inner.scan(start, end, limit)
    }
}

impl Engine for FaultyEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StorageError> {
        Ok(Box::new(FaultySnapshot {
            inner: self.inner.snapshot()?,
            armed: self.armed.clone(),
        }))
    }

    fn write(&self, body: WriteBody<'_>) -> Result<(), StorageError> {
        match self.take_if(|fault| fault != Fault::Read) {
            Some(Fault::WriteBeforeApply) => Err(io_error("write")),
            Some(_) => {
                self.inner.write(body)?;
                Err(io_error("sync"))
            }
            None => self.inner.write(body),
        }
    }

    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }

    fn blocks(&self) -> bool {
        self.inner.blocks()
    }
}
