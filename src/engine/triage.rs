//! The planner's rules (queue mode): from what `ListSecrets` says of a secret — its tags,
//! rotation flag and staging labels — and nothing else, whether a worker should look at it
//! now. No call is made here, and none per secret anywhere in the planner.
//!
//! The tags are the rotator's memory ([`super::tags`]): the switch (`switched-to`,
//! `switched-at`, `previous`), SES's confirmation (`confirmed`, `confirmed-at`) and the last
//! retirement (`retired`). The rules, the first that applies:
//!
//! | listing | triage |
//! |---|---|
//! | the run is forced | [`WorkReason::Forced`] |
//! | rotation is this function's, and a version is `AWSPENDING` but not `AWSCURRENT` | [`WorkReason::Resume`] |
//! | no switch recorded (never rotated here, or tags lost) | [`WorkReason::Untracked`]: the worker reads and decides |
//! | the switched-to selector is not confirmed (SES `PENDING`, or `FAILED` to roll back) | [`WorkReason::Watch`] |
//! | confirmed, but the confirmation time or `previous` is not recorded | [`WorkReason::Untracked`] |
//! | a previous selector not yet retired, its grace period (from confirmation) over | [`WorkReason::Retire`] |
//! | rotation is this function's, and the key is older than the interval (from the switch) | [`WorkReason::Rotate`] |
//! | today is the secret's health-check day (one day in every `DKIM_HEALTH_CHECK_DAYS`, fixed by its ARN) | [`WorkReason::HealthCheck`] |
//! | otherwise | [`Triage::Idle`], with the next time something falls due |
//!
//! A missing or unreadable tag sends the secret to a worker (which reads everything and
//! decides as the in-invocation run would); it never makes the planner skip work. The key's
//! age counts from the switch, a little after the key was made: the planner may send a
//! rotation a little later than the worker's own rule would, never earlier.
//!
//! What the tags cannot show is SES changing its mind about a confirmed selector
//! (`TEMPORARY_FAILURE` or `FAILED` long after `SUCCESS`, when a record stops resolving). So
//! every identity also gets a health check: one day in every `DKIM_HEALTH_CHECK_DAYS` it is
//! sent although nothing is due, and the worker reads SES (and alerts) as for any other run.
//! The day is fixed by a stable hash of the secret's ARN ([`super::spread`]), so a fleet's
//! checks spread evenly over the period with no state kept anywhere; with the daily schedule
//! each identity is looked at exactly once per period. The key's due date is spread the same
//! way, by the function the scheduled run's rules use.

use serde::Serialize;
use time::OffsetDateTime;

use super::plan::PlanOptions;
use super::ports::SecretDescription;
use super::spread::{health_check_due, rotation_due};
use super::tags::RotatorTags;

/// Why a secret goes to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkReason {
    /// Named in the run's payload or in `DKIM_SECRET_IDS`: always sent.
    Named,
    /// The run was forced.
    Forced,
    /// An unfinished rotation waits.
    Resume,
    /// The tags do not say enough: the worker reads the secret and decides.
    Untracked,
    /// SES has not confirmed the switched-to selector yet.
    Watch,
    /// The previous selector's grace period is over.
    Retire,
    /// The key is due.
    Rotate,
    /// Nothing is due, but it is the secret's day for a look at SES.
    HealthCheck,
}

impl WorkReason {
    /// Whether the worker may rotate a key for this reason (the due key, and a secret this
    /// rotator has no record of, which is most often one never rotated): what a planner's
    /// per-run rotation cap counts. Work named in the payload or forced is never held back.
    pub fn may_rotate(self) -> bool {
        matches!(self, Self::Rotate | Self::Untracked)
    }
}

/// The planner's decision for one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triage {
    /// Send it to a worker.
    Send(WorkReason),
    /// Nothing to do until `next` (when known).
    Idle {
        /// When the next thing falls due.
        next: Option<OffsetDateTime>,
    },
}

/// The planner's rules (see the module's table). Pure.
pub fn triage(
    listing: &SecretDescription,
    options: PlanOptions,
    grace: time::Duration,
    health_check_days: u32,
    now: OffsetDateTime,
) -> Triage {
    let tags = RotatorTags::of(&listing.tags);
    let ours_to_rotate = !listing.rotation_enabled;
    if options.force {
        return Triage::Send(WorkReason::Forced);
    }
    if ours_to_rotate && listing.unfinished_rotation().is_some() {
        return Triage::Send(WorkReason::Resume);
    }
    let (Some(switched_to), Some(switched_at)) = (tags.switched_to.as_deref(), tags.switched_at)
    else {
        return Triage::Send(WorkReason::Untracked);
    };
    if !tags
        .confirmed
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case(switched_to))
    {
        return Triage::Send(WorkReason::Watch);
    }
    let (Some(confirmed_at), Some(previous)) = (tags.confirmed_at, tags.previous.as_deref()) else {
        return Triage::Send(WorkReason::Untracked);
    };
    let mut next: Option<OffsetDateTime> = None;
    let retired = tags
        .retired
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case(previous));
    if !previous.is_empty() && !retired {
        let grace_over = confirmed_at + grace;
        if now >= grace_over {
            return Triage::Send(WorkReason::Retire);
        }
        next = Some(grace_over);
    }
    if ours_to_rotate {
        let due = rotation_due(&listing.arn, switched_at, options.rotation_interval);
        if now >= due {
            return Triage::Send(WorkReason::Rotate);
        }
        next = Some(next.map_or(due, |n| n.min(due)));
    }
    if health_check_due(&listing.arn, health_check_days, now) {
        return Triage::Send(WorkReason::HealthCheck);
    }
    Triage::Idle { next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ports::{STAGE_CURRENT, STAGE_PENDING};
    use crate::engine::tags::{
        TAG_CONFIRMED, TAG_CONFIRMED_AT, TAG_PREVIOUS, TAG_RETIRED, TAG_SWITCHED_AT,
        TAG_SWITCHED_TO,
    };
    use time::Duration;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-06-01 00:00 UTC);

    fn listing(tags: &[(&str, &str)]) -> SecretDescription {
        SecretDescription {
            arn: "arn:secret".into(),
            rotation_enabled: false,
            versions: [("v1".to_owned(), vec![STAGE_CURRENT.to_owned()])].into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn options(force: bool) -> PlanOptions {
        PlanOptions {
            force,
            rotation_interval: Duration::days(90),
        }
    }

    fn at(days_ago: i64) -> String {
        crate::engine::time_format::rfc3339(NOW - Duration::days(days_ago))
    }

    /// A secret switched `switched` days ago, confirmed `confirmed` days ago, with `previous`
    /// and (if given) `retired`.
    fn tracked(
        switched: i64,
        confirmed: i64,
        previous: &str,
        retired: Option<&str>,
    ) -> SecretDescription {
        let (s, c) = (at(switched), at(confirmed));
        let mut tags = vec![
            (TAG_SWITCHED_TO, "new"),
            (TAG_SWITCHED_AT, s.as_str()),
            (TAG_CONFIRMED, "new"),
            (TAG_CONFIRMED_AT, c.as_str()),
            (TAG_PREVIOUS, previous),
        ];
        if let Some(r) = retired {
            tags.push((TAG_RETIRED, r));
        }
        listing(&tags)
    }

    #[test]
    fn the_rule_table() {
        let grace = Duration::days(7);
        let send = Triage::Send;
        let mut pending = tracked(1, 1, "old", None);
        pending
            .versions
            .insert("v2".into(), vec![STAGE_PENDING.to_owned()]);
        let mut managed_elsewhere = tracked(100, 99, "old", Some("old"));
        managed_elsewhere.rotation_enabled = true;
        let unconfirmed = {
            let mut l = tracked(1, 1, "old", None);
            l.tags.insert(TAG_CONFIRMED.into(), "older".into());
            l
        };
        let no_previous_tag = {
            let mut l = tracked(10, 9, "", None);
            l.tags.remove(TAG_PREVIOUS);
            l
        };
        let bad_time = {
            let mut l = tracked(10, 9, "old", None);
            l.tags.insert(TAG_SWITCHED_AT.into(), "yesterday".into());
            l
        };
        let rows: Vec<(&str, SecretDescription, bool, Triage)> = vec![
            (
                "forced",
                tracked(1, 1, "old", Some("old")),
                true,
                send(WorkReason::Forced),
            ),
            (
                "unfinished rotation",
                pending,
                false,
                send(WorkReason::Resume),
            ),
            (
                "never rotated here",
                listing(&[]),
                false,
                send(WorkReason::Untracked),
            ),
            (
                "switch time unreadable",
                bad_time,
                false,
                send(WorkReason::Untracked),
            ),
            ("not confirmed", unconfirmed, false, send(WorkReason::Watch)),
            (
                "previous not recorded",
                no_previous_tag,
                false,
                send(WorkReason::Untracked),
            ),
            (
                "grace over",
                tracked(10, 8, "old", None),
                false,
                send(WorkReason::Retire),
            ),
            (
                "grace runs",
                tracked(3, 2, "old", None),
                false,
                Triage::Idle {
                    next: Some(NOW + Duration::days(5)),
                },
            ),
            (
                "retired, key young",
                tracked(30, 29, "old", Some("old")),
                false,
                Triage::Idle {
                    next: Some(rotation_due(
                        "arn:secret",
                        NOW - Duration::days(30),
                        Duration::days(90),
                    )),
                },
            ),
            (
                "first key, no previous, due",
                tracked(91, 90, "", None),
                false,
                send(WorkReason::Rotate),
            ),
            (
                "retired, key due",
                tracked(90, 89, "old", Some("old")),
                false,
                send(WorkReason::Rotate),
            ),
            (
                "Secrets Manager rotates it",
                managed_elsewhere,
                false,
                Triage::Idle { next: None },
            ),
        ];
        for (name, listing, force, expected) in rows {
            assert_eq!(
                triage(&listing, options(force), grace, 0, NOW),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn each_idle_secret_gets_one_health_check_per_period_and_a_fleet_spreads_evenly() {
        let grace = Duration::days(7);
        let idle = |arn: &str| {
            let mut l = tracked(30, 29, "old", Some("old"));
            l.arn = arn.to_owned();
            l
        };
        // One secret over three periods of 7 days: sent on exactly one day in each.
        let secret = idle("arn:aws:secretsmanager:eu-west-1:123456789012:secret:dkim/a-AbCdEf");
        let days: Vec<i64> = (0..21)
            .filter(|d| {
                let day = NOW + Duration::days(*d);
                triage(&secret, options(false), grace, 7, day)
                    == Triage::Send(WorkReason::HealthCheck)
            })
            .collect();
        assert_eq!(days.len(), 3, "{days:?}");
        assert!(days.windows(2).all(|w| w[1] - w[0] == 7), "{days:?}");
        // A fleet of 700: about a seventh is checked on any one day, never all or none.
        let fleet: Vec<SecretDescription> = (0..700)
            .map(|i| {
                idle(&format!(
                    "arn:aws:secretsmanager:us-east-1:1:secret:dkim/{i}-x"
                ))
            })
            .collect();
        for d in 0..7 {
            let day = NOW + Duration::days(d);
            let checked = fleet
                .iter()
                .filter(|s| matches!(triage(s, options(false), grace, 7, day), Triage::Send(_)))
                .count();
            assert!((60..=140).contains(&checked), "day {d}: {checked} of 700");
        }
        // Work that is due keeps its own reason; 0 turns health checks off.
        let due = tracked(90, 89, "old", Some("old"));
        for d in 0..7 {
            let day = NOW + Duration::days(d);
            assert_eq!(
                triage(&due, options(false), grace, 7, day),
                Triage::Send(WorkReason::Rotate)
            );
            assert!(matches!(
                triage(&secret, options(false), grace, 0, day),
                Triage::Idle { .. }
            ));
        }
    }

    #[test]
    fn the_planner_and_the_scheduled_rules_find_a_key_due_at_the_same_hour() {
        use crate::engine::plan::{Facts, Plan, plan};
        use crate::engine::ports::DkimStatus;
        use crate::engine::retirement::RetireDecision;
        let made = NOW - Duration::days(85);
        let mut offsets = std::collections::BTreeSet::new();
        for i in 0..50 {
            let mut listing = tracked(85, 85, "old", Some("old"));
            listing.arn = format!("arn:aws:secretsmanager:us-east-1:1:secret:dkim/d{i}-x");
            let facts = Facts {
                secret_arn: listing.arn.clone(),
                secrets_manager_rotates: false,
                unfinished_rotation: None,
                has_key: true,
                key_created: Some(made),
                current_selector: Some("new".into()),
                current_rejected: false,
                ses_status: Some(DkimStatus::Success),
                ses_on_current: true,
                switched_at: Some(made),
                confirmed_selector: Some("new".into()),
                retirement: RetireDecision::AlreadyRetired {
                    selector: "old".into(),
                },
            };
            let mut first_due = None;
            for hour in 0..(24 * 6) {
                let now = NOW + Duration::hours(hour);
                let planner = triage(&listing, options(false), Duration::days(7), 0, now)
                    == Triage::Send(WorkReason::Rotate);
                let scheduled = plan(&facts, options(false), now) == Plan::Rotate;
                assert_eq!(planner, scheduled, "{} at +{hour} h", listing.arn);
                if planner && first_due.is_none() {
                    first_due = Some(hour);
                }
            }
            offsets.insert(first_due);
        }
        // 85 days after the switch is within the spread (81 to 90 days): different secrets
        // fall due at different hours, some not yet within these six days.
        assert!(offsets.len() > 10, "{offsets:?}");
    }
}
