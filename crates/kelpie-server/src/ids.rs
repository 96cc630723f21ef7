//! Ids in Letta's form: `<kind>-<uuid>`.

use sha2::{Digest, Sha256};

/// A new time-ordered id (a version 7 UUID: milliseconds since the Unix
/// epoch, then random bits), so ids sort by creation.
pub fn new_id(kind: &str, unix_ms: i64, random: u64, random2: u64) -> String {
    let ms = u64::try_from(unix_ms).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let rand_a = random & 0x0FFF;
    let rand_b = (random2 & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format_uuid(kind, ms << 16 | 0x7000 | rand_a, rand_b)
}

/// An id derived from `material` (a version 8 UUID over its SHA-256), so
/// the same request names the same record after a retry.
pub fn derived_id(kind: &str, material: &[u8]) -> String {
    let digest = Sha256::digest(material);
    let mut high = [0u8; 8];
    let mut low = [0u8; 8];
    high.copy_from_slice(&digest[..8]);
    low.copy_from_slice(&digest[8..16]);
    let high = (u64::from_be_bytes(high) & !0xF000) | 0x8000;
    let low = (u64::from_be_bytes(low) & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format_uuid(kind, high, low)
}

fn format_uuid(kind: &str, high: u64, low: u64) -> String {
    format!(
        "{kind}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xFFFF,
        high & 0xFFFF,
        low >> 48,
        low & 0xFFFF_FFFF_FFFF
    )
}

/// Whether `id` looks like `<kind>-<uuid>` (so a malformed id is a 404
/// without touching storage, and never an invalid actor key).
pub fn is_valid(kind: &str, id: &str) -> bool {
    let Some(uuid) = id.strip_prefix(kind).and_then(|rest| rest.strip_prefix('-')) else {
        return false;
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_sort_by_time_and_are_valid() {
        let early = new_id("agent", 1_700_000_000_000, 7, 9);
        let late = new_id("agent", 1_700_000_000_001, 0, 0);
        assert!(early < late);
        assert!(is_valid("agent", &early), "{early}");
        assert_eq!(&early[6..20], "018bcfe5-6800-");
    }

    #[test]
    fn derived_ids_are_stable_and_valid() {
        let id = derived_id("agent", b"key");
        assert_eq!(id, derived_id("agent", b"key"));
        assert_ne!(id, derived_id("agent", b"other"));
        assert!(is_valid("agent", &id), "{id}");
    }

    #[test]
    fn malformed_ids_are_rejected() {
        assert!(!is_valid("agent", "agent-123"));
        assert!(!is_valid("agent", "block-0190a1b2-c3d4-7000-8000-1234abcd5678"));
        assert!(!is_valid("agent", "agent-0190a1b2-c3d4-7000-8000-1234abcd567g"));
        assert!(is_valid("agent", "agent-0190a1b2-c3d4-7000-8000-1234abcd5678"));
    }
}
