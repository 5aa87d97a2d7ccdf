//! Operator actions outside a rotation: inspecting a secret's state and rolling back to the
//! previous key. Used by the `dkim-rotator` CLI.

use serde::Serialize;

use super::dns_check::check_all_servers;
use super::error::EngineError;
use super::ports::{
    DkimSigningService, DkimStatus, DnsTxtLookup, Ports, STAGE_CURRENT, STAGE_PREVIOUS,
    SecretStore, SigningOrigin,
};
use super::secret_doc::{DkimSecret, dkim_record_name};
use super::{Engine, VersionLabel};

/// What `status` shows for one secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// The secret.
    pub secret_id: String,
    /// The identity.
    pub identity: String,
    /// SES's DKIM origin.
    pub ses_origin: Option<SigningOrigin>,
    /// SES's DKIM status.
    pub ses_status: Option<DkimStatus>,
    /// The selector in `AWSCURRENT`.
    pub current_selector: Option<String>,
    /// DNS check of the current selector's record.
    pub current_dns: Option<&'static str>,
    /// The previous selector.
    pub previous_selector: Option<String>,
    /// DNS check of the previous selector's record (against the `AWSPREVIOUS` key).
    pub previous_dns: Option<&'static str>,
}

impl<P: Ports> Engine<P> {
    async fn dns_check_of(&self, doc: &DkimSecret) -> Option<&'static str> {
        let key = doc.key.as_ref()?;
        let name = key.dns_name(&doc.identity);
        let answers = self
            .ports()
            .lookup()
            .lookup_txt(doc.identity.as_str(), &name)
            .await;
        Some(check_all_servers(&answers, key.key.public_key()).kind())
    }

    /// Reads a secret's state: SES, and DNS for the current and previous selectors.
    pub async fn inspect(&self, secret_id: &str) -> Result<Inspection, EngineError> {
        let (current, state) = self.read_current_checked(secret_id).await?;
        let previous = self
            .read_doc(secret_id, VersionLabel::PREVIOUS)
            .await
            .ok()
            .flatten()
            .filter(|p| p.key.as_ref().map(|k| &k.selector) == current.previous_selector.as_ref());
        Ok(Inspection {
            secret_id: secret_id.to_owned(),
            identity: current.identity.to_string(),
            ses_origin: state.origin,
            ses_status: state.status,
            current_selector: current.key.as_ref().map(|k| k.selector.to_string()),
            current_dns: self.dns_check_of(&current).await,
            previous_selector: current.previous_selector.as_ref().map(|s| s.to_string()),
            previous_dns: match &previous {
                Some(previous) => self.dns_check_of(previous).await,
                None => None,
            },
        })
    }

    /// Puts the previous key back: checks its record is still published, points SES at it,
    /// and moves `AWSCURRENT` back to its version. Refuses when the record is gone.
    pub async fn rollback(&self, secret_id: &str) -> Result<Inspection, EngineError> {
        let description = self.store().describe(secret_id).await?;
        let (current, _) = self.read_current_checked(secret_id).await?;
        let refuse = |reason: String| EngineError::RollbackRefused {
            secret_id: secret_id.to_owned(),
            reason,
        };
        let previous_id = description
            .version_with_stage(STAGE_PREVIOUS)
            .ok_or_else(|| refuse("there is no AWSPREVIOUS version to roll back to".into()))?
            .to_owned();
        let previous = self
            .read_doc(secret_id, VersionLabel::PREVIOUS)
            .await?
            .ok_or_else(|| refuse("the AWSPREVIOUS version has no value".into()))?;
        let key = previous.key.as_ref().ok_or_else(|| {
            refuse("the AWSPREVIOUS version holds no key (never rotated before)".into())
        })?;
        if previous.identity != current.identity {
            return Err(refuse(format!(
                "AWSCURRENT is for `{}` but AWSPREVIOUS is for `{}`; roll back by hand, or rotate",
                current.identity, previous.identity
            )));
        }
        let check = self.dns_check_of(&previous).await.unwrap_or("missing");
        if check != "published" {
            let name = dkim_record_name(&key.selector, &previous.identity);
            return Err(EngineError::DnsNotVerified {
                secret_id: secret_id.to_owned(),
                outcome: check,
                detail: format!(
                    "the previous selector's record {name} is {check}; re-publish it ({}) before rolling back",
                    key.key.txt_value()
                ),
            });
        }
        self.ses()
            .sign_with_external_key(
                previous.identity.as_str(),
                previous.region.as_deref(),
                key.selector.as_str(),
                key.key.private_key(),
            )
            .await?;
        self.store()
            .promote(
                secret_id,
                &previous_id,
                description.version_with_stage(STAGE_CURRENT),
            )
            .await?;
        tracing::info!(secret_id, selector = %key.selector, "rolled back to the previous key");
        self.inspect(secret_id).await
    }
}
