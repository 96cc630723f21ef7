//! `KelpieLinearizability`: every reachable client history of the register
//! actor and of the counter actor, served through the production ownership
//! core and fenced commits, is linearizable; with a claim or renewal bug
//! (two owners) or commits without the fencing precondition, some history
//! of each is not.

// Under `bug-storage-nonatomic-apply` every commit goes through the store's
// committer task, which this model's store (over `NoSpawner`) never runs;
// the switch is checked by the `KelpieJournal` model, which drives it.
#![cfg(not(feature = "bug-storage-nonatomic-apply"))]

#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::check;
#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::linearizability::{CounterLinearizability, RegisterLinearizability};

#[cfg(not(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check",
    feature = "bug-runtime-unfenced-commit"
)))]
#[test]
fn kelpie_register_is_linearizable_within_bounds() {
    check::holds_within_bounds("KelpieLinearizability", RegisterLinearizability::default());
}

#[cfg(not(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check",
    feature = "bug-runtime-unfenced-commit"
)))]
#[test]
fn kelpie_counter_is_linearizable_within_bounds() {
    check::holds_within_bounds("KelpieLinearizability (counter)", CounterLinearizability::default());
}

#[cfg(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check"
))]
#[test]
fn two_owners_break_linearizability() {
    check::discovers(RegisterLinearizability::default(), "Linearizable");
}

#[cfg(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check"
))]
#[test]
fn two_owners_break_counter_linearizability() {
    check::discovers(CounterLinearizability::default(), "Linearizable");
}

#[cfg(feature = "bug-runtime-unfenced-commit")]
#[test]
fn unfenced_commit_breaks_linearizability() {
    // A zombie's write lands after the new owner loaded the state: the new
    // owner's read, after the write replied, misses it.
    check::discovers(RegisterLinearizability::default(), "Linearizable");
}

#[cfg(feature = "bug-runtime-unfenced-commit")]
#[test]
fn unfenced_commit_breaks_counter_linearizability() {
    // As for the register (a zombie's add the new owner's state misses); a
    // zombie's add over the new owner's is a lost update, too.
    check::discovers(CounterLinearizability::default(), "Linearizable");
}
