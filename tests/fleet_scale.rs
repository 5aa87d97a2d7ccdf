//! A scheduled run over 200 identities with throttling and latency injected into SESv2
//! (`awsim chaos`). Alone in this test binary: the chaos rules are global to the emulator.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;
use serde_json::{Value, json};
use ses_dkim_rotator::assembly::build_rotator;
use ses_dkim_rotator::engine::schedule::Action;
use ses_dkim_rotator::handler::ScheduledRun;
use ses_dkim_rotator::metrics;

fn run_for(ids: &[String]) -> ScheduledRun {
    ScheduledRun {
        secret_ids: Some(ids.to_vec()),
        force: false,
        dry_run: false,
    }
}

/// awsim chaos rules on SESv2, cleared when dropped (even when the test fails).
struct Chaos;

impl Chaos {
    fn awsim(args: &[&str]) -> String {
        let out = Command::new("awsim")
            .arg("chaos")
            .args(args)
            .env(
                "AWSIM_ENDPOINT",
                std::env::var("AWS_ENDPOINT_URL_SESV2").unwrap(),
            )
            .output()
            .expect("awsim chaos");
        assert!(
            out.status.success(),
            "awsim chaos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn throttle_ses(probability: &str) -> Self {
        Self::awsim(&["clear"]);
        Self::awsim(&[
            "add",
            "--service",
            "ses",
            "--probability",
            probability,
            "--error",
            "429,TooManyRequestsException,Rate exceeded",
            "--latency",
            "2-15",
            "--ttl-secs",
            "600",
        ]);
        Chaos
    }

    fn injected(&self) -> u64 {
        let stats = Self::awsim(&["stats"]);
        // The stats print a total; take the first number on the line that mentions it.
        stats
            .lines()
            .find(|l| l.to_ascii_lowercase().contains("total"))
            .and_then(|l| {
                l.split(|c: char| !c.is_ascii_digit())
                    .find(|t| !t.is_empty())
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no total in chaos stats: {stats}"))
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        Self::awsim(&["clear"]);
    }
}

#[tokio::test]
async fn fleet_of_200_rotates_through_throttling_and_latency_and_one_broken_secret_fails_alone() {
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

    let chaos = Chaos::throttle_ses("0.05");
    let started = Instant::now();
    let summary = rotator.scheduled(&run_for(&ids), None).await.unwrap();
    let wall = started.elapsed();
    let throttled = chaos.injected();
    drop(chaos);
    eprintln!(
        "fleet: {} identities in {:.1} s at concurrency 8; {throttled} injected 429s absorbed by retries",
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
    assert_eq!(failed.error_type.as_deref(), Some("CorruptSecret"));
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

    // A second run finds nothing due: all skipped, nothing rotated twice.
    let again = rotator.scheduled(&run_for(&ids[..20]), None).await.unwrap();
    assert!(
        again.identities.iter().all(|r| matches!(
            r.action,
            Action::Skipped | Action::Confirmed | Action::Failed
        )),
        "{:?}",
        again.counts
    );
}

/// `make bench`: wall time of a scheduled run over `FLEET_BENCH_N` identities (default 100)
/// with 50 ms added to every SESv2 call, at concurrency 1, 4 and 16.
#[tokio::test]
#[ignore = "benchmark: run by `make bench`"]
async fn fleet_scaling_benchmark() {
    let n: usize = std::env::var("FLEET_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let bed = TestBed::connect().await;
    Chaos::awsim(&["clear"]);
    Chaos::awsim(&[
        "add",
        "--service",
        "ses",
        "--latency",
        "50",
        "--ttl-secs",
        "3600",
    ]);
    let _clear = Chaos;
    for concurrency in [1usize, 4, 16] {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(bed.seed("bench", json!({})).await.arn);
        }
        let mut settings = bed.settings("rfc2136").await;
        settings.fleet.max_concurrency = concurrency;
        let rotator = build_rotator(&settings, &bed.aws_config().await);
        let started = Instant::now();
        let summary = rotator.scheduled(&run_for(&ids), None).await.unwrap();
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(summary.counts.get(&Action::Rotated), Some(&n));
        println!(
            "BENCH fleet identities={n} concurrency={concurrency} wall_s={wall:.1} per_identity_ms={:.0}",
            wall * 1000.0 / n as f64
        );
    }
}
