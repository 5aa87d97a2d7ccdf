//! The four Secrets Manager rotation steps, as one engine over the ports.
//!
//! Every step starts with the same preamble (`DescribeSecret`): rotation must be on, the
//! event's token must be a staged version; a token that is already `AWSCURRENT` means the step
//! has nothing left to do; anything else not `AWSPENDING` is an error. Each step is idempotent,
//! so Secrets Manager may retry any of them:
//!
//! | step | does | on retry |
//! |---|---|---|
//! | `createSecret` | new key + selector into `AWSPENDING` | finds the pending key, makes no second one |
//! | `setSecret` | publishes the TXT record (Route 53, RFC 2136, or a hint) | same record again |
//! | `testSecret` | checks the pending key, then that DNS serves its TXT record | same checks |
//! | `finishSecret` | re-verifies DNS, points SES at the new selector, confirms SES's status (rolls back on `FAILED`), then moves `AWSCURRENT` | SES already switched: only the stage move |
//!
//! Mail never breaks: SES is switched only to a selector whose TXT record DNS serves, and the
//! previous selector's record stays published (see [`super::retirement`]).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::dns_check::{DnsCheck, check_all_servers};
use super::error::{ABANDON_ROTATION, EngineError, Rollback};
use super::key::DkimKeyPair;
use super::ports::{
    Clock, Deadline, DkimStatus, DnsPublisher, DnsTxtLookup, FailureKind, PortError, Ports,
    PublishMode, STAGE_CURRENT, STAGE_PENDING, STAGE_PREVIOUS, SecretDescription, SecretStore,
    SesDkimState, SigningOrigin, TxtRecord,
};
use super::quoting::quote_prefix;
use super::regions::SesView;
use super::retirement::{self, RetireOutcome};
use super::secret_doc::{DkimSecret, DnsRecord, PublishedKey};
use super::selector::Selector;
use super::tags::{self, TAG_ADOPTED_FROM, TAG_REJECTED};
use super::{Engine, VersionLabel};
use crate::secret_text::SecretText;

/// One of Secrets Manager's four rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// Make the new key and store it as `AWSPENDING`.
    CreateSecret,
    /// Publish the new key's DNS record.
    SetSecret,
    /// Check the pending key before it goes live.
    TestSecret,
    /// Switch SES to the new key and make it `AWSCURRENT`.
    FinishSecret,
}

impl Step {
    /// The name Secrets Manager uses for the step.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateSecret => "createSecret",
            Step::SetSecret => "setSecret",
            Step::TestSecret => "testSecret",
            Step::FinishSecret => "finishSecret",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "createSecret" => Ok(Step::CreateSecret),
            "setSecret" => Ok(Step::SetSecret),
            "testSecret" => Ok(Step::TestSecret),
            "finishSecret" => Ok(Step::FinishSecret),
            other => Err(format!(
                "`Step` is `{}`; expected one of createSecret, setSecret, testSecret, finishSecret",
                quote_prefix(other)
            )),
        }
    }
}

/// One invocation of a rotation step.
#[derive(Debug, Clone)]
pub struct RotationRequest {
    /// Which step.
    pub step: Step,
    /// The secret's ARN or name.
    pub secret_id: String,
    /// The version being rotated in (`ClientRequestToken`).
    pub token: String,
    /// Secrets Manager's `RotationToken`, passed on to `PutSecretValue` (redacted in `Debug`).
    pub rotation_token: Option<SecretText>,
    /// When the invocation must be done (Lambda's deadline); bounds DNS waits.
    pub deadline: Deadline,
    /// Who asked: Secrets Manager's rotation, or this function's own schedule.
    pub trigger: Trigger,
}

/// Who drives a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Secrets Manager's rotation: rotation must be enabled and the token staged by it.
    SecretsManager,
    /// The scheduled run: the token is this function's own, staged by `createSecret`.
    Schedule,
}

impl RotationRequest {
    /// A Secrets Manager rotation request with no deadline and no `RotationToken`.
    pub fn new(step: Step, secret_id: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            step,
            secret_id: secret_id.into(),
            token: token.into(),
            rotation_token: None,
            deadline: Deadline::NONE,
            trigger: Trigger::SecretsManager,
        }
    }
}

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
    fn new(request: &RotationRequest, outcome: Outcome) -> Self {
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

    fn with_pending(mut self, pending: &DkimSecret, key: &PublishedKey) -> Self {
        self.identity = Some(pending.identity.to_string());
        self.selector = Some(key.selector.to_string());
        self.previous_selector = pending.previous_selector.as_ref().map(|s| s.to_string());
        self.dns_record = Some(DnsRecord::for_key(&pending.identity, key));
        self
    }

    fn with_ses(mut self, state: &SesDkimState) -> Self {
        self.ses_origin = state.origin.clone();
        self.ses_status = state.status.clone();
        self
    }
}

/// The pending version of a rotation, parsed, with its key.
#[derive(Clone)]
struct PendingKey {
    doc: DkimSecret,
    key: PublishedKey,
}

/// What one invocation has already read or written about a secret, carried from step to step
/// when one invocation runs all four (a scheduled rotation), so a step does not read again what
/// the step before it just read or wrote.
///
/// A step Secrets Manager invokes starts knowing nothing and reads everything. Each step still
/// stands alone after a crash: the retry is a new invocation, which knows nothing.
#[derive(Default)]
pub(crate) struct KnownState {
    /// `DescribeSecret`, with the labels this invocation moved and the tags it wrote.
    description: Option<SecretDescription>,
    /// `AWSCURRENT`, already checked against the identity guards, and SES's view of it.
    current: Option<(DkimSecret, SesView)>,
    /// The `AWSPENDING` value this invocation stored or read for the rotation's token.
    pending: Option<PendingKey>,
}

impl KnownState {
    /// What a scheduled run read before it decided to rotate: the description (with what the
    /// run wrote since) and the checked `AWSCURRENT` with SES's view of it.
    pub(crate) fn read_by_run(
        description: SecretDescription,
        current: (DkimSecret, SesView),
    ) -> Self {
        KnownState {
            description: Some(description),
            current: Some(current),
            pending: None,
        }
    }

    /// The pending key's document, when this invocation has it.
    pub(crate) fn pending_doc(&self) -> Option<&DkimSecret> {
        self.pending.as_ref().map(|p| &p.doc)
    }
}

impl<P: Ports> Engine<P> {
    /// Runs one rotation step, reading everything it needs.
    pub async fn run_step(&self, request: &RotationRequest) -> Result<StepReport, EngineError> {
        self.run_step_knowing(request, &mut KnownState::default())
            .await
    }

    /// Runs one rotation step, reading only what `known` does not hold, and leaves in `known`
    /// what the next step of the same invocation may use.
    pub(crate) async fn run_step_knowing(
        &self,
        request: &RotationRequest,
        known: &mut KnownState,
    ) -> Result<StepReport, EngineError> {
        let mut description = match known.description.take() {
            Some(description) => description,
            None => self.store().describe(&request.secret_id).await?,
        };
        if self.check_staging(request, &description)? {
            // A finishSecret that died after moving AWSCURRENT may have left AWSPENDING on
            // the same version: take it off so the next rotation can start.
            if request.step == Step::FinishSecret {
                self.clear_pending_left_on_current(&request.secret_id, &mut description)
                    .await?;
            }
            return Ok(StepReport::new(request, Outcome::AlreadyCurrent));
        }
        let report = match request.step {
            Step::CreateSecret => self.create_secret(request, &description, known).await,
            Step::SetSecret => self.set_secret(request, known).await,
            Step::TestSecret => self.test_secret(request, known).await,
            Step::FinishSecret => self.finish_secret(request, &description, known).await,
        };
        // createSecret leaves the description it changed; the other steps change no label
        // the next step reads (finishSecret is the last).
        known.description.get_or_insert(description);
        report
    }

    /// A run that died after moving `AWSCURRENT` and before taking `AWSPENDING` off that
    /// version leaves both labels on it (harmless to `RotateSecret`, but not the state an
    /// uninterrupted rotation ends in): take `AWSPENDING` off, in Secrets Manager and in
    /// `description`.
    pub(crate) async fn clear_pending_left_on_current(
        &self,
        secret_id: &str,
        description: &mut SecretDescription,
    ) -> Result<(), EngineError> {
        let leftover = description.versions.iter_mut().find(|(_, stages)| {
            stages.iter().any(|s| s == STAGE_CURRENT) && stages.iter().any(|s| s == STAGE_PENDING)
        });
        let Some((version, stages)) = leftover else {
            return Ok(());
        };
        self.store().clear_pending(secret_id, version).await?;
        stages.retain(|s| s != STAGE_PENDING);
        tracing::info!(
            secret_id,
            version,
            "took a leftover AWSPENDING off the current version"
        );
        Ok(())
    }

    /// `AWSCURRENT` checked against the identity guards and SES's view of it, unless this
    /// invocation has it already.
    async fn current_knowing(
        &self,
        secret_id: &str,
        known: &mut KnownState,
    ) -> Result<(DkimSecret, SesView), EngineError> {
        if let Some(current) = &known.current {
            return Ok(current.clone());
        }
        let current = self.read_current_checked(secret_id).await?;
        known.current = Some(current.clone());
        Ok(current)
    }

    /// The token's pending key, unless this invocation has it already; `None` when the
    /// version has no value, or when `description` lists no such version (nothing to read).
    async fn pending_knowing(
        &self,
        request: &RotationRequest,
        description: Option<&SecretDescription>,
        known: &mut KnownState,
    ) -> Result<Option<PendingKey>, EngineError> {
        if let Some(pending) = &known.pending {
            return Ok(Some(pending.clone()));
        }
        if description.is_some_and(|d| !d.versions.contains_key(&request.token)) {
            return Ok(None);
        }
        let pending = self.read_pending(request).await?;
        known.pending.clone_from(&pending);
        Ok(pending)
    }

    /// [`Self::pending_knowing`], with no value an error.
    async fn require_pending_knowing(
        &self,
        request: &RotationRequest,
        known: &mut KnownState,
    ) -> Result<PendingKey, EngineError> {
        self.pending_knowing(request, None, known)
            .await?
            .ok_or_else(|| EngineError::PendingMissing {
                secret_id: request.secret_id.clone(),
                token: request.token.clone(),
            })
    }

    /// The preamble every step shares; `Ok(true)` means the token is already current.
    fn check_staging(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
    ) -> Result<bool, EngineError> {
        let scheduled = request.trigger == Trigger::Schedule;
        if !scheduled && !description.rotation_enabled {
            return Err(EngineError::RotationNotEnabled {
                secret_id: request.secret_id.clone(),
            });
        }
        let Some(stages) = description.versions.get(&request.token) else {
            // A scheduled rotation's own token is staged by its createSecret.
            if scheduled && request.step == Step::CreateSecret {
                return Ok(false);
            }
            return Err(EngineError::TokenNotStaged {
                secret_id: request.secret_id.clone(),
                token: request.token.clone(),
            });
        };
        if stages.iter().any(|s| s == STAGE_CURRENT) {
            return Ok(true);
        }
        if !stages.iter().any(|s| s == STAGE_PENDING) {
            return Err(EngineError::TokenNotPending {
                secret_id: request.secret_id.clone(),
                token: request.token.clone(),
                stages: if stages.is_empty() {
                    "none".into()
                } else {
                    stages.join(",")
                },
            });
        }
        Ok(false)
    }

    /// Reads and parses the `AWSPENDING` value of `version`; `None` when it has no value.
    async fn read_pending_version(
        &self,
        secret_id: &str,
        version: &str,
    ) -> Result<Option<PendingKey>, EngineError> {
        let conflict = |reason: String| EngineError::PendingConflict {
            secret_id: secret_id.to_owned(),
            reason: format!("AWSPENDING version {version} {reason}; {ABANDON_ROTATION}"),
        };
        let doc = match self
            .read_doc(secret_id, VersionLabel::pending(version))
            .await
        {
            Ok(Some(doc)) => doc,
            Ok(None) => return Ok(None),
            Err(EngineError::CorruptSecret { reason, .. }) => {
                return Err(conflict(format!("is not a valid DKIM secret ({reason})")));
            }
            Err(other) => return Err(other),
        };
        let key = doc
            .key
            .clone()
            .ok_or_else(|| conflict("holds no key".into()))?;
        Ok(Some(PendingKey { doc, key }))
    }

    async fn read_pending(
        &self,
        request: &RotationRequest,
    ) -> Result<Option<PendingKey>, EngineError> {
        self.read_pending_version(&request.secret_id, &request.token)
            .await
    }

    /// The checked `AWSCURRENT`, SES's view of it, and the token's pending key, which must be
    /// for the same identity and hold a new key and selector.
    async fn current_and_new_pending(
        &self,
        request: &RotationRequest,
        known: &mut KnownState,
    ) -> Result<(DkimSecret, SesView, PendingKey), EngineError> {
        let (current, ses) = self.current_knowing(&request.secret_id, known).await?;
        let pending = self.require_pending_knowing(request, known).await?;
        Self::check_same_identity(request, &current, &pending)?;
        Self::check_pending_is_new(request, &current, &pending)?;
        Ok((current, ses, pending))
    }

    fn check_same_identity(
        request: &RotationRequest,
        current: &DkimSecret,
        pending: &PendingKey,
    ) -> Result<(), EngineError> {
        if current.identity != pending.doc.identity {
            return Err(EngineError::IdentityMismatch {
                secret_id: request.secret_id.clone(),
                current: current.identity.to_string(),
                pending: pending.doc.identity.to_string(),
            });
        }
        Ok(())
    }

    fn check_pending_is_new(
        request: &RotationRequest,
        current: &DkimSecret,
        pending: &PendingKey,
    ) -> Result<(), EngineError> {
        if let Some(current_key) = &current.key
            && (current_key.selector == pending.key.selector
                || current_key.key.public_key() == pending.key.key.public_key())
        {
            return Err(EngineError::PendingConflict {
                secret_id: request.secret_id.clone(),
                reason: format!(
                    "AWSPENDING version {} holds the current key or selector, not a new one; {ABANDON_ROTATION}",
                    request.token
                ),
            });
        }
        Ok(())
    }

    /// A key an earlier, unfinished attempt handed out, if usable: the newest version, newer
    /// than the current key, that is neither current nor previous and holds a key for the
    /// same identity and size. The record a person may already have added for it must stay
    /// the one used.
    async fn leftover_key(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
        current: &DkimSecret,
    ) -> Result<Option<(String, PublishedKey)>, EngineError> {
        let labelled_out = |id: &str| {
            description.versions.get(id).is_some_and(|stages| {
                stages
                    .iter()
                    .any(|s| s == STAGE_CURRENT || s == STAGE_PREVIOUS)
            })
        };
        let versions = self.store().list_versions(&request.secret_id).await?;
        let current_id = description.version_with_stage(STAGE_CURRENT);
        let current_created = versions
            .iter()
            .find(|v| Some(v.version_id.as_str()) == current_id)
            .and_then(|v| v.created);
        // Only versions made after the current one can be an unfinished attempt.
        let candidates = versions
            .iter()
            .filter(|v| match (v.created, current_created) {
                (Some(created), Some(current)) => created >= current,
                _ => true,
            });
        for info in candidates {
            let version = &info.version_id;
            if *version == request.token || labelled_out(version) {
                continue;
            }
            // An unreadable or foreign version is not a resumable attempt: pass it by.
            let Ok(Some(doc)) = self
                .read_doc(&request.secret_id, VersionLabel::id(version))
                .await
            else {
                continue;
            };
            let Some(key) = doc.key.clone() else {
                continue;
            };
            let pending = PendingKey { doc, key };
            let rejected = description.tags.get(TAG_REJECTED).map(String::as_str);
            let usable = pending.doc.identity == current.identity
                && pending.key.key.bits() == self.policy().key_bits
                && !tags::is_rejected(rejected, pending.key.selector.as_str())
                && Self::check_pending_is_new(request, current, &pending).is_ok();
            if usable {
                return Ok(Some((version.clone(), pending.key)));
            }
        }
        Ok(None)
    }

    async fn create_secret(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
        known: &mut KnownState,
    ) -> Result<StepReport, EngineError> {
        let (current, ses) = self.current_knowing(&request.secret_id, known).await?;
        self.check_easy_dkim_consent(&current, &ses)?;
        if let Some(pending) = self
            .pending_knowing(request, Some(description), known)
            .await?
        {
            Self::check_same_identity(request, &current, &pending)?;
            Self::check_pending_is_new(request, &current, &pending)?;
            return Ok(StepReport::new(request, Outcome::KeyAlreadyCreated)
                .with_pending(&pending.doc, &pending.key));
        }

        // Last chance to retire the selector before the current one: after this rotation the
        // secret no longer names it. Best effort: a failure here must not stop the rotation.
        let decision = retirement::assess(
            &current,
            |key| description.tags.get(key).cloned(),
            self.policy().retirement(),
            self.now(),
        );
        match retirement::carry_out(
            self.ports(),
            self.policy().retirement(),
            &request.secret_id,
            decision,
            &current,
            &ses.combined,
            self.now(),
        )
        .await
        {
            Ok(report) if report.outcome == RetireOutcome::GracePeriod => tracing::warn!(
                secret_id = %request.secret_id,
                selector = report.selector.as_deref(),
                grace_until = report.grace_until.as_deref(),
                "rotating again inside the previous selector's grace period: its record stays published and must be removed by hand later"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(
                secret_id = %request.secret_id,
                %error,
                "could not retire the previous selector; rotating anyway"
            ),
        }
        let leftover = self.leftover_key(request, description, &current).await?;
        let (published, outcome) = match &leftover {
            Some((_, key)) => (key.clone(), Outcome::KeyResumed),
            None => (self.new_key(&current, &ses)?, Outcome::KeyCreated),
        };
        let next = current.rotated(published.clone());

        let put = self
            .store()
            .put_pending(
                &request.secret_id,
                &request.token,
                &next.to_secret_string(),
                request.rotation_token.as_ref(),
            )
            .await;
        match put {
            Ok(()) => {}
            // A concurrent invocation stored this token's version first: use its key.
            Err(e) if e.kind == FailureKind::Conflict => {
                let pending = self.read_pending(request).await?.ok_or(e)?;
                Self::check_same_identity(request, &current, &pending)?;
                return Ok(StepReport::new(request, Outcome::KeyAlreadyCreated)
                    .with_pending(&pending.doc, &pending.key));
            }
            Err(e) => return Err(e.into()),
        }
        let mut described = description.clone();
        described
            .versions
            .insert(request.token.clone(), vec![STAGE_PENDING.to_owned()]);
        // Should the earlier attempt still carry AWSPENDING, it would block the next
        // RotateSecret: its key lives on in this version now.
        if let Some((version, _)) = &leftover
            && let Some(stages) = described.versions.get_mut(version)
            && stages.iter().any(|s| s == STAGE_PENDING)
        {
            self.store()
                .clear_pending(&request.secret_id, version)
                .await?;
            stages.retain(|s| s != STAGE_PENDING);
        }
        known.description = Some(described);
        known.pending = Some(PendingKey {
            doc: next.clone(),
            key: published.clone(),
        });
        tracing::info!(
            secret_id = %request.secret_id,
            identity = %next.identity,
            selector = %published.selector,
            key_bits = published.key.bits().bits(),
            resumed_from = leftover.as_ref().map(|(v, _)| v.as_str()),
            "stored DKIM key as AWSPENDING"
        );
        Ok(StepReport::new(request, outcome).with_pending(&next, &published))
    }

    /// A fresh key and a selector that is neither the current, the previous nor SES's.
    fn new_key(&self, current: &DkimSecret, ses: &SesView) -> Result<PublishedKey, EngineError> {
        let now = self.now();
        let taken: Vec<Selector> = current
            .key
            .iter()
            .map(|k| k.selector.clone())
            .chain(current.previous_selector.clone())
            .chain(
                ses.by_region
                    .iter()
                    .flat_map(|r| &r.state.selectors)
                    .filter_map(|s| Selector::parse(s).ok()),
            )
            .collect();
        let taken_refs: Vec<&Selector> = taken.iter().collect();
        let selector = Selector::generate(
            &self.policy().selector_prefix,
            now.date(),
            &taken_refs,
            rand::random::<u16>,
        );
        Ok(PublishedKey {
            selector,
            key: DkimKeyPair::generate(self.policy().key_bits)?,
            created_at: Some(now.format(&Rfc3339).unwrap_or_else(|_| now.to_string())),
        })
    }

    async fn set_secret(
        &self,
        request: &RotationRequest,
        known: &mut KnownState,
    ) -> Result<StepReport, EngineError> {
        let pending = self.require_pending_knowing(request, known).await?;
        self.policy
            .allowed_identities
            .check(&pending.doc.identity)
            .map_err(EngineError::IdentityNotAllowed)?;
        let record = DnsRecord::for_key(&pending.doc.identity, &pending.key);
        let outcome = match self.ports().dns().mode() {
            PublishMode::Hint => {
                tracing::info!(
                    secret_id = %request.secret_id,
                    identity = %pending.doc.identity,
                    selector = %pending.key.selector,
                    dns_name = %record.name,
                    dns_type = "TXT",
                    dns_value = %record.value,
                    dns_presentation = %record.presentation,
                    "publish this DKIM TXT record"
                );
                Outcome::RecordHintPublished
            }
            mode => {
                self.ports()
                    .dns()
                    .upsert_txt(
                        TxtRecord {
                            identity: pending.doc.identity.as_str(),
                            name: &record.name,
                            value: &record.value,
                            zone_hint: pending.doc.hosted_zone_id(),
                        },
                        request.deadline,
                    )
                    .await
                    .map_err(|source| EngineError::DnsPublishFailed {
                        secret_id: request.secret_id.clone(),
                        name: record.name.clone(),
                        source,
                    })?;
                tracing::info!(
                    secret_id = %request.secret_id,
                    dns_name = %record.name,
                    publisher = ?mode,
                    "published DKIM TXT record"
                );
                Outcome::RecordPublished
            }
        };
        Ok(StepReport::new(request, outcome).with_pending(&pending.doc, &pending.key))
    }

    /// Checks DNS for the pending key's record, retrying while the deadline allows.
    async fn verify_published(
        &self,
        request: &RotationRequest,
        pending: &PendingKey,
    ) -> Result<Option<&'static str>, EngineError> {
        if !self.policy().verify_dns {
            return Ok(None);
        }
        let record = DnsRecord::for_key(&pending.doc.identity, &pending.key);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let answer = self
                .ports()
                .lookup()
                .lookup_txt(pending.doc.identity.as_str(), &record.name)
                .await;
            let check = check_all_servers(&answer, pending.key.key.public_key());
            if check.is_published() {
                return Ok(Some(check.kind()));
            }
            if !self.time_for_another_attempt(request.deadline) {
                tracing::warn!(
                    secret_id = %request.secret_id,
                    dns_name = %record.name,
                    outcome = check.kind(),
                    attempts,
                    "DKIM TXT record not verified"
                );
                return Err(dns_not_verified(request, &check, &record));
            }
            self.ports()
                .clock()
                .sleep(self.policy().verify_retry_interval)
                .await;
        }
    }

    async fn test_secret(
        &self,
        request: &RotationRequest,
        known: &mut KnownState,
    ) -> Result<StepReport, EngineError> {
        let (_, _, pending) = self.current_and_new_pending(request, known).await?;
        // Parsing already proved the key is PKCS#1, a size SES takes, and that the stored
        // public key, TXT value and record name belong to it. What is left is policy and DNS.
        let bits = pending.key.key.bits();
        if bits != self.policy().key_bits {
            return Err(EngineError::PendingKeyInvalid {
                secret_id: request.secret_id.clone(),
                reason: format!(
                    "it is {bits} bits but DKIM_KEY_BITS is {}; {ABANDON_ROTATION}",
                    self.policy().key_bits
                ),
            });
        }
        let dns_check = self.verify_published(request, &pending).await?;
        let mut report = StepReport::new(request, Outcome::PendingKeyTested)
            .with_pending(&pending.doc, &pending.key);
        report.dns_check = dns_check;
        Ok(report)
    }

    async fn finish_secret(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
        known: &mut KnownState,
    ) -> Result<StepReport, EngineError> {
        let (current, ses, pending) = self.current_and_new_pending(request, known).await?;
        let identity = pending.doc.identity.as_str();
        let selector = pending.key.selector.as_str();

        let mut dns_check = None;
        let outcome = if ses.combined.uses_external_selector(selector) {
            Outcome::SesAlreadySwitched
        } else {
            let rejected = description.tags.get(TAG_REJECTED).map(String::as_str);
            if tags::is_rejected(rejected, selector) {
                return Err(EngineError::SelectorRejected {
                    secret_id: request.secret_id.clone(),
                    selector: selector.to_owned(),
                });
            }
            self.check_easy_dkim_consent(&current, &ses)?;
            // Never point SES at a selector DNS does not serve.
            dns_check = self.verify_published(request, &pending).await?;
            // Easy DKIM in any region shows in the combined origin.
            if ses.combined.origin == Some(SigningOrigin::AwsSes) {
                self.store()
                    .set_tags(
                        &request.secret_id,
                        &[(TAG_ADOPTED_FROM, SigningOrigin::AwsSes.as_str())],
                    )
                    .await?;
            }
            self.sign_in_every_region(&pending.doc, &ses, selector, pending.key.key.private_key())
                .await?;
            tracing::info!(
                secret_id = %request.secret_id,
                identity,
                selector,
                regions = ses.by_region.len(),
                "SES now signs with the new external key"
            );
            Outcome::SesSwitched
        };
        let after = self.ses_view(&pending.doc).await?;
        if after.combined.has_status(&DkimStatus::Failed) {
            return Err(self
                .roll_back(&request.secret_id, description, &current, &pending, &after)
                .await);
        }
        // The switch time is tagged before AWSCURRENT moves, so a retried step (which finds
        // the token not yet current) records it again; the grace period never starts early.
        let previous = pending.doc.previous_selector.as_ref().map(|s| s.as_str());
        retirement::record_switch(
            self.ports(),
            &request.secret_id,
            selector,
            previous,
            self.now(),
        )
        .await?;
        let promoted = self
            .store()
            .promote(
                &request.secret_id,
                &request.token,
                description.version_with_stage(STAGE_CURRENT),
            )
            .await;
        self.unless_done_by_another(request, promoted, STAGE_CURRENT, true)
            .await?;
        let cleared = self
            .store()
            .clear_pending(&request.secret_id, &request.token)
            .await;
        self.unless_done_by_another(request, cleared, STAGE_PENDING, false)
            .await?;
        tracing::info!(
            secret_id = %request.secret_id,
            identity,
            selector,
            ses = %after.combined,
            "rotation finished: new key is AWSCURRENT"
        );
        let mut report = StepReport::new(request, outcome)
            .with_pending(&pending.doc, &pending.key)
            .with_ses(&after.combined);
        report.dns_check = dns_check;
        Ok(report)
    }

    /// SES said `FAILED` for the new key right after the switch: put the previous key back
    /// (after checking DNS serves its record), tag the new selector rejected so a retried step
    /// never puts it again, and leave `AWSCURRENT` where it was.
    async fn roll_back(
        &self,
        secret_id: &str,
        description: &SecretDescription,
        current: &DkimSecret,
        pending: &PendingKey,
        ses: &SesView,
    ) -> EngineError {
        let identity = current.identity.as_str();
        let rejected = pending.key.selector.as_str();
        let marked = self.mark_rejected(secret_id, description, rejected).await;
        let (rollback, action) = match (&current.key, marked) {
            (_, Err(error)) => (
                Rollback::Failed {
                    reason: error.to_string(),
                },
                format!("could not tag selector {rejected} rejected ({error}); nothing was rolled back, run `dkim-rotator rollback` after checking the previous record"),
            ),
            (None, Ok(())) => (
                Rollback::NoPreviousKey,
                "there is no previous BYODKIM key to roll back to; AWSCURRENT is unchanged. Check the TXT record, then rotate again".to_owned(),
            ),
            (Some(_), Ok(())) => match self.put_back(secret_id, current, ses).await {
                Ok(selector) => (
                    Rollback::Done {
                        selector: selector.clone(),
                    },
                    format!(
                        "rolled back to selector {selector}; AWSCURRENT is unchanged. Check that {} serves the new TXT record, then rotate again",
                        pending.key.dns_name(&pending.doc.identity)
                    ),
                ),
                Err(error) => (
                    Rollback::Failed {
                        reason: error.to_string(),
                    },
                    format!("rolling back FAILED too ({error}); put the AWSCURRENT key back by hand with `dkim-rotator rollback` once its record resolves"),
                ),
            },
        };
        tracing::error!(identity, selector = rejected, %action, "SES rejected the new DKIM key");
        EngineError::SesRejectedKey {
            identity: identity.to_owned(),
            selector: rejected.to_owned(),
            rollback,
            action,
        }
    }

    /// A label move that Secrets Manager refused because a concurrent invocation of the same
    /// step made it first (the label already sits where this one wanted it, `on_token`, or is
    /// already gone from the token, `!on_token`) is a success; any other failure is not.
    async fn unless_done_by_another(
        &self,
        request: &RotationRequest,
        moved: Result<(), PortError>,
        stage: &str,
        on_token: bool,
    ) -> Result<(), EngineError> {
        let Err(error) = moved else {
            return Ok(());
        };
        if error.kind != FailureKind::InvalidRequest {
            return Err(error.into());
        }
        let now = self.store().describe(&request.secret_id).await?;
        let has = now
            .versions
            .get(&request.token)
            .is_some_and(|stages| stages.iter().any(|s| s == stage));
        if has == on_token {
            tracing::info!(
                secret_id = %request.secret_id,
                stage,
                "a concurrent finishSecret moved the label first"
            );
            Ok(())
        } else {
            Err(error.into())
        }
    }

    /// Refuses to switch an identity that signs with Easy DKIM unless the policy allows it:
    /// while BYODKIM is pending after such a switch, SES may send mail unsigned.
    fn check_easy_dkim_consent(
        &self,
        current: &DkimSecret,
        ses: &SesView,
    ) -> Result<(), EngineError> {
        if ses.easy_dkim_signing() && !self.policy().adopt_easy_dkim {
            return Err(EngineError::EasyDkimInUse {
                identity: current.identity.to_string(),
            });
        }
        Ok(())
    }
}

fn dns_not_verified(
    request: &RotationRequest,
    check: &DnsCheck,
    record: &DnsRecord,
) -> EngineError {
    EngineError::DnsNotVerified {
        secret_id: request.secret_id.clone(),
        outcome: check.kind(),
        detail: check.explain(&record.name, &record.presentation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_round_trip() {
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        let err = "CreateSecret".parse::<Step>().unwrap_err();
        assert!(err.contains("createSecret, setSecret"), "{err}");
        // Found by the event_parse fuzzer: a 2 KB `Step` was echoed whole.
        let err = "x".repeat(2000).parse::<Step>().unwrap_err();
        assert!(err.len() < 200, "{} bytes", err.len());
    }
}
