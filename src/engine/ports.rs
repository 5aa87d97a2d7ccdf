//! Ports: the small traits through which the engine reaches the outside world.
//!
//! Adapters in [`crate::adapters`] implement them with the AWS SDK; tests implement them with
//! the SDK pointed at an emulator, or with `aws-smithy-mocks`. No SDK type crosses this line.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;

pub use super::dns_check::{LookupFailure, TxtAnswer};

use crate::secret_text::SecretText;

/// The stage Secrets Manager gives the version in use.
pub const STAGE_CURRENT: &str = "AWSCURRENT";
/// The stage of the version a rotation is preparing.
pub const STAGE_PENDING: &str = "AWSPENDING";
/// The stage of the version in use before the current one.
pub const STAGE_PREVIOUS: &str = "AWSPREVIOUS";

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
    /// The secret's tags (the rotator keeps its retirement state there).
    pub tags: HashMap<String, String>,
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
    /// The given version id, whatever its labels (also a deprecated, unlabelled one).
    Id(&'a str),
    /// The version labelled `AWSPREVIOUS`.
    Previous,
}

/// A version as `ListSecretVersionIds` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version id.
    pub version_id: String,
    /// When it was created (seconds since the epoch), when known.
    pub created: Option<i64>,
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

    /// `ListSecretVersionIds(IncludeDeprecated)`: every version, newest first.
    fn list_versions(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<Vec<VersionInfo>, PortError>> + Send;

    /// `ListSecrets` filtered by tag `key` = `value`, all pages: the matching secrets' ARNs.
    fn list_tagged(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;

    /// `TagResource`: records rotation state on the secret.
    fn set_tags(
        &self,
        secret_id: &str,
        tags: &[(&str, &str)],
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
    /// `GetEmailIdentity` in `region` (`None` = the function's own); `Ok(None)` when the
    /// identity does not exist there.
    fn dkim_state(
        &self,
        identity: &str,
        region: Option<&str>,
    ) -> impl Future<Output = Result<Option<SesDkimState>, PortError>> + Send;

    /// `PutEmailIdentityDkimSigningAttributes` with `SigningAttributesOrigin=EXTERNAL`.
    fn sign_with_external_key(
        &self,
        identity: &str,
        region: Option<&str>,
        selector: &str,
        private_key: &SecretText,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// How DNS records get published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// Nothing is written: the record is logged and returned for a person to add.
    Hint,
    /// Amazon Route 53.
    Route53,
    /// RFC 2136 dynamic update signed with TSIG.
    Rfc2136,
}

/// One DKIM TXT record to write or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxtRecord<'a> {
    /// The identity (domain) the record belongs to; used to find the zone.
    pub identity: &'a str,
    /// `<selector>._domainkey.<identity>`.
    pub name: &'a str,
    /// The unsplit value (`v=DKIM1; k=rsa; p=…`, or `v=DKIM1; p=` to revoke).
    pub value: &'a str,
    /// A zone chosen in the secret (Route 53 `hosted_zone_id`), if any.
    pub zone_hint: Option<&'a str>,
}

/// Writes DKIM TXT records.
pub trait DnsPublisher: Send + Sync {
    /// Which kind of publisher this is.
    fn mode(&self) -> PublishMode;

    /// Creates or replaces the TXT record (one record, value split into ≤255-char strings) and
    /// waits, up to `deadline`, until the DNS provider reports it live.
    fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        deadline: Option<OffsetDateTime>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Deletes the TXT record `record.name`.
    fn delete_txt(
        &self,
        record: TxtRecord<'_>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// One server's answer to a TXT query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAnswer {
    /// The server asked (`ip:port`).
    pub server: String,
    /// Its answer, or why there was none.
    pub answer: Result<TxtAnswer, LookupFailure>,
}

/// Reads TXT records from DNS (the servers the world will ask).
pub trait DnsTxtLookup: Send + Sync {
    /// Asks every relevant server for the TXT records at `name` (each record's strings
    /// joined); `identity` locates the zone's authoritative servers. An `Err` means no server
    /// could even be found.
    fn lookup_txt(
        &self,
        identity: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<ServerAnswer>, LookupFailure>> + Send;
}

/// The time, behind a trait so tests can fix it.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// Waits `duration` (between DNS verification attempts).
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}
