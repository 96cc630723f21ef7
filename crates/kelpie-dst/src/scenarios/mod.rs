//! Simulation scenarios: production services under faults, with invariants.

pub mod agent_server;
pub mod heartbeat;
pub mod ownership;
pub mod runtime;
pub mod storage;
