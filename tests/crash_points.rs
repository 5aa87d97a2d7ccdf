//! Crash at every point: a rotation is stopped right after each external call (the call's
//! effect lands, then an injected abort), the step is run again, and the end state must be the
//! one an uninterrupted rotation reaches. The list of calls is pinned below, so a new call
//! cannot slip in untested.
//!
//! The same for the scheduled path: a whole lifecycle (the key is due → rotate; SES confirms
//! → tag; the grace period is over → retire the previous selector's TXT), where a run that
//! fails on an injected abort is simply run again, as the next schedule would.

pub mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use serde_json::json;
use ses_dkim_rotator::adapters::clock::SystemClock;
use ses_dkim_rotator::adapters::dns::ConfiguredPublisher;
use ses_dkim_rotator::adapters::dns::lookup::{HickoryTxtLookup, LookupServers};
use ses_dkim_rotator::adapters::dns::rfc2136::Rfc2136Publisher;
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::engine::dns_check::TxtAnswer;
use ses_dkim_rotator::engine::key::{DkimKeyPair, KeyBits, split_txt_strings};
use ses_dkim_rotator::engine::ports::Deadline;
use ses_dkim_rotator::engine::ports::PortSet;
use ses_dkim_rotator::engine::ports::{
    DkimSigningService, DkimStatus, DnsPublisher, DnsTxtLookup, FailureKind, IdentityPage,
    LookupFailure, PortError, Publication, ServerAnswer, SesDkimState, TxtRecord,
};
use ses_dkim_rotator::engine::rotation::Step;
use ses_dkim_rotator::engine::schedule::{Action, MaintainOptions};
use ses_dkim_rotator::engine::tags::{TAG_CONFIRMED, TAG_RETIRED};
use ses_dkim_rotator::engine::{Engine, RotationPolicy};
use ses_dkim_rotator::secret_text::SecretText;

/// The external calls of each of Secrets Manager's four steps, in order, for the first
/// rotation of a secret (RFC 2136). Pinned: a new call must be added here, and so becomes a
/// crash point.
const STEP_CALLS: [(&str, &[&str]); 4] = [
    (
        "createSecret",
        &[
            "DescribeSecret",
            "GetSecretValue",
            "GetEmailIdentity",
            "GetSecretValue",
            // No unfinished attempt of the rotator's is tagged, so no versions are listed;
            // this attempt is marked the rotator's own before its key is stored (the only
            // unfinished version a later rotation may resume).
            "TagResource",
            "PutSecretValue",
        ],
    ),
    (
        "setSecret",
        // The pending key, then AWSCURRENT: the same identity, a new key (nothing published
        // for a version someone wrote for another identity).
        &[
            "DescribeSecret",
            "GetSecretValue",
            "GetSecretValue",
            "DnsUpdate",
        ],
    ),
    (
        "testSecret",
        &[
            "DescribeSecret",
            "GetSecretValue",
            "GetEmailIdentity",
            "GetSecretValue",
            "DnsQuery",
        ],
    ),
    (
        "finishSecret",
        &[
            "DescribeSecret",
            "GetSecretValue",
            "GetEmailIdentity",
            "GetSecretValue",
            "DnsQuery",
            // First switch of an identity that had Easy DKIM (as SES creates it): its origin
            // is recorded before SES is touched.
            "TagResource",
            "PutEmailIdentityDkimSigningAttributes",
            "GetEmailIdentity",
            // The switch is tagged before AWSCURRENT moves: a failed tag fails the step, and
            // the retry (token not yet current) tags it again.
            "TagResource",
            "UpdateSecretVersionStage",
            "UpdateSecretVersionStage",
        ],
    ),
];

/// Every external call of one uninterrupted rotation, in order.
fn expected_calls() -> Vec<&'static str> {
    STEP_CALLS
        .iter()
        .flat_map(|(_, calls)| calls.iter().copied())
        .collect()
}

/// Records each call and aborts right after call number `abort_after` (1-based).
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<&'static str>>,
    count: AtomicUsize,
    abort_after: Option<usize>,
}

impl Recorder {
    fn after(&self, name: &'static str) -> bool {
        self.calls.lock().unwrap().push(name);
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.abort_after == Some(n)
    }

    fn port<T>(&self, name: &'static str, result: Result<T, PortError>) -> Result<T, PortError> {
        if self.after(name) {
            return Err(PortError {
                service: "injected",
                operation: name,
                kind: FailureKind::Unavailable,
                message: format!("injected abort right after {name}"),
            });
        }
        result
    }
}

struct Crashing<'r, P> {
    inner: P,
    rec: &'r Recorder,
}

/// Aborts right after the call numbered `abort_after` (the call's effect has landed).
impl AroundStoreCall for &Recorder {
    async fn around<T: Send>(
        &self,
        which: StoreCall,
        call: impl Future<Output = Result<T, PortError>> + Send,
    ) -> Result<T, PortError> {
        let result = call.await;
        self.port(which.api, result)
    }
}

impl<E: DkimSigningService> DkimSigningService for Crashing<'_, E> {
    async fn dkim_state(
        &self,
        identity: &str,
        region: Option<&str>,
    ) -> Result<Option<SesDkimState>, PortError> {
        self.rec.port(
            "GetEmailIdentity",
            self.inner.dkim_state(identity, region).await,
        )
    }
    async fn sign_with_external_key(
        &self,
        identity: &str,
        region: Option<&str>,
        selector: &str,
        key: &SecretText,
    ) -> Result<(), PortError> {
        let r = self
            .inner
            .sign_with_external_key(identity, region, selector, key)
            .await;
        self.rec.port("PutEmailIdentityDkimSigningAttributes", r)
    }
    async fn list_identities(
        &self,
        region: Option<&str>,
        page: Option<&str>,
    ) -> Result<IdentityPage, PortError> {
        let r = self.inner.list_identities(region, page).await;
        self.rec.port("ListEmailIdentities", r)
    }
}

impl<D: DnsPublisher> DnsPublisher for Crashing<'_, D> {
    async fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        deadline: Deadline,
    ) -> Result<Publication, PortError> {
        self.rec
            .port("DnsUpdate", self.inner.upsert_txt(record, deadline).await)
    }
    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<Publication, PortError> {
        self.rec
            .port("DnsUpdate", self.inner.delete_txt(record).await)
    }
}

impl<L: DnsTxtLookup> DnsTxtLookup for Crashing<'_, L> {
    async fn lookup_txt(
        &self,
        identity: &str,
        name: &str,
    ) -> Result<Vec<ServerAnswer>, LookupFailure> {
        let result = self.inner.lookup_txt(identity, name).await;
        if self.rec.after("DnsQuery") {
            return Err(LookupFailure {
                server: "injected".into(),
                reason: "injected abort right after DnsQuery".into(),
            });
        }
        result
    }
}

async fn crashing_engine<'r>(
    bed: &TestBed,
    rec: &'r Recorder,
    tsig_secret: &str,
    policy: RotationPolicy,
) -> Engine<
    PortSet<
        AroundStore<SecretsManagerStore, &'r Recorder>,
        Crashing<'r, SesV2Signing>,
        Crashing<'r, ConfiguredPublisher>,
        Crashing<'r, HickoryTxtLookup>,
        SystemClock,
    >,
> {
    let server = dns_server().parse().unwrap();
    Engine::new(
        PortSet {
            secrets: AroundStore {
                inner: SecretsManagerStore::new(bed.secrets.clone()),
                around: rec,
            },
            ses: Crashing {
                inner: SesV2Signing::new(bed.ses.clone()),
                rec,
            },
            dns: Crashing {
                inner: ConfiguredPublisher::Rfc2136(Rfc2136Publisher::new(
                    server,
                    Some(ZONE.to_owned()),
                    60,
                    Some(tsig_secret.to_owned()),
                    SecretsManagerStore::new(bed.secrets.clone()),
                )),
                rec,
            },
            lookup: Crashing {
                inner: HickoryTxtLookup::new(
                    LookupServers::Fixed(vec![server]),
                    std::time::Duration::from_secs(3),
                ),
                rec,
            },
            clock: SystemClock,
        },
        policy,
    )
}

/// Runs the four steps; on an (injected) failure, runs that step again, as Secrets Manager
/// retries, without aborts. Checks the end state; returns the calls made before any retry.
async fn rotate_with_crash(
    bed: &TestBed,
    seeded: &Seeded,
    abort_after: Option<usize>,
    tsig: &str,
) -> Vec<&'static str> {
    let token = bed.start_rotation(&seeded.arn).await;
    let crashing = Recorder {
        abort_after,
        ..Recorder::default()
    };
    let clean = Recorder::default();
    let first = crashing_engine(bed, &crashing, tsig, allow_all()).await;
    let retry = crashing_engine(bed, &clean, tsig, allow_all()).await;
    let mut crashed = false;
    for step in [
        Step::CreateSecret,
        Step::SetSecret,
        Step::TestSecret,
        Step::FinishSecret,
    ] {
        let request = request(step, &seeded.arn, &token);
        let engine_result = if crashed {
            retry.run_step(&request).await
        } else {
            first.run_step(&request).await
        };
        if let Err(error) = engine_result {
            assert!(
                abort_after.is_some(),
                "{step} failed without an injected abort: {error}"
            );
            crashed = true;
            bed.assert_invariant(&seeded.domain, &seeded.arn).await;
            retry.run_step(&request).await.unwrap_or_else(|e| {
                panic!("{step} retry after abort #{abort_after:?} failed: {e}")
            });
        }
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    // Same end state as an uninterrupted rotation.
    let stages = bed.stages(&seeded.arn).await;
    assert!(
        stages[&token].contains(&"AWSCURRENT".to_owned()),
        "abort #{abort_after:?}: {stages:?}"
    );
    assert!(
        !stages
            .values()
            .any(|s| s.contains(&"AWSPENDING".to_owned()) && !s.contains(&"AWSCURRENT".to_owned())),
        "abort #{abort_after:?}: an AWSPENDING would block the next rotation: {stages:?}"
    );
    let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        current["selector"].as_str(),
        "abort #{abort_after:?}: the key SES uses is not the one in AWSCURRENT"
    );
    let calls = crashing.calls.lock().unwrap().clone();
    if let Some(point) = abort_after {
        assert!(
            calls.len() >= point,
            "abort point #{point} was never reached: {calls:?}"
        );
    }
    calls
}

#[tokio::test]
async fn every_external_call_is_a_crash_point_the_rotation_recovers_from() {
    let bed = TestBed::connect().await;
    let tsig = bed.tsig_secret().await;
    let reference = bed.seed("crashref", json!({})).await;
    let calls = rotate_with_crash(&bed, &reference, None, &tsig).await;
    assert_eq!(
        calls,
        expected_calls(),
        "the calls of a rotation changed: update STEP_CALLS (and think about each new crash point)"
    );

    for point in 1..=expected_calls().len() {
        let seeded = bed.seed("crash", json!({})).await;
        rotate_with_crash(&bed, &seeded, Some(point), &tsig).await;
    }
}

/// The external calls of one uninterrupted scheduled lifecycle, run by run.
const SCHEDULED_RUN_CALLS: [(&str, &[&str]); 4] = [
    // The key is due: read the state; record the switch tags the planner reads (the key was
    // put in SES by hand, so none were written); then the four steps with the schedule's own
    // token, each reading only what the run has not read already (the description, the
    // checked AWSCURRENT and SES's view come from the first three calls; the pending key is
    // the one createSecret stored). Secrets Manager's own invocations read it all (STEP_CALLS).
    (
        "run 1 (rotate)",
        &[
            "DescribeSecret",
            "GetSecretValue",
            "GetEmailIdentity",
            "TagResource",
            // createSecret: the attempt's mark (no earlier attempt to resume), the new key.
            "TagResource",
            "PutSecretValue",
            // setSecret
            "DnsUpdate",
            // testSecret
            "DnsQuery",
            // finishSecret: DNS again right before the switch, then the switch and SES's answer.
            "DnsQuery",
            "PutEmailIdentityDkimSigningAttributes",
            "GetEmailIdentity",
            "TagResource",
            "UpdateSecretVersionStage",
            "UpdateSecretVersionStage",
        ],
    ),
    // SES says SUCCESS: tag the selector confirmed.
    (
        "run 2 (confirm)",
        &[
            "DescribeSecret",
            "GetSecretValue",
            "GetEmailIdentity",
            "TagResource",
        ],
    ),
    // The grace period (zero here) is over: delete the previous TXT, tag it retired.
    (
        "run 3 (retire)",
        &[
            "DescribeSecret",
            "GetSecretValue",
            "GetEmailIdentity",
            "DnsUpdate",
            "TagResource",
        ],
    ),
    // Nothing left to do.
    (
        "run 4 (idle)",
        &["DescribeSecret", "GetSecretValue", "GetEmailIdentity"],
    ),
];

/// Every external call of one uninterrupted scheduled lifecycle, run by run.
fn expected_scheduled_calls() -> Vec<Vec<&'static str>> {
    SCHEDULED_RUN_CALLS
        .iter()
        .map(|(_, calls)| calls.to_vec())
        .collect()
}

/// The calls that change nothing.
const READS: &[&str] = &[
    "DescribeSecret",
    "GetSecretValue",
    "GetEmailIdentity",
    "ListSecretVersionIds",
    "ListSecrets",
    "DnsQuery",
];

/// The selector the seeded secret starts with: rotated in long ago, so the key is due.
const OLD_SELECTOR: &str = "ses-20260101-0a0a";

/// A secret whose key (`OLD_SELECTOR`, created 2026-01-01) SES signs with and DNS publishes.
async fn seed_with_old_key(bed: &TestBed) -> Seeded {
    let key = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
    let seeded = bed
        .seed(
            "crashsched",
            json!({
                "selector": OLD_SELECTOR,
                "private_key": key.private_key().expose(),
                "public_key": key.public_key(),
                "created_at": "2026-01-01T00:00:00Z",
            }),
        )
        .await;
    SesV2Signing::new(bed.ses.clone())
        .sign_with_external_key(&seeded.domain, None, OLD_SELECTOR, key.private_key())
        .await
        .unwrap();
    dns_add_txt(
        &format!("{OLD_SELECTOR}._domainkey.{}", seeded.domain),
        &split_txt_strings(&key.txt_value()),
    );
    assert_eq!(
        bed.ses_check(&seeded.domain).await,
        Some(DkimStatus::Success)
    );
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    seeded
}

/// Runs the schedule for one secret until it has nothing left to do; a run that fails (on
/// the injected abort) is run again with an engine that does not abort. Checks the end
/// state; returns the calls of each run made before the abort.
async fn schedule_with_crash(
    bed: &TestBed,
    abort_after: Option<usize>,
    tsig: &str,
) -> Vec<Vec<&'static str>> {
    let seeded = seed_with_old_key(bed).await;
    let policy = RotationPolicy {
        old_key_grace: time::Duration::ZERO,
        ..allow_all()
    };
    let crashing = Recorder {
        abort_after,
        ..Recorder::default()
    };
    let clean = Recorder::default();
    let first = crashing_engine(bed, &crashing, tsig, policy.clone()).await;
    let retry = crashing_engine(bed, &clean, tsig, policy).await;
    let options = MaintainOptions {
        force: false,
        dry_run: false,
        rotation_interval: time::Duration::days(90),
        deadline: Deadline::NONE,
        record_published: false,
    };
    let mut crashed = false;
    let mut settled = false;
    let mut runs = Vec::new();
    for run in 1..=8 {
        let recorder = if crashed { &clean } else { &crashing };
        let before = recorder.calls.lock().unwrap().len();
        let report = if crashed {
            retry.maintain(&seeded.arn, &options).await
        } else {
            first.maintain(&seeded.arn, &options).await
        };
        let calls = recorder.calls.lock().unwrap()[before..].to_vec();
        if !crashed {
            runs.push(calls.clone());
        }
        // SES looks at DNS on its own time, between the daily runs.
        bed.ses_check(&seeded.domain).await;
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
        match report.action {
            Action::Failed | Action::WaitingForDns => {
                assert!(
                    abort_after.is_some() && !crashed,
                    "run {run} failed without an injected abort: {report:?}"
                );
                crashed = true;
            }
            // Settled: a run with nothing to do that changed nothing (a run that only
            // starts a grace period it could not find a record of is not settled).
            Action::Skipped if calls.iter().all(|c| READS.contains(c)) => {
                settled = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        settled,
        "abort #{abort_after:?}: the schedule never settled"
    );

    // The end state of an uninterrupted lifecycle.
    let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    let selector = current["selector"].as_str().unwrap().to_owned();
    assert_ne!(
        selector, OLD_SELECTOR,
        "abort #{abort_after:?}: not rotated"
    );
    assert_eq!(current["previous_selector"], OLD_SELECTOR);
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        Some(selector.as_str()),
        "abort #{abort_after:?}: the key SES uses is not the one in AWSCURRENT"
    );
    assert_eq!(
        dns_txt(&format!("{OLD_SELECTOR}._domainkey.{}", seeded.domain)),
        TxtAnswer::NoRecords,
        "abort #{abort_after:?}: the previous selector's TXT was not retired"
    );
    let described = bed
        .secrets
        .describe_secret()
        .secret_id(&seeded.arn)
        .send()
        .await
        .unwrap();
    let tag = |key: &str| {
        described
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value().map(str::to_owned))
    };
    assert_eq!(tag(TAG_CONFIRMED).as_deref(), Some(selector.as_str()));
    assert_eq!(tag(TAG_RETIRED).as_deref(), Some(OLD_SELECTOR));
    let stages = bed.stages(&seeded.arn).await;
    assert!(
        !stages
            .values()
            .any(|s| s.contains(&"AWSPENDING".to_owned()) && !s.contains(&"AWSCURRENT".to_owned())),
        "abort #{abort_after:?}: an AWSPENDING would block the next rotation: {stages:?}"
    );
    if let Some(point) = abort_after {
        let made = crashing.calls.lock().unwrap().len();
        assert!(made >= point, "abort point #{point} was never reached");
    }
    runs
}

#[tokio::test]
async fn every_external_call_of_a_scheduled_lifecycle_is_a_crash_point_too() {
    let bed = TestBed::connect().await;
    let tsig = bed.tsig_secret().await;
    let runs = schedule_with_crash(&bed, None, &tsig).await;
    assert_eq!(
        runs,
        expected_scheduled_calls(),
        "the calls of a scheduled lifecycle changed: update SCHEDULED_RUN_CALLS (and think about each new crash point)"
    );
    let points = runs.iter().map(Vec::len).sum::<usize>();
    for point in 1..=points {
        schedule_with_crash(&bed, Some(point), &tsig).await;
    }
}
