//! The actor runtime on 3 nodes under every node-level fault, with clients
//! retrying idempotent invocations: single activation, fencing, graceful
//! deactivation and linearizable histories after every event, then a quiet
//! phase in which every actor must be served again.
//! `DST_SEEDS=k` for more seeds (CI runs 1,000 in release), `DST_SEED=n` to replay one.

use kelpie_dst::scenarios::runtime::{
    RuntimeScenario, GRACEFUL_DEACTIVATION, LINEARIZABLE, NO_RESURRECTION, NO_ZOMBIE_WRITE, SINGLE_ACTIVATION,
};
use kelpie_dst::{seeds_from_env, FaultCounters, FaultKind, SeedGuard};

#[test]
fn runtime_invariants_hold_and_every_actor_is_served_after_faults_stop() {
    let seeds = seeds_from_env(20_000, 30).expect("valid DST_* variables");
    let scenario = RuntimeScenario::default();
    let mut faults = FaultCounters::default();
    let mut acknowledged = 0;
    for seed in &seeds {
        let _guard = SeedGuard::new(*seed);
        let (report, coverage) = scenario.run(*seed).unwrap_or_else(|failure| panic!("{failure}"));
        faults.merge(&report.faults);
        acknowledged += coverage.acknowledged;
        for name in [
            SINGLE_ACTIVATION,
            NO_ZOMBIE_WRITE,
            GRACEFUL_DEACTIVATION,
            NO_RESURRECTION,
            LINEARIZABLE,
        ] {
            assert_eq!(
                report.invariant_evaluations.get(name).copied(),
                Some(report.steps + 1),
                "{name}"
            );
        }
        assert_eq!(
            coverage.served_after_quiet, 4,
            "seed {seed}: not every actor served after the faults stopped"
        );
    }
    println!(
        "{} seeds, {acknowledged} acknowledged invocations; fault effects: {faults}",
        seeds.len()
    );
    if seeds.len() >= 20 {
        for kind in [
            FaultKind::NodePause,
            FaultKind::NodeCrash,
            FaultKind::ClockSkew,
            FaultKind::Partition,
        ] {
            assert!(faults.get(kind) > 0, "{kind} never had an effect");
        }
    }
}

/// `NoResurrection` can fail: with the planted defect (a node's counter
/// actor resumes a later activation from the state its earlier activation
/// held), the first failing seed names `NoResurrection`, and replays.
#[test]
fn a_planted_resurrection_is_caught_as_no_resurrection() {
    let scenario = RuntimeScenario {
        plant_resurrection: true,
        ..RuntimeScenario::default()
    };
    for seed in 0..50 {
        let Err(failure) = scenario.run(seed) else { continue };
        println!("planted resurrection caught:\n{failure}");
        assert_eq!(failure.invariant(), Some(NO_RESURRECTION), "{failure}");
        let replay = scenario.run(seed).expect_err("the seed reproduces the failure");
        assert_eq!((replay.step, replay.invariant()), (failure.step, failure.invariant()));
        return;
    }
    panic!("the planted resurrection was not caught in 50 seeds");
}
