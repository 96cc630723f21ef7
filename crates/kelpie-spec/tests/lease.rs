//! `KelpieLease` checked exhaustively within its bounds, and each ownership
//! bug switch caught by name.

// Under `bug-storage-nonatomic-apply` every commit goes through the store's
// committer task, which this model's store (over `NoSpawner`) never runs;
// the switch is checked by the `KelpieJournal` model, which drives it.
#![cfg(not(feature = "bug-storage-nonatomic-apply"))]

#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::check;
use kelpie_spec::lease::KelpieLease;

#[allow(dead_code)]
fn find(model: KelpieLease, property: &'static str) {
    check::discovers(model, property);
}

#[cfg(not(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-no-self-fencing-margin",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check",
    feature = "bug-runtime-unfenced-commit"
)))]
#[test]
fn kelpie_lease_holds_within_bounds() {
    check::holds_within_bounds("KelpieLease", KelpieLease::default());
}

#[cfg(feature = "bug-ownership-no-self-fencing-margin")]
#[test]
fn no_self_fencing_margin_breaks_single_activation() {
    find(KelpieLease::default(), "SingleActivation");
}

#[cfg(feature = "bug-ownership-renew-without-holder-check")]
#[test]
fn renew_without_holder_check_breaks_single_activation() {
    find(KelpieLease::default(), "SingleActivation");
}

#[cfg(feature = "bug-ownership-acquire-without-compare")]
#[test]
fn acquire_without_compare_breaks_lease_uniqueness() {
    find(KelpieLease::default(), "LeaseUniqueness");
}

#[cfg(feature = "bug-ownership-lookup-then-claim")]
#[test]
fn lookup_then_claim_breaks_lease_uniqueness() {
    find(KelpieLease::default(), "LeaseUniqueness");
}

#[cfg(feature = "bug-runtime-unfenced-commit")]
#[test]
fn unfenced_commit_breaks_no_zombie_write() {
    find(KelpieLease::default(), "NoZombieWrite");
}
