//! Model-based property test of `WorkingMemory`: random sequences of
//! operations (including TTLs near `u64::MAX` and time going backwards) are
//! applied both to the real thing and to a naive model that recomputes
//! everything from scratch, and every observable is compared after each step.

use kelpie_memory::{MemoryError, WorkingMemory};
use proptest::prelude::*;

const KEYS: [&str; 5] = ["", "a", "bb", "key", "ключ"];

#[derive(Clone, Debug)]
enum Op {
    Set {
        key: usize,
        value: String,
        ttl_ms: Option<u64>,
    },
    Get {
        key: usize,
    },
    Remove {
        key: usize,
    },
    Expire,
    Advance(u64),
    Rewind(u64),
    JumpTo(u64),
}

fn ttl() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        Just(Some(0)),
        (1u64..50).prop_map(Some),
        (0u64..1_000).prop_map(|d| Some(u64::MAX - d)),
        Just(Some(u64::MAX)),
    ]
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..200, (0u64..200).prop_map(|d| u64::MAX - d), Just(u64::MAX),]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS.len(), "[a-zé日]{0,12}", ttl())
            .prop_map(|(key, value, ttl_ms)| Op::Set { key, value, ttl_ms }),
        2 => (0..KEYS.len()).prop_map(|key| Op::Get { key }),
        1 => (0..KEYS.len()).prop_map(|key| Op::Remove { key }),
        1 => Just(Op::Expire),
        2 => (0u64..60).prop_map(Op::Advance),
        1 => (0u64..60).prop_map(Op::Rewind),
        1 => time().prop_map(Op::JumpTo),
    ]
}

/// The naive model: a list of entries, sizes recomputed every time.
#[derive(Debug, Default)]
struct Model {
    capacity: usize,
    entries: Vec<(String, String, Option<u64>)>,
}

fn live(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_none_or(|t| now < t)
}

impl Model {
    fn size(key: &str, value: &str) -> usize {
        key.len() + value.len()
    }

    fn live_entries(&self, now: u64) -> impl Iterator<Item = &(String, String, Option<u64>)> {
        self.entries.iter().filter(move |(_, _, t)| live(*t, now))
    }

    fn used(&self, now: u64) -> usize {
        self.live_entries(now).map(|(k, v, _)| Self::size(k, v)).sum()
    }

    fn set(&mut self, key: &str, value: &str, ttl: Option<u64>, now: u64) -> Result<(), MemoryError> {
        let needed = Self::size(key, value);
        if needed > self.capacity {
            return Err(MemoryError::CapacityExceeded {
                needed,
                available: self.capacity,
            });
        }
        let expires_at = ttl.map(|t| now.saturating_add(t));
        let doa = !live(expires_at, now);
        if !doa {
            let others: usize = self
                .live_entries(now)
                .filter(|(k, _, _)| k != key)
                .map(|(k, v, _)| Self::size(k, v))
                .sum();
            let available = self.capacity - others;
            if needed > available {
                return Err(MemoryError::CapacityExceeded { needed, available });
            }
        }
        self.entries.retain(|(k, _, t)| k != key && live(*t, now));
        if !doa {
            self.entries.push((key.to_owned(), value.to_owned(), expires_at));
        }
        Ok(())
    }

    fn get(&self, key: &str, now: u64) -> Option<&str> {
        self.live_entries(now)
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.as_str())
    }

    fn remove(&mut self, key: &str, now: u64) -> Option<String> {
        let index = self.entries.iter().position(|(k, _, _)| k == key)?;
        let (_, value, t) = self.entries.remove(index);
        live(t, now).then_some(value)
    }

    fn expire(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(_, _, t)| live(*t, now));
        before - self.entries.len()
    }
}

fn check_observables(real: &WorkingMemory, model: &Model, now: u64) -> Result<(), TestCaseError> {
    for key in KEYS {
        prop_assert_eq!(real.get(key, now), model.get(key, now), "get({:?}) at {}", key, now);
    }
    let used = real.used_bytes(now);
    prop_assert_eq!(used, model.used(now));
    prop_assert_eq!(real.len(now), model.live_entries(now).count());
    prop_assert_eq!(real.is_empty(now), model.live_entries(now).next().is_none());
    // Invariants: used bytes are exactly the live entries' sizes, within capacity.
    let from_iter: usize = real.iter(now).map(|(k, v)| k.len() + v.len()).sum();
    prop_assert_eq!(used, from_iter);
    prop_assert!(used <= real.capacity_bytes());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn working_memory_matches_naive_model(
        capacity in prop_oneof![0usize..4, 4usize..40, 40usize..200],
        start in time(),
        ops in prop::collection::vec(op(), 0..=64),
    ) {
        let mut real = WorkingMemory::new(capacity);
        let mut model = Model { capacity, ..Model::default() };
        let mut now = start;
        for op in ops {
            match op {
                Op::Set { key, value, ttl_ms } => {
                    let before = real.clone();
                    let got = real.set(KEYS[key], &value, ttl_ms, now);
                    let want = model.set(KEYS[key], &value, ttl_ms, now);
                    prop_assert_eq!(&got, &want);
                    if got.is_err() {
                        prop_assert_eq!(&real, &before, "a failed set changed the memory");
                    }
                }
                Op::Get { key } => {
                    prop_assert_eq!(real.get(KEYS[key], now), model.get(KEYS[key], now));
                }
                Op::Remove { key } => {
                    prop_assert_eq!(real.remove(KEYS[key], now), model.remove(KEYS[key], now));
                }
                Op::Expire => prop_assert_eq!(real.expire(now), model.expire(now)),
                Op::Advance(d) => now = now.saturating_add(d),
                Op::Rewind(d) => now = now.saturating_sub(d),
                Op::JumpTo(t) => now = t,
            }
            check_observables(&real, &model, now)?;
            // Also at a few other times, to catch expiry bookkeeping that
            // only looks right at the current one.
            for other in [0, now.saturating_sub(25), now.saturating_add(25), u64::MAX] {
                check_observables(&real, &model, other)?;
            }
        }
        // The state survives a JSON round trip unchanged.
        let json = serde_json::to_string(&real).expect("serialise");
        let back: WorkingMemory = serde_json::from_str(&json).expect("deserialise");
        prop_assert_eq!(back, real);
    }
}
