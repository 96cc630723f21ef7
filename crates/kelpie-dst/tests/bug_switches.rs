//! Each bug switch, built in, must be caught by the simulator naming its
//! invariant, and the reported seed must reproduce the failure at the same
//! step. Run with `cargo test -p kelpie-dst --features <switch> --test bug_switches`.
//!
//! Without any switch this file checks that the same scenario passes on the
//! seeds the search would use, so a catch is caused by the bug alone.

use kelpie_dst::scenarios::heartbeat::{HeartbeatScenario, INCARNATION_MONOTONIC};

/// Seeds searched for a violation before the switch counts as not caught.
const SEARCH_SEEDS: u64 = 200;

#[cfg(feature = "bug-incarnation-no-fsync")]
#[test]
fn bug_incarnation_no_fsync_is_caught_as_incarnation_monotonic() {
    let scenario = HeartbeatScenario::default();
    for seed in 0..SEARCH_SEEDS {
        let Err(failure) = scenario.run(seed) else {
            continue;
        };
        println!("caught:\n{failure}");
        assert_eq!(failure.invariant(), Some(INCARNATION_MONOTONIC));
        let replay = scenario
            .run(failure.seed)
            .expect_err("the seed reproduces the failure");
        assert_eq!(replay.invariant(), Some(INCARNATION_MONOTONIC));
        assert_eq!(replay.step, failure.step);
        assert_eq!(replay.trace_hash, failure.trace_hash);
        assert!(failure.to_string().contains(&format!("DST_SEED={seed}")));
        assert!(failure
            .to_string()
            .contains(&format!("at step {}", failure.step)));
        return;
    }
    panic!("bug-incarnation-no-fsync was not caught in {SEARCH_SEEDS} seeds");
}

#[cfg(not(feature = "bug-incarnation-no-fsync"))]
#[test]
fn without_the_switch_the_search_seeds_pass() {
    let scenario = HeartbeatScenario::default();
    for seed in 0..SEARCH_SEEDS {
        if let Err(failure) = scenario.run(seed) {
            panic!("{failure}");
        }
    }
    // Name used by the switch above, checked here so it cannot drift.
    assert_eq!(INCARNATION_MONOTONIC, "IncarnationMonotonic");
}
