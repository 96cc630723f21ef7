//! # kelpie-spec
//!
//! Stateright models of Kelpie's TLA+ specs (`specs/tla/`), one
//! [`stateright::Model`] per spec, with the spec's action and invariant
//! names. Their transitions call the production sans-IO code — the
//! ownership core, the coordination state machine, the store, the
//! journal, the actor lifecycle core, the failure detector and the
//! durable incarnation — never a re-implementation, so `cargo test -p
//! kelpie-spec` checks the code that ships, exhaustively within each
//! model's bounds.
//! Each bug switch of the production crates is forwarded as a feature of
//! the same name; under it, a test asserts the model finds the named
//! violation.

pub mod check;
pub mod common;
pub mod durability;
pub mod faulty;
pub mod heartbeat;
pub mod journal;
pub mod lease;
pub mod lifecycle;
pub mod linearizability;
pub mod memdisk;
pub mod single_activation;
pub mod trace;
pub mod transaction;
