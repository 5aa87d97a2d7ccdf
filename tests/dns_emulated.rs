//! The safe switch against a real DNS server (knot, RFC 2136 + TSIG) and the emulators:
//! publish → verify → switch → confirm → retire. After every step the invariant is checked:
//! the selector SES signs with has a published, matching TXT record.

pub mod common;

use std::sync::{Arc, Mutex};

use aws_sdk_sesv2::operation::get_email_identity::GetEmailIdentityOutput;
use aws_sdk_sesv2::operation::put_email_identity_dkim_signing_attributes::PutEmailIdentityDkimSigningAttributesOutput;
use aws_sdk_sesv2::types::{DkimAttributes, DkimSigningAttributesOrigin, DkimStatus};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use common::*;
use serde_json::json;
use ses_dkim_rotator::adapters::dns::lookup::{HickoryTxtLookup, LookupServers};
use ses_dkim_rotator::adapters::dns::route53::Route53Publisher;
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::engine::RotationPolicy;
use ses_dkim_rotator::engine::dns_check::TxtAnswer;
use ses_dkim_rotator::engine::error::EngineError;
use ses_dkim_rotator::engine::key::{DkimKeyPair, KeyBits, split_txt_strings};
use ses_dkim_rotator::engine::pacing::{Pacer, Rate};
use ses_dkim_rotator::engine::ports::{
    Deadline, DkimStatus as SesStatus, DnsPublisher, DnsTxtLookup, FailureKind, Publication,
    TxtRecord,
};
use ses_dkim_rotator::engine::retirement::RetireMode;
use ses_dkim_rotator::engine::retirement::RetireOutcome;
use ses_dkim_rotator::engine::rotation::{Outcome, Step};
use ses_dkim_rotator::engine::schedule::{Action, MaintainOptions};

fn dns_outcome(err: &EngineError) -> &'static str {
    match err {
        EngineError::DnsNotVerified { outcome, .. } => outcome,
        other => panic!("expected DnsNotVerified, got {other:?}"),
    }
}

/// Runs `step`, expects `DnsNotVerified` with `outcome`, and checks nothing was switched.
async fn expect_dns_outcome(
    bed: &TestBed,
    engine: &RealEngine,
    step: Step,
    seeded: &Seeded,
    token: &str,
    outcome: &str,
) -> EngineError {
    let err = expect_error(engine, step, &seeded.arn, token, "DnsNotVerified").await;
    assert_eq!(dns_outcome(&err), outcome, "{err}");
    assert_not_switched(bed, seeded, token).await;
    err
}

/// SES untouched and the rotation still pending: a failed check changed nothing.
async fn assert_not_switched(bed: &TestBed, seeded: &Seeded, token: &str) {
    assert_ne!(
        bed.ses_dkim(&seeded.domain)
            .await
            .origin
            .as_ref()
            .map(|o| o.as_str()),
        Some("EXTERNAL")
    );
    assert_eq!(
        bed.stages(&seeded.arn).await[token],
        vec!["AWSPENDING".to_owned()]
    );
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;
}

#[tokio::test]
async fn verification_has_five_distinct_outcomes_and_never_switches_on_any() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("outcomes", json!({})).await;
    let engine = bed.engine_with("hint", allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;
    for step in [Step::CreateSecret, Step::SetSecret] {
        engine
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    let pending = bed.secret_json(&seeded.arn, "AWSPENDING").await;
    let name = pending["dns_name"].as_str().unwrap().to_owned();
    let value = pending["dns_value"].as_str().unwrap().to_owned();

    // 1. missing
    let err = expect_dns_outcome(&bed, &engine, Step::TestSecret, &seeded, &token, "missing").await;
    assert!(err.to_string().contains("add TXT"), "{err}");
    assert!(err.to_string().contains(&name), "{err}");

    // 2. mismatch: someone else's key at the name
    let other = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
    dns_add_txt(&name, &split_txt_strings(&other.txt_value()));
    let err = expect_dns_outcome(
        &bed,
        &engine,
        Step::FinishSecret,
        &seeded,
        &token,
        "mismatch",
    )
    .await;
    assert!(err.to_string().contains("different key"), "{err}");

    // 3. several records: the right one plus the stale one
    dns_add_txt(&name, &split_txt_strings(&value));
    let err = expect_dns_outcome(
        &bed,
        &engine,
        Step::TestSecret,
        &seeded,
        &token,
        "several_records",
    )
    .await;
    assert!(err.to_string().contains("keep exactly one"), "{err}");

    // 4. malformed
    dns_delete_txt(&name);
    dns_add_txt(&name, &["this is not a dkim record"]);
    expect_dns_outcome(
        &bed,
        &engine,
        Step::FinishSecret,
        &seeded,
        &token,
        "malformed",
    )
    .await;

    // 5. server failure: nothing answers on the configured port
    let dead = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let mut settings = bed.settings("hint").await;
    settings.dns.check_servers = Some(vec![dead]);
    settings.policy = allow_all();
    let blind = ses_dkim_rotator::assembly::build_engine(&settings, &bed.aws_config().await);
    let err = expect_dns_outcome(
        &bed,
        &blind,
        Step::TestSecret,
        &seeded,
        &token,
        "server_failure",
    )
    .await;
    assert!(err.to_string().contains(&dead.to_string()), "{err}");

    // Fixed: exactly the right record, split into strings. Now the switch happens.
    dns_delete_txt(&name);
    dns_add_txt(&name, &split_txt_strings(&value));
    for step in [Step::TestSecret, Step::FinishSecret] {
        let report = engine
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
        assert_eq!(report.dns_check, Some("published"));
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        pending["selector"].as_str()
    );
}

#[tokio::test]
async fn rfc2136_publishes_one_split_record_then_verifies_then_switches() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("rfc2136", json!({})).await;
    let engine = bed
        .engine(RotationPolicy {
            key_bits: KeyBits::Rsa2048,
            ..allow_all()
        })
        .await;
    let token = bed.start_rotation(&seeded.arn).await;
    let reports = rotate(&bed, &engine, &seeded, &token).await;
    assert_eq!(reports[1].outcome, Outcome::RecordPublished);
    assert_eq!(reports[2].dns_check, Some("published"));
    assert_eq!(reports[3].outcome, Outcome::SesSwitched);

    let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    let name = current["dns_name"].as_str().unwrap();
    // One record whose strings, joined, are the value; a 2048-bit value needs two strings.
    assert_eq!(
        dns_txt(name),
        TxtAnswer::Records(vec![current["dns_value"].as_str().unwrap().to_owned()])
    );
    let out = std::process::Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            dns_server().rsplit(':').next().unwrap(),
            "+short",
            "TXT",
            name,
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert_eq!(shown.matches("\" \"").count(), 1, "{shown}");

    // The crate's own lookup agrees with kdig.
    let lookup = HickoryTxtLookup::new(
        LookupServers::Fixed(vec![dns_server().parse().unwrap()]),
        std::time::Duration::from_secs(3),
    );
    let answers = lookup.lookup_txt(&seeded.domain, name).await.unwrap();
    assert_eq!(answers[0].answer, Ok(dns_txt(name)));

    // Running setSecret again rewrites the same single record.
    engine
        .run_step(&request(Step::SetSecret, &seeded.arn, &token))
        .await
        .unwrap();
    assert_eq!(
        dns_txt(name),
        TxtAnswer::Records(vec![current["dns_value"].as_str().unwrap().to_owned()])
    );
}

#[tokio::test]
async fn hint_mode_second_attempt_reuses_the_key_a_person_published() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("hint", json!({})).await;
    let engine = bed.engine_with("hint", allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;

    // Attempt 1: the hint goes out, the record is not there, testSecret fails.
    engine
        .run_step(&request(Step::CreateSecret, &seeded.arn, &token))
        .await
        .unwrap();
    let hint = engine
        .run_step(&request(Step::SetSecret, &seeded.arn, &token))
        .await
        .unwrap();
    assert_eq!(hint.outcome, Outcome::RecordHintPublished);
    let record = hint.dns_record.clone().unwrap();
    let err = expect_error(
        &engine,
        Step::TestSecret,
        &seeded.arn,
        &token,
        "DnsNotVerified",
    )
    .await;
    assert!(err.to_string().contains(&record.presentation), "{err}");
    assert_not_switched(&bed, &seeded, &token).await;

    // The person adds exactly what the hint said.
    dns_add_txt(&record.name, &split_txt_strings(&record.value));

    // Attempt 2 (Secrets Manager retries the same token): same key, then the switch.
    let reports = rotate(&bed, &engine, &seeded, &token).await;
    assert_eq!(reports[0].outcome, Outcome::KeyAlreadyCreated);
    assert_eq!(reports[1].dns_record.as_ref(), Some(&record));
    assert_eq!(reports[3].outcome, Outcome::SesSwitched);
    assert_eq!(bed.ses_selector(&seeded.domain).await, hint.selector);
}

#[tokio::test]
async fn a_new_token_resumes_the_key_of_an_abandoned_attempt() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("resume", json!({})).await;
    let engine = bed.engine_with("hint", allow_all()).await;
    let first = bed.start_rotation(&seeded.arn).await;
    let created = engine
        .run_step(&request(Step::CreateSecret, &seeded.arn, &first))
        .await
        .unwrap();
    let record = created.dns_record.clone().unwrap();
    expect_error(
        &engine,
        Step::TestSecret,
        &seeded.arn,
        &first,
        "DnsNotVerified",
    )
    .await;

    // The operator abandons that attempt as AWS documents (cancel, then take AWSPENDING off
    // the partial version) and a new rotation starts with a new token.
    bed.secrets
        .cancel_rotate_secret()
        .secret_id(&seeded.arn)
        .send()
        .await
        .unwrap();
    bed.secrets
        .update_secret_version_stage()
        .secret_id(&seeded.arn)
        .version_stage("AWSPENDING")
        .remove_from_version_id(&first)
        .send()
        .await
        .unwrap();
    let second = bed.start_rotation(&seeded.arn).await;
    assert_ne!(first, second);

    // The new attempt reuses the key and selector the person may already have published.
    let resumed = engine
        .run_step(&request(Step::CreateSecret, &seeded.arn, &second))
        .await
        .unwrap();
    assert_eq!(resumed.outcome, Outcome::KeyResumed);
    assert_eq!(resumed.selector, created.selector);
    assert_eq!(resumed.dns_record.as_ref(), Some(&record));

    dns_add_txt(&record.name, &split_txt_strings(&record.value));
    for step in [Step::SetSecret, Step::TestSecret, Step::FinishSecret] {
        engine
            .run_step(&request(step, &seeded.arn, &second))
            .await
            .unwrap();
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    assert_eq!(bed.ses_selector(&seeded.domain).await, created.selector);
}

#[tokio::test]
async fn a_stale_record_blocks_the_switch_and_keeps_the_old_selector_live() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("stale", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    let first = bed.start_rotation(&seeded.arn).await;
    rotate(&bed, &engine, &seeded, &first).await;
    let old_selector = bed.ses_selector(&seeded.domain).await;

    let hint_engine = bed.engine_with("hint", allow_all()).await;
    let token = bed.start_rotation(&seeded.arn).await;
    hint_engine
        .run_step(&request(Step::CreateSecret, &seeded.arn, &token))
        .await
        .unwrap();
    let pending = bed.secret_json(&seeded.arn, "AWSPENDING").await;
    // A stale record from another key sits at the new name.
    let stale = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
    dns_add_txt(
        pending["dns_name"].as_str().unwrap(),
        &split_txt_strings(&stale.txt_value()),
    );
    let err = expect_error(
        &hint_engine,
        Step::FinishSecret,
        &seeded.arn,
        &token,
        "DnsNotVerified",
    )
    .await;
    assert_eq!(dns_outcome(&err), "mismatch");
    assert_eq!(
        bed.ses_selector(&seeded.domain).await,
        old_selector,
        "SES must stay on the old selector"
    );
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;
}

#[tokio::test]
async fn route53_on_the_emulator_publishes_one_record_in_the_longest_matching_zone() {
    let bed = TestBed::connect().await;
    let r53 = aws_sdk_route53::Client::new(&bed.aws_config().await);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let sub = format!("r53-{}.{ZONE}", &id[..8]);
    // Two public zones contain the identity; the longer one must be used.
    for zone in [format!("{}.{ZONE}", &id[8..16]), sub.clone()] {
        r53.create_hosted_zone()
            .name(&zone)
            .caller_reference(uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
    }
    let domain = format!("mail.{sub}");
    bed.create_identity(&domain).await;
    let arn = bed.secret_for(&domain).await;
    let seeded = Seeded {
        domain: domain.clone(),
        arn,
    };
    let engine = bed
        .engine_with(
            "route53",
            RotationPolicy {
                key_bits: KeyBits::Rsa2048,
                ..allow_all()
            },
        )
        .await;
    let token = bed.start_rotation(&seeded.arn).await;
    for step in [Step::CreateSecret, Step::SetSecret] {
        let report = engine
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
        if step == Step::SetSecret {
            assert_eq!(report.outcome, Outcome::RecordPublished);
        }
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    let pending = bed.secret_json(&seeded.arn, "AWSPENDING").await;
    let name = format!("{}.", pending["dns_name"].as_str().unwrap());

    // Exactly one TXT record set, in the longer zone, holding one record of ≤255-char strings.
    let zones = r53.list_hosted_zones_by_name().send().await.unwrap();
    let zone = zones
        .hosted_zones()
        .iter()
        .find(|z| z.name() == format!("{sub}."))
        .unwrap();
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone.id())
        .send()
        .await
        .unwrap();
    let txt: Vec<_> = sets
        .resource_record_sets()
        .iter()
        .filter(|s| s.r#type().as_str() == "TXT")
        .collect();
    assert_eq!(txt.len(), 1);
    assert_eq!(txt[0].name(), name);
    let records = txt[0].resource_records();
    assert_eq!(records.len(), 1, "one record, never one per string");
    let value = records[0].value();
    let strings: Vec<&str> = value.split('"').skip(1).step_by(2).collect();
    assert!(
        strings.len() >= 2 && strings.iter().all(|s| s.len() <= 255),
        "{value}"
    );
    assert_eq!(strings.concat(), pending["dns_value"].as_str().unwrap());

    // Route 53 would now serve it; mirror it into the test DNS server, then finish.
    dns_add_txt(name.trim_end_matches('.'), &strings);
    for step in [Step::TestSecret, Step::FinishSecret] {
        engine
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    assert_eq!(
        bed.ses_dkim(&domain)
            .await
            .origin
            .as_ref()
            .map(|o| o.as_str()),
        Some("EXTERNAL")
    );
}

#[tokio::test]
async fn route53_zone_choice_errors_say_what_to_do() {
    let bed = TestBed::connect().await;
    let r53 = aws_sdk_route53::Client::new(&bed.aws_config().await);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let twin = format!("twin-{}.{ZONE}", &id[..8]);
    for _ in 0..2 {
        r53.create_hosted_zone()
            .name(&twin)
            .caller_reference(uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
    }
    let engine = bed.engine_with("route53", allow_all()).await;
    let domain = format!("mail.{twin}");
    bed.create_identity(&domain).await;
    let arn = bed.secret_for(&domain).await;
    let token = bed.start_rotation(&arn).await;
    engine
        .run_step(&request(Step::CreateSecret, &arn, &token))
        .await
        .unwrap();
    let err = expect_error(&engine, Step::SetSecret, &arn, &token, "DnsPublishFailed").await;
    assert!(err.to_string().contains("hosted_zone_id"), "{err}");
    assert_ne!(
        bed.ses_dkim(&domain)
            .await
            .origin
            .as_ref()
            .map(|o| o.as_str()),
        Some("EXTERNAL")
    );
}

/// An SES whose status after a switch is `FAILED`; records every Put's selector.
fn failing_ses(initial_selector: &str, puts: Arc<Mutex<Vec<String>>>) -> SesV2Signing {
    let before = initial_selector.to_owned();
    let get = mock!(aws_sdk_sesv2::Client::get_email_identity)
        .sequence()
        .output(move || identity_output(DkimStatus::Success, &before))
        .output(|| identity_output(DkimStatus::Failed, "new"))
        .repeatedly()
        .build();
    let put = mock!(aws_sdk_sesv2::Client::put_email_identity_dkim_signing_attributes)
        .match_requests(move |req| {
            let selector = req
                .signing_attributes()
                .and_then(|a| a.domain_signing_selector())
                .unwrap_or_default()
                .to_owned();
            puts.lock().unwrap().push(selector);
            true
        })
        .then_output(|| PutEmailIdentityDkimSigningAttributesOutput::builder().build());
    SesV2Signing::new(mock_client!(
        aws_sdk_sesv2,
        RuleMode::MatchAny,
        [&get, &put]
    ))
}

fn identity_output(status: DkimStatus, selector: &str) -> GetEmailIdentityOutput {
    GetEmailIdentityOutput::builder()
        .dkim_attributes(
            DkimAttributes::builder()
                .signing_enabled(true)
                .status(status)
                .signing_attributes_origin(DkimSigningAttributesOrigin::External)
                .tokens(selector)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn ses_failed_status_rolls_back_to_the_previous_key_and_keeps_awscurrent() {
    let bed = TestBed::connect().await;
    let seeded = bed.seed("rollback", json!({})).await;
    let engine = bed.engine(allow_all()).await;
    let first = bed.start_rotation(&seeded.arn).await;
    rotate(&bed, &engine, &seeded, &first).await;
    let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    let old_selector = current["selector"].as_str().unwrap().to_owned();

    let puts = Arc::new(Mutex::new(Vec::new()));
    let failing = bed
        .engine_over(
            SecretsManagerStore::new(bed.secrets.clone()),
            failing_ses(&old_selector, puts.clone()),
            allow_all(),
        )
        .await;
    let token = bed.start_rotation(&seeded.arn).await;
    for step in [Step::CreateSecret, Step::SetSecret, Step::TestSecret] {
        failing
            .run_step(&request(step, &seeded.arn, &token))
            .await
            .unwrap();
    }
    let pending = bed.secret_json(&seeded.arn, "AWSPENDING").await;
    let err = failing
        .run_step(&request(Step::FinishSecret, &seeded.arn, &token))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "SesRejectedKey");
    assert!(
        err.to_string()
            .contains(&format!("rolled back to selector {old_selector}")),
        "{err}"
    );
    assert_eq!(
        *puts.lock().unwrap(),
        vec![
            pending["selector"].as_str().unwrap().to_owned(),
            old_selector.clone()
        ],
        "switch, then switch back"
    );
    assert_eq!(
        bed.secret_json(&seeded.arn, "AWSCURRENT").await["selector"],
        old_selector.as_str()
    );
    assert_eq!(
        bed.stages(&seeded.arn).await[&token],
        vec!["AWSPENDING".to_owned()]
    );
    // The old selector's record is still published, so the rolled-back key verifies.
    assert!(
        matches!(dns_txt(current["dns_name"].as_str().unwrap()), TxtAnswer::Records(r) if r.len() == 1)
    );
}

/// Two full rotations: the current doc then has a previous selector whose record is live.
async fn rotated_twice(bed: &TestBed, engine: &RealEngine, tag: &str) -> (Seeded, String, String) {
    let seeded = bed.seed(tag, json!({})).await;
    for _ in 0..2 {
        let token = bed.start_rotation(&seeded.arn).await;
        rotate(bed, engine, &seeded, &token).await;
        bed.confirm(engine, &seeded).await;
    }
    let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    let previous = current["previous_selector"].as_str().unwrap().to_owned();
    (
        seeded,
        previous,
        current["dns_name"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn retirement_waits_for_the_grace_period_then_deletes_only_the_old_record() {
    let bed = TestBed::connect().await;
    let engine = bed.engine(allow_all()).await;
    let (seeded, previous, current_name) = rotated_twice(&bed, &engine, "retire").await;
    let previous_name = format!("{previous}._domainkey.{}", seeded.domain);
    assert!(matches!(dns_txt(&previous_name), TxtAnswer::Records(_)));

    // Inside the 7-day grace period: nothing is removed.
    let report = engine.retire_previous(&seeded.arn).await.unwrap();
    assert_eq!(report.outcome, RetireOutcome::GracePeriod);
    assert!(report.grace_until.is_some());
    assert!(matches!(dns_txt(&previous_name), TxtAnswer::Records(_)));
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;

    // After it (grace 0 days): the old record goes, the current one stays.
    let after = bed
        .engine(RotationPolicy {
            old_key_grace: time::Duration::ZERO,
            ..allow_all()
        })
        .await;
    let report = after.retire_previous(&seeded.arn).await.unwrap();
    assert_eq!(report.outcome, RetireOutcome::Deleted);
    assert_eq!(dns_txt(&previous_name), TxtAnswer::NoRecords);
    assert!(matches!(dns_txt(&current_name), TxtAnswer::Records(_)));
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;

    // Retirement state lives in the secret: a second run knows it is done.
    let again = after.retire_previous(&seeded.arn).await.unwrap();
    assert_eq!(again.outcome, RetireOutcome::AlreadyRetired);
}

#[tokio::test]
async fn retirement_can_revoke_or_hint_instead_of_deleting() {
    let bed = TestBed::connect().await;
    let engine = bed.engine(allow_all()).await;
    let (seeded, previous, _) = rotated_twice(&bed, &engine, "revoke").await;
    let previous_name = format!("{previous}._domainkey.{}", seeded.domain);
    let revoker = bed
        .engine(RotationPolicy {
            old_key_grace: time::Duration::ZERO,
            retire_mode: RetireMode::Revoke,
            ..allow_all()
        })
        .await;
    assert_eq!(
        revoker.retire_previous(&seeded.arn).await.unwrap().outcome,
        RetireOutcome::Revoked
    );
    assert_eq!(
        dns_txt(&previous_name),
        TxtAnswer::Records(vec!["v=DKIM1; k=rsa; p=".into()])
    );
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;

    let (seeded, previous, _) = rotated_twice(&bed, &engine, "retirehint").await;
    let previous_name = format!("{previous}._domainkey.{}", seeded.domain);
    let hinter = bed
        .engine_with(
            "hint",
            RotationPolicy {
                old_key_grace: time::Duration::ZERO,
                ..allow_all()
            },
        )
        .await;
    assert_eq!(hinter.policy().retire_mode, RetireMode::Delete);
    assert_eq!(
        hinter.retire_previous(&seeded.arn).await.unwrap().outcome,
        RetireOutcome::RemovalHinted
    );
    assert!(
        matches!(dns_txt(&previous_name), TxtAnswer::Records(_)),
        "hint mode removes nothing"
    );
}

#[tokio::test]
async fn retirement_guard_refuses_the_selector_ses_signs_with() {
    let bed = TestBed::connect().await;
    let engine = bed.engine(allow_all()).await;
    let (seeded, previous, _) = rotated_twice(&bed, &engine, "guard").await;
    let previous_name = format!("{previous}._domainkey.{}", seeded.domain);
    // SES (mocked) still signs with the previous selector, e.g. after a manual rollback.
    let puts = Arc::new(Mutex::new(Vec::new()));
    let guarded = bed
        .engine_over(
            SecretsManagerStore::new(bed.secrets.clone()),
            failing_ses(&previous, puts.clone()),
            RotationPolicy {
                old_key_grace: time::Duration::ZERO,
                ..allow_all()
            },
        )
        .await;
    let err = guarded.retire_previous(&seeded.arn).await.unwrap_err();
    assert_eq!(err.error_type(), "RetireRefused");
    assert!(matches!(dns_txt(&previous_name), TxtAnswer::Records(_)));
    assert!(puts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_next_rotation_retires_the_selector_before_the_current_one() {
    let bed = TestBed::connect().await;
    let engine = bed
        .engine(RotationPolicy {
            old_key_grace: time::Duration::ZERO,
            ..allow_all()
        })
        .await;
    let seeded = bed.seed("cascade", json!({})).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        let token = bed.start_rotation(&seeded.arn).await;
        rotate(&bed, &engine, &seeded, &token).await;
        bed.confirm(&engine, &seeded).await;
        let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
        names.push(current["dns_name"].as_str().unwrap().to_owned());
    }
    // Rotation 3's createSecret retired selector 1 (grace over); 2 (previous) and 3 stay.
    assert_eq!(dns_txt(&names[0]), TxtAnswer::NoRecords);
    assert!(matches!(dns_txt(&names[1]), TxtAnswer::Records(_)));
    assert!(matches!(dns_txt(&names[2]), TxtAnswer::Records(_)));
}

#[tokio::test]
async fn ses_failing_a_key_on_its_own_time_is_rolled_back_by_the_scheduled_run() {
    let bed = TestBed::connect().await;
    let engine = bed.engine(allow_all()).await;
    let (seeded, previous, current_name) = rotated_twice(&bed, &engine, "watchfail").await;
    let rejected = bed.secret_json(&seeded.arn, "AWSCURRENT").await["selector"]
        .as_str()
        .unwrap()
        .to_owned();
    // SES never found the new record: it is gone, and SES's 72-hour window runs out.
    dns_delete_txt(&current_name);
    ses_model(
        "POST",
        "/_model/expire",
        &json!({"identity": seeded.domain}),
    )
    .await;
    assert_eq!(
        bed.ses_check(&seeded.domain).await,
        Some(SesStatus::TemporaryFailure)
    );
    // A verified key whose record stops resolving is TEMPORARY_FAILURE, not FAILED: no rollback.
    let report = engine.maintain(&seeded.arn, &daily()).await;
    assert_eq!(report.action, Action::TemporaryFailure, "{report:?}");
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        Some(rejected.as_str())
    );

    // SES gives up on it (FAILED): the next run puts the previous key back.
    bed.ses_force(&seeded.domain, SesStatus::Failed).await;
    let report = engine.maintain(&seeded.arn, &daily()).await;
    assert_eq!(report.action, Action::RolledBack, "{report:?}");
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        Some(previous.as_str())
    );
    assert_eq!(
        bed.secret_json(&seeded.arn, "AWSCURRENT").await["selector"],
        previous.as_str()
    );
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    // SES verifies the restored key again; nothing puts the rejected one back.
    assert_eq!(
        bed.ses_check(&seeded.domain).await,
        Some(SesStatus::Success)
    );
    let report = engine.maintain(&seeded.arn, &daily()).await;
    assert_ne!(report.action, Action::RolledBack, "{report:?}");
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        Some(previous.as_str())
    );
}

fn daily() -> MaintainOptions {
    MaintainOptions {
        force: false,
        dry_run: false,
        rotation_interval: time::Duration::days(90),
        deadline: Deadline::NONE,
        record_published: false,
    }
}

/// A Route 53 zone of its own on the emulator (behind the bed's quota front).
async fn route53_zone(r53: &aws_sdk_route53::Client, label: &str) -> HostedZone {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let domain = format!("{label}-{}.{ZONE}", &id[..8]);
    let created = r53
        .create_hosted_zone()
        .name(&domain)
        .caller_reference(id)
        .send()
        .await
        .unwrap();
    let zone = created.hosted_zone().unwrap().id();
    HostedZone {
        id: zone.trim_start_matches("/hostedzone/").to_owned(),
        domain,
    }
}

/// A hosted zone a test created: its id (without `/hostedzone/`) and its domain.
struct HostedZone {
    id: String,
    domain: String,
}

/// A Route 53 client with an access key of its own (the front meters each key as an account,
/// so this test's rate is not shared with the tests running beside it) and `attempts` SDK
/// attempts per call.
async fn route53_account(bed: &TestBed, key: &str, attempts: u32) -> aws_sdk_route53::Client {
    let config = aws_sdk_route53::config::Builder::from(&bed.aws_config().await)
        .credentials_provider(aws_credential_types::Credentials::new(
            key, "testing", None, None, "test-bed",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts))
        .build();
    aws_sdk_route53::Client::from_conf(config)
}

/// Upserts `v=DKIM1; p=A` at `<selector>._domainkey.<zone's domain>` through `publisher`.
async fn publish_at(
    publisher: &Route53Publisher,
    zone: &HostedZone,
    selector: &str,
    deadline: Deadline,
) -> Result<Publication, ses_dkim_rotator::engine::ports::PortError> {
    let fields = serde_json::Map::new();
    let name = format!("{selector}._domainkey.{}", zone.domain);
    publisher
        .upsert_txt(
            TxtRecord {
                secret_id: "dkim/r53quota",
                identity: "r53quota.example",
                name: &name,
                value: "v=DKIM1; k=rsa; p=A",
                secret_fields: &fields,
            },
            deadline,
        )
        .await
}

#[tokio::test]
async fn route53_changes_are_pending_first_and_only_an_invocation_that_may_wait_polls_them() {
    let bed = TestBed::connect().await;
    let r53 = route53_account(&bed, "R53PENDING", 8).await;
    let (queue_zone, step_zone) = (
        route53_zone(&r53, "worker").await,
        route53_zone(&r53, "step").await,
    );
    let publisher = |zone: &HostedZone| {
        Route53Publisher::new(r53.clone(), Some(zone.id.clone()), 60)
            .polling_every(std::time::Duration::from_millis(200))
    };
    // A queue worker publishes and leaves: the DNS check of a later visit decides.
    publish_at(
        &publisher(&queue_zone),
        &queue_zone,
        "worker",
        Deadline::NONE.without_waiting(),
    )
    .await
    .unwrap();
    // A Secrets Manager step may wait: it polls GetChange until INSYNC, within its deadline.
    let deadline = Deadline::at(time::OffsetDateTime::now_utc() + time::Duration::seconds(60));
    publish_at(&publisher(&step_zone), &step_zone, "step", deadline)
        .await
        .unwrap();
    let state = aws_front_state().await;
    let answers = |zone: &str| -> Vec<(u64, u64)> {
        state["changes"]
            .as_object()
            .unwrap()
            .values()
            .filter(|c| c["zone"] == zone)
            .map(|c| {
                (
                    c["PENDING"].as_u64().unwrap(),
                    c["INSYNC"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        answers(&queue_zone.id),
        [(0, 0)],
        "the worker polled: {state}"
    );
    let step = answers(&step_zone.id);
    assert_eq!(step.len(), 1, "{state}");
    assert!(
        step[0].0 >= 1 && step[0].1 == 1,
        "the step should see PENDING, then stop at the first INSYNC: {step:?}"
    );
}

#[tokio::test]
async fn route53_requests_are_paced_to_the_account_rate_and_a_busy_zone_is_a_throttle() {
    let bed = TestBed::connect().await;
    let setup = route53_account(&bed, "R53SETUP", 8).await;
    let zones = [
        route53_zone(&setup, "paced-a").await,
        route53_zone(&setup, "paced-b").await,
    ];
    // More deletes than the bucket holds (one second of the account's rate) of records that are
    // not there: one ListResourceRecordSets each, all at once.
    let scale: f64 = quota_scale().parse().unwrap();
    let at_once = (5.0 * scale) as usize * 2 + 10;
    let deletes = |publisher: Route53Publisher, zone: &HostedZone| {
        let domain = zone.domain.clone();
        async move {
            let fields = serde_json::Map::new();
            let names: Vec<String> = (0..at_once)
                .map(|i| format!("gone{i}._domainkey.{domain}"))
                .collect();
            let calls = names.iter().map(|name| {
                publisher.delete_txt(TxtRecord {
                    secret_id: "dkim/r53quota",
                    identity: "r53quota.example",
                    name,
                    value: "v=DKIM1; k=rsa; p=A",
                    secret_fields: &fields,
                })
            });
            futures_util::future::join_all(calls)
                .await
                .into_iter()
                .map(|r| r.map_err(|e| e.kind))
                .collect::<Vec<_>>()
        }
    };
    let unpaced = route53_account(&bed, "R53UNPACED", 1).await;
    let results = deletes(
        Route53Publisher::new(unpaced, Some(zones[0].id.clone()), 60),
        &zones[0],
    )
    .await;
    assert!(
        results.contains(&Err(FailureKind::Throttled)),
        "the bed's Route 53 rate never bit: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(FailureKind::Throttled))),
        "a throttle is Throttled (the work comes back), never a failure: {results:?}"
    );

    // The product's share of the account's rate (the bed runs AWS's 5/s times its scale).
    let rate = (5.0 * scale).to_string();
    let settings = ses_dkim_rotator::config::Settings::from_lookup(|name| {
        (name == "DKIM_ROUTE53_REQUESTS_PER_SECOND").then(|| rate.clone())
    })
    .unwrap();
    let pacer = Arc::new(Pacer::new(
        Rate {
            per_second: settings.fleet.route53_share_per_second(),
            burst: 1,
        },
        std::time::Duration::from_secs(30),
    ));
    let paced = route53_account(&bed, "R53PACED", 1).await;
    let results = deletes(
        Route53Publisher::new(paced.clone(), Some(zones[1].id.clone()), 60).paced_by(pacer),
        &zones[1],
    )
    .await;
    assert!(
        results.iter().all(Result::is_ok),
        "paced, no request may be throttled: {results:?}"
    );

    // Two changes to one zone at once: the zone is still busy with the first.
    let publisher = Route53Publisher::new(paced, Some(zones[1].id.clone()), 60);
    let (first, second) = tokio::join!(
        publish_at(
            &publisher,
            &zones[1],
            "one",
            Deadline::NONE.without_waiting()
        ),
        publish_at(
            &publisher,
            &zones[1],
            "two",
            Deadline::NONE.without_waiting()
        )
    );
    let kinds = [first.map_err(|e| e.kind), second.map_err(|e| e.kind)];
    assert!(
        kinds.contains(&Ok(Publication::Written)) && kinds.contains(&Err(FailureKind::Throttled)),
        "one change, one PriorRequestNotComplete as a throttle: {kinds:?}"
    );
}
