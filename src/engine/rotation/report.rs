//! What a rotation step did: [`Outcome`] and the [`StepReport`] returned and logged (never key
//! material).

use serde::Serialize;

use super::request::{RotationRequest, Step};
use crate::engine::ports::{DkimStatus, SesDkimState, SigningOrigin};
use crate::engine::secret_doc::{DkimSecret, DnsRecord, PublishedKey};

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The token is already `AWSCURRENT`: nothing to do.
    AlreadyCurrent,
    /// A new key was stored as `AWSPENDING`.
    KeyCreated,
    /// `AWSPENDING` already held this rotation's key (a retried step).
    KeyAlreadyCreated,
    /// An earlier, unfinished attempt's key and selector were reused for this token.
    KeyResumed,
    /// The TXT record to publish was logged and returned.
    RecordHintPublished,
    /// The TXT record was written to Route 53 or by RFC 2136 update.
    RecordPublished,
    /// The pending key passed every check.
    PendingKeyTested,
    /// SES now signs with the new key, and it is `AWSCURRENT`.
    SesSwitched,
    /// SES already signed with the new key (a retried step); the stage was moved.
    SesAlreadySwitched,
}

/// The result of a step: safe to log and to return (no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// The step run.
    pub step: Step,
    /// The secret.
    pub secret_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// The identity, when the step read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The selector being rotated in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The selector being rotated out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_selector: Option<String>,
    /// The TXT record that must be published for the new selector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_record: Option<DnsRecord>,
    /// SES's DKIM key origin after the step, when the step read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ses_origin: Option<SigningOrigin>,
    /// SES's DKIM status after the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ses_status: Option<DkimStatus>,
    /// The DNS verification outcome, when the step checked DNS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_check: Option<&'static str>,
}

impl StepReport {
    pub(crate) fn new(request: &RotationRequest, outcome: Outcome) -> Self {
        Self {
            step: request.step,
            secret_id: request.secret_id.clone(),
            outcome,
            identity: None,
            selector: None,
            previous_selector: None,
            dns_record: None,
            ses_origin: None,
            ses_status: None,
            dns_check: None,
        }
    }

    pub(crate) fn with_pending(mut self, pending: &DkimSecret, key: &PublishedKey) -> Self {
        self.identity = Some(pending.identity.to_string());
        self.selector = Some(key.selector.to_string());
        self.previous_selector = pending.previous_selector.as_ref().map(|s| s.to_string());
        self.dns_record = Some(DnsRecord::for_key(&pending.identity, key));
        self
    }

    pub(crate) fn with_ses(mut self, state: &SesDkimState) -> Self {
        self.ses_origin = state.origin.clone();
        self.ses_status = state.status.clone();
        self
    }
}
