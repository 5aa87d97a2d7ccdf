//! A read cache around the ports, for one scheduled invocation of one secret.
//!
//! A scheduled run reads a secret, decides, and may then run all four rotation steps in the
//! same invocation. The domain code always reads what it needs (every step reads the
//! description, `AWSCURRENT`, SES and its pending key, exactly as when Secrets Manager invokes
//! it); this decorator answers the repeated reads from what the invocation already read or
//! wrote, so the domain code needs no plumbing and stays correct when someone adds a write.
//!
//! The rules:
//! - `DescribeSecret`, `GetSecretValue` and `GetEmailIdentity` are remembered per secret (per
//!   identity and region for SES) from the first answer.
//! - A successful write updates what it changed the way AWS applies it: `PutSecretValue`
//!   stores the value and moves `AWSPENDING` to the version; moving `AWSCURRENT` moves
//!   `AWSPREVIOUS` to the version it left; taking `AWSPENDING` off removes it; `TagResource`
//!   merges the tags.
//! - A failed write forgets everything about that secret (the next read asks AWS), and a put
//!   to SES forgets that identity's state in that region (SES's answer after a switch is always
//!   read afresh).
//! - DNS is never cached: the check before a switch always asks the servers. Listings
//!   (`ListSecrets`, `ListSecretVersionIds`) pass through.
//!
//! Only a scheduled run uses it ([`super::Engine::maintain`]); a step Secrets Manager invokes
//! starts with nothing and reads everything, and so does any retry after a crash.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::ports::{
    DkimSigningService, IdentityPage, ListedPage, PortError, Ports, STAGE_CURRENT, STAGE_PENDING,
    STAGE_PREVIOUS, SecretDescription, SecretStore, SesDkimState, StoredVersion, VersionInfo,
    VersionRef,
};
use crate::secret_text::SecretText;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `inner`'s ports with reads of Secrets Manager and SES remembered (see the module's rules).
#[derive(Debug)]
pub struct CachedPorts<'a, P: Ports> {
    inner: &'a P,
    secrets: CachedStore<'a, P::Secrets>,
    ses: CachedSes<'a, P::Ses>,
}

impl<'a, P: Ports> CachedPorts<'a, P> {
    /// A cache over `inner` that remembers nothing yet.
    pub fn new(inner: &'a P) -> Self {
        Self {
            inner,
            secrets: CachedStore {
                inner: inner.secrets(),
                memo: Mutex::default(),
            },
            ses: CachedSes {
                inner: inner.ses(),
                memo: Mutex::default(),
            },
        }
    }
}

impl<'a, P: Ports> Ports for CachedPorts<'a, P> {
    type Secrets = CachedStore<'a, P::Secrets>;
    type Ses = CachedSes<'a, P::Ses>;
    type Dns = P::Dns;
    type Lookup = P::Lookup;
    type Clock = P::Clock;

    fn secrets(&self) -> &Self::Secrets {
        &self.secrets
    }
    fn ses(&self) -> &Self::Ses {
        &self.ses
    }
    fn dns(&self) -> &P::Dns {
        self.inner.dns()
    }
    fn lookup(&self) -> &P::Lookup {
        self.inner.lookup()
    }
    fn clock(&self) -> &P::Clock {
        self.inner.clock()
    }
}

/// What the cache knows of one secret.
#[derive(Debug, Default)]
struct SecretMemo {
    /// `DescribeSecret`, with this invocation's writes applied.
    description: Option<SecretDescription>,
    /// Version id → its value (`None`: the version has none).
    values: HashMap<String, Option<SecretText>>,
}

impl SecretMemo {
    /// The version id `version` names, as far as the cached description says.
    fn resolve<'v>(&'v self, version: VersionRef<'v>) -> Option<&'v str> {
        let description = self.description.as_ref();
        match version {
            VersionRef::Id(id) | VersionRef::Pending(id) => Some(id),
            VersionRef::Current => description?.version_with_stage(STAGE_CURRENT),
            VersionRef::Previous => description?.version_with_stage(STAGE_PREVIOUS),
        }
    }

    /// The remembered answer to a read of `version`, if the cache knows it.
    fn read(&self, version: VersionRef<'_>) -> Option<Option<StoredVersion>> {
        if let VersionRef::Pending(id) = version {
            // The read asks for the version only while it carries AWSPENDING.
            let stages = self.description.as_ref()?.versions.get(id);
            if !stages.is_some_and(|s| s.iter().any(|s| s == STAGE_PENDING)) {
                return Some(None);
            }
        }
        let id = self.resolve(version)?;
        let value = self.values.get(id)?;
        Some(value.as_ref().map(|secret_string| StoredVersion {
            version_id: id.to_owned(),
            secret_string: secret_string.clone(),
        }))
    }

    /// Puts `stage` on `version` only, as Secrets Manager does (a label is on one version).
    fn label(&mut self, version: &str, stage: &str) {
        if let Some(description) = &mut self.description {
            for stages in description.versions.values_mut() {
                stages.retain(|s| s != stage);
            }
            description
                .versions
                .entry(version.to_owned())
                .or_default()
                .push(stage.to_owned());
        }
    }
}

/// Secrets Manager with reads remembered; see the module's rules.
#[derive(Debug)]
pub struct CachedStore<'a, S> {
    inner: &'a S,
    memo: Mutex<HashMap<String, SecretMemo>>,
}

impl<S: SecretStore> CachedStore<'_, S> {
    /// Applies a write's effect on success; forgets the secret on failure.
    fn after_write<T>(
        &self,
        secret_id: &str,
        result: Result<T, PortError>,
        apply: impl FnOnce(&mut SecretMemo),
    ) -> Result<T, PortError> {
        let mut memo = lock(&self.memo);
        match &result {
            Ok(_) => apply(memo.entry(secret_id.to_owned()).or_default()),
            Err(_) => {
                memo.remove(secret_id);
            }
        }
        result
    }
}

impl<S: SecretStore> SecretStore for CachedStore<'_, S> {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, PortError> {
        let known = lock(&self.memo)
            .get(secret_id)
            .and_then(|m| m.description.clone());
        if let Some(description) = known {
            return Ok(description);
        }
        let description = self.inner.describe(secret_id).await?;
        lock(&self.memo)
            .entry(secret_id.to_owned())
            .or_default()
            .description = Some(description.clone());
        Ok(description)
    }

    async fn read(
        &self,
        secret_id: &str,
        version: VersionRef<'_>,
    ) -> Result<Option<StoredVersion>, PortError> {
        let known = lock(&self.memo)
            .get(secret_id)
            .and_then(|m| m.read(version));
        if let Some(answer) = known {
            return Ok(answer);
        }
        let stored = self.inner.read(secret_id, version).await?;
        let mut memo = lock(&self.memo);
        let memo = memo.entry(secret_id.to_owned()).or_default();
        match (&stored, version) {
            (Some(found), _) => {
                memo.values
                    .insert(found.version_id.clone(), Some(found.secret_string.clone()));
            }
            (None, VersionRef::Id(id)) => {
                memo.values.insert(id.to_owned(), None);
            }
            // A pending read that found nothing says nothing certain of the version.
            (None, _) => {}
        }
        Ok(stored)
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        client_request_token: &str,
        secret_string: &SecretText,
        rotation_token: Option<&SecretText>,
    ) -> Result<(), PortError> {
        let result = self
            .inner
            .put_pending(
                secret_id,
                client_request_token,
                secret_string,
                rotation_token,
            )
            .await;
        self.after_write(secret_id, result, |memo| {
            memo.values
                .insert(client_request_token.to_owned(), Some(secret_string.clone()));
            memo.label(client_request_token, STAGE_PENDING);
        })
    }

    async fn promote(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), PortError> {
        let result = self
            .inner
            .promote(secret_id, to_version, from_version)
            .await;
        self.after_write(secret_id, result, |memo| {
            let holder = memo
                .description
                .as_ref()
                .and_then(|d| d.version_with_stage(STAGE_CURRENT))
                .map(str::to_owned);
            if holder.as_deref() == Some(to_version) {
                return;
            }
            if let Some(old) = holder {
                memo.label(&old, STAGE_PREVIOUS);
            }
            memo.label(to_version, STAGE_CURRENT);
        })
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, PortError> {
        self.inner.list_versions(secret_id).await
    }

    async fn list_tagged_page(
        &self,
        key: &str,
        value: &str,
        page: Option<&str>,
    ) -> Result<ListedPage, PortError> {
        self.inner.list_tagged_page(key, value, page).await
    }

    async fn set_tags(&self, secret_id: &str, tags: &[(&str, &str)]) -> Result<(), PortError> {
        let result = self.inner.set_tags(secret_id, tags).await;
        self.after_write(secret_id, result, |memo| {
            if let Some(description) = &mut memo.description {
                for (key, value) in tags {
                    description
                        .tags
                        .insert((*key).to_owned(), (*value).to_owned());
                }
            }
        })
    }

    async fn clear_pending(&self, secret_id: &str, version: &str) -> Result<(), PortError> {
        let result = self.inner.clear_pending(secret_id, version).await;
        self.after_write(secret_id, result, |memo| {
            if let Some(stages) = memo
                .description
                .as_mut()
                .and_then(|d| d.versions.get_mut(version))
            {
                stages.retain(|s| s != STAGE_PENDING);
            }
        })
    }
}

/// An identity in a region (`None`: the function's own).
type IdentityInRegion = (String, Option<String>);

/// SES with `GetEmailIdentity` remembered until the next put for that identity and region.
#[derive(Debug)]
pub struct CachedSes<'a, E> {
    inner: &'a E,
    memo: Mutex<HashMap<IdentityInRegion, Option<SesDkimState>>>,
}

impl<E: DkimSigningService> DkimSigningService for CachedSes<'_, E> {
    async fn dkim_state(
        &self,
        identity: &str,
        region: Option<&str>,
    ) -> Result<Option<SesDkimState>, PortError> {
        let key = (identity.to_owned(), region.map(str::to_owned));
        let known = lock(&self.memo).get(&key).cloned();
        if let Some(state) = known {
            return Ok(state);
        }
        let state = self.inner.dkim_state(identity, region).await?;
        lock(&self.memo).insert(key, state.clone());
        Ok(state)
    }

    async fn sign_with_external_key(
        &self,
        identity: &str,
        region: Option<&str>,
        selector: &str,
        private_key: &SecretText,
    ) -> Result<(), PortError> {
        let put = self
            .inner
            .sign_with_external_key(identity, region, selector, private_key)
            .await;
        lock(&self.memo).remove(&(identity.to_owned(), region.map(str::to_owned)));
        put
    }

    async fn list_identities(
        &self,
        region: Option<&str>,
        page: Option<&str>,
    ) -> Result<IdentityPage, PortError> {
        self.inner.list_identities(region, page).await
    }
}
