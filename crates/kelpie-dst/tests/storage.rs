//! The storage engine, store and journal under storage faults, over many
//! seeds: `Durability`, `AtomicVisibility`, `SerializableIsolation` and
//! `ReplayIdempotent`, `EffectsInOrder` after every event. `DST_SEEDS=k` for more seeds,
//! `DST_SEED=n` to replay one.

use kelpie_dst::scenarios::storage::{
    StorageScenario, ATOMIC_VISIBILITY, DURABILITY, EFFECTS_IN_ORDER, REPLAY_IDEMPOTENT, SERIALIZABLE_ISOLATION,
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
                for name in [
                    DURABILITY,
                    ATOMIC_VISIBILITY,
                    SERIALIZABLE_ISOLATION,
                    REPLAY_IDEMPOTENT,
                    EFFECTS_IN_ORDER,
                ] {
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

/// `EffectsInOrder` can fail: with the planted defect (the journal client
/// applies a later entry before an earlier one), the first failing seed
/// names `EffectsInOrder`, and replays.
#[test]
fn a_planted_reorder_is_caught_as_effects_in_order() {
    let scenario = StorageScenario {
        plant_reorder: true,
        ..StorageScenario::default()
    };
    for seed in 0..20 {
        let Err(failure) = scenario.run(seed) else { continue };
        println!("planted reorder caught:\n{failure}");
        assert_eq!(failure.invariant(), Some(EFFECTS_IN_ORDER), "{failure}");
        let replay = scenario.run(seed).expect_err("the seed reproduces the failure");
        assert_eq!((replay.step, replay.invariant()), (failure.step, failure.invariant()));
        return;
    }
    panic!("the planted reorder was not caught in 20 seeds");
}
