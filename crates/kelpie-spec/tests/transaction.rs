//! `KelpieTransaction` on the production store: committed transactions are
//! serializable in commit order; without the OCC check they are not.

use kelpie_spec::transaction::KelpieTransaction;
use stateright::{Checker, Model};

#[cfg(not(feature = "bug-storage-skip-occ-check"))]
#[test]
fn kelpie_transaction_holds_within_bounds() {
    #[allow(clippy::disallowed_methods)] // Measuring the check itself, outside any model.
    let started = std::time::Instant::now();
    let checker = KelpieTransaction::default().checker().threads(2).spawn_bfs().join();
    println!(
        "KelpieTransaction: {} states ({} generated), depth {}, {:?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    assert!(checker.is_done());
    checker.assert_properties();
}

#[cfg(feature = "bug-storage-skip-occ-check")]
#[test]
fn skip_occ_check_breaks_serializable_isolation() {
    let checker = KelpieTransaction::default()
        .checker()
        .threads(2)
        .finish_when(stateright::HasDiscoveries::AnyOf(["SerializableIsolation"].into()))
        .spawn_bfs()
        .join();
    let path = checker.discovery("SerializableIsolation");
    assert!(path.is_some(), "not found in {} states", checker.unique_state_count());
    println!("SerializableIsolation: {:?}", path.map(|p| p.into_actions()));
}
