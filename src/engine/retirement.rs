//! Retiring the previous selector once the grace period after a switch has passed.
//!
//! The previous selector's TXT record stays published for at least `DKIM_OLD_KEY_GRACE_DAYS`
//! after SES confirmed the selector that replaced it, so mail signed just before the switch still verifies.
//! After that a run deletes it (Route 53 / RFC 2136), publishes a revoked `p=` instead
//! (`DKIM_RETIRE=revoke`), or tells a person they may remove it (hint mode).
//!
//! [`assess`] decides from the secret, its tags and the time alone (pure); [`carry_out`] acts.
//!
//! The state lives on the secret, as tags ([`super::tags`]), not in memory:
//! - `confirmed` / `confirmed-at`: the selector SES verified (`SUCCESS`), and when it was first
//!   seen; the grace period counts from there, never from the switch (real SES may take up to
//!   72 hours to verify, and the previous key must stay published all that time);
//! - `retired`: the last selector retired.
//!
//! A guard makes it impossible to retire the selector SES signs with, the current one, or
//! any previous one while SES has not verified the current selector.

use serde::Serialize;
use time::OffsetDateTime;

use super::error::EngineError;
use super::ports::{
    Deadline, DkimStatus, DnsPublisher, Ports, Publication, SecretStore, SesDkimState, TxtRecord,
};
use super::secret_doc::{DkimSecret, dkim_record_name};
use super::selector::Selector;
use super::tags::{RotatorTags, TAG_PREVIOUS, TAG_SWITCHED_AT, TAG_SWITCHED_TO, TagUpdate};
use super::time_format::{parse_rfc3339, rfc3339};

/// The value a revoked DKIM record carries: `p=` empty (RFC 6376 §3.6.1).
pub const REVOKED_VALUE: &str = "v=DKIM1; k=rsa; p=";

/// What happens to the previous selector's TXT record after the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetireMode {
    /// Delete the record (hint mode: tell a person they may remove it).
    Delete,
    /// Publish [`REVOKED_VALUE`] in its place.
    Revoke,
}

/// The retirement part of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetirementRules {
    /// How long the previous selector stays published after a switch.
    pub grace: time::Duration,
    /// What retiring does.
    pub mode: RetireMode,
}

/// Where the previous selector stands, decided from the secret and its tags alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetireDecision {
    /// No previous selector (or no current key).
    NothingToRetire,
    /// Retired earlier (tag).
    AlreadyRetired {
        /// The previous selector.
        selector: String,
    },
    /// SES has not confirmed the current selector (`SUCCESS`) yet: the grace period has not
    /// started, and the previous record stays.
    AwaitingConfirmation {
        /// The previous selector.
        selector: String,
    },
    /// The current selector is confirmed but the time was not recorded: the grace period
    /// starts now, never earlier.
    StartGrace {
        /// The previous selector.
        selector: String,
        /// The current selector, whose confirmation time is recorded.
        current: String,
    },
    /// The grace period runs.
    GracePeriod {
        /// The previous selector.
        selector: String,
        /// When it ends.
        until: OffsetDateTime,
    },
    /// The grace period is over: retire it.
    Due {
        /// The previous selector.
        selector: String,
    },
}

/// Decides, from the current document, the secret's tags and the time, what retirement
/// would do. Pure: no call is made. The grace period counts from SES's confirmation of the
/// current selector (tags `confirmed`, `confirmed-at`), never from the switch.
pub fn assess(
    current: &DkimSecret,
    tags: &RotatorTags,
    rules: RetirementRules,
    now: OffsetDateTime,
) -> RetireDecision {
    let (Some(previous), Some(current_key)) = (&current.previous_selector, &current.key) else {
        return RetireDecision::NothingToRetire;
    };
    let selector = previous.to_string();
    if tags.retired.as_deref() == Some(previous.as_str()) {
        return RetireDecision::AlreadyRetired { selector };
    }
    if tags.confirmed.as_deref() != Some(current_key.selector.as_str()) {
        return RetireDecision::AwaitingConfirmation { selector };
    }
    let Some(confirmed_at) = tags.confirmed_at else {
        return RetireDecision::StartGrace {
            selector,
            current: current_key.selector.to_string(),
        };
    };
    let until = confirmed_at + rules.grace;
    if now < until {
        RetireDecision::GracePeriod { selector, until }
    } else {
        RetireDecision::Due { selector }
    }
}

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
    /// SES has not confirmed the current selector: the grace period has not started.
    AwaitingConfirmation,
    /// The record was deleted.
    Deleted,
    /// A revoked record (`p=` empty) replaced it.
    Revoked,
    /// Hint mode: a person was told they may remove (or revoke) it.
    RemovalHinted,
}

/// What a retirement run did, for one secret.
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

/// The tags a planner needs that a secret lacks, when SES signs with `current`'s key: written
/// by a worker for secrets rotated before these tags existed (or whose tagging failed), so the
/// planner stops sending them as untracked. `None` when nothing is missing.
pub fn missing_planner_tags(
    current: &DkimSecret,
    tags: &RotatorTags,
    ses_signs_with_current: bool,
    now: OffsetDateTime,
) -> Option<TagUpdate> {
    let key = current.key.as_ref()?;
    let previous = current
        .previous_selector
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let switched_known = tags.switch_to_is_known(key.selector.as_str());
    let mut missing = TagUpdate::default();
    if !switched_known && ses_signs_with_current {
        // The key's own creation time when recorded, else now: a later rotation, never earlier.
        let at = key
            .created_at
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(now);
        missing.push(TAG_SWITCHED_TO, key.selector.to_string());
        missing.push(TAG_SWITCHED_AT, rfc3339(at));
        missing.push(TAG_PREVIOUS, previous);
    } else if switched_known && tags.previous.is_none() {
        missing.push(TAG_PREVIOUS, previous);
    }
    (!missing.is_empty()).then_some(missing)
}

/// Carries out `decision` (from [`assess`]) for `current`: starts the grace clock, or
/// retires the previous selector behind the guard, or reports.
pub(crate) async fn carry_out<P: Ports>(
    ports: &P,
    rules: RetirementRules,
    secret_id: &str,
    decision: RetireDecision,
    current: &DkimSecret,
    ses_state: &SesDkimState,
    now: OffsetDateTime,
) -> Result<RetireReport, EngineError> {
    let mut report = RetireReport {
        secret_id: secret_id.to_owned(),
        outcome: RetireOutcome::NothingToRetire,
        selector: None,
        dns_name: None,
        grace_until: None,
    };
    let (selector, waiting) = match decision {
        RetireDecision::NothingToRetire => return Ok(report),
        RetireDecision::AlreadyRetired { selector } => {
            (selector, Some((RetireOutcome::AlreadyRetired, None)))
        }
        RetireDecision::AwaitingConfirmation { selector } => {
            (selector, Some((RetireOutcome::AwaitingConfirmation, None)))
        }
        RetireDecision::StartGrace { selector, current } => {
            let confirmed = TagUpdate::confirmation(&current, Some(selector.as_str()), now);
            ports
                .secrets()
                .set_tags(secret_id, &confirmed.pairs())
                .await?;
            let until = rfc3339(now + rules.grace);
            (selector, Some((RetireOutcome::GracePeriod, Some(until))))
        }
        RetireDecision::GracePeriod { selector, until } => (
            selector,
            Some((RetireOutcome::GracePeriod, Some(rfc3339(until)))),
        ),
        RetireDecision::Due { selector } => (selector, None),
    };
    let previous = current
        .previous_selector
        .as_ref()
        .filter(|p| p.as_str() == selector)
        .ok_or_else(|| EngineError::RetireRefused {
            selector: selector.clone(),
            reason: "it is not the secret's previous selector".into(),
        })?;
    let name = dkim_record_name(previous, &current.identity);
    report.selector = Some(selector.clone());
    report.dns_name = Some(name.clone());
    if let Some((outcome, grace_until)) = waiting {
        report.outcome = outcome;
        report.grace_until = grace_until;
        return Ok(report);
    }

    guard_retirement(&selector, previous, current, ses_state)?;
    report.outcome = withdraw_record(ports, rules.mode, secret_id, current, &name).await?;
    ports
        .secrets()
        .set_tags(secret_id, &TagUpdate::retired(previous.as_str()).pairs())
        .await?;
    tracing::info!(secret_id, dns_name = %name, outcome = ?report.outcome, "previous DKIM selector retired");
    Ok(report)
}

/// The guard: never retire what SES signs with or the current selector, and never while SES
/// has not verified the current selector (mail would be left with no valid key).
fn guard_retirement(
    selector: &str,
    previous: &Selector,
    current: &DkimSecret,
    ses_state: &SesDkimState,
) -> Result<(), EngineError> {
    let refuse = |reason: String| EngineError::RetireRefused {
        selector: selector.to_owned(),
        reason,
    };
    let ses_uses_it = ses_state
        .selectors
        .iter()
        .any(|s| s.eq_ignore_ascii_case(previous.as_str()));
    let current_key = current.key.as_ref();
    let is_current = current_key.is_some_and(|k| &k.selector == previous);
    if is_current || ses_uses_it {
        return Err(refuse("SES or AWSCURRENT still uses it".into()));
    }
    let current_verified = ses_state.has_status(&DkimStatus::Success)
        && current_key.is_some_and(|k| ses_state.uses_external_selector(k.selector.as_str()));
    if !current_verified {
        return Err(refuse(format!(
            "SES has not verified the current selector ({ses_state}); the previous record stays until it has"
        )));
    }
    Ok(())
}

/// Deletes the previous selector's record `name`, or publishes the revoked value (`p=`) in
/// its place, as `mode` says; a publisher that leaves DNS to a person says so.
async fn withdraw_record<P: Ports>(
    ports: &P,
    mode: RetireMode,
    secret_id: &str,
    current: &DkimSecret,
    name: &str,
) -> Result<RetireOutcome, EngineError> {
    let record = TxtRecord {
        secret_id,
        identity: current.identity.as_str(),
        name,
        value: REVOKED_VALUE,
        secret_fields: &current.extra,
    };
    let dns = ports.dns();
    let (published, done) = match mode {
        RetireMode::Delete => (dns.delete_txt(record).await, RetireOutcome::Deleted),
        RetireMode::Revoke => (
            dns.upsert_txt(record, Deadline::NONE).await,
            RetireOutcome::Revoked,
        ),
    };
    match published {
        Ok(Publication::Written) => Ok(done),
        Ok(Publication::LeftToOperator) => Ok(RetireOutcome::RemovalHinted),
        Err(source) => Err(EngineError::DnsPublishFailed {
            secret_id: secret_id.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-06-01 00:00 UTC);

    fn rotated_doc() -> DkimSecret {
        use crate::engine::key::{DkimKeyPair, KeyBits};
        use crate::engine::secret_doc::PublishedKey;
        use crate::engine::selector::Selector;
        let seed = DkimSecret::parse(r#"{"identity":"example.com"}"#).unwrap();
        let first = seed.rotated(PublishedKey {
            selector: Selector::parse("old").unwrap(),
            key: DkimKeyPair::generate(KeyBits::Rsa1024).unwrap(),
            created_at: None,
        });
        first.rotated(PublishedKey {
            selector: Selector::parse("new").unwrap(),
            key: DkimKeyPair::generate(KeyBits::Rsa1024).unwrap(),
            created_at: Some("2030-05-01T00:00:00Z".into()),
        })
    }

    fn missing(tags: &[(&str, &str)], ses_on_current: bool) -> Option<Vec<(String, String)>> {
        let tags: HashMap<String, String> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        missing_planner_tags(&rotated_doc(), &RotatorTags::of(&tags), ses_on_current, NOW).map(
            |update| {
                update
                    .pairs()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            },
        )
    }

    #[test]
    fn the_planner_tags_a_secret_lacks_are_found() {
        let at = "2030-05-01T00:00:00Z";
        let complete = [
            (TAG_SWITCHED_TO, "new"),
            (TAG_SWITCHED_AT, at),
            (TAG_PREVIOUS, "old"),
        ];
        assert_eq!(missing(&complete, true), None);
        assert_eq!(
            missing(&complete[..2], true),
            Some(vec![(TAG_PREVIOUS.to_owned(), "old".to_owned())]),
            "switched by an older version: only `previous` is added"
        );
        assert_eq!(
            missing(&[], true),
            Some(vec![
                (TAG_SWITCHED_TO.to_owned(), "new".to_owned()),
                (TAG_SWITCHED_AT.to_owned(), at.to_owned()),
                (TAG_PREVIOUS.to_owned(), "old".to_owned()),
            ]),
            "a key switched by hand: its creation time stands for the switch"
        );
        assert_eq!(
            missing(&[], false),
            None,
            "SES does not sign with it: nothing is claimed"
        );
    }
}
