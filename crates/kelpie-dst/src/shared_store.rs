//! The simulated shared store of the runtime scenarios: the in-memory
//! engine behind a fault seam. Storage faults drawn from the run's
//! configuration make reads and writes fail: a write may fail before it is
//! applied, or be applied and then reported failed (the answer lost, or a
//! sync that failed after the data landed), so the runtime's commit error
//! paths, reloads and retries run under faults.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kelpie_storage::engine::{Snapshot, WriteBody, WriteView};
use kelpie_storage::{Engine, MemoryEngine, StorageError};

use crate::faults::FaultKind;
use crate::simulation::FaultInjector;

/// Sees every write transaction the engine applied, in order, with its
/// writes (raw key to value; `None` deletes), whatever the caller was told.
pub type AppliedObserver = Arc<dyn Fn(&BTreeMap<Vec<u8>, Option<Bytes>>) + Send + Sync>;

/// A [`MemoryEngine`] with injected storage faults.
pub struct FaultyEngine {
    inner: MemoryEngine,
    faults: FaultInjector,
    applied: AppliedObserver,
}

impl FaultyEngine {
    /// An empty engine drawing faults from `faults`, reporting every applied
    /// write transaction to `applied`.
    pub fn new(faults: FaultInjector, applied: AppliedObserver) -> Self {
        Self {
            inner: MemoryEngine::new(),
            faults,
            applied,
        }
    }
}

fn injected(operation: &str) -> StorageError {
    StorageError::Io {
        message: format!("injected {operation} fault on the shared store"),
    }
}

/// Forwards to the engine's view, recording the writes.
struct Recording<'a> {
    view: &'a mut dyn WriteView,
    writes: BTreeMap<Vec<u8>, Option<Bytes>>,
}

impl WriteView for Recording<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.view.get(key)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.view.put(key, value)?;
        self.writes.insert(key.to_vec(), Some(Bytes::copy_from_slice(value)));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.view.delete(key)?;
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }
}

impl Engine for FaultyEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StorageError> {
        if self.faults.inject(FaultKind::DiskReadError, "shared-store snapshot") {
            return Err(injected("read"));
        }
        self.inner.snapshot()
    }

    fn write(&self, body: WriteBody<'_>) -> Result<(), StorageError> {
        let fault = self.faults.inject(FaultKind::DiskWriteError, "shared-store write");
        let lost_answer = fault && self.faults.coin();
        if fault && !lost_answer {
            return Err(injected("write (nothing applied)"));
        }
        let mut recorded = BTreeMap::new();
        self.inner.write(&mut |view| {
            let mut recording = Recording {
                view,
                writes: BTreeMap::new(),
            };
            let result = body(&mut recording);
            recorded = recording.writes;
            result
        })?;
        if !recorded.is_empty() {
            (self.applied)(&recorded);
        }
        if lost_answer {
            return Err(injected("write (applied, answer lost)"));
        }
        Ok(())
    }

    fn is_durable(&self) -> bool {
        false
    }
}
