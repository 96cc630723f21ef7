//! Running the models the way every test does: exhaustively within bounds
//! (no `always` counterexample, an example for every `sometimes`), or until
//! a named property's violation is discovered (a bug switch caught).

use std::fmt::Debug;
use std::hash::Hash;

use stateright::{Checker, HasDiscoveries, Model};

/// Checks `model` exhaustively by BFS on 2 threads, prints its state count,
/// depth and time as `name`, and asserts the search finished and every
/// property held (`always`) or was reached (`sometimes`). Returns the number
/// of unique states.
pub fn holds_within_bounds<M>(name: &str, model: M) -> usize
where
    M: Model + Send + Sync + 'static,
    M::State: Debug + Hash + Send + Sync,
    M::Action: Debug,
{
    #[allow(clippy::disallowed_methods)] // Measuring the check itself, outside any model.
    let started = std::time::Instant::now();
    let checker = model.checker().threads(2).spawn_bfs().join();
    println!(
        "{name}: {} states ({} generated), depth {}, {:?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    assert!(checker.is_done(), "{name}: the search did not finish");
    checker.assert_properties();
    checker.unique_state_count()
}

/// Searches `model` until `property` is violated (an `always`) or reached (a
/// `sometimes`); asserts it was, prints and returns the path's actions.
pub fn discovers<M>(model: M, property: &'static str) -> Vec<M::Action>
where
    M: Model + Send + Sync + 'static,
    M::State: Debug + Hash + Send + Sync,
    M::Action: Debug,
{
    discover(model, property, 2)
}

/// As [`discovers`], on one thread: the path is a shortest one (with two
/// threads, BFS may record a longer path that another thread reached
/// first), so a test may assert its shape.
pub fn discovers_shortest<M>(model: M, property: &'static str) -> Vec<M::Action>
where
    M: Model + Send + Sync + 'static,
    M::State: Debug + Hash + Send + Sync,
    M::Action: Debug,
{
    discover(model, property, 1)
}

fn discover<M>(model: M, property: &'static str, threads: usize) -> Vec<M::Action>
where
    M: Model + Send + Sync + 'static,
    M::State: Debug + Hash + Send + Sync,
    M::Action: Debug,
{
    let checker = model
        .checker()
        .threads(threads)
        .finish_when(HasDiscoveries::AnyOf([property].into()))
        .spawn_bfs()
        .join();
    let Some(path) = checker.discovery(property) else {
        panic!("{property}: not discovered in {} states", checker.unique_state_count());
    };
    let actions = path.into_actions();
    println!("{property}: {actions:?}");
    actions
}
