//! Every log line of real rotations (Secrets Manager steps with a `RotationToken`, RFC 2136
//! with a TSIG key, hint mode, a failure, a scheduled run, with an SNS topic configured so
//! every notification is built and sent) is captured at TRACE level from every thread (a
//! global subscriber: the SDK's and the DNS library's own threads and blocking tasks included)
//! and searched for secret material: any private key, the `RotationToken`, the TSIG key. This
//! test is alone in its binary, so the global subscriber sees nothing else. It calls the handler
//! with its own subscriber, so the runtime's own logging and the binary's filter are out of its
//! sight: `scripts/log_scan.py` (in `make test`) scans the real binary's output for those.

pub mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use ses_dkim_rotator::app::ScheduledRun;
use ses_dkim_rotator::assembly::build_rotator;
use ses_dkim_rotator::engine::ports::Deadline;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fragments of a secret that must never appear: its middle, in 32-character windows.
fn fragments(secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 48 {
        return vec![secret.to_owned()];
    }
    (8..chars.len() - 40)
        .step_by(16)
        .map(|i| chars[i..i + 32].iter().collect())
        .collect()
}

#[tokio::test]
async fn no_log_line_holds_a_private_key_rotation_token_or_tsig_key() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let bed = TestBed::connect().await;
    let topic = bed.topic("dkim-logs").await;
    let rotation_token = format!(
        "rotation-token-{}-do-not-log",
        uuid::Uuid::new_v4().simple()
    );
    let mut private_keys = Vec::new();
    let mut secrets = Vec::new();

    for publisher in ["rfc2136", "hint"] {
        let seeded = bed.seed("logs", json!({})).await;
        let mut settings = bed.settings(publisher).await;
        settings.fleet.secret_ids = vec![seeded.arn.clone()];
        settings.fleet.notify_topic_arn = Some(topic.clone());
        let rotator = build_rotator(&settings, &bed.aws_config().await);
        let token = bed.start_rotation(&seeded.arn).await;
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            let event = LambdaEvent::new(
                json!({"Step": step, "SecretId": seeded.arn, "ClientRequestToken": token, "RotationToken": rotation_token}),
                Context::default(),
            );
            let result = rotator.handle(event).await;
            if let Ok(report) = &result {
                assert!(!report.to_string().contains(&rotation_token));
            }
            if publisher == "hint" && step == "setSecret" {
                // Add the record a person would add, so the rotation finishes.
                let pending = bed.secret_json(&seeded.arn, "AWSPENDING").await;
                let value = pending["dns_value"].as_str().unwrap();
                dns_add_txt(
                    pending["dns_name"].as_str().unwrap(),
                    &ses_dkim_rotator::engine::key::split_txt_strings(value),
                );
            }
            result.unwrap_or_else(|e| panic!("{publisher} {step}: {e}"));
        }
        // A scheduled run over the same secret (forced), then a failing one.
        rotator
            .scheduled(
                &ScheduledRun {
                    secret_ids: None,
                    force: true,
                    dry_run: false,
                },
                Deadline::NONE,
            )
            .await
            .unwrap();
        for stage in ["AWSCURRENT", "AWSPREVIOUS"] {
            if let Some(doc) = bed.try_secret_json(&seeded.arn, stage).await
                && let Some(key) = doc["private_key"].as_str()
            {
                private_keys.push(key.to_owned());
            }
        }
        secrets.push(seeded);
    }
    // A secret rotated by the schedule alone (no Secrets Manager rotation).
    let scheduled = bed.seed("logsched", json!({})).await;
    let mut settings = bed.settings("rfc2136").await;
    settings.fleet.notify_topic_arn = Some(topic.clone());
    let rotator = build_rotator(&settings, &bed.aws_config().await);
    let run = ScheduledRun {
        secret_ids: Some(vec![scheduled.arn.clone()]),
        force: false,
        dry_run: false,
    };
    rotator.scheduled(&run, Deadline::NONE).await.unwrap();
    let current = bed.secret_json(&scheduled.arn, "AWSCURRENT").await;
    private_keys.push(current["private_key"].as_str().unwrap().to_owned());
    let broken = bed
        .create_secret(
            &format!("dkim/logs-{}", uuid::Uuid::new_v4().simple()),
            "{\"identity\": 5}",
        )
        .await;
    let token = bed.start_rotation(&broken).await;
    let event = LambdaEvent::new(
        json!({"Step": "createSecret", "SecretId": broken, "ClientRequestToken": token, "RotationToken": rotation_token}),
        Context::default(),
    );
    assert!(rotator.handle(event).await.is_err());

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines = logs.lines().count();
    assert!(
        lines > 100,
        "only {lines} log lines captured: the capture is not working"
    );
    assert!(
        logs.contains("publish this DKIM TXT record"),
        "the hint line is missing"
    );
    assert!(
        logs.contains("Publish"),
        "no SNS call was logged: the notifications did not run"
    );
    assert!(private_keys.len() >= 3, "{}", private_keys.len());
    let tsig = std::env::var("DKIM_TEST_TSIG_SECRET").unwrap();
    let mut forbidden: Vec<(String, &str)> = Vec::new();
    for key in &private_keys {
        // The first third of a PKCS#1 key encodes the modulus, which the public TXT record
        // also carries; the rest (private exponent, primes, CRT values) must never appear.
        let private_part: String = key.chars().skip(key.len() * 35 / 100).collect();
        forbidden.extend(
            fragments(&private_part)
                .into_iter()
                .map(|f| (f, "private key")),
        );
    }
    forbidden.push((rotation_token.clone(), "RotationToken"));
    forbidden.extend(fragments(&tsig).into_iter().map(|f| (f, "TSIG key")));
    for (fragment, what) in &forbidden {
        if let Some(line) = logs.lines().find(|l| l.contains(fragment.as_str())) {
            panic!(
                "a log line holds a {what}: {}",
                &line[..line.len().min(300)]
            );
        }
    }
    eprintln!(
        "scanned {lines} log lines for {} secret fragments",
        forbidden.len()
    );
}
