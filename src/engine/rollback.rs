//! Putting a previous key back in SES: the one way every rollback happens (the watcher's
//! after SES said `FAILED`, `finishSecret`'s, and the operator's `dkim-rotator rollback`).
//!
//! A key goes back only after DNS is checked, at that moment, to serve its record: SES is
//! never pointed at a selector whose record is gone. A selector SES rejected is tagged
//! ([`super::tags::TAG_REJECTED`]) and never put again.
//!
//! Every rollback lives here, and every one is called "roll back":
//! - `roll_back_ses`: the one primitive, SES back to an earlier key after DNS is
//!   checked to serve its record; nothing else moves;
//! - `roll_back_to_previous`: `AWSPREVIOUS` back into SES and into `AWSCURRENT`
//!   (the operator's `dkim-rotator rollback`, through [`Engine::rollback`]);
//! - `roll_back_rejected`: the watcher's, after SES said `FAILED` for a selector it
//!   had been verifying: `roll_back_to_previous`, then the selector tagged rejected;
//! - `roll_back_failed_switch`: `finishSecret`'s, when SES said `FAILED` at once:
//!   the selector tagged rejected first, then `roll_back_ses` to `AWSCURRENT`'s key
//!   (`AWSCURRENT` never moved).

use super::dns_check::check_all_servers;
use super::error::{EngineError, Rollback};
use super::ports::{
    DnsTxtLookup, Ports, STAGE_CURRENT, STAGE_PREVIOUS, SecretDescription, SecretStore,
    SigningOrigin,
};
use super::regions::SesView;
use super::secret_doc::{DkimSecret, DnsRecord, PublishedKey};
use super::tags::{RotatorTags, TagUpdate};
use super::{Engine, VersionLabel};

impl<P: Ports> Engine<P> {
    /// Checks in DNS that `doc`'s record is served, then points SES at its key in every region
    /// of `ses` that does not sign with it. Returns the selector SES signs with now.
    pub(crate) async fn roll_back_ses(
        &self,
        secret_id: &str,
        doc: &DkimSecret,
        ses: &SesView,
    ) -> Result<String, EngineError> {
        let key = self.check_rollback_record(secret_id, doc).await?;
        self.sign_again(secret_id, doc, ses, key).await
    }

    /// `key` (of `doc`, its record checked) back into SES in every region; its selector.
    async fn sign_again(
        &self,
        secret_id: &str,
        doc: &DkimSecret,
        ses: &SesView,
        key: &PublishedKey,
    ) -> Result<String, EngineError> {
        self.sign_in_every_region(doc, ses, key.selector.as_str(), key.key.private_key())
            .await?;
        tracing::info!(secret_id, selector = %key.selector, "SES signs with the previous key again");
        Ok(key.selector.to_string())
    }

    /// The key of `doc`, when DNS serves its record (what a rollback to it needs first).
    async fn check_rollback_record<'a>(
        &self,
        secret_id: &str,
        doc: &'a DkimSecret,
    ) -> Result<&'a PublishedKey, EngineError> {
        let key = doc
            .key
            .as_ref()
            .ok_or_else(|| EngineError::RollbackRefused {
                secret_id: secret_id.to_owned(),
                reason: "the version to go back to holds no key".into(),
            })?;
        let record = DnsRecord::for_key(&doc.identity, key);
        let answers = self
            .ports()
            .lookup()
            .lookup_txt(doc.identity.as_str(), &record.name)
            .await;
        let check = check_all_servers(&answers, key.key.public_key());
        if !check.is_published() {
            return Err(EngineError::RollbackRefused {
                secret_id: secret_id.to_owned(),
                reason: format!(
                    "DNS does not serve the record of selector {} ({}): {}",
                    key.selector,
                    check.kind(),
                    check.explain(&record.name, &record.presentation)
                ),
            });
        }
        Ok(key)
    }

    /// `AWSPREVIOUS` back into SES and into `AWSCURRENT` (after [`Self::roll_back_ses`]'s DNS
    /// check). Returns the selector SES signs with now.
    pub(crate) async fn roll_back_to_previous(
        &self,
        secret_id: &str,
        description: &SecretDescription,
        current: &DkimSecret,
        ses: &SesView,
        rejected: Option<&str>,
    ) -> Result<String, EngineError> {
        let tags = RotatorTags::of(&description.tags);
        let refuse = |reason: String| EngineError::RollbackRefused {
            secret_id: secret_id.to_owned(),
            reason,
        };
        let no_previous_key = |what: &str| {
            let mut reason = format!("{what}: there is no earlier BYODKIM key to go back to");
            match tags.adopted_from.as_deref().map(SigningOrigin::parse) {
                Some(SigningOrigin::AwsSes) => reason.push_str(&format!(
                    ". This identity signed with Easy DKIM before: to go back to it, check that its three CNAME records still resolve, then run aws sesv2 put-email-identity-dkim-signing-attributes --email-identity {} --signing-attributes-origin AWS_SES",
                    current.identity
                )),
                Some(replica @ SigningOrigin::EasyDkimReplica(_)) => reason.push_str(&format!(
                    ". This identity replicated Easy DKIM from its parent identity in {} before (Deterministic Easy DKIM): to go back to it, check that the parent's three CNAME records still resolve, then run aws sesv2 put-email-identity-dkim-signing-attributes --email-identity {} --signing-attributes-origin {} in the replica's region",
                    replica.replica_parent_region().unwrap_or_default(),
                    current.identity,
                    replica.as_str()
                )),
                _ => {}
            }
            reason.push_str("; or fix the current selector's TXT record and rotate again");
            refuse(reason)
        };
        let previous_id = description
            .version_with_stage(STAGE_PREVIOUS)
            .ok_or_else(|| no_previous_key("there is no AWSPREVIOUS version"))?
            .to_owned();
        let previous = self
            .read_doc(secret_id, VersionLabel::PREVIOUS)
            .await?
            .ok_or_else(|| no_previous_key("the AWSPREVIOUS version has no value"))?;
        let Some(key) = &previous.key else {
            return Err(no_previous_key(
                "AWSPREVIOUS holds no key (never rotated before)",
            ));
        };
        if previous.identity != current.identity {
            return Err(refuse(format!(
                "AWSCURRENT is for `{}` but AWSPREVIOUS is for `{}`; roll back by hand, or rotate",
                current.identity, previous.identity
            )));
        }
        if tags.is_rejected(key.selector.as_str()) {
            return Err(refuse(format!(
                "SES rejected the AWSPREVIOUS selector {} before; rotate again for a fresh key",
                key.selector
            )));
        }
        let key = self.check_rollback_record(secret_id, &previous).await?;
        // SES's rejection is recorded before anything moves: a crash from here on leaves
        // AWSCURRENT on a rejected selector, which the next run rolls back again (finishing
        // this one) whatever SES says of it by then.
        if let Some(rejected) = rejected {
            self.mark_rejected(secret_id, &tags, rejected).await?;
        }
        let selector = self.sign_again(secret_id, &previous, ses, key).await?;
        // Tagged before AWSCURRENT moves (as a switch is): a crash in between leaves tags a
        // retry writes again.
        let rolled_back = TagUpdate::rollback(
            &selector,
            previous.previous_selector.as_ref().map(|s| s.as_str()),
            self.now(),
        );
        self.store()
            .set_tags(secret_id, &rolled_back.pairs())
            .await?;
        self.store()
            .promote(
                secret_id,
                &previous_id,
                description.version_with_stage(STAGE_CURRENT),
            )
            .await?;
        Ok(selector)
    }

    /// The watcher's rollback after SES said `FAILED` for `rejected`: once DNS is checked to
    /// serve the previous record, `rejected` is tagged (never put again, and the mark a
    /// crashed rollback is finished by), then the previous key goes back into SES and
    /// `AWSCURRENT`. When the previous record is gone it refuses, changing nothing.
    pub(crate) async fn roll_back_rejected(
        &self,
        secret_id: &str,
        description: &SecretDescription,
        current: &DkimSecret,
        ses: &SesView,
        rejected: &str,
    ) -> Result<String, EngineError> {
        self.roll_back_to_previous(secret_id, description, current, ses, Some(rejected))
            .await
    }

    /// SES said `FAILED` for the new key right after the switch: put the previous key back
    /// (after checking DNS serves its record), tag the new selector rejected so a retried step
    /// never puts it again, and leave `AWSCURRENT` where it was.
    pub(crate) async fn roll_back_failed_switch(
        &self,
        secret_id: &str,
        tags: &RotatorTags,
        current: &DkimSecret,
        rejected: &str,
        rejected_record: &str,
        ses: &SesView,
    ) -> EngineError {
        let identity = current.identity.as_str();
        let marked = self.mark_rejected(secret_id, tags, rejected).await;
        let (rollback, action) = match (&current.key, marked) {
            (_, Err(error)) => (
                Rollback::Failed {
                    reason: error.to_string(),
                },
                format!("could not tag selector {rejected} rejected ({error}); nothing was rolled back, run `dkim-rotator rollback` after checking the previous record"),
            ),
            (None, Ok(())) => (
                Rollback::NoPreviousKey,
                "there is no previous BYODKIM key to roll back to; AWSCURRENT is unchanged. Check the TXT record, then rotate again".to_owned(),
            ),
            (Some(_), Ok(())) => match self.roll_back_ses(secret_id, current, ses).await {
                Ok(selector) => (
                    Rollback::Done {
                        selector: selector.clone(),
                    },
                    format!(
                        "rolled back to selector {selector}; AWSCURRENT is unchanged. Check that {rejected_record} serves the new TXT record, then rotate again"
                    ),
                ),
                Err(error) => (
                    Rollback::Failed {
                        reason: error.to_string(),
                    },
                    format!("rolling back FAILED too ({error}); put the AWSCURRENT key back by hand with `dkim-rotator rollback` once its record resolves"),
                ),
            },
        };
        tracing::error!(identity, selector = rejected, %action, "SES rejected the new DKIM key");
        EngineError::SesRejectedKey {
            identity: identity.to_owned(),
            selector: rejected.to_owned(),
            rollback,
            action,
        }
    }

    /// Tags `selector` as rejected by SES: no retry or later run ever puts it again.
    pub(crate) async fn mark_rejected(
        &self,
        secret_id: &str,
        tags: &RotatorTags,
        selector: &str,
    ) -> Result<(), EngineError> {
        let rejected = TagUpdate::rejected(tags, selector);
        self.store().set_tags(secret_id, &rejected.pairs()).await?;
        Ok(())
    }
}
