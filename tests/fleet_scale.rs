//! A scheduled run over 200 identities with throttling (429), server errors (500, 503) and
//! latency injected into SESv2 (the SES model's chaos rules). Alone in this test binary with the fleet
//! benchmark (ignored unless `make bench`): the chaos rules are global to the emulator.

pub mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::app::ScheduledRun;
use ses_dkim_rotator::assembly::build_rotator;
use ses_dkim_rotator::engine::ports::Deadline;
use ses_dkim_rotator::engine::ports::PortError;
use ses_dkim_rotator::engine::schedule::{Action, MaintainOptions};
use ses_dkim_rotator::metrics;

fn run_for(ids: &[String]) -> ScheduledRun {
    ScheduledRun {
        secret_ids: Some(ids.to_vec()),
        force: false,
        dry_run: false,
    }
}

/// Fault rules on SESv2 (the SES model's chaos API), cleared when dropped (even when the test
/// fails).
struct Chaos;

impl Chaos {
    /// Replaces the SES model's fault rules.
    async fn set(rules: Value) -> Self {
        ses_model("POST", "/_model/chaos", &json!({ "rules": rules })).await;
        Chaos
    }

    /// Each SESv2 call: 2–15 ms latency; 3 % throttled (429), 1 % 500, 1 % 503.
    async fn faults_on_ses() -> Self {
        Self::set(json!([
            {"probability": 0.03, "status": 429, "code": "TooManyRequestsException", "message": "Rate exceeded"},
            {"probability": 0.01, "status": 500, "code": "InternalFailure", "message": "injected server error"},
            {"probability": 0.01, "status": 503, "code": "ServiceUnavailable", "message": "injected unavailability"},
            {"latency_ms": [2, 15]},
        ]))
        .await
    }

    /// Errors injected so far (the `fired` count of every rule with an error status).
    async fn injected_errors(&self) -> u64 {
        let listed = ses_model("GET", "/_model/chaos", &Value::Null).await;
        listed["rules"]
            .as_array()
            .expect("the model lists its rules")
            .iter()
            .filter(|rule| rule.get("status").is_some())
            .map(|rule| rule["fired"].as_u64().expect("fired count"))
            .sum()
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        // Drop cannot await: clear the rules on a thread of its own.
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new().unwrap().block_on(ses_model(
                "DELETE",
                "/_model/chaos",
                &Value::Null,
            ))
        })
        .join()
        .ok();
    }
}

#[tokio::test]
async fn fleet_of_200_rotates_through_throttling_server_errors_and_latency_and_one_broken_secret_fails_alone()
 {
    let bed = TestBed::connect().await;
    let mut fleet = Vec::new();
    for _ in 0..200 {
        fleet.push(bed.seed("fleet", json!({})).await);
    }
    let broken = bed
        .create_secret(
            &format!("dkim/broken-{}", uuid::Uuid::new_v4().simple()),
            "not json",
        )
        .await;
    let mut ids: Vec<String> = fleet.iter().map(|s| s.arn.clone()).collect();
    ids.insert(100, broken.clone());
    let mut settings = bed.settings("rfc2136").await;
    settings.fleet.max_concurrency = 8;
    let rotator = build_rotator(&settings, &bed.aws_config().await);

    let chaos = Chaos::faults_on_ses().await;
    let started = Instant::now();
    let summary = rotator
        .scheduled(&run_for(&ids), Deadline::NONE)
        .await
        .unwrap();
    let wall = started.elapsed();
    let throttled = chaos.injected_errors().await;
    drop(chaos);
    eprintln!(
        "fleet: {} identities in {:.1} s at concurrency 8; {throttled} injected faults (429/500/503) absorbed by retries",
        ids.len(),
        wall.as_secs_f64()
    );

    assert_eq!(summary.identities.len(), 201, "none lost");
    let not_rotated: Vec<(&Action, Option<&str>)> = summary
        .identities
        .iter()
        .filter(|r| r.action != Action::Rotated)
        .map(|r| (&r.action, r.error.as_deref()))
        .collect();
    assert_eq!(
        summary.counts.get(&Action::Rotated),
        Some(&200),
        "{:?}: {not_rotated:#?}",
        summary.counts
    );
    assert_eq!(summary.counts.get(&Action::Failed), Some(&1));
    let failed = &summary.identities[100];
    assert_eq!(failed.secret_id, broken);
    assert_eq!(failed.error_type, Some("CorruptSecret"));
    assert!(throttled > 0, "the chaos rule injected nothing");
    for (seeded, report) in fleet
        .iter()
        .zip(summary.identities.iter().filter(|r| r.secret_id != broken))
    {
        assert_eq!(report.secret_id, seeded.arn, "order kept");
        let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
        assert_eq!(report.selector.as_deref(), current["selector"].as_str());
        assert_eq!(
            bed.ses_selector(&seeded.domain).await.as_deref(),
            current["selector"].as_str()
        );
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }

    // The run's EMF lines parse and carry what happened.
    let rules = metrics::GaugeRules {
        stale_after_days: 104.0,
        home_region: "us-east-1".into(),
    };
    let lines = metrics::fleet_lines("SesDkimRotator", 1_800_000_000_000, &summary, &rules);
    let counts: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(counts["Rotations"], 200);
    assert_eq!(counts["Failures"], 1);
    let (emf, logged): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|line| line.contains("\"_aws\""));
    for line in &emf {
        let v: Value = serde_json::from_str(line).expect("EMF line is JSON");
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "SesDkimRotator");
        for dims in directive["Dimensions"].as_array().unwrap() {
            for dim in dims.as_array().unwrap() {
                assert!(v[dim.as_str().unwrap()].is_string(), "{line}");
            }
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(v[metric["Name"].as_str().unwrap()].is_number(), "{line}");
        }
    }
    // The counts and one gauge line (one region): the metric count does not grow with the
    // fleet; each identity is a log line.
    assert_eq!(emf.len(), 2, "{emf:?}");
    let gauge: Value = serde_json::from_str(emf[1]).unwrap();
    assert_eq!(gauge["Region"], "us-east-1");
    assert_eq!(gauge["StaleKeys"], 0);
    assert_eq!(gauge["AwaitingSes"], 0);
    assert_eq!(logged.len(), 200, "one log line per identity read");

    // A second run finds nothing due: nothing rotated twice (SES has not looked at the new
    // records yet, so they are still PENDING, as on AWS).
    let again = rotator
        .scheduled(&run_for(&ids[..20]), Deadline::NONE)
        .await
        .unwrap();
    assert!(
        again
            .identities
            .iter()
            .all(|r| matches!(r.action, Action::Pending | Action::Failed)),
        "{:?}",
        again.counts
    );
}

/// A fixed delay before every Secrets Manager call: moto cannot inject latency, and the
/// benchmark wants every AWS call to cost what a real round trip does.
struct Delay(Duration);

impl AroundStoreCall for Delay {
    async fn around<T: Send>(
        &self,
        _: StoreCall,
        call: impl Future<Output = Result<T, PortError>> + Send,
    ) -> Result<T, PortError> {
        tokio::time::sleep(self.0).await;
        call.await
    }
}

/// `make bench`: wall time of a scheduled run over `FLEET_BENCH_N` identities (default 100)
/// with 50 ms added to every AWS call (SESv2 by the SES model's chaos rules, Secrets Manager by
/// [`Delay`]), at each concurrency of `FLEET_BENCH_CONCURRENCY` (default `1,4,16`).
#[tokio::test]
#[ignore = "benchmark: run by `make bench`"]
async fn fleet_scaling_benchmark() {
    let (n, levels) = bench_size(
        ("FLEET_BENCH_N", 100),
        ("FLEET_BENCH_CONCURRENCY", "1,4,16"),
    );
    let bed = TestBed::connect().await;
    let _clear = Chaos::set(json!([{ "latency_ms": 50 }])).await;
    let engine = delayed_engine(&bed, bed.settings("rfc2136").await.policy).await;
    let options = MaintainOptions {
        force: false,
        dry_run: false,
        rotation_interval: time::Duration::days(90),
        deadline: Deadline::NONE,
        record_published: false,
    };
    for concurrency in levels {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(bed.seed("bench", json!({})).await.arn);
        }
        let started = Instant::now();
        let summary = engine
            .maintain_fleet(&ids, &options, concurrency, Duration::from_secs(60))
            .await;
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(
            summary.counts.get(&Action::Rotated),
            Some(&n),
            "{:?}",
            summary.counts
        );
        println!(
            "BENCH fleet identities={n} concurrency={concurrency} wall_s={wall:.1} per_identity_ms={:.0} identities_per_s={:.1}",
            wall * 1000.0 / n as f64,
            n as f64 / wall
        );
    }
}

/// A benchmark's size and concurrency levels: each environment variable, else its default.
fn bench_size(size: (&str, usize), levels: (&str, &str)) -> (usize, Vec<usize>) {
    let n = bench_number(size.0, size.1);
    let levels = std::env::var(levels.0)
        .unwrap_or_else(|_| levels.1.into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{}: comma-separated numbers", levels.0))
        })
        .collect();
    (n, levels)
}

/// A benchmark's size from the environment variable `name`, else `default`.
fn bench_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The engine over the stand-ins with 50 ms added to every Secrets Manager call (SESv2's
/// latency is the SES model's chaos rule, which the benchmark sets).
async fn delayed_engine(
    bed: &TestBed,
    policy: ses_dkim_rotator::engine::RotationPolicy,
) -> EngineOver<AroundStore<SecretsManagerStore, Delay>, SesV2Signing> {
    bed.engine_over(
        AroundStore {
            inner: SecretsManagerStore::new(bed.secrets.clone()),
            around: Delay(Duration::from_millis(50)),
        },
        SesV2Signing::new(bed.ses.clone()),
        policy,
    )
    .await
}

/// Counts each Secrets Manager call by operation and delays it by `delay`.
#[derive(Default)]
struct CountAndDelay {
    delay: Duration,
    calls: std::sync::Mutex<std::collections::BTreeMap<&'static str, usize>>,
}

impl AroundStoreCall for CountAndDelay {
    async fn around<T: Send>(
        &self,
        which: StoreCall,
        call: impl Future<Output = Result<T, PortError>> + Send,
    ) -> Result<T, PortError> {
        *self.calls.lock().unwrap().entry(which.api).or_default() += 1;
        tokio::time::sleep(self.delay).await;
        call.await
    }
}

/// An SQS queue on moto, fresh for one benchmark.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A target a benchmark checks: prints the figure beside it, and fails the run when missed.
fn check_target(name: &str, value: f64, limit: f64, unit: &str) {
    let verdict = if value <= limit { "met" } else { "MISSED" };
    println!("BENCH target {name}: {value:.2} {unit} (target <= {limit} {unit}: {verdict})");
    assert!(
        value <= limit,
        "benchmark target missed: {name} {value:.1} > {limit} {unit}"
    );
}

/// `make bench`: the queue planner over `PLANNER_BENCH_N` (default 10,000) tagged secrets on
/// moto, 1 % of them due, 50 ms added to every Secrets Manager call: its AWS calls (one
/// `ListSecrets` page per 100 secrets, one `SendMessageBatch` per 10 messages, nothing per
/// secret) and its time.
#[tokio::test]
#[ignore = "benchmark: run by `make bench`"]
async fn planner_benchmark() {
    use futures_util::StreamExt;
    let n = bench_number("PLANNER_BENCH_N", 10_000);
    let bed = TestBed::connect().await;
    let config = bed.aws_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let (queue_url, _) = bed.queue("planner-bench", None).await;
    let fleet_tag = uuid::Uuid::new_v4().simple().to_string();
    let now = time::OffsetDateTime::now_utc();
    let at = |days: i64| {
        ses_dkim_rotator::engine::time_format::rfc3339(now - time::Duration::days(days))
    };
    let created = Instant::now();
    let due_every = 100;
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (bed, fleet_tag) = (&bed, &fleet_tag);
            // Every 100th secret's key is older than the interval; the others are mid-life.
            let (switched, confirmed) = if i % due_every == 0 {
                (at(100), at(99))
            } else {
                (at(10), at(9))
            };
            async move {
                let tags = [
                    ("dkim-fleet", fleet_tag.as_str()),
                    ("ses-dkim-rotator:switched-to", "s2"),
                    ("ses-dkim-rotator:switched-at", switched.as_str()),
                    ("ses-dkim-rotator:confirmed", "s2"),
                    ("ses-dkim-rotator:confirmed-at", confirmed.as_str()),
                    ("ses-dkim-rotator:previous", "s1"),
                    ("ses-dkim-rotator:retired", "s1"),
                ];
                bed.secrets
                    .create_secret()
                    .name(format!("dkim/planner-{fleet_tag}-{i}"))
                    .secret_string(r#"{"identity":"example.com"}"#)
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| {
                                aws_sdk_secretsmanager::types::Tag::builder()
                                    .key(*k)
                                    .value(*v)
                                    .build()
                            })
                            .collect(),
                    ))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "seeded {n} tagged secrets in {:.0} s",
        created.elapsed().as_secs_f64()
    );

    let mut settings = bed.settings("rfc2136").await;
    settings.fleet.secret_ids.clear();
    settings.fleet.secret_tag = Some(("dkim-fleet".into(), fleet_tag.clone()));
    settings.fleet.work_queue_url = Some(queue_url.clone());
    // Only the due work: the health checks (a seventh of the idle fleet a day, by ARN) would
    // make the count depend on moto's random ARNs.
    settings.fleet.health_check_days = 0;
    let counting = CountAndDelay {
        delay: Duration::from_millis(50),
        ..CountAndDelay::default()
    };
    let engine = bed
        .engine_over(
            AroundStore {
                inner: SecretsManagerStore::new(bed.secrets.clone()),
                around: counting,
            },
            SesV2Signing::new(bed.ses.clone()),
            settings.policy.clone(),
        )
        .await;
    let rotator = ses_dkim_rotator::app::Rotator {
        engine,
        fleet: settings.fleet.clone(),
        notifier: ses_dkim_rotator::adapters::sns::ConfiguredNotifier::Off,
        queue: ses_dkim_rotator::adapters::sqs::SqsWorkQueue::new(sqs.clone(), queue_url.clone()),
    };
    let started = Instant::now();
    let plan = rotator
        .plan_to_queue(
            &ScheduledRun {
                secret_ids: None,
                force: false,
                dry_run: false,
            },
            Deadline::NONE,
        )
        .await
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let calls = rotator
        .engine
        .ports()
        .secrets
        .around
        .calls
        .lock()
        .unwrap()
        .clone();
    let expected_due = n.div_ceil(due_every);
    assert_eq!(plan.queued, expected_due, "{plan:?}");
    assert_eq!(plan.idle, n - expected_due);
    assert_eq!(
        queue_depth(&sqs, &queue_url).await,
        expected_due,
        "messages on the queue"
    );
    let list_pages = calls.get("ListSecrets").copied().unwrap_or(0);
    let batches = expected_due.div_ceil(10);
    println!(
        "BENCH planner secrets={n} due={} wall_s={wall:.1} ListSecrets={list_pages} SendMessageBatch={batches} other_secrets_manager_calls={} ses_calls=0",
        plan.queued,
        calls.values().sum::<usize>() - list_pages
    );
    assert_eq!(
        calls.keys().collect::<Vec<_>>(),
        [&"ListSecrets"],
        "the planner reads nothing per secret: {calls:?}"
    );
    check_target(
        "planner ListSecrets pages per 100 secrets",
        list_pages as f64 * 100.0 / n as f64,
        1.0,
        "pages",
    );
    check_target("planner wall time", wall, 60.0, "s");
}
