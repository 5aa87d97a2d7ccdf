//! [`FakeSes`]: SESv2's DKIM side in memory, as AWS documents it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::call_log::{CallLog, lock, refused};
use super::clock::ManualClock;
use super::quota::{RequestQuota, TokenBuckets};
use super::zone::MemoryZone;
use crate::engine::dns_check::{TxtAnswer, check_dkim_record};
use crate::engine::key::DkimKeyPair;
use crate::engine::ports::{
    Clock, DkimSigningService, DkimStatus, FailureKind, IdentityPage, PortError, SesDkimState,
    SigningOrigin,
};
use crate::secret_text::SecretText;

const SES: &str = "SESv2";

/// One SES identity's DKIM settings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SesIdentity {
    origin: SigningOrigin,
    /// `SigningEnabled` (`PutEmailIdentityDkimAttributes`); a put of signing attributes
    /// leaves it as it is (AWS does not document that it changes it).
    signing_enabled: bool,
    status: DkimStatus,
    tokens: Vec<String>,
    /// The external key put last (bare base64 PKCS#1).
    private_key: Option<String>,
    /// When the current external key was put (SES's 72-hour window starts there).
    put_at: Option<OffsetDateTime>,
}

#[derive(Debug, Default)]
struct SesState {
    identities: BTreeMap<(String, String), SesIdentity>,
    log: CallLog,
    puts: Vec<(String, String, String)>,
    status_after_put: Option<DkimStatus>,
    refusing_regions: BTreeMap<String, FailureKind>,
    quota: Option<RequestQuota>,
    /// Per region: what the quota admitted and refused (to measure the rate sent).
    buckets: TokenBuckets,
}

impl SesState {
    /// A call to `region` at `now` under the quota: admitted, or `TooManyRequestsException`
    /// as SES answers it (HTTP 429). A token bucket refilled continuously.
    fn admit(
        &mut self,
        region: &str,
        operation: &'static str,
        now: OffsetDateTime,
    ) -> Result<(), PortError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        if self.buckets.take(quota, region, now) {
            return Ok(());
        }
        Err(PortError {
            service: SES,
            operation,
            kind: FailureKind::Throttled,
            message: "TooManyRequestsException: Too Many Requests".into(),
        })
    }
}

/// SESv2's DKIM side, as AWS documents it. Clones share one state.
#[derive(Debug, Clone)]
pub struct FakeSes {
    state: Arc<Mutex<SesState>>,
    clock: ManualClock,
    window: time::Duration,
}

/// The region an identity lives in when the secret names none.
pub const HOME_REGION: &str = "us-east-1";

impl FakeSes {
    /// No identities; SES's verification window is 72 hours of `clock`.
    pub fn new(clock: ManualClock) -> Self {
        Self {
            state: Arc::default(),
            clock,
            window: time::Duration::hours(72),
        }
    }

    /// From now on every call is held to `quota` (per region, on this fake's clock).
    pub fn enforce_quota(&self, quota: RequestQuota) {
        lock(&self.state).quota = Some(quota);
    }

    /// How many calls the quota refused so far.
    pub fn throttled(&self) -> u64 {
        lock(&self.state).buckets.throttled
    }

    /// When each call SES accepted under the quota was made, per region.
    pub fn admitted(&self) -> BTreeMap<String, Vec<OffsetDateTime>> {
        lock(&self.state).buckets.admitted.clone()
    }

    /// `CreateEmailIdentity` for a domain: Easy DKIM, `PENDING` until its CNAMEs resolve.
    pub fn create_identity(&self, domain: &str) {
        self.create_identity_in(domain, HOME_REGION);
    }

    /// [`Self::create_identity`] in `region`.
    pub fn create_identity_in(&self, domain: &str, region: &str) {
        lock(&self.state).identities.insert(
            (domain.to_owned(), region.to_owned()),
            SesIdentity {
                origin: SigningOrigin::AwsSes,
                signing_enabled: true,
                status: DkimStatus::Pending,
                tokens: (1..=3).map(|i| format!("easy{i}token")).collect(),
                private_key: None,
                put_at: None,
            },
        );
    }

    /// `CreateEmailIdentity` in `region` as a Deterministic Easy DKIM replica of the identity
    /// in `parent_region` (`DomainSigningAttributesOrigin=AWS_SES_<PARENT>`): the parent's
    /// tokens and status, the origin `AWS_SES_<PARENT>`. Panics when there is no parent.
    pub fn create_replica_in(&self, domain: &str, region: &str, parent_region: &str) {
        let mut state = lock(&self.state);
        let parent = state
            .identities
            .get(&(domain.to_owned(), parent_region.to_owned()))
            .expect("a DEED replica needs its parent identity")
            .clone();
        let origin = format!(
            "AWS_SES_{}",
            parent_region.to_ascii_uppercase().replace('-', "_")
        );
        state.identities.insert(
            (domain.to_owned(), region.to_owned()),
            SesIdentity {
                origin: SigningOrigin::parse(&origin),
                private_key: None,
                put_at: None,
                ..parent
            },
        );
    }

    /// Forces the origin SES reports for `domain` in `region` (e.g. one this build does not
    /// know, as a newer SES might send).
    pub fn set_origin_in(&self, domain: &str, region: &str, origin: &str) {
        if let Some(identity) = lock(&self.state)
            .identities
            .get_mut(&(domain.to_owned(), region.to_owned()))
        {
            identity.origin = SigningOrigin::parse(origin);
        }
    }

    /// `PutEmailIdentityDkimAttributes` (`SigningEnabled`) for `domain` in `region`.
    pub fn set_signing_enabled_in(&self, domain: &str, region: &str, enabled: bool) {
        if let Some(identity) = lock(&self.state)
            .identities
            .get_mut(&(domain.to_owned(), region.to_owned()))
        {
            identity.signing_enabled = enabled;
        }
    }

    /// Forces the DKIM status of `domain` (home region).
    pub fn set_status(&self, domain: &str, status: DkimStatus) {
        self.set_status_in(domain, HOME_REGION, status);
    }

    /// Forces the DKIM status of `domain` in `region`.
    pub fn set_status_in(&self, domain: &str, region: &str, status: DkimStatus) {
        if let Some(identity) = lock(&self.state)
            .identities
            .get_mut(&(domain.to_owned(), region.to_owned()))
        {
            identity.status = status;
        }
    }

    /// The DKIM state of `domain` (home region), as `GetEmailIdentity` would say it.
    pub fn state_of(&self, domain: &str) -> Option<SesDkimState> {
        self.state_in(domain, HOME_REGION)
    }

    /// The DKIM state of `domain` in `region`.
    pub fn state_in(&self, domain: &str, region: &str) -> Option<SesDkimState> {
        lock(&self.state)
            .identities
            .get(&(domain.to_owned(), region.to_owned()))
            .map(state_of)
    }

    /// Makes every put in `region` fail with `kind` (e.g. `AccessDenied`: the role may not use
    /// SES there) until [`Self::accept_region`].
    pub fn refuse_region(&self, region: &str, kind: FailureKind) {
        lock(&self.state)
            .refusing_regions
            .insert(region.to_owned(), kind);
    }

    /// Undoes [`Self::refuse_region`].
    pub fn accept_region(&self, region: &str) {
        lock(&self.state).refusing_regions.remove(region);
    }

    /// The external private key SES holds for `domain` (home region).
    pub fn key_of(&self, domain: &str) -> Option<String> {
        lock(&self.state)
            .identities
            .get(&(domain.to_owned(), HOME_REGION.to_owned()))
            .and_then(|i| i.private_key.clone())
    }

    /// Makes every later external put answer `status` at once instead of `PENDING` (how
    /// awsim behaves; real SES never says `FAILED` that early).
    pub fn set_status_after_put(&self, status: Option<DkimStatus>) {
        lock(&self.state).status_after_put = status;
    }

    /// Every `PutEmailIdentityDkimSigningAttributes` so far: (identity, selector).
    pub fn puts(&self) -> Vec<(String, String)> {
        lock(&self.state)
            .puts
            .iter()
            .map(|(identity, _, selector)| (identity.clone(), selector.clone()))
            .collect()
    }

    /// Every put so far: (identity, region, selector).
    pub fn puts_by_region(&self) -> Vec<(String, String, String)> {
        lock(&self.state).puts.clone()
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).log.calls()
    }

    /// Makes the next call of `operation` fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: FailureKind) {
        lock(&self.state).log.fail_next(operation, kind);
    }

    /// "SES looks now" for `domain`: a `PENDING` external key becomes `SUCCESS` when `zone`
    /// serves its record, or `FAILED` once 72 hours have passed since the put; a verified key
    /// whose record stopped resolving becomes `TEMPORARY_FAILURE` (and back on `SUCCESS`).
    pub fn check_dns(&self, domain: &str, zone: &MemoryZone) {
        self.check_dns_in(domain, HOME_REGION, zone);
    }

    /// [`Self::check_dns`] in `region` (each region looks on its own time).
    pub fn check_dns_in(&self, domain: &str, region: &str, zone: &MemoryZone) {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let Some(identity) = state
            .identities
            .get_mut(&(domain.to_owned(), region.to_owned()))
        else {
            return;
        };
        let (Some(private_key), Some(selector)) = (&identity.private_key, identity.tokens.first())
        else {
            return;
        };
        let Ok(key) = DkimKeyPair::from_private_key(&SecretText::new(private_key.as_str())) else {
            identity.status = DkimStatus::Failed;
            return;
        };
        let records = zone.txt(&format!("{selector}._domainkey.{domain}"));
        let served =
            check_dkim_record(&Ok(TxtAnswer::Records(records)), key.public_key()).is_published();
        identity.status = match (&identity.status, served) {
            (DkimStatus::Success | DkimStatus::TemporaryFailure, true) => DkimStatus::Success,
            (DkimStatus::Success | DkimStatus::TemporaryFailure, false) => {
                DkimStatus::TemporaryFailure
            }
            (DkimStatus::Pending, true) => DkimStatus::Success,
            (DkimStatus::Pending, false)
                if identity.put_at.is_some_and(|at| now - at >= self.window) =>
            {
                DkimStatus::Failed
            }
            (status, _) => status.clone(),
        };
    }
}

fn state_of(identity: &SesIdentity) -> SesDkimState {
    SesDkimState {
        signing_enabled: identity.signing_enabled,
        status: Some(identity.status.clone()),
        origin: Some(identity.origin.clone()),
        selectors: identity.tokens.clone(),
    }
}

impl DkimSigningService for FakeSes {
    async fn dkim_state(
        &self,
        identity: &str,
        region: Option<&str>,
    ) -> Result<Option<SesDkimState>, PortError> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        state.log.enter(SES, "GetEmailIdentity")?;
        let key = (
            identity.to_owned(),
            region.unwrap_or(HOME_REGION).to_owned(),
        );
        state.admit(&key.1, "GetEmailIdentity", now)?;
        Ok(state.identities.get(&key).map(state_of))
    }

    async fn sign_with_external_key(
        &self,
        identity: &str,
        region: Option<&str>,
        selector: &str,
        private_key: &SecretText,
    ) -> Result<(), PortError> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        state
            .log
            .enter(SES, "PutEmailIdentityDkimSigningAttributes")?;
        let key = (
            identity.to_owned(),
            region.unwrap_or(HOME_REGION).to_owned(),
        );
        state.admit(&key.1, "PutEmailIdentityDkimSigningAttributes", now)?;
        if let Some(kind) = state.refusing_regions.get(&key.1) {
            return Err(refused(
                SES,
                "PutEmailIdentityDkimSigningAttributes",
                *kind,
                "User is not authorized to perform ses:PutEmailIdentityDkimSigningAttributes in this region",
            ));
        }
        let status = state
            .status_after_put
            .clone()
            .unwrap_or(DkimStatus::Pending);
        let Some(entry) = state.identities.get_mut(&key) else {
            return Err(refused(
                SES,
                "PutEmailIdentityDkimSigningAttributes",
                FailureKind::NotFound,
                "Email identity does not exist.",
            ));
        };
        *entry = SesIdentity {
            origin: SigningOrigin::External,
            signing_enabled: entry.signing_enabled,
            status,
            tokens: vec![selector.to_owned()],
            private_key: Some(private_key.expose().to_owned()),
            put_at: Some(now),
        };
        state
            .puts
            .push((identity.to_owned(), key.1.clone(), selector.to_owned()));
        Ok(())
    }

    /// Pages of 1,000 as SES; a domain's `VerificationStatus` is modelled as its DKIM status
    /// (what SES reports for a domain verified through DKIM).
    async fn list_identities(
        &self,
        region: Option<&str>,
        page: Option<&str>,
    ) -> Result<IdentityPage, PortError> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        state.log.enter(SES, "ListEmailIdentities")?;
        let region = region.unwrap_or(HOME_REGION).to_owned();
        state.admit(&region, "ListEmailIdentities", now)?;
        let from: usize = page.and_then(|p| p.parse().ok()).unwrap_or(0);
        let listed: Vec<(String, DkimStatus)> = state
            .identities
            .iter()
            .filter(|((_, r), _)| *r == region)
            .map(|((name, _), identity)| (name.clone(), identity.status.clone()))
            .collect();
        let end = (from + 1000).min(listed.len());
        Ok(IdentityPage {
            identities: listed.get(from..end).unwrap_or_default().to_vec(),
            next_page: (end < listed.len()).then(|| end.to_string()),
        })
    }
}
