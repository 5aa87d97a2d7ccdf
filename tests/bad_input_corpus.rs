//! The bad-input corpus in `tests/corpus/`: malformed events, secrets, settings and DNS
//! answers, one data file each. Every case must be refused with an error that says what is
//! wrong, and (for secrets, run through a real rotation on the emulators) change nothing.

#[cfg(feature = "emulators")]
pub mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

#[cfg(feature = "emulators")]
use common::*;
use serde_json::Value;
#[cfg(feature = "emulators")]
use serde_json::json;
use ses_dkim_rotator::config::Settings;
use ses_dkim_rotator::engine::dns_check::{TxtAnswer, check_dkim_record};
use ses_dkim_rotator::engine::identity::AllowedIdentities;
#[cfg(feature = "emulators")]
use ses_dkim_rotator::engine::rotation::Outcome;
use ses_dkim_rotator::engine::rotation::RotationRequest;
use ses_dkim_rotator::engine::rotation::Step;
#[cfg(feature = "emulators")]
use ses_dkim_rotator::engine::secret_doc::DkimSecret;
use ses_dkim_rotator::engine::{Engine, RotationPolicy};
use ses_dkim_rotator::handler::parse_invocation;
use ses_dkim_rotator::testing::PublishMode;
use ses_dkim_rotator::testing::memory_ports;

/// SES's whole state (every identity in the SES model) is compared before and after each
/// corpus step, and the other emulator tests in this binary run at the same time and write to
/// SES. They hold this lock shared; the corpus test holds it alone while it compares.
#[cfg(feature = "emulators")]
static SES_WRITERS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn cases(kind: &str) -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut out: Vec<(PathBuf, Value)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let v = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn the_corpus_has_at_least_forty_cases() {
    let total: usize = ["events", "secrets", "settings", "dns"]
        .iter()
        .map(|k| cases(k).len())
        .sum();
    assert!(total >= 40, "{total}");
}

#[test]
fn malformed_events_are_refused_naming_the_problem() {
    for (path, case) in cases("events") {
        let err = parse_invocation(&case["input"]).expect_err(&path.display().to_string());
        assert_eq!(err.error_type(), case["error_type"], "{}", path.display());
        let text = err.to_string();
        assert!(
            text.contains(case["contains"].as_str().unwrap()),
            "{}: {text}",
            path.display()
        );
        assert!(
            text.len() < 2_000,
            "{}: the error echoes the payload",
            path.display()
        );
    }
}

#[test]
fn bad_settings_stop_start_up_naming_the_variable() {
    for (path, case) in cases("settings") {
        let env: HashMap<String, String> = serde_json::from_value(case["env"].clone()).unwrap();
        let err = Settings::from_lookup(|name| env.get(name).cloned())
            .expect_err(&path.display().to_string());
        assert_eq!(err.error_type(), case["error_type"], "{}", path.display());
        let text = err.to_string();
        assert!(
            text.contains(case["variable"].as_str().unwrap()),
            "{}: {text}",
            path.display()
        );
        assert!(
            text.contains(case["contains"].as_str().unwrap()),
            "{}: {text}",
            path.display()
        );
    }
}

#[test]
fn dns_answers_get_the_right_outcome() {
    for (path, case) in cases("dns") {
        let records: Vec<String> = serde_json::from_value(case["records"].clone()).unwrap();
        let answer = if records.is_empty() {
            TxtAnswer::NoRecords
        } else {
            TxtAnswer::Records(records)
        };
        let check = check_dkim_record(&Ok(answer), "EXPECTED");
        assert_eq!(check.kind(), case["outcome"], "{}", path.display());
        let explained = check.explain("s._domainkey.example.com", "\"v=DKIM1; k=rsa; p=EXPECTED\"");
        assert!(
            explained.contains("s._domainkey.example.com"),
            "{explained}"
        );
    }
}

#[tokio::test]
async fn corrupt_secrets_change_nothing_at_any_step_in_memory() {
    let start = time::macros::datetime!(2030-01-01 00:00 UTC);
    for (path, case) in cases("secrets") {
        let body = case["secret_string"].as_str().unwrap();
        let ports = memory_ports(PublishMode::Route53, start);
        let (secrets, ses, zone) = (ports.secrets.clone(), ports.ses.clone(), ports.dns.clone());
        ses.create_identity("x.example.com");
        let arn = secrets.create_secret("corpus", body);
        let token = secrets.start_rotation(&arn).unwrap();
        let engine = Engine::new(
            ports,
            RotationPolicy {
                allowed_identities: AllowedIdentities::parse("*").unwrap(),
                ..RotationPolicy::default()
            },
        );
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            let before = (
                secrets.snapshot(),
                ses.state_of("x.example.com"),
                zone.names(),
            );
            let err = engine
                .run_step(&RotationRequest::new(step, &arn, &token))
                .await
                .expect_err(&path.display().to_string());
            assert!(
                matches!(err.error_type(), "CorruptSecret" | "PendingMissing"),
                "{} at {step}: {err}",
                path.display()
            );
            assert!(
                err.to_string().len() < 2_000,
                "{}: echoes the secret",
                path.display()
            );
            assert_eq!(
                (
                    secrets.snapshot(),
                    ses.state_of("x.example.com"),
                    zone.names()
                ),
                before,
                "{} at {step}: state changed",
                path.display()
            );
        }
    }
}

#[cfg(feature = "emulators")]
#[tokio::test]
async fn corrupt_secrets_are_refused_by_a_real_rotation_and_nothing_changes() {
    let _alone = SES_WRITERS.write().await;
    let bed = TestBed::connect().await;
    let engine = bed.engine(allow_all()).await;
    for (path, case) in cases("secrets") {
        let body = case["secret_string"].as_str().unwrap();
        let hint = case["contains"].as_str().unwrap();
        let parsed = DkimSecret::parse(body).expect_err(&path.display().to_string());
        assert!(parsed.contains(hint), "{}: {parsed}", path.display());

        let name = format!("dkim/corpus-{}", uuid::Uuid::new_v4().simple());
        let arn = bed.create_secret(&name, body).await;
        let token = bed.start_rotation(&arn).await;
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            let before = bed.whole_state(&arn).await;
            let err = engine
                .run_step(&request(step, &arn, &token))
                .await
                .expect_err(&format!("{} at {step}", path.display()));
            assert!(
                matches!(err.error_type(), "CorruptSecret" | "PendingMissing"),
                "{} at {step}: {err}",
                path.display()
            );
            let text = err.to_string();
            if step == Step::CreateSecret {
                assert!(text.contains(hint), "{}: {text}", path.display());
            }
            assert!(
                text.len() < 2_000,
                "{}: the error echoes the secret",
                path.display()
            );
            assert_eq!(
                bed.whole_state(&arn).await,
                before,
                "{} at {step}: something changed (secret versions, tags or SES)",
                path.display()
            );
        }
        assert!(
            !bed.has_value(&arn, &token).await,
            "{}: a pending value was stored",
            path.display()
        );
        assert_eq!(bed.stages(&arn).await.len(), 2, "{}", path.display());
    }
}

#[cfg(feature = "emulators")]
#[tokio::test]
async fn a_pending_version_for_another_identity_is_refused() {
    let _shared = SES_WRITERS.read().await;
    let bed = TestBed::connect().await;
    let seeded = bed.seed("deputy", json!({})).await;
    let other = bed.seed("deputyother", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    // Rotate `other` once; then plant its key as `seeded`'s pending value.
    let token = bed.start_rotation(&other.arn).await;
    rotate(&bed, &engine, &other, &token).await;
    let foreign = bed.secret_json(&other.arn, "AWSCURRENT").await;
    let token = bed.start_rotation(&seeded.arn).await;
    bed.secrets
        .put_secret_value()
        .secret_id(&seeded.arn)
        .client_request_token(&token)
        .secret_string(foreign.to_string())
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    for step in [Step::CreateSecret, Step::TestSecret, Step::FinishSecret] {
        let err = expect_error(&engine, step, &seeded.arn, &token, "IdentityMismatch").await;
        assert!(err.to_string().contains(&other.domain), "{err}");
    }
    assert_ne!(
        bed.ses_dkim(&seeded.domain)
            .await
            .origin
            .as_ref()
            .map(|o| o.as_str()),
        Some("EXTERNAL")
    );
    bed.assert_invariant(&other.domain, &other.arn).await;
}

#[cfg(feature = "emulators")]
#[tokio::test]
async fn concurrent_invocations_on_one_secret_make_one_key() {
    let _shared = SES_WRITERS.read().await;
    let bed = TestBed::connect().await;
    let seeded = bed.seed("concurrent", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;
    let req = request(Step::CreateSecret, &seeded.arn, &token);
    let (a, b, c) = tokio::join!(
        engine.run_step(&req),
        engine.run_step(&req),
        engine.run_step(&req)
    );
    let reports = [a.unwrap(), b.unwrap(), c.unwrap()];
    assert!(reports.iter().any(|r| r.outcome == Outcome::KeyCreated));
    // Real Secrets Manager refuses a second, different value for one token
    // (ResourceExistsException) and the losers re-read the winner's key; moto lets the last
    // write win instead. Either way exactly one key is stored, and every later step uses it.
    let pending = bed.secret_json(&seeded.arn, "AWSPENDING").await;
    let stored = pending["selector"].as_str().map(str::to_owned);
    assert!(reports.iter().any(|r| r.selector == stored), "{stored:?}");
    let selectors = [stored.clone()];
    for step in [Step::SetSecret, Step::TestSecret, Step::FinishSecret] {
        let req = request(step, &seeded.arn, &token);
        let (a, b) = tokio::join!(engine.run_step(&req), engine.run_step(&req));
        assert!(a.is_ok() || b.is_ok(), "{step}: {a:?} {b:?}");
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    assert_eq!(bed.ses_selector(&seeded.domain).await, selectors[0]);
}
