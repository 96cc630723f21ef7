//! `KelpieLinearizability`: every reachable client history of the register
//! actor, served through the production ownership core and fenced commits,
//! is linearizable; with a claim bug (two owners), some history is not.

#[allow(unused_imports)] // Some bug switches compile every test here out.
use kelpie_spec::linearizability::KelpieLinearizability;
#[allow(unused_imports)]
use stateright::{Checker, Model};

#[cfg(not(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim",
    feature = "bug-ownership-renew-without-holder-check",
    feature = "bug-runtime-unfenced-commit"
)))]
#[test]
fn kelpie_register_is_linearizable_within_bounds() {
    #[allow(clippy::disallowed_methods)] // Measuring the check itself, outside any model.
    let started = std::time::Instant::now();
    let checker = KelpieLinearizability::default().checker().threads(2).spawn_bfs().join();
    println!(
        "KelpieLinearizability: {} states ({} generated), depth {}, {:?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    assert!(checker.is_done());
    checker.assert_properties();
}

#[cfg(any(
    feature = "bug-ownership-acquire-without-compare",
    feature = "bug-ownership-lookup-then-claim"
))]
#[test]
fn two_owners_break_linearizability() {
    let checker = KelpieLinearizability::default()
        .checker()
        .threads(2)
        .finish_when(stateright::HasDiscoveries::AnyOf(["Linearizable"].into()))
        .spawn_bfs()
        .join();
    let path = checker.discovery("Linearizable");
    assert!(path.is_some(), "not found in {} states", checker.unique_state_count());
    println!("Linearizable: {:?}", path.map(|p| p.into_actions()));
}
