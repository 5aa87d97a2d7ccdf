//! Scheduled maintenance: gathers the [`Facts`] of each managed secret, asks
//! [`super::plan::plan`] what to do, and carries it out with the same engine as the four
//! Secrets Manager steps; [`Engine::maintain_fleet`] does it for many secrets at once.
//!
//! A scheduled rotation runs the four steps with a token of this function's own; an unfinished
//! one is resumed with its token. Confirmation (`SUCCESS`) is recorded in a tag; retirement
//! is [`super::retirement`]'s.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use super::error::EngineError;
use super::plan::{Facts, Plan, PlanOptions, SkipReason, plan};
use super::ports::{
    Deadline, DkimStatus, ListedPage, Ports, SecretDescription, SecretStore, SesDkimState,
};
use super::read_cache::CachedPorts;
use super::regions::SesView;
use super::retirement::{self, RetireOutcome, RetireReport};
use super::rotation::{RotationRequest, Step, StepReport, Trigger};
use super::secret_doc::{DkimSecret, DnsRecord};
use super::tags::{RotatorTags, TagUpdate};
use super::time_format::{days_between, parse_rfc3339};
use super::{Engine, VersionLabel};

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
    pub deadline: Deadline,
    /// An earlier visit published the pending key's record (a queue worker handed it back to
    /// look later): resuming, this visit only looks for it in DNS and writes nothing.
    pub record_published: bool,
}

impl MaintainOptions {
    fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            force: self.force,
            rotation_interval: self.rotation_interval,
        }
    }
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
    /// SES verified the current selector once, but its record stopped resolving.
    TemporaryFailure,
    /// SES confirmed the current selector (`SUCCESS`).
    Confirmed,
    /// SES rejected the current selector (`FAILED`); the previous key was put back.
    RolledBack,
    /// The previous selector was retired.
    Retired,
    /// Nothing to do.
    Skipped,
    /// Not started: the invocation had no time left; the next run does it.
    Deferred,
    /// Stopped by a service's quota (SES throttled it, or the function's own pacing had no
    /// slot soon enough): not a failure; the work comes back later and resumes where it was.
    Throttled,
    /// Something failed; see `error`.
    Failed,
}

/// Something a person should look at although nothing failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "alert", rename_all = "snake_case")]
pub enum Alert {
    /// SES has said `PENDING` for longer than `DKIM_PENDING_ALERT_HOURS`.
    VerificationOverdue {
        /// Hours since the switch.
        hours: f64,
    },
    /// DKIM signing is off for the identity (`SigningEnabled=false`) in these regions: mail
    /// goes out unsigned, and the rotator never turns it on or off (nor rotates the key).
    SigningDisabled {
        /// The regions, as the secret names them.
        regions: Vec<String>,
    },
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
    /// The SES regions the secret names (`region` / `regions`); empty: the function's own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// SES's DKIM status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ses_status: Option<DkimStatus>,
    /// Age of the key in `AWSCURRENT`, in days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_age_days: Option<f64>,
    /// Hours a pending key has waited for its DNS record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_hours: Option<f64>,
    /// Hours SES has said `PENDING` for the current selector (since the switch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ses_pending_hours: Option<f64>,
    /// Something to look at although nothing failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    /// A TXT record someone must add, or may now remove.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_record: Option<DnsRecord>,
    /// Why nothing was done, as data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkipReason>,
    /// What retirement did, when `action` is `retired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired: Option<RetireOutcome>,
    /// Whether SES was put back on the previous key in this run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
    /// Why, in words, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The error's type, when `action` is `failed` or `waiting_for_dns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    /// The error's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl IdentityReport {
    /// A report of `action` for `secret_id`, every other field empty.
    pub fn new(secret_id: &str, action: Action) -> Self {
        Self {
            secret_id: secret_id.to_owned(),
            action,
            planned: false,
            identity: None,
            selector: None,
            regions: Vec::new(),
            ses_status: None,
            key_age_days: None,
            pending_hours: None,
            ses_pending_hours: None,
            alert: None,
            dns_record: None,
            skipped: None,
            retired: None,
            rolled_back: false,
            detail: None,
            error_type: None,
            error: None,
        }
    }

    /// Marks the report failed with `error` (waiting for DNS when that is all it is).
    fn fail(&mut self, error: &EngineError) {
        self.action = if matches!(error, EngineError::DnsNotVerified { .. }) {
            Action::WaitingForDns
        } else if error.throttled() {
            Action::Throttled
        } else {
            Action::Failed
        };
        self.planned = false;
        self.rolled_back = error.rolled_back();
        self.error_type = Some(error.error_type());
        self.error = Some(error.to_string());
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
    /// The summary of `identities` (counts per action).
    pub fn of(identities: Vec<IdentityReport>) -> Self {
        let mut counts = BTreeMap::new();
        for report in &identities {
            *counts.entry(report.action).or_insert(0) += 1;
        }
        Self { counts, identities }
    }

    /// Whether any secret failed.
    pub fn has_failures(&self) -> bool {
        self.counts.get(&Action::Failed).copied().unwrap_or(0) > 0
    }
}

/// What a run has read about one secret (see [`Engine::look_at`]).
struct Seen {
    description: SecretDescription,
    tags: RotatorTags,
    current: DkimSecret,
    ses: SesView,
    retirement: retirement::RetireDecision,
    now: OffsetDateTime,
}

/// What the run has seen of one secret, into its report.
fn describe_into(
    report: &mut IdentityReport,
    current: &DkimSecret,
    facts: &Facts,
    ses_state: &SesDkimState,
    now: OffsetDateTime,
    dry_run: bool,
) {
    report.identity = Some(current.identity.to_string());
    report.regions = current
        .ses_regions()
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    report.selector = facts.current_selector.clone();
    report.ses_status = ses_state.status.clone();
    report.key_age_days = facts.key_created.map(|created| days_between(created, now));
    report.planned = dry_run;
    if facts.secrets_manager_rotates {
        report.detail = Some(
            "Secrets Manager rotation is enabled for this secret: it rotates, this run only confirms and retires".into(),
        );
    }
}

impl Action {
    /// What carrying out `plan` is reported as.
    fn for_plan(plan: &Plan) -> Self {
        match plan {
            Plan::Resume { .. } => Action::Resumed,
            Plan::Rotate => Action::Rotated,
            Plan::Pending { .. } => Action::Pending,
            Plan::TemporaryFailure => Action::TemporaryFailure,
            Plan::RollBack { .. } => Action::RolledBack,
            Plan::Confirm { .. } => Action::Confirmed,
            Plan::Retire(_) => Action::Retired,
            Plan::StartGraceClock(_) | Plan::Skip(_) => Action::Skipped,
        }
    }
}

/// The facts [`plan`] decides on, from what the run has read.
fn facts_of(
    description: &SecretDescription,
    tags: &RotatorTags,
    current: &DkimSecret,
    ses_state: &SesDkimState,
    retirement: retirement::RetireDecision,
) -> Facts {
    Facts {
        secret_arn: description.arn.clone(),
        secrets_manager_rotates: description.rotation_enabled,
        unfinished_rotation: description.unfinished_rotation().map(str::to_owned),
        has_key: current.key.is_some(),
        key_created: current
            .key
            .as_ref()
            .and_then(|k| k.created_at.as_deref().and_then(parse_rfc3339)),
        current_selector: current.key.as_ref().map(|k| k.selector.to_string()),
        current_rejected: current
            .key
            .as_ref()
            .is_some_and(|k| tags.is_rejected(k.selector.as_str())),
        ses_status: ses_state.status.clone(),
        ses_on_current: current
            .key
            .as_ref()
            .is_some_and(|k| ses_state.uses_external_selector(k.selector.as_str())),
        switched_at: match (&tags.switched_to, current.key.as_ref()) {
            (Some(to), Some(key)) if to == key.selector.as_str() => tags.switched_at,
            _ => None,
        },
        confirmed_selector: tags.confirmed.clone(),
        retirement,
    }
}

impl<P: Ports> Engine<P> {
    /// The secrets tagged `key` = `value`, as `ListSecrets` describes them (for scheduled runs
    /// and the queue planner).
    pub async fn list_tagged(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<SecretDescription>, EngineError> {
        let mut listed = Vec::new();
        let mut page = None;
        loop {
            let next = self.list_tagged_page(key, value, page.as_deref()).await?;
            listed.extend(next.secrets);
            match next.next_page {
                Some(token) => page = Some(token),
                None => return Ok(listed),
            }
        }
    }

    /// One page of [`Self::list_tagged`], from `page` (`None`: the first).
    pub async fn list_tagged_page(
        &self,
        key: &str,
        value: &str,
        page: Option<&str>,
    ) -> Result<ListedPage, EngineError> {
        Ok(self.store().list_tagged_page(key, value, page).await?)
    }

    /// Retires the previous selector if its grace period has passed (starting the grace
    /// clock when no switch time was recorded).
    pub async fn retire_previous(&self, secret_id: &str) -> Result<RetireReport, EngineError> {
        let seen = self.look_at(secret_id).await?;
        retirement::carry_out(
            self.ports(),
            self.policy().retirement(),
            secret_id,
            seen.retirement,
            &seen.current,
            &seen.ses.combined,
            seen.now,
        )
        .await
    }

    /// What a run reads about one secret before it decides: `DescribeSecret`, `AWSCURRENT`,
    /// SES; and where retirement stands.
    async fn look_at(&self, secret_id: &str) -> Result<Seen, EngineError> {
        let description = self.store().describe(secret_id).await?;
        let (current, ses) = self.read_current_checked(secret_id).await?;
        let now = self.now();
        let tags = RotatorTags::of(&description.tags);
        let retirement = retirement::assess(&current, &tags, self.policy().retirement(), now);
        Ok(Seen {
            description,
            tags,
            current,
            ses,
            retirement,
            now,
        })
    }

    /// Runs the four steps with `token` (each reads what it needs: [`Self::maintain`]'s read
    /// cache answers what the run already read); `setSecret` only when `publish`.
    async fn run_all_steps(
        &self,
        secret_id: &str,
        token: &str,
        deadline: Deadline,
        publish: bool,
    ) -> Result<StepReport, EngineError> {
        let mut last = None;
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            if step == Step::SetSecret && !publish {
                continue; // published by an earlier visit: only look for it
            }
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
    ///
    /// The run reads through a [`CachedPorts`] of its own: what it read before deciding, and
    /// what the rotation's steps wrote, answer the steps' repeated reads.
    pub async fn maintain(&self, secret_id: &str, options: &MaintainOptions) -> IdentityReport {
        let cached = self.over(CachedPorts::new(self.ports()));
        let mut report = IdentityReport::new(secret_id, Action::Skipped);
        if let Err(error) = cached.maintain_into(&mut report, options).await {
            report.fail(&error);
        }
        report
    }

    /// Reads the facts, plans, and carries the plan out, filling `report` as it goes (so a
    /// failure still reports what was known).
    async fn maintain_into(
        &self,
        report: &mut IdentityReport,
        options: &MaintainOptions,
    ) -> Result<(), EngineError> {
        let secret_id = report.secret_id.clone();
        let Seen {
            description,
            tags,
            current,
            ses,
            retirement: decision,
            now,
        } = self.look_at(&secret_id).await?;
        let facts = facts_of(&description, &tags, &current, &ses.combined, decision);
        describe_into(
            report,
            &current,
            &facts,
            &ses.combined,
            now,
            options.dry_run,
        );

        if !options.dry_run {
            self.repair_planner_tags(&secret_id, &tags, &current, facts.ses_on_current)
                .await;
            self.clear_pending_left_on_current(&secret_id, &description)
                .await?;
        }
        let disabled = ses.signing_disabled_in();
        if !disabled.is_empty() {
            report.alert = Some(Alert::SigningDisabled { regions: disabled });
        }
        let planned = plan(&facts, options.plan_options(), now);
        report.action = Action::for_plan(&planned);
        if options.dry_run {
            report.detail = Some(format!("would do: {planned:?}"));
            if let Plan::Skip(reason) = planned {
                report.skipped = Some(reason);
            }
            return Ok(());
        }
        match planned {
            Plan::Resume { token } => {
                let publish = !options.record_published;
                self.rotate_into(report, &token, options, publish, now)
                    .await
            }
            Plan::Rotate => {
                let token = uuid::Uuid::new_v4().to_string();
                self.rotate_into(report, &token, options, true, now).await
            }
            Plan::Pending { since } => {
                self.note_pending(report, since, now);
                Ok(())
            }
            Plan::TemporaryFailure => {
                report.detail = Some(
                    "SES verified the current selector before, but its TXT record no longer resolves; SES keeps signing and keeps checking: make the record resolve again".into(),
                );
                Ok(())
            }
            Plan::RollBack { rejected } => {
                self.roll_back_into(report, &current, &ses, &rejected).await
            }
            Plan::Confirm { selector } => {
                let previous = current.previous_selector.as_ref().map(|s| s.as_str());
                let confirmed = TagUpdate::confirmation(&selector, previous, now);
                self.store()
                    .set_tags(&secret_id, &confirmed.pairs())
                    .await?;
                Ok(())
            }
            Plan::StartGraceClock(decision) | Plan::Retire(decision) => {
                self.retire_into(report, decision, &current, &ses.combined, now)
                    .await
            }
            Plan::Skip(reason) => {
                report.skipped = Some(reason);
                Ok(())
            }
        }
    }

    /// SES still checks the current selector: how long, and an alert past
    /// `DKIM_PENDING_ALERT_HOURS`.
    fn note_pending(
        &self,
        report: &mut IdentityReport,
        since: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) {
        report.detail = Some("SES is still checking DNS for the current selector".into());
        if let Some(since) = since {
            let hours = days_between(since, now) * 24.0;
            report.ses_pending_hours = Some(hours);
            if now - since >= self.policy().pending_alert {
                report.alert = Some(Alert::VerificationOverdue { hours });
            }
        }
    }

    /// [`Plan::RollBack`]: the watcher's rollback, reported.
    async fn roll_back_into(
        &self,
        report: &mut IdentityReport,
        current: &DkimSecret,
        ses: &SesView,
        rejected: &str,
    ) -> Result<(), EngineError> {
        let secret_id = report.secret_id.clone();
        // Read again: the run's writes so far are in it.
        let description = self.store().describe(&secret_id).await?;
        let selector = self
            .roll_back_rejected(&secret_id, &description, current, ses, rejected)
            .await?;
        report.selector = Some(selector.clone());
        report.rolled_back = true;
        report.detail = Some(format!(
            "SES rejected selector {rejected} (FAILED); SES signs with {selector} again and it is AWSCURRENT again; {rejected} is never put again, the next rotation makes a fresh key"
        ));
        Ok(())
    }

    /// [`Plan::StartGraceClock`] and [`Plan::Retire`]: the previous selector's retirement,
    /// carried out and reported.
    async fn retire_into(
        &self,
        report: &mut IdentityReport,
        decision: retirement::RetireDecision,
        current: &DkimSecret,
        ses_state: &SesDkimState,
        now: OffsetDateTime,
    ) -> Result<(), EngineError> {
        let retired = retirement::carry_out(
            self.ports(),
            self.policy().retirement(),
            &report.secret_id,
            decision,
            current,
            ses_state,
            now,
        )
        .await?;
        if retired.outcome == RetireOutcome::GracePeriod {
            report.skipped = Some(SkipReason::GracePeriod {
                selector: retired.selector.clone().unwrap_or_default(),
                until: retired
                    .grace_until
                    .as_deref()
                    .and_then(parse_rfc3339)
                    .unwrap_or(now),
            });
        } else {
            report.retired = Some(retired.outcome);
        }
        report.detail = Some(match &retired.grace_until {
            Some(until) => format!(
                "previous selector {} kept until {until}",
                retired.selector.unwrap_or_default()
            ),
            None => format!(
                "previous selector {} retired ({:?})",
                retired.selector.unwrap_or_default(),
                retired.outcome
            ),
        });
        Ok(())
    }

    /// Writes the tags a planner needs when the secret lacks them (see
    /// [`retirement::missing_planner_tags`]), and adds them to `description`. Best effort: a
    /// failure is logged, and the planner keeps sending the secret until a run succeeds.
    async fn repair_planner_tags(
        &self,
        secret_id: &str,
        tags: &RotatorTags,
        current: &DkimSecret,
        ses_on_current: bool,
    ) {
        let Some(missing) =
            retirement::missing_planner_tags(current, tags, ses_on_current, self.now())
        else {
            return;
        };
        let pairs = missing.pairs();
        match self.store().set_tags(secret_id, &pairs).await {
            Ok(()) => {
                tracing::info!(secret_id, tags = ?pairs, "recorded the tags the planner reads");
            }
            Err(error) => {
                tracing::warn!(secret_id, %error, "could not record the tags the planner reads")
            }
        }
    }

    /// Runs (or resumes) a rotation with `token`; on failure, describes what is pending so
    /// a person (and the metrics) know.
    async fn rotate_into(
        &self,
        report: &mut IdentityReport,
        token: &str,
        options: &MaintainOptions,
        publish: bool,
        now: OffsetDateTime,
    ) -> Result<(), EngineError> {
        match self
            .run_all_steps(&report.secret_id, token, options.deadline, publish)
            .await
        {
            Ok(step) => {
                report.selector = step.selector;
                report.ses_status = step.ses_status;
                report.dns_record = step.dns_record;
                report.key_age_days = Some(0.0);
                Ok(())
            }
            Err(error) => {
                let pending = self
                    .read_doc(&report.secret_id, VersionLabel::pending(token))
                    .await;
                if let Ok(Some(doc)) = pending
                    && let Some(key) = &doc.key
                {
                    report.selector = Some(key.selector.to_string());
                    report.dns_record = Some(DnsRecord::for_key(&doc.identity, key));
                    report.pending_hours = key
                        .created_at
                        .as_deref()
                        .and_then(parse_rfc3339)
                        .map(|created| days_between(created, now) * 24.0);
                }
                Err(error)
            }
        }
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
                let time_left = options.deadline.leaves(self.now(), budget, true);
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
        FleetSummary::of(identities.into_iter().map(|(_, r)| r).collect())
    }
}
