//! Operator actions outside a rotation: inspecting a secret's state, rolling back to the
//! previous key, and aborting an unfinished rotation. Used by the `dkim-rotator` CLI.

use serde::Serialize;

use super::dns_check::check_all_servers;
use super::error::EngineError;
use super::ports::{DkimStatus, DnsTxtLookup, Ports, SecretStore, SigningOrigin};
use super::secret_doc::DkimSecret;
use super::{Engine, VersionLabel};

/// What `abort` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbortReport {
    /// The secret.
    pub secret_id: String,
    /// The version `AWSPENDING` was taken off; `None` when no rotation was unfinished.
    pub version: Option<String>,
    /// The selector that version holds, kept for the next attempt.
    pub selector: Option<String>,
}

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
        let (current, ses) = self.read_current_checked(secret_id).await?;
        let state = ses.combined;
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
        let (current, ses) = self.read_current_checked(secret_id).await?;
        let selector = self
            .roll_back_to_previous(secret_id, &description, &current, &ses, None)
            .await?;
        tracing::info!(secret_id, selector, "rolled back to the previous key");
        self.inspect(secret_id).await
    }

    /// Cancels an unfinished rotation the way that works on AWS: takes `AWSPENDING` off the
    /// version that is not current (`CancelRotateSecret` alone leaves it, and `RotateSecret`
    /// then refuses). The version and its key stay, so a later attempt resumes the same key
    /// (and the record a person may have added for it). Touches neither SES nor DNS.
    pub async fn abort(&self, secret_id: &str) -> Result<AbortReport, EngineError> {
        let description = self.store().describe(secret_id).await?;
        let unfinished = description.unfinished_rotation().map(str::to_owned);
        let Some(version) = unfinished else {
            return Ok(AbortReport {
                secret_id: secret_id.to_owned(),
                version: None,
                selector: None,
            });
        };
        let selector = self
            .read_doc(secret_id, VersionLabel::pending(&version))
            .await
            .ok()
            .flatten()
            .and_then(|doc| doc.key.map(|k| k.selector.to_string()));
        self.store().clear_pending(secret_id, &version).await?;
        tracing::info!(
            secret_id,
            version,
            selector = selector.as_deref(),
            "took AWSPENDING off the unfinished rotation"
        );
        Ok(AbortReport {
            secret_id: secret_id.to_owned(),
            version: Some(version),
            selector,
        })
    }
}
