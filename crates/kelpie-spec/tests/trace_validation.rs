//! Trace validation: the deterministic simulator's ownership scenario
//! records, after every event, the store-level abstract state of its real
//! state (the refinement mapping `abstract_ownership`); every consecutive
//! pair must be a stutter or a transition of `StoreLevelOwnership`.
//!
//! `TRACE_SEEDS=k` validates seeds `0..k` (default 20). Tampered traces and
//! the `bug-ownership-acquire-without-compare` switch show the check rejects
//! what the protocol forbids.

// The node-level bug switches (self-fencing margin, renew check) compile
// out the production checks and have no trace test of their own here.
#![cfg_attr(
    any(
        feature = "bug-ownership-no-self-fencing-margin",
        feature = "bug-ownership-renew-without-holder-check"
    ),
    allow(dead_code, unused_imports)
)]

use kelpie_dst::scenarios::ownership::{AbstractOwnership, OwnershipScenario};
#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::check;
use kelpie_spec::trace::{validate, Owner, StoreLevelOwnership, StoreState};

/// `kelpie-dst`'s abstract state as the model's state.
fn store_state(state: &AbstractOwnership) -> StoreState {
    StoreState {
        owners: state
            .owners
            .iter()
            .map(|(actor, owner)| {
                (
                    actor.clone(),
                    Owner {
                        node: owner.node.clone(),
                        lease: owner.lease,
                        token: owner.token,
                    },
                )
            })
            .collect(),
        fences: state.fences.clone(),
        last_write: state.last_write.clone(),
        commits: state.commits.clone(),
        revision: u64::try_from(state.revision).expect("revisions are positive"),
    }
}

/// The model itself, checked exhaustively within its bounds (2 nodes with 2
/// leases each, 2 actors, revisions up to 4): its `always` properties hold
/// and every `sometimes` has an example.
#[test]
fn store_level_model_holds_within_bounds() {
    check::holds_within_bounds("StoreLevelOwnership", StoreLevelOwnership::default());
}

#[cfg(not(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-no-self-fencing-margin",
    feature = "bug-ownership-renew-without-holder-check"
)))]
mod production {
    use super::*;
    use kelpie_spec::trace::allowed;

    fn trace_seeds() -> u64 {
        match std::env::var("TRACE_SEEDS") {
            Ok(text) => text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("TRACE_SEEDS={text:?} is not a non-negative integer")),
            Err(_) => 20,
        }
    }

    fn recorded(seed: u64) -> Vec<StoreState> {
        let (_, states) = OwnershipScenario::default()
            .run_recording(seed)
            .unwrap_or_else(|failure| panic!("{failure}"));
        states.iter().map(store_state).collect()
    }

    #[test]
    fn recorded_runs_refine_the_store_level_model() {
        #[allow(clippy::disallowed_methods)] // Measuring the check itself, outside any simulation.
        let started = std::time::Instant::now();
        let model = StoreLevelOwnership::default();
        let scenario = OwnershipScenario::default();
        let (mut states_checked, mut pairs_checked, mut steps) = (0, 0, 0);
        for seed in 0..trace_seeds() {
            let (report, states) = scenario
                .run_recording(seed)
                .unwrap_or_else(|failure| panic!("{failure}"));
            let states: Vec<StoreState> = states.iter().map(store_state).collect();
            match validate(&model, &states) {
                Ok(pairs) => pairs_checked += pairs,
                Err(error) => panic!("seed {seed}: {error}"),
            }
            states_checked += states.len();
            steps += report.steps;
        }
        println!(
            "trace validation: {} seeds, {steps} simulator events, {states_checked} abstract states, \
             {pairs_checked} pairs checked, {:?}",
            trace_seeds(),
            started.elapsed()
        );
        assert!(pairs_checked > 0);
    }

    #[test]
    fn recording_does_not_change_the_run() {
        let scenario = OwnershipScenario::default();
        for seed in 0..3 {
            let (plain, _) = scenario.run(seed).unwrap_or_else(|failure| panic!("{failure}"));
            let (recorded, states) = scenario
                .run_recording(seed)
                .unwrap_or_else(|failure| panic!("{failure}"));
            assert_eq!(plain.trace_hash, recorded.trace_hash, "seed {seed}");
            assert_eq!(plain.steps, recorded.steps, "seed {seed}");
            assert!(states.len() > 1, "seed {seed}: nothing recorded");
        }
    }

    /// The first step `from` → `to` of a real trace matching `pick`.
    fn find_step(pick: impl Fn(&StoreState, &StoreState) -> Option<String>) -> (u64, usize, Vec<StoreState>, String) {
        for seed in 0..20 {
            let states = recorded(seed);
            for (step, pair) in states.windows(2).enumerate() {
                if let Some(actor) = pick(&pair[0], &pair[1]) {
                    return (seed, step, states, actor);
                }
            }
        }
        panic!("no such step in seeds 0..20");
    }

    fn expect_rejected(states: &[StoreState], step: usize, reason: &str) {
        let model = StoreLevelOwnership::default();
        let error = allowed(&model, &states[step], &states[step + 1]).expect_err("tampered step allowed");
        assert!(error.contains(reason), "expected {reason:?} in: {error}");
        let whole = validate(&model, states).expect_err("tampered trace validated");
        assert!(whole.starts_with(&format!("step {step}: ")), "{whole}");
        println!("rejected as expected: {whole}");
    }

    #[test]
    fn a_claim_with_a_reused_token_is_rejected() {
        let (seed, step, mut states, actor) = find_step(|from, to| {
            to.owners
                .keys()
                .find(|actor| !from.owners.contains_key(*actor) && from.revision > 1)
                .cloned()
        });
        let model = StoreLevelOwnership::default();
        allowed(&model, &states[step], &states[step + 1]).expect("the real step is allowed");
        // The claim's token goes back to one already issued.
        let reused = states[step].revision;
        states[step + 1].owners.get_mut(&actor).expect("claimed").token = reused;
        println!("seed {seed}, step {step}: {actor} claimed with token {reused}");
        expect_rejected(
            &states,
            step,
            &format!("token {reused} is not above revision {reused} (not a new create revision)"),
        );
    }

    #[test]
    fn a_second_owner_is_rejected() {
        let (seed, step, mut states, actor) = find_step(|_, to| to.owners.keys().next().cloned());
        // The next state: another node's key replaces the owner's, keeping
        // the token (a put over the existing key, as without the compare).
        let mut to = states[step + 1].clone();
        let owner = to.owners.get(&actor).cloned().expect("owned");
        let intruder = Owner {
            node: if owner.node == "node-9" { "node-8" } else { "node-9" }.to_string(),
            lease: 999,
            token: owner.token,
        };
        to.owners.insert(actor.clone(), intruder);
        to.revision += 1;
        states.truncate(step + 2);
        states.push(to);
        println!("seed {seed}, step {}: {actor} gets a second owner", step + 1);
        expect_rejected(&states, step + 1, &format!("{actor} already has an owner ({owner})"));
    }

    #[test]
    fn a_write_with_a_stale_token_is_rejected() {
        // A fence raised over an older one: the older token's holder is now
        // a zombie.
        let (seed, step, mut states, actor) = find_step(|from, to| {
            to.fences
                .iter()
                .find(|(actor, fence)| from.fences.get(*actor).is_some_and(|old| old < fence))
                .map(|(actor, _)| actor.clone())
        });
        let stale = states[step].fences[&actor];
        let fence = states[step + 1].fences[&actor];
        let mut to = states[step + 1].clone();
        to.last_write.insert(actor.clone(), stale);
        *to.commits.entry(actor.clone()).or_insert(0) += 1;
        states.truncate(step + 2);
        states.push(to);
        println!(
            "seed {seed}, step {}: {actor} written with token {stale} under fence {fence}",
            step + 1
        );
        expect_rejected(
            &states,
            step + 1,
            &format!("{actor}: commit with token {stale} applied under fence {fence} (zombie write)"),
        );
    }

    #[test]
    fn a_fence_going_back_is_rejected() {
        let (seed, step, mut states, actor) = find_step(|from, to| {
            to.fences
                .iter()
                .find(|(actor, fence)| from.fences.get(*actor).is_some_and(|old| old < fence))
                .map(|(actor, _)| actor.clone())
        });
        let (old, new) = (states[step].fences[&actor], states[step + 1].fences[&actor]);
        let mut back = states[step + 1].clone();
        back.fences.insert(actor.clone(), old);
        states.truncate(step + 2);
        states.push(back);
        println!("seed {seed}, step {}: {actor} fence {new} -> {old}", step + 1);
        expect_rejected(
            &states,
            step + 1,
            &format!("{actor}: token {old} does not raise fence {new}"),
        );
    }
}

/// Without the compare (or with it in a separate lookup), a claim
/// overwrites a live owner key: the step changes the key's node (and lease)
/// under the same token, which no action allows. The trace is taken whether
/// or not an invariant stopped the run.
#[cfg(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim"
))]
#[test]
fn acquire_without_compare_is_rejected_by_trace_validation() {
    let model = StoreLevelOwnership::default();
    let scenario = OwnershipScenario::default();
    for seed in 0..200 {
        let (outcome, states) = scenario.record(seed);
        let states: Vec<StoreState> = states.iter().map(store_state).collect();
        if let Err(error) = validate(&model, &states) {
            println!(
                "seed {seed} rejected: {error}\n(simulator: {})",
                match &outcome {
                    Ok(_) => "no invariant failed".to_string(),
                    Err(failure) => format!("{:?}", failure.invariant()),
                }
            );
            assert!(error.contains("already has an owner"), "{error}");
            return;
        }
    }
    panic!("trace validation accepted seeds 0..200 with a blind claim put");
}
