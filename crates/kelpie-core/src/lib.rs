//! # kelpie-core
//!
//! Layer 1 of Kelpie: the vocabulary every other crate speaks.
//!
//! - [`id`]: validated identifiers ([`ActorId`], [`NodeId`]).
//! - [`limits`]: every size, count and time bound, as a named constant with
//!   its unit in the name.
//! - [`config`]: [`KelpieConfig`], loaded from TOML and `KELPIE_*` variables
//!   and validated so that invalid combinations cannot be represented.
//! - The I/O seams: [`clock::Clock`] (per-node monotonic and wall time,
//!   timers), [`rng::Rng`] (seeded randomness), [`spawn::Spawner`] (tasks),
//!   [`disk::Disk`] (files with explicit durability), [`transport::Transport`]
//!   (node-to-node messages) and [`coordination::CoordinationStore`] (a
//!   linearizable key-value store with compare-and-set transactions).
//!
//! Production implementations of the seams live here too, on tokio and the
//! operating system. The simulator (`kelpie-dst`) provides the other
//! implementations, so the same production code runs under both.
//!
//! This crate must never depend on another Kelpie crate, and code outside the
//! production seam implementations must never read the system clock, spawn on
//! tokio directly or use unseeded randomness (enforced by `clippy.toml`).

pub mod clock;
pub mod config;
pub mod coordination;
pub mod disk;
pub mod env;
pub mod error;
pub mod id;
pub mod limits;
pub mod rng;
pub mod spawn;
pub mod transport;

pub use clock::{Clock, MonotonicInstant, WallTime};
pub use config::KelpieConfig;
pub use env::NodeEnv;
pub use error::KelpieError;
pub use id::{ActorId, NodeId};
pub use rng::Rng;
pub use spawn::Spawner;
