//! Each bug switch, built in, must be caught by the simulator naming its
//! invariant, and the reported seed must reproduce the failure at the same
//! step. Run with `cargo test -p kelpie-dst --features <switch> --test bug_switches`
//! (`scripts/test.sh` runs the whole matrix).
//!
//! Without any switch this file checks that the same scenarios pass on the
//! seeds the search uses, so a catch is caused by the bug alone.

#![allow(dead_code)] // Each build uses the helpers of its own switch only.

use kelpie_dst::scenarios::agent_server::AgentServerScenario;
use kelpie_dst::scenarios::heartbeat::HeartbeatScenario;
use kelpie_dst::scenarios::ownership::OwnershipScenario;
use kelpie_dst::scenarios::runtime::RuntimeScenario;
use kelpie_dst::scenarios::storage::StorageScenario;
use kelpie_dst::SimFailure;

/// Seeds searched for a violation before a switch counts as not caught.
const SEARCH_SEEDS: u64 = 200;

fn heartbeat(seed: u64) -> Result<(), Box<SimFailure>> {
    HeartbeatScenario::default().run(seed).map(|_| ())
}

fn storage(seed: u64) -> Result<(), Box<SimFailure>> {
    StorageScenario::default().run(seed).map(|_| ())
}

fn ownership(seed: u64) -> Result<(), Box<SimFailure>> {
    OwnershipScenario::default().run(seed).map(|_| ())
}

fn runtime(seed: u64) -> Result<(), Box<SimFailure>> {
    RuntimeScenario::default().run(seed).map(|_| ())
}

fn agent_server(seed: u64) -> Result<(), Box<SimFailure>> {
    AgentServerScenario::default().run(seed).map(|_| ())
}

/// Finds the first seed that fails, asserts it names `invariant`, and that
/// replaying the seed fails identically.
fn assert_caught(switch: &str, run: fn(u64) -> Result<(), Box<SimFailure>>, invariant: &str) {
    for seed in 0..SEARCH_SEEDS {
        let Err(failure) = run(seed) else { continue };
        println!("{switch} caught:\n{failure}");
        assert_eq!(
            failure.invariant(),
            Some(invariant),
            "{switch} was caught by the wrong invariant"
        );
        let replay = run(failure.seed).expect_err("the seed reproduces the failure");
        assert_eq!(replay.invariant(), Some(invariant));
        assert_eq!((replay.step, &replay.trace_hash), (failure.step, &failure.trace_hash));
        let text = failure.to_string();
        assert!(text.contains(&format!("DST_SEED={seed}")), "{text}");
        assert!(
            text.contains(&format!("invariant {invariant} violated at step {}", failure.step)),
            "{text}"
        );
        return;
    }
    panic!("{switch} was not caught in {SEARCH_SEEDS} seeds");
}

#[cfg(feature = "bug-incarnation-no-fsync")]
#[test]
fn bug_incarnation_no_fsync_is_caught() {
    assert_caught("bug-incarnation-no-fsync", heartbeat, "IncarnationMonotonic");
}

#[cfg(feature = "bug-heartbeat-accept-stale-incarnation")]
#[test]
fn bug_heartbeat_accept_stale_incarnation_is_caught() {
    assert_caught(
        "bug-heartbeat-accept-stale-incarnation",
        heartbeat,
        "PeerIncarnationMonotonic",
    );
}

#[cfg(feature = "bug-heartbeat-never-suspect")]
#[test]
fn bug_heartbeat_never_suspect_is_caught() {
    assert_caught("bug-heartbeat-never-suspect", heartbeat, "CrashedNodeSuspected");
}

#[cfg(feature = "bug-storage-nonatomic-apply")]
#[test]
fn bug_storage_nonatomic_apply_is_caught() {
    assert_caught("bug-storage-nonatomic-apply", storage, "AtomicVisibility");
}

#[cfg(feature = "bug-storage-ack-before-sync")]
#[test]
fn bug_storage_ack_before_sync_is_caught() {
    assert_caught("bug-storage-ack-before-sync", storage, "Durability");
}

#[cfg(feature = "bug-storage-skip-occ-check")]
#[test]
fn bug_storage_skip_occ_check_is_caught() {
    assert_caught("bug-storage-skip-occ-check", storage, "SerializableIsolation");
}

#[cfg(feature = "bug-journal-replay-completed")]
#[test]
fn bug_journal_replay_completed_is_caught() {
    assert_caught("bug-journal-replay-completed", storage, "ReplayIdempotent");
}

#[cfg(feature = "bug-ownership-acquire-without-compare")]
#[test]
fn bug_ownership_acquire_without_compare_is_caught() {
    assert_caught("bug-ownership-acquire-without-compare", ownership, "SingleActivation");
}

#[cfg(feature = "bug-ownership-lookup-then-claim")]
#[test]
fn bug_ownership_lookup_then_claim_is_caught() {
    assert_caught("bug-ownership-lookup-then-claim", ownership, "SingleActivation");
}

#[cfg(feature = "bug-ownership-no-self-fencing-margin")]
#[test]
fn bug_ownership_no_self_fencing_margin_is_caught() {
    assert_caught("bug-ownership-no-self-fencing-margin", ownership, "SingleActivation");
}

#[cfg(feature = "bug-ownership-unfenced-commit")]
#[test]
fn bug_ownership_unfenced_commit_is_caught() {
    assert_caught("bug-ownership-unfenced-commit", ownership, "NoZombieWrite");
}

#[cfg(feature = "bug-ownership-renew-without-holder-check")]
#[test]
fn bug_ownership_renew_without_holder_check_is_caught() {
    assert_caught("bug-ownership-renew-without-holder-check", runtime, "SingleActivation");
}

#[cfg(feature = "bug-runtime-unfenced-commit")]
#[test]
fn bug_runtime_unfenced_commit_is_caught() {
    assert_caught("bug-runtime-unfenced-commit", runtime, "NoZombieWrite");
}

#[cfg(feature = "bug-runtime-drop-on-deactivate")]
#[test]
fn bug_runtime_drop_on_deactivate_is_caught() {
    assert_caught("bug-runtime-drop-on-deactivate", runtime, "GracefulDeactivation");
}

#[cfg(feature = "bug-server-nonatomic-create")]
#[test]
fn bug_server_nonatomic_create_is_caught() {
    assert_caught("bug-server-nonatomic-create", agent_server, "AgentCreateAtomic");
}

#[cfg(feature = "bug-server-ignore-idempotency-key")]
#[test]
fn bug_server_ignore_idempotency_key_is_caught() {
    assert_caught("bug-server-ignore-idempotency-key", agent_server, "IdempotentCreate");
}

#[cfg(not(any(
    feature = "bug-incarnation-no-fsync",
    feature = "bug-heartbeat-accept-stale-incarnation",
    feature = "bug-heartbeat-never-suspect",
    feature = "bug-storage-nonatomic-apply",
    feature = "bug-storage-ack-before-sync",
    feature = "bug-storage-skip-occ-check",
    feature = "bug-journal-replay-completed",
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-no-self-fencing-margin",
    feature = "bug-ownership-unfenced-commit",
    feature = "bug-ownership-renew-without-holder-check",
    feature = "bug-runtime-unfenced-commit",
    feature = "bug-runtime-drop-on-deactivate",
    feature = "bug-server-nonatomic-create",
    feature = "bug-server-ignore-idempotency-key",
)))]
#[test]
fn without_a_switch_the_search_seeds_pass() {
    // The searches stop at the first failing seed, which is found early;
    // the first seeds of each scenario pass clean (the per-scenario sweeps
    // cover many more).
    for seed in 0..10 {
        if let Err(failure) = heartbeat(seed) {
            panic!("{failure}");
        }
        if let Err(failure) = storage(seed) {
            panic!("{failure}");
        }
        if let Err(failure) = ownership(seed) {
            panic!("{failure}");
        }
        if let Err(failure) = runtime(seed) {
            panic!("{failure}");
        }
        if let Err(failure) = agent_server(seed) {
            panic!("{failure}");
        }
    }
}
