//! The scheduled run's rules, as one pure function: [`plan`] takes what is known about a
//! secret ([`Facts`]), the run's options and the time, and says what to do ([`Plan`]). No
//! call is made here; [`super::schedule`] gathers the facts and carries the plan out.
//!
//! The rules, the first that applies:
//!
//! | facts | plan |
//! |---|---|
//! | the current selector is tagged rejected (a rollback stopped half-way) | [`Plan::RollBack`] again, to finish it |
//! | Secrets Manager rotation is off, and an unfinished rotation (`AWSPENDING`) exists | [`Plan::Resume`] it |
//! | Secrets Manager rotation is off, and the key is due (older than its due date, never rotated, or `force`) | [`Plan::Rotate`] |
//! | SES's status for the current selector is `PENDING` | [`Plan::Pending`] (an alert when it lasts) |
//! | it is `TEMPORARY_FAILURE` (a verified record stopped resolving) | [`Plan::TemporaryFailure`] |
//! | it is `FAILED` | [`Plan::RollBack`] to the previous key |
//! | it is `SUCCESS` and not yet recorded | [`Plan::Confirm`] (the grace clock starts) |
//! | the current selector is confirmed but the time was not recorded | [`Plan::StartGraceClock`] |
//! | the previous selector's grace period is over | [`Plan::Retire`] |
//! | otherwise | [`Plan::Skip`], with the reason |
//!
//! A key's due date is the interval after it was made, less a stable share of the interval's
//! last tenth fixed by the secret's ARN ([`super::spread::rotation_due`]): a fleet made on one
//! day does not come due on one day.
//!
//! SES's status counts only when SES signs with the current selector: SES's status of an
//! Easy DKIM identity, or of another selector, says nothing about this rotator's key.
//!
//! When Secrets Manager rotates the secret itself, this function never rotates it (that would
//! rotate twice): it only confirms and retires.

use serde::Serialize;
use time::OffsetDateTime;

use super::ports::DkimStatus;
use super::retirement::RetireDecision;
use super::spread::rotation_due;

/// What a scheduled run knows about one secret before it acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The secret's ARN (its due date is spread by it, see [`super::spread`]).
    pub secret_arn: String,
    /// Secrets Manager's own rotation is enabled for the secret.
    pub secrets_manager_rotates: bool,
    /// The version id of an unfinished rotation (`AWSPENDING`, not `AWSCURRENT`).
    pub unfinished_rotation: Option<String>,
    /// Whether `AWSCURRENT` holds a key at all.
    pub has_key: bool,
    /// When the current key was made, when recorded.
    pub key_created: Option<OffsetDateTime>,
    /// The current selector.
    pub current_selector: Option<String>,
    /// Whether the current selector is tagged rejected by SES: a rollback that stopped
    /// half-way (it tags the rejection before anything moves).
    pub current_rejected: bool,
    /// SES's DKIM status.
    pub ses_status: Option<DkimStatus>,
    /// Whether SES signs with the current selector (origin `EXTERNAL`, selector in `Tokens`).
    pub ses_on_current: bool,
    /// When SES was switched to the current selector, when recorded.
    pub switched_at: Option<OffsetDateTime>,
    /// The selector last recorded as confirmed (`SUCCESS`) by SES.
    pub confirmed_selector: Option<String>,
    /// Where the previous selector stands (see [`super::retirement::assess`]).
    pub retirement: RetireDecision,
}

impl Facts {
    /// When a key made at `created` falls due (the interval, spread by the ARN).
    fn rotation_due(&self, created: OffsetDateTime, options: PlanOptions) -> OffsetDateTime {
        rotation_due(&self.secret_arn, created, options.rotation_interval)
    }
}

/// The options of a run that change the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Rotate even a key younger than the interval.
    pub force: bool,
    /// `DKIM_ROTATION_INTERVAL_DAYS`.
    pub rotation_interval: time::Duration,
}

/// Why nothing is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// The key is younger than the rotation interval, and nothing else is due.
    KeyNotDue {
        /// When the key becomes due, when known.
        #[serde(
            skip_serializing_if = "Option::is_none",
            with = "time::serde::rfc3339::option"
        )]
        due_at: Option<OffsetDateTime>,
    },
    /// SES has not confirmed the current selector: the previous one stays.
    AwaitingConfirmation {
        /// The previous selector.
        selector: String,
    },
    /// The previous selector's grace period runs.
    GracePeriod {
        /// The previous selector.
        selector: String,
        /// When the grace period ends.
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
}

/// What to do for one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Finish the unfinished rotation of this version.
    Resume {
        /// Its version id (the rotation's token).
        token: String,
    },
    /// Rotate a new key in.
    Rotate,
    /// SES still checks DNS for the current selector.
    Pending {
        /// Since when (the switch), when recorded.
        since: Option<OffsetDateTime>,
    },
    /// SES verified the current selector once, but its record stopped resolving.
    TemporaryFailure,
    /// SES rejected the current selector (`FAILED`): put the previous key back.
    RollBack {
        /// The selector SES rejected.
        rejected: String,
    },
    /// SES confirmed the current selector: record it.
    Confirm {
        /// The selector confirmed.
        selector: String,
    },
    /// Start the previous selector's grace period now (no switch time was recorded).
    StartGraceClock(RetireDecision),
    /// The previous selector's grace period is over: retire it.
    Retire(RetireDecision),
    /// Nothing to do.
    Skip(SkipReason),
}

/// The scheduled run's rules (see the module's table). Pure.
pub fn plan(facts: &Facts, options: PlanOptions, now: OffsetDateTime) -> Plan {
    if let Some(selector) = facts
        .current_selector
        .as_ref()
        .filter(|_| facts.current_rejected)
    {
        return Plan::RollBack {
            rejected: selector.clone(),
        };
    }
    if !facts.secrets_manager_rotates {
        if let Some(token) = &facts.unfinished_rotation {
            return Plan::Resume {
                token: token.clone(),
            };
        }
        let due = options.force
            || !facts.has_key
            || facts
                .key_created
                .is_none_or(|created| now >= facts.rotation_due(created, options));
        if due {
            return Plan::Rotate;
        }
    }
    if let Some(selector) = facts
        .current_selector
        .as_ref()
        .filter(|_| facts.ses_on_current)
    {
        match &facts.ses_status {
            Some(DkimStatus::Pending | DkimStatus::NotStarted) => {
                return Plan::Pending {
                    since: facts.switched_at,
                };
            }
            Some(DkimStatus::TemporaryFailure) => return Plan::TemporaryFailure,
            Some(DkimStatus::Failed) => {
                return Plan::RollBack {
                    rejected: selector.clone(),
                };
            }
            Some(DkimStatus::Success) if facts.confirmed_selector.as_ref() != Some(selector) => {
                return Plan::Confirm {
                    selector: selector.clone(),
                };
            }
            _ => {}
        }
    }
    match &facts.retirement {
        decision @ RetireDecision::StartGrace { .. } => Plan::StartGraceClock(decision.clone()),
        decision @ RetireDecision::Due { .. } => Plan::Retire(decision.clone()),
        RetireDecision::GracePeriod { selector, until } => Plan::Skip(SkipReason::GracePeriod {
            selector: selector.clone(),
            until: *until,
        }),
        RetireDecision::AwaitingConfirmation { selector } => {
            Plan::Skip(SkipReason::AwaitingConfirmation {
                selector: selector.clone(),
            })
        }
        RetireDecision::NothingToRetire | RetireDecision::AlreadyRetired { .. } => {
            Plan::Skip(SkipReason::KeyNotDue {
                due_at: facts
                    .key_created
                    .map(|created| facts.rotation_due(created, options)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-06-15 12:00 UTC);

    fn options() -> PlanOptions {
        PlanOptions {
            force: false,
            rotation_interval: time::Duration::days(90),
        }
    }

    /// When [`settled`]'s key falls due: 90 days after it was made, less its ARN's spread.
    fn settled_due() -> OffsetDateTime {
        let due = rotation_due(
            &settled().secret_arn,
            NOW - time::Duration::days(10),
            time::Duration::days(90),
        );
        assert!(due > NOW + time::Duration::days(71) && due <= NOW + time::Duration::days(80));
        due
    }

    /// A secret rotated 10 days ago, confirmed, previous selector retired.
    fn settled() -> Facts {
        Facts {
            secret_arn: "arn:aws:secretsmanager:us-east-1:1:secret:dkim/a-x".into(),
            secrets_manager_rotates: false,
            unfinished_rotation: None,
            has_key: true,
            key_created: Some(NOW - time::Duration::days(10)),
            current_selector: Some("cur".into()),
            current_rejected: false,
            ses_status: Some(DkimStatus::Success),
            ses_on_current: true,
            switched_at: Some(NOW - time::Duration::days(10)),
            confirmed_selector: Some("cur".into()),
            retirement: RetireDecision::AlreadyRetired {
                selector: "prev".into(),
            },
        }
    }

    #[test]
    fn the_rule_table() {
        let until = NOW + time::Duration::days(2);
        let cases: Vec<(&str, Facts, PlanOptions, Plan)> = vec![
            (
                "settled and young: skip until due",
                settled(),
                options(),
                Plan::Skip(SkipReason::KeyNotDue {
                    due_at: Some(settled_due()),
                }),
            ),
            (
                "the current selector tagged rejected: finish the rollback, whatever SES says now",
                Facts {
                    current_rejected: true,
                    ses_on_current: false,
                    ses_status: Some(DkimStatus::Pending),
                    unfinished_rotation: Some("tok".into()),
                    key_created: Some(NOW - time::Duration::days(90)),
                    ..settled()
                },
                options(),
                Plan::RollBack {
                    rejected: "cur".into(),
                },
            ),
            (
                "unfinished rotation: resume, before anything but a rollback",
                Facts {
                    unfinished_rotation: Some("tok".into()),
                    ses_status: Some(DkimStatus::Failed),
                    ..settled()
                },
                options(),
                Plan::Resume {
                    token: "tok".into(),
                },
            ),
            (
                "key older than the interval: rotate",
                Facts {
                    key_created: Some(NOW - time::Duration::days(90)),
                    ..settled()
                },
                options(),
                Plan::Rotate,
            ),
            (
                "never rotated: rotate",
                Facts {
                    has_key: false,
                    key_created: None,
                    current_selector: None,
                    ..settled()
                },
                options(),
                Plan::Rotate,
            ),
            (
                "key without a creation time: rotate",
                Facts {
                    key_created: None,
                    ..settled()
                },
                options(),
                Plan::Rotate,
            ),
            (
                "force: rotate a young key",
                settled(),
                PlanOptions {
                    force: true,
                    ..options()
                },
                Plan::Rotate,
            ),
            (
                "Secrets Manager rotates: never rotate here, even when due or unfinished",
                Facts {
                    secrets_manager_rotates: true,
                    unfinished_rotation: Some("tok".into()),
                    key_created: Some(NOW - time::Duration::days(400)),
                    ..settled()
                },
                PlanOptions {
                    force: true,
                    ..options()
                },
                Plan::Skip(SkipReason::KeyNotDue {
                    due_at: Some(rotation_due(
                        &settled().secret_arn,
                        NOW - time::Duration::days(400),
                        time::Duration::days(90),
                    )),
                }),
            ),
            (
                "SES pending, since the switch",
                Facts {
                    ses_status: Some(DkimStatus::Pending),
                    ..settled()
                },
                options(),
                Plan::Pending {
                    since: Some(NOW - time::Duration::days(10)),
                },
            ),
            (
                "SES temporary failure: told, not rolled back",
                Facts {
                    ses_status: Some(DkimStatus::TemporaryFailure),
                    ..settled()
                },
                options(),
                Plan::TemporaryFailure,
            ),
            (
                "SES failed the current selector: roll back",
                Facts {
                    ses_status: Some(DkimStatus::Failed),
                    ..settled()
                },
                options(),
                Plan::RollBack {
                    rejected: "cur".into(),
                },
            ),
            (
                "SES's status of another selector (or Easy DKIM) is not ours: no rollback",
                Facts {
                    ses_status: Some(DkimStatus::Failed),
                    ses_on_current: false,
                    ..settled()
                },
                options(),
                Plan::Skip(SkipReason::KeyNotDue {
                    due_at: Some(settled_due()),
                }),
            ),
            (
                "current selector not confirmed: the previous one stays",
                Facts {
                    retirement: RetireDecision::AwaitingConfirmation {
                        selector: "prev".into(),
                    },
                    ..settled()
                },
                options(),
                Plan::Skip(SkipReason::AwaitingConfirmation {
                    selector: "prev".into(),
                }),
            ),
            (
                "SES success not yet recorded: confirm",
                Facts {
                    confirmed_selector: Some("older".into()),
                    ..settled()
                },
                options(),
                Plan::Confirm {
                    selector: "cur".into(),
                },
            ),
            (
                "no switch time recorded: start the grace clock",
                Facts {
                    retirement: RetireDecision::StartGrace {
                        selector: "prev".into(),
                        current: "cur".into(),
                    },
                    ..settled()
                },
                options(),
                Plan::StartGraceClock(RetireDecision::StartGrace {
                    selector: "prev".into(),
                    current: "cur".into(),
                }),
            ),
            (
                "grace period running: skip with its end",
                Facts {
                    retirement: RetireDecision::GracePeriod {
                        selector: "prev".into(),
                        until,
                    },
                    ..settled()
                },
                options(),
                Plan::Skip(SkipReason::GracePeriod {
                    selector: "prev".into(),
                    until,
                }),
            ),
            (
                "grace period over: retire",
                Facts {
                    retirement: RetireDecision::Due {
                        selector: "prev".into(),
                    },
                    ..settled()
                },
                options(),
                Plan::Retire(RetireDecision::Due {
                    selector: "prev".into(),
                }),
            ),
            (
                "SES pending holds retirement back",
                Facts {
                    ses_status: Some(DkimStatus::Pending),
                    retirement: RetireDecision::Due {
                        selector: "prev".into(),
                    },
                    ..settled()
                },
                options(),
                Plan::Pending {
                    since: Some(NOW - time::Duration::days(10)),
                },
            ),
        ];
        for (name, facts, options, expected) in cases {
            assert_eq!(plan(&facts, options, NOW), expected, "{name}");
        }
    }
}
