//! The reads and checks the rotation steps share: the token's pending key, the checked
//! `AWSCURRENT` beside it, and the rules that bind them (same identity, a new key and
//! selector, Easy DKIM consent).

use super::request::RotationRequest;
use crate::engine::error::{ABANDON_ROTATION, EngineError};
use crate::engine::ports::Ports;
use crate::engine::regions::{SesView, SwitchObstacle};
use crate::engine::secret_doc::{DkimSecret, PublishedKey};
use crate::engine::{Engine, VersionLabel};

/// The pending version of a rotation, parsed, with its key.
#[derive(Clone)]
pub(crate) struct PendingKey {
    /// The whole pending document.
    pub(crate) doc: DkimSecret,
    /// Its key (a pending version always holds one).
    pub(crate) key: PublishedKey,
}

impl<P: Ports> Engine<P> {
    /// Reads and parses the `AWSPENDING` value of `version`; `None` when it has no value.
    pub(crate) async fn read_pending_version(
        &self,
        secret_id: &str,
        version: &str,
    ) -> Result<Option<PendingKey>, EngineError> {
        let conflict = |reason: String| EngineError::PendingConflict {
            secret_id: secret_id.to_owned(),
            reason: format!("AWSPENDING version {version} {reason}; {ABANDON_ROTATION}"),
        };
        let doc = match self
            .read_doc(secret_id, VersionLabel::pending(version))
            .await
        {
            Ok(Some(doc)) => doc,
            Ok(None) => return Ok(None),
            Err(EngineError::CorruptSecret { reason, .. }) => {
                return Err(conflict(format!("is not a valid DKIM secret ({reason})")));
            }
            Err(other) => return Err(other),
        };
        let key = doc
            .key
            .clone()
            .ok_or_else(|| conflict("holds no key".into()))?;
        Ok(Some(PendingKey { doc, key }))
    }

    /// The request's pending key; `None` when its version has no value.
    pub(crate) async fn read_pending(
        &self,
        request: &RotationRequest,
    ) -> Result<Option<PendingKey>, EngineError> {
        self.read_pending_version(&request.secret_id, &request.token)
            .await
    }

    /// The request's pending key; no value is an error.
    pub(crate) async fn require_pending(
        &self,
        request: &RotationRequest,
    ) -> Result<PendingKey, EngineError> {
        self.read_pending(request)
            .await?
            .ok_or_else(|| EngineError::PendingMissing {
                secret_id: request.secret_id.clone(),
                token: request.token.clone(),
            })
    }

    /// The checked `AWSCURRENT`, SES's view of it, and the token's pending key, which must be
    /// for the same identity and hold a new key and selector.
    pub(crate) async fn current_and_new_pending(
        &self,
        request: &RotationRequest,
    ) -> Result<(DkimSecret, SesView, PendingKey), EngineError> {
        let (current, ses) = self.read_current_checked(&request.secret_id).await?;
        let pending = self.require_pending(request).await?;
        check_same_identity(request, &current, &pending)?;
        check_pending_is_new(request, &current, &pending)?;
        Ok((current, ses, pending))
    }

    /// Refuses to switch an identity whose present signing stands in the way
    /// ([`SesView::obstacle_to_switch`]): signing turned off or an origin this build does not
    /// know always; Easy DKIM (or a DEED replica of it) unless the policy allows adopting it,
    /// since while BYODKIM is pending after such a switch, SES may send mail unsigned.
    pub(crate) fn check_signing_consent(
        &self,
        current: &DkimSecret,
        ses: &SesView,
    ) -> Result<(), EngineError> {
        let Some(obstacle) = ses.obstacle_to_switch() else {
            return Ok(());
        };
        if obstacle.consent_suffices() && self.policy().adopt_easy_dkim {
            return Ok(());
        }
        let identity = current.identity.to_string();
        Err(match obstacle {
            SwitchObstacle::EasyDkim { .. } => EngineError::EasyDkimInUse { identity },
            SwitchObstacle::EasyDkimReplica {
                region,
                origin,
                parent_region,
            } => EngineError::EasyDkimReplicaInUse {
                identity,
                region,
                origin,
                parent_region,
            },
            SwitchObstacle::UnknownOrigin { region, origin } => EngineError::UnknownSigningOrigin {
                identity,
                region,
                origin,
            },
            SwitchObstacle::SigningDisabled { region } => {
                EngineError::SigningDisabled { identity, region }
            }
        })
    }
}

/// The pending key must be for the identity `AWSCURRENT` names.
pub(crate) fn check_same_identity(
    request: &RotationRequest,
    current: &DkimSecret,
    pending: &PendingKey,
) -> Result<(), EngineError> {
    if current.identity != pending.doc.identity {
        return Err(EngineError::IdentityMismatch {
            secret_id: request.secret_id.clone(),
            current: current.identity.to_string(),
            pending: pending.doc.identity.to_string(),
        });
    }
    Ok(())
}

/// The pending key must be neither the current key nor under the current selector.
pub(crate) fn check_pending_is_new(
    request: &RotationRequest,
    current: &DkimSecret,
    pending: &PendingKey,
) -> Result<(), EngineError> {
    if let Some(current_key) = &current.key
        && (current_key.selector == pending.key.selector
            || current_key.key.public_key() == pending.key.key.public_key())
    {
        return Err(EngineError::PendingConflict {
            secret_id: request.secret_id.clone(),
            reason: format!(
                "AWSPENDING version {} holds the current key or selector, not a new one; {ABANDON_ROTATION}",
                request.token
            ),
        });
    }
    Ok(())
}
