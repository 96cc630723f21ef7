//! # kelpie-dst
//!
//! Deterministic simulation of Kelpie's production code.
//!
//! A [`Simulation`] runs whole nodes — their real start-up code, tasks,
//! timers, files, messages and coordination requests — on one thread, with
//! virtual time and every choice (which ready task runs next, which fault
//! fires, how late a message is) drawn from one seed. Nodes get their own
//! clocks that skew both ways, jump and pause; they crash (losing volatile
//! state, and with a machine crash unsynced writes) and restart through their
//! production boot code. Named invariants are evaluated after every event.
//!
//! Same seed, same run: the trace hash of a run identifies it, and
//! `DST_SEED=n` replays seed `n` (see [`seeds_from_env`]).
//!
//! This crate is a test harness: production crates never depend on it. It
//! may depend on any production crate in order to simulate it.

pub mod faults;
pub mod linearizability;
pub mod scenarios;
mod seams;
pub mod shared_store;
pub mod simulation;
pub mod trace;
mod world;

pub use faults::{FaultConfig, FaultCounters, FaultKind};
pub use simulation::{
    FailureKind, FaultAction, FaultInjector, HarnessEnv, NodeLife, NodeView, SeedGuard, SimFailure, SimReport,
    Simulation, StopReason, WorldView,
};

/// Seeds to run, from the environment.
///
/// - `DST_SEED=n`: exactly seed `n` (replay).
/// - otherwise `DST_SEEDS=k` seeds (default `default_count`) starting at
///   `DST_SEED_BASE` (default `default_base`).
///
/// Unparseable values are reported, not ignored.
pub fn seeds_from_env(default_base: u64, default_count: u64) -> Result<Vec<u64>, String> {
    seeds_from(|name| std::env::var(name).ok(), default_base, default_count)
}

fn seeds_from(var: impl Fn(&str) -> Option<String>, default_base: u64, default_count: u64) -> Result<Vec<u64>, String> {
    let parse = |name: &str| -> Result<Option<u64>, String> {
        match var(name) {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{name}={text:?} is not a non-negative integer")),
        }
    };
    if let Some(seed) = parse("DST_SEED")? {
        return Ok(vec![seed]);
    }
    let base = parse("DST_SEED_BASE")?.unwrap_or(default_base);
    let count = parse("DST_SEEDS")?.unwrap_or(default_count);
    Ok((0..count).map(|offset| base.wrapping_add(offset)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_selection_from_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        assert_eq!(seeds_from(env(&[]), 10, 3), Ok(vec![10, 11, 12]));
        assert_eq!(
            seeds_from(env(&[("DST_SEED", "42"), ("DST_SEEDS", "9")]), 10, 3),
            Ok(vec![42])
        );
        assert_eq!(
            seeds_from(env(&[("DST_SEEDS", "2"), ("DST_SEED_BASE", "100")]), 10, 3),
            Ok(vec![100, 101])
        );
        assert_eq!(
            seeds_from(env(&[("DST_SEED", "x")]), 10, 3),
            Err("DST_SEED=\"x\" is not a non-negative integer".to_string())
        );
    }
}
