//! Kelpie's embedded durable engine (redb behind `Store`, group commit)
//! against SQLite (WAL, `synchronous=FULL`), both measured in this run.
//!
//! Every write is one transaction of one 1 KiB value that is durable (fsynced)
//! before it returns. Writers write disjoint keys (one actor each), so there
//! are no conflicts. After criterion's groups, a separate timed pass measures
//! both engines again and prints a summary table of ratios.
//!
//! Run: `cargo bench -p kelpie-bench --bench storage`.

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use kelpie_core::spawn::TokioSpawner;
use kelpie_core::ActorId;
use kelpie_storage::{EmbeddedEngine, Store, StoreStats};
use rusqlite::Connection;
use tempfile::TempDir;

const VALUE_BYTES: usize = 1024;
const WRITERS_MANY: usize = 64;
/// Each writer cycles through this many keys, so both databases stay small
/// and every write after the first cycle is an overwrite.
const KEYS_PER_WRITER: u64 = 64;
/// The key read by the read-latency benchmarks (writer 0's first key).
const READ_KEY_INDEX: u64 = 0;

/// About one SQLite WAL checkpoint cycle (1000 pages), so its rate is not one phase of it.
const SUMMARY_SEQUENTIAL_WRITES: u64 = 1000;
const SUMMARY_CONCURRENT_ROUNDS: u64 = 10;
const SUMMARY_READS: u64 = 20_000;

fn key_name(sequence: u64) -> String {
    format!("k{}", sequence % KEYS_PER_WRITER)
}

/// A 1 KiB value stamped with its write's sequence number. Every write must
/// change the stored bytes: SQLite skips writing (and syncing) a page whose
/// content an overwrite leaves unchanged, so rewriting equal values would
/// measure no I/O at all.
fn value_for(sequence: u64) -> Vec<u8> {
    let mut value = vec![0u8; VALUE_BYTES];
    value[..8].copy_from_slice(&sequence.to_le_bytes());
    value
}

/// A fresh directory under /tmp (not tmpfs here: fsync reaches the disk).
fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create a temp dir under /tmp")
}

struct Kelpie {
    runtime: tokio::runtime::Runtime,
    store: Store,
    actors: Vec<ActorId>,
    sequence: Arc<AtomicU64>,
    _dir: TempDir,
}

impl Kelpie {
    fn open() -> Self {
        let dir = temp_dir("kelpie-bench-kelpie-");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let engine = Arc::new(EmbeddedEngine::open_dir(dir.path()).expect("open redb engine"));
        let store = {
            let _entered = runtime.enter();
            Store::new(engine, Arc::new(TokioSpawner::current().expect("inside the runtime")))
        };
        let actors = (0..WRITERS_MANY)
            .map(|i| ActorId::new("bench", format!("w{i}")).expect("valid actor id"))
            .collect();
        Self {
            runtime,
            store,
            actors,
            sequence: Arc::new(AtomicU64::new(0)),
            _dir: dir,
        }
    }

    fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// `count` durable writes, one after another, by writer 0.
    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
    fn write_sequential(&self, count: u64) -> Duration {
        self.runtime.block_on(async {
            let start = Instant::now();
            for _ in 0..count {
                write_one(&self.store, &self.actors[0], &self.sequence).await;
            }
            start.elapsed()
        })
    }

    /// `rounds` durable writes by each of `WRITERS_MANY` tasks at once.
    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time and spawns real tasks
    fn write_concurrent(&self, rounds: u64) -> Duration {
        self.runtime.block_on(async {
            let start = Instant::now();
            let writers: Vec<_> = self
                .actors
                .iter()
                .map(|actor| {
                    let store = self.store.clone();
                    let actor = actor.clone();
                    let sequence = self.sequence.clone();
                    tokio::spawn(async move {
                        for _ in 0..rounds {
                            write_one(&store, &actor, &sequence).await;
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.await.expect("writer task finished");
            }
            start.elapsed()
        })
    }

    /// One point read (begin + get) of an existing 1 KiB value.
    fn read_one(&self) -> Bytes {
        let mut txn = self.store.begin().expect("begin");
        txn.get(&self.actors[0], key_name(READ_KEY_INDEX).as_bytes())
            .expect("get")
            .expect("value exists")
    }

    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
    fn read_many(&self, count: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            black_box(self.read_one());
        }
        start.elapsed()
    }
}

async fn write_one(store: &Store, actor: &ActorId, sequence: &AtomicU64) {
    let sequence = sequence.fetch_add(1, Ordering::Relaxed);
    let mut txn = store.begin().expect("begin");
    txn.put(actor, key_name(sequence).as_bytes(), value_for(sequence))
        .expect("put");
    txn.commit().await.expect("commit");
}

struct Sqlite {
    /// One connection per writer, all to the same WAL database.
    connections: Vec<Connection>,
    sequence: AtomicU64,
    _dir: TempDir,
}

fn sqlite_connect(path: &Path) -> Connection {
    let connection = Connection::open(path).expect("open sqlite");
    let mode: String = connection
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .expect("set journal_mode");
    assert_eq!(mode, "wal", "sqlite must run in WAL mode");
    connection
        .pragma_update(None, "synchronous", "FULL")
        .expect("set synchronous");
    let synchronous: i64 = connection
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .expect("read synchronous");
    assert_eq!(synchronous, 2, "sqlite must sync every commit (FULL)");
    connection
        .busy_timeout(Duration::from_secs(600))
        .expect("set busy_timeout");
    connection
}

impl Sqlite {
    fn open() -> Self {
        let dir = temp_dir("kelpie-bench-sqlite-");
        let path = dir.path().join("bench.sqlite");
        let first = sqlite_connect(&path);
        first
            .execute_batch("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
            .expect("create table");
        let mut connections = vec![first];
        connections.extend((1..WRITERS_MANY).map(|_| sqlite_connect(&path)));
        Self {
            connections,
            sequence: AtomicU64::new(0),
            _dir: dir,
        }
    }

    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
    fn write_sequential(&mut self, count: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            sqlite_write_one(&self.connections[0], 0, &self.sequence);
        }
        start.elapsed()
    }

    /// `rounds` durable writes by each of `WRITERS_MANY` OS threads at once,
    /// each on its own connection.
    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time and spawns real threads
    fn write_concurrent(&mut self, rounds: u64) -> Duration {
        let sequence = &self.sequence;
        let ready = Barrier::new(self.connections.len() + 1);
        // Time starts once every thread is ready; the scope joins them all.
        let start = std::thread::scope(|scope| {
            for (writer, connection) in self.connections.iter_mut().enumerate() {
                let ready = &ready;
                scope.spawn(move || {
                    ready.wait();
                    for _ in 0..rounds {
                        sqlite_write_one(connection, writer, sequence);
                    }
                });
            }
            ready.wait();
            Instant::now()
        });
        start.elapsed()
    }

    fn read_one(&self) -> Vec<u8> {
        self.connections[0]
            .prepare_cached("SELECT v FROM kv WHERE k = ?1")
            .expect("prepare select")
            .query_row([sqlite_key(0, READ_KEY_INDEX)], |row| row.get(0))
            .expect("value exists")
    }

    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
    fn read_many(&self, count: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..count {
            black_box(self.read_one());
        }
        start.elapsed()
    }
}

fn sqlite_key(writer: usize, n: u64) -> String {
    format!("w{writer}/{}", key_name(n))
}

/// One transaction per write: `BEGIN IMMEDIATE; INSERT OR REPLACE; COMMIT`.
fn sqlite_write_one(connection: &Connection, writer: usize, sequence: &AtomicU64) {
    let sequence = sequence.fetch_add(1, Ordering::Relaxed);
    let value = value_for(sequence);
    connection
        .prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut begin| begin.execute([]))
        .expect("begin immediate");
    connection
        .prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")
        .and_then(|mut insert| insert.execute(rusqlite::params![sqlite_key(writer, sequence), value]))
        .expect("insert");
    connection
        .prepare_cached("COMMIT")
        .and_then(|mut commit| commit.execute([]))
        .expect("commit");
}

fn bench_writes(c: &mut Criterion, kelpie: &Kelpie, sqlite: &mut Sqlite) {
    let mut group = c.benchmark_group("durable_write_1kib/1_writer");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    group.bench_function("kelpie", |b| b.iter_custom(|iters| kelpie.write_sequential(iters)));
    group.bench_function("sqlite", |b| b.iter_custom(|iters| sqlite.write_sequential(iters)));
    group.finish();

    let mut group = c.benchmark_group(format!("durable_write_1kib/{WRITERS_MANY}_writers"));
    group.sampling_mode(SamplingMode::Flat);
    // One iteration = one round: every writer makes one durable write.
    group.throughput(Throughput::Elements(WRITERS_MANY as u64));
    group.bench_function("kelpie", |b| b.iter_custom(|rounds| kelpie.write_concurrent(rounds)));
    group.bench_function("sqlite", |b| b.iter_custom(|rounds| sqlite.write_concurrent(rounds)));
    group.finish();
}

fn bench_reads(c: &mut Criterion, kelpie: &Kelpie, sqlite: &Sqlite) {
    let mut group = c.benchmark_group("read_latency");
    group.bench_function("kelpie", |b| b.iter(|| kelpie.read_one()));
    group.bench_function("sqlite", |b| b.iter(|| sqlite.read_one()));
    group.finish();
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn micros_each(count: u64, elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6 / count as f64
}

/// Measures both engines again, in this run, and prints the ratios.
fn print_summary(kelpie: &Kelpie, sqlite: &mut Sqlite) {
    let kelpie_sequential = per_second(
        SUMMARY_SEQUENTIAL_WRITES,
        kelpie.write_sequential(SUMMARY_SEQUENTIAL_WRITES),
    );
    let sqlite_sequential = per_second(
        SUMMARY_SEQUENTIAL_WRITES,
        sqlite.write_sequential(SUMMARY_SEQUENTIAL_WRITES),
    );

    let concurrent_writes = SUMMARY_CONCURRENT_ROUNDS * WRITERS_MANY as u64;
    let stats_before = kelpie.stats();
    let kelpie_concurrent = per_second(concurrent_writes, kelpie.write_concurrent(SUMMARY_CONCURRENT_ROUNDS));
    let stats_after = kelpie.stats();
    let sqlite_concurrent = per_second(concurrent_writes, sqlite.write_concurrent(SUMMARY_CONCURRENT_ROUNDS));

    let kelpie_read = micros_each(SUMMARY_READS, kelpie.read_many(SUMMARY_READS));
    let sqlite_read = micros_each(SUMMARY_READS, sqlite.read_many(SUMMARY_READS));

    let commits = stats_after.commits - stats_before.commits;
    let batches = stats_after.batches - stats_before.batches;
    assert_eq!(commits, concurrent_writes, "every concurrent write committed");

    println!();
    println!("== summary: kelpie (redb + group commit) vs sqlite (WAL, synchronous=FULL), same run");
    println!(
        "{:<32} {:>14} {:>14} {:>14}",
        "case", "kelpie", "sqlite", "kelpie/sqlite"
    );
    println!(
        "{:<32} {:>14.0} {:>14.0} {:>14.2}",
        "durable 1 KiB, 1 writer (c/s)",
        kelpie_sequential,
        sqlite_sequential,
        kelpie_sequential / sqlite_sequential
    );
    println!(
        "{:<32} {:>14.0} {:>14.0} {:>14.2}",
        format!("durable 1 KiB, {WRITERS_MANY} writers (c/s)"),
        kelpie_concurrent,
        sqlite_concurrent,
        kelpie_concurrent / sqlite_concurrent
    );
    println!(
        "{:<32} {:>14.2} {:>14.2} {:>14.2}",
        "point read 1 KiB (us)",
        kelpie_read,
        sqlite_read,
        kelpie_read / sqlite_read
    );
    println!(
        "kelpie group commit, {WRITERS_MANY} writers: {commits} commits in {batches} batches \
         ({:.1} commits per fsync)",
        commits as f64 / batches.max(1) as f64
    );
    println!(
        "sqlite serialized through one connection would reach about its 1-writer rate: \
         kelpie {WRITERS_MANY} writers / sqlite 1 writer = {:.2}",
        kelpie_concurrent / sqlite_sequential
    );
    println!("c/s = durable commits/s (higher is better); us = µs per read (lower is better)");
}

fn main() {
    let kelpie = Kelpie::open();
    let mut sqlite = Sqlite::open();
    // Seed every key both engines read or overwrite.
    kelpie.write_sequential(KEYS_PER_WRITER);
    sqlite.write_sequential(KEYS_PER_WRITER);

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args();
    bench_writes(&mut criterion, &kelpie, &mut sqlite);
    bench_reads(&mut criterion, &kelpie, &sqlite);
    criterion.final_summary();

    print_summary(&kelpie, &mut sqlite);
    kelpie.store.close();
}
