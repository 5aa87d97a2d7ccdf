//! Client-side pacing: the function sends each service at most its share of AWS's quota, so a
//! call waits its turn here instead of being throttled there.
//!
//! SESv2 throttles every action but sending at 1 request per second per account and region
//! (SES developer guide, "Service quotas in Amazon SES"; not adjustable). A [`Pacer`] keeps one
//! lane per region and gives out slots at its [`Rate`]; [`PacedSes`] takes a slot before every
//! SES call (and a call SES throttled anyway is sent again on a later slot, up to
//! [`PACED_RETRIES`] times). When the next slot is further away than the pacer's longest wait, the call is not
//! sent at all: it fails at once as [`FailureKind::Throttled`], and the caller brings the work
//! back later (the queue worker re-sends it with a delay, a scheduled run leaves it to the next
//! run). Such a throttle is never a failure of the identity.
//!
//! The rate is this process's share: the budget for the account and region divided by how many
//! invocations may run at once (`DKIM_SES_REQUESTS_PER_SECOND`, `DKIM_QUEUE_MAX_CONCURRENCY`; see
//! `config`). The algorithm is the generic cell rate algorithm: one "theoretical arrival time"
//! per lane, which is a token bucket kept as a single instant.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use super::ports::{Clock, DkimSigningService, FailureKind, IdentityPage, PortError, SesDkimState};
use crate::secret_text::SecretText;

/// A steady rate with a burst: `burst` calls may go at once, then one per `1 / per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Calls per second, on average.
    pub per_second: f64,
    /// Calls that may go back to back after a quiet spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// The time between two calls at the steady rate.
    fn interval(self) -> time::Duration {
        time::Duration::seconds_f64(1.0 / self.per_second)
    }
}

/// Slots per lane at one [`Rate`], none further away than `max_wait`.
#[derive(Debug)]
pub struct Pacer {
    rate: Rate,
    max_wait: Duration,
    /// Per lane: when the next call would be due if the lane had no burst left.
    lanes: Mutex<HashMap<String, OffsetDateTime>>,
}

impl Pacer {
    /// A pacer giving out `rate` per lane; a call whose slot is more than `max_wait` away is
    /// refused rather than kept waiting.
    pub fn new(rate: Rate, max_wait: Duration) -> Self {
        assert!(
            rate.per_second > 0.0 && rate.burst >= 1,
            "a rate is positive"
        );
        Self {
            rate,
            max_wait,
            lanes: Mutex::default(),
        }
    }

    /// The rate of each lane.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes the next slot of `lane` at `now`: `Ok(wait)` (wait that long, then call), or
    /// `Err(wait)` when the slot is further away than the longest wait; nothing is taken then.
    pub fn reserve(&self, lane: &str, now: OffsetDateTime) -> Result<Duration, Duration> {
        let interval = self.rate.interval();
        let tolerance = interval * (self.rate.burst - 1);
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let due = lanes.get(lane).copied().unwrap_or(now).max(now);
        let start = (due - tolerance).max(now);
        let wait = Duration::try_from(start - now).unwrap_or_default();
        if wait > self.max_wait {
            return Err(wait);
        }
        lanes.insert(lane.to_owned(), due + interval);
        Ok(wait)
    }

    /// Moves `lane`'s next slot half an interval later (from `now` at the earliest): after
    /// SES throttled a paced call, this process's turns were in step with another sender's
    /// (two queue workers, each at its share, started together). Half an interval out of step
    /// they never meet again while each keeps its share.
    pub fn fall_out_of_step(&self, lane: &str, now: OffsetDateTime) {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let due = lanes.get(lane).copied().unwrap_or(now).max(now);
        lanes.insert(lane.to_owned(), due + self.rate.interval() / 2);
    }
}

/// An SES port that takes a [`Pacer`] slot (per region) before every call.
#[derive(Debug, Clone)]
pub struct PacedSes<S, C> {
    inner: S,
    pacer: Arc<Pacer>,
    clock: C,
    /// The region a call that names none goes to (the function's own).
    home_region: String,
    /// How many more turns a call SES throttled gets ([`PACED_RETRIES`] unless set).
    retries: u32,
}

impl<S, C> PacedSes<S, C> {
    /// `inner`, paced by `pacer` on `clock`; calls naming no region count against
    /// `home_region`'s lane.
    pub fn new(inner: S, pacer: Arc<Pacer>, clock: C, home_region: impl Into<String>) -> Self {
        Self {
            inner,
            pacer,
            clock,
            home_region: home_region.into(),
            retries: PACED_RETRIES,
        }
    }

    /// The same port giving a throttled call `retries` more turns instead of
    /// [`PACED_RETRIES`].
    pub fn with_retries(self, retries: u32) -> Self {
        Self { retries, ..self }
    }

    /// The paced port.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: DkimSigningService, C: Clock> PacedSes<S, C> {
    /// Waits for `region`'s next slot, or refuses the call when it is too far away.
    async fn turn(&self, operation: &'static str, region: Option<&str>) -> Result<(), PortError> {
        let region = region.unwrap_or(&self.home_region);
        match self.pacer.reserve(region, self.clock.now()) {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                self.clock.sleep(wait).await;
                Ok(())
            }
            Err(wait) => Err(PortError {
                service: "SESv2",
                operation,
                kind: FailureKind::Throttled,
                message: format!(
                    "not sent: this function's share of the SES quota in {region} ({}/s) is taken for the next {} s; the work comes back later",
                    self.pacer.rate().per_second,
                    wait.as_secs()
                ),
            }),
        }
    }
}

/// How many more times a call SES throttled anyway (or failed on its side) is sent, each on a
/// new paced turn. SES still throttles a paced call now and then: a request that reaches it
/// early through network jitter, another caller in the account. Retrying on the next turn
/// keeps even those within the share.
pub const PACED_RETRIES: u32 = 3;

/// Whether `result` is worth another paced turn: SES throttled it, or failed on its side
/// (5xx, a timeout). The assembled SES client makes one attempt a call, so every retry is a
/// paced one.
fn worth_another_turn<T>(result: &Result<T, PortError>, attempt: u32, retries: u32) -> bool {
    attempt < retries
        && matches!(result, Err(e) if matches!(e.kind, FailureKind::Throttled | FailureKind::Unavailable))
}

impl<S: DkimSigningService, C: Clock> PacedSes<S, C> {
    /// `call` on a paced turn, sent again on the next turn while SES throttles it (at most
    /// `retries` more times).
    async fn paced<T, F>(
        &self,
        operation: &'static str,
        region: Option<&str>,
        call: impl Fn() -> F,
    ) -> Result<T, PortError>
    where
        F: Future<Output = Result<T, PortError>>,
    {
        let mut attempt = 0;
        loop {
            self.turn(operation, region).await?;
            let result = call().await;
            if !worth_another_turn(&result, attempt, self.retries) {
                return result;
            }
            if matches!(&result, Err(e) if e.kind == FailureKind::Throttled) {
                let lane = region.unwrap_or(&self.home_region);
                self.pacer.fall_out_of_step(lane, self.clock.now());
            }
            attempt += 1;
        }
    }
}

impl<S: DkimSigningService, C: Clock> DkimSigningService for PacedSes<S, C> {
    async fn dkim_state(
        &self,
        identity: &str,
        region: Option<&str>,
    ) -> Result<Option<SesDkimState>, PortError> {
        self.paced("GetEmailIdentity", region, || {
            self.inner.dkim_state(identity, region)
        })
        .await
    }

    async fn sign_with_external_key(
        &self,
        identity: &str,
        region: Option<&str>,
        selector: &str,
        private_key: &SecretText,
    ) -> Result<(), PortError> {
        self.paced("PutEmailIdentityDkimSigningAttributes", region, || {
            self.inner
                .sign_with_external_key(identity, region, selector, private_key)
        })
        .await
    }

    async fn list_identities(
        &self,
        region: Option<&str>,
        page: Option<&str>,
    ) -> Result<IdentityPage, PortError> {
        self.paced("ListEmailIdentities", region, || {
            self.inner.list_identities(region, page)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

    fn secs(s: f64) -> time::Duration {
        time::Duration::seconds_f64(s)
    }

    #[test]
    fn slots_are_one_interval_apart_after_the_burst() {
        let pacer = Pacer::new(
            Rate {
                per_second: 1.0,
                burst: 2,
            },
            Duration::from_secs(60),
        );
        let waits: Vec<Duration> = (0..5)
            .map(|_| pacer.reserve("eu-west-1", T0).unwrap())
            .collect();
        let expected: Vec<Duration> = [0, 0, 1, 2, 3].map(Duration::from_secs).to_vec();
        assert_eq!(waits, expected);
        // Another region has its own lane.
        assert_eq!(pacer.reserve("us-east-1", T0), Ok(Duration::ZERO));
    }

    #[test]
    fn a_quiet_lane_refills_up_to_the_burst_only() {
        let pacer = Pacer::new(
            Rate {
                per_second: 0.5,
                burst: 2,
            },
            Duration::from_secs(60),
        );
        pacer.reserve("r", T0).unwrap();
        let later = T0 + secs(3600.0);
        assert_eq!(pacer.reserve("r", later), Ok(Duration::ZERO));
        assert_eq!(pacer.reserve("r", later), Ok(Duration::ZERO));
        assert_eq!(pacer.reserve("r", later), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn a_slot_beyond_the_longest_wait_is_refused_and_not_taken() {
        let pacer = Pacer::new(
            Rate {
                per_second: 0.1,
                burst: 1,
            },
            Duration::from_secs(15),
        );
        assert_eq!(pacer.reserve("r", T0), Ok(Duration::ZERO));
        assert_eq!(pacer.reserve("r", T0), Ok(Duration::from_secs(10)));
        assert_eq!(pacer.reserve("r", T0), Err(Duration::from_secs(20)));
        // The refusal took nothing: 12 s on, the next slot is 8 s away, not 18.
        assert_eq!(
            pacer.reserve("r", T0 + secs(12.0)),
            Ok(Duration::from_secs(8))
        );
    }

    #[test]
    fn calls_in_a_window_never_exceed_rate_times_window_plus_burst() {
        let rate = Rate {
            per_second: 2.0,
            burst: 3,
        };
        let pacer = Pacer::new(rate, Duration::from_secs(3600));
        let starts: Vec<OffsetDateTime> = (0..200)
            .map(|i| {
                let asked = T0 + secs(f64::from(i) * 0.01);
                asked + pacer.reserve("r", asked).unwrap()
            })
            .collect();
        for (i, first) in starts.iter().enumerate() {
            let window = secs(5.0);
            let inside = starts[i..].iter().filter(|s| **s < *first + window).count();
            assert!(inside <= 2 * 5 + 3, "{inside} calls in 5 s from call {i}");
        }
    }
}
