//! Spreading a fleet's work over time with no state kept: a stable hash of each secret's ARN
//! fixes its health-check day and how early in the last tenth of the rotation interval its
//! key falls due, so identities made on the same day (an onboarding) do not come due, and
//! queue up for SES's 1 request per second, on the same day ever after.
//!
//! The scheduled run's rules ([`super::plan`]) and the queue planner's ([`super::triage`])
//! both ask [`rotation_due`], so the planner and the worker it sends agree on the day.

use time::OffsetDateTime;

/// The part of the rotation interval over which due dates spread: a key falls due between
/// nine tenths of the interval and the whole interval after it was made, never later, so
/// `DKIM_STALE_KEY_DAYS` still holds.
pub const ROTATION_SPREAD_FRACTION: f64 = 0.1;

/// FNV-1a of `text`: the same number for the same text on every machine and run, to spread
/// a fleet's work evenly (health-check days, due dates, re-send delays) with no state kept.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// When the key of secret `arn`, made (or switched to) at `since`, falls due: `interval`
/// after `since`, less a stable share of [`ROTATION_SPREAD_FRACTION`] of it, to the second.
pub fn rotation_due(arn: &str, since: OffsetDateTime, interval: time::Duration) -> OffsetDateTime {
    let spread = (interval.whole_seconds() as f64 * ROTATION_SPREAD_FRACTION) as u64;
    let early = if spread == 0 {
        0
    } else {
        // Salted, so a secret's due offset does not follow its health-check day.
        stable_hash(&format!("rotation-due {arn}")) % spread
    };
    since + interval - time::Duration::seconds(early as i64)
}

/// Whether `now` falls on `arn`'s health-check day: one day in every `every_days` (0: never),
/// the same day of the period for the same ARN (FNV-1a of the ARN; days counted in UTC).
pub fn health_check_due(arn: &str, every_days: u32, now: OffsetDateTime) -> bool {
    if every_days == 0 {
        return false;
    }
    let period = u64::from(every_days);
    let slot = stable_hash(arn) % period;
    let day = now
        .unix_timestamp()
        .div_euclid(86_400)
        .rem_euclid(period as i64) as u64;
    day == slot
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    const MADE: OffsetDateTime = datetime!(2030-01-10 08:00 UTC);

    #[test]
    fn due_dates_of_a_fleet_made_on_one_day_spread_over_the_last_tenth_of_the_interval() {
        let interval = Duration::days(90);
        let due: Vec<OffsetDateTime> = (0..9_000)
            .map(|i| {
                rotation_due(
                    &format!("arn:aws:secretsmanager:us-east-1:1:secret:dkim/d{i}.example-AbCdEf"),
                    MADE,
                    interval,
                )
            })
            .collect();
        assert!(
            due.iter()
                .all(|d| *d > MADE + Duration::days(81) && *d <= MADE + interval)
        );
        // Nine days, about a thousand due on each: never the whole fleet on one day.
        for day in 0..9 {
            let from = MADE + Duration::days(81 + day);
            let on_day = due
                .iter()
                .filter(|d| **d > from && **d <= from + Duration::days(1))
                .count();
            assert!(
                (800..=1_200).contains(&on_day),
                "day {day}: {on_day} of 9,000"
            );
        }
        // Stable: the same secret falls due at the same offset every time.
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:dkim/a-x";
        assert_eq!(
            rotation_due(arn, MADE, interval) - MADE,
            rotation_due(arn, MADE + Duration::days(400), interval) - (MADE + Duration::days(400))
        );
    }

    #[test]
    fn an_interval_too_short_to_spread_is_kept_exactly() {
        assert_eq!(
            rotation_due("arn:x", MADE, Duration::seconds(5)),
            MADE + Duration::seconds(5)
        );
    }
}
