//! The journal: a write-ahead log of invocations, per actor.
//!
//! Before an invocation runs, [`Journal::append`] durably records
//! `{actor, sequence, idempotency key, payload, fencing token}` as pending.
//! The invocation's state writes and [`Journal::complete`] (the entry marked
//! completed, with its result) go into **one** transaction, so they commit
//! together or not at all. After a crash, [`Journal::recover`] hands every
//! still-pending entry, per actor in sequence order, to a replay callback,
//! once per recovery run; completed entries are never replayed. A duplicate
//! idempotency key is answered from its record without re-executing.
//!
//! Records are versioned and checksummed (CRC-32); a damaged record is
//! reported as [`StorageError::Corrupt`] naming its location, never skipped.
//! [`Journal::compact`] deletes completed entries, and idempotency records
//! once they are older than the retention.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use kelpie_core::clock::SharedClock;
use kelpie_core::limits::{SCAN_PAGE_ENTRIES_MAX, STORAGE_VALUE_BYTES_MAX};
use kelpie_core::ActorId;

use crate::error::{printable, StorageError};
use crate::key::{actor_range, raw_key, space_range, split_raw_key, Space};
use crate::store::{Store, Transaction};

/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;
/// Record format version written by this build.
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Default time an idempotency result is kept after completion.
pub const IDEMPOTENCY_RETENTION_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest payload or result, in bytes (a record must fit in one value).
pub const JOURNAL_PAYLOAD_BYTES_MAX: usize = STORAGE_VALUE_BYTES_MAX / 2 - 1024;

/// Whether an entry has completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryStatus {
    /// Appended, not yet completed: replayed after a crash.
    Pending,
    /// Completed with this result (committed with the invocation's state).
    Completed {
        /// The invocation's result.
        result: Bytes,
    },
}

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// The actor invoked.
    pub actor: ActorId,
    /// Position in the actor's journal, from 1, strictly increasing.
    pub sequence: u64,
    /// The caller's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The invocation's message.
    pub payload: Bytes,
    /// The fencing token the appending node held.
    pub fencing_token: u64,
    /// Pending or completed.
    pub status: EntryStatus,
}

/// What [`Journal::append`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new pending entry.
    Appended(JournalEntry),
    /// The idempotency key was seen before: nothing appended.
    Duplicate {
        /// The original entry's sequence.
        sequence: u64,
        /// Its status: the stored result if completed.
        status: EntryStatus,
    },
}

/// Counts from one recovery run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Actors with pending entries.
    pub actors: u64,
    /// Entries handed to the replay callback.
    pub replayed: u64,
}

/// Counts from one compaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Completed entries deleted.
    pub entries_deleted: u64,
    /// Idempotency records deleted (older than the retention).
    pub idempotency_deleted: u64,
}

const ENTRY_MAGIC: &[u8; 2] = b"KJ";
const IDEMPOTENCY_MAGIC: &[u8; 2] = b"KI";
const HEAD_MAGIC: &[u8; 2] = b"KH";

fn seal(mut body: Vec<u8>) -> Bytes {
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(body)
}

/// A bounds-checked reader over a record, reporting errors at `location`.
struct Reader<'a> {
    bytes: &'a [u8],
    location: &'a str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            location: self.location.to_string(),
            reason: reason.into(),
        }
    }

    /// Checks magic, version and checksum; returns a reader over the body.
    fn open(bytes: &'a [u8], magic: &[u8; 2], location: &'a str) -> Result<Self, StorageError> {
        let reader = Reader { bytes, location };
        if bytes.len() < 7 {
            return Err(reader.corrupt(format!("record of {} bytes is too short", bytes.len())));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != stored {
            return Err(reader.corrupt("checksum mismatch"));
        }
        if &body[..2] != magic {
            return Err(reader.corrupt(format!("bad magic {:?}", printable(&body[..2]))));
        }
        if body[2] != RECORD_FORMAT_VERSION {
            return Err(reader.corrupt(format!(
                "record format version {} is not supported (this build reads {RECORD_FORMAT_VERSION})",
                body[2]
            )));
        }
        Ok(Reader {
            bytes: &body[3..],
            location,
        })
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], StorageError> {
        if self.bytes.len() < len {
            return Err(self.corrupt(format!("truncated: needs {len} more bytes, has {}", self.bytes.len())));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, StorageError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    fn blob(&mut self) -> Result<&'a [u8], StorageError> {
        let bytes = self.take(4)?;
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        self.take(len)
    }

    /// An entry status: 0 = pending, 1 = completed followed by its result.
    fn status(&mut self) -> Result<EntryStatus, StorageError> {
        match self.u8()? {
            0 => Ok(EntryStatus::Pending),
            1 => Ok(EntryStatus::Completed {
                result: Bytes::copy_from_slice(self.blob()?),
            }),
            other => Err(self.corrupt(format!("bad status {other}"))),
        }
    }

    fn finish(self) -> Result<(), StorageError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}

fn put_blob(out: &mut Vec<u8>, blob: &[u8]) {
    out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    out.extend_from_slice(blob);
}

fn put_status(out: &mut Vec<u8>, status: &EntryStatus) {
    match status {
        EntryStatus::Pending => out.push(0),
        EntryStatus::Completed { result } => {
            out.push(1);
            put_blob(out, result);
        }
    }
}

fn header(magic: &[u8; 2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(magic);
    out.push(RECORD_FORMAT_VERSION);
    out
}

/// Encodes an entry record (the actor and sequence are in its key).
pub fn encode_entry(entry: &JournalEntry) -> Bytes {
    let mut out = header(ENTRY_MAGIC);
    out.extend_from_slice(&entry.fencing_token.to_le_bytes());
    match &entry.idempotency_key {
        Some(key) => {
            out.push(1);
            put_blob(&mut out, key.as_bytes());
        }
        None => out.push(0),
    }
    put_blob(&mut out, &entry.payload);
    put_status(&mut out, &entry.status);
    seal(out)
}

fn entry_location(actor: &ActorId, sequence: u64) -> String {
    format!("journal entry {actor} #{sequence}")
}

/// Decodes an entry record found at `actor`/`sequence`.
pub fn decode_entry(actor: &ActorId, sequence: u64, bytes: &[u8]) -> Result<JournalEntry, StorageError> {
    let location = entry_location(actor, sequence);
    let mut reader = Reader::open(bytes, ENTRY_MAGIC, &location)?;
    let fencing_token = reader.u64()?;
    let idempotency_key = match reader.u8()? {
        0 => None,
        1 => Some(
            std::str::from_utf8(reader.blob()?)
                .map_err(|_| reader.corrupt("idempotency key is not UTF-8"))?
                .to_string(),
        ),
        other => return Err(reader.corrupt(format!("bad idempotency flag {other}"))),
    };
    let payload = Bytes::copy_from_slice(reader.blob()?);
    let status = reader.status()?;
    reader.finish()?;
    Ok(JournalEntry {
        actor: actor.clone(),
        sequence,
        idempotency_key,
        payload,
        fencing_token,
        status,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct IdempotencyRecord {
    sequence: u64,
    status: EntryStatus,
    completed_unix_ms: i64,
}

fn encode_idempotency(record: &IdempotencyRecord) -> Bytes {
    let mut out = header(IDEMPOTENCY_MAGIC);
    out.extend_from_slice(&record.sequence.to_le_bytes());
    out.extend_from_slice(&record.completed_unix_ms.to_le_bytes());
    put_status(&mut out, &record.status);
    seal(out)
}

fn decode_idempotency(location: &str, bytes: &[u8]) -> Result<IdempotencyRecord, StorageError> {
    let mut reader = Reader::open(bytes, IDEMPOTENCY_MAGIC, location)?;
    let sequence = reader.u64()?;
    let completed_unix_ms = reader.u64()? as i64;
    let status = reader.status()?;
    reader.finish()?;
    Ok(IdempotencyRecord {
        sequence,
        status,
        completed_unix_ms,
    })
}

fn encode_head(next_sequence: u64) -> Bytes {
    let mut out = header(HEAD_MAGIC);
    out.extend_from_slice(&next_sequence.to_le_bytes());
    seal(out)
}

fn decode_head(actor: &ActorId, bytes: &[u8]) -> Result<u64, StorageError> {
    let location = format!("journal head {actor}");
    let mut reader = Reader::open(bytes, HEAD_MAGIC, &location)?;
    let next = reader.u64()?;
    reader.finish()?;
    Ok(next)
}

fn sequence_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

fn fence_token_bytes(token: u64) -> Bytes {
    Bytes::copy_from_slice(&token.to_be_bytes())
}

/// Errors of [`Journal::append`] arguments.
fn check_append(idempotency_key: Option<&str>, payload: &[u8]) -> Result<(), StorageError> {
    if let Some(key) = idempotency_key {
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            return Err(StorageError::KeySize {
                bytes: key.len(),
                max: IDEMPOTENCY_KEY_BYTES_MAX,
            });
        }
    }
    if payload.len() > JOURNAL_PAYLOAD_BYTES_MAX {
        return Err(StorageError::ValueTooLarge {
            key: "journal payload".to_string(),
            bytes: payload.len(),
            max: JOURNAL_PAYLOAD_BYTES_MAX,
        });
    }
    Ok(())
}

/// The journal over a [`Store`].
#[derive(Clone)]
pub struct Journal {
    store: Store,
    clock: SharedClock,
    retention: Duration,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The callback of [`Journal::recover`].
pub type ReplayFn<'a, E> = &'a mut (dyn FnMut(JournalEntry) -> BoxFuture<'static, Result<(), E>> + Send);

impl Journal {
    /// A journal in `store`; idempotency results are kept `retention` after
    /// completion (by `clock`'s wall time).
    pub fn new(store: Store, clock: SharedClock, retention: Duration) -> Self {
        Self {
            store,
            clock,
            retention,
        }
    }

    /// The store the journal lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Durably appends a pending entry, unless `idempotency_key` was seen.
    /// With `fencing_token`, the append is fenced like a state commit.
    pub async fn append(
        &self,
        actor: &ActorId,
        idempotency_key: Option<&str>,
        payload: Bytes,
        fencing_token: Option<u64>,
    ) -> Result<AppendOutcome, StorageError> {
        check_append(idempotency_key, &payload)?;
        let mut txn = self.store.begin()?;
        if let Some(key) = idempotency_key {
            if let Some(record) = self.idempotency_record(&mut txn, actor, key)? {
                return Ok(AppendOutcome::Duplicate {
                    sequence: record.sequence,
                    status: record.status,
                });
            }
        }
        let head_key = raw_key(Space::JournalHead, actor, b"");
        let sequence = match txn.raw_get(head_key.clone())? {
            Some(bytes) => decode_head(actor, &bytes)?,
            None => 1,
        };
        let entry = JournalEntry {
            actor: actor.clone(),
            sequence,
            idempotency_key: idempotency_key.map(str::to_string),
            payload,
            fencing_token: fencing_token.unwrap_or(0),
            status: EntryStatus::Pending,
        };
        txn.raw_put(
            raw_key(Space::Journal, actor, &sequence_key(sequence)),
            encode_entry(&entry),
        )?;
        txn.raw_put(head_key, encode_head(sequence + 1))?;
        if let Some(key) = idempotency_key {
            let record = IdempotencyRecord {
                sequence,
                status: EntryStatus::Pending,
                completed_unix_ms: 0,
            };
            txn.raw_put(
                raw_key(Space::Idempotency, actor, key.as_bytes()),
                encode_idempotency(&record),
            )?;
        }
        if let Some(token) = fencing_token {
            txn.require_fence(actor, fence_token_bytes(token));
        }
        txn.commit().await?;
        Ok(AppendOutcome::Appended(entry))
    }

    fn idempotency_record(
        &self,
        txn: &mut Transaction,
        actor: &ActorId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StorageError> {
        let raw = raw_key(Space::Idempotency, actor, key.as_bytes());
        match txn.raw_get(raw)? {
            None => Ok(None),
            Some(bytes) => {
                let location = format!("idempotency record {actor} {key:?}");
                decode_idempotency(&location, &bytes).map(Some)
            }
        }
    }

    /// Marks `entry` completed with `result` inside `txn`, the transaction
    /// that also holds the invocation's state writes: they commit together.
    pub fn complete(&self, txn: &mut Transaction, entry: &JournalEntry, result: Bytes) -> Result<(), StorageError> {
        if result.len() > JOURNAL_PAYLOAD_BYTES_MAX {
            return Err(StorageError::ValueTooLarge {
                key: "journal result".to_string(),
                bytes: result.len(),
                max: JOURNAL_PAYLOAD_BYTES_MAX,
            });
        }
        let raw = raw_key(Space::Journal, &entry.actor, &sequence_key(entry.sequence));
        // Reading the entry puts it in the read set: two completions of one
        // entry conflict, so only one commits.
        let stored = txn.raw_get(raw.clone())?.ok_or_else(|| StorageError::Corrupt {
            location: entry_location(&entry.actor, entry.sequence),
            reason: "entry to complete is missing".to_string(),
        })?;
        let mut current = decode_entry(&entry.actor, entry.sequence, &stored)?;
        if let EntryStatus::Completed { result } = &current.status {
            if !cfg!(feature = "bug-journal-replay-completed") {
                return Err(StorageError::AlreadyCompleted {
                    location: entry_location(&entry.actor, entry.sequence),
                    result: result.to_vec(),
                });
            }
        }
        // Both records or neither: check the limits for both before writing.
        txn.reserve(2, 2 * (raw.len() + result.len() + current.payload.len() + 512))?;
        current.status = EntryStatus::Completed { result: result.clone() };
        txn.raw_put(raw, encode_entry(&current))?;
        if let Some(key) = &current.idempotency_key {
            let record = IdempotencyRecord {
                sequence: entry.sequence,
                status: EntryStatus::Completed { result },
                completed_unix_ms: self.clock.now_wall().as_unix_ms(),
            };
            txn.raw_put(
                raw_key(Space::Idempotency, &entry.actor, key.as_bytes()),
                encode_idempotency(&record),
            )?;
        }
        Ok(())
    }

    /// Every entry of `actor` still in the journal, in sequence order.
    pub fn entries(&self, actor: &ActorId) -> Result<Vec<JournalEntry>, StorageError> {
        let (start, end) = actor_range(Space::Journal, actor);
        let mut txn = self.store.begin()?;
        let mut entries = Vec::new();
        for (key, value) in scan_all(&mut txn, start, end)? {
            let (_, _, sequence) = split_raw_key(&key).ok_or_else(|| StorageError::Corrupt {
                location: format!("journal key {}", printable(&key)),
                reason: "malformed key".to_string(),
            })?;
            let sequence = parse_sequence(actor, sequence)?;
            entries.push(decode_entry(actor, sequence, &value)?);
        }
        Ok(entries)
    }

    /// Pending entries of `actor`, in sequence order.
    pub fn pending(&self, actor: &ActorId) -> Result<Vec<JournalEntry>, StorageError> {
        Ok(self
            .entries(actor)?
            .into_iter()
            .filter(|entry| entry.status == EntryStatus::Pending)
            .collect())
    }

    /// The entry recorded under `idempotency_key`: its sequence and status.
    pub fn lookup(&self, actor: &ActorId, idempotency_key: &str) -> Result<Option<(u64, EntryStatus)>, StorageError> {
        let mut txn = self.store.begin()?;
        Ok(self
            .idempotency_record(&mut txn, actor, idempotency_key)?
            .map(|record| (record.sequence, record.status)))
    }

    /// Hands every pending entry of every actor to `replay`, per actor in
    /// sequence order, once. Stops at the first error (from the store or
    /// from `replay`) and reports it; a later run resumes with what is still
    /// pending.
    pub async fn recover<E: From<StorageError>>(&self, replay: ReplayFn<'_, E>) -> Result<RecoveryStats, E> {
        let (start, end) = space_range(Space::Journal);
        let mut stats = RecoveryStats::default();
        let mut txn = self.store.begin()?;
        let mut last_actor: Option<ActorId> = None;
        for (key, value) in scan_all(&mut txn, start, end)? {
            let (_, actor, sequence) = split_raw_key(&key).ok_or_else(|| StorageError::Corrupt {
                location: format!("journal key {}", printable(&key)),
                reason: "malformed key".to_string(),
            })?;
            let sequence = parse_sequence(&actor, sequence)?;
            let entry = decode_entry(&actor, sequence, &value)?;
            let replay_it = entry.status == EntryStatus::Pending || cfg!(feature = "bug-journal-replay-completed");
            if !replay_it {
                continue;
            }
            if last_actor.as_ref() != Some(&actor) {
                stats.actors += 1;
                last_actor = Some(actor);
            }
            stats.replayed += 1;
            replay(entry).await?;
        }
        Ok(stats)
    }

    /// Deletes `actor`'s completed entries and its idempotency records
    /// completed more than the retention ago.
    pub async fn compact(&self, actor: &ActorId) -> Result<CompactionStats, StorageError> {
        let mut stats = CompactionStats::default();
        let mut txn = self.store.begin()?;
        let (start, end) = actor_range(Space::Journal, actor);
        for (key, value) in scan_all(&mut txn, start, end)? {
            if txn.write_count() + 1 >= kelpie_core::limits::TRANSACTION_KEYS_MAX {
                break;
            }
            let Some((_, _, sequence)) = split_raw_key(&key) else {
                return Err(StorageError::Corrupt {
                    location: format!("journal key {}", printable(&key)),
                    reason: "malformed key".to_string(),
                });
            };
            let entry = decode_entry(actor, parse_sequence(actor, sequence)?, &value)?;
            if let EntryStatus::Completed { .. } = entry.status {
                txn.raw_delete(key)?;
                stats.entries_deleted += 1;
            }
        }
        let cutoff = self
            .clock
            .now_wall()
            .as_unix_ms()
            .saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        let (start, end) = actor_range(Space::Idempotency, actor);
        for (key, value) in scan_all(&mut txn, start, end)? {
            if txn.write_count() + 1 >= kelpie_core::limits::TRANSACTION_KEYS_MAX {
                break;
            }
            let record = decode_idempotency(&format!("idempotency record {}", printable(&key)), &value)?;
            if matches!(record.status, EntryStatus::Completed { .. }) && record.completed_unix_ms < cutoff {
                txn.raw_delete(key)?;
                stats.idempotency_deleted += 1;
            }
        }
        if txn.write_count() > 0 {
            txn.commit().await?;
        }
        Ok(stats)
    }
}

fn parse_sequence(actor: &ActorId, bytes: &[u8]) -> Result<u64, StorageError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StorageError::Corrupt {
        location: format!("journal key of {actor}"),
        reason: format!("sequence of {} bytes, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

/// Every entry in `[start, end)`, page by page, in one snapshot.
fn scan_all(txn: &mut Transaction, start: Vec<u8>, end: Vec<u8>) -> Result<Vec<(Vec<u8>, Bytes)>, StorageError> {
    let mut all = Vec::new();
    let mut from = start;
    loop {
        let page = txn.raw_scan(from.clone(), end.clone(), SCAN_PAGE_ENTRIES_MAX)?;
        let full = page.len() == SCAN_PAGE_ENTRIES_MAX;
        if let Some((last, _)) = page.last() {
            from = last.clone();
            from.push(0);
        }
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> ActorId {
        "agents/a1".parse().expect("valid")
    }

    #[test]
    fn entry_records_round_trip_and_damage_is_reported_with_location() {
        let entry = JournalEntry {
            actor: actor(),
            sequence: 7,
            idempotency_key: Some("req-1".into()),
            payload: Bytes::from_static(b"hello"),
            fencing_token: 3,
            status: EntryStatus::Completed {
                result: Bytes::from_static(b"ok"),
            },
        };
        let bytes = encode_entry(&entry);
        assert_eq!(decode_entry(&actor(), 7, &bytes), Ok(entry));
        let mut flipped = bytes.to_vec();
        flipped[10] ^= 0x40;
        assert_eq!(
            decode_entry(&actor(), 7, &flipped),
            Err(StorageError::Corrupt {
                location: "journal entry agents/a1 #7".into(),
                reason: "checksum mismatch".into()
            })
        );
        assert_eq!(
            decode_entry(&actor(), 7, &bytes[..5]),
            Err(StorageError::Corrupt {
                location: "journal entry agents/a1 #7".into(),
                reason: "record of 5 bytes is too short".into()
            })
        );
        let mut future_version = bytes[..bytes.len() - 4].to_vec();
        future_version[2] = 9;
        let resealed = seal(future_version);
        assert_eq!(
            decode_entry(&actor(), 7, &resealed),
            Err(StorageError::Corrupt {
                location: "journal entry agents/a1 #7".into(),
                reason: "record format version 9 is not supported (this build reads 1)".into()
            })
        );
    }

    #[tokio::test]
    async fn recovery_reports_a_corrupt_record_with_its_location_and_stops() {
        let spawner = std::sync::Arc::new(kelpie_core::spawn::TokioSpawner::current().expect("runtime"));
        let store = Store::new(std::sync::Arc::new(crate::MemoryEngine::new()), spawner);
        let clock = std::sync::Arc::new(kelpie_core::clock::SystemClock::new());
        let journal = Journal::new(store.clone(), clock, Duration::from_secs(60));
        let appended = journal.append(&actor(), None, Bytes::from_static(b"x"), None).await;
        assert!(matches!(appended, Ok(AppendOutcome::Appended(_))));
        let mut txn = store.begin().expect("begin");
        let mut damaged = encode_entry(&JournalEntry {
            actor: actor(),
            sequence: 2,
            idempotency_key: None,
            payload: Bytes::from_static(b"y"),
            fencing_token: 0,
            status: EntryStatus::Pending,
        })
        .to_vec();
        damaged[5] ^= 1;
        txn.raw_put(
            raw_key(Space::Journal, &actor(), &sequence_key(2)),
            Bytes::from(damaged),
        )
        .expect("put");
        txn.commit().await.expect("commit");
        let mut replayed = 0;
        let result = journal
            .recover::<StorageError>(&mut |_entry| {
                replayed += 1;
                Box::pin(async { Ok(()) })
            })
            .await;
        assert_eq!(
            result,
            Err(StorageError::Corrupt {
                location: "journal entry agents/a1 #2".into(),
                reason: "checksum mismatch".into()
            })
        );
        assert_eq!(
            replayed, 1,
            "entry #1 was replayed before the damaged #2 stopped recovery"
        );
        assert!(matches!(journal.pending(&actor()), Err(StorageError::Corrupt { .. })));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode_entry(&actor(), 1, &bytes);
            let _ = decode_idempotency("x", &bytes);
            let _ = decode_head(&actor(), &bytes);
        }
    }
}
