//! Fleets under AWS's quotas, on the in-memory ports held to them.
//!
//! The fake SES answers `TooManyRequestsException` past 1 request per second per region
//! ([`SesQuota::AWS`], "Service quotas in Amazon SES"), and the clock follows tokio's paused
//! time, so a whole wave runs in virtual time with every task at once and no real wait. The
//! product's side is [`PacedSes`]: each call takes a slot of this process's share first.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::json;
use ses_dkim_rotator::app::worker::THROTTLED_DELAY;
use ses_dkim_rotator::app::{Rotator, ScheduledRun};
use ses_dkim_rotator::config::Settings;
use ses_dkim_rotator::engine::identity::AllowedIdentities;
use ses_dkim_rotator::engine::pacing::{PACED_RETRIES, PacedSes, Pacer, Rate};
use ses_dkim_rotator::engine::ports::{
    Clock, Deadline, DkimSigningService, FailureKind, PortSet, STAGE_CURRENT, STAGE_PENDING,
    SecretStore,
};
use ses_dkim_rotator::engine::schedule::{Action, FleetSummary, MaintainOptions};
use ses_dkim_rotator::engine::tags::TAG_SWITCHED_TO;
use ses_dkim_rotator::engine::triage::WorkReason;
use ses_dkim_rotator::engine::{Engine, RotationPolicy};
use ses_dkim_rotator::notifications::NotificationKind;
use ses_dkim_rotator::testing::{
    FakeSes, HOME_REGION, ManualClock, MemoryQueue, MemorySecrets, MemoryZone, PublishMode,
    RecordingNotifier, SesQuota,
};
use ses_dkim_rotator::work_queue::WorkItem;
use time::OffsetDateTime;
use time::macros::datetime;

const START: OffsetDateTime = datetime!(2030-01-10 08:00 UTC);

/// A fleet of `n` never-rotated identities, SES held to AWS's quota.
struct Fleet {
    secrets: MemorySecrets,
    ses: FakeSes,
    zone: MemoryZone,
    clock: ManualClock,
    arns: Vec<String>,
}

impl Fleet {
    fn new(n: usize) -> Self {
        let clock = ManualClock::on_tokio_time(START);
        let ses = FakeSes::new(clock.clone());
        ses.enforce_quota(SesQuota::AWS);
        let secrets = MemorySecrets::new();
        let arns = (0..n)
            .map(|i| {
                let domain = format!("d{i}.example.com");
                ses.create_identity(&domain);
                secrets.create_secret(
                    &format!("dkim/{domain}"),
                    &json!({ "identity": domain }).to_string(),
                )
            })
            .collect();
        Self {
            secrets,
            ses,
            zone: MemoryZone::new(PublishMode::Route53),
            clock,
            arns,
        }
    }

    fn engine<S: DkimSigningService>(
        &self,
        ses: S,
    ) -> Engine<PortSet<MemorySecrets, S, MemoryZone, MemoryZone, ManualClock>> {
        Engine::new(
            PortSet {
                secrets: self.secrets.clone(),
                ses,
                dns: self.zone.clone(),
                lookup: self.zone.clone(),
                clock: self.clock.clone(),
            },
            RotationPolicy {
                allowed_identities: AllowedIdentities::parse("*").unwrap(),
                ..RotationPolicy::default()
            },
        )
    }

    /// SES behind a pacer at `per_second` (no burst), refusing slots further than `max_wait`.
    fn paced(&self, per_second: f64, max_wait: Duration) -> PacedSes<FakeSes, ManualClock> {
        PacedSes::new(
            self.ses.clone(),
            Arc::new(Pacer::new(
                Rate {
                    per_second,
                    burst: 1,
                },
                max_wait,
            )),
            self.clock.clone(),
            HOME_REGION,
        )
    }

    /// Every identity maintained at once, [`CONCURRENCY`] at a time: a wave.
    async fn wave<S: DkimSigningService>(
        &self,
        engine: &Engine<PortSet<MemorySecrets, S, MemoryZone, MemoryZone, ManualClock>>,
    ) -> FleetSummary {
        engine
            .maintain_fleet(&self.arns, &options(), CONCURRENCY, Duration::from_secs(20))
            .await
    }

    /// One SQS record (message id `m<i>`) per identity, in order.
    fn records(&self) -> Vec<(String, WorkItem)> {
        self.arns
            .iter()
            .enumerate()
            .map(|(i, arn)| (format!("m{i}"), item(arn)))
            .collect()
    }

    /// The most SES calls admitted in any `window` (the rate SES saw).
    fn busiest(&self, window: time::Duration) -> usize {
        let admitted = self.ses.admitted();
        let times = admitted.get(HOME_REGION).cloned().unwrap_or_default();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .filter(|t| **t < times[i] + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

fn options() -> MaintainOptions {
    MaintainOptions {
        force: false,
        dry_run: false,
        rotation_interval: time::Duration::days(90),
        deadline: Deadline::NONE,
        record_published: false,
    }
}

const WAVE: usize = 40;
const CONCURRENCY: usize = 8;

#[tokio::test(start_paused = true)]
async fn the_bed_throttles_an_unpaced_wave_as_ses_would() {
    let fleet = Fleet::new(WAVE);
    let engine = fleet.engine(fleet.ses.clone());
    let summary = fleet.wave(&engine).await;
    assert!(fleet.ses.throttled() > 0, "the quota never bit");
    let throttled = summary.counts.get(&Action::Throttled).copied().unwrap_or(0);
    assert!(throttled > 0, "{:?}", summary.counts);
    assert_eq!(
        summary.counts.get(&Action::Failed),
        None,
        "throttles are not failures"
    );
    assert!(fleet.busiest(time::Duration::seconds(1)) <= 1);
}

#[tokio::test(start_paused = true)]
async fn a_paced_wave_is_never_throttled_and_runs_near_the_quota_bound() {
    let fleet = Fleet::new(WAVE);
    let engine = fleet.engine(fleet.paced(1.0, Duration::from_secs(20)));
    let started = fleet.clock.now();
    let summary = fleet.wave(&engine).await;
    assert_eq!(fleet.ses.throttled(), 0, "{:?}", summary.counts);
    assert_eq!(
        summary.counts.get(&Action::Rotated),
        Some(&WAVE),
        "{:?}",
        summary.counts
    );
    // The quota bound: the wave's SES calls at 1 per second. Pacing must reach 0.8 of it.
    let calls = fleet.ses.calls().len() as f64;
    let took = (fleet.clock.now() - started).as_seconds_f64();
    let bound = calls / SesQuota::AWS.per_second;
    eprintln!(
        "wave of {WAVE}: {calls} SES calls ({:.1} per identity) in {took:.1} s virtual; quota bound {bound:.1} s ({:.2} of it)",
        calls / WAVE as f64,
        bound / took
    );
    assert!(
        took <= bound / 0.8,
        "{calls} SES calls took {took:.1} s; the quota allows {bound:.1} s"
    );
    assert!(fleet.busiest(time::Duration::seconds(10)) <= 10);
}

/// The in-memory ports with SES paced.
type PacedPorts =
    PortSet<MemorySecrets, PacedSes<FakeSes, ManualClock>, MemoryZone, MemoryZone, ManualClock>;

#[tokio::test(start_paused = true)]
async fn a_call_ses_throttles_anyway_is_sent_again_on_the_next_turn() {
    let fleet = Fleet::new(1);
    let paced = fleet.paced(0.9, Duration::from_secs(20));
    // Another caller in the account takes this second's request first.
    let domain = "d0.example.com";
    fleet.ses.dkim_state(domain, None).await.unwrap();
    let started = fleet.clock.now();
    let state = paced.dkim_state(domain, None).await;
    assert!(state.is_ok(), "{state:?}");
    assert_eq!(
        fleet.ses.throttled(),
        1,
        "the first paced attempt met the quota"
    );
    assert!(fleet.clock.now() - started >= time::Duration::seconds(1));
}

/// A queue worker, its engine over SES paced at `per_second` with at most `max_wait`.
fn worker(
    fleet: &Fleet,
    per_second: f64,
    max_wait: Duration,
) -> Rotator<PacedPorts, RecordingNotifier, MemoryQueue> {
    let mut settings = Settings::from_lookup(|_| None).unwrap().fleet;
    settings.work_queue_url = Some("https://sqs.example/dkim-work".into());
    Rotator {
        engine: fleet.engine(fleet.paced(per_second, max_wait)),
        fleet: settings,
        notifier: RecordingNotifier::default(),
        queue: MemoryQueue::default(),
    }
}

fn batch(items: &[(String, WorkItem)]) -> SqsEvent {
    serde_json::from_value(json!({
        "Records": items.iter().map(|(id, item)| json!({
            "messageId": id, "receiptHandle": "r", "body": item.to_body(), "attributes": {},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:dkim-work", "awsRegion": "us-east-1"
        })).collect::<Vec<_>>()
    }))
    .unwrap()
}

fn item(arn: &str) -> WorkItem {
    WorkItem {
        secret_id: arn.to_owned(),
        force: false,
        dns_rechecks: 0,
    }
}

#[tokio::test(start_paused = true)]
async fn throttled_work_comes_back_later_without_failing_or_notifying() {
    let fleet = Fleet::new(3);
    let rotator = worker(&fleet, 1.0, Duration::from_secs(20));
    // SES answers 429 to every attempt, the paced retries included (another tool in the
    // account keeps taking the quota): the first identity's switch is refused mid-rotation.
    for _ in 0..=PACED_RETRIES {
        fleet.ses.fail_next(
            "PutEmailIdentityDkimSigningAttributes",
            FailureKind::Throttled,
        );
    }
    let records = fleet.records();
    let response = rotator.work(batch(&records), Deadline::NONE).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "a throttle counted toward the dead-letter queue: {:?}",
        response.batch_item_failures
    );
    let kinds: Vec<_> = rotator.notifier.sent().iter().map(|n| n.kind).collect();
    assert!(
        !kinds.contains(&NotificationKind::Failure),
        "a throttle notified a failure: {kinds:?}"
    );
    let back = rotator.queue.drain();
    assert_eq!(back.len(), 1, "{back:?}");
    let (again, delay) = &back[0];
    assert_eq!(again.secret_id, fleet.arns[0]);
    assert!(
        *delay >= THROTTLED_DELAY && *delay < THROTTLED_DELAY * 2,
        "{delay:?}"
    );
    assert!(!switched(&fleet, &fleet.arns[0]));

    // Delivered again after its delay, it resumes where it stopped (the same key) and ends
    // switched; nothing ever failed.
    let pending_key = fleet.secrets.json(&fleet.arns[0], STAGE_PENDING).unwrap();
    tokio::time::sleep(*delay).await;
    let response = rotator
        .work(batch(&[("m0-again".into(), again.clone())]), Deadline::NONE)
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(rotator.queue.drain().is_empty());
    assert!(fleet.arns.iter().all(|arn| switched(&fleet, arn)));
    assert_eq!(
        fleet.secrets.json(&fleet.arns[0], STAGE_CURRENT).unwrap()["selector"],
        pending_key["selector"],
        "the retry made a new key instead of resuming"
    );
    assert_eq!(
        fleet.ses.throttled(),
        0,
        "the quota itself never refused a paced call"
    );
}

fn switched(fleet: &Fleet, arn: &str) -> bool {
    fleet.secrets.tags(arn).contains_key(TAG_SWITCHED_TO)
}

#[tokio::test(start_paused = true)]
async fn records_without_time_to_start_go_back_to_the_queue_unfailed() {
    let fleet = Fleet::new(2);
    let rotator = worker(&fleet, 1.0, Duration::from_secs(20));
    let records = fleet.records();
    // Less than DKIM_IDENTITY_BUDGET_SECONDS (20 s) left: nothing starts.
    let deadline = Deadline::at(fleet.clock.now() + time::Duration::seconds(10));
    let response = rotator.work(batch(&records), deadline).await;
    assert!(response.batch_item_failures.is_empty());
    let back: Vec<String> = rotator
        .queue
        .drain()
        .into_iter()
        .map(|(item, _)| item.secret_id)
        .collect();
    assert_eq!(back, fleet.arns);
    assert!(fleet.ses.calls().is_empty(), "a record started anyway");
}

#[tokio::test(start_paused = true)]
async fn an_onboarding_larger_than_the_cap_rotates_over_runs_and_watching_is_never_held_back() {
    let fleet = Fleet::new(30);
    for arn in &fleet.arns {
        fleet
            .secrets
            .set_tags(arn, &[("dkim-rotator", "managed")])
            .await
            .unwrap();
    }
    let mut rotator = worker(&fleet, 1.0, Duration::from_secs(20));
    rotator.fleet.secret_tag = Some(("dkim-rotator".into(), "managed".into()));
    rotator.fleet.max_rotations_per_run = 12;
    let run = ScheduledRun {
        secret_ids: None,
        force: false,
        dry_run: false,
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        let plan = rotator.plan_to_queue(&run).await.unwrap();
        seen.push((
            plan.reasons
                .get(&WorkReason::Untracked)
                .copied()
                .unwrap_or(0),
            plan.reasons.get(&WorkReason::Watch).copied().unwrap_or(0),
            plan.deferred,
        ));
        let records: Vec<(String, WorkItem)> = rotator
            .queue
            .drain()
            .into_iter()
            .enumerate()
            .map(|(i, (item, _))| (format!("m{i}"), item))
            .collect();
        for chunk in records.chunks(10) {
            let response = rotator.work(batch(chunk), Deadline::NONE).await;
            assert!(response.batch_item_failures.is_empty());
        }
    }
    // (rotations sent, watches sent, rotations held back) per run: the cap holds rotations
    // to 12 a run; SES still verifying the earlier ones, they are watched beside the new ones.
    assert_eq!(seen, [(12, 0, 18), (12, 12, 6), (6, 24, 0)]);
    assert!(fleet.arns.iter().all(|arn| switched(&fleet, arn)));
    assert_eq!(fleet.ses.throttled(), 0);
}

/// A fleet of one whose zone serves a written record `delay` after the write.
fn propagating_fleet(delay: Duration) -> Fleet {
    let mut fleet = Fleet::new(1);
    fleet.zone = MemoryZone::propagating(PublishMode::Route53, fleet.clock.clone(), delay);
    fleet
}

#[tokio::test(start_paused = true)]
async fn a_worker_publishes_and_comes_back_later_instead_of_waiting_for_propagation() {
    let propagation = Duration::from_secs(40);

    // Before (an invocation that may wait, as a scheduled run does): it is held until DNS
    // serves the record.
    let waiting = propagating_fleet(propagation);
    let engine = waiting.engine(waiting.paced(1.0, Duration::from_secs(20)));
    let started = waiting.clock.now();
    let report = engine
        .maintain(
            &waiting.arns[0],
            &MaintainOptions {
                deadline: Deadline::at(started + time::Duration::seconds(60)),
                ..options()
            },
        )
        .await;
    assert_eq!(report.action, Action::Rotated, "{report:?}");
    let held = (waiting.clock.now() - started).as_seconds_f64();
    assert!(held >= propagation.as_secs_f64(), "{held}");

    // After: a queue worker publishes, looks once, and hands the identity back; later visits
    // only look, then switch. No visit waits for propagation.
    let fleet = propagating_fleet(propagation);
    let rotator = worker(&fleet, 1.0, Duration::from_secs(20));
    let mut message = ("m0".to_owned(), item(&fleet.arns[0]));
    let mut visits = Vec::new();
    for visit in 1..=5 {
        let started = fleet.clock.now();
        let deadline = Deadline::at(started + time::Duration::seconds(60));
        let response = rotator.work(batch(&[message.clone()]), deadline).await;
        visits.push((fleet.clock.now() - started).as_seconds_f64());
        assert!(response.batch_item_failures.is_empty(), "visit {visit}");
        let back = rotator.queue.drain();
        let Some((again, delay)) = back.into_iter().next() else {
            break;
        };
        assert_eq!(again.dns_rechecks, visit, "{again:?}");
        tokio::time::sleep(delay).await;
        message = (format!("m{visit}"), again);
    }
    assert!(switched(&fleet, &fleet.arns[0]), "{visits:?}");
    let writes = fleet
        .zone
        .calls()
        .iter()
        .filter(|c| c.ends_with("Upsert"))
        .count();
    assert_eq!(writes, 1, "a later visit wrote the record again");
    // Published at ~0 s, looked at ~30 s (not served), served at ~90 s: three short visits.
    assert_eq!(visits.len(), 3, "{visits:?}");
    assert!(visits.iter().all(|s| *s <= 5.0), "{visits:?}");
    let kinds: Vec<_> = rotator.notifier.sent().iter().map(|n| n.kind).collect();
    assert!(
        !kinds.contains(&NotificationKind::Failure),
        "propagation notified a failure: {kinds:?}"
    );
    eprintln!(
        "one rotation, record served {}s after the write: waiting in the invocation {held:.1} s; \
         handed back: {} visits, {:.1} s of invocation in all ({visits:?}), 1 write",
        propagation.as_secs(),
        visits.len(),
        visits.iter().sum::<f64>()
    );
}
