//! `KelpieSingleActivation` checked exhaustively within its bounds, and the
//! claim and commit bug switches caught by name.

// Under `bug-storage-nonatomic-apply` every commit goes through the store's
// committer task, which this model's store (over `NoSpawner`) never runs;
// the switch is checked by the `KelpieJournal` model, which drives it.
#![cfg(not(feature = "bug-storage-nonatomic-apply"))]

#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::check;
use kelpie_spec::single_activation::KelpieSingleActivation;

#[allow(dead_code)]
fn find(property: &'static str) {
    check::discovers(KelpieSingleActivation::default(), property);
}

#[cfg(not(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check",
    feature = "bug-runtime-unfenced-commit"
)))]
#[test]
fn kelpie_single_activation_holds_within_bounds() {
    check::holds_within_bounds("KelpieSingleActivation", KelpieSingleActivation::default());
}

#[cfg(feature = "bug-ownership-acquire-without-compare")]
#[test]
fn acquire_without_compare_breaks_single_activation() {
    // The simulator and TLC report this switch as SingleActivation.
    find("SingleActivation");
}

#[cfg(feature = "bug-ownership-lookup-then-claim")]
#[test]
fn lookup_then_claim_breaks_single_activation() {
    // The simulator and TLC report this switch as SingleActivation.
    find("SingleActivation");
}

#[cfg(feature = "bug-runtime-unfenced-commit")]
#[test]
fn unfenced_commit_breaks_no_zombie_write() {
    find("NoZombieWrite");
}
