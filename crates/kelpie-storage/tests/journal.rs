//! The journal: append, idempotency, completion atomic with state,
//! recovery exactly once per pending entry, compaction with retention.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kelpie_core::clock::SystemClock;
use kelpie_core::spawn::TokioSpawner;
use kelpie_core::ActorId;
use kelpie_storage::journal::{AppendOutcome, EntryStatus, Journal, JournalEntry, RecoveryStats};
use kelpie_storage::{MemoryEngine, StorageError, Store};

fn actor(key: &str) -> ActorId {
    ActorId::new("agents", key).expect("valid")
}

fn journal(retention: Duration) -> Journal {
    let store = Store::new(
        Arc::new(MemoryEngine::new()),
        Arc::new(TokioSpawner::current().expect("runtime")),
    );
    Journal::new(store, Arc::new(SystemClock::new()), retention)
}

async fn append(journal: &Journal, actor: &ActorId, key: Option<&str>, payload: &'static str) -> JournalEntry {
    match journal
        .append(actor, key, Bytes::from_static(payload.as_bytes()), None)
        .await
        .expect("append")
    {
        AppendOutcome::Appended(entry) => entry,
        other => panic!("expected a new entry, got {other:?}"),
    }
}

/// Applies `entry`: increments the actor's counter and completes the entry
/// in the same transaction.
async fn apply(journal: &Journal, entry: &JournalEntry) -> Result<(), StorageError> {
    let mut txn = journal.store().begin()?;
    let count = txn
        .get(&entry.actor, b"applied")?
        .map(|bytes| String::from_utf8_lossy(&bytes).parse::<u64>().unwrap_or(0))
        .unwrap_or(0);
    txn.put(&entry.actor, b"applied", Bytes::from((count + 1).to_string()))?;
    journal.complete(&mut txn, entry, Bytes::from(format!("applied {}", entry.sequence)))?;
    txn.commit().await.map(|_| ())
}

#[tokio::test]
async fn sequences_increase_and_pending_lists_in_order() {
    let journal = journal(Duration::from_secs(60));
    let a = actor("a");
    let first = append(&journal, &a, None, "one").await;
    let second = append(&journal, &a, Some("k2"), "two").await;
    let other = append(&journal, &actor("b"), None, "other").await;
    assert_eq!((first.sequence, second.sequence, other.sequence), (1, 2, 1));
    assert_eq!(journal.pending(&a), Ok(vec![first.clone(), second.clone()]));
    apply(&journal, &first).await.expect("apply");
    assert_eq!(journal.pending(&a), Ok(vec![second]));
}

#[tokio::test]
async fn a_duplicate_idempotency_key_returns_the_stored_result_without_appending() {
    let journal = journal(Duration::from_secs(60));
    let a = actor("a");
    let entry = append(&journal, &a, Some("req-1"), "hello").await;
    let pending_dup = journal
        .append(&a, Some("req-1"), Bytes::from_static(b"hello"), None)
        .await;
    assert_eq!(
        pending_dup,
        Ok(AppendOutcome::Duplicate {
            sequence: 1,
            status: EntryStatus::Pending
        })
    );
    apply(&journal, &entry).await.expect("apply");
    let completed_dup = journal
        .append(&a, Some("req-1"), Bytes::from_static(b"hello"), None)
        .await;
    assert_eq!(
        completed_dup,
        Ok(AppendOutcome::Duplicate {
            sequence: 1,
            status: EntryStatus::Completed {
                result: Bytes::from_static(b"applied 1")
            }
        })
    );
    assert_eq!(journal.entries(&a).map(|entries| entries.len()), Ok(1));
}

#[tokio::test]
async fn completion_commits_with_the_state_or_not_at_all() {
    let journal = journal(Duration::from_secs(60));
    let a = actor("a");
    let entry = append(&journal, &a, Some("req"), "x").await;
    // A completion whose transaction conflicts applies neither the state nor
    // the completion.
    let mut racing = journal.store().begin().expect("begin");
    racing.get(&a, b"applied").expect("read");
    apply(&journal, &entry).await.expect("first completion");
    racing.put(&a, b"applied", Bytes::from_static(b"999")).expect("put");
    journal
        .complete(&mut racing, &entry, Bytes::from_static(b"second"))
        .expect("staged");
    assert!(matches!(racing.commit().await, Err(StorageError::Conflict { .. })));
    let mut check = journal.store().begin().expect("begin");
    assert_eq!(check.get(&a, b"applied"), Ok(Some(Bytes::from_static(b"1"))));
    assert_eq!(
        journal.lookup(&a, "req"),
        Ok(Some((
            1,
            EntryStatus::Completed {
                result: Bytes::from_static(b"applied 1")
            }
        )))
    );
}

#[tokio::test]
async fn recovery_replays_each_pending_entry_once_in_order_and_never_a_completed_one() {
    let journal = journal(Duration::from_secs(60));
    let (a, b) = (actor("a"), actor("b"));
    let a1 = append(&journal, &a, None, "a1").await;
    let _a2 = append(&journal, &a, None, "a2").await;
    let _b1 = append(&journal, &b, None, "b1").await;
    let _a3 = append(&journal, &a, None, "a3").await;
    apply(&journal, &a1).await.expect("a1 done before the crash");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let replayer = journal.clone();
    let stats = journal
        .recover::<StorageError>(&mut move |entry: JournalEntry| {
            let sink = sink.clone();
            let journal = replayer.clone();
            Box::pin(async move {
                sink.lock()
                    .expect("not poisoned")
                    .push(format!("{}#{}", entry.actor, entry.sequence));
                apply(&journal, &entry).await
            })
        })
        .await;
    assert_eq!(stats, Ok(RecoveryStats { actors: 2, replayed: 3 }));
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        vec!["agents/a#2", "agents/a#3", "agents/b#1"]
    );
    let again = journal
        .recover::<StorageError>(&mut |_entry| Box::pin(async { panic!("nothing is pending") }))
        .await;
    assert_eq!(again, Ok(RecoveryStats { actors: 0, replayed: 0 }));
    let mut check = journal.store().begin().expect("begin");
    assert_eq!(check.get(&a, b"applied"), Ok(Some(Bytes::from_static(b"3"))));
    assert_eq!(check.get(&b, b"applied"), Ok(Some(Bytes::from_static(b"1"))));
}

#[tokio::test]
async fn a_replay_error_stops_recovery_and_the_next_run_resumes() {
    let journal = journal(Duration::from_secs(60));
    let a = actor("a");
    append(&journal, &a, None, "1").await;
    append(&journal, &a, None, "2").await;
    let failed = journal
        .recover::<StorageError>(&mut |_entry| {
            Box::pin(async {
                Err(StorageError::Io {
                    message: "handler failed".into(),
                })
            })
        })
        .await;
    assert_eq!(
        failed,
        Err(StorageError::Io {
            message: "handler failed".into()
        })
    );
    assert_eq!(journal.pending(&a).map(|p| p.len()), Ok(2));
}

#[tokio::test]
async fn compaction_drops_completed_entries_and_expired_idempotency_records() {
    let a = actor("a");
    let keep = journal(Duration::from_secs(3600));
    let entry = append(&keep, &a, Some("req"), "x").await;
    let pending = append(&keep, &a, None, "y").await;
    apply(&keep, &entry).await.expect("apply");
    let stats = keep.compact(&a).await.expect("compact");
    assert_eq!((stats.entries_deleted, stats.idempotency_deleted), (1, 0));
    assert_eq!(keep.entries(&a), Ok(vec![pending]));
    // The result is still answered for retries within the retention.
    assert_eq!(
        keep.lookup(&a, "req"),
        Ok(Some((
            1,
            EntryStatus::Completed {
                result: Bytes::from_static(b"applied 1")
            }
        )))
    );

    let expire = journal(Duration::ZERO);
    let entry = append(&expire, &a, Some("req"), "x").await;
    apply(&expire, &entry).await.expect("apply");
    tokio::task::yield_now().await;
    std::thread::sleep(Duration::from_millis(2));
    let stats = expire.compact(&a).await.expect("compact");
    assert_eq!((stats.entries_deleted, stats.idempotency_deleted), (1, 1));
    assert_eq!(expire.lookup(&a, "req"), Ok(None));
}

#[tokio::test]
async fn bad_append_arguments_are_typed_errors() {
    let journal = journal(Duration::from_secs(60));
    let a = actor("a");
    assert_eq!(
        journal.append(&a, Some(""), Bytes::new(), None).await,
        Err(StorageError::KeySize {
            bytes: 0,
            max: kelpie_storage::journal::IDEMPOTENCY_KEY_BYTES_MAX
        })
    );
    let huge = Bytes::from(vec![0u8; kelpie_storage::journal::JOURNAL_PAYLOAD_BYTES_MAX + 1]);
    assert!(matches!(
        journal.append(&a, None, huge, None).await,
        Err(StorageError::ValueTooLarge { .. })
    ));
    assert_eq!(journal.entries(&a), Ok(vec![]));
}

#[tokio::test]
async fn completing_an_entry_twice_is_refused_and_applies_nothing() {
    let journal = journal(Duration::from_secs(60));
    let a = actor("a");
    let entry = append(&journal, &a, Some("once"), "x").await;
    apply(&journal, &entry).await.expect("first completion");
    let second = apply(&journal, &entry).await;
    assert_eq!(
        second,
        Err(StorageError::AlreadyCompleted {
            location: "journal entry agents/a #1".into(),
            result: b"applied 1".to_vec()
        })
    );
    let mut check = journal.store().begin().expect("begin");
    assert_eq!(check.get(&a, b"applied"), Ok(Some(Bytes::from_static(b"1"))));
}

#[tokio::test]
async fn a_completion_that_does_not_fit_leaves_the_transaction_unchanged() {
    let journal = journal(Duration::from_secs(60));
    let a = actor("a");
    let entry = append(&journal, &a, Some("full"), "x").await;
    let mut txn = journal.store().begin().expect("begin");
    for index in 0..kelpie_core::limits::TRANSACTION_KEYS_MAX - 1 {
        txn.put(&a, format!("k{index}").as_bytes(), Bytes::from_static(b"v"))
            .expect("fits");
    }
    let before = txn.write_count();
    let result = journal.complete(&mut txn, &entry, Bytes::from_static(b"r"));
    assert!(matches!(result, Err(StorageError::TooManyKeys { .. })), "{result:?}");
    assert_eq!(txn.write_count(), before, "neither record was staged");
}
