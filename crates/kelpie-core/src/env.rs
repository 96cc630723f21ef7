//! [`NodeEnv`]: every seam a node's code may touch, in one bundle.
//!
//! Production code receives a `NodeEnv` and reaches time, randomness, tasks,
//! files, the network and the coordination store only through it. The
//! simulator builds one per simulated node; [`NodeEnv::production`] builds the
//! real one for a single node.

use std::sync::Arc;

use crate::clock::{SharedClock, SystemClock};
use crate::coordination::{MemoryCoordinationStore, SharedCoordination};
use crate::disk::{DiskError, OsDisk, SharedDisk};
use crate::id::NodeId;
use crate::rng::{SeededRng, SharedRng};
use crate::spawn::{SharedSpawner, TokioSpawner};
use crate::transport::{NoTransport, SharedTransport};

/// The seams of one node.
#[derive(Clone)]
pub struct NodeEnv {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's clock.
    pub clock: SharedClock,
    /// This node's random source.
    pub rng: SharedRng,
    /// Spawns this node's tasks.
    pub spawner: SharedSpawner,
    /// This node's local files.
    pub disk: SharedDisk,
    /// This node's network endpoint.
    pub transport: SharedTransport,
    /// The coordination store, as this node reaches it.
    pub coordination: SharedCoordination,
}

impl std::fmt::Debug for NodeEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEnv")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// [`NodeEnv::production`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NodeEnvError {
    /// Not called inside a tokio runtime.
    #[error("no tokio runtime: start Kelpie inside a tokio runtime")]
    NoRuntime,
    /// The data directory could not be opened.
    #[error("cannot open data directory: {0}")]
    Disk(#[from] DiskError),
}

impl NodeEnv {
    /// The production seams for a single node: the system clock, an
    /// OS-seeded generator, tokio tasks, files under `data_dir`, no network
    /// and an in-process coordination store.
    pub fn production(node_id: NodeId, data_dir: &std::path::Path) -> Result<Self, NodeEnvError> {
        let spawner = TokioSpawner::current().ok_or(NodeEnvError::NoRuntime)?;
        let clock: SharedClock = Arc::new(SystemClock::new());
        Ok(Self {
            transport: Arc::new(NoTransport::new(node_id.clone())),
            coordination: Arc::new(MemoryCoordinationStore::new(clock.clone())),
            node_id,
            clock,
            rng: Arc::new(SeededRng::from_entropy()),
            spawner: Arc::new(spawner),
            disk: Arc::new(OsDisk::open_dir(data_dir)?),
        })
    }
}
