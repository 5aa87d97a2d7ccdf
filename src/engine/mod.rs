//! The rotation engine: pure Rust, no AWS SDK types, over one [`Ports`] bundle.
//!
//! Values with rules, no I/O:
//! - [`key`]: RSA key generation and the encodings SES and DNS want.
//! - [`selector`]: DKIM selector names SES accepts.
//! - [`identity`]: domain identities and the allow-list that guards against a confused deputy.
//! - [`secret_doc`]: the JSON document kept in each Secrets Manager version, and its DNS record.
//! - [`dns_check`]: judging a DKIM TXT record as DNS serves it.
//! - [`quoting`]: how error messages quote a refused value (briefly).
//! - [`time_format`]: the one way times are written and read (RFC 3339).
//! - [`tags`]: the tags kept on each secret (the rotator's memory between runs), typed.
//! - [`regions`]: SES across the regions of one identity, and the rules of a switch there.
//! - [`spread`]: a fleet's due dates and health-check days, spread by a stable hash.
//!
//! The engine, over the ports (arrows point down this list only):
//! - [`ports`]: the traits through which the engine reaches Secrets Manager, SES, DNS and the
//!   clock, bundled as [`Ports`]; SES's status and origin as enums; [`Deadline`].
//! - [`read_cache`]: a decorator over the ports that answers a scheduled run's repeated reads.
//! - [`error`]: [`EngineError`], which knows nothing of Lambda.
//! - [`retirement`]: the previous selector's grace period and its removal (owns its mode
//!   and the guard).
//! - this module: [`Engine`], its [`RotationPolicy`] and the one way to read a version.
//! - [`rollback`]: putting a previous key back (after a DNS check), for every kind of rollback.
//! - [`rotation`]: the four Secrets Manager rotation steps, one file each.
//! - [`plan`]: the scheduled run's rules as a pure function of facts and time.
//! - [`triage`]: the queue planner's rules, from a `ListSecrets` entry alone.
//! - [`schedule`]: carries a plan out, for one secret and for a fleet.
//! - [`operations`]: inspecting a secret and rolling back, for the CLI.
//!
//! The whole module map, with the layers, is in `docs/ARCHITECTURE.md`.

pub mod dns_check;
pub mod error;
pub mod identity;
pub mod key;
pub mod operations;
pub mod pacing;
pub mod plan;
pub mod ports;
pub mod quoting;
pub mod read_cache;
pub mod regions;
pub mod retirement;
pub mod rollback;
pub mod rotation;
pub mod schedule;
pub mod secret_doc;
pub mod selector;
pub mod spread;
pub mod tags;
pub mod time_format;
pub mod triage;

use std::sync::Arc;
use std::time::Duration;

use self::error::EngineError;
use self::identity::AllowedIdentities;
use self::key::KeyBits;
use self::ports::{
    Clock, Deadline, DkimSigningService, Ports, STAGE_CURRENT, STAGE_PENDING, STAGE_PREVIOUS,
    SecretStore, VersionRef,
};
use self::regions::{RegionState, SesView};
use self::retirement::{RetireMode, RetirementRules};
use self::secret_doc::DkimSecret;
use self::selector::SelectorPrefix;
use crate::secret_text::SecretText;

/// What the engine needs to know from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Size of new keys (`DKIM_KEY_BITS`).
    pub key_bits: KeyBits,
    /// Start of new selectors (`DKIM_SELECTOR_PREFIX`).
    pub selector_prefix: SelectorPrefix,
    /// Identities this deployment may rotate (`DKIM_ALLOWED_IDENTITIES`).
    pub allowed_identities: AllowedIdentities,
    /// Check DNS before switching SES (`DKIM_VERIFY_DNS`, default on).
    pub verify_dns: bool,
    /// Pause between DNS verification attempts within one step.
    pub verify_retry_interval: Duration,
    /// Time kept free before the invocation deadline (for the calls after verification).
    pub deadline_margin: Duration,
    /// How long the previous selector stays published after a switch (`DKIM_OLD_KEY_GRACE_DAYS`).
    pub old_key_grace: time::Duration,
    /// What retiring the previous selector does (`DKIM_RETIRE`).
    pub retire_mode: RetireMode,
    /// Switch an identity that signs with Easy DKIM to BYODKIM (`DKIM_ADOPT_EASY_DKIM`).
    pub adopt_easy_dkim: bool,
    /// How long SES may say `PENDING` before a run raises an alert (`DKIM_PENDING_ALERT_HOURS`).
    pub pending_alert: time::Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            key_bits: KeyBits::Rsa1024,
            selector_prefix: SelectorPrefix::default(),
            allowed_identities: AllowedIdentities::Unset,
            verify_dns: true,
            verify_retry_interval: Duration::from_secs(5),
            deadline_margin: Duration::from_secs(10),
            old_key_grace: time::Duration::days(7),
            retire_mode: RetireMode::Delete,
            adopt_easy_dkim: false,
            pending_alert: time::Duration::hours(24),
        }
    }
}

impl RotationPolicy {
    /// The part of the policy retirement needs.
    pub fn retirement(&self) -> RetirementRules {
        RetirementRules {
            grace: self.old_key_grace,
            mode: self.retire_mode,
        }
    }
}

/// Drives rotations, scheduled runs and operator actions through the ports.
#[derive(Debug, Clone)]
pub struct Engine<P> {
    ports: P,
    policy: Arc<RotationPolicy>,
}

/// Which version [`Engine::read_doc`] reads, and how errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionLabel<'a> {
    version: VersionRef<'a>,
    label: &'static str,
}

impl<'a> VersionLabel<'a> {
    /// `AWSCURRENT`.
    pub(crate) const CURRENT: Self = Self {
        version: VersionRef::Current,
        label: STAGE_CURRENT,
    };
    /// `AWSPREVIOUS`.
    pub(crate) const PREVIOUS: Self = Self {
        version: VersionRef::Previous,
        label: STAGE_PREVIOUS,
    };

    /// The `AWSPENDING` value of version `id`.
    pub(crate) fn pending(id: &'a str) -> Self {
        Self {
            version: VersionRef::Pending(id),
            label: STAGE_PENDING,
        }
    }

    /// Version `id`, whatever its labels.
    pub(crate) fn id(id: &'a str) -> Self {
        Self {
            version: VersionRef::Id(id),
            label: "unlabelled",
        }
    }
}

impl<P: Ports> Engine<P> {
    /// An engine over the given ports and policy.
    pub fn new(ports: P, policy: RotationPolicy) -> Self {
        Self {
            ports,
            policy: Arc::new(policy),
        }
    }

    /// The same policy over other ports (e.g. [`read_cache::CachedPorts`] around these).
    pub fn over<Q: Ports>(&self, ports: Q) -> Engine<Q> {
        Engine {
            ports,
            policy: Arc::clone(&self.policy),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// The ports.
    pub fn ports(&self) -> &P {
        &self.ports
    }

    pub(crate) fn store(&self) -> &P::Secrets {
        self.ports.secrets()
    }

    pub(crate) fn ses(&self) -> &P::Ses {
        self.ports.ses()
    }

    pub(crate) fn now(&self) -> time::OffsetDateTime {
        self.ports.clock().now()
    }

    /// The one way a version is read and parsed: `Ok(None)` when it has no value.
    pub(crate) async fn read_doc(
        &self,
        secret_id: &str,
        which: VersionLabel<'_>,
    ) -> Result<Option<DkimSecret>, EngineError> {
        let Some(stored) = self.store().read(secret_id, which.version).await? else {
            return Ok(None);
        };
        DkimSecret::parse(stored.secret_string.expose())
            .map(Some)
            .map_err(|reason| EngineError::CorruptSecret {
                secret_id: secret_id.to_owned(),
                version: which.label,
                reason,
            })
    }

    /// The `AWSCURRENT` document; an error when there is none.
    pub(crate) async fn read_current(&self, secret_id: &str) -> Result<DkimSecret, EngineError> {
        self.read_doc(secret_id, VersionLabel::CURRENT)
            .await?
            .ok_or_else(|| EngineError::NoCurrentVersion {
                secret_id: secret_id.to_owned(),
            })
    }

    /// Reads the current version and applies the identity guards shared by every action:
    /// the identity is allowed, and SES has it (in each of its regions).
    pub(crate) async fn read_current_checked(
        &self,
        secret_id: &str,
    ) -> Result<(DkimSecret, SesView), EngineError> {
        let current = self.read_current(secret_id).await?;
        self.policy
            .allowed_identities
            .check(&current.identity)
            .map_err(EngineError::IdentityNotAllowed)?;
        let view = self.ses_view(&current).await?;
        Ok((current, view))
    }

    /// `GetEmailIdentity` in each of `doc`'s regions. An identity missing in a region is an
    /// error naming the region.
    pub(crate) async fn ses_view(&self, doc: &DkimSecret) -> Result<SesView, EngineError> {
        let mut by_region = Vec::new();
        for region in doc.ses_regions() {
            let state = self
                .ses()
                .dkim_state(doc.identity.as_str(), region)
                .await?
                .ok_or_else(|| EngineError::IdentityNotInSes {
                    identity: doc.identity.to_string(),
                    region: region.map(str::to_owned),
                })?;
            by_region.push(RegionState {
                region: region.map(str::to_owned),
                state,
            });
        }
        Ok(SesView::of(by_region))
    }

    /// `PutEmailIdentityDkimSigningAttributes` in every region of `view` that does not sign
    /// with `selector` yet. With several regions, a refusal names the region and the regions
    /// already switched (see the module's rules).
    pub(crate) async fn sign_in_every_region(
        &self,
        doc: &DkimSecret,
        view: &SesView,
        selector: &str,
        private_key: &SecretText,
    ) -> Result<(), EngineError> {
        let mut switched = Vec::new();
        for region in &view.by_region {
            if region.state.uses_external_selector(selector) {
                continue;
            }
            let name = region.region.as_deref();
            let put = self
                .ses()
                .sign_with_external_key(doc.identity.as_str(), name, selector, private_key)
                .await;
            match put {
                Ok(()) => switched.push(regions::region_name(name)),
                Err(source) if view.by_region.len() > 1 => {
                    return Err(regions::region_refused(
                        doc,
                        name,
                        selector,
                        &view.by_region,
                        switched,
                        source,
                    ));
                }
                Err(source) => return Err(source.into()),
            }
        }
        Ok(())
    }

    /// Whether, with `deadline`, there is time for one more DNS verification attempt.
    pub(crate) fn time_for_another_attempt(&self, deadline: Deadline) -> bool {
        let needed = self.policy.verify_retry_interval + self.policy.deadline_margin;
        deadline.may_wait(self.now(), needed)
    }
}
