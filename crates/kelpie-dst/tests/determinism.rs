//! The determinism gate: one seed, one run. A non-trivial workload (3+
//! nodes, timers, messages, coordination requests, disk writes and every
//! fault type) run twice with the same seed must produce the same trace
//! hash; different seeds must produce different hashes.
//!
//! `DST_SEED=n cargo test -p kelpie-dst determinism` checks seed `n`.

use kelpie_dst::scenarios::heartbeat::HeartbeatScenario;
use kelpie_dst::{seeds_from_env, SeedGuard};

fn hash_of(seed: u64) -> (String, u64) {
    let scenario = HeartbeatScenario {
        nodes: 4,
        keep_trace: true,
        ..HeartbeatScenario::default()
    };
    match scenario.run(seed) {
        Ok((report, _)) => {
            let effects: u64 = report.faults.all().iter().map(|(_, count)| count).sum();
            assert!(effects > 0, "seed {seed}: no fault had an effect");
            (report.trace_hash, report.steps)
        }
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn determinism_same_seed_same_trace_hash() {
    let seeds = seeds_from_env(42, 1).expect("valid DST_* variables");
    for seed in seeds {
        let _guard = SeedGuard::new(seed);
        let (first, steps) = hash_of(seed);
        let (second, steps_again) = hash_of(seed);
        println!("seed {seed}: trace hash: {first} ({steps} steps)");
        assert_eq!(first, second, "seed {seed} produced two different runs");
        assert_eq!(steps, steps_again);
        assert!(steps > 1_000, "workload too small to mean anything: {steps} steps");
        let (other, _) = hash_of(seed.wrapping_add(1));
        assert_ne!(
            first,
            other,
            "seeds {seed} and {} gave the same run",
            seed.wrapping_add(1)
        );
    }
}

#[test]
fn determinism_whole_trace_is_identical_event_by_event() {
    let scenario = HeartbeatScenario {
        keep_trace: true,
        ..HeartbeatScenario::default()
    };
    let first = scenario.run(7).expect("seed 7 passes").0;
    let second = scenario.run(7).expect("seed 7 passes").0;
    let (first, second) = (first.trace.expect("kept"), second.trace.expect("kept"));
    assert_eq!(first.len(), second.len());
    if let Some(index) = first.iter().zip(&second).position(|(a, b)| a != b) {
        panic!(
            "runs diverge at event {index}: {:?} vs {:?}",
            first[index], second[index]
        );
    }
}

#[test]
fn determinism_storage_scenario_same_seed_same_trace_hash() {
    let seeds = seeds_from_env(42, 1).expect("valid DST_* variables");
    let scenario = kelpie_dst::scenarios::storage::StorageScenario::default();
    for seed in seeds {
        let _guard = SeedGuard::new(seed);
        let first = scenario.run(seed).unwrap_or_else(|failure| panic!("{failure}"));
        let second = scenario.run(seed).unwrap_or_else(|failure| panic!("{failure}"));
        println!("storage seed {seed}: trace hash: {}", first.trace_hash);
        assert_eq!(first.trace_hash, second.trace_hash);
        assert!(
            first.faults.get(kelpie_dst::FaultKind::DiskLatency) > 0,
            "faults had effects"
        );
        let other = scenario
            .run(seed.wrapping_add(1))
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_ne!(first.trace_hash, other.trace_hash);
    }
}
