//! [`EngineError`]: everything that can stop a rotation step, a scheduled run or an operator
//! action inside the engine. It knows nothing of Lambda: the entry points wrap it
//! (`crate::error::AppError`).
//!
//! Each variant says what is wrong and what to do. [`EngineError::error_type`] is a stable,
//! meaningful name (Lambda's `errorType`, reports, metrics). No variant ever carries key
//! material or a `RotationToken`.

use serde::Serialize;

use super::key::KeyError;
use super::ports::{FailureKind, PortError};

/// What to do with a rotation that cannot go on. `CancelRotateSecret` alone does not do it on
/// AWS: it leaves `AWSPENDING` where it is, and `RotateSecret` keeps refusing.
pub const ABANDON_ROTATION: &str = "abandon it by taking AWSPENDING off that version (dkim-rotator abort --secret-id <secret>, or aws secretsmanager update-secret-version-stage --secret-id <secret> --version-stage AWSPENDING --remove-from-version-id <version>), then rotate again";

/// What became of the previous key when SES rejected a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Rollback {
    /// SES signs with the previous key again (its record was verified in DNS first).
    Done {
        /// The selector SES signs with again.
        selector: String,
    },
    /// Putting the previous key back failed too, or was refused.
    Failed {
        /// Why.
        reason: String,
    },
    /// There is no previous BYODKIM key to go back to.
    NoPreviousKey,
    /// No rollback was tried.
    NotTried,
}

/// Everything that can stop a rotation step, a scheduled run or an operator action.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Secrets Manager rotation is off for the secret.
    #[error(
        "secret {secret_id}: rotation is not enabled; turn it on (aws secretsmanager rotate-secret --rotation-lambda-arn ...) rather than invoking this function by hand"
    )]
    RotationNotEnabled {
        /// The secret.
        secret_id: String,
    },

    /// The event's `ClientRequestToken` is not a version of the secret.
    #[error(
        "secret {secret_id}: version {token} is not staged for rotation; start rotation with RotateSecret so Secrets Manager stages it as AWSPENDING"
    )]
    TokenNotStaged {
        /// The secret.
        secret_id: String,
        /// The event's `ClientRequestToken` (a version id, not secret).
        token: String,
    },

    /// The version exists but is neither `AWSCURRENT` nor `AWSPENDING`.
    #[error(
        "secret {secret_id}: version {token} is not AWSPENDING (stages: {stages}); it belongs to an older rotation, start a new one"
    )]
    TokenNotPending {
        /// The secret.
        secret_id: String,
        /// The event's `ClientRequestToken`.
        token: String,
        /// The stages the version has.
        stages: String,
    },

    /// The secret has no `AWSCURRENT` version to rotate from.
    #[error(
        "secret {secret_id} has no AWSCURRENT value; store {{\"identity\": \"example.com\"}} in it first"
    )]
    NoCurrentVersion {
        /// The secret.
        secret_id: String,
    },

    /// A version's `SecretString` does not follow the secret contract.
    #[error("secret {secret_id}, {version} version: {reason}")]
    CorruptSecret {
        /// The secret.
        secret_id: String,
        /// `AWSCURRENT` or `AWSPENDING`.
        version: &'static str,
        /// What is wrong, naming the field.
        reason: String,
    },

    /// `createSecret` has not stored the pending version yet.
    #[error(
        "secret {secret_id}: no AWSPENDING value for version {token}; run createSecret for this token first"
    )]
    PendingMissing {
        /// The secret.
        secret_id: String,
        /// The event's `ClientRequestToken`.
        token: String,
    },

    /// The pending version holds something other than a key made for this rotation.
    #[error("secret {secret_id}: {reason}")]
    PendingConflict {
        /// The secret.
        secret_id: String,
        /// What was found and what to do.
        reason: String,
    },

    /// The pending key fails `testSecret`.
    #[error("secret {secret_id}: pending key rejected: {reason}")]
    PendingKeyInvalid {
        /// The secret.
        secret_id: String,
        /// Which check failed.
        reason: String,
    },

    /// Current and pending versions name different identities.
    #[error(
        "secret {secret_id}: AWSCURRENT is for `{current}` but AWSPENDING is for `{pending}`; a secret must keep one identity: fix the secret, then take AWSPENDING off the pending version and rotate again"
    )]
    IdentityMismatch {
        /// The secret.
        secret_id: String,
        /// The current identity.
        current: String,
        /// The pending identity.
        pending: String,
    },

    /// The confused-deputy guard refused the identity.
    #[error("identity not allowed: {0}")]
    IdentityNotAllowed(String),

    /// SES has no such identity in this account and region.
    #[error(
        "identity `{identity}` does not exist in SES in this account and {}; create it (aws sesv2 create-email-identity --email-identity {identity}{}) or correct `identity` (or `region`/`regions`) in the secret",
        region.as_deref().map_or("the function's region".to_owned(), |r| format!("region {r}")),
        region.as_deref().map_or(String::new(), |r| format!(" --region {r}"))
    )]
    IdentityNotInSes {
        /// The identity.
        identity: String,
        /// The region the secret named (`None` = the function's own).
        region: Option<String>,
    },

    /// One of several regions refused the new key; the others may already sign with it.
    #[error(
        "identity `{identity}`: SES in region {region} refused selector {selector} ({source}); regions already signing with it: [{}]. Both TXT records stay published, so every region signs validly; AWSCURRENT is unchanged. A retry puts the key in the remaining regions only. If {region} cannot take it (AccessDenied: add it to the template parameter SesRegions; NotFound: create the identity there or remove the region from the secret's `regions`), fix that and let Secrets Manager retry",
        switched.join(", ")
    )]
    SesRegionRefused {
        /// The identity.
        identity: String,
        /// The region that refused.
        region: String,
        /// The selector being switched to.
        selector: String,
        /// The regions that sign with it already.
        switched: Vec<String>,
        /// SES's answer.
        source: Box<PortError>,
    },

    /// DNS does not (yet) serve the new selector's TXT record: SES was not switched.
    #[error("secret {secret_id}: DNS check failed, SES not switched: {detail}")]
    DnsNotVerified {
        /// The secret.
        secret_id: String,
        /// The outcome (`missing`, `mismatch`, …).
        outcome: &'static str,
        /// What is wrong and what to do.
        detail: String,
    },

    /// The DNS provider refused or failed to publish the record.
    #[error("secret {secret_id}: publishing {name} failed: {source}")]
    DnsPublishFailed {
        /// The secret.
        secret_id: String,
        /// The record name.
        name: String,
        /// The provider's error.
        source: PortError,
    },

    /// SES reported `FAILED` for a key; `rollback` says whether the previous key was put back.
    #[error(
        "identity `{identity}`: SES reports DKIM status FAILED for selector {selector}; {action}"
    )]
    SesRejectedKey {
        /// The identity.
        identity: String,
        /// The selector SES refused.
        selector: String,
        /// What became of the previous key.
        rollback: Rollback,
        /// What was done and what to do.
        action: String,
    },

    /// The identity signs with Easy DKIM and switching it was not allowed.
    #[error(
        "identity `{identity}` signs with Easy DKIM (SES's own keys). Switching it to BYODKIM may leave mail unsigned until SES verifies the new key (up to 72 hours); set DKIM_ADOPT_EASY_DKIM=true (template parameter AdoptEasyDkim) to allow it. Nothing was changed"
    )]
    EasyDkimInUse {
        /// The identity.
        identity: String,
    },

    /// A Deterministic Easy DKIM replica signs, and switching it was not allowed.
    #[error(
        "identity `{identity}` in region {region} signs with Deterministic Easy DKIM (origin {origin}): SES's keys replicated from the parent identity in {parent_region}. Switching it to BYODKIM ends the replication and may leave mail unsigned until SES verifies the new key (up to 72 hours); set DKIM_ADOPT_EASY_DKIM=true (template parameter AdoptEasyDkim) to allow it. Nothing was changed"
    )]
    EasyDkimReplicaInUse {
        /// The identity.
        identity: String,
        /// The replica's region.
        region: String,
        /// The origin as SES reports it.
        origin: String,
        /// The parent identity's region.
        parent_region: String,
    },

    /// SES reports a DKIM origin this build does not know: it never replaces what it cannot name.
    #[error(
        "identity `{identity}` in region {region}: SES reports DKIM signing origin `{origin}`, which this rotator does not know, so it does not switch it. Look at the identity (aws sesv2 get-email-identity --email-identity {identity}); to hand it to the rotator, set it to Easy DKIM or BYODKIM first, or upgrade the rotator. Nothing was changed"
    )]
    UnknownSigningOrigin {
        /// The identity.
        identity: String,
        /// The region.
        region: String,
        /// The origin, verbatim.
        origin: String,
    },

    /// DKIM signing is off for the identity: the rotator never turns it on or off.
    #[error(
        "identity `{identity}` in region {region}: DKIM signing is disabled (SigningEnabled=false), and the rotator never turns it on or off. Turn it on (aws sesv2 put-email-identity-dkim-attributes --email-identity {identity} --signing-enabled --region <region>) and run again, or stop rotating this identity. Nothing was changed"
    )]
    SigningDisabled {
        /// The identity.
        identity: String,
        /// The region.
        region: String,
    },

    /// The pending selector was rejected by SES before: it is never put again.
    #[error(
        "secret {secret_id}: SES rejected selector {selector} before (tag ses-dkim-rotator:rejected); it is not put again. Take AWSPENDING off that version (dkim-rotator abort --secret-id {secret_id}) and rotate again for a fresh key"
    )]
    SelectorRejected {
        /// The secret.
        secret_id: String,
        /// The rejected selector.
        selector: String,
    },

    /// An operator's rollback was refused: there is nothing safe to roll back to.
    #[error("secret {secret_id}: cannot roll back: {reason}")]
    RollbackRefused {
        /// The secret.
        secret_id: String,
        /// What is missing and what to do.
        reason: String,
    },

    /// The retirement guard refused to remove a selector still in use.
    #[error("refusing to retire selector {selector}: {reason}")]
    RetireRefused {
        /// The selector.
        selector: String,
        /// Why.
        reason: String,
    },

    /// Key generation failed.
    #[error(transparent)]
    Key(#[from] KeyError),

    /// An AWS call failed after the SDK's retries.
    #[error(transparent)]
    Aws(#[from] PortError),
}

impl EngineError {
    /// A stable name for Lambda's `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::RotationNotEnabled { .. } => "RotationNotEnabled",
            Self::TokenNotStaged { .. } => "TokenNotStaged",
            Self::TokenNotPending { .. } => "TokenNotPending",
            Self::NoCurrentVersion { .. } => "NoCurrentVersion",
            Self::CorruptSecret { .. } => "CorruptSecret",
            Self::PendingMissing { .. } => "PendingMissing",
            Self::PendingConflict { .. } => "PendingConflict",
            Self::PendingKeyInvalid { .. } => "PendingKeyInvalid",
            Self::IdentityMismatch { .. } => "IdentityMismatch",
            Self::IdentityNotAllowed(_) => "IdentityNotAllowed",
            Self::IdentityNotInSes { .. } => "IdentityNotInSes",
            Self::SesRegionRefused { .. } => "SesRegionRefused",
            Self::DnsNotVerified { .. } => "DnsNotVerified",
            Self::DnsPublishFailed { .. } => "DnsPublishFailed",
            Self::SesRejectedKey { .. } => "SesRejectedKey",
            Self::RollbackRefused { .. } => "RollbackRefused",
            Self::EasyDkimInUse { .. } => "EasyDkimInUse",
            Self::EasyDkimReplicaInUse { .. } => "EasyDkimReplicaInUse",
            Self::UnknownSigningOrigin { .. } => "UnknownSigningOrigin",
            Self::SigningDisabled { .. } => "SigningDisabled",
            Self::SelectorRejected { .. } => "SelectorRejected",
            Self::RetireRefused { .. } => "RetireRefused",
            Self::Key(_) => "KeyGenerationFailed",
            Self::Aws(_) => "AwsCallFailed",
        }
    }

    /// Whether a service's quota refused the call (SES's `TooManyRequestsException`, or this
    /// function's own pacing): the work is not wrong, it comes back later.
    pub fn throttled(&self) -> bool {
        let port = match self {
            Self::Aws(source) | Self::DnsPublishFailed { source, .. } => source,
            Self::SesRegionRefused { source, .. } => source.as_ref(),
            _ => return false,
        };
        port.kind == FailureKind::Throttled
    }

    /// Whether this error reports a rollback that really happened.
    pub fn rolled_back(&self) -> bool {
        matches!(
            self,
            Self::SesRejectedKey {
                rollback: Rollback::Done { .. },
                ..
            }
        )
    }
}
