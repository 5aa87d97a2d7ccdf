//! [`ManualClock`]: time that moves only when a test (or a sleep) moves it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::call_log::lock;
use crate::engine::ports::Clock;

/// A clock that moves only when told to (or when the engine sleeps). Clones share it.
///
/// [`ManualClock::at`] moves by exactly what each sleep asks: right for one task at a time.
/// [`ManualClock::on_tokio_time`] is for many tasks at once (a fleet under a quota): it
/// follows tokio's clock, so a test run with `#[tokio::test(start_paused = true)]` gets
/// virtual time that jumps to the next sleeper's wake-up whenever every task waits; no real
/// time passes.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<OffsetDateTime>>,
    /// Set in tokio-time mode: tokio's instant at `now`'s start.
    tokio_origin: Option<tokio::time::Instant>,
}

impl ManualClock {
    /// A clock at `start`.
    pub fn at(start: OffsetDateTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
            tokio_origin: None,
        }
    }

    /// A clock at `start` that then follows tokio's (paused) time; sleeps are tokio sleeps.
    pub fn on_tokio_time(start: OffsetDateTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
            tokio_origin: Some(tokio::time::Instant::now()),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: time::Duration) {
        *lock(&self.now) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let base = *lock(&self.now);
        match self.tokio_origin {
            None => base,
            Some(origin) => base + origin.elapsed(),
        }
    }

    async fn sleep(&self, duration: Duration) {
        match self.tokio_origin {
            None => *lock(&self.now) += duration,
            Some(_) => tokio::time::sleep(duration).await,
        }
    }
}
