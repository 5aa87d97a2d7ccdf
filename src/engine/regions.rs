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

    /// Whether some region signs with Easy DKIM that SES verified.
    pub fn easy_dkim_signing(&self) -> bool {
        self.by_region.iter().any(|r| {
            r.state.origin == Some(SigningOrigin::AwsSes)
                && r.state.has_status(&DkimStatus::Success)
        })
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
        assert!(mixed.easy_dkim_signing());
        assert!(!mixed.combined.uses_external_selector("s"));
    }
}
