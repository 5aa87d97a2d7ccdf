//! `createSecret`: a new key and selector stored as `AWSPENDING` (or an unfinished attempt's
//! key resumed), after the identity guards and Easy DKIM consent.
//!
//! Safe to retry: a pending key already stored for the token is reused, and a concurrent put
//! that loses re-reads the winner's key. It also gives retirement a last chance (best effort)
//! for the selector the secret is about to forget.

use super::reads::{PendingKey, check_pending_is_new, check_same_identity};
use super::report::{Outcome, StepReport};
use super::request::RotationRequest;
use crate::engine::error::EngineError;
use crate::engine::key::DkimKeyPair;
use crate::engine::ports::{
    FailureKind, Ports, STAGE_CURRENT, STAGE_PENDING, STAGE_PREVIOUS, SecretDescription,
    SecretStore,
};
use crate::engine::regions::SesView;
use crate::engine::retirement::{self, RetireOutcome};
use crate::engine::secret_doc::{DkimSecret, PublishedKey};
use crate::engine::selector::Selector;
use crate::engine::tags::{RotatorTags, TagUpdate};
use crate::engine::time_format::rfc3339;
use crate::engine::{Engine, VersionLabel};

impl<P: Ports> Engine<P> {
    /// `createSecret` (see the module's documentation).
    pub(crate) async fn create_secret(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
    ) -> Result<StepReport, EngineError> {
        let (current, ses) = self.read_current_checked(&request.secret_id).await?;
        self.check_signing_consent(&current, &ses)?;
        // A token the description does not list (a scheduled run's own) has no value to read.
        let stored = if description.versions.contains_key(&request.token) {
            self.read_pending(request).await?
        } else {
            None
        };
        if let Some(pending) = stored {
            check_same_identity(request, &current, &pending)?;
            check_pending_is_new(request, &current, &pending)?;
            return Ok(StepReport::new(request, Outcome::KeyAlreadyCreated)
                .with_pending(&pending.doc, &pending.key));
        }

        self.retire_before_forgetting(request, description, &current, &ses)
            .await;
        let leftover = self.leftover_key(request, description, &current).await?;
        let (published, outcome) = match &leftover {
            Some((_, key)) => (key.clone(), Outcome::KeyResumed),
            None => (self.new_key(&current, &ses)?, Outcome::KeyCreated),
        };
        let next = current.rotated(published.clone());

        // The mark that this version is the rotator's own attempt, before the key exists: a
        // later rotation resumes only the version it names (see `TAG_ATTEMPT`).
        self.store()
            .set_tags(
                &request.secret_id,
                &TagUpdate::attempt(&request.token).pairs(),
            )
            .await?;
        let put = self
            .store()
            .put_pending(
                &request.secret_id,
                &request.token,
                &next.to_secret_string(),
                request.rotation_token.as_ref(),
            )
            .await;
        match put {
            Ok(()) => {}
            // A concurrent invocation stored this token's version first: use its key.
            Err(e) if e.kind == FailureKind::Conflict => {
                let pending = self.read_pending(request).await?.ok_or(e)?;
                check_same_identity(request, &current, &pending)?;
                return Ok(StepReport::new(request, Outcome::KeyAlreadyCreated)
                    .with_pending(&pending.doc, &pending.key));
            }
            Err(e) => return Err(e.into()),
        }
        // Should the earlier attempt still carry AWSPENDING, it would block the next
        // RotateSecret: its key lives on in this version now.
        if let Some((version, _)) = &leftover
            && description
                .versions
                .get(version)
                .is_some_and(|stages| stages.iter().any(|s| s == STAGE_PENDING))
        {
            self.store()
                .clear_pending(&request.secret_id, version)
                .await?;
        }
        tracing::info!(
            secret_id = %request.secret_id,
            identity = %next.identity,
            selector = %published.selector,
            key_bits = published.key.bits().bits(),
            resumed_from = leftover.as_ref().map(|(v, _)| v.as_str()),
            "stored DKIM key as AWSPENDING"
        );
        Ok(StepReport::new(request, outcome).with_pending(&next, &published))
    }

    /// Last chance to retire the selector before the current one: after this rotation the
    /// secret no longer names it. Best effort: a failure here must not stop the rotation.
    async fn retire_before_forgetting(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
        current: &DkimSecret,
        ses: &SesView,
    ) {
        let tags = RotatorTags::of(&description.tags);
        let decision = retirement::assess(current, &tags, self.policy().retirement(), self.now());
        let retired = retirement::carry_out(
            self.ports(),
            self.policy().retirement(),
            &request.secret_id,
            decision,
            current,
            &ses.combined,
            self.now(),
        )
        .await;
        match retired {
            Ok(report) if report.outcome == RetireOutcome::GracePeriod => tracing::warn!(
                secret_id = %request.secret_id,
                selector = report.selector.as_deref(),
                grace_until = report.grace_until.as_deref(),
                "rotating again inside the previous selector's grace period: its record stays published and must be removed by hand later"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(
                secret_id = %request.secret_id,
                %error,
                "could not retire the previous selector; rotating anyway"
            ),
        }
    }

    /// A fresh key and a selector that is neither the current, the previous nor SES's.
    fn new_key(&self, current: &DkimSecret, ses: &SesView) -> Result<PublishedKey, EngineError> {
        let now = self.now();
        let taken: Vec<Selector> = current
            .key
            .iter()
            .map(|k| k.selector.clone())
            .chain(current.previous_selector.clone())
            .chain(
                ses.by_region
                    .iter()
                    .flat_map(|r| &r.state.selectors)
                    .filter_map(|s| Selector::parse(s).ok()),
            )
            .collect();
        let taken_refs: Vec<&Selector> = taken.iter().collect();
        let selector = Selector::generate(
            &self.policy().selector_prefix,
            now.date(),
            &taken_refs,
            rand::random::<u16>,
        );
        Ok(PublishedKey {
            selector,
            key: DkimKeyPair::generate(self.policy().key_bits)?,
            created_at: Some(rfc3339(now)),
        })
    }

    /// A key an earlier, unfinished attempt handed out, if usable: the version the
    /// `attempt` tag names (the rotator's own, see `TAG_ATTEMPT`), when it is newer than the
    /// current key, neither current nor previous, and holds a key for the same identity and
    /// size. The record a person may already have added for it must stay the one used. Any
    /// other version, whoever wrote it, is passed by.
    async fn leftover_key(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
        current: &DkimSecret,
    ) -> Result<Option<(String, PublishedKey)>, EngineError> {
        let tags = RotatorTags::of(&description.tags);
        let labelled_out = |id: &str| {
            description.versions.get(id).is_some_and(|stages| {
                stages
                    .iter()
                    .any(|s| s == STAGE_CURRENT || s == STAGE_PREVIOUS)
            })
        };
        // Only the rotator's own last attempt can be resumed, and only while it is unfinished:
        // with none (the common case) the versions are not even listed.
        let Some(attempt) = tags
            .attempt
            .as_deref()
            .filter(|v| *v != request.token && !labelled_out(v))
        else {
            return Ok(None);
        };
        let versions = self.store().list_versions(&request.secret_id).await?;
        let created = |id: Option<&str>| {
            versions
                .iter()
                .find(|v| Some(v.version_id.as_str()) == id)
                .map(|v| v.created)
        };
        // Only a version made after the current one can be an unfinished attempt.
        let newer = match (
            created(Some(attempt)),
            created(description.version_with_stage(STAGE_CURRENT)),
        ) {
            (None, _) => false,
            (Some(Some(made)), Some(Some(current))) => made >= current,
            (Some(_), _) => true,
        };
        if !newer {
            return Ok(None);
        }
        // An unreadable version is not a resumable attempt: pass it by.
        let Ok(Some(doc)) = self
            .read_doc(&request.secret_id, VersionLabel::id(attempt))
            .await
        else {
            return Ok(None);
        };
        let Some(key) = doc.key.clone() else {
            return Ok(None);
        };
        let pending = PendingKey { doc, key };
        let usable = pending.doc.identity == current.identity
            && pending.key.key.bits() == self.policy().key_bits
            && !tags.is_rejected(pending.key.selector.as_str())
            && check_pending_is_new(request, current, &pending).is_ok();
        Ok(usable.then(|| (attempt.to_owned(), pending.key)))
    }
}
