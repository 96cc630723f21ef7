//! The per-node clock seam.
//!
//! Every node reads time through its own [`Clock`]: a monotonic instant for
//! measuring intervals (leases, timeouts) and a wall time for timestamps shown
//! to people. Production uses the operating system via tokio
//! ([`SystemClock`]); the simulator gives each node a clock derived from
//! virtual time that can run fast or slow, jump, or stop while the node is
//! paused.
//!
//! Monotonic time never goes backwards on one node; wall time may (NTP steps,
//! or injected jumps in simulation). Never compare instants from two nodes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

/// A point on one node's monotonic clock, in nanoseconds since an arbitrary
/// per-node origin. Only meaningful relative to other instants of the same
/// node's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonotonicInstant {
    nanos: u64,
}

impl MonotonicInstant {
    /// The instant `nanos` nanoseconds after the clock's origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self { nanos }
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// The instant `duration` later, saturating at the end of time.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let add = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Self {
            nanos: self.nanos.saturating_add(add),
        }
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: MonotonicInstant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

impl fmt::Display for MonotonicInstant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}s", self.nanos / 1_000_000_000, self.nanos % 1_000_000_000)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch. May go backwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime {
    unix_ms: i64,
}

impl WallTime {
    /// Wall time `unix_ms` milliseconds after the Unix epoch.
    pub const fn from_unix_ms(unix_ms: i64) -> Self {
        Self { unix_ms }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_unix_ms(self) -> i64 {
        self.unix_ms
    }
}

/// A node's view of time.
///
/// Cancellation: dropping the future returned by [`Clock::sleep`] cancels the
/// timer; nothing else is affected.
pub trait Clock: Send + Sync + 'static {
    /// The current instant on this node's monotonic clock.
    fn now_monotonic(&self) -> MonotonicInstant;

    /// The current wall time on this node.
    fn now_wall(&self) -> WallTime;

    /// Completes once this node's monotonic clock has advanced by at least
    /// `duration` from the moment of the call.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The error of [`timeout`]: the deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {elapsed_ms} ms")]
pub struct Elapsed {
    /// The timeout that passed, in milliseconds.
    pub elapsed_ms: u64,
}

/// Runs `future` until it completes or `duration` passes on `clock`.
///
/// Cancellation: dropping the returned future drops `future` at its current
/// await point; callers must treat that like any other cancellation of it.
pub async fn timeout<F: std::future::Future>(
    clock: &dyn Clock,
    duration: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    let sleep = clock.sleep(duration);
    futures::pin_mut!(future);
    match futures::future::select(future, sleep).await {
        futures::future::Either::Left((output, _)) => Ok(output),
        futures::future::Either::Right(((), _)) => Err(Elapsed {
            elapsed_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// The production clock: the operating system's monotonic and real-time
/// clocks, with tokio timers. Must be used inside a tokio runtime.
///
/// Monotonic time is read through tokio's clock so that readings and
/// timers agree (also under tokio's paused test time).
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    #[allow(clippy::disallowed_methods)] // The one production reading of the OS monotonic clock.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one production reading of the OS monotonic clock.
    fn now_monotonic(&self) -> MonotonicInstant {
        let elapsed = tokio::time::Instant::now().duration_since(self.origin);
        MonotonicInstant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    #[allow(clippy::disallowed_methods)] // The one production reading of the OS wall clock.
    fn now_wall(&self) -> WallTime {
        let unix_ms = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        WallTime::from_unix_ms(unix_ms)
    }

    #[allow(clippy::disallowed_methods)] // The one production use of tokio timers.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let start = MonotonicInstant::from_nanos(u64::MAX - 5);
        assert_eq!(start.saturating_add(Duration::from_nanos(10)).as_nanos(), u64::MAX);
        let a = MonotonicInstant::from_nanos(100);
        let b = MonotonicInstant::from_nanos(40);
        assert_eq!(a.saturating_duration_since(b), Duration::from_nanos(60));
        assert_eq!(b.saturating_duration_since(a), Duration::ZERO);
        assert_eq!(MonotonicInstant::from_nanos(1_500_000_000).to_string(), "1.500000000s");
    }

    #[tokio::test(start_paused = true)]
    async fn system_clock_sleep_and_timeout() {
        let clock = SystemClock::new();
        let before = clock.now_monotonic();
        clock.sleep(Duration::from_millis(5)).await;
        assert!(clock.now_monotonic().saturating_duration_since(before) >= Duration::from_millis(5));
        let result = timeout(&clock, Duration::from_millis(10), futures::future::pending::<()>()).await;
        assert_eq!(result, Err(Elapsed { elapsed_ms: 10 }));
        let result = timeout(&clock, Duration::from_millis(10), async { 7 }).await;
        assert_eq!(result, Ok(7));
    }
}
