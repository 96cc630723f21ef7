//! Raw key layout: every entry of every actor lives in one ordered key space.
//!
//! `space (1 byte) | actor id text | 0x00 | key bytes`
//!
//! Actor ids never contain 0x00, so one actor's keys form one contiguous
//! range, ordered by key bytes. Spaces separate actor state from the journal
//! and from fencing tokens, so all of them can commit in one transaction.

use kelpie_core::limits::STORAGE_KEY_BYTES_MAX;
use kelpie_core::ActorId;

use crate::error::StorageError;

/// Which part of the key space a raw key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Space {
    /// Actor state written by handlers.
    State = b's',
    /// Journal entries, by sequence.
    Journal = b'j',
    /// Idempotency records, by key.
    Idempotency = b'i',
    /// Journal head (next sequence) per actor.
    JournalHead = b'h',
    /// Fencing tokens per actor.
    Fence = b'f',
}

/// Builds the raw key for `key` of `actor` in `space`.
pub fn raw_key(space: Space, actor: &ActorId, key: &[u8]) -> Vec<u8> {
    // The actor's display form ("namespace/key"), written without `fmt`.
    let (namespace, name) = (actor.namespace().as_bytes(), actor.key().as_bytes());
    let mut raw = Vec::with_capacity(3 + namespace.len() + name.len() + key.len());
    raw.push(space as u8);
    raw.extend_from_slice(namespace);
    raw.push(kelpie_core::id::ACTOR_ID_SEPARATOR as u8);
    raw.extend_from_slice(name);
    raw.push(0);
    raw.extend_from_slice(key);
    raw
}

/// The first raw key of `actor` in `space` and the first key after them.
pub fn actor_range(space: Space, actor: &ActorId) -> (Vec<u8>, Vec<u8>) {
    let start = raw_key(space, actor, b"");
    let mut end = start.clone();
    // The 0x00 separator becomes 0x01: just past every key of this actor.
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    (start, end)
}

/// The first raw key of `space` and the first key after it.
pub fn space_range(space: Space) -> (Vec<u8>, Vec<u8>) {
    (vec![space as u8], vec![space as u8 + 1])
}

/// Splits a raw key into its actor and user key.
pub fn split_raw_key(raw: &[u8]) -> Option<(Space, ActorId, &[u8])> {
    let (&space, rest) = raw.split_first()?;
    let space = match space {
        b's' => Space::State,
        b'j' => Space::Journal,
        b'i' => Space::Idempotency,
        b'h' => Space::JournalHead,
        b'f' => Space::Fence,
        _ => return None,
    };
    let separator = rest.iter().position(|byte| *byte == 0)?;
    let actor = std::str::from_utf8(&rest[..separator]).ok()?.parse().ok()?;
    Some((space, actor, &rest[separator + 1..]))
}

/// Checks a user key against the limits.
pub fn check_user_key(key: &[u8]) -> Result<(), StorageError> {
    if key.is_empty() || key.len() > STORAGE_KEY_BYTES_MAX {
        return Err(StorageError::KeySize {
            bytes: key.len(),
            max: STORAGE_KEY_BYTES_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_keys_split_back_and_actor_ranges_are_tight() {
        let actor: ActorId = "agents/a1".parse().expect("valid");
        let other: ActorId = "agents/a10".parse().expect("valid");
        let raw = raw_key(Space::State, &actor, b"name");
        assert_eq!(split_raw_key(&raw), Some((Space::State, actor.clone(), &b"name"[..])));
        let (start, end) = actor_range(Space::State, &actor);
        assert!(start <= raw && raw < end);
        let foreign = raw_key(Space::State, &other, b"name");
        assert!(
            !(start <= foreign && foreign < end),
            "a1's range must not include a10's keys"
        );
        assert_eq!(split_raw_key(b"zzz"), None);
        assert_eq!(
            check_user_key(b""),
            Err(StorageError::KeySize {
                bytes: 0,
                max: STORAGE_KEY_BYTES_MAX
            })
        );
    }
}
