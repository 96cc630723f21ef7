//! The storage engine, store and journal under storage faults, over many
//! seeds: `Durability`, `AtomicVisibility`, `SerializableIsolation` and
//! `ReplayIdempotent` after every event. `DST_SEEDS=k` for more seeds,
//! `DST_SEED=n` to replay one.

use kelpie_dst::scenarios::storage::{
    StorageScenario, ATOMIC_VISIBILITY, DURABILITY, REPLAY_IDEMPOTENT, SERIALIZABLE_ISOLATION,
};
use kelpie_dst::{seeds_from_env, FaultCounters, FaultKind, SeedGuard};

#[test]
fn storage_invariants_hold_under_storage_faults() {
    let seeds = seeds_from_env(5_000, 40).expect("valid DST_* variables");
    let scenario = StorageScenario::default();
    let mut faults = FaultCounters::default();
    let mut evaluations = 0;
    for seed in &seeds {
        let _guard = SeedGuard::new(*seed);
        match scenario.run(*seed) {
            Ok(report) => {
                faults.merge(&report.faults);
                for name in [DURABILITY, ATOMIC_VISIBILITY, SERIALIZABLE_ISOLATION, REPLAY_IDEMPOTENT] {
                    let count = report.invariant_evaluations.get(name).copied().unwrap_or(0);
                    assert_eq!(count, report.steps + 1, "{name} not evaluated after every step");
                    evaluations += count;
                }
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    println!(
        "{} seeds, {evaluations} invariant evaluations; fault effects: {faults}",
        seeds.len()
    );
    if seeds.len() >= 20 {
        for kind in [
            FaultKind::NodeCrash,
            FaultKind::DiskWriteError,
            FaultKind::DiskReadError,
            FaultKind::DiskLatency,
            FaultKind::FsyncLoss,
            FaultKind::TornWrite,
        ] {
            assert!(faults.get(kind) > 0, "{kind} never had an effect");
        }
    }
}
