//! `finishSecret`: verifies DNS again, points SES at the new selector in every region, reads
//! SES's answer (rolls back on `FAILED`), tags the switch, and only then moves `AWSCURRENT` and
//! takes `AWSPENDING` off. Safe to retry: when SES already signs with the pending selector the
//! put is skipped, and a label a concurrent invocation moved first counts as moved.

use super::report::{Outcome, StepReport};
use super::request::RotationRequest;
use crate::engine::Engine;
use crate::engine::error::EngineError;
use crate::engine::ports::{
    DkimStatus, FailureKind, PortError, Ports, STAGE_CURRENT, STAGE_PENDING, SecretDescription,
    SecretStore,
};
use crate::engine::tags::{RotatorTags, TagUpdate};

impl<P: Ports> Engine<P> {
    /// `finishSecret` (see the module's documentation).
    pub(crate) async fn finish_secret(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
    ) -> Result<StepReport, EngineError> {
        let (current, ses, pending) = self.current_and_new_pending(request).await?;
        let identity = pending.doc.identity.as_str();
        let selector = pending.key.selector.as_str();
        let tags = RotatorTags::of(&description.tags);

        let mut dns_check = None;
        let outcome = if ses.combined.uses_external_selector(selector) {
            Outcome::SesAlreadySwitched
        } else {
            if tags.is_rejected(selector) {
                return Err(EngineError::SelectorRejected {
                    secret_id: request.secret_id.clone(),
                    selector: selector.to_owned(),
                });
            }
            self.check_signing_consent(&current, &ses)?;
            // Never point SES at a selector DNS does not serve.
            dns_check = self.verify_published(request, &pending).await?;
            // Easy DKIM (or a DEED replica of it) in any region is what the identity leaves.
            if let Some(origin) = ses.easy_dkim_origin() {
                let adopted = TagUpdate::adopted_from(origin.as_str());
                self.store()
                    .set_tags(&request.secret_id, &adopted.pairs())
                    .await?;
            }
            self.sign_in_every_region(&pending.doc, &ses, selector, pending.key.key.private_key())
                .await?;
            tracing::info!(
                secret_id = %request.secret_id,
                identity,
                selector,
                regions = ses.by_region.len(),
                "SES now signs with the new external key"
            );
            Outcome::SesSwitched
        };
        let after = self.ses_view(&pending.doc).await?;
        if after.combined.has_status(&DkimStatus::Failed) {
            return Err(self
                .roll_back_failed_switch(
                    &request.secret_id,
                    &tags,
                    &current,
                    selector,
                    &pending.key.dns_name(&pending.doc.identity),
                    &after,
                )
                .await);
        }
        // The switch time is tagged before AWSCURRENT moves, so a retried step (which finds
        // the token not yet current) records it again; the grace period never starts early.
        let previous = pending.doc.previous_selector.as_ref().map(|s| s.as_str());
        let switch = TagUpdate::switch(selector, previous, self.now()).screened_as(
            pending.doc.identity.as_str(),
            pending.doc.ses_regions() == [None],
        );
        self.store()
            .set_tags(&request.secret_id, &switch.pairs())
            .await?;
        let promoted = self
            .store()
            .promote(
                &request.secret_id,
                &request.token,
                description.version_with_stage(STAGE_CURRENT),
            )
            .await;
        self.unless_done_by_another(request, promoted, STAGE_CURRENT, true)
            .await?;
        let cleared = self
            .store()
            .clear_pending(&request.secret_id, &request.token)
            .await;
        self.unless_done_by_another(request, cleared, STAGE_PENDING, false)
            .await?;
        tracing::info!(
            secret_id = %request.secret_id,
            identity,
            selector,
            ses = %after.combined,
            "rotation finished: new key is AWSCURRENT"
        );
        let mut report = StepReport::new(request, outcome)
            .with_pending(&pending.doc, &pending.key)
            .with_ses(&after.combined);
        report.dns_check = dns_check;
        Ok(report)
    }

    /// A label move that Secrets Manager refused because a concurrent invocation of the same
    /// step made it first (the label already sits where this one wanted it, `on_token`, or is
    /// already gone from the token, `!on_token`) is a success; any other failure is not.
    async fn unless_done_by_another(
        &self,
        request: &RotationRequest,
        moved: Result<(), PortError>,
        stage: &str,
        on_token: bool,
    ) -> Result<(), EngineError> {
        let Err(error) = moved else {
            return Ok(());
        };
        if error.kind != FailureKind::InvalidRequest {
            return Err(error.into());
        }
        let now = self.store().describe(&request.secret_id).await?;
        let has = now
            .versions
            .get(&request.token)
            .is_some_and(|stages| stages.iter().any(|s| s == stage));
        if has == on_token {
            tracing::info!(
                secret_id = %request.secret_id,
                stage,
                "a concurrent finishSecret moved the label first"
            );
            Ok(())
        } else {
            Err(error.into())
        }
    }
}
