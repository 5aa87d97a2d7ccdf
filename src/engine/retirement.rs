//! Retiring the previous selector once the grace period after a switch has passed.
//!
//! The previous selector's TXT record stays published for at least `DKIM_OLD_KEY_GRACE_DAYS`
//! after SES switched away from it, so mail signed just before the switch still verifies.
//! After that a run deletes it (Route 53 / RFC 2136), publishes a revoked `p=` instead
//! (`DKIM_RETIRE=revoke`), or tells a person they may remove it (hint mode).
//!
//! The state lives on the secret, as tags, not in memory:
//! - `ses-dkim-rotator:switched-to` / `switched-at`: which selector SES was switched to, when;
//! - `ses-dkim-rotator:retired`: the last selector retired.
//!
//! A guard makes it impossible to retire the selector SES signs with, or the current one.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ports::{
    Clock, DkimSigningService, DnsPublisher, DnsTxtLookup, PublishMode, SecretDescription,
    SecretStore, SesDkimState, TxtRecord,
};
use super::rotation::{RetireMode, RotationEngine, zone_hint};
use super::secret_doc::{DkimSecret, dkim_record_name};
use crate::error::RotatorError;

/// Tag: the selector SES was last switched to.
pub const TAG_SWITCHED_TO: &str = "ses-dkim-rotator:switched-to";
/// Tag: when (RFC 3339).
pub const TAG_SWITCHED_AT: &str = "ses-dkim-rotator:switched-at";
/// Tag: the last selector retired.
pub const TAG_RETIRED: &str = "ses-dkim-rotator:retired";

/// The value a revoked DKIM record carries.
pub const REVOKED_VALUE: &str = "v=DKIM1; k=rsa; p=";

/// What a retirement run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireOutcome {
    /// No previous selector.
    NothingToRetire,
    /// Already retired earlier.
    AlreadyRetired,
    /// The grace period has not passed.
    GracePeriod,
    /// The record was deleted.
    Deleted,
    /// A revoked record (`p=` empty) replaced it.
    Revoked,
    /// Hint mode: a person was told they may remove (or revoke) it.
    RemovalHinted,
}

/// The result of [`RotationEngine::retire_previous`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetireReport {
    /// The secret.
    pub secret_id: String,
    /// What happened.
    pub outcome: RetireOutcome,
    /// The previous selector concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Its record name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// When the grace period ends (RFC 3339), while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<String>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

impl<S, E, D, L, C> RotationEngine<S, E, D, L, C>
where
    S: SecretStore,
    E: DkimSigningService,
    D: DnsPublisher,
    L: DnsTxtLookup,
    C: Clock,
{
    /// Tags the secret with the switch just made; a failure only delays retirement.
    pub(super) async fn record_switch(&self, secret_id: &str, selector: &str) {
        let now = rfc3339(self.clock.now());
        let tags = [(TAG_SWITCHED_TO, selector), (TAG_SWITCHED_AT, now.as_str())];
        if let Err(error) = self.store.set_tags(secret_id, &tags).await {
            tracing::warn!(secret_id, %error, "could not tag the switch time; the grace period will start at the next run");
        }
    }

    /// Retires the previous selector if its grace period has passed.
    pub async fn retire_previous(&self, secret_id: &str) -> Result<RetireReport, RotatorError> {
        let description = self.store.describe(secret_id).await?;
        let (current, ses_state) = self.read_current_checked(secret_id).await?;
        self.retire_with(secret_id, &description, &current, &ses_state)
            .await
    }

    /// [`Self::retire_previous`] on state the caller has already read.
    pub(super) async fn retire_with(
        &self,
        secret_id: &str,
        description: &SecretDescription,
        current: &DkimSecret,
        ses_state: &SesDkimState,
    ) -> Result<RetireReport, RotatorError> {
        let mut report = RetireReport {
            secret_id: secret_id.to_owned(),
            outcome: RetireOutcome::NothingToRetire,
            selector: None,
            dns_name: None,
            grace_until: None,
        };
        let (Some(previous), Some(current_key)) = (&current.previous_selector, &current.key) else {
            return Ok(report);
        };
        let name = dkim_record_name(previous, &current.identity);
        report.selector = Some(previous.to_string());
        report.dns_name = Some(name.clone());
        let tag = |key: &str| description.tags.get(key).map(String::as_str);
        if tag(TAG_RETIRED) == Some(previous.as_str()) {
            report.outcome = RetireOutcome::AlreadyRetired;
            return Ok(report);
        }

        let now = self.clock.now();
        let switched_at = match (tag(TAG_SWITCHED_TO), tag(TAG_SWITCHED_AT)) {
            (Some(to), Some(at)) if to == current_key.selector.as_str() => {
                OffsetDateTime::parse(at, &Rfc3339).ok()
            }
            _ => None,
        };
        let Some(switched_at) = switched_at else {
            // No trustworthy switch time: start the grace period now, never earlier.
            self.record_switch(secret_id, current_key.selector.as_str())
                .await;
            report.outcome = RetireOutcome::GracePeriod;
            report.grace_until = Some(rfc3339(now + self.policy.old_key_grace));
            return Ok(report);
        };
        let until = switched_at + self.policy.old_key_grace;
        if now < until {
            report.outcome = RetireOutcome::GracePeriod;
            report.grace_until = Some(rfc3339(until));
            return Ok(report);
        }

        // The guard: never retire what SES signs with, or the current selector.
        let ses_uses_it = ses_state
            .selectors
            .iter()
            .any(|s| s.eq_ignore_ascii_case(previous.as_str()));
        if previous == &current_key.selector || ses_uses_it {
            return Err(RotatorError::RetireRefused {
                selector: previous.to_string(),
                reason: "SES or AWSCURRENT still uses it".into(),
            });
        }

        let record = TxtRecord {
            identity: current.identity.as_str(),
            name: &name,
            value: REVOKED_VALUE,
            zone_hint: zone_hint(current),
        };
        let publish_failed = |source| RotatorError::DnsPublishFailed {
            secret_id: secret_id.to_owned(),
            name: name.clone(),
            source,
        };
        report.outcome = match (self.dns.mode(), self.policy.retire_mode) {
            (PublishMode::Hint, mode) => {
                tracing::info!(
                    secret_id,
                    dns_name = %name,
                    selector = %previous,
                    action = if mode == RetireMode::Revoke { "replace its value with `v=DKIM1; k=rsa; p=`" } else { "remove it" },
                    "the previous DKIM selector's grace period is over: you may now retire its TXT record"
                );
                RetireOutcome::RemovalHinted
            }
            (_, RetireMode::Delete) => {
                self.dns.delete_txt(record).await.map_err(publish_failed)?;
                RetireOutcome::Deleted
            }
            (_, RetireMode::Revoke) => {
                self.dns
                    .upsert_txt(record, None)
                    .await
                    .map_err(publish_failed)?;
                RetireOutcome::Revoked
            }
        };
        self.store
            .set_tags(secret_id, &[(TAG_RETIRED, previous.as_str())])
            .await?;
        tracing::info!(secret_id, dns_name = %name, outcome = ?report.outcome, "previous DKIM selector retired");
        Ok(report)
    }
}
