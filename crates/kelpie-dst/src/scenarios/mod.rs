//! Simulation scenarios: production services under faults, with invariants.

pub mod agent_server;
pub mod heartbeat;
pub mod ownership;
pub mod runtime;
pub mod storage;

use std::sync::Arc;

/// Panics unless `ghost` (a scenario's shared model state) is referenced only
/// by the caller once its simulation has ended. Anything the simulation
/// built that the ghost keeps (a store, whose engine or observer reports to
/// the ghost) must hold it weakly: a strong reference back would be a cycle,
/// and every run of a long sweep would leak its whole world.
pub(crate) fn assert_ghost_released<T>(ghost: &Arc<T>, seed: u64) {
    let references = Arc::strong_count(ghost);
    assert_eq!(
        references, 1,
        "seed {seed}: the scenario's ghost is still referenced {references} times after its simulation \
         ended: a reference cycle, which leaks every run"
    );
}
