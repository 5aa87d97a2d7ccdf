//! Fleets past one invocation: a scheduled run becomes a **planner** that sends one message per
//! managed identity to a queue (SQS, `DKIM_WORK_QUEUE_URL`), and the same function, invoked by
//! the queue's event source mapping, is the **worker** that maintains one identity per message.
//! SQS brings what an in-process scheduler cannot: concurrency bounded by the mapping's
//! `MaximumConcurrency`, retries of exactly the failed messages (partial batch responses), and a
//! dead-letter queue for poison messages.
//!
//! The message body is [`WorkItem`] as JSON. The worker's answer is a partial batch response
//! naming the messages that failed.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::ports::PortError;
use crate::engine::quoting::quote_prefix;

/// One identity's work, as a queue message body: `{"secret_id": "<arn>"}`.
///
/// A message never forces a rotation: anyone who may `sqs:SendMessage` to the queue could
/// otherwise make every managed identity rotate again and again (each rotation restarts SES's
/// verification). Forcing is an operator's act: `dkim-rotator rotate --force`, or invoking the
/// function with `{"secret_ids": [...], "force": true}` (which runs in that invocation, never
/// through the queue). A body with a `force` field is refused ([`FORCE_REFUSED`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkItem {
    /// The secret to maintain.
    pub secret_id: String,
    /// How many times a worker has already published this identity's record and handed it
    /// back to look for it in DNS later (it backs off, then leaves it to the planner).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dns_rechecks: u32,
}

/// Serde's `skip_serializing_if` for counts.
fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkItem {
    /// The message body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a WorkItem always serialises")
    }

    /// Reads a message body; the error says what is wrong and what a body looks like.
    pub fn from_body(body: &str) -> Result<Self, String> {
        refuse_force(body)?;
        let item: Self = serde_json::from_str(body).map_err(|e| {
            format!(
                "the message body `{}` is not {{\"secret_id\": \"<arn>\"}} ({e})",
                quote_prefix(body)
            )
        })?;
        if item.secret_id.trim().is_empty() || item.secret_id.len() > 2048 {
            return Err("`secret_id` must be a secret's ARN or name".into());
        }
        Ok(item)
    }
}

/// Why a queue message with a `force` field does nothing.
pub const FORCE_REFUSED: &str = "queue messages cannot force a rotation (field `force`), so nothing was done: only an operator forces one, with `dkim-rotator rotate --force --secret-id <id>` or by invoking the function with {\"secret_ids\": [\"<id>\"], \"force\": true}";

/// A body that names `force` at all (true or false) is refused: no message forces.
fn refuse_force(body: &str) -> Result<(), String> {
    let names_force =
        serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v.get("force").is_some());
    if names_force {
        return Err(FORCE_REFUSED.into());
    }
    Ok(())
}

/// A planner run carried on in another invocation: the listing goes on from
/// `continue_planning_from` (`ListSecrets`' `NextToken`). Body:
/// `{"continue_planning_from": "<token>", "rotations_sent": 120}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanContinuation {
    /// Where the listing goes on.
    pub continue_planning_from: String,
    /// Rotations the run has sent so far (they count against `DKIM_MAX_ROTATIONS_PER_RUN`).
    #[serde(default)]
    pub rotations_sent: u64,
}

/// What one queue message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMessage {
    /// One identity's work.
    Identity(WorkItem),
    /// The rest of a planner run.
    Planning(PlanContinuation),
}

impl QueueMessage {
    /// Reads a message body: a [`PlanContinuation`] when it has `continue_planning_from`,
    /// else a [`WorkItem`]; the error says what is wrong and what a body looks like.
    pub fn from_body(body: &str) -> Result<Self, String> {
        let continues = serde_json::from_str::<serde_json::Value>(body)
            .is_ok_and(|v| v.get("continue_planning_from").is_some());
        if !continues {
            return WorkItem::from_body(body).map(Self::Identity);
        }
        refuse_force(body)?;
        let plan: PlanContinuation = serde_json::from_str(body).map_err(|e| {
            format!(
                "the message body `{}` is not {{\"continue_planning_from\": \"<token>\", \"rotations_sent\": 0}} ({e})",
                quote_prefix(body)
            )
        })?;
        if plan.continue_planning_from.is_empty() || plan.continue_planning_from.len() > 8192 {
            return Err("`continue_planning_from` must be a ListSecrets NextToken".into());
        }
        Ok(Self::Planning(plan))
    }
}

impl PlanContinuation {
    /// The message body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a PlanContinuation always serialises")
    }
}

/// Longest delay SQS gives a message (`DelaySeconds`, 15 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Where planned work goes.
pub trait WorkQueue: Send + Sync {
    /// Sends one message per item (in batches the queue allows), each delivered no sooner
    /// than `delay` from now (at most [`MAX_DELAY`]); returns how many were sent.
    fn send(
        &self,
        items: &[WorkItem],
        delay: Duration,
    ) -> impl Future<Output = Result<usize, PortError>> + Send;

    /// Sends the rest of a planner run as one message, delivered at once.
    fn send_continuation(
        &self,
        next: &PlanContinuation,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_bad_ones_are_named() {
        let item = WorkItem {
            secret_id: "arn:x".into(),
            dns_rechecks: 0,
        };
        assert_eq!(item.to_body(), r#"{"secret_id":"arn:x"}"#);
        assert_eq!(WorkItem::from_body(&item.to_body()), Ok(item));
        for (body, hint) in [
            ("not json", "is not"),
            (r#"{"secret_id": 5}"#, "is not"),
            (r#"{"secret_id": "a", "extra": 1}"#, "unknown field"),
            (r#"{"secret_id": " "}"#, "must be"),
            (r#"{"secret_id": "a", "force": true}"#, "cannot force"),
            (r#"{"secret_id": "a", "force": false}"#, "cannot force"),
        ] {
            let err = WorkItem::from_body(body).unwrap_err();
            assert!(err.contains(hint), "{body}: {err}");
        }
    }

    #[test]
    fn a_continuation_round_trips_and_a_bad_one_is_named() {
        let rest = PlanContinuation {
            continue_planning_from: "tok==".into(),
            rotations_sent: 120,
        };
        assert_eq!(
            QueueMessage::from_body(&rest.to_body()),
            Ok(QueueMessage::Planning(rest))
        );
        assert!(matches!(
            QueueMessage::from_body(r#"{"secret_id": "arn:x"}"#),
            Ok(QueueMessage::Identity(_))
        ));
        for (body, hint) in [
            (r#"{"continue_planning_from": 5}"#, "is not"),
            (
                r#"{"continue_planning_from": "t", "extra": 1}"#,
                "unknown field",
            ),
            (r#"{"continue_planning_from": ""}"#, "NextToken"),
            (
                r#"{"continue_planning_from": "t", "force": true}"#,
                "cannot force",
            ),
        ] {
            let err = QueueMessage::from_body(body).unwrap_err();
            assert!(err.contains(hint), "{body}: {err}");
        }
    }
}
