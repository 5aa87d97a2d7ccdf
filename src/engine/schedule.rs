//! Scheduled maintenance: what one EventBridge run does for each managed secret, with the
//! same engine as the four Secrets Manager steps, and the fleet runner that does it for many.
//!
//! For each secret, in order, the first that applies:
//! 1. Secrets Manager rotation is enabled → never rotate here (it would rotate twice); only
//!    confirm and retire.
//! 2. a rotation is in progress (an `AWSPENDING` version) → **resume** it with its token;
//! 3. `AWSCURRENT` is older than `DKIM_ROTATION_INTERVAL_DAYS`, never rotated, or `force` →
//!    **rotate** with a new token of this function's own;
//! 4. SES's status for the current selector is `PENDING` → report it (`pending`); once it is
//!    `SUCCESS` → **confirmed** (recorded as a tag);
//! 5. the previous selector's grace period is over → **retire** it;
//! 6. otherwise **skipped**, with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ports::{
    Clock, DkimSigningService, DnsPublisher, DnsTxtLookup, STAGE_CURRENT, STAGE_PENDING,
    SecretStore,
};
use super::retirement::RetireOutcome;
use super::rotation::{DnsRecord, RotationEngine, RotationRequest, Step, Trigger};
use crate::error::RotatorError;

/// Tag: the selector whose SES status was last seen `SUCCESS`.
pub const TAG_CONFIRMED: &str = "ses-dkim-rotator:confirmed";

/// Options of one scheduled run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintainOptions {
    /// Rotate even when the key is younger than the interval.
    pub force: bool,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// `DKIM_ROTATION_INTERVAL_DAYS`.
    pub rotation_interval: time::Duration,
    /// The invocation's deadline.
    pub deadline: Option<OffsetDateTime>,
}

/// What a scheduled run did (or, in a dry run, would do) for one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new key was rotated in.
    Rotated,
    /// An unfinished rotation was completed.
    Resumed,
    /// A rotation waits for its TXT record to appear in DNS (a person must add it).
    WaitingForDns,
    /// SES still checks DNS for the current selector.
    Pending,
    /// SES confirmed the current selector (`SUCCESS`).
    Confirmed,
    /// The previous selector was retired.
    Retired,
    /// Nothing to do.
    Skipped,
    /// Not started: the invocation had no time left; the next run does it.
    Deferred,
    /// Something failed; see `error`.
    Failed,
}

/// One secret's line in the summary. Never holds key material.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityReport {
    /// The secret.
    pub secret_id: String,
    /// What happened.
    pub action: Action,
    /// `true` in a dry run: `action` is what would happen.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub planned: bool,
    /// The identity, once read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The selector in use (or being rotated in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// SES's DKIM status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ses_status: Option<String>,
    /// Age of the key in `AWSCURRENT`, in days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_age_days: Option<f64>,
    /// Hours a pending key has waited for its DNS record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_hours: Option<f64>,
    /// A TXT record someone must add, or may now remove.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_record: Option<DnsRecord>,
    /// Why, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The error's type, when `action` is `failed` or `waiting_for_dns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The error's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl IdentityReport {
    fn new(secret_id: &str, action: Action) -> Self {
        Self {
            secret_id: secret_id.to_owned(),
            action,
            planned: false,
            identity: None,
            selector: None,
            ses_status: None,
            key_age_days: None,
            pending_hours: None,
            dns_record: None,
            detail: None,
            error_type: None,
            error: None,
        }
    }

    fn failed(secret_id: &str, error: &RotatorError) -> Self {
        let waiting = matches!(error, RotatorError::DnsNotVerified { .. });
        Self {
            error_type: Some(error.error_type().to_owned()),
            error: Some(error.to_string()),
            ..Self::new(
                secret_id,
                if waiting {
                    Action::WaitingForDns
                } else {
                    Action::Failed
                },
            )
        }
    }
}

/// The result of a scheduled run over many secrets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSummary {
    /// How many secrets of each action.
    pub counts: BTreeMap<Action, usize>,
    /// One line per secret, in the order given.
    pub identities: Vec<IdentityReport>,
}

impl FleetSummary {
    /// Whether any secret failed.
    pub fn has_failures(&self) -> bool {
        self.counts.get(&Action::Failed).copied().unwrap_or(0) > 0
    }
}

fn days_since(created_at: Option<&str>, now: OffsetDateTime) -> Option<f64> {
    let created = OffsetDateTime::parse(created_at?, &Rfc3339).ok()?;
    Some((now - created).as_seconds_f64() / 86_400.0)
}

impl<S, E, D, L, C> RotationEngine<S, E, D, L, C>
where
    S: SecretStore,
    E: DkimSigningService,
    D: DnsPublisher,
    L: DnsTxtLookup,
    C: Clock,
{
    /// The secrets tagged `key` = `value` (for scheduled runs).
    pub async fn list_tagged(&self, key: &str, value: &str) -> Result<Vec<String>, RotatorError> {
        Ok(self.store.list_tagged(key, value).await?)
    }

    /// Runs the four steps with this function's own `token`.
    async fn run_all_steps(
        &self,
        secret_id: &str,
        token: &str,
        deadline: Option<OffsetDateTime>,
    ) -> Result<super::rotation::StepReport, RotatorError> {
        let mut last = None;
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            let request = RotationRequest {
                deadline,
                trigger: Trigger::Schedule,
                ..RotationRequest::new(step, secret_id, token)
            };
            last = Some(self.run_step(&request).await?);
        }
        Ok(last.expect("four steps ran"))
    }

    /// One scheduled run for one secret. Never fails: a failure is the report's `action`.
    pub async fn maintain(&self, secret_id: &str, options: &MaintainOptions) -> IdentityReport {
        match self.try_maintain(secret_id, options).await {
            Ok(report) => report,
            Err((error, mut context)) => {
                let failed = IdentityReport::failed(secret_id, &error);
                context.action = failed.action;
                context.error_type = failed.error_type;
                context.error = failed.error;
                context.planned = false;
                context
            }
        }
    }

    async fn try_maintain(
        &self,
        secret_id: &str,
        options: &MaintainOptions,
    ) -> Result<IdentityReport, (RotatorError, IdentityReport)> {
        let mut report = IdentityReport::new(secret_id, Action::Skipped);
        let fail = |report: &IdentityReport| {
            let report = report.clone();
            move |error: RotatorError| (error, report)
        };
        let description = self
            .store
            .describe(secret_id)
            .await
            .map_err(|e| fail(&report)(e.into()))?;
        let (current, ses_state) = self
            .read_current_checked(secret_id)
            .await
            .map_err(fail(&report))?;
        let now = self.clock.now();
        report.identity = Some(current.identity.to_string());
        report.selector = current.key.as_ref().map(|k| k.selector.to_string());
        report.ses_status = ses_state.status.clone();
        report.key_age_days = current
            .key
            .as_ref()
            .and_then(|k| days_since(k.created_at.as_deref(), now));
        report.planned = options.dry_run;

        let in_progress = description
            .versions
            .iter()
            .find(|(_, stages)| {
                stages.iter().any(|s| s == STAGE_PENDING)
                    && !stages.iter().any(|s| s == STAGE_CURRENT)
            })
            .map(|(id, _)| id.clone());
        let due = options.force
            || match report.key_age_days {
                Some(age) => age >= options.rotation_interval.as_seconds_f64() / 86_400.0,
                None => true,
            };

        if description.rotation_enabled {
            report.detail = Some(
                "Secrets Manager rotation is enabled for this secret: it rotates, this run only confirms and retires".into(),
            );
        } else if in_progress.is_some() || due {
            let (token, action) = match in_progress {
                Some(token) => (token, Action::Resumed),
                None => (uuid::Uuid::new_v4().to_string(), Action::Rotated),
            };
            report.action = action;
            if options.dry_run {
                report.detail = Some(match action {
                    Action::Resumed => format!("would resume the rotation of version {token}"),
                    _ => "would rotate: the key is due (or forced)".into(),
                });
                return Ok(report);
            }
            let finished = self
                .run_all_steps(secret_id, &token, options.deadline)
                .await;
            return match finished {
                Ok(step) => {
                    report.selector = step.selector;
                    report.ses_status = step.ses_status;
                    report.dns_record = step.dns_record;
                    report.key_age_days = Some(0.0);
                    Ok(report)
                }
                Err(error) => {
                    // Describe what is pending so the person (and the metrics) know.
                    if let Ok(Some(stored)) = self
                        .store
                        .read(secret_id, super::ports::VersionRef::Pending(&token))
                        .await
                        && let Ok(doc) =
                            super::secret_doc::DkimSecret::parse(stored.secret_string.expose())
                        && let Some(key) = &doc.key
                    {
                        report.selector = Some(key.selector.to_string());
                        report.dns_record = Some(DnsRecord::for_key(&doc.identity, key));
                        report.pending_hours =
                            days_since(key.created_at.as_deref(), now).map(|days| days * 24.0);
                    }
                    Err((error, report))
                }
            };
        }

        // Not rotating: confirm SES's status, then retire.
        if let Some(selector) = current.key.as_ref().map(|k| k.selector.as_str()) {
            match ses_state.status.as_deref() {
                Some("PENDING" | "TEMPORARY_FAILURE") => {
                    report.action = Action::Pending;
                    report.detail =
                        Some("SES is still checking DNS for the current selector".into());
                    return Ok(report);
                }
                Some("SUCCESS")
                    if description.tags.get(TAG_CONFIRMED).map(String::as_str)
                        != Some(selector) =>
                {
                    report.action = Action::Confirmed;
                    if !options.dry_run {
                        self.store
                            .set_tags(secret_id, &[(TAG_CONFIRMED, selector)])
                            .await
                            .map_err(|e| fail(&report)(e.into()))?;
                    }
                    return Ok(report);
                }
                Some("FAILED") => {
                    let error = RotatorError::SesRejectedKey {
                        identity: current.identity.to_string(),
                        selector: selector.to_owned(),
                        status: "FAILED".into(),
                        action: "the current key is not verified by SES; check its TXT record, or run `dkim-rotator rollback`".into(),
                    };
                    return Err((error, report));
                }
                _ => {}
            }
        }
        if options.dry_run {
            report.detail = Some("would check the previous selector's grace period".into());
            return Ok(report);
        }
        let retired = self
            .retire_with(secret_id, &description, &current, &ses_state)
            .await
            .map_err(fail(&report))?;
        let why = match retired.outcome {
            RetireOutcome::Deleted | RetireOutcome::Revoked | RetireOutcome::RemovalHinted => {
                report.action = Action::Retired;
                format!(
                    "previous selector {} {:?}",
                    retired.selector.unwrap_or_default(),
                    retired.outcome
                )
            }
            RetireOutcome::GracePeriod => format!(
                "key is {:.1} days old; previous selector kept until {}",
                report.key_age_days.unwrap_or(0.0),
                retired.grace_until.unwrap_or_default()
            ),
            _ => format!(
                "key is {:.1} days old (rotates at {} days)",
                report.key_age_days.unwrap_or(0.0),
                options.rotation_interval.whole_days()
            ),
        };
        // Keep an earlier, more important reason (e.g. Secrets Manager owns rotation).
        report.detail = Some(match report.detail.take() {
            Some(earlier) => format!("{earlier}; {why}"),
            None => why,
        });
        Ok(report)
    }

    /// Maintains every secret in `secret_ids`, up to `max_concurrency` at once. No secret's
    /// failure stops another; a secret is not started when less than `budget` is left before
    /// the deadline (it is `deferred` to the next run).
    pub async fn maintain_fleet(
        &self,
        secret_ids: &[String],
        options: &MaintainOptions,
        max_concurrency: usize,
        budget: Duration,
    ) -> FleetSummary {
        let started = futures_util::stream::iter(secret_ids.iter().enumerate())
            .map(|(index, secret_id)| async move {
                let time_left = options
                    .deadline
                    .map(|deadline| deadline - self.clock.now())
                    .map(|left| left > budget)
                    .unwrap_or(true);
                let report = if time_left {
                    self.maintain(secret_id, options).await
                } else {
                    IdentityReport {
                        detail: Some("not started: too little time left in this invocation; the next run does it".into()),
                        ..IdentityReport::new(secret_id, Action::Deferred)
                    }
                };
                (index, report)
            })
            .buffer_unordered(max_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut identities = started;
        identities.sort_by_key(|(index, _)| *index);
        let identities: Vec<IdentityReport> = identities.into_iter().map(|(_, r)| r).collect();
        let mut counts = BTreeMap::new();
        for report in &identities {
            *counts.entry(report.action).or_insert(0) += 1;
        }
        FleetSummary { counts, identities }
    }
}
