//! # kelpie-runtime
//!
//! The actor runtime, starting with its safety core:
//!
//! - [`ownership`]: the ownership protocol as a sans-IO state machine —
//!   node sessions, actor leases bound to them, fencing tokens, self-fencing
//!   with a clock-drift margin, and lookup-and-claim as one compare-and-set.
//!   It performs no I/O and reads no clock: the driver feeds it inputs with
//!   the node's monotonic time and executes the commands it returns. The
//!   model checker and the simulator drive this very code.
//!
//! This crate must never reach time, tasks or the network except through
//! `kelpie-core` seams, and the ownership module must stay free of async and
//! I/O.

pub mod driver;
pub mod ownership;
pub mod runtime;
