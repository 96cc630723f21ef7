//! Every size, count and time bound in Kelpie, as a named constant.
//!
//! Names end in their unit (`_BYTES`, `_MS`, `_ENTRIES`, ...) and then in
//! `_MAX`, `_MIN` or `_DEFAULT`. Code that enforces a bound refers to the
//! constant here, so a bound is changed in one place and its error message
//! always matches the check.

// --- Identifiers -------------------------------------------------------------

/// Longest actor namespace, in bytes (namespaces are ASCII, so also chars).
pub const ACTOR_NAMESPACE_BYTES_MAX: usize = 64;

/// Longest actor key, in bytes (keys are ASCII, so also chars).
pub const ACTOR_KEY_BYTES_MAX: usize = 256;

/// Longest node id, in bytes (node ids are ASCII, so also chars).
pub const NODE_ID_BYTES_MAX: usize = 64;

// --- Storage -----------------------------------------------------------------

/// Longest key in per-actor storage, in bytes.
pub const STORAGE_KEY_BYTES_MAX: usize = 1024;

/// Largest value in per-actor storage, in bytes (1 MiB).
pub const STORAGE_VALUE_BYTES_MAX: usize = 1024 * 1024;

/// Most keys one transaction may write or delete.
pub const TRANSACTION_KEYS_MAX: usize = 1024;

/// Largest total of key and value bytes one transaction may write (8 MiB).
pub const TRANSACTION_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Most entries one storage scan returns per page.
pub const SCAN_PAGE_ENTRIES_MAX: usize = 1000;

// --- Transport ---------------------------------------------------------------

/// Largest node-to-node message, in bytes (16 MiB), framing included.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

// --- Leases and clocks -------------------------------------------------------

/// Shortest allowed lease TTL, in milliseconds. Shorter leases would expire
/// between a renewal and its acknowledgement on an ordinary network.
pub const LEASE_TTL_MS_MIN: u64 = 100;

/// Longest allowed lease TTL, in milliseconds (10 minutes). Bounds how long
/// actors stay unavailable after their node dies (guarantee G5).
pub const LEASE_TTL_MS_MAX: u64 = 600_000;

/// Largest clock drift between nodes that the configuration may declare, in
/// milliseconds. Self-fencing (G1) holds only while real drift stays within
/// the configured value.
pub const CLOCK_DRIFT_MS_MAX: u64 = 60_000;

/// Lease TTL used unless configured, in milliseconds.
pub const LEASE_TTL_MS_DEFAULT: u64 = 10_000;

/// Interval between lease renewals unless configured, in milliseconds.
pub const LEASE_RENEW_INTERVAL_MS_DEFAULT: u64 = 3_000;

/// Clock drift between nodes assumed unless configured, in milliseconds.
pub const CLOCK_DRIFT_MS_DEFAULT: u64 = 500;

// --- Actors ------------------------------------------------------------------

/// Largest per-actor mailbox the configuration may ask for, in messages.
pub const MAILBOX_DEPTH_MAX: usize = 65_536;

/// Mailbox depth used when the configuration does not set one, in messages.
pub const MAILBOX_DEPTH_DEFAULT: usize = 1024;

/// Longest idle time before an actor is deactivated, in milliseconds (one day).
pub const ACTOR_IDLE_TIMEOUT_MS_MAX: u64 = 86_400_000;

/// Idle time before an actor is deactivated, unless configured, in milliseconds.
pub const ACTOR_IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;

// --- Configuration -----------------------------------------------------------

/// Largest configuration file Kelpie reads, in bytes (1 MiB).
pub const CONFIG_FILE_BYTES_MAX: usize = 1024 * 1024;

/// Longest filesystem path accepted in the configuration, in bytes.
pub const CONFIG_PATH_BYTES_MAX: usize = 4096;

/// Most etcd endpoints the configuration may list.
pub const ETCD_ENDPOINTS_MAX: usize = 16;

/// Longest etcd endpoint URL, in bytes.
pub const ETCD_ENDPOINT_BYTES_MAX: usize = 256;

/// Longest etcd key prefix, in bytes.
pub const ETCD_PREFIX_BYTES_MAX: usize = 256;

// --- Simulation --------------------------------------------------------------

/// Most nodes one simulation may run.
pub const SIM_NODES_MAX: usize = 64;

/// Steps a simulation runs before it stops, unless told otherwise.
pub const SIM_STEPS_MAX_DEFAULT: u64 = 1_000_000;

/// Events of the trace printed when a simulation fails.
pub const SIM_TRACE_TAIL_EVENTS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    // Checked at compile time: a bad edit fails the build, not just the test.
    const _: () = {
        assert!(LEASE_TTL_MS_MIN > 0);
        assert!(LEASE_TTL_MS_MIN < LEASE_TTL_MS_MAX);
        assert!(CLOCK_DRIFT_MS_MAX < LEASE_TTL_MS_MAX);
        // The default lease must satisfy the rule the configuration enforces.
        assert!(LEASE_TTL_MS_MIN <= LEASE_TTL_MS_DEFAULT && LEASE_TTL_MS_DEFAULT <= LEASE_TTL_MS_MAX);
        assert!(LEASE_TTL_MS_DEFAULT > LEASE_RENEW_INTERVAL_MS_DEFAULT + CLOCK_DRIFT_MS_DEFAULT);
        assert!(CLOCK_DRIFT_MS_DEFAULT <= CLOCK_DRIFT_MS_MAX);
        assert!(ACTOR_IDLE_TIMEOUT_MS_DEFAULT > 0);
        assert!(ACTOR_IDLE_TIMEOUT_MS_DEFAULT <= ACTOR_IDLE_TIMEOUT_MS_MAX);
        assert!(ETCD_ENDPOINTS_MAX > 0);
        assert!(MAILBOX_DEPTH_DEFAULT > 0);
        assert!(MAILBOX_DEPTH_DEFAULT <= MAILBOX_DEPTH_MAX);
        assert!(STORAGE_KEY_BYTES_MAX + STORAGE_VALUE_BYTES_MAX <= TRANSACTION_BYTES_MAX);
        assert!(TRANSACTION_BYTES_MAX < MESSAGE_BYTES_MAX);
        // An actor id must fit, with its separator, inside a storage key.
        assert!(ACTOR_NAMESPACE_BYTES_MAX + 1 + ACTOR_KEY_BYTES_MAX < STORAGE_KEY_BYTES_MAX);
        assert!(SCAN_PAGE_ENTRIES_MAX > 0);
        assert!(SIM_TRACE_TAIL_EVENTS > 0);
        assert!(SIM_NODES_MAX > 0);
        // "node-" plus the largest u32 index must be a valid node id.
        assert!("node-".len() + "4294967295".len() <= NODE_ID_BYTES_MAX);
    };

    #[test]
    fn bounds_have_the_documented_values() {
        assert_eq!(STORAGE_VALUE_BYTES_MAX, 1_048_576);
        assert_eq!(TRANSACTION_BYTES_MAX, 8_388_608);
        assert_eq!(MESSAGE_BYTES_MAX, 16_777_216);
        assert_eq!(CONFIG_FILE_BYTES_MAX, 1_048_576);
        assert_eq!((LEASE_TTL_MS_MIN, LEASE_TTL_MS_MAX), (100, 600_000));
        assert_eq!(CLOCK_DRIFT_MS_MAX, 60_000);
    }
}
