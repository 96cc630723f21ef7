//! `KelpieLinearizability`: every reachable client history of the register
//! actor, served through the production ownership core and fenced commits,
//! is linearizable; with a claim bug (two owners), some history is not.

// Under `bug-storage-nonatomic-apply` every commit goes through the store's
// committer task, which this model's store (over `NoSpawner`) never runs;
// the switch is checked by the `KelpieJournal` model, which drives it.
#![cfg(not(feature = "bug-storage-nonatomic-apply"))]

#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::check;
use kelpie_spec::linearizability::KelpieLinearizability;

#[cfg(not(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check",
    feature = "bug-runtime-unfenced-commit"
)))]
#[test]
fn kelpie_register_is_linearizable_within_bounds() {
    check::holds_within_bounds("KelpieLinearizability", KelpieLinearizability::default());
}

#[cfg(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim"
))]
#[test]
fn two_owners_break_linearizability() {
    check::discovers(KelpieLinearizability::default(), "Linearizable");
}
