//! No dead fault types: every fault in the catalogue names its consumer and,
//! run against production-style workloads, changes behaviour at least once
//! (its effect counter is above zero).
//!
//! Three workloads share the job: the heartbeat service (network, clocks,
//! pauses, crashes, partitions, coordination), the storage scenario (redb,
//! store and journal on the simulated disk), and a "scribbler" that appends
//! records to a file, syncing only every few writes, and increments a
//! counter in the coordination store with compare-and-set. The scribbler also
//! checks the simulated disk's promise: every byte it saw synced is still
//! there after a crash (`SyncedWritesSurvive`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kelpie_core::coordination::{Compare, Txn, TxnOp};
use kelpie_core::NodeEnv;
use kelpie_dst::scenarios::heartbeat::HeartbeatScenario;
use kelpie_dst::scenarios::ownership::OwnershipScenario;
use kelpie_dst::scenarios::storage::StorageScenario;
use kelpie_dst::{FaultConfig, FaultCounters, FaultKind, SeedGuard, Simulation};

const RECORD_BYTES: usize = 16;

/// Durable contents each node saw synced, kept outside the nodes so it
/// survives their crashes (ghost state for the invariant).
type Ghost = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

struct Scribbler {
    violation: Mutex<Option<String>>,
}

impl Scribbler {
    fn start(env: NodeEnv, ghost: Ghost) -> Arc<Scribbler> {
        let scribbler = Arc::new(Scribbler {
            violation: Mutex::new(None),
        });
        let me = scribbler.clone();
        let _task = env
            .spawner
            .clone()
            .spawn("scribbler", Box::pin(async move { me.run(env, ghost).await }));
        scribbler
    }

    async fn run(self: Arc<Self>, env: NodeEnv, ghost: Ghost) {
        let node = env.node_id.to_string();
        let expected = ghost
            .lock()
            .expect("not poisoned")
            .get(&node)
            .cloned()
            .unwrap_or_default();
        let file = loop {
            match env.disk.open("scribble") {
                Ok(file) => break file,
                Err(_) => env.clock.sleep(Duration::from_millis(5)).await,
            }
        };
        // Check the previous incarnation's synced bytes survived the crash.
        let on_disk = loop {
            let len = match file.len() {
                Ok(len) => usize::try_from(len).unwrap_or(0),
                Err(_) => continue,
            };
            match file.read(0, len) {
                Ok(bytes) => break bytes,
                Err(_) => env.clock.sleep(Duration::from_millis(5)).await,
            }
        };
        if on_disk.len() < expected.len() || on_disk[..expected.len()] != expected[..] {
            *self.violation.lock().expect("not poisoned") = Some(format!(
                "{node}: {} synced bytes not intact after restart",
                expected.len()
            ));
        }
        let mut cursor = expected.len() as u64;
        let mut written = expected;
        let mut sequence = 0u64;
        loop {
            sequence += 1;
            let record = [sequence.to_le_bytes(), env.rng.next_u64().to_le_bytes()].concat();
            if file.write(cursor, &record).is_ok() {
                cursor += RECORD_BYTES as u64;
                written.extend_from_slice(&record);
            }
            if sequence.is_multiple_of(4) && file.sync_data().is_ok() {
                ghost
                    .lock()
                    .expect("not poisoned")
                    .insert(node.clone(), written.clone());
            }
            if cursor >= RECORD_BYTES as u64 {
                let _ = file.read(cursor - RECORD_BYTES as u64, RECORD_BYTES);
            }
            self.bump_counter(&env).await;
            env.clock.sleep(Duration::from_millis(3)).await;
        }
    }

    async fn bump_counter(&self, env: &NodeEnv) {
        let Ok(current) = env.coordination.get("counter").await else {
            return;
        };
        let (guard, value) = match current {
            Some(kv) => {
                let value: u64 = std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .unwrap_or(0);
                (Compare::mod_revision_is("counter", kv.mod_revision), value + 1)
            }
            None => (Compare::missing("counter"), 1),
        };
        let _ = env
            .coordination
            .txn(Txn {
                compares: vec![guard],
                success: vec![TxnOp::Put {
                    key: "counter".into(),
                    value: Bytes::from(value.to_string()),
                    lease: None,
                }],
                failure: vec![],
            })
            .await;
    }
}

fn scribbler_effects(seed: u64) -> FaultCounters {
    let ghost: Ghost = Arc::new(Mutex::new(BTreeMap::new()));
    let faults = FaultConfig::all_moderate()
        .with(FaultKind::NodeCrash, 0.05)
        .with(FaultKind::ConcurrentConflict, 0.2);
    let report = Simulation::new(seed)
        .nodes(3, move |env| Scribbler::start(env, ghost.clone()))
        .faults(faults)
        .max_virtual_time(Duration::from_secs(10))
        .invariant("SyncedWritesSurvive", |view| {
            for node in view.nodes {
                if let Some(violation) = node
                    .state
                    .as_ref()
                    .and_then(|s| s.violation.lock().expect("not poisoned").clone())
                {
                    return Err(violation);
                }
            }
            Ok(())
        })
        .run();
    match report {
        Ok(report) => report.faults,
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn every_fault_type_names_a_consumer() {
    for kind in FaultKind::ALL {
        let consumer = kind.consumer();
        assert!(!consumer.is_empty(), "{kind} has no consumer");
        assert!(
            consumer.contains("::"),
            "{kind}: consumer {consumer:?} is not a code path"
        );
    }
}

#[test]
fn every_fault_type_has_an_effect() {
    let mut total = FaultCounters::default();
    for seed in 0..5 {
        let _guard = SeedGuard::new(seed);
        total.merge(&scribbler_effects(seed));
        match HeartbeatScenario::default().run(seed) {
            Ok((report, _)) => total.merge(&report.faults),
            Err(failure) => panic!("{failure}"),
        }
        match StorageScenario::default().run(seed) {
            Ok(report) => total.merge(&report.faults),
            Err(failure) => panic!("{failure}"),
        }
        match OwnershipScenario::default().run(seed) {
            Ok((report, _)) => total.merge(&report.faults),
            Err(failure) => panic!("{failure}"),
        }
    }
    println!("fault effects over 5 seeds: {total}");
    let dead: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|kind| total.get(*kind) == 0)
        .collect();
    assert_eq!(dead, Vec::<FaultKind>::new(), "fault types that never had an effect");
}

#[test]
fn a_disabled_fault_never_fires() {
    let faults = FaultConfig::all_moderate().with(FaultKind::MessageDrop, 0.0);
    let scenario = HeartbeatScenario {
        faults,
        ..HeartbeatScenario::default()
    };
    let (report, _) = scenario.run(3).expect("passes");
    assert_eq!(report.faults.get(FaultKind::MessageDrop), 0);
    assert!(report.faults.get(FaultKind::MessageDuplicate) > 0);
}
