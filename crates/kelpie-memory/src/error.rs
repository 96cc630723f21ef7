//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong in a memory operation.
///
/// Every mutating operation is all-or-nothing: when it returns one of these,
/// the memory it was called on is exactly as it was before the call.
#[derive(Error, Clone, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// A block's value would exceed its character limit.
    #[error("block {label:?} would be {length} characters, over its limit of {limit}")]
    OverLimit {
        /// The block's label.
        label: String,
        /// The block's limit, in characters.
        limit: usize,
        /// The length, in characters, the value would have had.
        length: usize,
    },

    /// No block has this label.
    #[error("no memory block is labelled {label:?}")]
    UnknownBlock {
        /// The label that was asked for.
        label: String,
    },

    /// A block with this label already exists.
    #[error("a memory block labelled {label:?} already exists")]
    DuplicateLabel {
        /// The label that is already taken.
        label: String,
    },

    /// `core_memory_replace`: the text to replace is empty or does not occur
    /// in the block.
    #[error("block {label:?} does not contain {old:?} (the text to replace must be non-empty and present)")]
    ReplaceNotFound {
        /// The block's label.
        label: String,
        /// The text that was to be replaced.
        old: String,
    },

    /// The block is read-only for the agent's memory tools.
    #[error("block {label:?} is read-only")]
    ReadOnly {
        /// The block's label.
        label: String,
    },

    /// The label is not acceptable.
    #[error("invalid block label {label:?}: {reason}")]
    InvalidLabel {
        /// The rejected label.
        label: String,
        /// Why it was rejected.
        reason: String,
    },

    /// Working memory has no room for an entry.
    #[error("working memory entry needs {needed} bytes but only {available} are available")]
    CapacityExceeded {
        /// Bytes the entry needs (key plus value).
        needed: usize,
        /// Bytes available for it.
        available: usize,
    },

    /// An embedding vector is unusable (empty, not finite, wrong dimension).
    #[error("invalid embedding: {reason}")]
    InvalidEmbedding {
        /// What is wrong with it.
        reason: String,
    },
}
