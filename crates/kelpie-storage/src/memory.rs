//! The in-memory engine: a persistent ordered map. A snapshot is an O(1)
//! clone; a write transaction works on its own copy and replaces the map in
//! one step, so a reader sees every write of a commit or none.

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use imbl::OrdMap;

use crate::engine::{Engine, Snapshot, WriteBody, WriteView};
use crate::error::StorageError;

/// Volatile storage for tests and single-process use.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    map: Mutex<OrdMap<Vec<u8>, Bytes>>,
    writer: Mutex<()>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> MutexGuard<'_, OrdMap<Vec<u8>, Bytes>> {
        // The map is replaced whole, never left half-updated, so a poisoned
        // lock still guards a consistent value.
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct MemorySnapshot {
    map: OrdMap<Vec<u8>, Bytes>,
}

impl Snapshot for MemorySnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Bytes)>, StorageError> {
        Ok(self
            .map
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

struct MemoryWrite {
    map: OrdMap<Vec<u8>, Bytes>,
}

impl WriteView for MemoryWrite {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.map.insert(key.to_vec(), Bytes::copy_from_slice(value));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.map.remove(key);
        Ok(())
    }
}

impl Engine for MemoryEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StorageError> {
        Ok(Box::new(MemorySnapshot {
            map: self.map().clone(),
        }))
    }

    fn write(&self, body: WriteBody<'_>) -> Result<(), StorageError> {
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut working = MemoryWrite {
            map: self.map().clone(),
        };
        body(&mut working)?;
        *self.map() = working.map;
        Ok(())
    }

    fn is_durable(&self) -> bool {
        false
    }
}
