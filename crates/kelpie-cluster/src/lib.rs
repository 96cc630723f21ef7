//! # kelpie-cluster
//!
//! Layer 5: how nodes find each other and notice each other's failure.
//!
//! For now this is the heartbeat service ([`heartbeat`]): each node keeps a
//! durable incarnation number, registers itself in the coordination store
//! under a session lease, and pings its peers; a sans-IO failure detector
//! ([`heartbeat::FailureDetector`]) decides who is suspected. Request
//! forwarding, migration and failover come with the cluster issue.
//!
//! This crate reaches time, randomness, tasks, disk, network and the
//! coordination store only through [`kelpie_core::NodeEnv`], so the simulator
//! runs it unchanged. It must never depend on `kelpie-dst`.

pub mod heartbeat;
pub mod incarnation;
