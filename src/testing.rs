//! In-memory ports for tests (feature `testing`; plain `cargo test` turns it on): the whole
//! engine runs with no emulator, no network and no wall-clock wait.
//!
//! - [`MemorySecrets`]: Secrets Manager with AWS's staging-label rules (one label on one
//!   version; `AWSPREVIOUS` follows `AWSCURRENT`; `PutSecretValue` idempotent per token;
//!   `RotateSecret` refuses while `AWSPENDING` sits on a version that is not current).
//! - [`FakeSes`]: SESv2 DKIM as AWS documents it: a new identity starts on Easy DKIM
//!   (`PENDING`, three tokens); an `EXTERNAL` put answers `PENDING` with the selector in
//!   `Tokens`; [`FakeSes::check_dns`] is "SES looks now" (`SUCCESS` when the zone serves the
//!   key, else still `PENDING`, or `FAILED` once the window is over); tests may force a status.
//! - [`MemoryZone`]: one DNS zone, as publisher and as lookup.
//! - [`ManualClock`]: time moves only when a test (or a sleep) moves it.
//!
//! Every fake records its calls ([`CallLog`]) and can be told to fail a named operation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;

use crate::engine::dns_check::{LookupFailure, TxtAnswer, check_dkim_record};
use crate::engine::key::DkimKeyPair;
use crate::engine::ports::{
    Clock, DkimSigningService, DkimStatus, DnsPublisher, DnsTxtLookup, FailureKind, PortError,
    PortSet, PublishMode, STAGE_CURRENT, STAGE_PENDING, STAGE_PREVIOUS, SecretDescription,
    SecretStore, ServerAnswer, SesDkimState, SigningOrigin, StoredVersion, TxtRecord, VersionInfo,
    VersionRef,
};
use crate::notifications::{Notification, Notifier};
use crate::secret_text::SecretText;
use crate::work_queue::{WorkItem, WorkQueue};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn refused(
    service: &'static str,
    operation: &'static str,
    kind: FailureKind,
    message: &str,
) -> PortError {
    PortError {
        service,
        operation,
        kind,
        message: message.to_owned(),
    }
}

/// The calls a fake received, in order (`Service.Operation`), and the failures queued for it.
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Vec<String>,
    failures: HashMap<&'static str, VecDeque<FailureKind>>,
}

impl CallLog {
    /// The calls made so far.
    fn calls(&self) -> Vec<String> {
        self.calls.clone()
    }

    /// Queues a failure of kind `kind` for the next call of `operation`.
    fn fail_next(&mut self, operation: &'static str, kind: FailureKind) {
        self.failures.entry(operation).or_default().push_back(kind);
    }

    /// Records `operation`; returns the queued failure for it, if any.
    fn enter(&mut self, service: &'static str, operation: &'static str) -> Result<(), PortError> {
        self.calls.push(format!("{service}.{operation}"));
        match self
            .failures
            .get_mut(operation)
            .and_then(VecDeque::pop_front)
        {
            Some(kind) => Err(refused(service, operation, kind, "injected failure")),
            None => Ok(()),
        }
    }
}

/// One stored version.
#[derive(Debug, Clone)]
struct Version {
    id: String,
    value: Option<String>,
    stages: Vec<String>,
    created: i64,
}

/// One secret.
#[derive(Debug, Clone)]
struct Secret {
    arn: String,
    rotation_enabled: bool,
    versions: Vec<Version>,
    tags: BTreeMap<String, String>,
}

impl Secret {
    fn holder(&self, stage: &str) -> Option<usize> {
        self.versions
            .iter()
            .position(|v| v.stages.iter().any(|s| s == stage))
    }

    fn version(&self, id: &str) -> Option<usize> {
        self.versions.iter().position(|v| v.id == id)
    }

    /// Puts `stage` on version `index`, taking it off wherever it was.
    fn label(&mut self, index: usize, stage: &str) {
        for version in &mut self.versions {
            version.stages.retain(|s| s != stage);
        }
        self.versions[index].stages.push(stage.to_owned());
    }
}

/// What `DescribeSecret` (and a `ListSecrets` entry) says of `secret`.
fn description_of(secret: &Secret) -> SecretDescription {
    SecretDescription {
        arn: secret.arn.clone(),
        rotation_enabled: secret.rotation_enabled,
        // Versions without a label are deprecated: DescribeSecret leaves them out.
        versions: secret
            .versions
            .iter()
            .filter(|v| !v.stages.is_empty())
            .map(|v| (v.id.clone(), v.stages.clone()))
            .collect(),
        tags: secret.tags.clone().into_iter().collect(),
    }
}

#[derive(Debug, Default)]
struct SecretsState {
    secrets: BTreeMap<String, Secret>,
    log: CallLog,
    next_created: i64,
    interleaved: bool,
}

impl SecretsState {
    fn find(&mut self, secret_id: &str, operation: &'static str) -> Result<&mut Secret, PortError> {
        self.secrets
            .values_mut()
            .find(|s| s.arn == secret_id || name_of(&s.arn) == secret_id)
            .ok_or_else(|| {
                refused(
                    SM,
                    operation,
                    FailureKind::NotFound,
                    "Secrets Manager can't find the specified secret.",
                )
            })
    }

    fn created(&mut self) -> i64 {
        self.next_created += 1;
        self.next_created
    }
}

const SM: &str = "SecretsManager";

fn name_of(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// Secrets Manager in memory, with AWS's staging-label rules. Clones share one store.
#[derive(Debug, Clone, Default)]
pub struct MemorySecrets {
    state: Arc<Mutex<SecretsState>>,
}

impl MemorySecrets {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call yield to the scheduler first, so invocations joined on one task
    /// interleave call by call (as concurrent Lambda invocations do against AWS).
    pub fn interleave_calls(&self) {
        lock(&self.state).interleaved = true;
    }

    async fn take_turn(&self) {
        let interleaved = lock(&self.state).interleaved;
        if interleaved {
            tokio::task::yield_now().await;
        }
    }

    /// `CreateSecret(Name, SecretString)`: one version, `AWSCURRENT`. Returns the ARN.
    pub fn create_secret(&self, name: &str, body: &str) -> String {
        let mut state = lock(&self.state);
        let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}");
        let created = state.created();
        state.secrets.insert(
            arn.clone(),
            Secret {
                arn: arn.clone(),
                rotation_enabled: false,
                versions: vec![Version {
                    id: uuid::Uuid::new_v4().to_string(),
                    value: Some(body.to_owned()),
                    stages: vec![STAGE_CURRENT.to_owned()],
                    created,
                }],
                tags: BTreeMap::new(),
            },
        );
        arn
    }

    /// `RotateSecret` as AWS does it before it invokes `createSecret`: turns rotation on and
    /// stages a new, empty version `AWSPENDING`. Refused (as AWS refuses) while `AWSPENDING`
    /// sits on a version that is not `AWSCURRENT`.
    pub fn start_rotation(&self, secret_id: &str) -> Result<String, PortError> {
        let mut state = lock(&self.state);
        let created = state.created();
        let secret = state.find(secret_id, "RotateSecret")?;
        if let Some(index) = secret.holder(STAGE_PENDING)
            && !secret.versions[index]
                .stages
                .iter()
                .any(|s| s == STAGE_CURRENT)
        {
            return Err(refused(
                SM,
                "RotateSecret",
                FailureKind::InvalidRequest,
                "A previous rotation isn't complete. That rotation will be reattempted.",
            ));
        }
        let token = uuid::Uuid::new_v4().to_string();
        secret.rotation_enabled = true;
        secret.versions.push(Version {
            id: token.clone(),
            value: None,
            stages: Vec::new(),
            created,
        });
        let index = secret.versions.len() - 1;
        secret.label(index, STAGE_PENDING);
        Ok(token)
    }

    /// `CancelRotateSecret` as AWS does it: rotation off, `AWSPENDING` left where it is.
    pub fn cancel_rotation(&self, secret_id: &str) {
        if let Ok(secret) = lock(&self.state).find(secret_id, "CancelRotateSecret") {
            secret.rotation_enabled = false;
        }
    }

    /// Every version id with its labels.
    pub fn stages(&self, secret_id: &str) -> BTreeMap<String, Vec<String>> {
        let mut state = lock(&self.state);
        let secret = state.find(secret_id, "-").expect("secret exists");
        secret
            .versions
            .iter()
            .map(|v| (v.id.clone(), v.stages.clone()))
            .collect()
    }

    /// The version id carrying `stage`.
    pub fn version_with_stage(&self, secret_id: &str, stage: &str) -> Option<String> {
        let mut state = lock(&self.state);
        let secret = state.find(secret_id, "-").ok()?;
        secret.holder(stage).map(|i| secret.versions[i].id.clone())
    }

    /// The value of the version carrying `stage`, parsed as JSON.
    pub fn json(&self, secret_id: &str, stage: &str) -> Option<serde_json::Value> {
        let mut state = lock(&self.state);
        let secret = state.find(secret_id, "-").ok()?;
        let value = secret.versions[secret.holder(stage)?].value.clone()?;
        serde_json::from_str(&value).ok()
    }

    /// The value of version `id`.
    pub fn value_of(&self, secret_id: &str, id: &str) -> Option<String> {
        let mut state = lock(&self.state);
        let secret = state.find(secret_id, "-").ok()?;
        secret.versions[secret.version(id)?].value.clone()
    }

    /// Replaces the value of the version carrying `stage` (a person editing the secret).
    pub fn overwrite(&self, secret_id: &str, stage: &str, body: &str) {
        let mut state = lock(&self.state);
        let secret = state.find(secret_id, "-").expect("secret exists");
        let index = secret.holder(stage).expect("stage exists");
        secret.versions[index].value = Some(body.to_owned());
    }

    /// The secret's tags.
    pub fn tags(&self, secret_id: &str) -> BTreeMap<String, String> {
        let mut state = lock(&self.state);
        state
            .find(secret_id, "-")
            .expect("secret exists")
            .tags
            .clone()
    }

    /// Turns Secrets Manager's own rotation on or off.
    pub fn set_rotation_enabled(&self, secret_id: &str, enabled: bool) {
        lock(&self.state)
            .find(secret_id, "-")
            .expect("secret exists")
            .rotation_enabled = enabled;
    }

    /// The calls made so far (`SecretsManager.GetSecretValue`, …).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).log.calls()
    }

    /// Makes the next call of `operation` (e.g. `"TagResource"`) fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: FailureKind) {
        lock(&self.state).log.fail_next(operation, kind);
    }

    /// A copy of the whole store, for "nothing changed" comparisons.
    pub fn snapshot(&self) -> String {
        format!("{:?}", lock(&self.state).secrets)
    }
}

impl SecretStore for MemorySecrets {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "DescribeSecret")?;
        let secret = state.find(secret_id, "DescribeSecret")?;
        Ok(description_of(secret))
    }

    async fn read(
        &self,
        secret_id: &str,
        version: VersionRef<'_>,
    ) -> Result<Option<StoredVersion>, PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "GetSecretValue")?;
        let secret = state.find(secret_id, "GetSecretValue")?;
        let index = match version {
            VersionRef::Current => secret.holder(STAGE_CURRENT),
            VersionRef::Previous => secret.holder(STAGE_PREVIOUS),
            VersionRef::Id(id) => secret.version(id),
            // VersionId and VersionStage together: the version must carry the stage.
            VersionRef::Pending(id) => secret
                .version(id)
                .filter(|&i| secret.versions[i].stages.iter().any(|s| s == STAGE_PENDING)),
        };
        Ok(index.and_then(|i| {
            let version = &secret.versions[i];
            version.value.as_ref().map(|value| StoredVersion {
                version_id: version.id.clone(),
                secret_string: SecretText::new(value.as_str()),
            })
        }))
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        client_request_token: &str,
        secret_string: &SecretText,
        _rotation_token: Option<&SecretText>,
    ) -> Result<(), PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "PutSecretValue")?;
        let created = state.created();
        let secret = state.find(secret_id, "PutSecretValue")?;
        let index = match secret.version(client_request_token) {
            Some(index) => match &secret.versions[index].value {
                Some(existing) if existing == secret_string.expose() => return Ok(()),
                Some(_) => {
                    return Err(refused(
                        SM,
                        "PutSecretValue",
                        FailureKind::Conflict,
                        "You can't modify an existing version, you can only create a new version.",
                    ));
                }
                None => {
                    secret.versions[index].value = Some(secret_string.expose().to_owned());
                    index
                }
            },
            None => {
                secret.versions.push(Version {
                    id: client_request_token.to_owned(),
                    value: Some(secret_string.expose().to_owned()),
                    stages: Vec::new(),
                    created,
                });
                secret.versions.len() - 1
            }
        };
        secret.label(index, STAGE_PENDING);
        Ok(())
    }

    async fn promote(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "UpdateSecretVersionStage")?;
        let secret = state.find(secret_id, "UpdateSecretVersionStage")?;
        let to = secret.version(to_version).ok_or_else(|| {
            refused(
                SM,
                "UpdateSecretVersionStage",
                FailureKind::NotFound,
                "no such version",
            )
        })?;
        let holder = secret.holder(STAGE_CURRENT);
        if holder.is_some() && holder.map(|i| secret.versions[i].id.as_str()) != from_version {
            return Err(refused(
                SM,
                "UpdateSecretVersionStage",
                FailureKind::InvalidRequest,
                "The parameter RemoveFromVersionId doesn't match the version that AWSCURRENT is attached to.",
            ));
        }
        if holder == Some(to) {
            return Ok(());
        }
        if let Some(old) = holder {
            secret.label(old, STAGE_PREVIOUS);
        }
        secret.label(to, STAGE_CURRENT);
        Ok(())
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "ListSecretVersionIds")?;
        let secret = state.find(secret_id, "ListSecretVersionIds")?;
        let mut versions: Vec<VersionInfo> = secret
            .versions
            .iter()
            .map(|v| VersionInfo {
                version_id: v.id.clone(),
                created: Some(v.created),
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.created));
        Ok(versions)
    }

    async fn list_tagged(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<SecretDescription>, PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "ListSecrets")?;
        Ok(state
            .secrets
            .values()
            .filter(|s| s.tags.get(key).map(String::as_str) == Some(value))
            .map(description_of)
            .collect())
    }

    async fn set_tags(&self, secret_id: &str, tags: &[(&str, &str)]) -> Result<(), PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "TagResource")?;
        let secret = state.find(secret_id, "TagResource")?;
        for (key, value) in tags {
            secret.tags.insert((*key).to_owned(), (*value).to_owned());
        }
        Ok(())
    }

    async fn clear_pending(&self, secret_id: &str, version: &str) -> Result<(), PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "UpdateSecretVersionStage")?;
        let secret = state.find(secret_id, "UpdateSecretVersionStage")?;
        let holder = secret.holder(STAGE_PENDING);
        if holder.map(|i| secret.versions[i].id.as_str()) != Some(version) {
            return Err(refused(
                SM,
                "UpdateSecretVersionStage",
                FailureKind::InvalidRequest,
                "The parameter RemoveFromVersionId doesn't match the version that AWSPENDING is attached to.",
            ));
        }
        for v in &mut secret.versions {
            v.stages.retain(|s| s != STAGE_PENDING);
        }
        Ok(())
    }
}

const SES: &str = "SESv2";

/// One SES identity's DKIM settings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SesIdentity {
    origin: SigningOrigin,
    status: DkimStatus,
    tokens: Vec<String>,
    /// The external key put last (bare base64 PKCS#1).
    private_key: Option<String>,
    /// When the current external key was put (SES's 72-hour window starts there).
    put_at: Option<OffsetDateTime>,
}

#[derive(Debug, Default)]
struct SesState {
    identities: BTreeMap<(String, String), SesIdentity>,
    log: CallLog,
    puts: Vec<(String, String, String)>,
    status_after_put: Option<DkimStatus>,
    refusing_regions: BTreeMap<String, FailureKind>,
}

/// SESv2's DKIM side, as AWS documents it. Clones share one state.
#[derive(Debug, Clone)]
pub struct FakeSes {
    state: Arc<Mutex<SesState>>,
    clock: ManualClock,
    window: time::Duration,
}

/// The region an identity lives in when the secret names none.
pub const HOME_REGION: &str = "us-east-1";

impl FakeSes {
    /// No identities; SES's verification window is 72 hours of `clock`.
    pub fn new(clock: ManualClock) -> Self {
        Self {
            state: Arc::default(),
            clock,
            window: time::Duration::hours(72),
        }
    }

    /// `CreateEmailIdentity` for a domain: Easy DKIM, `PENDING` until its CNAMEs resolve.
    pub fn create_identity(&self, domain: &str) {
        self.create_identity_in(domain, HOME_REGION);
    }

    /// [`Self::create_identity`] in `region`.
    pub fn create_identity_in(&self, domain: &str, region: &str) {
        lock(&self.state).identities.insert(
            (domain.to_owned(), region.to_owned()),
            SesIdentity {
                origin: SigningOrigin::AwsSes,
                status: DkimStatus::Pending,
                tokens: (1..=3).map(|i| format!("easy{i}token")).collect(),
                private_key: None,
                put_at: None,
            },
        );
    }

    /// Forces the DKIM status of `domain` (home region).
    pub fn set_status(&self, domain: &str, status: DkimStatus) {
        self.set_status_in(domain, HOME_REGION, status);
    }

    /// Forces the DKIM status of `domain` in `region`.
    pub fn set_status_in(&self, domain: &str, region: &str, status: DkimStatus) {
        if let Some(identity) = lock(&self.state)
            .identities
            .get_mut(&(domain.to_owned(), region.to_owned()))
        {
            identity.status = status;
        }
    }

    /// The DKIM state of `domain` (home region), as `GetEmailIdentity` would say it.
    pub fn state_of(&self, domain: &str) -> Option<SesDkimState> {
        self.state_in(domain, HOME_REGION)
    }

    /// The DKIM state of `domain` in `region`.
    pub fn state_in(&self, domain: &str, region: &str) -> Option<SesDkimState> {
        lock(&self.state)
            .identities
            .get(&(domain.to_owned(), region.to_owned()))
            .map(state_of)
    }

    /// Makes every put in `region` fail with `kind` (e.g. `AccessDenied`: the role may not use
    /// SES there) until [`Self::accept_region`].
    pub fn refuse_region(&self, region: &str, kind: FailureKind) {
        lock(&self.state)
            .refusing_regions
            .insert(region.to_owned(), kind);
    }

    /// Undoes [`Self::refuse_region`].
    pub fn accept_region(&self, region: &str) {
        lock(&self.state).refusing_regions.remove(region);
    }

    /// The external private key SES holds for `domain` (home region).
    pub fn key_of(&self, domain: &str) -> Option<String> {
        lock(&self.state)
            .identities
            .get(&(domain.to_owned(), HOME_REGION.to_owned()))
            .and_then(|i| i.private_key.clone())
    }

    /// Makes every later external put answer `status` at once instead of `PENDING` (how
    /// awsim behaves; real SES never says `FAILED` that early).
    pub fn set_status_after_put(&self, status: Option<DkimStatus>) {
        lock(&self.state).status_after_put = status;
    }

    /// Every `PutEmailIdentityDkimSigningAttributes` so far: (identity, selector).
    pub fn puts(&self) -> Vec<(String, String)> {
        lock(&self.state)
            .puts
            .iter()
            .map(|(identity, _, selector)| (identity.clone(), selector.clone()))
            .collect()
    }

    /// Every put so far: (identity, region, selector).
    pub fn puts_by_region(&self) -> Vec<(String, String, String)> {
        lock(&self.state).puts.clone()
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).log.calls()
    }

    /// Makes the next call of `operation` fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: FailureKind) {
        lock(&self.state).log.fail_next(operation, kind);
    }

    /// "SES looks now" for `domain`: a `PENDING` external key becomes `SUCCESS` when `zone`
    /// serves its record, or `FAILED` once 72 hours have passed since the put; a verified key
    /// whose record stopped resolving becomes `TEMPORARY_FAILURE` (and back on `SUCCESS`).
    pub fn check_dns(&self, domain: &str, zone: &MemoryZone) {
        self.check_dns_in(domain, HOME_REGION, zone);
    }

    /// [`Self::check_dns`] in `region` (each region looks on its own time).
    pub fn check_dns_in(&self, domain: &str, region: &str, zone: &MemoryZone) {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let Some(identity) = state
            .identities
            .get_mut(&(domain.to_owned(), region.to_owned()))
        else {
            return;
        };
        let (Some(private_key), Some(selector)) = (&identity.private_key, identity.tokens.first())
        else {
            return;
        };
        let Ok(key) = DkimKeyPair::from_private_key(&SecretText::new(private_key.as_str())) else {
            identity.status = DkimStatus::Failed;
            return;
        };
        let records = zone.txt(&format!("{selector}._domainkey.{domain}"));
        let served =
            check_dkim_record(&Ok(TxtAnswer::Records(records)), key.public_key()).is_published();
        identity.status = match (&identity.status, served) {
            (DkimStatus::Success | DkimStatus::TemporaryFailure, true) => DkimStatus::Success,
            (DkimStatus::Success | DkimStatus::TemporaryFailure, false) => {
                DkimStatus::TemporaryFailure
            }
            (DkimStatus::Pending, true) => DkimStatus::Success,
            (DkimStatus::Pending, false)
                if identity.put_at.is_some_and(|at| now - at >= self.window) =>
            {
                DkimStatus::Failed
            }
            (status, _) => status.clone(),
        };
    }
}

fn state_of(identity: &SesIdentity) -> SesDkimState {
    SesDkimState {
        signing_enabled: true,
        status: Some(identity.status.clone()),
        origin: Some(identity.origin.clone()),
        selectors: identity.tokens.clone(),
    }
}

impl DkimSigningService for FakeSes {
    async fn dkim_state(
        &self,
        identity: &str,
        region: Option<&str>,
    ) -> Result<Option<SesDkimState>, PortError> {
        let mut state = lock(&self.state);
        state.log.enter(SES, "GetEmailIdentity")?;
        let key = (
            identity.to_owned(),
            region.unwrap_or(HOME_REGION).to_owned(),
        );
        Ok(state.identities.get(&key).map(state_of))
    }

    async fn sign_with_external_key(
        &self,
        identity: &str,
        region: Option<&str>,
        selector: &str,
        private_key: &SecretText,
    ) -> Result<(), PortError> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        state
            .log
            .enter(SES, "PutEmailIdentityDkimSigningAttributes")?;
        let key = (
            identity.to_owned(),
            region.unwrap_or(HOME_REGION).to_owned(),
        );
        if let Some(kind) = state.refusing_regions.get(&key.1) {
            return Err(refused(
                SES,
                "PutEmailIdentityDkimSigningAttributes",
                *kind,
                "User is not authorized to perform ses:PutEmailIdentityDkimSigningAttributes in this region",
            ));
        }
        let status = state
            .status_after_put
            .clone()
            .unwrap_or(DkimStatus::Pending);
        let Some(entry) = state.identities.get_mut(&key) else {
            return Err(refused(
                SES,
                "PutEmailIdentityDkimSigningAttributes",
                FailureKind::NotFound,
                "Email identity does not exist.",
            ));
        };
        *entry = SesIdentity {
            origin: SigningOrigin::External,
            status,
            tokens: vec![selector.to_owned()],
            private_key: Some(private_key.expose().to_owned()),
            put_at: Some(now),
        };
        state
            .puts
            .push((identity.to_owned(), key.1.clone(), selector.to_owned()));
        Ok(())
    }
}

#[derive(Debug, Default)]
struct ZoneState {
    records: BTreeMap<String, Vec<String>>,
    log: CallLog,
    down: bool,
}

/// One DNS zone in memory: the publisher writes it, the lookup reads it. Clones share it.
#[derive(Debug, Clone)]
pub struct MemoryZone {
    state: Arc<Mutex<ZoneState>>,
    mode: PublishMode,
}

impl MemoryZone {
    /// An empty zone that publishes like `mode` (hint mode writes nothing: a person does).
    pub fn new(mode: PublishMode) -> Self {
        Self {
            state: Arc::default(),
            mode,
        }
    }

    /// The TXT records at `name` (strings joined).
    pub fn txt(&self, name: &str) -> Vec<String> {
        lock(&self.state)
            .records
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Adds a TXT record at `name` by hand (a person, or another system).
    pub fn add(&self, name: &str, value: &str) {
        lock(&self.state)
            .records
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.to_owned());
    }

    /// Removes every TXT record at `name` by hand.
    pub fn remove(&self, name: &str) {
        lock(&self.state).records.remove(&name.to_ascii_lowercase());
    }

    /// Makes the server fail every query (`SERVFAIL`) while `down`.
    pub fn set_down(&self, down: bool) {
        lock(&self.state).down = down;
    }

    /// Every name with TXT records.
    pub fn names(&self) -> Vec<String> {
        lock(&self.state).records.keys().cloned().collect()
    }

    /// The calls made so far (`DNS.Upsert`, `DNS.Delete`, `DNS.Lookup`).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).log.calls()
    }

    /// Makes the next `operation` (`Upsert`, `Delete`, `Lookup`) fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: FailureKind) {
        lock(&self.state).log.fail_next(operation, kind);
    }
}

impl DnsPublisher for MemoryZone {
    fn mode(&self) -> PublishMode {
        self.mode
    }

    async fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        _deadline: crate::engine::ports::Deadline,
    ) -> Result<(), PortError> {
        let mut state = lock(&self.state);
        state.log.enter("DNS", "Upsert")?;
        state.records.insert(
            record.name.to_ascii_lowercase(),
            vec![record.value.to_owned()],
        );
        Ok(())
    }

    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<(), PortError> {
        let mut state = lock(&self.state);
        state.log.enter("DNS", "Delete")?;
        state.records.remove(&record.name.to_ascii_lowercase());
        Ok(())
    }
}

impl DnsTxtLookup for MemoryZone {
    async fn lookup_txt(
        &self,
        _identity: &str,
        name: &str,
    ) -> Result<Vec<ServerAnswer>, LookupFailure> {
        let mut state = lock(&self.state);
        let server = "memory-zone".to_owned();
        if let Err(error) = state.log.enter("DNS", "Lookup") {
            return Err(LookupFailure {
                server,
                reason: error.message,
            });
        }
        let answer = if state.down {
            Err(LookupFailure {
                server: server.clone(),
                reason: "SERVFAIL".into(),
            })
        } else {
            Ok(match state.records.get(&name.to_ascii_lowercase()) {
                Some(records) if !records.is_empty() => TxtAnswer::Records(records.clone()),
                _ => TxtAnswer::NoRecords,
            })
        };
        Ok(vec![ServerAnswer { server, answer }])
    }
}

/// A clock that moves only when told to (or when the engine sleeps). Clones share it.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<OffsetDateTime>>,
}

impl ManualClock {
    /// A clock at `start`.
    pub fn at(start: OffsetDateTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: time::Duration) {
        *lock(&self.now) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *lock(&self.now)
    }

    async fn sleep(&self, duration: Duration) {
        *lock(&self.now) += duration;
    }
}

/// A notifier that keeps what it was asked to send.
#[derive(Debug, Clone, Default)]
pub struct RecordingNotifier {
    sent: Arc<Mutex<Vec<Notification>>>,
}

impl RecordingNotifier {
    /// What was sent so far.
    pub fn sent(&self) -> Vec<Notification> {
        lock(&self.sent).clone()
    }
}

impl Notifier for RecordingNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), PortError> {
        lock(&self.sent).push(notification.clone());
        Ok(())
    }
}

/// A work queue that keeps what it was sent.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    sent: Arc<Mutex<Vec<WorkItem>>>,
}

impl MemoryQueue {
    /// Everything sent so far, in order.
    pub fn sent(&self) -> Vec<WorkItem> {
        lock(&self.sent).clone()
    }
}

impl WorkQueue for MemoryQueue {
    async fn send(&self, items: &[WorkItem]) -> Result<usize, PortError> {
        lock(&self.sent).extend_from_slice(items);
        Ok(items.len())
    }
}

/// The in-memory ports bundle.
pub type MemoryPorts = PortSet<MemorySecrets, FakeSes, MemoryZone, MemoryZone, ManualClock>;

/// A fresh in-memory world: secrets, SES, one zone (publishing like `mode`), a clock at `start`.
pub fn memory_ports(mode: PublishMode, start: OffsetDateTime) -> MemoryPorts {
    let clock = ManualClock::at(start);
    let zone = MemoryZone::new(mode);
    PortSet {
        secrets: MemorySecrets::new(),
        ses: FakeSes::new(clock.clone()),
        dns: zone.clone(),
        lookup: zone,
        clock,
    }
}
