//! Ports: the small traits through which the engine reaches the outside world.
//!
//! Adapters in [`crate::adapters`] implement them with the AWS SDK; tests implement them with
//! the SDK pointed at an emulator, or with `aws-smithy-mocks`. No SDK type crosses this line.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use time::OffsetDateTime;

use crate::secret_text::SecretText;

/// The stage Secrets Manager gives the version in use.
pub const STAGE_CURRENT: &str = "AWSCURRENT";
/// The stage of the version a rotation is preparing.
pub const STAGE_PENDING: &str = "AWSPENDING";

/// What kind of failure an outside call had; the engine decides from this, not from SDK types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The resource does not exist.
    NotFound,
    /// The service refused the request as invalid.
    InvalidRequest,
    /// The request conflicts with the resource's state (e.g. a version that already exists).
    Conflict,
    /// Rate limit; retried by the SDK before it reaches the engine.
    Throttled,
    /// Permissions.
    AccessDenied,
    /// Network, timeout or a 5xx that retries did not cure.
    Unavailable,
}

/// A failed call to an outside service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {operation} failed ({kind:?}): {message}")]
pub struct PortError {
    /// The service, e.g. `SecretsManager`.
    pub service: &'static str,
    /// The operation, e.g. `PutSecretValue`.
    pub operation: &'static str,
    /// The failure's kind.
    pub kind: FailureKind,
    /// The service's message (never holds request parameters).
    pub message: String,
}

/// What `DescribeSecret` says about a secret.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretDescription {
    /// The secret's ARN.
    pub arn: String,
    /// Whether rotation is turned on.
    pub rotation_enabled: bool,
    /// Version id → its staging labels.
    pub versions: HashMap<String, Vec<String>>,
}

impl SecretDescription {
    /// The version id carrying `stage`, if any.
    pub fn version_with_stage(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }
}

/// Which version of a secret to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef<'a> {
    /// The version labelled `AWSCURRENT`.
    Current,
    /// The given version id, which must carry `AWSPENDING`.
    Pending(&'a str),
}

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// The version id.
    pub version_id: String,
    /// The `SecretString` (secret: may hold a private key).
    pub secret_string: SecretText,
}

/// The parts of Secrets Manager a rotation uses.
pub trait SecretStore: Send + Sync {
    /// `DescribeSecret`.
    fn describe(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<SecretDescription, PortError>> + Send;

    /// `GetSecretValue`; `Ok(None)` when that version does not exist.
    fn read(
        &self,
        secret_id: &str,
        version: VersionRef<'_>,
    ) -> impl Future<Output = Result<Option<StoredVersion>, PortError>> + Send;

    /// `PutSecretValue` with `VersionStages=["AWSPENDING"]` under `client_request_token`,
    /// passing `rotation_token` when Secrets Manager gave one.
    fn put_pending(
        &self,
        secret_id: &str,
        client_request_token: &str,
        secret_string: &SecretText,
        rotation_token: Option<&SecretText>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// `UpdateSecretVersionStage`: `AWSCURRENT` moves to `to_version`, off `from_version`.
    fn promote(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// `UpdateSecretVersionStage`: takes `AWSPENDING` off `version` once it is current, so the
    /// next `RotateSecret` is never blocked by a leftover pending label.
    fn clear_pending(
        &self,
        secret_id: &str,
        version: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// SES's view of an identity's DKIM signing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SesDkimState {
    /// Whether SES signs mail for the identity.
    pub signing_enabled: bool,
    /// `PENDING`, `SUCCESS`, `FAILED`, `TEMPORARY_FAILURE`, `NOT_STARTED` (or absent).
    pub status: Option<String>,
    /// `AWS_SES` or `EXTERNAL` (or absent).
    pub origin: Option<String>,
    /// For BYODKIM, the selector in use.
    pub selectors: Vec<String>,
}

impl SesDkimState {
    /// Whether SES signs with an external key under `selector`.
    pub fn uses_external_selector(&self, selector: &str) -> bool {
        self.origin.as_deref() == Some("EXTERNAL")
            && self
                .selectors
                .iter()
                .any(|s| s.eq_ignore_ascii_case(selector))
    }
}

impl fmt::Display for SesDkimState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "origin {}, status {}, selector {}",
            self.origin.as_deref().unwrap_or("-"),
            self.status.as_deref().unwrap_or("-"),
            self.selectors.first().map(String::as_str).unwrap_or("-")
        )
    }
}

/// The parts of SESv2 a rotation uses.
pub trait DkimSigningService: Send + Sync {
    /// `GetEmailIdentity`; `Ok(None)` when the identity does not exist.
    fn dkim_state(
        &self,
        identity: &str,
    ) -> impl Future<Output = Result<Option<SesDkimState>, PortError>> + Send;

    /// `PutEmailIdentityDkimSigningAttributes` with `SigningAttributesOrigin=EXTERNAL`.
    fn sign_with_external_key(
        &self,
        identity: &str,
        selector: &str,
        private_key: &SecretText,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The time, behind a trait so tests can fix it.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}
