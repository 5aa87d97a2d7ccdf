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
use crate::engine::rotation::{Outcome, StepReport};
use crate::engine::schedule::{Action, Alert, IdentityReport};
use crate::engine::secret_doc::DnsRecord;

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
    /// DKIM signing is off for the identity (`SigningEnabled=false`).
    SigningDisabled,
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

/// What happened, as the two report vocabularies ([`StepReport`] of a Secrets Manager step,
/// [`IdentityReport`] of a scheduled run) both map into it: each text is written once, in
/// [`compose`].
enum Happened<'a> {
    /// A person must add `record`; `then` says what happens once DNS serves it.
    RecordToAdd {
        record: &'a DnsRecord,
        then: &'a str,
    },
    /// SES signs with the new selector.
    Switched,
    /// A failure (`rolled_back`: SES was put back on the previous key).
    Failed {
        error_type: &'a str,
        message: String,
        rolled_back: bool,
    },
    /// The watcher rolled back after SES said `FAILED`; `detail` says how.
    RolledBack { detail: String },
    /// SES has said `PENDING` for `hours`.
    Overdue { hours: f64 },
    /// A verified record stopped resolving.
    TemporaryFailure,
    /// DKIM signing is off in `regions`.
    SigningDisabled { regions: &'a [String] },
    /// Hint mode: the previous record may now be removed; `detail` names it.
    RecordRemovable { detail: String },
}

/// Who and what a notification is about.
struct About<'a> {
    identity: &'a str,
    secret_id: &'a str,
    selector: Option<&'a str>,
    record: Option<&'a DnsRecord>,
}

/// The one place each notification's kind, subject and text are written.
fn compose(about: &About<'_>, happened: Happened<'_>) -> Notification {
    let identity = about.identity;
    let selector = about.selector.unwrap_or("?");
    let mut extra = Vec::new();
    if let Some(record) = about.record {
        extra.push(("dns_name", record.name.clone()));
        extra.push(("dns_value", record.value.clone()));
    }
    let (kind, text) = match happened {
        Happened::RecordToAdd { record, then } => (
            NotificationKind::RecordToAdd,
            format!(
                "Add this DNS record for {identity}, as ONE TXT record:\n\n  {} TXT {}\n\n{then}",
                record.name, record.presentation
            ),
        ),
        Happened::Switched => (
            NotificationKind::RotationCompleted,
            format!(
                "SES now signs mail for {identity} with selector {selector}. The previous selector's record stays published through the grace period."
            ),
        ),
        Happened::Failed {
            error_type,
            message,
            rolled_back,
        } => {
            extra.push(("error_type", error_type.to_owned()));
            let kind = if rolled_back {
                NotificationKind::RolledBack
            } else {
                NotificationKind::Failure
            };
            (kind, message)
        }
        Happened::RolledBack { detail } => (NotificationKind::RolledBack, detail),
        Happened::Overdue { hours } => (
            NotificationKind::VerificationOverdue,
            format!(
                "SES has said PENDING for selector {selector} of {identity} for {hours:.0} hours (it gives up after 72 and then says FAILED, and this function rolls back). Check that DNS serves its TXT record to the world, not only to the servers this function asks."
            ),
        ),
        Happened::SigningDisabled { regions } => (
            NotificationKind::SigningDisabled,
            format!(
                "DKIM signing is turned off for {identity} in {} (SigningEnabled=false): SES sends its mail unsigned. This function never turns signing on or off, and does not rotate the key while it is off. Turn it on with aws sesv2 put-email-identity-dkim-attributes --email-identity {identity} --signing-enabled (in each region named), or stop rotating this identity.",
                regions.join(", ")
            ),
        ),
        Happened::TemporaryFailure => (
            NotificationKind::TemporaryFailure,
            format!(
                "SES verified selector {selector} of {identity} before, but its TXT record no longer resolves (TEMPORARY_FAILURE). Nothing was rolled back: make the record resolve again."
            ),
        ),
        Happened::RecordRemovable { detail } => (
            NotificationKind::RecordRemovable,
            format!(
                "The grace period of {identity}'s previous DKIM selector is over: {detail}. You may now remove its TXT record."
            ),
        ),
    };
    build(kind, about, text, extra)
}

fn build(
    kind: NotificationKind,
    about: &About<'_>,
    text: String,
    mut extra: Vec<(&'static str, String)>,
) -> Notification {
    let identity = about.identity;
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
        NotificationKind::SigningDisabled => {
            format!("DKIM: signing is turned off for {identity}")
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
        ("secret_id", about.secret_id.to_owned()),
    ];
    if let Some(selector) = about.selector {
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
    let about = About {
        identity: report.identity.as_deref().unwrap_or("?"),
        secret_id: &report.secret_id,
        selector: report.selector.as_deref(),
        record: report.dns_record.as_ref(),
    };
    let happened = match report.outcome {
        Outcome::RecordHintPublished => Happened::RecordToAdd {
            record: report.dns_record.as_ref()?,
            then: "The rotation switches SES to the new key once DNS serves it.",
        },
        Outcome::SesSwitched => Happened::Switched,
        _ => return None,
    };
    Some(compose(&about, happened))
}

/// The notification a failed step or run calls for.
pub fn for_error(secret_id: &str, identity: Option<&str>, error: &EngineError) -> Notification {
    let about = About {
        identity: identity.unwrap_or("?"),
        secret_id,
        selector: None,
        record: None,
    };
    compose(
        &about,
        Happened::Failed {
            error_type: error.error_type(),
            message: error.to_string(),
            rolled_back: error.rolled_back(),
        },
    )
}

/// The notification a scheduled run's line calls for, if any.
pub fn for_identity(report: &IdentityReport) -> Option<Notification> {
    if report.planned {
        return None;
    }
    let about = About {
        identity: report.identity.as_deref().unwrap_or("?"),
        secret_id: &report.secret_id,
        selector: report.selector.as_deref(),
        record: report.dns_record.as_ref(),
    };
    let detail = || report.detail.clone().unwrap_or_default();
    if let Some(Alert::SigningDisabled { regions }) = &report.alert
        && report.action != Action::Failed
    {
        return Some(compose(&about, Happened::SigningDisabled { regions }));
    }
    let happened = match report.action {
        Action::Rotated | Action::Resumed => Happened::Switched,
        Action::WaitingForDns => Happened::RecordToAdd {
            record: report.dns_record.as_ref()?,
            then: "The next run switches SES once DNS serves it.",
        },
        Action::Failed => Happened::Failed {
            error_type: report.error_type.unwrap_or_default(),
            message: report.error.clone().unwrap_or_default(),
            rolled_back: report.rolled_back,
        },
        Action::RolledBack => Happened::RolledBack { detail: detail() },
        Action::Pending => match &report.alert {
            Some(Alert::VerificationOverdue { hours }) => Happened::Overdue { hours: *hours },
            _ => return None,
        },
        Action::TemporaryFailure => Happened::TemporaryFailure,
        Action::Retired if report.retired == Some(RetireOutcome::RemovalHinted) => {
            Happened::RecordRemovable { detail: detail() }
        }
        _ => return None,
    };
    Some(compose(&about, happened))
}

/// Sends notifications.
pub trait Notifier: Send + Sync {
    /// Publishes one notification.
    fn publish(
        &self,
        notification: &Notification,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}
