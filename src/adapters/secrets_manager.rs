//! [`SecretStore`] over the AWS SDK's Secrets Manager client.

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};

use super::port_error;
use crate::engine::ports::FailureKind;
use crate::engine::ports::{
    ListedPage, PortError, STAGE_CURRENT, STAGE_PENDING, STAGE_PREVIOUS, SecretDescription,
    SecretStore, StoredVersion, VersionInfo, VersionRef,
};
use crate::secret_text::SecretText;

const SERVICE: &str = "SecretsManager";

/// Classifies the one modeled error most Secrets Manager operations share.
fn not_found_kind<E: ResourceNotFound>(error: &E) -> Option<FailureKind> {
    error.is_not_found().then_some(FailureKind::NotFound)
}

/// The `ResourceNotFoundException` predicate every operation's error type has.
trait ResourceNotFound {
    fn is_not_found(&self) -> bool;
}

macro_rules! resource_not_found {
    ($($error:ty),* $(,)?) => {$(
        impl ResourceNotFound for $error {
            fn is_not_found(&self) -> bool {
                self.is_resource_not_found_exception()
            }
        }
    )*};
}

resource_not_found!(
    aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError,
    aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError,
    aws_sdk_secretsmanager::operation::list_secret_version_ids::ListSecretVersionIdsError,
    aws_sdk_secretsmanager::operation::tag_resource::TagResourceError,
);

/// Secrets Manager through the SDK.
#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: Client,
}

impl SecretsManagerStore {
    /// Wraps a configured client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl SecretStore for SecretsManagerStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, PortError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "DescribeSecret", e, not_found_kind))?;
        Ok(SecretDescription {
            arn: out.arn().unwrap_or(secret_id).to_owned(),
            rotation_enabled: out.rotation_enabled().unwrap_or(false),
            versions: out.version_ids_to_stages().cloned().unwrap_or_default(),
            tags: tags_of(out.tags()),
        })
    }

    async fn read(
        &self,
        secret_id: &str,
        version: VersionRef<'_>,
    ) -> Result<Option<StoredVersion>, PortError> {
        let request = self.client.get_secret_value().secret_id(secret_id);
        let request = match version {
            VersionRef::Current => request.version_stage(STAGE_CURRENT),
            VersionRef::Pending(id) => request.version_id(id).version_stage(STAGE_PENDING),
            VersionRef::Id(id) => request.version_id(id),
            VersionRef::Previous => request.version_stage(STAGE_PREVIOUS),
        };
        match request.send().await {
            Ok(out) => Ok(Some(StoredVersion {
                version_id: out.version_id().unwrap_or_default().to_owned(),
                // A binary-only secret has no SecretString: treat it as empty, which the
                // secret parser rejects with a message that says to store JSON.
                secret_string: SecretText::new(out.secret_string().unwrap_or_default()),
            })),
            Err(e) => {
                let error = port_error(SERVICE, "GetSecretValue", e, not_found_kind);
                if error.kind == FailureKind::NotFound {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        client_request_token: &str,
        secret_string: &SecretText,
        rotation_token: Option<&SecretText>,
    ) -> Result<(), PortError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(client_request_token)
            .secret_string(secret_string.expose())
            .version_stages(STAGE_PENDING)
            .set_rotation_token(rotation_token.map(|t| t.expose().to_owned()))
            .send()
            .await
            .map_err(|e| {
                port_error(SERVICE, "PutSecretValue", e, |e| {
                    if e.is_resource_exists_exception() {
                        Some(FailureKind::Conflict)
                    } else if e.is_invalid_request_exception() || e.is_invalid_parameter_exception()
                    {
                        Some(FailureKind::InvalidRequest)
                    } else {
                        e.is_resource_not_found_exception()
                            .then_some(FailureKind::NotFound)
                    }
                })
            })?;
        Ok(())
    }

    async fn promote(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), PortError> {
        self.move_stage(STAGE_CURRENT, secret_id, Some(to_version), from_version)
            .await
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionInfo>, PortError> {
        let mut versions = Vec::new();
        let mut pages = self
            .client
            .list_secret_version_ids()
            .secret_id(secret_id)
            .include_deprecated(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| port_error(SERVICE, "ListSecretVersionIds", e, not_found_kind))?;
            versions.extend(page.versions().iter().filter_map(|v| {
                Some(VersionInfo {
                    version_id: v.version_id()?.to_owned(),
                    created: v.created_date().map(|d| d.secs()),
                })
            }));
        }
        versions.sort_by_key(|v| std::cmp::Reverse(v.created));
        Ok(versions)
    }

    async fn list_tagged_page(
        &self,
        key: &str,
        value: &str,
        page: Option<&str>,
    ) -> Result<ListedPage, PortError> {
        let page = self
            .client
            .list_secrets()
            .max_results(100)
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::TagKey)
                    .values(key)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::TagValue)
                    .values(value)
                    .build(),
            )
            .set_next_token(page.map(str::to_owned))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "ListSecrets", e, |_| None))?;
        let mut listed = Vec::new();
        for secret in page.secret_list() {
            // The two filters match the key and the value separately: check the pair.
            let tagged = secret
                .tags()
                .iter()
                .any(|t| t.key() == Some(key) && t.value() == Some(value));
            if tagged && let Some(arn) = secret.arn() {
                listed.push(SecretDescription {
                    arn: arn.to_owned(),
                    rotation_enabled: secret.rotation_enabled().unwrap_or(false),
                    versions: secret
                        .secret_versions_to_stages()
                        .cloned()
                        .unwrap_or_default(),
                    tags: tags_of(secret.tags()),
                });
            }
        }
        Ok(ListedPage {
            secrets: listed,
            next_page: page.next_token().map(str::to_owned),
        })
    }

    async fn set_tags(&self, secret_id: &str, tags: &[(&str, &str)]) -> Result<(), PortError> {
        self.client
            .tag_resource()
            .secret_id(secret_id)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "TagResource", e, not_found_kind))?;
        Ok(())
    }

    async fn clear_pending(&self, secret_id: &str, version: &str) -> Result<(), PortError> {
        self.move_stage(STAGE_PENDING, secret_id, None, Some(version))
            .await
    }
}

impl SecretsManagerStore {
    /// `UpdateSecretVersionStage` for `stage`: onto `to`, off `from`.
    async fn move_stage(
        &self,
        stage: &str,
        secret_id: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), PortError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_owned))
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                port_error(SERVICE, "UpdateSecretVersionStage", e, |e| {
                    if e.is_invalid_parameter_exception() || e.is_invalid_request_exception() {
                        Some(FailureKind::InvalidRequest)
                    } else {
                        e.is_resource_not_found_exception()
                            .then_some(FailureKind::NotFound)
                    }
                })
            })?;
        Ok(())
    }
}

/// Tags as a map (a tag without key or value is left out).
fn tags_of(tags: &[Tag]) -> HashMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect()
}
