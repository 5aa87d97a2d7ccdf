//! [`ManualClock`]: time that moves only when a test (or a sleep) moves it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::call_log::lock;
use crate::engine::ports::Clock;

/// A clock that moves only when told to (or when the engine sleeps). Clones share it.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<OffsetDateTime>>,
}

impl ManualClock {
    /// A clock at `start`.
    pub fn at(start: OffsetDateTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: time::Duration) {
        *lock(&self.now) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *lock(&self.now)
    }

    async fn sleep(&self, duration: Duration) {
        *lock(&self.now) += duration;
    }
}
