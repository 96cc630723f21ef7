//! Storage errors: one variant per thing a caller handles differently.

/// A storage operation failed. Unless a variant says otherwise, nothing was
/// written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// Another transaction committed a write to something this one read
    /// since it began. Nothing was applied; retry on a fresh transaction.
    #[error("transaction conflict on {key}: another transaction committed a write to it since this one began; retry")]
    Conflict {
        /// The key (or range start) that conflicted, printable.
        key: String,
    },
    /// The commit's fencing precondition failed: the caller no longer holds
    /// the fencing token. Nothing was applied.
    #[error("fenced: {key} holds {found:?}, not the expected token {expected:?}; this node no longer owns the actor")]
    FencingRejected {
        /// The fencing key, printable.
        key: String,
        /// The token the commit carried.
        expected: Vec<u8>,
        /// What the store holds (None if absent).
        found: Option<Vec<u8>>,
    },
    /// A key is empty or longer than the limit.
    #[error("key of {bytes} bytes is outside 1..={max} bytes")]
    KeySize {
        /// The key's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A value is longer than the limit.
    #[error("value of {bytes} bytes for key {key} exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The key, printable.
        key: String,
        /// The value's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The transaction writes more keys than allowed.
    #[error("transaction writes {count} keys, more than the limit of {max}")]
    TooManyKeys {
        /// Keys written.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The transaction writes more bytes than allowed.
    #[error("transaction writes {bytes} bytes, more than the limit of {max}")]
    TransactionTooLarge {
        /// Bytes written (keys plus values).
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A scan asked for more entries than one page may hold.
    #[error("scan limit {limit} is outside 1..={max}")]
    ScanLimit {
        /// The requested limit.
        limit: usize,
        /// The page size limit.
        max: usize,
    },
    /// A stored record failed its checksum or format check.
    #[error("corrupt record at {location}: {reason}")]
    Corrupt {
        /// Where: table and key.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The journal entry was already completed (its effects are applied);
    /// completing it again would apply them twice.
    #[error("{location} is already completed")]
    AlreadyCompleted {
        /// The entry.
        location: String,
        /// Its stored result.
        result: Vec<u8>,
    },
    /// The data directory is in use by another process.
    #[error("data directory {path} is locked by another process; stop it or use another --data-dir")]
    Locked {
        /// The path.
        path: String,
    },
    /// The engine failed (I/O error, full disk). Whether a commit that
    /// returned this was applied is unknown only if `outcome_unknown`.
    #[error("storage I/O error: {message}")]
    Io {
        /// What failed.
        message: String,
    },
    /// The engine failed in a way it does not recover from while running
    /// (after an I/O error redb refuses all further work): restart the
    /// node; recovery on open restores the last durable state.
    #[error("storage failed and must be reopened (restart the node): {message}")]
    Failed {
        /// What failed.
        message: String,
    },
    /// The store is shut down.
    #[error("store is closed")]
    Closed,
}

impl StorageError {
    /// Whether retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Conflict { .. } | StorageError::Io { .. })
    }
}

/// Printable form of a raw key for error messages.
pub(crate) fn printable(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes.iter().take(96) {
        if byte.is_ascii_graphic() || byte == b' ' {
            text.push(byte as char);
        } else {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    if bytes.len() > 96 {
        text.push('…');
    }
    text
}
