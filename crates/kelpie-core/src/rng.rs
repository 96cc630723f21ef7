//! The randomness seam.
//!
//! All randomness flows through the [`Rng`] trait, so a simulation seeded
//! with `n` makes the same choices every time. [`SeededRng`] is the one
//! implementation: production seeds it from the operating system once per
//! node ([`SeededRng::from_entropy`]); the simulator seeds every node's
//! generator from the run's seed.

use std::sync::{Arc, Mutex};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A source of random bits, with the derived draws Kelpie needs.
pub trait Rng: Send + Sync + std::fmt::Debug + 'static {
    /// The next 64 random bits.
    fn next_u64(&self) -> u64;

    /// A uniform value in `0..bound`. Returns 0 when `bound` is 0.
    fn below(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Rejection sampling keeps the distribution exactly uniform.
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let value = self.next_u64();
            if value < zone {
                return value % bound;
            }
        }
    }

    /// A uniform value in the inclusive range `low..=high` (`low` if empty).
    fn in_range(&self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// `true` with probability `numerator / denominator`.
    fn chance(&self, numerator: u64, denominator: u64) -> bool {
        denominator != 0 && self.below(denominator) < numerator
    }

    /// `true` with probability `probability` (clamped to 0..=1).
    fn bernoulli(&self, probability: f64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        if probability >= 1.0 {
            return true;
        }
        const SCALE: u64 = 1 << 53;
        // A 53-bit fixed-point threshold represents every f64 probability in (0, 1).
        let threshold = (probability * SCALE as f64) as u64;
        (self.next_u64() >> 11) < threshold
    }
}

/// A shared random source.
pub type SharedRng = Arc<dyn Rng>;

/// A seeded, shareable random number generator (ChaCha8).
///
/// Cloning shares the same stream. Draws are serialized by an internal lock
/// that is never held across an `.await`.
#[derive(Clone, Debug)]
pub struct SeededRng {
    inner: Arc<Mutex<ChaCha8Rng>>,
}

impl SeededRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn from_seed(seed: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }

    /// A generator seeded from the operating system (production only).
    pub fn from_entropy() -> Self {
        Self {
            inner: Arc::new(Mutex::new(ChaCha8Rng::from_entropy())),
        }
    }

    /// A new, independent generator seeded from this one's stream.
    pub fn fork(&self) -> Self {
        Self::from_seed(Rng::next_u64(self))
    }
}

impl Rng for SeededRng {
    fn next_u64(&self) -> u64 {
        // A poisoned lock only means another thread panicked mid-draw; the
        // generator state is still a valid state.
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let a = SeededRng::from_seed(42);
        let b = SeededRng::from_seed(42);
        let draws_a: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let draws_b: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(draws_a, draws_b);
        let c = SeededRng::from_seed(43);
        assert_ne!(draws_a[0], c.next_u64());
    }

    #[test]
    fn bounded_draws_stay_in_bounds() {
        let rng = SeededRng::from_seed(1);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
            let v = rng.in_range(10, 12);
            assert!((10..=12).contains(&v), "{v}");
        }
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.in_range(5, 5), 5);
        assert!(!rng.chance(0, 10));
        assert!(rng.chance(10, 10));
        assert!(!rng.bernoulli(0.0));
        assert!(rng.bernoulli(1.0));
    }
}
