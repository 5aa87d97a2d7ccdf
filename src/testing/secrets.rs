//! [`MemorySecrets`]: Secrets Manager in memory, with AWS's staging-label rules.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::call_log::{CallLog, lock, refused};
use super::clock::ManualClock;
use super::quota::{RequestQuota, TokenBuckets};
use crate::engine::ports::{
    Clock, FailureKind, ListedPage, PortError, STAGE_CURRENT, STAGE_PENDING, STAGE_PREVIOUS,
    SecretDescription, SecretStore, StoredVersion, VersionInfo, VersionRef,
};
use crate::secret_text::SecretText;

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
    /// Secrets Manager's write budgets, when enforced, on which clock.
    write_quota: Option<(RequestQuota, ManualClock)>,
    /// What the write budgets admitted and refused.
    buckets: TokenBuckets,
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

    /// A write in `budget` (`PutSecretValue` and `UpdateSecretVersionStage` share one,
    /// `TagResource` has its own) under the write quota, when it is enforced: admitted, or
    /// refused `ThrottlingException` ("Rate exceeded") as Secrets Manager answers.
    fn admit_write(&mut self, budget: &str, operation: &'static str) -> Result<(), PortError> {
        let Some((quota, clock)) = &self.write_quota else {
            return Ok(());
        };
        let (quota, now) = (*quota, clock.now());
        if self.buckets.take(quota, budget, now) {
            return Ok(());
        }
        Err(refused(
            SM,
            operation,
            FailureKind::Throttled,
            "ThrottlingException: Rate exceeded",
        ))
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

    /// From now on every write is held to `quota` on `clock`, per budget: `PutSecretValue` and
    /// `UpdateSecretVersionStage` together, `TagResource` alone (AWS: 50/s each, per region).
    pub fn enforce_write_quota(&self, quota: RequestQuota, clock: ManualClock) {
        lock(&self.state).write_quota = Some((quota, clock));
    }

    /// How many writes the write quota refused so far.
    pub fn throttled(&self) -> u64 {
        lock(&self.state).buckets.throttled
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

/// Secrets per `ListSecrets` page, as AWS's `MaxResults` 100.
pub const LIST_PAGE_SIZE: usize = 100;

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
        state.admit_write("secret-value-writes", "PutSecretValue")?;
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
        state.admit_write("secret-value-writes", "UpdateSecretVersionStage")?;
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

    async fn list_tagged_page(
        &self,
        key: &str,
        value: &str,
        page: Option<&str>,
    ) -> Result<ListedPage, PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "ListSecrets")?;
        // Pages of LIST_PAGE_SIZE, as AWS's MaxResults 100; the token is the offset.
        let from: usize = match page {
            None => 0,
            Some(token) => token.parse().map_err(|_| PortError {
                service: SM,
                operation: "ListSecrets",
                kind: FailureKind::InvalidRequest,
                message: format!("InvalidNextTokenException: `{token}`"),
            })?,
        };
        let matching: Vec<SecretDescription> = state
            .secrets
            .values()
            .filter(|s| s.tags.get(key).map(String::as_str) == Some(value))
            .map(description_of)
            .collect();
        let end = (from + LIST_PAGE_SIZE).min(matching.len());
        Ok(ListedPage {
            secrets: matching.get(from..end).unwrap_or_default().to_vec(),
            next_page: (end < matching.len()).then(|| end.to_string()),
        })
    }

    async fn set_tags(&self, secret_id: &str, tags: &[(&str, &str)]) -> Result<(), PortError> {
        self.take_turn().await;
        let mut state = lock(&self.state);
        state.log.enter(SM, "TagResource")?;
        state.admit_write("tags", "TagResource")?;
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
        state.admit_write("secret-value-writes", "UpdateSecretVersionStage")?;
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
