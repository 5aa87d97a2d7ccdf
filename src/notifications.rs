//! Notifications for people: what a step or a scheduled run did that someone should know.
//!
//! Seven kinds: a TXT record a person must add, a completed rotation, a rollback, a failure, a
//! record that may now be removed, SES verification overdue, and a record that stopped
//! resolving. Each has a readable subject and text and the same facts as
//! flat fields (sent as SNS message attributes). Never key material.

use std::future::Future;

use serde::Serialize;

use crate::engine::error::EngineError;
use crate::engine::ports::PortError;
use crate::engine::retirement::RetireOutcome;
use crate::engine::schedule::{Action, Alert, IdentityReport};
use crate::engine::secret_doc::DnsRecord;
use crate::engine::steps::{Outcome, StepReport};

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A person must add a TXT record before the rotation can finish.
    RecordToAdd,
    /// SES now signs with the new key.
    RotationCompleted,
    /// SES refused the new key; the previous one was put back.
    RolledBack,
    /// A rotation or maintenance failed.
    Failure,
    /// The previous selector's record may now be removed.
    RecordRemovable,
    /// SES has said `PENDING` for longer than `DKIM_PENDING_ALERT_HOURS`.
    VerificationOverdue,
    /// SES verified the selector before, but its record stopped resolving.
    TemporaryFailure,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// What it is about.
    pub kind: NotificationKind,
    /// Short subject (≤ 100 characters, SNS's limit).
    pub subject: String,
    /// Text for a person.
    pub text: String,
    /// The same facts as flat fields.
    pub fields: Vec<(&'static str, String)>,
}

fn record_fields(fields: &mut Vec<(&'static str, String)>, record: &Option<DnsRecord>) {
    if let Some(record) = record {
        fields.push(("dns_name", record.name.clone()));
        fields.push(("dns_value", record.value.clone()));
    }
}

fn build(
    kind: NotificationKind,
    identity: &str,
    secret_id: &str,
    selector: Option<&str>,
    text: String,
    mut extra: Vec<(&'static str, String)>,
) -> Notification {
    let subject = match kind {
        NotificationKind::RecordToAdd => format!("DKIM: add a TXT record for {identity}"),
        NotificationKind::RotationCompleted => format!("DKIM: key rotated for {identity}"),
        NotificationKind::RolledBack => format!("DKIM: rotation rolled back for {identity}"),
        NotificationKind::Failure => format!("DKIM: rotation failed for {identity}"),
        NotificationKind::RecordRemovable => {
            format!("DKIM: old record may be removed for {identity}")
        }
        NotificationKind::VerificationOverdue => {
            format!("DKIM: SES has not verified the new key for {identity}")
        }
        NotificationKind::TemporaryFailure => {
            format!("DKIM: the DKIM record of {identity} stopped resolving")
        }
    };
    let mut fields = vec![
        (
            "kind",
            serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        ("identity", identity.to_owned()),
        ("secret_id", secret_id.to_owned()),
    ];
    if let Some(selector) = selector {
        fields.push(("selector", selector.to_owned()));
    }
    fields.append(&mut extra);
    Notification {
        kind,
        subject: subject.chars().take(100).collect(),
        text,
        fields,
    }
}

/// The notification a Secrets Manager step's success calls for, if any.
pub fn for_step(report: &StepReport) -> Option<Notification> {
    let identity = report.identity.as_deref().unwrap_or("?");
    let selector = report.selector.as_deref();
    let mut extra = Vec::new();
    record_fields(&mut extra, &report.dns_record);
    match report.outcome {
        Outcome::RecordHintPublished => {
            let record = report.dns_record.as_ref()?;
            Some(build(
                NotificationKind::RecordToAdd,
                identity,
                &report.secret_id,
                selector,
                format!(
                    "Add this DNS record for {identity}, as ONE TXT record:\n\n  {} TXT {}\n\nThe rotation switches SES to the new key once DNS serves it.",
                    record.name, record.presentation
                ),
                extra,
            ))
        }
        Outcome::SesSwitched => Some(build(
            NotificationKind::RotationCompleted,
            identity,
            &report.secret_id,
            selector,
            format!(
                "SES now signs mail for {identity} with selector {}. The previous selector's record stays published through the grace period.",
                selector.unwrap_or("?")
            ),
            extra,
        )),
        _ => None,
    }
}

/// The notification a failed step or run calls for.
pub fn for_error(secret_id: &str, identity: Option<&str>, error: &EngineError) -> Notification {
    let kind = if error.rolled_back() {
        NotificationKind::RolledBack
    } else {
        NotificationKind::Failure
    };
    build(
        kind,
        identity.unwrap_or("?"),
        secret_id,
        None,
        error.to_string(),
        vec![("error_type", error.error_type().to_owned())],
    )
}

/// The notification a scheduled run's line calls for, if any.
pub fn for_identity(report: &IdentityReport) -> Option<Notification> {
    if report.planned {
        return None;
    }
    let identity = report.identity.as_deref().unwrap_or("?");
    let selector = report.selector.as_deref();
    let mut extra = Vec::new();
    record_fields(&mut extra, &report.dns_record);
    let (kind, text) = match report.action {
        Action::Rotated | Action::Resumed => (
            NotificationKind::RotationCompleted,
            format!(
                "SES now signs mail for {identity} with selector {}.",
                selector.unwrap_or("?")
            ),
        ),
        Action::WaitingForDns => {
            let record = report.dns_record.as_ref()?;
            (
                NotificationKind::RecordToAdd,
                format!(
                    "Add this DNS record for {identity}, as ONE TXT record:\n\n  {} TXT {}\n\nThe next run switches SES once DNS serves it.",
                    record.name, record.presentation
                ),
            )
        }
        Action::Failed => {
            extra.push((
                "error_type",
                report.error_type.unwrap_or_default().to_owned(),
            ));
            let kind = if report.rolled_back {
                NotificationKind::RolledBack
            } else {
                NotificationKind::Failure
            };
            (kind, report.error.clone().unwrap_or_default())
        }
        Action::RolledBack => (
            NotificationKind::RolledBack,
            report.detail.clone().unwrap_or_default(),
        ),
        Action::Pending => match &report.alert {
            Some(Alert::VerificationOverdue { hours }) => (
                NotificationKind::VerificationOverdue,
                format!(
                    "SES has said PENDING for selector {} of {identity} for {hours:.0} hours (it gives up after 72 and then says FAILED, and this function rolls back). Check that DNS serves its TXT record to the world, not only to the servers this function asks.",
                    selector.unwrap_or("?")
                ),
            ),
            None => return None,
        },
        Action::TemporaryFailure => (
            NotificationKind::TemporaryFailure,
            format!(
                "SES verified selector {} of {identity} before, but its TXT record no longer resolves (TEMPORARY_FAILURE). Nothing was rolled back: make the record resolve again.",
                selector.unwrap_or("?")
            ),
        ),
        Action::Retired if report.retired == Some(RetireOutcome::RemovalHinted) => (
            NotificationKind::RecordRemovable,
            format!(
                "The grace period of {identity}'s previous DKIM selector is over: {}. You may now remove its TXT record.",
                report.detail.clone().unwrap_or_default()
            ),
        ),
        _ => return None,
    };
    Some(build(
        kind,
        identity,
        &report.secret_id,
        selector,
        text,
        extra,
    ))
}

/// Sends notifications.
pub trait Notifier: Send + Sync {
    /// Publishes one notification.
    fn publish(
        &self,
        notification: &Notification,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}
