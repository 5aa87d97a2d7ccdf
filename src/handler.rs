//! The Lambda entry point's logic: accept an event, run the engine, answer with a report.
//!
//! Accepted payloads:
//! - Secrets Manager's rotation event `{"Step", "SecretId", "ClientRequestToken", "RotationToken"?}`;
//! - EventBridge's "Scheduled Event" (`"source": "aws.events"`): maintain every managed secret;
//! - an EventBridge Scheduler payload `{"secret_ids": [...], "force": false, "dry_run": false}`
//!   (each field optional);
//! - an SQS event whose records are [`WorkItem`]s (queue mode, `DKIM_WORK_QUEUE_URL`).
//!
//! Anything else is refused with an `InvalidEvent` error that names the accepted shapes. The
//! `RotationToken` is kept in a [`SecretText`] and never logged or returned.

use std::collections::BTreeMap;

use lambda_runtime::LambdaEvent;
use serde_json::{Map, Value};

use time::OffsetDateTime;

use crate::config::FleetSettings;
use crate::engine::Engine;
use crate::engine::plan::PlanOptions;
use crate::engine::ports::{Clock, Deadline, Ports};
use crate::engine::retirement::rfc3339;
use crate::engine::schedule::{Action, FleetSummary, MaintainOptions};
use crate::engine::steps::{Outcome, RotationRequest};
use crate::engine::triage::{Triage, WorkReason, triage};
use crate::error::AppError;
use crate::metrics::{self, RunCounts};
use crate::notifications::{self, Notification, Notifier};
use crate::secret_text::SecretText;
use crate::work_queue::{WorkItem, WorkQueue};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

/// The shapes this function accepts, for error messages.
const ACCEPTED: &str = "a Secrets Manager rotation event {\"Step\": \"createSecret|setSecret|testSecret|finishSecret\", \"SecretId\": \"<arn>\", \"ClientRequestToken\": \"<version id>\"}, an EventBridge Scheduled Event, {\"secret_ids\": [\"<arn>\"], \"force\": false, \"dry_run\": false}, or an SQS event of work items";

/// What a planner sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueuedPlan {
    /// Messages sent (0 in a dry run).
    pub queued: usize,
    /// The secrets sent to a worker (would be, in a dry run).
    pub secret_ids: Vec<String>,
    /// How many were sent, per reason.
    pub reasons: BTreeMap<WorkReason, usize>,
    /// Secrets the listing showed with nothing due.
    pub idle: usize,
    /// When the earliest idle secret falls due (RFC 3339), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<String>,
    /// Nothing was sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Fields of the scheduler payload.
const SCHEDULE_FIELDS: [&str; 3] = ["secret_ids", "force", "dry_run"];
/// Most secrets one scheduled payload may name.
const MAX_SECRET_IDS: usize = 10_000;

/// Largest event accepted; rotation events are a few hundred bytes.
const MAX_FIELD_LEN: usize = 2048;

fn required_str(map: &Map<String, Value>, field: &str) -> Result<String, AppError> {
    match map.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_FIELD_LEN => Ok(s.clone()),
        Some(Value::String(s)) if s.len() > MAX_FIELD_LEN => Err(AppError::InvalidEvent(format!(
            "field `{field}` is longer than {MAX_FIELD_LEN} characters; expected {ACCEPTED}"
        ))),
        Some(Value::String(_)) => Err(AppError::InvalidEvent(format!(
            "field `{field}` is empty; expected {ACCEPTED}"
        ))),
        Some(_) => Err(AppError::InvalidEvent(format!(
            "field `{field}` must be a string; expected {ACCEPTED}"
        ))),
        None => Err(AppError::InvalidEvent(format!(
            "field `{field}` is missing; expected {ACCEPTED}"
        ))),
    }
}

/// Parses a raw payload into a rotation request.
pub fn parse_rotation_event(payload: &Value) -> Result<RotationRequest, AppError> {
    let Value::Object(map) = payload else {
        return Err(AppError::InvalidEvent(format!(
            "the payload is not a JSON object; expected {ACCEPTED}"
        )));
    };
    if !map.contains_key("Step") {
        return Err(AppError::InvalidEvent(format!(
            "the payload has no `Step`, so it is not a rotation event; expected {ACCEPTED}"
        )));
    }
    if map.len() > 16 {
        return Err(AppError::InvalidEvent(format!(
            "the payload has {} fields; a rotation event has at most 4",
            map.len()
        )));
    }
    let step = required_str(map, "Step")?
        .parse()
        .map_err(|e: String| AppError::InvalidEvent(e))?;
    let secret_id = required_str(map, "SecretId")?;
    let token = required_str(map, "ClientRequestToken")?;
    let rotation_token = match map.get("RotationToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(SecretText::new(s.as_str())),
        Some(_) => {
            return Err(AppError::InvalidEvent(
                "field `RotationToken` must be a string when present".into(),
            ));
        }
    };
    Ok(RotationRequest {
        rotation_token,
        ..RotationRequest::new(step, secret_id, token)
    })
}

/// The invocation's deadline. Lambda gives milliseconds since the epoch (0 when unknown); a
/// value that cannot be one (more than a day in the past: `cargo lambda watch` sends the
/// timeout itself, e.g. 600000) is ignored with a warning rather than taken as "no time left".
fn deadline_of(context: &lambda_runtime::Context) -> Deadline {
    if context.deadline == 0 {
        return Deadline::NONE;
    }
    let Ok(at) =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(context.deadline) * 1_000_000)
    else {
        return Deadline::NONE;
    };
    if at < OffsetDateTime::now_utc() - time::Duration::days(1) {
        tracing::warn!(
            deadline_ms = context.deadline,
            "the runtime's deadline is not a time since the epoch; running without one"
        );
        return Deadline::NONE;
    }
    Deadline::at(at)
}

/// A scheduled run: which secrets, and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduledRun {
    /// The secrets named by the payload; `None` = the configured ones.
    pub secret_ids: Option<Vec<String>>,
    /// Rotate even keys younger than the interval.
    pub force: bool,
    /// Report what would happen, change nothing.
    pub dry_run: bool,
}

/// What an invocation asks for.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// One Secrets Manager rotation step.
    Rotation(RotationRequest),
    /// A scheduled run over managed secrets.
    Scheduled(ScheduledRun),
    /// A batch of work from the queue (the SQS event source mapping).
    Queue(SqsEvent),
}

fn parse_scheduled(map: &Map<String, Value>) -> Result<ScheduledRun, AppError> {
    if let Some(unknown) = map.keys().find(|k| !SCHEDULE_FIELDS.contains(&k.as_str())) {
        return Err(AppError::InvalidEvent(format!(
            "unknown field `{}` in a scheduler payload; allowed: secret_ids, force, dry_run",
            unknown.chars().take(40).collect::<String>()
        )));
    }
    let flag = |name: &str| match map.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(AppError::InvalidEvent(format!(
            "field `{name}` must be true or false"
        ))),
    };
    let secret_ids = match map.get("secret_ids") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            if items.len() > MAX_SECRET_IDS {
                return Err(AppError::InvalidEvent(format!(
                    "`secret_ids` names {} secrets; at most {MAX_SECRET_IDS} per run",
                    items.len()
                )));
            }
            let ids = items
                .iter()
                .map(|item| match item {
                    Value::String(s) if !s.trim().is_empty() && s.len() <= MAX_FIELD_LEN => {
                        Ok(s.trim().to_owned())
                    }
                    _ => Err(AppError::InvalidEvent(
                        "`secret_ids` must be a list of secret ARNs or names (non-empty strings)"
                            .into(),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(ids)
        }
        Some(_) => {
            return Err(AppError::InvalidEvent(
                "`secret_ids` must be a list of secret ARNs or names".into(),
            ));
        }
    };
    Ok(ScheduledRun {
        secret_ids,
        force: flag("force")?,
        dry_run: flag("dry_run")?,
    })
}

/// Parses any accepted payload.
pub fn parse_invocation(payload: &Value) -> Result<Invocation, AppError> {
    let Value::Object(map) = payload else {
        return Err(AppError::InvalidEvent(format!(
            "the payload is not a JSON object; expected {ACCEPTED}"
        )));
    };
    if map.contains_key("Step") {
        return parse_rotation_event(payload).map(Invocation::Rotation);
    }
    let scheduled_event = map.get("source").and_then(Value::as_str) == Some("aws.events")
        || map.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
    if scheduled_event {
        return Ok(Invocation::Scheduled(ScheduledRun::default()));
    }
    if !map.is_empty() && map.keys().any(|k| SCHEDULE_FIELDS.contains(&k.as_str())) {
        return parse_scheduled(map).map(Invocation::Scheduled);
    }
    let from_sqs = map
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|record| record.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs");
    if from_sqs {
        let event = serde_json::from_value::<SqsEvent>(payload.clone()).map_err(|e| {
            AppError::InvalidEvent(format!("an SQS event that does not parse: {e}"))
        })?;
        // SQS always sends both; without a messageId a failure could not even be reported.
        if let Some(index) = event
            .records
            .iter()
            .position(|r| r.message_id.is_none() || r.body.is_none())
        {
            return Err(AppError::InvalidEvent(format!(
                "SQS record {index}: `messageId` and `body` must be present (the queue's event source mapping sends both)"
            )));
        }
        return Ok(Invocation::Queue(event));
    }
    Err(AppError::InvalidEvent(format!(
        "the payload is none of the accepted shapes; expected {ACCEPTED}"
    )))
}

/// Everything an invocation needs, built once at start-up.
#[derive(Debug)]
pub struct Rotator<P, N, Q> {
    /// The rotation engine.
    pub engine: Engine<P>,
    /// Scheduled-run settings.
    pub fleet: FleetSettings,
    /// Where notifications go.
    pub notifier: N,
    /// Where a planner sends work (used when `fleet.work_queue_url` is set).
    pub queue: Q,
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    async fn notify(&self, notification: Option<Notification>) {
        let Some(notification) = notification else {
            return;
        };
        if let Err(error) = self.notifier.publish(&notification).await {
            tracing::warn!(%error, kind = ?notification.kind, "could not send a notification");
        }
    }

    /// The secrets a scheduled run manages: the payload's, else `DKIM_SECRET_IDS` plus every
    /// secret tagged `DKIM_SECRET_TAG`, without duplicates.
    pub async fn managed_secrets(&self, run: &ScheduledRun) -> Result<Vec<String>, AppError> {
        if let Some(ids) = &run.secret_ids {
            return Ok(dedupe(ids.clone()));
        }
        let mut ids = self.fleet.secret_ids.clone();
        if let Some((key, value)) = &self.fleet.secret_tag {
            let listed = self.engine.list_tagged(key, value).await?;
            ids.extend(listed.into_iter().map(|secret| secret.arn));
        }
        if ids.is_empty() {
            return Err(AppError::InvalidSetting {
                name: "DKIM_SECRET_IDS",
                reason: "a scheduled run has no secrets to manage: set DKIM_SECRET_IDS (comma list) and/or DKIM_SECRET_TAG (key=value), or pass secret_ids".into(),
            });
        }
        Ok(dedupe(ids))
    }

    async fn rotation(
        &self,
        mut request: RotationRequest,
        deadline: Deadline,
    ) -> Result<Value, AppError> {
        request.deadline = deadline;
        let result = self.engine.run_step(&request).await;
        let namespace = &self.fleet.metrics_namespace;
        match &result {
            Ok(report) => {
                tracing::info!(
                    step = %request.step,
                    secret_id = %request.secret_id,
                    outcome = ?report.outcome,
                    "rotation step done"
                );
                if report.outcome == Outcome::SesSwitched {
                    let counts = RunCounts {
                        rotations: 1,
                        ..RunCounts::default()
                    };
                    println!("{}", metrics::counts_line(namespace, now_ms(), counts));
                }
                self.notify(notifications::for_step(report)).await;
            }
            Err(error) => {
                tracing::error!(
                    step = %request.step,
                    secret_id = %request.secret_id,
                    error_type = error.error_type(),
                    error = %error,
                    "rotation step failed"
                );
                let counts = RunCounts {
                    failures: 1,
                    rollbacks: u64::from(error.rolled_back()),
                    ..RunCounts::default()
                };
                println!("{}", metrics::counts_line(namespace, now_ms(), counts));
                self.notify(Some(notifications::for_error(
                    &request.secret_id,
                    None,
                    error,
                )))
                .await;
            }
        }
        Ok(serde_json::to_value(result?).expect("a StepReport always serialises"))
    }

    /// Runs a scheduled run, sends its notifications and returns its summary (the Lambda
    /// handler also prints its metrics).
    pub async fn scheduled(
        &self,
        run: &ScheduledRun,
        deadline: Deadline,
    ) -> Result<FleetSummary, AppError> {
        let secret_ids = self.managed_secrets(run).await?;
        tracing::info!(
            secrets = secret_ids.len(),
            deadline = ?deadline.instant(),
            dry_run = run.dry_run,
            "scheduled run starts"
        );
        let options = MaintainOptions {
            force: run.force,
            dry_run: run.dry_run,
            rotation_interval: self.fleet.rotation_interval,
            deadline,
        };
        let summary = self
            .engine
            .maintain_fleet(
                &secret_ids,
                &options,
                self.fleet.max_concurrency,
                self.fleet.identity_budget,
            )
            .await;
        for report in &summary.identities {
            self.notify(notifications::for_identity(report)).await;
        }
        tracing::info!(counts = ?summary.counts, secrets = secret_ids.len(), dry_run = run.dry_run, "scheduled run done");
        Ok(summary)
    }

    /// Handles one invocation: parse, run, return the report (or the summary) as JSON.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        let deadline = deadline_of(&event.context);
        match parse_invocation(&event.payload)? {
            Invocation::Rotation(request) => self.rotation(request, deadline).await,
            Invocation::Scheduled(run) if self.fleet.work_queue_url.is_some() => {
                let planned = self.plan_to_queue(&run).await?;
                Ok(serde_json::to_value(planned).expect("a plan always serialises"))
            }
            Invocation::Scheduled(run) => {
                let summary = self.scheduled(&run, deadline).await?;
                self.print_metrics(&summary);
                Ok(serde_json::to_value(summary).expect("a summary always serialises"))
            }
            Invocation::Queue(event) => {
                let response = self.work(event, deadline).await;
                Ok(serde_json::to_value(response).expect("a batch response always serialises"))
            }
        }
    }

    fn print_metrics(&self, summary: &FleetSummary) {
        for line in metrics::fleet_lines(&self.fleet.metrics_namespace, now_ms(), summary) {
            println!("{line}");
        }
    }

    /// The planner: decides from `ListSecrets` alone (see [`crate::engine::triage`]) which
    /// secrets need a worker, and sends one queue message for each. Secrets named in the
    /// payload or in `DKIM_SECRET_IDS` are always sent (the listing does not cover them).
    /// Nothing is read per secret. Returns what was sent.
    pub async fn plan_to_queue(&self, run: &ScheduledRun) -> Result<QueuedPlan, AppError> {
        let now = self.engine.ports().clock().now();
        let options = PlanOptions {
            force: run.force,
            rotation_interval: self.fleet.rotation_interval,
        };
        let grace = self.engine.policy().retirement().grace;
        let mut plan = QueuedPlan {
            queued: 0,
            secret_ids: Vec::new(),
            reasons: BTreeMap::new(),
            idle: 0,
            next_due: None,
            dry_run: run.dry_run,
        };
        let mut next_due: Option<OffsetDateTime> = None;
        let named = run
            .secret_ids
            .clone()
            .unwrap_or_else(|| self.fleet.secret_ids.clone());
        let mut decided: Vec<(String, Triage)> = named
            .into_iter()
            .map(|id| (id, Triage::Send(WorkReason::Named)))
            .collect();
        if run.secret_ids.is_none()
            && let Some((key, value)) = &self.fleet.secret_tag
        {
            let listed = self.engine.list_tagged(key, value).await?;
            decided.extend(listed.into_iter().map(|secret| {
                let decision = triage(&secret, options, grace, self.fleet.health_check_days, now);
                (secret.arn, decision)
            }));
        }
        if decided.is_empty() {
            return Err(AppError::InvalidSetting {
                name: "DKIM_SECRET_IDS",
                reason: "a scheduled run has no secrets to manage: set DKIM_SECRET_IDS (comma list) and/or DKIM_SECRET_TAG (key=value), or pass secret_ids".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for (secret_id, decision) in decided {
            if !seen.insert(secret_id.clone()) {
                continue;
            }
            match decision {
                Triage::Send(reason) => {
                    *plan.reasons.entry(reason).or_default() += 1;
                    plan.secret_ids.push(secret_id);
                }
                Triage::Idle { next } => {
                    plan.idle += 1;
                    next_due = match (next_due, next) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        plan.next_due = next_due.map(rfc3339);
        let items: Vec<WorkItem> = plan
            .secret_ids
            .iter()
            .map(|secret_id| WorkItem {
                secret_id: secret_id.clone(),
                force: run.force,
            })
            .collect();
        if !run.dry_run && !items.is_empty() {
            plan.queued = self.queue.send(&items).await?;
        }
        tracing::info!(
            to_work = items.len(),
            idle = plan.idle,
            queued = plan.queued,
            reasons = ?plan.reasons,
            next_due = plan.next_due.as_deref(),
            dry_run = run.dry_run,
            "planned from the listing: one work message per identity with something due"
        );
        Ok(plan)
    }

    /// The worker: each SQS record is one identity's work, maintained with the same engine as
    /// a scheduled run. Answers with the records that failed, so SQS retries only those; a
    /// record whose body is not a work item fails with a clear log line (the queue's redrive
    /// policy moves it to the dead-letter queue after `maxReceiveCount`). Work already done is
    /// a no-op: the plan finds nothing to do.
    pub async fn work(&self, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let mut reports = Vec::new();
        for record in event.records {
            let Some(message_id) = record.message_id.clone() else {
                continue; // refused by parse_invocation
            };
            let item = match WorkItem::from_body(record.body.as_deref().unwrap_or_default()) {
                Ok(item) => item,
                Err(reason) => {
                    tracing::error!(
                        message_id,
                        %reason,
                        "poison message: failed; after maxReceiveCount deliveries the queue moves it to the dead-letter queue"
                    );
                    response.add_failure(message_id);
                    continue;
                }
            };
            let options = MaintainOptions {
                force: item.force,
                dry_run: false,
                rotation_interval: self.fleet.rotation_interval,
                deadline,
            };
            let report = self.engine.maintain(&item.secret_id, &options).await;
            if report.action == Action::Failed {
                tracing::error!(
                    message_id,
                    secret_id = %item.secret_id,
                    error_type = report.error_type,
                    error = report.error.as_deref(),
                    "work item failed; SQS delivers it again"
                );
                response.add_failure(message_id);
            }
            self.notify(notifications::for_identity(&report)).await;
            reports.push(report);
        }
        let summary = FleetSummary::of(reports);
        self.print_metrics(&summary);
        tracing::info!(counts = ?summary.counts, failed = response.batch_item_failures.len(), "work batch done");
        response
    }
}

fn dedupe(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::steps::Step;
    use serde_json::json;

    #[test]
    fn parses_a_rotation_event_and_hides_the_token() {
        let request = parse_rotation_event(&json!({
            "Step": "finishSecret", "SecretId": "arn:x", "ClientRequestToken": "t-1",
            "RotationToken": "very-secret-token"
        }))
        .unwrap();
        assert_eq!(request.step, Step::FinishSecret);
        assert_eq!(request.secret_id, "arn:x");
        assert_eq!(request.token, "t-1");
        assert_eq!(
            request.rotation_token.as_ref().unwrap().expose(),
            "very-secret-token"
        );
        assert!(!format!("{request:?}").contains("very-secret-token"));
    }

    #[test]
    fn scheduled_shapes_parse() {
        let run = |payload: Value| match parse_invocation(&payload).unwrap() {
            Invocation::Scheduled(run) => run,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            run(
                json!({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
            ),
            ScheduledRun::default()
        );
        let custom = run(json!({"secret_ids": ["a", "b"], "force": true}));
        assert_eq!(custom.secret_ids.unwrap(), vec!["a", "b"]);
        assert!(custom.force && !custom.dry_run);
        for (payload, hint) in [
            (json!({"secret_ids": "a"}), "must be a list"),
            (json!({"secret_ids": [1]}), "non-empty strings"),
            (json!({"force": "yes"}), "true or false"),
            (
                json!({"force": true, "rotate": 1}),
                "unknown field `rotate`",
            ),
        ] {
            let err = parse_invocation(&payload).unwrap_err();
            assert!(err.to_string().contains(hint), "{payload}: {err}");
        }
    }

    #[test]
    fn malformed_events_are_named() {
        let cases = [
            (json!([]), "not a JSON object"),
            (json!({"Records": []}), "none of the accepted shapes"),
            (
                json!({"Step": "rotate", "SecretId": "a", "ClientRequestToken": "t"}),
                "`Step` is `rotate`",
            ),
            (json!({"Step": 1}), "`Step` must be a string"),
            (
                json!({"Step": "setSecret", "ClientRequestToken": "t"}),
                "`SecretId` is missing",
            ),
            (
                json!({"Step": "setSecret", "SecretId": "a", "ClientRequestToken": ""}),
                "`ClientRequestToken` is empty",
            ),
            (
                json!({"Step": "setSecret", "SecretId": "a", "ClientRequestToken": "t", "RotationToken": 3}),
                "`RotationToken` must be a string",
            ),
            (
                json!({"Step": "setSecret", "SecretId": "a".repeat(5000), "ClientRequestToken": "t"}),
                "longer than",
            ),
        ];
        for (payload, hint) in cases {
            let err = parse_invocation(&payload).unwrap_err();
            assert_eq!(err.error_type(), "InvalidEvent");
            assert!(err.to_string().contains(hint), "{payload}: {err}");
        }
    }
}
