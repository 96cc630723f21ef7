//! The heartbeat service under every fault in the catalogue, over many seeds.
//!
//! `DST_SEEDS=k` runs k seeds (default 200), `DST_SEED=n` replays one. With
//! the bug switch `bug-incarnation-no-fsync` this test fails, naming the
//! invariant `IncarnationMonotonic`, the seed and the step.

use kelpie_dst::scenarios::heartbeat::{HeartbeatCoverage, HeartbeatScenario};
use kelpie_dst::{seeds_from_env, FaultKind, SeedGuard};

#[test]
fn heartbeat_invariants_hold_under_all_faults() {
    let seeds = seeds_from_env(1_000, 200).expect("valid DST_* variables");
    let scenario = HeartbeatScenario::default();
    let mut total = HeartbeatCoverage::default();
    let mut faults = kelpie_dst::FaultCounters::default();
    for seed in &seeds {
        let _guard = SeedGuard::new(*seed);
        match scenario.run(*seed) {
            Ok((report, coverage)) => {
                assert_eq!(report.stop, kelpie_dst::StopReason::TimeLimit, "seed {seed}");
                total.suspicions += coverage.suspicions;
                total.restarts += coverage.restarts;
                total.registration_conflicts += coverage.registration_conflicts;
                total.crashed_pairs_checked += coverage.crashed_pairs_checked;
                faults.merge(&report.faults);
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    println!("{} seeds: {total:?}; fault effects: {faults}", seeds.len());
    if seeds.len() >= 20 {
        // The interesting states were reached, not only the quiet ones.
        assert!(total.restarts > 0, "no node ever restarted");
        assert!(total.suspicions > 0, "no peer was ever suspected");
        assert!(
            total.crashed_pairs_checked > 0,
            "CrashedNodeSuspected never had a pair to check"
        );
        for kind in [
            FaultKind::NodeCrash,
            FaultKind::NodePause,
            FaultKind::ClockSkew,
            FaultKind::Partition,
        ] {
            assert!(faults.get(kind) > 0, "{kind} never had an effect");
        }
    }
}
