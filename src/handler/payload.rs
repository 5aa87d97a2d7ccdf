//! The payloads this function accepts, as serde types, and the one place where a parse error
//! becomes a message that says what is wrong ([`refuse`]).
//!
//! Each field has a type that owns its rule (non-empty, bounded, the right JSON kind) and says
//! in its own words what it must be; [`refuse`] prefixes the field's path and the payload's
//! shape. No message echoes more than a short prefix of what was sent, and none contains the
//! `RotationToken`.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

use crate::app::ScheduledRun;
use crate::engine::quoting::quote_prefix;
use crate::engine::rotation::{RotationRequest, Step};
use crate::error::AppError;
use crate::secret_text::SecretText;

/// Longest text field accepted; rotation events are a few hundred bytes.
const MAX_FIELD_LEN: usize = 2048;
/// Most secrets one scheduled payload may name.
const MAX_SECRET_IDS: usize = 10_000;
/// Longest refusal message: serde names unknown fields whole.
const MAX_MESSAGE_LEN: usize = 600;

/// What a rotation event looks like, for refusals.
pub(super) const ROTATION_SHAPE: &str = "expected a rotation event {\"Step\": \"createSecret|setSecret|testSecret|finishSecret\", \"SecretId\": \"<arn>\", \"ClientRequestToken\": \"<version id>\"}";
/// What a scheduler payload looks like, for refusals.
const SCHEDULER_SHAPE: &str = "expected a scheduler payload {\"secret_ids\": [\"<arn>\"], \"force\": false, \"dry_run\": false}, each field optional";
/// What an SQS event looks like, for refusals.
const SQS_SHAPE: &str = "expected the SQS event that the queue's event source mapping sends";

/// Secrets Manager's rotation event. The fields are optional here so that a missing one is
/// named by [`RotationEvent::into_request`] in the same words as a wrong one.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RotationEvent {
    #[serde(default)]
    step: Option<StepField>,
    #[serde(default)]
    secret_id: Option<TextField>,
    #[serde(default)]
    client_request_token: Option<TextField>,
    #[serde(default)]
    rotation_token: Option<RotationTokenField>,
}

/// The EventBridge Scheduler payload `{"secret_ids", "force", "dry_run"}`.
#[derive(Deserialize)]
struct SchedulerPayload {
    #[serde(default)]
    secret_ids: Option<SecretIds>,
    #[serde(default)]
    force: Option<Flag>,
    #[serde(default)]
    dry_run: Option<Flag>,
    /// Any other field: refused, since a misspelt `force` must not run as `force: false`.
    #[serde(flatten)]
    unknown: serde_json::Map<String, Value>,
}

/// A required, non-empty text field of at most [`MAX_FIELD_LEN`] characters.
struct TextField(String);

/// The `Step` field: one of the four step names.
struct StepField(Step);

/// The `RotationToken`: any string, kept redacted.
struct RotationTokenField(SecretText);

/// `true` or `false`.
struct Flag(bool);

/// A list of secret ARNs or names, at most [`MAX_SECRET_IDS`].
struct SecretIds(Vec<String>);

/// A non-empty string within the length bound, or what is wrong with the value.
fn bounded_text(value: Value) -> Result<String, &'static str> {
    match value {
        Value::String(s) if s.len() > MAX_FIELD_LEN => Err("is longer than 2048 characters"),
        Value::String(s) if s.trim().is_empty() => Err("is empty"),
        Value::String(s) => Ok(s),
        _ => Err("must be a string"),
    }
}

impl<'de> Deserialize<'de> for TextField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        bounded_text(Value::deserialize(deserializer)?)
            .map(TextField)
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for StepField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = bounded_text(Value::deserialize(deserializer)?).map_err(de::Error::custom)?;
        name.parse().map(StepField).map_err(|_| {
            de::Error::custom(format!(
                "is `{}`, not one of {}",
                quote_prefix(&name),
                Step::NAMES
            ))
        })
    }
}

impl<'de> Deserialize<'de> for RotationTokenField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(token) => Ok(RotationTokenField(SecretText::new(token))),
            _ => Err(de::Error::custom("must be a string when present")),
        }
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Bool(flag) => Ok(Flag(flag)),
            _ => Err(de::Error::custom("must be true or false")),
        }
    }
}

impl<'de> Deserialize<'de> for SecretIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Value::Array(items) = Value::deserialize(deserializer)? else {
            return Err(de::Error::custom("must be a list of secret ARNs or names"));
        };
        if items.len() > MAX_SECRET_IDS {
            return Err(de::Error::custom(format!(
                "names {} secrets; at most {MAX_SECRET_IDS} per run",
                items.len()
            )));
        }
        items
            .into_iter()
            .map(|item| bounded_text(item).map(|id| id.trim().to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map(SecretIds)
            .map_err(|_| {
                de::Error::custom(
                    "must be a list of secret ARNs or names (non-empty strings of at most 2048 characters)",
                )
            })
    }
}

/// The one mapping from a parse error to the refusal: which field, what is wrong with it, and
/// what the payload should look like.
fn refuse(error: serde_path_to_error::Error<serde_json::Error>, shape: &str) -> AppError {
    let path = error.path().to_string();
    let problem = error.into_inner().to_string();
    let message = if path == "." {
        format!("{problem}; {shape}")
    } else {
        format!("field `{path}` {problem}; {shape}")
    };
    AppError::InvalidEvent(quote_long(message))
}

/// A missing required field, named like every other refusal.
fn missing(field: &str) -> AppError {
    AppError::InvalidEvent(format!("field `{field}` is missing; {ROTATION_SHAPE}"))
}

/// `message`, cut on a char boundary when longer than [`MAX_MESSAGE_LEN`].
fn quote_long(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_LEN) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

/// Deserialises `payload` as `T`, refusing with `shape` on any error.
fn parse<'a, T: Deserialize<'a>>(payload: &'a Value, shape: &str) -> Result<T, AppError> {
    serde_path_to_error::deserialize(payload).map_err(|error| refuse(error, shape))
}

/// A rotation event as a request, or the refusal naming the first wrong field.
pub(super) fn rotation_request(payload: &Value) -> Result<RotationRequest, AppError> {
    let event: RotationEvent = parse(payload, ROTATION_SHAPE)?;
    let step = event.step.ok_or_else(|| missing("Step"))?.0;
    let secret_id = event.secret_id.ok_or_else(|| missing("SecretId"))?.0;
    let token = event
        .client_request_token
        .ok_or_else(|| missing("ClientRequestToken"))?
        .0;
    Ok(RotationRequest {
        rotation_token: event.rotation_token.map(|token| token.0),
        ..RotationRequest::new(step, secret_id, token)
    })
}

/// A scheduler payload as a run, or the refusal naming the wrong field.
pub(super) fn scheduled_run(payload: &Value) -> Result<ScheduledRun, AppError> {
    let payload: SchedulerPayload = parse(payload, SCHEDULER_SHAPE)?;
    if let Some(field) = payload.unknown.keys().next() {
        return Err(AppError::InvalidEvent(format!(
            "unknown field `{}`; {SCHEDULER_SHAPE}",
            quote_prefix(field)
        )));
    }
    Ok(ScheduledRun {
        secret_ids: payload.secret_ids.map(|ids| ids.0),
        force: payload.force.is_some_and(|flag| flag.0),
        dry_run: payload.dry_run.is_some_and(|flag| flag.0),
    })
}

/// An SQS event, or the refusal naming the wrong field.
pub(super) fn sqs_event(
    payload: &Value,
) -> Result<aws_lambda_events::event::sqs::SqsEvent, AppError> {
    parse(payload, SQS_SHAPE)
}
