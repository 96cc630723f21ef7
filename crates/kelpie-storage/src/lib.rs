//! # kelpie-storage
//!
//! Layer 3: transactional per-actor storage and the invocation journal.
//!
//! - [`Store`] / [`Transaction`]: snapshot reads, read-your-writes,
//!   optimistic conflict detection, all-or-nothing commits with an optional
//!   fencing precondition, group commit. Explicit limits
//!   (`kelpie_core::limits`) are enforced with typed errors before anything
//!   is written.
//! - Engines: [`MemoryEngine`] (volatile) and [`EmbeddedEngine`] (redb,
//!   durable: a commit is acknowledged only after fsync).
//! - [`journal`]: the write-ahead log of invocations, idempotency records,
//!   and the recovery coordinator.
//!
//! This crate must never depend on the runtime or anything above it, and it
//! reaches disk, time and tasks only through `kelpie-core` seams (the
//! production embedded engine opens its file through redb's own backend so
//! the OS lock protects the data directory).

pub mod embedded;
pub mod engine;
pub mod error;
pub mod journal;
pub mod key;
pub mod memory;
pub mod store;

pub use embedded::EmbeddedEngine;
pub use engine::Engine;
pub use error::StorageError;
pub use memory::MemoryEngine;
pub use store::{ActorKey, CommitInfo, CommitNow, CommitObserver, FenceKey, Store, StoreStats, Transaction};
