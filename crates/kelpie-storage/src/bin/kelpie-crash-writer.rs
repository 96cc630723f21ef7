//! `kelpie-crash-writer <data-dir> <seed>`: the victim of the SIGKILL crash
//! test (`tests/crash.rs`). Not a tool for users.
//!
//! It opens the embedded store in `<data-dir>`, prints `ready`, then runs
//! eight workers forever (so group-commit batches form), each printing one
//! line per acknowledged step, only after the commit returned `Ok`:
//!
//! - transaction worker `i` (actor `crash/a{i}`, `i < 4`): reads the
//!   actor's `count` c, writes `k0..k4` = N = 4c + i, `blob` = `"N;"`
//!   repeated (seeded length) and `count` = c + 1 in one transaction, then
//!   prints `ack txn N`. Each actor's transactions are sequential, so its
//!   values only grow and N names the actor (N % 4);
//! - journal worker `t` (actor `crash/j{t}`): appends the entry with
//!   sequence s, M = 4(s - 1) + t, idempotency key `op-{M}` and payload
//!   `"{M}"`, prints `ack append M`; then in one transaction increments
//!   `applied`, sets `last` = M and completes the entry with result
//!   `applied-{M}`, and prints `ack complete M`.
//!
//! It exits only when killed, or with status 1 and a message on stderr if
//! anything unexpected happens (an error, a duplicate, a wrong sequence).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::BoxFuture;
use kelpie_core::clock::SystemClock;
use kelpie_core::spawn::{SharedSpawner, Spawner, TaskControl, TaskExit, TaskHandle};
use kelpie_core::ActorId;
use kelpie_storage::journal::{AppendOutcome, Journal};
use kelpie_storage::{EmbeddedEngine, StorageError, Store, Transaction};

/// Actors written by transaction workers, and journal actors (one worker each).
const WORKERS_PER_KIND: u64 = 4;
/// State keys every transaction writes with the same value.
const TXN_KEYS: [&[u8]; 5] = [b"k0", b"k1", b"k2", b"k3", b"k4"];
/// Most repetitions of `"N;"` in the `blob` key.
const BLOB_REPEATS_MAX: u64 = 512;

/// Spawns every task on its own OS thread, driven by `block_on`.
///
/// This crate has no tokio dependency outside its tests (and a binary cannot
/// use dev-dependencies), so the writer brings this small seam instead.
/// Tasks cannot be aborted: the writer never stops anything but by dying.
struct ThreadSpawner;

struct ThreadTask {
    exit: oneshot::Receiver<TaskExit>,
}

impl TaskControl for ThreadTask {
    fn abort(&self) {}

    fn join(self: Box<Self>) -> BoxFuture<'static, TaskExit> {
        Box::pin(async move {
            self.exit.await.unwrap_or(TaskExit::Panicked {
                message: "thread ended without reporting".to_string(),
            })
        })
    }
}

fn run_on_thread(name: &'static str, work: Box<dyn FnOnce() + Send>) -> TaskHandle {
    let (sender, exit) = oneshot::channel();
    let started = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        work();
        let _ = sender.send(TaskExit::Completed);
    });
    if let Err(error) = started {
        fail(&format!("cannot start thread {name}: {error}"));
    }
    TaskHandle::new(Box::new(ThreadTask { exit }))
}

impl Spawner for ThreadSpawner {
    fn spawn(&self, name: &'static str, future: BoxFuture<'static, ()>) -> TaskHandle {
        run_on_thread(name, Box::new(move || futures::executor::block_on(future)))
    }

    fn spawn_blocking(&self, name: &'static str, work: Box<dyn FnOnce() + Send>) -> TaskHandle {
        run_on_thread(name, work)
    }
}

/// Reports `message` and exits with status 1: the test sees a writer that
/// died on its own instead of by its SIGKILL.
fn fail(message: &str) -> ! {
    eprintln!("kelpie-crash-writer: {message}");
    std::process::exit(1);
}

/// Prints one acknowledgement line with a single write, and flushes it.
fn ack(line: String) {
    let mut out = std::io::stdout().lock();
    let line = line + "\n";
    if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
        // The test closed its end: nobody is listening any more.
        std::process::exit(3);
    }
}

/// SplitMix64: small, seedable, good enough to vary value sizes.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn actor(kind: &str, index: u64) -> ActorId {
    ActorId::new("crash", format!("{kind}{index}")).unwrap_or_else(|error| fail(&format!("actor id: {error}")))
}

/// Reads a decimal counter written by this binary; absent is 0.
fn read_counter(txn: &mut Transaction, actor: &ActorId, key: &[u8]) -> Result<u64, String> {
    match txn.get(actor, key).map_err(|error| error.to_string())? {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("{actor} {:?} holds {bytes:?}", printable(key))),
    }
}

fn printable(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

async fn transaction_worker(store: Store, index: u64, seed: u64) -> Result<(), String> {
    let actor = actor("a", index);
    let mut rng = SplitMix64(seed ^ index.wrapping_mul(0x1000_0000_0000_0001));
    loop {
        let mut txn = store.begin().map_err(|error| error.to_string())?;
        let count = read_counter(&mut txn, &actor, b"count")?;
        let id = WORKERS_PER_KIND * count + index;
        let value = Bytes::from(id.to_string());
        for key in TXN_KEYS {
            txn.put(&actor, key, value.clone()).map_err(|error| error.to_string())?;
        }
        let repeats = 1 + rng.next() % BLOB_REPEATS_MAX;
        let blob = format!("{id};").repeat(repeats as usize);
        txn.put(&actor, b"blob", blob).map_err(|error| error.to_string())?;
        txn.put(&actor, b"count", (count + 1).to_string())
            .map_err(|error| error.to_string())?;
        txn.commit()
            .await
            .map_err(|error| format!("commit of txn {id}: {error}"))?;
        ack(format!("ack txn {id}"));
    }
}

async fn journal_worker(journal: Journal, index: u64) -> Result<(), String> {
    let actor = actor("j", index);
    // Sequences are dense from 1 and entries are never compacted here.
    let mut sequence = journal.entries(&actor).map_err(|error| error.to_string())?.len() as u64 + 1;
    loop {
        let op = WORKERS_PER_KIND * (sequence - 1) + index;
        let outcome = journal
            .append(&actor, Some(&format!("op-{op}")), op.to_string().into(), None)
            .await
            .map_err(|error| format!("append of op {op}: {error}"))?;
        let entry = match outcome {
            AppendOutcome::Appended(entry) => entry,
            duplicate @ AppendOutcome::Duplicate { .. } => {
                return Err(format!("append of op {op} was a duplicate: {duplicate:?}"))
            }
        };
        if entry.sequence != sequence {
            return Err(format!("op {op} got sequence {}, expected {sequence}", entry.sequence));
        }
        ack(format!("ack append {op}"));
        let mut txn = journal.store().begin().map_err(|error| error.to_string())?;
        let applied = read_counter(&mut txn, &actor, b"applied")?;
        txn.put(&actor, b"applied", (applied + 1).to_string())
            .map_err(|error| error.to_string())?;
        txn.put(&actor, b"last", op.to_string())
            .map_err(|error| error.to_string())?;
        journal
            .complete(&mut txn, &entry, format!("applied-{op}").into())
            .map_err(|error| error.to_string())?;
        txn.commit()
            .await
            .map_err(|error: StorageError| format!("completion of op {op}: {error}"))?;
        ack(format!("ack complete {op}"));
        sequence += 1;
    }
}

fn main() {
    // A panic on any thread (the committer included) must end the process,
    // never leave it silently stuck.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(1);
    }));

    let args: Vec<String> = std::env::args().collect();
    let (dir, seed) = match args.as_slice() {
        [_, dir, seed] => match seed.parse::<u64>() {
            Ok(seed) => (dir.clone(), seed),
            Err(error) => fail(&format!("seed {seed:?} is not a u64: {error}")),
        },
        _ => fail("usage: kelpie-crash-writer <data-dir> <seed>"),
    };
    let engine = EmbeddedEngine::open_dir(&dir).unwrap_or_else(|error| fail(&format!("open {dir}: {error}")));
    let spawner: SharedSpawner = Arc::new(ThreadSpawner);
    let store = Store::new(Arc::new(engine), spawner.clone());
    let journal = Journal::new(store.clone(), Arc::new(SystemClock::new()), Duration::from_secs(3600));
    ack("ready".to_string());

    let mut workers = Vec::new();
    for index in 0..WORKERS_PER_KIND {
        let store = store.clone();
        workers.push(spawner.spawn(
            "crash-txn-worker",
            Box::pin(async move {
                if let Err(message) = transaction_worker(store, index, seed).await {
                    fail(&message);
                }
            }),
        ));
        let journal = journal.clone();
        workers.push(spawner.spawn(
            "crash-journal-worker",
            Box::pin(async move {
                if let Err(message) = journal_worker(journal, index).await {
                    fail(&message);
                }
            }),
        ));
    }
    // Workers loop forever: this returns only if one of them ended.
    let joins = workers.into_iter().map(|worker| Box::pin(worker.join()));
    let (exit, _, _) = futures::executor::block_on(futures::future::select_all(joins));
    fail(&format!("a worker ended: {exit:?}"));
}
