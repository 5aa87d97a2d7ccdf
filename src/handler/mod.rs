//! The Lambda entry point's logic: parse the event, hand it to the application
//! ([`crate::app`]), answer with its report as JSON.
//!
//! Accepted payloads:
//! - Secrets Manager's rotation event `{"Step", "SecretId", "ClientRequestToken", "RotationToken"?}`;
//! - EventBridge's "Scheduled Event" (`"source": "aws.events"`): maintain every managed secret;
//! - an EventBridge Scheduler payload `{"secret_ids": [...], "force": false, "dry_run": false}`
//!   (each field optional);
//! - an SQS event whose records are [`WorkItem`]s (queue mode, `DKIM_WORK_QUEUE_URL`).
//!
//! Anything else is refused with an `InvalidEvent` error that names the accepted shapes. The
//! `RotationToken` is kept in a [`crate::secret_text::SecretText`] and never logged or returned.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use time::OffsetDateTime;

use crate::app::{Rotator, ScheduledRun};
use crate::engine::ports::{Deadline, Ports};
use crate::engine::rotation::RotationRequest;
use crate::error::AppError;
use crate::notifications::Notifier;
use crate::work_queue::WorkQueue;
use aws_lambda_events::event::sqs::SqsEvent;

mod payload;

/// The shapes this function accepts, for error messages.
const ACCEPTED: &str = "a Secrets Manager rotation event {\"Step\": \"createSecret|setSecret|testSecret|finishSecret\", \"SecretId\": \"<arn>\", \"ClientRequestToken\": \"<version id>\"}, an EventBridge Scheduled Event, {\"secret_ids\": [\"<arn>\"], \"force\": false, \"dry_run\": false}, or an SQS event of work items";

/// Fields of the scheduler payload: any of them makes a payload one.
const SCHEDULE_FIELDS: [&str; 3] = ["secret_ids", "force", "dry_run"];

/// Most fields a rotation event may have (Secrets Manager sends four).
const MAX_ROTATION_FIELDS: usize = 16;

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
    if map.len() > MAX_ROTATION_FIELDS {
        return Err(AppError::InvalidEvent(format!(
            "the payload has {} fields; {}",
            map.len(),
            payload::ROTATION_SHAPE
        )));
    }
    payload::rotation_request(payload)
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
        return payload::scheduled_run(payload).map(Invocation::Scheduled);
    }
    let from_sqs = map
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|record| record.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs");
    if from_sqs {
        let event = payload::sqs_event(payload)?;
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

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// Handles one invocation: parse, run, return the report (or the summary) as JSON.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        let deadline = deadline_of(&event.context);
        match parse_invocation(&event.payload)? {
            Invocation::Rotation(request) => self.rotation(request, deadline).await,
            // A forced run is an operator's direct invocation: it runs here, never through
            // the queue, whose messages cannot force (see `WorkItem`).
            Invocation::Scheduled(run) if self.fleet.work_queue_url.is_some() && !run.force => {
                let planned = self.plan_to_queue(&run, deadline).await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rotation::Step;
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
            (
                json!({"Records": [{"eventSource": "aws:sqs", "messageId": 7, "body": "{}"}]}),
                "field `Records[0].messageId`",
            ),
            (
                json!({"force": true, "x".repeat(5000): 1}),
                "unknown field `xxxx",
            ),
        ];
        for (payload, hint) in cases {
            let err = parse_invocation(&payload).unwrap_err();
            assert_eq!(err.error_type(), "InvalidEvent");
            assert!(err.to_string().len() < 1_000, "{payload}: echoed whole");
            assert!(err.to_string().contains(hint), "{payload}: {err}");
        }
    }
}
