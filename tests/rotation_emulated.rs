//! End-to-end rotation through the real SDK clients against the emulators
//! (moto: Secrets Manager; awsim: SESv2). Each test seeds its own identity and secret, and
//! checks SES's state and the secret's stages after the steps it runs.

pub mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::json;
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::engine::RotationPolicy;
use ses_dkim_rotator::engine::identity::AllowedIdentities;
use ses_dkim_rotator::engine::key::KeyBits;
use ses_dkim_rotator::engine::ports::SigningOrigin;
use ses_dkim_rotator::engine::ports::{FailureKind, PortError};
use ses_dkim_rotator::engine::rotation::{Outcome, Step};
use ses_dkim_rotator::secret_text::SecretText;

/// SES must not have been touched: no external key configured.
async fn assert_ses_untouched(bed: &TestBed, domain: &str) {
    let state = bed.ses_dkim(domain).await;
    assert_ne!(
        state.origin.as_ref().map(|o| o.as_str()),
        Some("EXTERNAL"),
        "{state:?}"
    );
}

/// The secret still has exactly one version, AWSCURRENT, holding the seed document.
async fn assert_secret_unchanged(bed: &TestBed, arn: &str, token: &str) {
    assert!(
        !bed.has_value(arn, token).await,
        "a pending value was stored"
    );
    let current = bed.secret_json(arn, "AWSCURRENT").await;
    assert!(current.get("private_key").is_none(), "{current}");
}

#[tokio::test]
async fn happy_path_switches_ses_and_promotes_the_new_key() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("happy", json!({"owner": "mail-team"})).await;
    let engine = bed.engine(allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;
    let old_version = bed
        .version_with_stage(&seeded.arn, "AWSCURRENT")
        .await
        .unwrap();

    let reports = rotate(&bed, &engine, &seeded, &token).await;
    let outcomes: Vec<Outcome> = reports.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::KeyCreated,
            Outcome::RecordPublished,
            Outcome::PendingKeyTested,
            Outcome::SesSwitched
        ]
    );

    let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    let selector = current["selector"].as_str().unwrap().to_owned();
    assert!(selector.starts_with("ses-"), "{selector}");
    assert_eq!(current["identity"], seeded.domain.as_str());
    assert_eq!(current["owner"], "mail-team", "unknown fields are kept");
    assert_eq!(current["key_bits"], 1024);
    assert_eq!(
        current["dns_name"],
        format!("{selector}._domainkey.{}", seeded.domain)
    );
    assert_eq!(
        current["dns_value"],
        format!(
            "v=DKIM1; k=rsa; p={}",
            current["public_key"].as_str().unwrap()
        )
    );
    assert!(current["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(current.get("previous_selector").is_none());

    let hint = reports[1].dns_record.as_ref().unwrap();
    assert_eq!(hint.name, current["dns_name"].as_str().unwrap());
    assert_eq!(hint.value, current["dns_value"].as_str().unwrap());

    let state = bed.ses_dkim(&seeded.domain).await;
    assert_eq!(state.origin.as_ref().map(|o| o.as_str()), Some("EXTERNAL"));
    assert_eq!(
        bed.ses_selector(&seeded.domain).await,
        Some(selector.clone())
    );
    assert_eq!(reports[3].ses_origin, Some(SigningOrigin::External));

    let stages = bed.stages(&seeded.arn).await;
    assert!(
        stages[&token].contains(&"AWSCURRENT".to_owned()),
        "{stages:?}"
    );
    assert!(
        !stages[&old_version].contains(&"AWSCURRENT".to_owned()),
        "{stages:?}"
    );

    // The reports never carry the private key.
    let private_key = current["private_key"].as_str().unwrap();
    let shown = serde_json::to_string(&reports).unwrap();
    assert!(!shown.contains(private_key));

    // A second rotation remembers the first selector and picks a new one.
    let token2 = bed.start_rotation(&seeded.arn).await;
    rotate(&bed, &engine, &seeded, &token2).await;
    let next = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    assert_eq!(next["previous_selector"], selector.as_str());
    assert_ne!(next["selector"], selector.as_str());
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        next["selector"].as_str()
    );
}

#[tokio::test]
async fn every_step_run_twice_makes_one_key_and_one_switch() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("twice", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;

    let mut selectors = Vec::new();
    for step in ALL_STEPS {
        let first = engine
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
        let second = engine
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
        selectors.push(first.selector.clone());
        match step {
            Step::CreateSecret => {
                assert_eq!(first.outcome, Outcome::KeyCreated);
                assert_eq!(second.outcome, Outcome::KeyAlreadyCreated);
                assert_eq!(first.selector, second.selector, "a retry made a second key");
            }
            Step::FinishSecret => {
                assert_eq!(first.outcome, Outcome::SesSwitched);
                assert_eq!(second.outcome, Outcome::AlreadyCurrent);
            }
            _ => assert_eq!(first, second),
        }
    }
    assert!(selectors.iter().all(|s| s == &selectors[0]));
    assert_eq!(bed.ses_selector(&seeded.domain).await, selectors[0]);
    assert_eq!(
        bed.stages(&seeded.arn).await.len(),
        2,
        "exactly one new version"
    );
}

/// The first `promote` (`UpdateSecretVersionStage` to `AWSCURRENT`) fails without reaching
/// Secrets Manager, as if the Lambda died right after switching SES.
struct FailFirstPromote(AtomicBool);

impl AroundStoreCall for FailFirstPromote {
    async fn around<T: Send>(
        &self,
        which: StoreCall,
        call: impl Future<Output = Result<T, PortError>> + Send,
    ) -> Result<T, PortError> {
        if which.method == "promote" && !self.0.swap(true, Ordering::SeqCst) {
            return Err(PortError {
                service: "SecretsManager",
                operation: which.api,
                kind: FailureKind::Unavailable,
                message: "injected: connection reset".into(),
            });
        }
        call.await
    }
}

#[tokio::test]
async fn failure_between_ses_switch_and_stage_move_converges_on_retry() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("crash", json!({})).await;
    let engine = bed
        .engine_over(
            AroundStore {
                inner: SecretsManagerStore::new(bed.secrets.clone()),
                around: FailFirstPromote(AtomicBool::new(false)),
            },
            SesV2Signing::new(bed.ses.clone()),
            allow_all(),
        )
        .await;
    let token = bed.start_rotation(&seeded.arn).await;
    for step in [Step::CreateSecret, Step::SetSecret, Step::TestSecret] {
        engine
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    let err = engine
        .run_step(&request(Step::FinishSecret, &seeded.arn, &token))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "AwsCallFailed");
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;

    // In between: SES already signs with the pending key; AWSCURRENT has not moved.
    let pending = bed.secret_json(&seeded.arn, "AWSPENDING").await;
    let selector = pending["selector"].as_str().unwrap().to_owned();
    assert_eq!(
        bed.ses_selector(&seeded.domain).await,
        Some(selector.clone())
    );
    assert!(bed.stages(&seeded.arn).await[&token] == vec!["AWSPENDING".to_owned()]);

    let put_time = || async {
        let state = ses_model("GET", "/_model/state", &serde_json::Value::Null).await;
        state["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["identity"] == seeded.domain.as_str())
            .map(|i| i["put_time"].clone())
            .expect("the identity is in the SES model")
    };
    let put_before = put_time().await;
    let retry = engine
        .run_step(&request(Step::FinishSecret, &seeded.arn, &token))
        .await
        .unwrap();
    // SES reports the selector in use in `Tokens` (the SES model does, as real SES does): the
    // retry sees it and does not put the key again, which would restart SES's verification.
    assert_eq!(retry.outcome, Outcome::SesAlreadySwitched);
    assert_eq!(put_time().await, put_before, "the key was put again");
    assert!(bed.stages(&seeded.arn).await[&token].contains(&"AWSCURRENT".to_owned()));
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    assert_eq!(current["selector"], selector.as_str());
    assert_eq!(bed.ses_selector(&seeded.domain).await, Some(selector));
}

#[tokio::test]
async fn token_not_staged_is_refused() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("nostage", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    bed.start_rotation(&seeded.arn).await;
    let stranger = uuid::Uuid::new_v4().to_string();
    for step in ALL_STEPS {
        let err = expect_error(&engine, step, &seeded.arn, &stranger, "TokenNotStaged").await;
        assert!(err.to_string().contains("RotateSecret"), "{err}");
    }
    assert_ses_untouched(&bed, &seeded.domain).await;
    assert_secret_unchanged(&bed, &seeded.arn, &stranger).await;
}

#[tokio::test]
async fn token_already_current_is_a_no_op() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("current", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;
    rotate(&bed, &engine, &seeded, &token).await;
    let before = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    let ses_before = bed.ses_dkim(&seeded.domain).await;
    for step in ALL_STEPS {
        let report = engine
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
        assert_eq!(report.outcome, Outcome::AlreadyCurrent);
    }
    assert_eq!(bed.secret_json(&seeded.arn, "AWSCURRENT").await, before);
    assert_eq!(bed.ses_dkim(&seeded.domain).await, ses_before);
}

#[tokio::test]
async fn rotation_disabled_is_refused() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("disabled", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    let current = bed
        .version_with_stage(&seeded.arn, "AWSCURRENT")
        .await
        .unwrap();
    let err = expect_error(
        &engine,
        Step::CreateSecret,
        &seeded.arn,
        &current,
        "RotationNotEnabled",
    )
    .await;
    assert!(err.to_string().contains("rotate-secret"), "{err}");
    assert_ses_untouched(&bed, &seeded.domain).await;
    assert_eq!(bed.stages(&seeded.arn).await.len(), 1);
}

#[tokio::test]
async fn identity_missing_from_ses_changes_nothing() {
    let bed = TestBed::connect().await;
    let domain = unique_domain("absent");
    let arn = bed.secret_for(&domain).await;
    let engine = bed.engine(allow_all()).await;
    let token = bed.start_rotation(&arn).await;
    let err = expect_error(
        &engine,
        Step::CreateSecret,
        &arn,
        &token,
        "IdentityNotInSes",
    )
    .await;
    assert!(err.to_string().contains("create-email-identity"), "{err}");
    assert_secret_unchanged(&bed, &arn, &token).await;
    let missing = bed
        .ses
        .get_email_identity()
        .email_identity(&domain)
        .send()
        .await;
    assert!(missing.is_err(), "the identity must not have been created");
}

#[tokio::test]
async fn identity_not_allowed_changes_nothing() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("denied", json!({})).await;
    let token = bed.start_rotation(&seeded.arn).await;

    let listed = bed
        .engine(RotationPolicy {
            allowed_identities: AllowedIdentities::parse("other.example.org").unwrap(),
            ..RotationPolicy::default()
        })
        .await;
    let err = expect_error(
        &listed,
        Step::CreateSecret,
        &seeded.arn,
        &token,
        "IdentityNotAllowed",
    )
    .await;
    assert!(err.to_string().contains("DKIM_ALLOWED_IDENTITIES"), "{err}");

    let unset = bed.engine(RotationPolicy::default()).await;
    let err = expect_error(
        &unset,
        Step::CreateSecret,
        &seeded.arn,
        &token,
        "IdentityNotAllowed",
    )
    .await;
    assert!(err.to_string().contains("or to `*`"), "{err}");

    assert_ses_untouched(&bed, &seeded.domain).await;
    assert_secret_unchanged(&bed, &seeded.arn, &token).await;
}

#[tokio::test]
async fn corrupt_secrets_are_refused_and_nothing_changes() {
    let bed = TestBed::connect().await;
    let engine = bed.engine(allow_all()).await;
    for (body, hint) in [
        ("this is not json".to_owned(), "not JSON"),
        (
            json!({"domain": "example.com"}).to_string(),
            "`identity` is missing",
        ),
        (
            json!({"identity": "someone@example.com"}).to_string(),
            "email address",
        ),
        (
            json!({"identity": "x.example.com", "selector": "s1", "private_key": "Zm9v"})
                .to_string(),
            "PKCS#1",
        ),
    ] {
        let name = format!("dkim/corrupt-{}", uuid::Uuid::new_v4().simple());
        let arn = bed.create_secret(&name, &body).await;
        let token = bed.start_rotation(&arn).await;
        let err = expect_error(&engine, Step::CreateSecret, &arn, &token, "CorruptSecret").await;
        assert!(err.to_string().contains(hint), "{body}: {err}");
        assert!(err.to_string().contains("AWSCURRENT"), "{err}");
        assert!(!bed.has_value(&arn, &token).await);
    }
}

#[tokio::test]
async fn pending_key_of_the_wrong_size_fails_test_secret_before_any_switch() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("size", json!({})).await;
    let token = bed.start_rotation(&seeded.arn).await;
    let big = bed
        .engine(RotationPolicy {
            key_bits: KeyBits::Rsa2048,
            ..allow_all()
        })
        .await;
    big.run_step(&request(Step::CreateSecret, &seeded.arn, &token))
        .await
        .unwrap();
    let pending = bed.secret_json(&seeded.arn, "AWSPENDING").await;
    assert_eq!(pending["key_bits"], 2048);

    // The configuration changed to 1024 between the steps.
    let small = bed.engine(allow_all()).await;
    let err = expect_error(
        &small,
        Step::TestSecret,
        &seeded.arn,
        &token,
        "PendingKeyInvalid",
    )
    .await;
    assert!(
        err.to_string()
            .contains("2048 bits but DKIM_KEY_BITS is 1024"),
        "{err}"
    );
    assert_ses_untouched(&bed, &seeded.domain).await;
    assert_eq!(
        bed.stages(&seeded.arn).await[&token],
        vec!["AWSPENDING".to_owned()]
    );
}

#[tokio::test]
async fn rotation_token_is_passed_to_put_secret_value() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("rtoken", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;
    let mut req = request(Step::CreateSecret, &seeded.arn, &token);
    req.rotation_token = Some(SecretText::new("opaque-rotation-token"));
    let report = engine.run_step(&req).await.unwrap();
    assert_eq!(report.outcome, Outcome::KeyCreated);
    assert!(bed.has_value(&seeded.arn, &token).await);
}

/// Signs with the stored key and verifies with dkimpy (a verifier not written here) against
/// `record`: what the DNS server really serves, or a given TXT text.
fn dkimpy_verdict(current: &serde_json::Value, record: DkimRecord<'_>) -> serde_json::Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let venv = std::env::var("SES_DKIM_TESTBED_VENV")
        .expect("SES_DKIM_TESTBED_VENV is set by scripts/testbed.sh; run `make test`");
    let mut child = Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dkim_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python from the test-bed venv");
    let mut input = json!({
        "private_key": current["private_key"],
        "selector": current["selector"],
        "domain": current["identity"],
        "dns_name": current["dns_name"],
    });
    match record {
        DkimRecord::Served => input["dns_server"] = dns_server().into(),
        DkimRecord::Text(presentation) => input["presentation"] = presentation.into(),
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dkim_check.py failed");
    serde_json::from_slice(&out.stdout).expect("dkim_check.py prints JSON")
}

/// Where dkimpy reads the public key.
enum DkimRecord<'a> {
    /// From the test DNS server, as a receiving mail server would.
    Served,
    /// From this TXT text (quoted strings).
    Text(&'a str),
}

#[tokio::test]
async fn stored_key_signs_mail_that_dkimpy_verifies_against_the_published_txt() {
    let bed = TestBed::connect().await;
    for bits in [KeyBits::Rsa1024, KeyBits::Rsa2048] {
        let seeded = bed.seed("dkimpy", json!({})).await;
        let engine = bed
            .engine(RotationPolicy {
                key_bits: bits,
                ..allow_all()
            })
            .await;
        let token = bed.start_rotation(&seeded.arn).await;
        let reports = rotate(&bed, &engine, &seeded, &token).await;
        let record = reports[1].dns_record.clone().unwrap();
        let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
        assert_eq!(current["key_bits"], bits.bits());
        let expected_strings = if bits == KeyBits::Rsa1024 { 1 } else { 2 };
        assert_eq!(
            record.presentation.matches("\" \"").count() + 1,
            expected_strings
        );

        // The record as DNS serves it (not the step's report of it).
        let verdict = dkimpy_verdict(&current, DkimRecord::Served);
        assert_eq!(verdict["verified"], true, "{bits}-bit: {verdict}");
        assert_eq!(verdict["tampered_verified"], false, "{bits}-bit: {verdict}");

        // Against another key's record the signature must fail: the check can fail.
        let other = ses_dkim_rotator::engine::key::DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
        let wrong = ses_dkim_rotator::engine::key::txt_presentation(&other.txt_value());
        let verdict = dkimpy_verdict(&current, DkimRecord::Text(&wrong));
        assert_eq!(verdict["verified"], false, "{verdict}");
    }
}

#[tokio::test]
async fn abort_unblocks_rotate_secret_where_cancel_rotate_secret_does_not() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("abort", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;
    engine
        .run_step(&request(Step::CreateSecret, &seeded.arn, &token))
        .await
        .unwrap();
    let handed_out = bed.secret_json(&seeded.arn, "AWSPENDING").await;
    bed.secrets
        .cancel_rotate_secret()
        .secret_id(&seeded.arn)
        .send()
        .await
        .unwrap();
    // What AWS does: the pending label stays, and RotateSecret refuses (moto stages a new
    // version instead, so the bed applies AWS's rule itself: `rotate_secret_as_aws`).
    assert!(
        bed.stages(&seeded.arn).await[&token].contains(&"AWSPENDING".to_owned()),
        "CancelRotateSecret took AWSPENDING off"
    );
    let refusal = bed.rotate_secret_as_aws(&seeded.arn).await.unwrap_err();
    assert!(refusal.contains("previous rotation"), "{refusal}");

    let report = engine.abort(&seeded.arn).await.unwrap();
    assert_eq!(report.version.as_deref(), Some(token.as_str()));
    assert_eq!(report.selector.as_deref(), handed_out["selector"].as_str());
    assert!(!bed.stages(&seeded.arn).await[&token].contains(&"AWSPENDING".to_owned()));
    assert_ne!(
        bed.ses_dkim(&seeded.domain).await.origin,
        Some(SigningOrigin::External)
    );

    // A new rotation starts, and resumes the same key.
    let next = bed.rotate_secret_as_aws(&seeded.arn).await.unwrap();
    let report = engine
        .run_step(&request(Step::CreateSecret, &seeded.arn, &next))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::KeyResumed);
    assert_eq!(report.selector.as_deref(), handed_out["selector"].as_str());
}

#[tokio::test]
async fn a_deed_replica_and_signing_turned_off_are_refused_through_the_sdk_and_nothing_changes() {
    use aws_sdk_sesv2::types::{DkimSigningAttributes, DkimSigningAttributesOrigin};
    let bed = TestBed::connect().await;
    let engine = bed.engine(allow_all()).await;

    // A Deterministic Easy DKIM replica of a verified parent in eu-west-1, as SES makes one.
    let domain = unique_domain("deed");
    let parent_region = bed
        .ses
        .config()
        .to_builder()
        .region(aws_config::Region::new("eu-west-1"))
        .build();
    let parent = aws_sdk_sesv2::Client::from_conf(parent_region);
    parent
        .create_email_identity()
        .email_identity(&domain)
        .send()
        .await
        .expect("parent identity");
    ses_model(
        "POST",
        "/_model/status",
        &json!({"identity": domain, "region": "eu-west-1", "status": "SUCCESS"}),
    )
    .await;
    bed.ses
        .create_email_identity()
        .email_identity(&domain)
        .dkim_signing_attributes(
            DkimSigningAttributes::builder()
                .domain_signing_attributes_origin(DkimSigningAttributesOrigin::from(
                    "AWS_SES_EU_WEST_1",
                ))
                .build(),
        )
        .send()
        .await
        .expect("replica identity");
    let replica = bed.ses_dkim(&domain).await;
    assert_eq!(
        replica.origin,
        Some(SigningOrigin::EasyDkimReplica("AWS_SES_EU_WEST_1".into()))
    );
    let arn = bed.secret_for(&domain).await;
    let token = bed.start_rotation(&arn).await;
    let err = expect_error(
        &engine,
        Step::CreateSecret,
        &arn,
        &token,
        "EasyDkimReplicaInUse",
    )
    .await;
    assert!(err.to_string().contains("eu-west-1"), "{err}");
    assert_secret_unchanged(&bed, &arn, &token).await;
    assert_eq!(bed.ses_dkim(&domain).await, replica);

    // DKIM signing turned off (PutEmailIdentityDkimAttributes): refused, and left off.
    let seeded = bed.seed("signing-off", json!({})).await;
    bed.ses
        .put_email_identity_dkim_attributes()
        .email_identity(&seeded.domain)
        .signing_enabled(false)
        .send()
        .await
        .expect("PutEmailIdentityDkimAttributes");
    let token = bed.start_rotation(&seeded.arn).await;
    let err = expect_error(
        &engine,
        Step::CreateSecret,
        &seeded.arn,
        &token,
        "SigningDisabled",
    )
    .await;
    assert!(err.to_string().contains("--signing-enabled"), "{err}");
    assert_secret_unchanged(&bed, &seeded.arn, &token).await;
    let state = bed.ses_dkim(&seeded.domain).await;
    assert!(!state.signing_enabled, "{state:?}");
    assert_ses_untouched(&bed, &seeded.domain).await;
}
