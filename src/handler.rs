//! The Lambda entry point's logic: accept an event, run the engine, answer with a report.
//!
//! Accepted payloads: Secrets Manager's rotation event
//! `{"Step", "SecretId", "ClientRequestToken", "RotationToken"?}`. Anything else is refused
//! with an `InvalidEvent` error that names the accepted shapes. The `RotationToken` is kept in
//! a [`SecretText`] and never logged or returned.

use lambda_runtime::LambdaEvent;
use serde_json::{Map, Value};

use time::OffsetDateTime;

use crate::engine::ports::{Clock, DkimSigningService, DnsPublisher, DnsTxtLookup, SecretStore};
use crate::engine::rotation::{RotationEngine, RotationRequest, StepReport};
use crate::error::RotatorError;
use crate::secret_text::SecretText;

/// The shapes this function accepts, for error messages.
const ACCEPTED: &str = "a Secrets Manager rotation event {\"Step\": \"createSecret|setSecret|testSecret|finishSecret\", \"SecretId\": \"<arn>\", \"ClientRequestToken\": \"<version id>\"}";

/// Largest event accepted; rotation events are a few hundred bytes.
const MAX_FIELD_LEN: usize = 2048;

fn required_str(map: &Map<String, Value>, field: &str) -> Result<String, RotatorError> {
    match map.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_FIELD_LEN => Ok(s.clone()),
        Some(Value::String(s)) if s.len() > MAX_FIELD_LEN => {
            Err(RotatorError::InvalidEvent(format!(
                "field `{field}` is longer than {MAX_FIELD_LEN} characters; expected {ACCEPTED}"
            )))
        }
        Some(Value::String(_)) => Err(RotatorError::InvalidEvent(format!(
            "field `{field}` is empty; expected {ACCEPTED}"
        ))),
        Some(_) => Err(RotatorError::InvalidEvent(format!(
            "field `{field}` must be a string; expected {ACCEPTED}"
        ))),
        None => Err(RotatorError::InvalidEvent(format!(
            "field `{field}` is missing; expected {ACCEPTED}"
        ))),
    }
}

/// Parses a raw payload into a rotation request.
pub fn parse_rotation_event(payload: &Value) -> Result<RotationRequest, RotatorError> {
    let Value::Object(map) = payload else {
        return Err(RotatorError::InvalidEvent(format!(
            "the payload is not a JSON object; expected {ACCEPTED}"
        )));
    };
    if !map.contains_key("Step") {
        return Err(RotatorError::InvalidEvent(format!(
            "the payload has no `Step`, so it is not a rotation event; expected {ACCEPTED}"
        )));
    }
    let step = required_str(map, "Step")?
        .parse()
        .map_err(|e: String| RotatorError::InvalidEvent(e))?;
    let secret_id = required_str(map, "SecretId")?;
    let token = required_str(map, "ClientRequestToken")?;
    let rotation_token = match map.get("RotationToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(SecretText::new(s.as_str())),
        Some(_) => {
            return Err(RotatorError::InvalidEvent(
                "field `RotationToken` must be a string when present".into(),
            ));
        }
    };
    Ok(RotationRequest {
        step,
        secret_id,
        token,
        rotation_token,
        deadline: None,
    })
}

/// The invocation's deadline (Lambda gives milliseconds since the epoch; 0 when unknown).
fn deadline_of(context: &lambda_runtime::Context) -> Option<OffsetDateTime> {
    if context.deadline == 0 {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(context.deadline) * 1_000_000).ok()
}

/// Handles one invocation: parse, run the step, return its report as JSON.
pub async fn handle<S, E, D, L, C>(
    engine: &RotationEngine<S, E, D, L, C>,
    event: LambdaEvent<Value>,
) -> Result<Value, RotatorError>
where
    S: SecretStore,
    E: DkimSigningService,
    D: DnsPublisher,
    L: DnsTxtLookup,
    C: Clock,
{
    let mut request = parse_rotation_event(&event.payload)?;
    request.deadline = deadline_of(&event.context);
    let result = engine.run_step(&request).await;
    match &result {
        Ok(report) => tracing::info!(
            step = %request.step,
            secret_id = %request.secret_id,
            outcome = ?report.outcome,
            "rotation step done"
        ),
        Err(error) => tracing::error!(
            step = %request.step,
            secret_id = %request.secret_id,
            error_type = error.error_type(),
            error = %error,
            "rotation step failed"
        ),
    }
    let report: StepReport = result?;
    Ok(serde_json::to_value(report).expect("a StepReport always serialises"))
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
    fn malformed_events_are_named() {
        let cases = [
            (json!([]), "not a JSON object"),
            (json!({"source": "aws.events"}), "no `Step`"),
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
            let err = parse_rotation_event(&payload).unwrap_err();
            assert_eq!(err.error_type(), "InvalidEvent");
            assert!(err.to_string().contains(hint), "{payload}: {err}");
        }
    }
}
