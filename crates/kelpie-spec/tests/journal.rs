//! `KelpieJournal` on the production journal and store: effects exactly
//! once, atomic with their completion, durable once acknowledged.

use kelpie_spec::journal::KelpieJournal;
use stateright::{Checker, Model};

#[cfg(not(feature = "bug-journal-replay-completed"))]
#[test]
fn kelpie_journal_holds_within_bounds() {
    #[allow(clippy::disallowed_methods)] // Measuring the check itself, outside any model.
    let started = std::time::Instant::now();
    let checker = KelpieJournal::default().checker().threads(2).spawn_bfs().join();
    println!(
        "KelpieJournal: {} states ({} generated), depth {}, {:?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    assert!(checker.is_done());
    checker.assert_properties();
}

#[cfg(feature = "bug-journal-replay-completed")]
#[test]
fn replay_completed_breaks_replay_idempotent() {
    let checker = KelpieJournal::default()
        .checker()
        .threads(2)
        .finish_when(stateright::HasDiscoveries::AnyOf(["ReplayIdempotent"].into()))
        .spawn_bfs()
        .join();
    let path = checker.discovery("ReplayIdempotent");
    assert!(path.is_some(), "not found in {} states", checker.unique_state_count());
    println!("ReplayIdempotent: {:?}", path.map(|p| p.into_actions()));
}
