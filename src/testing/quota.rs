//! [`RequestQuota`]: AWS's request rates as the in-memory fakes enforce them, and the
//! [`TokenBuckets`] that count them on a manual clock.

use std::collections::BTreeMap;

use time::OffsetDateTime;

/// A request rate AWS enforces: a token bucket of `burst` requests refilled at `per_second`.
/// AWS publishes the rates; it does not publish the depth of its buckets, so `burst` is a
/// parameter (see docs/TESTING.md, "Quotas in the bed").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestQuota {
    /// Requests per second.
    pub per_second: f64,
    /// Requests a quiet caller may make back to back.
    pub burst: f64,
}

impl RequestQuota {
    /// SESv2, every action but sending: 1 request per second per account and region, not
    /// adjustable ("Service quotas in Amazon SES"); a burst of 1.
    pub const SES: Self = Self {
        per_second: 1.0,
        burst: 1.0,
    };

    /// Route 53: 5 requests per second per account, every zone and region together ("Quotas",
    /// Route 53 Developer Guide: `Throttling`, "Rate exceeded"); a bucket one second deep.
    pub const ROUTE53: Self = Self {
        per_second: 5.0,
        burst: 5.0,
    };

    /// Secrets Manager's write budgets, each 50 per second per region: `PutSecretValue`,
    /// `UpdateSecret` and `UpdateSecretVersionStage` together; `TagResource` and
    /// `UntagResource` together ("AWS Secrets Manager quotas"); a bucket one second deep.
    pub const SECRETS_WRITES: Self = Self {
        per_second: 50.0,
        burst: 50.0,
    };

    /// Every rate multiplied by `factor` (a test that scales time to run fast).
    pub fn scaled(self, factor: f64) -> Self {
        Self {
            per_second: self.per_second * factor,
            ..self
        }
    }
}

/// One token bucket per lane (a region, an account, a budget), refilled continuously; counts
/// what it refused and when it admitted each request.
#[derive(Debug, Default)]
pub(crate) struct TokenBuckets {
    /// Per lane: tokens left and when they were counted.
    buckets: BTreeMap<String, (f64, OffsetDateTime)>,
    /// Requests refused so far, every lane together.
    pub(crate) throttled: u64,
    /// When each admitted request was made, per lane.
    pub(crate) admitted: BTreeMap<String, Vec<OffsetDateTime>>,
}

impl TokenBuckets {
    /// Whether a request in `lane` at `now` is within `quota` (and takes its token if so).
    pub(crate) fn take(&mut self, quota: RequestQuota, lane: &str, now: OffsetDateTime) -> bool {
        let (tokens, counted) = self
            .buckets
            .entry(lane.to_owned())
            .or_insert((quota.burst, now));
        let elapsed = (now - *counted).as_seconds_f64().max(0.0);
        *tokens = (*tokens + elapsed * quota.per_second).min(quota.burst);
        *counted = now.max(*counted);
        // A hair of slack for float rounding at exactly one interval.
        if *tokens < 1.0 - 1e-9 {
            self.throttled += 1;
            return false;
        }
        *tokens -= 1.0;
        self.admitted.entry(lane.to_owned()).or_default().push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let start = datetime!(2030-01-01 00:00 UTC);
        let mut buckets = TokenBuckets::default();
        let admitted = (0..8)
            .filter(|_| buckets.take(RequestQuota::ROUTE53, "account", start))
            .count();
        assert_eq!((admitted, buckets.throttled), (5, 3));
        let later = start + time::Duration::milliseconds(200);
        assert!(buckets.take(RequestQuota::ROUTE53, "account", later));
        assert!(!buckets.take(RequestQuota::ROUTE53, "account", later));
        assert!(buckets.take(RequestQuota::ROUTE53, "another", later));
    }
}
