//! Simulation scenarios: production services under faults, with invariants.

pub mod heartbeat;
pub mod storage;
