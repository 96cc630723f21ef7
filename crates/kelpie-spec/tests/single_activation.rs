//! `KelpieSingleActivation` checked exhaustively within its bounds, and the
//! claim and commit bug switches caught by name.

use kelpie_spec::single_activation::KelpieSingleActivation;
use stateright::{Checker, HasDiscoveries, Model};

#[allow(dead_code)]
fn find(property: &'static str) {
    let checker = KelpieSingleActivation::default()
        .checker()
        .threads(2)
        .finish_when(HasDiscoveries::AnyOf([property].into()))
        .spawn_bfs()
        .join();
    let path = checker.discovery(property);
    assert!(
        path.is_some(),
        "{property} violation not found in {} states",
        checker.unique_state_count()
    );
    println!("{property}: {:?}", path.map(|p| p.into_actions()));
}

#[cfg(not(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check",
    feature = "bug-runtime-unfenced-commit"
)))]
#[test]
fn kelpie_single_activation_holds_within_bounds() {
    #[allow(clippy::disallowed_methods)] // Measuring the check itself, outside any model.
    let started = std::time::Instant::now();
    let checker = KelpieSingleActivation::default()
        .checker()
        .threads(2)
        .spawn_bfs()
        .join();
    println!(
        "KelpieSingleActivation: {} states ({} generated), depth {}, {:?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    assert!(checker.is_done());
    checker.assert_properties();
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
