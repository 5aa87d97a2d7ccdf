//! Scheduled runs over a fleet, notifications, metrics and the CLI, against the emulators
//! and the real DNS server. (The 200-identity run under injected throttling is in
//! `fleet_scale.rs`, alone in its binary, so its chaos rules touch no other test.)

pub mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;

use common::*;
use serde_json::{Value, json};
use ses_dkim_rotator::app::ScheduledRun;
use ses_dkim_rotator::assembly::{AwsRotator, build_rotator};
use ses_dkim_rotator::config::Settings;
use ses_dkim_rotator::engine::key::{DkimKeyPair, split_txt_strings};
use ses_dkim_rotator::engine::ports::Deadline;
use ses_dkim_rotator::engine::schedule::Action;
use ses_dkim_rotator::secret_text::SecretText;

/// SES's account budget in the bed. Each CLI command runs in a process of its own, with its
/// own share of SES's rate beside this binary's (two stacks in one account, which AWS
/// throttles the same way): while the CLI test runs, no other test here uses SES.
static SES_ACCOUNT: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn rotator(bed: &TestBed, publisher: &str, tune: impl FnOnce(&mut Settings)) -> AwsRotator {
    let mut settings = bed.settings(publisher).await;
    tune(&mut settings);
    build_rotator(&settings, &bed.aws_config().await)
}

fn run_for(ids: &[String], force: bool) -> ScheduledRun {
    ScheduledRun {
        secret_ids: Some(ids.to_vec()),
        force,
        dry_run: false,
    }
}

#[tokio::test]
async fn tag_discovery_pages_through_list_secrets_and_keeps_only_the_pair() {
    let _shared = SES_ACCOUNT.read().await;
    let bed = TestBed::connect().await;
    let key = format!(
        "dkim-fleet-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut expected = HashSet::new();
    for i in 0..130 {
        let name = format!("dkim/tagged-{key}-{i}");
        let arn = bed.create_secret(&name, "{}").await;
        let value = match i % 13 {
            0 => "other",
            _ => "managed",
        };
        bed.secrets
            .tag_resource()
            .secret_id(&arn)
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key(&key)
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        if value == "managed" {
            expected.insert(arn);
        }
    }
    let extra = bed.create_secret(&format!("dkim/listed-{key}"), "{}").await;
    let rotator = rotator(&bed, "hint", |s| {
        s.fleet.secret_tag = Some((key.clone(), "managed".into()));
        s.fleet.secret_ids = vec![extra.clone()];
    })
    .await;
    let found = rotator
        .managed_secrets(&ScheduledRun::default())
        .await
        .unwrap();
    let found_set: HashSet<String> = found.iter().cloned().collect();
    assert_eq!(found.len(), found_set.len(), "duplicates");
    assert!(found_set.contains(&extra));
    expected.insert(extra);
    assert_eq!(
        found_set, expected,
        "120 tagged managed (more than one page) + the listed one"
    );
    assert_eq!(expected.len(), 121);
}

#[tokio::test]
async fn a_secret_rotated_by_secrets_manager_is_never_rotated_by_the_schedule() {
    let _shared = SES_ACCOUNT.read().await;
    let bed = TestBed::connect().await;
    let seeded = bed.seed("guard", json!({})).await;
    let token = bed.start_rotation(&seeded.arn).await; // rotation enabled, AWSPENDING staged
    let rotator = rotator(&bed, "rfc2136", |_| {}).await;
    let summary = rotator
        .scheduled(
            &run_for(std::slice::from_ref(&seeded.arn), true),
            Deadline::NONE,
        )
        .await
        .unwrap();
    let report = &summary.identities[0];
    assert!(
        !matches!(report.action, Action::Rotated | Action::Resumed),
        "{report:?}"
    );
    assert!(
        report
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("Secrets Manager rotation is enabled")
    );
    assert!(
        !bed.has_value(&seeded.arn, &token).await,
        "the schedule touched Secrets Manager's rotation"
    );
    assert_ne!(
        bed.ses_dkim(&seeded.domain)
            .await
            .origin
            .as_ref()
            .map(|o| o.as_str()),
        Some("EXTERNAL")
    );
}

#[tokio::test]
async fn notifications_reach_an_sns_topic_with_readable_text_and_attributes() {
    let _shared = SES_ACCOUNT.read().await;
    let bed = TestBed::connect().await;
    let config = bed.aws_config().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = format!("dkim-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let topic = bed.topic("dkim").await;
    let (queue_url, queue_arn) = bed.queue("dkim", None).await;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await
        .unwrap();

    let ok = bed.seed("notify", json!({})).await;
    let waiting = bed.seed("notifyhint", json!({})).await;
    let broken = bed
        .create_secret(&format!("dkim/broken-{name}"), "[]")
        .await;
    let notify = |s: &mut Settings| s.fleet.notify_topic_arn = Some(topic.clone());
    let dns_rotator = rotator(&bed, "rfc2136", notify).await;
    dns_rotator
        .scheduled(
            &run_for(&[ok.arn.clone(), broken.clone()], false),
            Deadline::NONE,
        )
        .await
        .unwrap();
    let hint_rotator = rotator(&bed, "hint", |s| {
        s.fleet.notify_topic_arn = Some(topic.clone())
    })
    .await;
    let waited = hint_rotator
        .scheduled(
            &run_for(std::slice::from_ref(&waiting.arn), false),
            Deadline::NONE,
        )
        .await
        .unwrap();
    assert_eq!(waited.identities[0].action, Action::WaitingForDns);

    let mut by_kind: BTreeMap<String, Value> = BTreeMap::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            // Long polling: waits for a message rather than sleeping between tries.
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in out.messages() {
            let envelope: Value = serde_json::from_str(message.body().unwrap()).unwrap();
            let kind = envelope["MessageAttributes"]["kind"]["Value"]
                .as_str()
                .unwrap()
                .to_owned();
            by_kind.insert(kind, envelope);
        }
        if by_kind.len() >= 3 {
            break;
        }
    }
    let kinds: Vec<&str> = by_kind.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["failure", "record_to_add", "rotation_completed"],
        "{by_kind:?}"
    );
    let done = &by_kind["rotation_completed"];
    assert!(done["Subject"].as_str().unwrap().contains(&ok.domain));
    assert_eq!(
        done["MessageAttributes"]["identity"]["Value"],
        ok.domain.as_str()
    );
    let add = &by_kind["record_to_add"];
    assert!(
        add["Message"].as_str().unwrap().contains("_domainkey."),
        "{add}"
    );
    assert!(
        add["MessageAttributes"]["dns_value"]["Value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1")
    );
    let failure = &by_kind["failure"];
    assert_eq!(
        failure["MessageAttributes"]["error_type"]["Value"],
        "CorruptSecret"
    );
    // Never key material.
    for envelope in by_kind.values() {
        assert!(!envelope.to_string().contains("private_key"));
    }
    let private = bed.try_secret_json(&ok.arn, "AWSCURRENT").await.unwrap()["private_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        by_kind
            .values()
            .all(|e| !e.to_string().contains(&private[..40]))
    );
}

fn cli(vars: &std::collections::HashMap<String, String>, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dkim-rotator"))
        .envs(vars)
        .args(args)
        .output()
        .expect("dkim-rotator");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_keygen_works_offline() {
    let out = Command::new(env!("CARGO_BIN_EXE_dkim-rotator"))
        .env_clear()
        .args([
            "--json",
            "keygen",
            "--bits",
            "2048",
            "--domain",
            "example.com",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = DkimKeyPair::from_private_key(&SecretText::new(v["private_key"].as_str().unwrap()))
        .unwrap();
    assert_eq!(v["dns_value"], key.txt_value());
    assert_eq!(v["key_bits"], 2048);
    assert!(
        v["dns_name"]
            .as_str()
            .unwrap()
            .ends_with("._domainkey.example.com")
    );
    assert_eq!(split_txt_strings(&key.txt_value()).len(), 2);

    let text = Command::new(env!("CARGO_BIN_EXE_dkim-rotator"))
        .env_clear()
        .args(["keygen", "--domain", "example.com"])
        .output()
        .unwrap();
    let shown = String::from_utf8(text.stdout).unwrap();
    assert!(
        shown.contains("._domainkey.example.com TXT \"v=DKIM1; k=rsa; p="),
        "{shown}"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_dkim-rotator"))
        .env_clear()
        .args(["keygen", "--bits", "4096", "--domain", "example.com"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("1024 or 2048"));
}

#[tokio::test]
async fn cli_status_plan_rotate_and_rollback_against_the_emulators() {
    let _alone = SES_ACCOUNT.write().await;
    let bed = TestBed::connect().await;
    let seeded = bed.seed("cli", json!({})).await;
    let mut vars = bed.settings_vars("rfc2136").await;
    for key in [
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ENDPOINT_URL_SESV2",
        "AWS_ENDPOINT_URL_ROUTE_53",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_EC2_METADATA_DISABLED",
        "PATH",
    ] {
        vars.insert(key.into(), std::env::var(key).unwrap());
    }
    vars.insert("DKIM_SECRET_IDS".into(), seeded.arn.clone());

    // plan: the never-rotated secret would be rotated; nothing changes.
    let (code, out, err) = cli(&vars, &["--json", "plan"]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["identities"][0]["action"], "rotated");
    assert_eq!(plan["identities"][0]["planned"], true);
    assert!(
        bed.try_secret_json(&seeded.arn, "AWSCURRENT")
            .await
            .unwrap()
            .get("selector")
            .is_none()
    );

    // rotate twice (forced), then status shows both selectors published.
    for _ in 0..2 {
        let (code, out, err) = cli(&vars, &["rotate", "--secret-id", &seeded.arn, "--force"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("rotated"), "{out}");
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
    }
    let current = bed.secret_json(&seeded.arn, "AWSCURRENT").await;
    let previous = current["previous_selector"].as_str().unwrap().to_owned();
    let (code, out, err) = cli(&vars, &["--json", "status"]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    let row = &status[0]["status"];
    assert_eq!(row["identity"], seeded.domain.as_str());
    assert_eq!(row["ses_origin"], "EXTERNAL");
    assert_eq!(row["current_selector"], current["selector"]);
    assert_eq!(row["current_dns"], "published");
    assert_eq!(row["previous_dns"], "published");
    let (code, table, _) = cli(&vars, &["status"]);
    assert_eq!(code, 0);
    assert!(
        table.contains(&seeded.domain) && table.contains("published"),
        "{table}"
    );

    // rollback: SES and AWSCURRENT go back to the previous selector.
    let (code, out, err) = cli(&vars, &["rollback", "--secret-id", &seeded.arn]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        Some(previous.as_str())
    );
    assert_eq!(
        bed.secret_json(&seeded.arn, "AWSCURRENT").await["selector"],
        previous.as_str()
    );
    bed.assert_invariant(&seeded.domain, &seeded.arn).await;

    // Rolling back again would return to the newer key; with its record gone, it refuses.
    let now_previous = bed.secret_json(&seeded.arn, "AWSPREVIOUS").await;
    assert_eq!(now_previous["selector"], current["selector"]);
    let name = current["dns_name"].as_str().unwrap();
    dns_delete_txt(name);
    let (code, _, err) = cli(&vars, &["rollback", "--secret-id", &seeded.arn]);
    assert_eq!(code, 1);
    assert!(err.contains("RollbackRefused"), "{err}");
    assert_eq!(
        bed.ses_selector(&seeded.domain).await.as_deref(),
        Some(previous.as_str())
    );

    // configuration errors exit 3 and name the variable.
    let mut bad = vars.clone();
    bad.insert("DKIM_KEY_BITS".into(), "4096".into());
    let (code, _, err) = cli(&bad, &["status"]);
    assert_eq!(code, 3);
    assert!(err.contains("DKIM_KEY_BITS"), "{err}");
}

#[tokio::test]
async fn a_secret_region_selects_the_ses_region_of_its_identity() {
    let _shared = SES_ACCOUNT.read().await;
    let bed = TestBed::connect().await;
    let config = bed.aws_config().await;
    let eu = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&config)
            .region(aws_sdk_sesv2::config::Region::new("eu-west-1"))
            .build(),
    );
    let domain = unique_domain("region");
    eu.create_email_identity()
        .email_identity(&domain)
        .send()
        .await
        .unwrap();
    let arn = bed
        .create_secret(
            &format!("dkim/{domain}"),
            &json!({"identity": domain, "region": "eu-west-1"}).to_string(),
        )
        .await;
    let rotator = rotator(&bed, "rfc2136", |_| {}).await;
    let summary = rotator
        .scheduled(&run_for(std::slice::from_ref(&arn), false), Deadline::NONE)
        .await
        .unwrap();
    assert_eq!(
        summary.identities[0].action,
        Action::Rotated,
        "{:?}",
        summary.identities[0]
    );
    let dkim = eu
        .get_email_identity()
        .email_identity(&domain)
        .send()
        .await
        .unwrap();
    assert_eq!(
        dkim.dkim_attributes()
            .unwrap()
            .signing_attributes_origin()
            .map(|o| o.as_str()),
        Some("EXTERNAL")
    );
    // The function's own region has no such identity: the region field was what found it.
    assert!(
        bed.ses
            .get_email_identity()
            .email_identity(&domain)
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        bed.secret_json(&arn, "AWSCURRENT").await["region"],
        "eu-west-1"
    );
}

#[tokio::test]
async fn one_key_serves_an_identity_in_two_regions_of_the_ses_model() {
    let _shared = SES_ACCOUNT.read().await;
    let bed = TestBed::connect().await;
    let config = bed.aws_config().await;
    let regional = |region: &'static str| {
        aws_sdk_sesv2::Client::from_conf(
            aws_sdk_sesv2::config::Builder::from(&config)
                .region(aws_sdk_sesv2::config::Region::new(region))
                .build(),
        )
    };
    let (eu, ap) = (regional("eu-west-1"), regional("ap-southeast-2"));
    let domain = unique_domain("regions");
    for client in [&eu, &ap] {
        client
            .create_email_identity()
            .email_identity(&domain)
            .send()
            .await
            .unwrap();
    }
    let arn = bed
        .create_secret(
            &format!("dkim/{domain}"),
            &json!({"identity": domain, "regions": ["eu-west-1", "ap-southeast-2"]}).to_string(),
        )
        .await;
    let rotator = rotator(&bed, "rfc2136", |_| {}).await;
    let summary = rotator
        .scheduled(&run_for(std::slice::from_ref(&arn), false), Deadline::NONE)
        .await
        .unwrap();
    assert_eq!(
        summary.identities[0].action,
        Action::Rotated,
        "{:?}",
        summary.identities[0]
    );
    let selector = bed.secret_json(&arn, "AWSCURRENT").await["selector"]
        .as_str()
        .unwrap()
        .to_owned();
    for client in [&eu, &ap] {
        let dkim = client
            .get_email_identity()
            .email_identity(&domain)
            .send()
            .await
            .unwrap();
        let attributes = dkim.dkim_attributes().unwrap();
        assert_eq!(
            attributes.signing_attributes_origin().map(|o| o.as_str()),
            Some("EXTERNAL")
        );
        assert_eq!(attributes.tokens(), std::slice::from_ref(&selector));
    }
    // Not in the function's own region: the secret named its regions.
    assert!(
        bed.ses
            .get_email_identity()
            .email_identity(&domain)
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn planner_queue_worker_fleet_with_a_broken_secret_ending_in_the_dead_letter_queue() {
    let _shared = SES_ACCOUNT.read().await;
    let bed = TestBed::connect().await;
    let config = bed.aws_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (dlq_url, dlq_arn) = bed.queue("dkim-dlq", None).await;
    let (queue_url, _) = bed.queue("dkim-work", Some((&dlq_arn, 2))).await;

    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(bed.seed("queued", json!({})).await);
    }
    let broken = bed
        .create_secret(&format!("dkim/broken-{tag}"), "{\"identity\": 5}")
        .await;
    let mut ids: Vec<String> = fleet.iter().map(|s| s.arn.clone()).collect();
    ids.push(broken.clone());
    let rotator = rotator(&bed, "rfc2136", |s| {
        s.fleet.work_queue_url = Some(queue_url.clone());
        s.fleet.secret_ids = ids.clone();
    })
    .await;

    // The planner: one message per identity, nothing else.
    let plan = rotator
        .handle(lambda_runtime::LambdaEvent::new(
            json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    assert_eq!(plan["queued"], 4, "{plan}");

    // The worker, in batches of 2 as the mapping would deliver them.
    let mut failures = Vec::new();
    for _ in 0..10 {
        let Some(response) = deliver(&sqs, &queue_url, &rotator, 2, 0).await else {
            break;
        };
        failures.extend(
            response["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned()),
        );
    }
    for seeded in &fleet {
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
        assert!(
            bed.ses_selector(&seeded.domain).await.is_some(),
            "{} was not rotated",
            seeded.domain
        );
    }
    // Only the broken secret's message failed (once per delivery), then went to the DLQ.
    assert!(!failures.is_empty());
    assert_eq!(
        failures.iter().collect::<HashSet<_>>().len(),
        1,
        "one message failed: {failures:?}"
    );
    let dead = sqs
        .receive_message()
        .queue_url(&dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].contains(&broken), "{bodies:?}");

    // A second plan inside the interval sends work again, and the worker finds it done.
    let puts_before: Vec<Option<String>> = {
        let mut v = Vec::new();
        for s in &fleet {
            v.push(bed.ses_selector(&s.domain).await);
        }
        v
    };
    let rotator_again = rotator;
    rotator_again
        .plan_to_queue(
            &ScheduledRun {
                secret_ids: Some(fleet.iter().map(|s| s.arn.clone()).collect()),
                force: false,
                dry_run: false,
            },
            Deadline::NONE,
        )
        .await
        .unwrap();
    while let Some(response) = deliver(&sqs, &queue_url, &rotator_again, 10, 0).await {
        assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    }
    for (s, before) in fleet.iter().zip(puts_before) {
        assert_eq!(bed.ses_selector(&s.domain).await, before, "rotated twice");
    }
}
