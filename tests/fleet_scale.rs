//! A scheduled run over 200 identities with throttling (429), server errors (500, 503) and
//! latency injected into SESv2 (the SES model's chaos rules). Alone in this test binary with the fleet
//! benchmark (ignored unless `make bench`): the chaos rules are global to the emulator.

pub mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::assembly::build_rotator;
use ses_dkim_rotator::engine::ports::Deadline;
use ses_dkim_rotator::engine::ports::PortError;
use ses_dkim_rotator::engine::schedule::{Action, MaintainOptions};
use ses_dkim_rotator::handler::ScheduledRun;
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
    assert_eq!(
        summary.counts.get(&Action::Rotated),
        Some(&200),
        "{:?}",
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
    let lines = metrics::fleet_lines("SesDkimRotator", 1_800_000_000_000, &summary);
    let counts: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(counts["Rotations"], 200);
    assert_eq!(counts["Failures"], 1);
    for line in &lines {
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
    assert_eq!(
        lines.len(),
        1 + 200,
        "one key-age line per rotated identity"
    );

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
    let n: usize = std::env::var("FLEET_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let levels: Vec<usize> = std::env::var("FLEET_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .map(|c| c.trim().parse().expect("FLEET_BENCH_CONCURRENCY: numbers"))
        .collect();
    let bed = TestBed::connect().await;
    let _clear = Chaos::set(json!([{ "latency_ms": 50 }])).await;
    let policy = bed.settings("rfc2136").await.policy;
    let engine = bed
        .engine_over(
            AroundStore {
                inner: SecretsManagerStore::new(bed.secrets.clone()),
                around: Delay(Duration::from_millis(50)),
            },
            SesV2Signing::new(bed.ses.clone()),
            policy,
        )
        .await;
    let options = MaintainOptions {
        force: false,
        dry_run: false,
        rotation_interval: time::Duration::days(90),
        deadline: Deadline::NONE,
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
