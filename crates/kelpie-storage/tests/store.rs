//! Store semantics on both engines: snapshot reads, read-your-writes,
//! conflicts, fencing, limits, group commit, durability across reopen.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use kelpie_core::limits::{STORAGE_VALUE_BYTES_MAX, TRANSACTION_KEYS_MAX};
use kelpie_core::spawn::TokioSpawner;
use kelpie_core::ActorId;
use kelpie_storage::{ActorKey, CommitNow, EmbeddedEngine, Engine, FenceKey, MemoryEngine, StorageError, Store};

fn actor(key: &str) -> ActorId {
    ActorId::new("test", key).expect("valid id")
}

fn store_on(engine: Arc<dyn Engine>) -> Store {
    Store::new(engine, Arc::new(TokioSpawner::current().expect("in a runtime")))
}

/// Runs `check` against a memory store and an embedded store.
async fn on_both<F, Fut>(check: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    check(store_on(Arc::new(MemoryEngine::new()))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    check(store_on(Arc::new(EmbeddedEngine::open_dir(dir.path()).expect("open")))).await;
}

#[tokio::test]
async fn reads_see_own_writes_and_a_fixed_snapshot() {
    on_both(|store| async move {
        let a = actor("a");
        let mut setup = store.begin().expect("begin");
        setup.put(&a, b"k", Bytes::from_static(b"v1")).expect("put");
        setup.commit().await.expect("commit");

        let mut reader = store.begin().expect("begin");
        let mut writer = store.begin().expect("begin");
        writer.put(&a, b"k", Bytes::from_static(b"v2")).expect("put");
        assert_eq!(
            writer.get(&a, b"k"),
            Ok(Some(Bytes::from_static(b"v2"))),
            "read your writes"
        );
        writer.commit().await.expect("commit");
        assert_eq!(
            reader.get(&a, b"k"),
            Ok(Some(Bytes::from_static(b"v1"))),
            "snapshot from begin"
        );
        let mut fresh = store.begin().expect("begin");
        assert_eq!(fresh.get(&a, b"k"), Ok(Some(Bytes::from_static(b"v2"))));
        fresh.delete(&a, b"k").expect("delete");
        assert_eq!(fresh.get(&a, b"k"), Ok(None));
    })
    .await;
}

#[tokio::test]
async fn a_deferred_transaction_snapshots_at_its_first_read_and_a_blind_one_never_conflicts() {
    on_both(|store| async move {
        let a = actor("deferred");
        let mut reader = store.begin_deferred();
        let mut blind = store.begin_deferred();
        assert_eq!(reader.snapshot_version(), 0, "no snapshot before the first read");
        let mut setup = store.begin().expect("begin");
        setup.put(&a, b"k", Bytes::from_static(b"v1")).expect("put");
        let setup_version = setup.commit().await.expect("commit").version;
        // Begun before that commit, it reads after it: it sees v1.
        assert_eq!(reader.get(&a, b"k"), Ok(Some(Bytes::from_static(b"v1"))));
        assert_eq!(reader.snapshot_version(), setup_version);

        // A blind write commits over a key changed since it began; the
        // deferred reader, which read that key, conflicts.
        blind.put(&a, b"k", Bytes::from_static(b"blind")).expect("put");
        assert_eq!(blind.commit().await.map(|info| info.version), Ok(setup_version + 1));
        reader.put(&a, b"k", Bytes::from_static(b"stale")).expect("put");
        assert_eq!(
            reader.commit().await,
            Err(StorageError::Conflict {
                key: "stest/deferred\\x00k".to_string()
            })
        );
        let mut check = store.begin().expect("begin");
        assert_eq!(check.get(&a, b"k"), Ok(Some(Bytes::from_static(b"blind"))));

        // A deferred transaction that never reads is read-only at commit:
        // it reports the version current then.
        let idle = store.begin_deferred();
        assert_eq!(idle.commit().await.map(|info| info.version), Ok(setup_version + 1));
    })
    .await;
}

#[tokio::test]
async fn overlapping_read_write_transactions_one_wins_the_other_conflicts() {
    on_both(|store| async move {
        let a = actor("counter");
        let mut first = store.begin().expect("begin");
        let mut second = store.begin().expect("begin");
        assert_eq!(first.get(&a, b"n"), Ok(None));
        assert_eq!(second.get(&a, b"n"), Ok(None));
        first.put(&a, b"n", Bytes::from_static(b"first")).expect("put");
        second.put(&a, b"n", Bytes::from_static(b"second")).expect("put");
        second.put(&a, b"other", Bytes::from_static(b"x")).expect("put");
        let version_before = store.version();
        assert_eq!(first.commit().await.map(|info| info.version), Ok(version_before + 1));
        assert!(matches!(second.commit().await, Err(StorageError::Conflict { .. })));
        let mut check = store.begin().expect("begin");
        assert_eq!(check.get(&a, b"n"), Ok(Some(Bytes::from_static(b"first"))));
        assert_eq!(check.get(&a, b"other"), Ok(None), "the loser applied nothing");
        assert_eq!(store.version(), version_before + 1);
    })
    .await;
}

#[tokio::test]
async fn a_scan_conflicts_with_a_later_insert_into_its_range() {
    on_both(|store| async move {
        let a = actor("list");
        let mut scanner = store.begin().expect("begin");
        let seen = scanner.scan(&a, Bound::Unbounded, Bound::Unbounded, 10).expect("scan");
        assert_eq!(seen, vec![]);
        let mut inserter = store.begin().expect("begin");
        inserter.put(&a, b"item-1", Bytes::from_static(b"1")).expect("put");
        inserter.commit().await.expect("commit");
        scanner.put(&a, b"count", Bytes::from_static(b"0")).expect("put");
        assert!(matches!(scanner.commit().await, Err(StorageError::Conflict { .. })));
        // A disjoint actor's writes do not conflict with the scan.
        let mut scanner = store.begin().expect("begin");
        scanner.scan(&a, Bound::Unbounded, Bound::Unbounded, 10).expect("scan");
        let mut other = store.begin().expect("begin");
        other
            .put(&actor("list2"), b"item", Bytes::from_static(b"1"))
            .expect("put");
        other.commit().await.expect("commit");
        scanner.put(&a, b"count", Bytes::from_static(b"1")).expect("put");
        assert_eq!(scanner.commit().await.map(|_| ()), Ok(()));
    })
    .await;
}

#[tokio::test]
async fn scans_are_ordered_paged_and_merge_own_writes() {
    on_both(|store| async move {
        let a = actor("scan");
        let mut setup = store.begin().expect("begin");
        for key in ["b", "d", "f", "h"] {
            setup
                .put(&a, key.as_bytes(), Bytes::from(key.to_uppercase()))
                .expect("put");
        }
        setup
            .put(&actor("scan-other"), b"c", Bytes::from_static(b"X"))
            .expect("put");
        setup.commit().await.expect("commit");
        let mut txn = store.begin().expect("begin");
        txn.put(&a, b"c", Bytes::from_static(b"C")).expect("put");
        txn.delete(&a, b"d").expect("delete");
        let keys = |entries: Vec<(Bytes, Bytes)>| {
            entries
                .into_iter()
                .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(&k), String::from_utf8_lossy(&v)))
                .collect::<Vec<_>>()
        };
        let all = txn.scan(&a, Bound::Unbounded, Bound::Unbounded, 100).expect("scan");
        assert_eq!(keys(all), vec!["b=B", "c=C", "f=F", "h=H"]);
        let page = txn
            .scan(&a, Bound::Excluded(&b"b"[..]), Bound::Included(&b"f"[..]), 2)
            .expect("scan");
        assert_eq!(keys(page), vec!["c=C", "f=F"]);
        assert_eq!(
            txn.scan(&a, Bound::Unbounded, Bound::Unbounded, 0),
            Err(StorageError::ScanLimit {
                limit: 0,
                max: kelpie_core::limits::SCAN_PAGE_ENTRIES_MAX
            })
        );
    })
    .await;
}

#[tokio::test]
async fn an_oversized_value_is_a_typed_error_and_leaves_the_store_unchanged() {
    on_both(|store| async move {
        let a = actor("big");
        let version = store.version();
        let mut txn = store.begin().expect("begin");
        txn.put(&a, b"small", Bytes::from_static(b"ok")).expect("put");
        let result = txn.put(&a, b"huge", Bytes::from(vec![0u8; STORAGE_VALUE_BYTES_MAX + 1]));
        assert_eq!(
            result,
            Err(StorageError::ValueTooLarge {
                key: "stest/big\\x00huge".into(),
                bytes: STORAGE_VALUE_BYTES_MAX + 1,
                max: STORAGE_VALUE_BYTES_MAX
            })
        );
        drop(txn);
        let mut check = store.begin().expect("begin");
        assert_eq!(check.get(&a, b"huge"), Ok(None));
        assert_eq!(check.get(&a, b"small"), Ok(None));
        assert_eq!(store.version(), version);
        assert_eq!(
            check.put(&a, b"", Bytes::new()),
            Err(StorageError::KeySize {
                bytes: 0,
                max: kelpie_core::limits::STORAGE_KEY_BYTES_MAX
            })
        );
    })
    .await;
}

#[tokio::test]
async fn too_many_keys_in_one_transaction_is_refused_before_commit() {
    let store = store_on(Arc::new(MemoryEngine::new()));
    let a = actor("many");
    let mut txn = store.begin().expect("begin");
    for index in 0..TRANSACTION_KEYS_MAX {
        txn.put(&a, format!("k{index}").as_bytes(), Bytes::from_static(b"v"))
            .expect("within limit");
    }
    assert_eq!(
        txn.put(&a, b"one-more", Bytes::from_static(b"v")),
        Err(StorageError::TooManyKeys {
            count: TRANSACTION_KEYS_MAX + 1,
            max: TRANSACTION_KEYS_MAX
        })
    );
    assert_eq!(txn.write_count(), TRANSACTION_KEYS_MAX);
    // Overwriting a key already written is not a new key.
    txn.put(&a, b"k0", Bytes::from_static(b"w")).expect("overwrite");
}

#[tokio::test]
async fn a_commit_with_a_stale_fencing_token_is_rejected_atomically() {
    on_both(|store| async move {
        let a = actor("fenced");
        let mut owner1 = store.begin().expect("begin");
        owner1
            .set_fence_token(&a, Bytes::from_static(b"\x00\x01"))
            .expect("token");
        owner1.commit().await.expect("commit");
        // Node 2 takes over with token 2.
        let mut takeover = store.begin().expect("begin");
        takeover
            .set_fence_token(&a, Bytes::from_static(b"\x00\x02"))
            .expect("token");
        takeover.commit().await.expect("commit");
        // The zombie (token 1) tries to commit: rejected, nothing applied.
        let mut zombie = store.begin().expect("begin");
        zombie.put(&a, b"state", Bytes::from_static(b"zombie")).expect("put");
        zombie.require_fence(&a, Bytes::from_static(b"\x00\x01"));
        assert_eq!(
            zombie.commit().await,
            Err(StorageError::FencingRejected {
                key: "ftest/fenced\\x00".into(),
                expected: vec![0, 1],
                found: Some(vec![0, 2])
            })
        );
        let mut owner2 = store.begin().expect("begin");
        owner2.put(&a, b"state", Bytes::from_static(b"owner2")).expect("put");
        owner2.require_fence(&a, Bytes::from_static(b"\x00\x02"));
        owner2.commit().await.expect("current owner commits");
        let mut check = store.begin().expect("begin");
        assert_eq!(check.get(&a, b"state"), Ok(Some(Bytes::from_static(b"owner2"))));
    })
    .await;
}

#[tokio::test]
async fn keys_built_once_write_and_fence_like_the_actor_keyed_calls() {
    on_both(|store| async move {
        let a = actor("prepared");
        assert_eq!(
            ActorKey::new(&a, b""),
            Err(StorageError::KeySize {
                bytes: 0,
                max: kelpie_core::limits::STORAGE_KEY_BYTES_MAX
            })
        );
        let state = ActorKey::new(&a, b"state").expect("valid key");
        let fence = FenceKey::new(&a);
        let mut owner = store.begin().expect("begin");
        owner
            .set_fence_token(&a, Bytes::from_static(b"\x00\x02"))
            .expect("token");
        owner.put_key(&state, Bytes::from_static(b"one")).expect("put");
        // Read back through the actor-keyed call: the same key.
        assert_eq!(owner.get(&a, b"state"), Ok(Some(Bytes::from_static(b"one"))));
        owner.commit().await.expect("commit");
        let mut zombie = store.begin_deferred();
        zombie.put_key(&state, Bytes::from_static(b"zombie")).expect("put");
        zombie.require_fence_key(&fence, Bytes::from_static(b"\x00\x01"));
        assert_eq!(
            zombie.commit().await,
            Err(StorageError::FencingRejected {
                key: "ftest/prepared\\x00".into(),
                expected: vec![0, 1],
                found: Some(vec![0, 2])
            })
        );
        let mut current = store.begin_deferred();
        current.put_key(&state, Bytes::from_static(b"two")).expect("put");
        current.require_fence_key(&fence, Bytes::from_static(b"\x00\x02"));
        current.commit().await.expect("the current token commits");
        let mut check = store.begin().expect("begin");
        assert_eq!(check.get(&a, b"state"), Ok(Some(Bytes::from_static(b"two"))));
    })
    .await;
}

#[tokio::test]
async fn commit_now_commits_at_once_only_where_nothing_waits() {
    let a = actor("now");
    // The in-memory engine: validated and applied at once, fence included.
    let memory = store_on(Arc::new(MemoryEngine::new()));
    let mut install = memory.begin().expect("begin");
    install
        .set_fence_token(&a, Bytes::from_static(b"\x00\x02"))
        .expect("token");
    let CommitNow::Done(Ok(first)) = install.commit_now() else {
        panic!("the memory engine commits at once");
    };
    let mut stale = memory.begin_deferred();
    stale.put(&a, b"k", Bytes::from_static(b"zombie")).expect("put");
    stale.require_fence(&a, Bytes::from_static(b"\x00\x01"));
    assert!(matches!(
        stale.commit_now(),
        CommitNow::Done(Err(StorageError::FencingRejected { .. }))
    ));
    let mut read_only = memory.begin().expect("begin");
    assert_eq!(read_only.get(&a, b"k"), Ok(None));
    assert!(matches!(read_only.commit_now(), CommitNow::Done(Ok(info)) if info == first));
    // A durable engine: the commit waits for the committer, so the
    // transaction comes back, whole, for `commit`.
    let dir = tempfile::tempdir().expect("tempdir");
    let durable = store_on(Arc::new(EmbeddedEngine::open_dir(dir.path()).expect("open")));
    let mut write = durable.begin_deferred();
    write.put(&a, b"k", Bytes::from_static(b"v")).expect("put");
    let CommitNow::Wait(write) = write.commit_now() else {
        panic!("a durable engine's commit waits");
    };
    write.commit().await.expect("commit");
    let mut check = durable.begin().expect("begin");
    assert_eq!(check.get(&a, b"k"), Ok(Some(Bytes::from_static(b"v"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // Test harness concurrency, not code under test.
async fn concurrent_commits_share_durable_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_on(Arc::new(EmbeddedEngine::open_dir(dir.path()).expect("open")));
    let mut handles = Vec::new();
    for writer in 0..64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for round in 0..10 {
                let mut txn = store.begin().expect("begin");
                txn.put(&actor(&format!("w{writer}")), b"n", Bytes::from(format!("{round}")))
                    .expect("put");
                txn.commit().await.expect("disjoint writers never conflict");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("writer");
    }
    let stats = store.stats();
    assert_eq!(stats.commits, 640);
    assert!(stats.batches < 640, "group commit batched nothing: {stats:?}");
}

/// Commits per worker in the concurrent inline-commit test.
const INLINE_COMMITS_PER_WORKER: u64 = 5_000;

/// Two workers increment one counter with read-modify-write transactions
/// committed inline, retrying on conflict; returns how many were refused.
#[allow(clippy::disallowed_methods)] // Test harness concurrency, not code under test.
async fn increment_from_two_workers(store: &Store, counter: &ActorId) -> u64 {
    let mut handles = Vec::new();
    for _ in 0..2 {
        let store = store.clone();
        let counter = counter.clone();
        handles.push(tokio::spawn(async move {
            let (mut versions, mut conflicts) = (Vec::new(), 0u64);
            while (versions.len() as u64) < INLINE_COMMITS_PER_WORKER {
                let mut txn = store.begin().expect("begin");
                let value = txn.get(&counter, b"n").expect("get");
                let n: u64 = value.map_or(0, |bytes| {
                    std::str::from_utf8(&bytes).expect("utf8").parse().expect("n")
                });
                txn.put(&counter, b"n", Bytes::from((n + 1).to_string())).expect("put");
                match txn.commit_now() {
                    CommitNow::Done(Ok(info)) => versions.push(info.version),
                    CommitNow::Done(Err(StorageError::Conflict { .. })) => conflicts += 1,
                    other => panic!("unexpected commit outcome: {other:?}"),
                }
                tokio::task::yield_now().await;
            }
            (versions, conflicts)
        }));
    }
    let mut all = Vec::new();
    let mut conflicts = 0;
    for handle in handles {
        let (versions, refused) = handle.await.expect("writer");
        assert!(
            versions.windows(2).all(|pair| pair[0] < pair[1]),
            "versions go backwards"
        );
        all.extend(versions);
        conflicts += refused;
    }
    all.sort_unstable();
    let total = 2 * INLINE_COMMITS_PER_WORKER;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<u64>>(),
        "every commit numbered once, none skipped"
    );
    conflicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inline_commits_lose_no_update_and_are_observed_in_commit_order() {
    // Validation, apply and numbering of an inline commit (the memory
    // engine) must be one step: a commit validated before an earlier one's
    // writes are logged would lose an increment. With an observer set, it
    // must see every commit, in commit order.
    let total = 2 * INLINE_COMMITS_PER_WORKER;
    for observed in [false, true] {
        let store = store_on(Arc::new(MemoryEngine::new()));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        if observed {
            let seen = seen.clone();
            store.observe_commits(Arc::new(move |version, _writes| {
                seen.lock().expect("observer log").push(version);
            }));
        }
        let counter = actor("counter");
        let conflicts = increment_from_two_workers(&store, &counter).await;
        let mut check = store.begin().expect("begin");
        assert_eq!(
            check.get(&counter, b"n"),
            Ok(Some(Bytes::from(total.to_string()))),
            "observed: {observed}"
        );
        assert_eq!(store.version(), total);
        let stats = store.stats();
        assert_eq!(
            (stats.commits, stats.rejected, stats.batches),
            (total, conflicts, total + conflicts),
            "one batch per inline commit"
        );
        let seen = seen.lock().expect("observer log").clone();
        let expected: Vec<u64> = if observed { (1..=total).collect() } else { Vec::new() };
        assert_eq!(seen, expected, "the observer saw every commit, in commit order");
    }
}

#[tokio::test]
async fn embedded_commits_survive_reopen_and_a_second_opener_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = Arc::new(EmbeddedEngine::open_dir(dir.path()).expect("open"));
        assert_eq!(
            EmbeddedEngine::open_dir(dir.path()).map(|_| ()),
            Err(StorageError::Locked {
                path: dir.path().display().to_string()
            })
        );
        let store = store_on(engine);
        let mut txn = store.begin().expect("begin");
        txn.put(&actor("d"), b"k", Bytes::from_static(b"durable")).expect("put");
        txn.commit().await.expect("commit");
        store.close();
    }
    // The committer task holds the engine until it sees the queue closed.
    tokio::task::yield_now().await;
    let mut reopened = None;
    for _ in 0..100 {
        match EmbeddedEngine::open_dir(dir.path()) {
            Ok(engine) => {
                reopened = Some(engine);
                break;
            }
            Err(StorageError::Locked { .. }) => tokio::task::yield_now().await,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    let store = store_on(Arc::new(reopened.expect("reopens after close")));
    let mut txn = store.begin().expect("begin");
    assert_eq!(txn.get(&actor("d"), b"k"), Ok(Some(Bytes::from_static(b"durable"))));
}

/// A disk whose `sync_data` fails while `fail` is set.
#[derive(Debug)]
struct FlakyDisk {
    inner: kelpie_core::disk::OsDisk,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
struct FlakyFile {
    inner: Arc<dyn kelpie_core::disk::DiskFile>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl kelpie_core::disk::Disk for FlakyDisk {
    fn open(&self, name: &str) -> Result<Arc<dyn kelpie_core::disk::DiskFile>, kelpie_core::disk::DiskError> {
        Ok(Arc::new(FlakyFile {
            inner: self.inner.open(name)?,
            fail: self.fail.clone(),
        }))
    }

    fn exists(&self, name: &str) -> Result<bool, kelpie_core::disk::DiskError> {
        self.inner.exists(name)
    }
}

impl kelpie_core::disk::DiskFile for FlakyFile {
    fn len(&self) -> Result<u64, kelpie_core::disk::DiskError> {
        self.inner.len()
    }
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, kelpie_core::disk::DiskError> {
        self.inner.read(offset, len)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), kelpie_core::disk::DiskError> {
        self.inner.write(offset, data)
    }
    fn set_len(&self, len: u64) -> Result<(), kelpie_core::disk::DiskError> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), kelpie_core::disk::DiskError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(kelpie_core::disk::DiskError::Io {
                file: "kelpie.redb".into(),
                operation: "sync_data",
                message: "injected EIO".into(),
            });
        }
        self.inner.sync_data()
    }
}

#[tokio::test]
async fn after_an_fsync_failure_the_store_says_it_must_be_reopened_and_reopening_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let disk = FlakyDisk {
        inner: kelpie_core::disk::OsDisk::open_dir(dir.path()).expect("disk"),
        fail: fail.clone(),
    };
    let store = store_on(Arc::new(EmbeddedEngine::open_on_disk(&disk).expect("open")));
    let a = actor("flaky");
    let mut txn = store.begin().expect("begin");
    txn.put(&a, b"k", Bytes::from_static(b"durable")).expect("put");
    txn.commit().await.expect("commit");
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut txn = store.begin().expect("begin");
    txn.put(&a, b"k", Bytes::from_static(b"lost")).expect("put");
    assert!(
        matches!(txn.commit().await, Err(StorageError::Io { .. })),
        "the failed fsync itself"
    );
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut txn = store.begin().expect("begin");
    txn.put(&a, b"k", Bytes::from_static(b"after")).expect("put");
    let result = txn.commit().await;
    assert!(matches!(result, Err(StorageError::Failed { .. })), "{result:?}");
    assert!(!result.expect_err("failed").is_retryable());
    store.close();
    drop(store);
    tokio::task::yield_now().await;
    // Reopening recovers the last durable state.
    let reopened = store_on(Arc::new(EmbeddedEngine::open_on_disk(&disk).expect("reopen")));
    let mut check = reopened.begin().expect("begin");
    let value = check.get(&a, b"k").expect("read");
    assert!(
        value == Some(Bytes::from_static(b"durable")) || value == Some(Bytes::from_static(b"lost")),
        "{value:?}"
    );
}

#[test]
fn a_database_half_created_by_a_killed_process_is_discarded_but_a_damaged_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A process killed while creating leaves only the temporary file.
    std::fs::write(dir.path().join("kelpie.redb.creating"), b"half a header").expect("write");
    let engine = EmbeddedEngine::open_dir(dir.path()).expect("a clean database is created");
    drop(engine);
    assert!(!dir.path().join("kelpie.redb.creating").exists());
    // A damaged database in place is reported, never replaced.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(other.path().join("kelpie.redb"), b"not a database").expect("write");
    match EmbeddedEngine::open_dir(other.path()) {
        Err(StorageError::Io { message }) => assert!(message.contains("kelpie.redb"), "{message}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a damaged database must not open"),
    }
    assert_eq!(
        std::fs::read(other.path().join("kelpie.redb")).expect("read"),
        b"not a database"
    );
}

/// An engine whose next write is applied and then reported failed, like a
/// write whose sync failed after the data reached the disk.
struct AppliedThenFailed {
    inner: MemoryEngine,
    fail_next: std::sync::atomic::AtomicBool,
}

impl Engine for AppliedThenFailed {
    fn snapshot(&self) -> Result<Box<dyn kelpie_storage::engine::Snapshot>, StorageError> {
        self.inner.snapshot()
    }

    fn write(&self, body: kelpie_storage::engine::WriteBody<'_>) -> Result<(), StorageError> {
        self.inner.write(body)?;
        if self.fail_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Io {
                message: "sync failed after the write".into(),
            });
        }
        Ok(())
    }

    fn is_durable(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn a_commit_whose_engine_write_failed_still_conflicts_with_readers_of_its_keys() {
    let engine = Arc::new(AppliedThenFailed {
        inner: MemoryEngine::new(),
        fail_next: std::sync::atomic::AtomicBool::new(false),
    });
    let store = store_on(engine.clone());
    let a = actor("a");
    let mut setup = store.begin().expect("begin");
    setup.put(&a, b"balance", Bytes::from_static(b"10")).expect("put");
    setup.commit().await.expect("commit");

    // A reader of `balance` starts, then a writer's commit is applied but
    // reported failed: its outcome is unknown to the store.
    let mut reader = store.begin().expect("begin");
    assert_eq!(reader.get(&a, b"balance"), Ok(Some(Bytes::from_static(b"10"))));
    let mut writer = store.begin().expect("begin");
    writer.put(&a, b"balance", Bytes::from_static(b"0")).expect("put");
    engine.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        writer.commit().await,
        Err(StorageError::Io {
            message: "sync failed after the write".into()
        })
    );
    // The reader read a value that may have been overwritten: it must not
    // commit on it (a lost update otherwise).
    reader.put(&a, b"balance", Bytes::from_static(b"11")).expect("put");
    assert!(
        matches!(reader.commit().await, Err(StorageError::Conflict { .. })),
        "a reader of a key written by a commit of unknown outcome conflicts"
    );
    let mut check = store.begin().expect("begin");
    assert_eq!(check.get(&a, b"balance"), Ok(Some(Bytes::from_static(b"0"))));
}
