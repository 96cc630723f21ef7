//! # kelpie-bench
//!
//! Benchmarks of Kelpie against its peers, run with
//! `cargo bench -p kelpie-bench` (see `benches/`).
//!
//! This crate exists so the peers (SQLite; tokio channels, ractor and
//! kameo) are dev-dependencies of a crate whose only
//! targets that use them are benches: `cargo test` never compiles them, and
//! no other Kelpie crate may depend on this one. It has no library code.
