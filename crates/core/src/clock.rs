//! Time behind traits, so that tests inject it: [`Clock`] (wall-clock milliseconds, for
//! stored timestamps) and [`Clocks`] (wall and monotonic time, for the camera pipeline), each
//! with a real and a simulated implementation (as moonfire-nvr's `base/clock.rs`).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock and monotonic time of the camera pipeline.
pub trait Clocks: Send + Sync {
    /// Wall-clock time, for the timestamps of events.
    fn realtime(&self) -> SystemTime;
    /// Monotonic time, for ages, timeouts and latencies.
    fn monotonic(&self) -> Instant;
}

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClocks;

impl Clocks for RealClocks {
    fn realtime(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// Clocks that move only when told to: both advance together by [`SimulatedClocks::advance`].
#[derive(Debug)]
pub struct SimulatedClocks {
    boot_real: SystemTime,
    boot_mono: Instant,
    elapsed: Mutex<Duration>,
}

impl SimulatedClocks {
    /// Clocks starting at wall-clock time `boot`.
    pub fn new(boot: SystemTime) -> Self {
        Self {
            boot_real: boot,
            boot_mono: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap() += by;
    }
}

impl Clocks for SimulatedClocks {
    fn realtime(&self) -> SystemTime {
        self.boot_real + *self.elapsed.lock().unwrap()
    }

    fn monotonic(&self) -> Instant {
        self.boot_mono + *self.elapsed.lock().unwrap()
    }
}

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// RFC 3339 text of a millisecond timestamp, in UTC.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch of a system time.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Serde: an optional system time as RFC 3339 text (or null).
pub mod rfc3339_opt {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(super::unix_ms(*t))),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_clocks_move_together_and_only_when_told() {
        let boot = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = SimulatedClocks::new(boot);
        let (r0, m0) = (c.realtime(), c.monotonic());
        assert_eq!(r0, boot);
        assert_eq!((c.realtime(), c.monotonic()), (r0, m0));
        c.advance(Duration::from_millis(1500));
        assert_eq!(
            c.realtime().duration_since(r0).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(c.monotonic() - m0, Duration::from_millis(1500));
    }

    #[test]
    fn timestamps_print_as_rfc3339_utc() {
        assert_eq!(
            super::rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
