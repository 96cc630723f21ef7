//! Real crashes: SIGKILL `kelpie-crash-writer` mid-flight, reopen its data
//! directory, and check DESIGN.md G2–G4 against what it acknowledged.
//!
//! One directory is reused for every iteration, so each run also starts
//! from (and its checks also cover) the recovery of every earlier crash.
//! The writer's workload and ack lines are described in its module docs.
//!
//! `CRASH_ITERATIONS=n` runs n iterations (default 50); `CRASH_SEED=s`
//! repeats a run's kill schedule (the OS scheduling is never repeatable).

#![cfg(unix)]

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kelpie_core::clock::SystemClock;
use kelpie_core::spawn::TokioSpawner;
use kelpie_core::ActorId;
use kelpie_storage::journal::{EntryStatus, Journal, JournalEntry, RecoveryStats};
use kelpie_storage::{EmbeddedEngine, StorageError, Store, Transaction};

const ITERATIONS_DEFAULT: u64 = 50;
/// Transaction actors `crash/a{i}` and journal actors `crash/j{t}`.
const WORKERS_PER_KIND: u64 = 4;
const TXN_KEYS: [&[u8]; 5] = [b"k0", b"k1", b"k2", b"k3", b"k4"];
const KILL_DELAY_MS_MIN: u64 = 5;
const KILL_DELAY_MS_MAX: u64 = 80;
/// One iteration in this many kills counting from the spawn instead of from
/// `ready`, so some kills land while the database is opening (and
/// repairing the previous crash).
const KILL_DURING_OPEN_EVERY: u64 = 5;
/// Longest delay after the spawn for those kills: opening takes a few ms.
const KILL_DURING_OPEN_DELAY_MS_MAX: u64 = 6;
const SIGKILL: i32 = 9;

/// SplitMix64: the seeded kill schedule.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|error| panic!("{name}={text:?} is not a u64: {error}")),
    )
}

fn txn_actor(index: u64) -> ActorId {
    ActorId::new("crash", format!("a{index}")).expect("valid id")
}

fn journal_actor(index: u64) -> ActorId {
    ActorId::new("crash", format!("j{index}")).expect("valid id")
}

/// When the writer is killed.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// `delay_ms` after it printed `ready`.
    AfterReady { delay_ms: u64 },
    /// `delay_ms` after it was spawned (possibly before `ready`).
    AfterSpawn { delay_ms: u64 },
}

/// What one writer run acknowledged, per actor index, in printed order.
#[derive(Debug, Default)]
struct Acks {
    ready: bool,
    txns: BTreeMap<u64, Vec<u64>>,
    appends: BTreeMap<u64, Vec<u64>>,
    completes: BTreeMap<u64, Vec<u64>>,
    lines: usize,
}

impl Acks {
    fn parse(output: &str) -> Result<Self, String> {
        let mut acks = Acks::default();
        // A line is written with one small write(2), so a torn line cannot
        // happen; one without its newline would not be an acknowledgement.
        let complete_lines = match output.rfind('\n') {
            Some(end) => &output[..end],
            None => "",
        };
        for line in complete_lines.lines() {
            acks.lines += 1;
            if line == "ready" {
                acks.ready = true;
                continue;
            }
            let (kind, id) = line
                .strip_prefix("ack ")
                .and_then(|rest| rest.split_once(' '))
                .ok_or_else(|| format!("unexpected writer line {line:?}"))?;
            let id: u64 = id.parse().map_err(|_| format!("unexpected writer line {line:?}"))?;
            let list = match kind {
                "txn" => &mut acks.txns,
                "append" => &mut acks.appends,
                "complete" => &mut acks.completes,
                _ => return Err(format!("unexpected writer line {line:?}")),
            };
            list.entry(id % WORKERS_PER_KIND).or_default().push(id);
        }
        Ok(acks)
    }
}

/// Runs the writer on `dir` and SIGKILLs it at `kill`; returns its acks.
fn run_writer(dir: &Path, seed: u64, kill: KillPoint) -> Result<Acks, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kelpie-crash-writer"))
        .arg(dir)
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("spawn writer: {error}"))?;
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut output = String::new();
    match kill {
        KillPoint::AfterReady { delay_ms } => {
            // Blocks until the database is open; EOF if the writer died.
            stdout
                .read_line(&mut output)
                .map_err(|error| format!("read writer stdout: {error}"))?;
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        KillPoint::AfterSpawn { delay_ms } => {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
    }
    // Sends SIGKILL on Unix.
    child.kill().map_err(|error| format!("kill writer: {error}"))?;
    let status = child.wait().map_err(|error| format!("wait for writer: {error}"))?;
    stdout
        .read_to_string(&mut output)
        .map_err(|error| format!("read writer stdout: {error}"))?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .map_err(|error| format!("read writer stderr: {error}"))?;
    }
    if status.signal() != Some(SIGKILL) {
        return Err(format!(
            "the writer ended on its own ({status}) before the kill; stderr:\n{stderr}"
        ));
    }
    let acks = Acks::parse(&output)?;
    if matches!(kill, KillPoint::AfterReady { .. }) && !acks.ready {
        return Err(format!("the writer never printed ready; stderr:\n{stderr}"));
    }
    Ok(acks)
}

/// What the test knows survived earlier iterations.
#[derive(Debug, Default)]
struct Model {
    /// The value of `k0..k4` of each transaction actor.
    txn_values: BTreeMap<u64, u64>,
    /// Every journal entry of each journal actor, all completed.
    journal_entries: BTreeMap<u64, Vec<JournalEntry>>,
}

/// Counts over the whole test, for the summary.
#[derive(Debug, Default)]
struct Totals {
    acks: usize,
    replayed: u64,
    kills_before_ready: u64,
}

/// The id after `id` for transaction actor `index`: its first is `index`.
fn next_txn_id(index: u64, id: Option<u64>) -> u64 {
    id.map_or(index, |id| id + WORKERS_PER_KIND)
}

fn read_text(txn: &mut Transaction, actor: &ActorId, key: &[u8]) -> Result<Option<String>, String> {
    match txn.get(actor, key).map_err(|error| error.to_string())? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| format!("{actor} {key:?} holds non-UTF-8 {bytes:?}")),
    }
}

fn read_number(txn: &mut Transaction, actor: &ActorId, key: &[u8]) -> Result<Option<u64>, String> {
    match read_text(txn, actor, key)? {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{actor} {:?} holds {text:?}", String::from_utf8_lossy(key))),
    }
}

/// G2 + G3 for transaction actor `index`: every acknowledged transaction
/// survived and none is partly visible.
fn check_transactions(store: &Store, index: u64, acked: &[u64], model: &mut Model) -> Result<(), String> {
    let actor = txn_actor(index);
    let previous = model.txn_values.get(&index).copied();
    let mut expected = previous;
    for &id in acked {
        let next = next_txn_id(index, expected);
        if id != next {
            return Err(format!(
                "{actor}: acknowledged txn {id}, expected {next} after {expected:?} \
                 (acked this run: {acked:?}); the writer resumed from wrong state"
            ));
        }
        expected = Some(id);
    }
    let mut txn = store.begin().map_err(|error| error.to_string())?;
    let mut values = Vec::new();
    for key in TXN_KEYS {
        values.push(read_number(&mut txn, &actor, key)?);
    }
    let count = read_number(&mut txn, &actor, b"count")?;
    let blob = read_text(&mut txn, &actor, b"blob")?;
    let state = format!(
        "k0..k4 {values:?}, count {count:?}, blob {:?}",
        blob.as_ref().map(|b| &b[..b.len().min(40)])
    );
    if values.iter().any(|value| *value != values[0]) {
        return Err(format!("{actor}: partial transaction visible: {state}"));
    }
    let value = values[0];
    // At most one transaction per actor was in flight at the kill: it may
    // or may not have landed, but nothing older may be missing.
    let in_flight = next_txn_id(index, expected);
    if value != expected && value != Some(in_flight) {
        return Err(format!(
            "{actor}: holds {value:?}, expected the last acknowledged {expected:?} \
             or the in-flight {in_flight} (before this run {previous:?}, acked {acked:?}); {state}"
        ));
    }
    let expected_count = value.map(|id| (id - index) / WORKERS_PER_KIND + 1);
    let expected_blob_unit = value.map(|id| format!("{id};"));
    let blob_ok = match (&blob, &expected_blob_unit) {
        (None, None) => true,
        (Some(blob), Some(unit)) => {
            !blob.is_empty() && blob.len() % unit.len() == 0 && *blob == unit.repeat(blob.len() / unit.len())
        }
        _ => false,
    };
    if count != expected_count || !blob_ok {
        return Err(format!(
            "{actor}: partial transaction visible: count {count:?} (expected {expected_count:?}), {state}"
        ));
    }
    if let Some(value) = value {
        model.txn_values.insert(index, value);
    }
    Ok(())
}

fn op_of(index: u64, sequence: u64) -> u64 {
    WORKERS_PER_KIND * (sequence - 1) + index
}

/// State of journal actor `index` after the crash, before recovery: G2 for
/// acknowledged appends and completions, G3 for completions. Returns the
/// pending entries (at most the last one).
fn check_journal_before_recovery(
    journal: &Journal,
    index: u64,
    appends: &[u64],
    completes: &[u64],
    model: &Model,
) -> Result<Vec<JournalEntry>, String> {
    let actor = journal_actor(index);
    let entries = journal.entries(&actor).map_err(|error| error.to_string())?;
    let previous: &[JournalEntry] = model.journal_entries.get(&index).map_or(&[], Vec::as_slice);
    let summary = || {
        format!(
            "{} entries (statuses {:?}); before this run {}; acked appends {appends:?}, completes {completes:?}",
            entries.len(),
            entries
                .iter()
                .map(|e| match &e.status {
                    EntryStatus::Pending => "pending".to_string(),
                    EntryStatus::Completed { result } => String::from_utf8_lossy(result).into_owned(),
                })
                .collect::<Vec<_>>(),
            previous.len()
        )
    };
    if entries.len() < previous.len() || entries[..previous.len()] != *previous {
        return Err(format!(
            "{actor}: entries from earlier runs changed or vanished: {}",
            summary()
        ));
    }
    for (position, entry) in entries.iter().enumerate() {
        let sequence = position as u64 + 1;
        let op = op_of(index, sequence);
        let expected_key = format!("op-{op}");
        if entry.sequence != sequence
            || entry.payload != op.to_string()
            || entry.idempotency_key.as_deref() != Some(expected_key.as_str())
            || entry.fencing_token != 0
        {
            return Err(format!("{actor}: entry #{sequence} is not op {op}: {entry:?}"));
        }
    }
    // Acks are sequential per actor: appends continue from the last entry of
    // earlier runs, and every append but the newest was completed before
    // the next one began.
    for (offset, &op) in appends.iter().enumerate() {
        let expected = op_of(index, previous.len() as u64 + 1 + offset as u64);
        if op != expected {
            return Err(format!(
                "{actor}: acked append {op}, expected {expected}: {}",
                summary()
            ));
        }
    }
    let completes_ok =
        completes == appends || (completes.len() + 1 == appends.len() && completes == &appends[..completes.len()]);
    if !completes_ok {
        return Err(format!("{actor}: completions out of step with appends: {}", summary()));
    }
    let acked_len = previous.len() + appends.len();
    if entries.len() != acked_len && entries.len() != acked_len + 1 {
        return Err(format!(
            "{actor}: {} entries, expected {acked_len} acknowledged or one more in flight: {}",
            entries.len(),
            summary()
        ));
    }
    for &op in appends {
        let sequence = (op - index) / WORKERS_PER_KIND + 1;
        let found = journal
            .lookup(&actor, &format!("op-{op}"))
            .map_err(|error| error.to_string())?;
        if found.as_ref().map(|(found, _)| *found) != Some(sequence) {
            return Err(format!(
                "{actor}: acked append op-{op} looks up as {found:?}: {}",
                summary()
            ));
        }
    }
    for &op in completes {
        let sequence = (op - index) / WORKERS_PER_KIND + 1;
        let status = EntryStatus::Completed {
            result: Bytes::from(format!("applied-{op}")),
        };
        let found = journal
            .lookup(&actor, &format!("op-{op}"))
            .map_err(|error| error.to_string())?;
        let entry_status = &entries[sequence as usize - 1].status;
        if found != Some((sequence, status.clone())) || *entry_status != status {
            return Err(format!(
                "{actor}: acked completion op-{op} looks up as {found:?}, entry status {entry_status:?}: {}",
                summary()
            ));
        }
    }
    let pending: Vec<JournalEntry> = entries
        .iter()
        .filter(|entry| entry.status == EntryStatus::Pending)
        .cloned()
        .collect();
    let pending_ok = match pending.as_slice() {
        [] => true,
        [only] => only.sequence == entries.len() as u64 && only.sequence > previous.len() as u64,
        _ => false,
    };
    if !pending_ok {
        return Err(format!("{actor}: pending entries other than the newest: {}", summary()));
    }
    for entry in &entries[previous.len()..] {
        if let EntryStatus::Completed { result } = &entry.status {
            let expected = format!("applied-{}", op_of(index, entry.sequence));
            if *result != expected {
                return Err(format!(
                    "{actor}: entry #{} completed with {result:?}, expected {expected}",
                    entry.sequence
                ));
            }
        }
    }
    check_applied(journal.store(), index, &entries)?;
    Ok(pending)
}

/// G3/G4: `applied` counts exactly the completed entries, and `last` is the
/// newest completed op.
fn check_applied(store: &Store, index: u64, entries: &[JournalEntry]) -> Result<(), String> {
    let actor = journal_actor(index);
    let completed: Vec<&JournalEntry> = entries
        .iter()
        .filter(|entry| matches!(entry.status, EntryStatus::Completed { .. }))
        .collect();
    let mut txn = store.begin().map_err(|error| error.to_string())?;
    let applied = read_number(&mut txn, &actor, b"applied")?.unwrap_or(0);
    let last = read_number(&mut txn, &actor, b"last")?;
    let expected_last = completed.last().map(|entry| op_of(index, entry.sequence));
    if applied != completed.len() as u64 || last != expected_last {
        return Err(format!(
            "{actor}: applied {applied} and last {last:?}, but {} of {} entries are completed (newest op {expected_last:?})",
            completed.len(),
            entries.len()
        ));
    }
    Ok(())
}

/// The recovery callback's effect: what the writer would have done.
async fn replay_entry(journal: Journal, entry: JournalEntry) -> Result<(), StorageError> {
    let op = op_of(
        entry.actor.key()[1..].parse().expect("journal actor crash/j{t}"),
        entry.sequence,
    );
    let mut txn = journal.store().begin()?;
    let applied: u64 = txn
        .get(&entry.actor, b"applied")?
        .map_or(0, |bytes| String::from_utf8_lossy(&bytes).parse().expect("a counter"));
    txn.put(&entry.actor, b"applied", (applied + 1).to_string())?;
    txn.put(&entry.actor, b"last", op.to_string())?;
    journal.complete(&mut txn, &entry, Bytes::from(format!("replayed-{op}")))?;
    txn.commit().await?;
    Ok(())
}

async fn recover(journal: &Journal) -> Result<(RecoveryStats, Vec<(ActorId, u64)>), String> {
    let calls: Arc<Mutex<Vec<(ActorId, u64)>>> = Arc::default();
    let stats = journal
        .recover::<StorageError>(&mut |entry| {
            let journal = journal.clone();
            calls
                .lock()
                .expect("no panics while held")
                .push((entry.actor.clone(), entry.sequence));
            Box::pin(replay_entry(journal, entry))
        })
        .await
        .map_err(|error| format!("recover: {error}"))?;
    let calls = calls.lock().expect("no panics while held").clone();
    Ok((stats, calls))
}

/// Reopens `dir` and checks everything against `acks` and `model`.
async fn check(dir: &Path, acks: &Acks, model: &mut Model, totals: &mut Totals) -> Result<(), String> {
    let engine = EmbeddedEngine::open_dir(dir).map_err(|error| format!("reopen: {error}"))?;
    let store = Store::new(
        Arc::new(engine),
        Arc::new(TokioSpawner::current().expect("in a runtime")),
    );
    let journal = Journal::new(store.clone(), Arc::new(SystemClock::new()), Duration::from_secs(3600));
    let none = Vec::new();
    for index in 0..WORKERS_PER_KIND {
        check_transactions(&store, index, acks.txns.get(&index).unwrap_or(&none), model)?;
    }
    let mut pending = Vec::new();
    for index in 0..WORKERS_PER_KIND {
        pending.extend(check_journal_before_recovery(
            &journal,
            index,
            acks.appends.get(&index).unwrap_or(&none),
            acks.completes.get(&index).unwrap_or(&none),
            model,
        )?);
    }

    // G4: every pending entry replayed exactly once, in order; then none.
    let expected_calls: Vec<(ActorId, u64)> = pending
        .iter()
        .map(|entry| (entry.actor.clone(), entry.sequence))
        .collect();
    let (stats, calls) = recover(&journal).await?;
    let expected_stats = RecoveryStats {
        actors: pending.len() as u64,
        replayed: pending.len() as u64,
    };
    if calls != expected_calls || stats != expected_stats {
        return Err(format!(
            "recovery replayed {calls:?} ({stats:?}), expected the pending {expected_calls:?} ({expected_stats:?})"
        ));
    }
    totals.replayed += stats.replayed;
    for index in 0..WORKERS_PER_KIND {
        let actor = journal_actor(index);
        let still_pending = journal.pending(&actor).map_err(|error| error.to_string())?;
        if !still_pending.is_empty() {
            return Err(format!("{actor}: still pending after recovery: {still_pending:?}"));
        }
        let entries = journal.entries(&actor).map_err(|error| error.to_string())?;
        check_applied(&store, index, &entries)?;
        for entry in pending.iter().filter(|entry| entry.actor == actor) {
            let op = op_of(index, entry.sequence);
            let expected = Some((
                entry.sequence,
                EntryStatus::Completed {
                    result: Bytes::from(format!("replayed-{op}")),
                },
            ));
            let found = journal
                .lookup(&actor, &format!("op-{op}"))
                .map_err(|error| error.to_string())?;
            if found != expected {
                return Err(format!(
                    "{actor}: replayed op-{op} looks up as {found:?}, expected {expected:?}"
                ));
            }
        }
        model.journal_entries.insert(index, entries);
    }
    let (stats, calls) = recover(&journal).await?;
    if stats != RecoveryStats::default() || !calls.is_empty() {
        return Err(format!(
            "a second recovery replayed {calls:?} ({stats:?}), expected nothing"
        ));
    }
    store.close();
    Ok(())
}

/// Reopens, checks and recovers on a runtime of its own; dropping the
/// runtime drops the store's committer and so releases the database lock
/// before the next writer opens it.
fn check_on_fresh_runtime(dir: &Path, acks: &Acks, model: &mut Model, totals: &mut Totals) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("runtime: {error}"))?;
    let result = runtime.block_on(check(dir, acks, model, totals));
    drop(runtime);
    result
}

#[test]
fn sigkilled_writer_loses_no_acknowledged_commit_and_replays_pending_entries_once() {
    let seed =
        env_u64("CRASH_SEED").unwrap_or_else(|| std::collections::hash_map::RandomState::new().build_hasher().finish());
    let iterations = env_u64("CRASH_ITERATIONS").unwrap_or(ITERATIONS_DEFAULT);
    println!("crash test: CRASH_SEED={seed} CRASH_ITERATIONS={iterations}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = SplitMix64(seed);
    let mut model = Model::default();
    let mut totals = Totals::default();
    for iteration in 0..iterations {
        let kill = if rng.next().is_multiple_of(KILL_DURING_OPEN_EVERY) {
            KillPoint::AfterSpawn {
                delay_ms: rng.between(0, KILL_DURING_OPEN_DELAY_MS_MAX),
            }
        } else {
            KillPoint::AfterReady {
                delay_ms: rng.between(KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX),
            }
        };
        let writer_seed = rng.next();
        let outcome = run_writer(dir.path(), writer_seed, kill).and_then(|acks| {
            totals.acks += acks.lines.saturating_sub(usize::from(acks.ready));
            if !acks.ready {
                totals.kills_before_ready += 1;
            }
            check_on_fresh_runtime(dir.path(), &acks, &mut model, &mut totals)
                .map_err(|error| format!("{error}\nacks of this run: {acks:?}"))
        });
        if let Err(error) = outcome {
            let kept = dir.keep();
            panic!(
                "CRASH_SEED={seed} iteration {iteration} (kill {kill:?}, writer seed {writer_seed}); \
                 data kept in {}:\n{error}",
                kept.display()
            );
        }
    }
    println!(
        "crash test: {iterations} kills ({} before ready), {} acknowledgements checked, {} pending entries replayed",
        totals.kills_before_ready, totals.acks, totals.replayed
    );
}
