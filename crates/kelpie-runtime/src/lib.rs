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
//! - [`lifecycle`]: one actor's lifecycle on a node (activating, active,
//!   draining, inactive) as a sans-IO state machine: admission of callers'
//!   messages, handle-or-refuse for each accepted message, graceful drains.
//!   The runtime asks it every lifecycle question; the model checker drives
//!   it through the TLA+ spec's actions.
//! - [`runtime`]: the async runtime around both: mailboxes, activation,
//!   fenced commits, supervision.
//!
//! This crate must never reach time, tasks or the network except through
//! `kelpie-core` seams, and the ownership and lifecycle modules must stay
//! free of async and I/O.

pub mod driver;
pub mod lifecycle;
pub mod ownership;
pub mod runtime;
