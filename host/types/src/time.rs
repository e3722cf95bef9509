//! The server clock and the retry schedules. The clock is injectable so the store conformance suite
//! can run on a fake clock, as the original's does.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct FakeClock(Mutex<SystemTime>);

impl FakeClock {
    pub fn at_seconds(secs: u64) -> Self {
        Self(Mutex::new(UNIX_EPOCH + Duration::from_secs(secs)))
    }
    pub fn set(&self, t: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }
    pub fn set_seconds(&self, secs: u64) {
        self.set(UNIX_EPOCH + Duration::from_secs(secs));
    }
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a message handed to a client stays leased before it is sent again.
pub const CLIENT_LEASE: Duration = Duration::from_secs(15 * 60);

/// When a client-bound message handed out now becomes due again.
pub fn client_retry_time(now: SystemTime) -> SystemTime {
    now + CLIENT_LEASE
}

/// When a server-bound message leased for the `n`th time becomes due again:
/// `60 s × 1.1^n × (1 + U[0,1))`, the original's schedule.
pub fn server_retry_time(now: SystemTime, n: u32) -> SystemTime {
    let jitter: f64 = rand::random();
    let secs = 60.0 * 1.1f64.powi(n.min(400) as i32) * (1.0 + jitter);
    // Past ~450 leases the delay exceeds any sensible horizon; cap it at a year.
    let secs = secs.min(365.0 * 86400.0);
    now + Duration::from_secs_f64(secs)
}

pub fn to_timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A timestamp as a system time; `None` if it is out of range (negative or nanos invalid).
pub fn from_timestamp(ts: &Timestamp) -> Option<SystemTime> {
    if ts.seconds < 0 || !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32))
}

pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub fn from_unix_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
}

pub fn from_unix_micros(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_retry_is_between_one_and_two_minutes_at_first() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        for _ in 0..100 {
            let d = server_retry_time(now, 0).duration_since(now).unwrap();
            assert!(
                d >= Duration::from_secs(60) && d < Duration::from_secs(120),
                "{d:?}"
            );
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let t = UNIX_EPOCH + Duration::new(42, 20000);
        assert_eq!(from_timestamp(&to_timestamp(t)), Some(t));
        assert_eq!(
            from_timestamp(&Timestamp {
                seconds: -1,
                nanos: 0
            }),
            None
        );
    }
}
