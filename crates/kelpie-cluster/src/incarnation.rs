//! A node's incarnation number: durable, strictly increasing across restarts.
//!
//! Two fixed slots in one file, each a checksummed record; a new incarnation
//! is written to the slot not holding the current one and synced before it is
//! used. A torn or half-lost write can only damage the slot being written, so
//! the other still holds the previous incarnation.

use kelpie_core::disk::{Disk, DiskError};

/// The file holding the incarnation slots.
pub const INCARNATION_FILE: &str = "incarnation";
/// Bytes per slot: magic (4), format version (4), incarnation (8), checksum (8).
pub const SLOT_BYTES: usize = 24;
const MAGIC: [u8; 4] = *b"KINC";
const FORMAT_VERSION: u32 = 1;

fn checksum(version: u32, incarnation: u64) -> u64 {
    // splitmix64 finalizer: any change in the inputs changes most output bits.
    let mut z = incarnation ^ (u64::from(version) << 32) ^ 0x4b49_4e43_0000_0000;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Encodes one slot.
pub fn encode_slot(incarnation: u64) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..4].copy_from_slice(&MAGIC);
    slot[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    slot[8..16].copy_from_slice(&incarnation.to_le_bytes());
    slot[16..24].copy_from_slice(&checksum(FORMAT_VERSION, incarnation).to_le_bytes());
    slot
}

/// Decodes one slot; `None` if it is empty, torn or of another format.
pub fn decode_slot(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; SLOT_BYTES] = bytes.try_into().ok()?;
    if bytes[0..4] != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
    let incarnation = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let stored = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    (version == FORMAT_VERSION && stored == checksum(version, incarnation)).then_some(incarnation)
}

/// Reads the current incarnation (0 if none was ever written).
pub fn read_current(disk: &dyn Disk) -> Result<u64, DiskError> {
    let file = disk.open(INCARNATION_FILE)?;
    let len = file.len()?;
    let mut best = 0;
    for slot in 0..2u64 {
        let offset = slot * SLOT_BYTES as u64;
        if offset + SLOT_BYTES as u64 <= len {
            if let Some(incarnation) = decode_slot(&file.read(offset, SLOT_BYTES)?) {
                best = best.max(incarnation);
            }
        }
    }
    Ok(best)
}

/// Durably moves to the next incarnation and returns it. Only a returned
/// value may be used: it is on disk and synced.
///
/// The file is synced *before* choosing the slot: what this process reads
/// may be unsynced (a write whose sync failed earlier), and overwriting the
/// slot holding the last used incarnation is only safe once the newer value
/// in the other slot is durable.
pub fn advance(disk: &dyn Disk) -> Result<u64, DiskError> {
    let file = disk.open(INCARNATION_FILE)?;
    file.sync_data()?;
    let next = read_current(disk)?.checked_add(1).ok_or_else(|| DiskError::Io {
        file: INCARNATION_FILE.to_string(),
        operation: "write",
        message: "incarnation counter exhausted".to_string(),
    })?;
    file.write((next % 2) * SLOT_BYTES as u64, &encode_slot(next))?;
    #[cfg(not(feature = "bug-incarnation-no-fsync"))]
    file.sync_data()?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_reject_damage() {
        let slot = encode_slot(41);
        assert_eq!(decode_slot(&slot), Some(41));
        for cut in 1..SLOT_BYTES {
            let mut torn = encode_slot(7);
            torn[cut..].copy_from_slice(&slot[cut..]);
            if torn != slot {
                assert_eq!(decode_slot(&torn), None, "torn at {cut}");
            }
        }
        assert_eq!(decode_slot(&[0; SLOT_BYTES]), None);
        assert_eq!(decode_slot(&slot[..10]), None);
    }

    #[test]
    fn advance_on_a_real_disk_is_durable_and_monotonic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = kelpie_core::disk::OsDisk::open_dir(dir.path()).expect("disk");
        assert_eq!(read_current(&disk), Ok(0));
        assert_eq!(advance(&disk), Ok(1));
        assert_eq!(advance(&disk), Ok(2));
        assert_eq!(advance(&disk), Ok(3));
        let reopened = kelpie_core::disk::OsDisk::open_dir(dir.path()).expect("disk");
        assert_eq!(read_current(&reopened), Ok(3));
    }
}
