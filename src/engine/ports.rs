//! Ports: the small traits through which the engine reaches the outside world.
//!
//! Adapters in [`crate::adapters`] implement them with the AWS SDK and hickory; `testing`
//! (feature `testing`) implements them in memory. No SDK type crosses this line: SES's status
//! and origin arrive here as [`DkimStatus`] and [`SigningOrigin`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

pub use super::dns_check::{LookupFailure, ServerAnswer, TxtAnswer};

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

/// One page of a tagged listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedPage {
    /// The secrets on this page.
    pub secrets: Vec<SecretDescription>,
    /// Where the next page starts (`ListSecrets`' `NextToken`); `None` on the last page.
    pub next_page: Option<String>,
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
    /// The version of an unfinished rotation: it carries `AWSPENDING` and not `AWSCURRENT`.
    pub fn unfinished_rotation(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| {
                stages.iter().any(|s| s == STAGE_PENDING)
                    && !stages.iter().any(|s| s == STAGE_CURRENT)
            })
            .map(|(id, _)| id.as_str())
    }

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

    /// One page of `ListSecrets` filtered by tag `key` = `value` (AWS: at most 100 secrets),
    /// from `page` (`None`: the first): what the listing says of each matching secret (ARN,
    /// rotation flag, staging labels, tags) — as much as `DescribeSecret` would, with no call
    /// per secret — and where the next page starts.
    fn list_tagged_page(
        &self,
        key: &str,
        value: &str,
        page: Option<&str>,
    ) -> impl Future<Output = Result<ListedPage, PortError>> + Send;

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

/// SES's DKIM verification status (`DkimAttributes.Status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DkimStatus {
    /// SES is still looking for the record (up to 72 hours after a change).
    Pending,
    /// SES found the record and signs with the key.
    Success,
    /// SES gave up: the record was not found in time, or does not match.
    Failed,
    /// A record that verified has stopped resolving; SES keeps trying.
    TemporaryFailure,
    /// Verification has not started.
    NotStarted,
    /// A status this build does not know (kept verbatim).
    #[serde(untagged)]
    Other(String),
}

impl DkimStatus {
    /// The status as SES spells it.
    pub fn parse(text: &str) -> Self {
        match text {
            "PENDING" => Self::Pending,
            "SUCCESS" => Self::Success,
            "FAILED" => Self::Failed,
            "TEMPORARY_FAILURE" => Self::TemporaryFailure,
            "NOT_STARTED" => Self::NotStarted,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The status as SES spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "PENDING",
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
            Self::TemporaryFailure => "TEMPORARY_FAILURE",
            Self::NotStarted => "NOT_STARTED",
            Self::Other(text) => text,
        }
    }
}

impl fmt::Display for DkimStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where SES's DKIM key comes from (`DkimAttributes.SigningAttributesOrigin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SigningOrigin {
    /// Easy DKIM: SES's own keys, published as three CNAME records.
    AwsSes,
    /// Bring Your Own DKIM: the key this function puts.
    External,
    /// Deterministic Easy DKIM (DEED): SES's keys replicated from the parent identity in
    /// another region; SES spells it `AWS_SES_<REGION>` (e.g. `AWS_SES_EU_WEST_1`).
    #[serde(untagged)]
    EasyDkimReplica(String),
    /// An origin this build does not know, kept verbatim. Never switched (see
    /// [`crate::engine::regions::SwitchObstacle`]).
    #[serde(untagged)]
    Other(String),
}

impl SigningOrigin {
    /// The origin as SES spells it.
    pub fn parse(text: &str) -> Self {
        match text {
            "AWS_SES" => Self::AwsSes,
            "EXTERNAL" => Self::External,
            replica if replica_parent(replica).is_some() => Self::EasyDkimReplica(replica.into()),
            other => Self::Other(other.to_owned()),
        }
    }

    /// The origin as SES spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::AwsSes => "AWS_SES",
            Self::External => "EXTERNAL",
            Self::EasyDkimReplica(text) | Self::Other(text) => text,
        }
    }

    /// For a DEED replica, the parent identity's region (`AWS_SES_EU_WEST_1` → `eu-west-1`).
    pub fn replica_parent_region(&self) -> Option<String> {
        match self {
            Self::EasyDkimReplica(text) => replica_parent(text),
            _ => None,
        }
    }
}

/// `AWS_SES_<REGION>` → the region in AWS's spelling, when `<REGION>` looks like one
/// (letters, then a number: `US_EAST_1`, `AP_SOUTHEAST_2`, `US_GOV_WEST_1`).
fn replica_parent(origin: &str) -> Option<String> {
    let region = origin.strip_prefix("AWS_SES_")?;
    let parts: Vec<&str> = region.split('_').collect();
    let (number, words) = parts.split_last()?;
    let looks_like_region = words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase()))
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit());
    looks_like_region.then(|| region.to_ascii_lowercase().replace('_', "-"))
}

impl fmt::Display for SigningOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SES's view of an identity's DKIM signing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SesDkimState {
    /// Whether SES signs mail for the identity.
    pub signing_enabled: bool,
    /// The verification status (absent when SES reports none).
    pub status: Option<DkimStatus>,
    /// The key's origin (absent when SES reports none).
    pub origin: Option<SigningOrigin>,
    /// For BYODKIM, the selector in use (Easy DKIM: its three tokens).
    pub selectors: Vec<String>,
}

impl SesDkimState {
    /// Whether SES signs with an external key under `selector`.
    pub fn uses_external_selector(&self, selector: &str) -> bool {
        self.origin == Some(SigningOrigin::External)
            && self
                .selectors
                .iter()
                .any(|s| s.eq_ignore_ascii_case(selector))
    }

    /// Whether `status` is `status`.
    pub fn has_status(&self, status: &DkimStatus) -> bool {
        self.status.as_ref() == Some(status)
    }
}

impl fmt::Display for SesDkimState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "origin {}, status {}, selector {}",
            self.origin
                .as_ref()
                .map(SigningOrigin::as_str)
                .unwrap_or("-"),
            self.status.as_ref().map(DkimStatus::as_str).unwrap_or("-"),
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

    /// One page of `ListEmailIdentities` in `region` (`None` = the function's own), from
    /// `page` (`None`: the first; SES returns up to 1,000 a page).
    fn list_identities(
        &self,
        region: Option<&str>,
        page: Option<&str>,
    ) -> impl Future<Output = Result<IdentityPage, PortError>> + Send;
}

/// One page of `ListEmailIdentities`: each identity with its `VerificationStatus`. For a
/// domain SES verifies the identity through its DKIM records, but AWS does not document that
/// this status always equals the DKIM status, so it may only choose whom to look at (the
/// planner's screen), never decide anything about a key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityPage {
    /// (identity, `VerificationStatus`), as SES lists them.
    pub identities: Vec<(String, DkimStatus)>,
    /// Where the next page starts; `None` on the last.
    pub next_page: Option<String>,
}

/// What a publisher did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Publication {
    /// The record was written (or removed) at the DNS provider, and the provider says it is
    /// live.
    Written,
    /// Nothing was written: the publisher told a person what to do (hint mode).
    LeftToOperator,
}

/// One DKIM TXT record to write or remove.
#[derive(Clone, Copy)]
pub struct TxtRecord<'a> {
    /// The secret the record belongs to (for the publisher's log lines).
    pub secret_id: &'a str,
    /// The identity (domain) the record belongs to; used to find the zone.
    pub identity: &'a str,
    /// `<selector>._domainkey.<identity>`.
    pub name: &'a str,
    /// The unsplit value (`v=DKIM1; k=rsa; p=…`, or [`super::retirement::REVOKED_VALUE`] to
    /// revoke).
    pub value: &'a str,
    /// The secret's own fields beyond the rotator's (e.g. Route 53's `hosted_zone_id`): a
    /// publisher reads the ones it knows. May hold an operator's secrets: never logged.
    pub secret_fields: &'a serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for TxtRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxtRecord")
            .field("secret_id", &self.secret_id)
            .field("identity", &self.identity)
            .field("name", &self.name)
            .field("value", &self.value)
            .field(
                "secret_fields",
                &self.secret_fields.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Writes DKIM TXT records (Route 53, RFC 2136), or tells a person to (hint).
pub trait DnsPublisher: Send + Sync {
    /// Whether this publisher writes records itself (Route 53, RFC 2136): a record it wrote
    /// that DNS does not serve yet is propagating and worth a look soon. The hint publisher
    /// writes nothing (a person does, in their own time).
    fn writes_records(&self) -> bool {
        true
    }

    /// Creates or replaces the TXT record (one record, value split into ≤255-char strings) and
    /// waits, up to `deadline`, until the DNS provider reports it live.
    fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Publication, PortError>> + Send;

    /// Deletes the TXT record `record.name`.
    fn delete_txt(
        &self,
        record: TxtRecord<'_>,
    ) -> impl Future<Output = Result<Publication, PortError>> + Send;
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

/// The time, behind a trait so tests drive it (`testing::ManualClock`).
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// Waits `duration` (between DNS verification attempts).
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// When an invocation must be done (Lambda's deadline, or none: the CLI, tests), and whether
/// the work may wait for DNS inside it.
///
/// A queue worker does not wait: it publishes a record, looks once, and hands the identity
/// back to the queue to look again later ([`Deadline::without_waiting`]), so no invocation
/// is held for Route 53's propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Option<OffsetDateTime>,
    waits: bool,
}

impl Default for Deadline {
    fn default() -> Self {
        Self::NONE
    }
}

impl Deadline {
    /// No deadline: waits are not retried.
    pub const NONE: Self = Self {
        at: None,
        waits: true,
    };

    /// A deadline at `at`; DNS waits (retries, Route 53's `INSYNC`) run up to it.
    pub fn at(at: OffsetDateTime) -> Self {
        Self {
            at: Some(at),
            waits: true,
        }
    }

    /// The same deadline with no waiting: one DNS look, no `INSYNC` poll.
    pub fn without_waiting(self) -> Self {
        Self {
            waits: false,
            ..self
        }
    }

    /// The instant, if any.
    pub fn instant(self) -> Option<OffsetDateTime> {
        self.at
    }

    /// Whether, at `now`, more than `needed` is left. Without a deadline: `without`.
    pub fn leaves(self, now: OffsetDateTime, needed: Duration, without: bool) -> bool {
        match self.at {
            Some(deadline) => deadline - now > needed,
            None => without,
        }
    }

    /// Whether a wait of `needed` (a retry interval, a poll) may start at `now`: waiting is
    /// allowed and the deadline leaves more than that.
    pub fn may_wait(self, now: OffsetDateTime, needed: Duration) -> bool {
        self.waits && self.leaves(now, needed, false)
    }
}

/// The outside world as the engine sees it: one bundle of ports, so the engine is
/// `Engine<P: Ports>` with static dispatch and one bound.
pub trait Ports: Send + Sync {
    /// Secrets Manager.
    type Secrets: SecretStore;
    /// SESv2.
    type Ses: DkimSigningService;
    /// Where TXT records are written.
    type Dns: DnsPublisher;
    /// Where TXT records are read back.
    type Lookup: DnsTxtLookup;
    /// The clock.
    type Clock: Clock;

    /// Secrets Manager.
    fn secrets(&self) -> &Self::Secrets;
    /// SESv2.
    fn ses(&self) -> &Self::Ses;
    /// Where TXT records are written.
    fn dns(&self) -> &Self::Dns;
    /// Where TXT records are read back.
    fn lookup(&self) -> &Self::Lookup;
    /// The clock.
    fn clock(&self) -> &Self::Clock;
}

/// The plain [`Ports`] bundle: one value per port.
#[derive(Debug, Clone)]
pub struct PortSet<S, E, D, L, C> {
    /// Secrets Manager.
    pub secrets: S,
    /// SESv2.
    pub ses: E,
    /// Where TXT records are written.
    pub dns: D,
    /// Where TXT records are read back.
    pub lookup: L,
    /// The clock.
    pub clock: C,
}

impl<S, E, D, L, C> Ports for PortSet<S, E, D, L, C>
where
    S: SecretStore,
    E: DkimSigningService,
    D: DnsPublisher,
    L: DnsTxtLookup,
    C: Clock,
{
    type Secrets = S;
    type Ses = E;
    type Dns = D;
    type Lookup = L;
    type Clock = C;

    fn secrets(&self) -> &S {
        &self.secrets
    }
    fn ses(&self) -> &E {
        &self.ses
    }
    fn dns(&self) -> &D {
        &self.dns
    }
    fn lookup(&self) -> &L {
        &self.lookup
    }
    fn clock(&self) -> &C {
        &self.clock
    }
}
