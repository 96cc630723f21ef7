//! # kelpie-memory
//!
//! The memory tiers of a Kelpie agent, as plain data stored (as JSON) inside
//! the agent actor's transactional state:
//!
//! - [`core_memory`]: [`CoreMemory`], labelled [`Block`]s with character
//!   limits, rendered into the system prompt by [`CoreMemory::compile`]
//!   (Letta's core memory, with `core_memory_append`/`core_memory_replace`).
//! - [`working`]: [`WorkingMemory`], short-lived key/value entries with TTLs
//!   and a byte capacity.
//! - [`archival`]: [`Passage`]s with embeddings, the [`Embedder`] seam, the
//!   deterministic [`HashingEmbedder`], [`cosine`] and [`top_k`] search.
//!
//! The crate is pure: no I/O, no clock (time is passed in as `now_ms`), no
//! randomness. Errors are [`MemoryError`]; every mutating operation is
//! all-or-nothing.

pub mod archival;
pub mod core_memory;
pub mod error;
pub mod working;

pub use archival::{
    cosine, top_k, Embedder, HashingEmbedder, Passage, DEFAULT_HASHING_DIMS, MAX_HASHING_DIMS, MIN_HASHING_DIMS,
};
pub use core_memory::{validate_label, Block, CoreMemory, DEFAULT_BLOCK_LIMIT, MAX_LABEL_CHARS};
pub use error::MemoryError;
pub use working::WorkingMemory;
