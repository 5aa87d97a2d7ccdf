//! SES is regional: an identity sent from several regions has its DKIM settings in each. A
//! secret that names `regions` keeps one key and one selector (one TXT record) for all of them.
//! This module owns the view of SES across those regions ([`SesView`]) and the one way a key is
//! put in every region (`Engine::sign_in_every_region`, which follows these rules).
//!
//! The rules, so that mail never breaks:
//! - the view is only as good as its worst region: `FAILED` anywhere is `FAILED`, `PENDING`
//!   anywhere is `PENDING`, `SUCCESS` only when every region says it; SES "signs with" a
//!   selector only when every region does;
//! - a key is put in the regions that do not sign with it yet; a region that refuses stops the
//!   switch with an error naming it, the regions already switched stay switched (both TXT records
//!   are published, so every region still signs validly), `AWSCURRENT` does not move, and the
//!   retried step puts the key in the remaining regions only. A rotation is complete only when
//!   every region signs with the new selector.

use super::error::EngineError;
use super::ports::{DkimStatus, PortError, SesDkimState, SigningOrigin};
use super::secret_doc::DkimSecret;

/// One region's DKIM state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionState {
    /// The region (`None` = the function's own).
    pub region: Option<String>,
    /// What SES says there.
    pub state: SesDkimState,
}

/// SES across every region of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesView {
    /// Each region's state, in the secret's order.
    pub by_region: Vec<RegionState>,
    /// All regions as one (see the module's rules); equal to the only region's state when
    /// there is one.
    pub combined: SesDkimState,
}

impl SesView {
    /// The view of these regions' states.
    pub fn of(by_region: Vec<RegionState>) -> Self {
        let combined = combine(by_region.iter().map(|r| &r.state));
        Self {
            by_region,
            combined,
        }
    }

    /// The regions where DKIM signing is off (`SigningEnabled=false`).
    pub fn signing_disabled_in(&self) -> Vec<String> {
        self.by_region
            .iter()
            .filter(|r| !r.state.signing_enabled)
            .map(|r| region_name(r.region.as_deref()))
            .collect()
    }

    /// The Easy DKIM origin (`AWS_SES`, or a DEED replica's `AWS_SES_<REGION>`) of the first
    /// region that has one: what a switch adopts the identity from (the `adopted-from` tag).
    pub fn easy_dkim_origin(&self) -> Option<&SigningOrigin> {
        self.by_region.iter().find_map(|r| match &r.state.origin {
            Some(origin @ (SigningOrigin::AwsSes | SigningOrigin::EasyDkimReplica(_))) => {
                Some(origin)
            }
            _ => None,
        })
    }

    /// What, in SES's present signing, stands in the way of switching to this rotator's key
    /// — the first region's worst obstacle, refusals before consents:
    /// - `SigningEnabled=false` and an origin this build does not know are refused (the
    ///   rotator never turns signing on or off, nor replaces what it cannot name);
    /// - Easy DKIM that SES verified, and a DEED replica in any state, need the operator's
    ///   consent (`DKIM_ADOPT_EASY_DKIM`): while the new key is pending, mail may go unsigned.
    pub fn obstacle_to_switch(&self) -> Option<SwitchObstacle> {
        let mut consent = None;
        for r in &self.by_region {
            let region = region_name(r.region.as_deref());
            let state = &r.state;
            if !state.signing_enabled {
                return Some(SwitchObstacle::SigningDisabled { region });
            }
            match &state.origin {
                Some(SigningOrigin::Other(origin)) => {
                    return Some(SwitchObstacle::UnknownOrigin {
                        region,
                        origin: origin.clone(),
                    });
                }
                Some(SigningOrigin::AwsSes) if state.has_status(&DkimStatus::Success) => {
                    consent.get_or_insert(SwitchObstacle::EasyDkim { region });
                }
                Some(replica @ SigningOrigin::EasyDkimReplica(_)) => {
                    consent.get_or_insert(SwitchObstacle::EasyDkimReplica {
                        region,
                        origin: replica.as_str().to_owned(),
                        parent_region: replica.replica_parent_region().unwrap_or_default(),
                    });
                }
                _ => {}
            }
        }
        consent
    }
}

/// Why SES's present signing stops, or needs consent for, a switch to this rotator's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchObstacle {
    /// DKIM signing is off for the identity in `region` (`SigningEnabled=false`): refused.
    SigningDisabled {
        /// The region.
        region: String,
    },
    /// SES reports an origin this build does not know: refused.
    UnknownOrigin {
        /// The region.
        region: String,
        /// The origin, verbatim.
        origin: String,
    },
    /// Easy DKIM (`AWS_SES`), verified, signs in `region`: needs consent.
    EasyDkim {
        /// The region.
        region: String,
    },
    /// A Deterministic Easy DKIM replica signs in `region`: needs consent.
    EasyDkimReplica {
        /// The region.
        region: String,
        /// The origin as SES spells it (`AWS_SES_<PARENT>`).
        origin: String,
        /// The parent identity's region.
        parent_region: String,
    },
}

impl SwitchObstacle {
    /// Whether the operator's consent (`DKIM_ADOPT_EASY_DKIM`) lets the switch go ahead.
    pub fn consent_suffices(&self) -> bool {
        matches!(self, Self::EasyDkim { .. } | Self::EasyDkimReplica { .. })
    }
}

/// How bad a status is for the whole identity: the worst region decides.
fn severity(status: Option<&DkimStatus>) -> u8 {
    match status {
        Some(DkimStatus::Success) => 0,
        Some(DkimStatus::Other(_)) => 1,
        None | Some(DkimStatus::NotStarted) => 2,
        Some(DkimStatus::Pending) => 3,
        Some(DkimStatus::TemporaryFailure) => 4,
        Some(DkimStatus::Failed) => 5,
    }
}

fn combine<'a>(mut states: impl Iterator<Item = &'a SesDkimState>) -> SesDkimState {
    let Some(first) = states.next() else {
        return SesDkimState::default();
    };
    states.fold(first.clone(), |mut all, next| {
        all.signing_enabled &= next.signing_enabled;
        if severity(next.status.as_ref()) > severity(all.status.as_ref()) {
            all.status = next.status.clone();
        }
        if all.origin != next.origin {
            // Easy DKIM anywhere must be seen (consent, adoption); otherwise "not all external".
            all.origin = if all.origin == Some(SigningOrigin::AwsSes)
                || next.origin == Some(SigningOrigin::AwsSes)
            {
                Some(SigningOrigin::AwsSes)
            } else {
                Some(SigningOrigin::Other("MIXED".into()))
            };
        }
        // Signs with a selector only where every region does.
        all.selectors.retain(|s| {
            next.selectors
                .iter()
                .any(|other| other.eq_ignore_ascii_case(s))
        });
        all
    })
}

/// How an error names a region.
pub(crate) fn region_name(region: Option<&str>) -> String {
    region.unwrap_or("(the function's own)").to_owned()
}

/// The error for `region` refusing `selector` while other regions may have it already.
pub(crate) fn region_refused(
    doc: &DkimSecret,
    region: Option<&str>,
    selector: &str,
    all: &[RegionState],
    switched_now: Vec<String>,
    source: PortError,
) -> EngineError {
    let mut switched: Vec<String> = all
        .iter()
        .filter(|r| r.state.uses_external_selector(selector))
        .map(|r| region_name(r.region.as_deref()))
        .collect();
    switched.extend(switched_now);
    EngineError::SesRegionRefused {
        identity: doc.identity.to_string(),
        region: region_name(region),
        selector: selector.to_owned(),
        switched,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: DkimStatus, origin: SigningOrigin, selector: &str) -> SesDkimState {
        SesDkimState {
            signing_enabled: true,
            status: Some(status),
            origin: Some(origin),
            selectors: vec![selector.to_owned()],
        }
    }

    fn view(states: &[SesDkimState]) -> SesView {
        SesView::of(
            states
                .iter()
                .enumerate()
                .map(|(i, s)| RegionState {
                    region: Some(format!("r-{i}")),
                    state: s.clone(),
                })
                .collect(),
        )
    }

    #[test]
    fn one_region_is_its_own_view() {
        let only = state(DkimStatus::Pending, SigningOrigin::External, "a");
        assert_eq!(view(std::slice::from_ref(&only)).combined, only);
    }

    #[test]
    fn the_worst_region_decides() {
        use DkimStatus::*;
        let ext = SigningOrigin::External;
        let both = |a: DkimStatus, b: DkimStatus| {
            view(&[state(a, ext.clone(), "s"), state(b, ext.clone(), "s")])
                .combined
                .status
                .unwrap()
        };
        assert_eq!(both(Success, Success), Success);
        assert_eq!(both(Success, Pending), Pending);
        assert_eq!(both(Pending, Failed), Failed);
        assert_eq!(both(TemporaryFailure, Pending), TemporaryFailure);
        assert_eq!(both(Failed, Success), Failed);
    }

    #[test]
    fn a_selector_counts_only_when_every_region_signs_with_it() {
        let ext = SigningOrigin::External;
        let split = view(&[
            state(DkimStatus::Success, ext.clone(), "new"),
            state(DkimStatus::Success, ext.clone(), "old"),
        ]);
        assert!(!split.combined.uses_external_selector("new"));
        assert!(!split.combined.uses_external_selector("old"));
        let same = view(&[
            state(DkimStatus::Success, ext.clone(), "new"),
            state(DkimStatus::Pending, ext, "NEW"),
        ]);
        assert!(same.combined.uses_external_selector("new"));
    }

    #[test]
    fn easy_dkim_in_one_region_is_seen() {
        let mixed = view(&[
            state(DkimStatus::Success, SigningOrigin::External, "s"),
            state(DkimStatus::Success, SigningOrigin::AwsSes, "easy1"),
        ]);
        assert_eq!(mixed.combined.origin, Some(SigningOrigin::AwsSes));
        assert_eq!(
            mixed.obstacle_to_switch(),
            Some(SwitchObstacle::EasyDkim {
                region: "r-1".into()
            })
        );
        assert_eq!(mixed.easy_dkim_origin(), Some(&SigningOrigin::AwsSes));
        assert!(!mixed.combined.uses_external_selector("s"));
    }

    #[test]
    fn a_deed_origin_is_a_replica_of_its_parent_region() {
        let deed = SigningOrigin::parse("AWS_SES_EU_WEST_1");
        assert_eq!(
            deed,
            SigningOrigin::EasyDkimReplica("AWS_SES_EU_WEST_1".into())
        );
        assert_eq!(deed.replica_parent_region().as_deref(), Some("eu-west-1"));
        assert_eq!(deed.as_str(), "AWS_SES_EU_WEST_1");
        let gov = SigningOrigin::parse("AWS_SES_US_GOV_WEST_1");
        assert_eq!(
            gov.replica_parent_region().as_deref(),
            Some("us-gov-west-1")
        );
        for unknown in [
            "AWS_SES_",
            "AWS_SES_X",
            "AWS_SES_eu_west_1",
            "AWS_KMS",
            "AWS_SES_EU_WEST",
        ] {
            assert_eq!(
                SigningOrigin::parse(unknown),
                SigningOrigin::Other(unknown.into()),
                "{unknown}"
            );
        }
    }

    #[test]
    fn a_deed_replica_needs_consent_whatever_its_status() {
        for status in [DkimStatus::Success, DkimStatus::Pending] {
            let deed = view(&[state(
                status,
                SigningOrigin::parse("AWS_SES_US_WEST_2"),
                "tok1",
            )]);
            let obstacle = deed.obstacle_to_switch().expect("an obstacle");
            assert_eq!(
                obstacle,
                SwitchObstacle::EasyDkimReplica {
                    region: "r-0".into(),
                    origin: "AWS_SES_US_WEST_2".into(),
                    parent_region: "us-west-2".into(),
                }
            );
            assert!(obstacle.consent_suffices());
        }
    }

    #[test]
    fn unknown_origins_and_disabled_signing_are_refused_before_any_consent() {
        let unknown = view(&[
            state(DkimStatus::Success, SigningOrigin::AwsSes, "easy1"),
            state(DkimStatus::Success, SigningOrigin::parse("AWS_KMS"), "k"),
        ]);
        let obstacle = unknown.obstacle_to_switch().expect("an obstacle");
        assert_eq!(
            obstacle,
            SwitchObstacle::UnknownOrigin {
                region: "r-1".into(),
                origin: "AWS_KMS".into()
            }
        );
        assert!(!obstacle.consent_suffices());

        let mut off = state(DkimStatus::Success, SigningOrigin::External, "s");
        off.signing_enabled = false;
        let disabled = view(&[state(DkimStatus::Success, SigningOrigin::AwsSes, "e"), off]);
        let obstacle = disabled.obstacle_to_switch().expect("an obstacle");
        assert_eq!(
            obstacle,
            SwitchObstacle::SigningDisabled {
                region: "r-1".into()
            }
        );
        assert!(!obstacle.consent_suffices());
    }

    #[test]
    fn byodkim_and_unverified_easy_dkim_stand_in_no_ones_way() {
        let free = view(&[
            state(DkimStatus::Success, SigningOrigin::External, "s"),
            state(DkimStatus::Pending, SigningOrigin::AwsSes, "easy1"),
        ]);
        assert_eq!(free.obstacle_to_switch(), None);
    }
}
