//! Fleets through a queue: the planner and the worker.

use super::handler::{MemoryRotator, event, rotator};
use super::*;

fn sqs_event(records: &[(&str, &str)]) -> Value {
    json!({
        "Records": records
            .iter()
            .map(|(id, body)| json!({
                "messageId": id, "receiptHandle": "r", "body": body, "attributes": {},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:dkim-work", "awsRegion": "us-east-1"
            }))
            .collect::<Vec<_>>()
    })
}

#[tokio::test]
async fn the_planner_sends_one_message_per_identity_and_reads_no_secret() {
    let (mut rotator, _, world) = rotator(World::new(PublishMode::Route53));
    let other = world
        .secrets
        .create_secret("other", &json!({"identity": DOMAIN}).to_string());
    rotator.fleet.secret_ids.push(other.clone());
    rotator.fleet.work_queue_url = Some("https://sqs.example/dkim-work".into());
    let out = rotator
        .handle(event(
            json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
        ))
        .await
        .unwrap();
    assert_eq!(out["queued"], 2, "{out}");
    let sent: Vec<String> = rotator
        .queue
        .sent()
        .into_iter()
        .map(|i| i.secret_id)
        .collect();
    assert_eq!(sent, [world.arn.clone(), other]);
    assert!(
        world
            .secrets
            .calls()
            .iter()
            .all(|c| !c.ends_with("GetSecretValue") && !c.ends_with("DescribeSecret")),
        "the planner read a secret: {:?}",
        world.secrets.calls()
    );
    assert!(world.ses.calls().is_empty(), "the planner called SES");
}

#[tokio::test]
async fn a_secret_named_by_name_and_found_by_arn_through_its_tag_is_planned_once() {
    let (mut rotator, _, world) = rotator(World::new(PublishMode::Route53));
    // `DKIM_SECRET_IDS` names it by name; the tag listing finds it by ARN.
    rotator.fleet.secret_ids = vec!["dkim/example".into()];
    rotator.fleet.secret_tag = Some(("dkim-rotator".into(), "managed".into()));
    rotator.fleet.work_queue_url = Some("https://sqs.example/dkim-work".into());
    ses_dkim_rotator::engine::ports::SecretStore::set_tags(
        &world.secrets,
        &world.arn,
        &[("dkim-rotator", "managed")],
    )
    .await
    .unwrap();
    assert!(world.arn.ends_with(":secret:dkim/example"), "{}", world.arn);
    let out = rotator
        .handle(event(
            json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
        ))
        .await
        .unwrap();
    assert_eq!(out["queued"], 1, "one secret, two spellings: {out}");
}

/// One planner run over the tagged fleet, then its messages delivered to the worker as one
/// SQS batch. Returns the plan and the worker's actions; asserts the planner read nothing but
/// the listing (and SES's `ListEmailIdentities`, its health-check screen).
async fn plan_then_work(rotator: &MemoryRotator, world: &World) -> (Value, Vec<String>) {
    let (sm_before, ses_before) = (world.secrets.calls().len(), world.ses.calls().len());
    let sent_before = rotator.queue.sent().len();
    let plan = rotator
        .handle(event(
            json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        world.secrets.calls()[sm_before..],
        ["SecretsManager.ListSecrets".to_owned()],
        "the planner reads the listing only"
    );
    assert!(
        world.ses.calls()[ses_before..]
            .iter()
            .all(|c| c == "SESv2.ListEmailIdentities"),
        "the planner called SES for more than its health-check screen: {:?}",
        &world.ses.calls()[ses_before..]
    );
    let new: Vec<(String, String)> = rotator.queue.sent()[sent_before..]
        .iter()
        .enumerate()
        .map(|(i, item)| (format!("m-{i}"), serde_json::to_string(item).unwrap()))
        .collect();
    let records: Vec<(&str, &str)> = new.iter().map(|(i, b)| (i.as_str(), b.as_str())).collect();
    let mut actions = Vec::new();
    if !records.is_empty() {
        let out = rotator.handle(event(sqs_event(&records))).await.unwrap();
        assert_eq!(out["batchItemFailures"], json!([]), "{out}");
        actions = world
            .secrets
            .calls()
            .iter()
            .filter(|c| c.ends_with("PutSecretValue") || c.ends_with("TagResource"))
            .cloned()
            .collect();
    }
    (plan, actions)
}

#[tokio::test]
async fn the_planner_decides_from_tags_and_sends_nothing_inside_the_interval() {
    let (mut rotator, notifier, world) = rotator(World::new(PublishMode::Route53));
    rotator.fleet.secret_ids.clear();
    rotator.fleet.secret_tag = Some(("dkim-rotator".into(), "managed".into()));
    rotator.fleet.work_queue_url = Some("https://sqs.example/dkim-work".into());
    // The rules for due work alone (health checks: triage's own test).
    rotator.fleet.health_check_days = 0;
    ses_dkim_rotator::engine::ports::SecretStore::set_tags(
        &world.secrets,
        &world.arn,
        &[("dkim-rotator", "managed")],
    )
    .await
    .unwrap();
    let reasons = |plan: &Value| plan["reasons"].clone();

    // Never rotated here: the tags say nothing, a worker looks (and rotates).
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(reasons(&plan), json!({"untracked": 1}), "{plan}");
    let first = world.selector();
    // SES still PENDING: watched, not idle.
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(reasons(&plan), json!({"watch": 1}), "{plan}");
    world.ses_checks();
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(reasons(&plan), json!({"watch": 1}), "{plan}");
    assert_eq!(world.tag(TAG_CONFIRMED).as_deref(), Some(first.as_str()));

    // Inside the interval, nothing to retire (first key): nothing is sent.
    world.clock.advance(time::Duration::days(30));
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(plan["queued"], 0, "{plan}");
    assert_eq!(plan["idle"], 1, "{plan}");
    assert!(plan["next_due"].is_string(), "{plan}");

    // Due: rotated; watched until SES confirms; then the grace period runs with nothing sent.
    world.clock.advance(time::Duration::days(61));
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(reasons(&plan), json!({"rotate": 1}), "{plan}");
    let second = world.selector();
    assert_ne!(first, second);
    world.ses_checks();
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(reasons(&plan), json!({"watch": 1}), "{plan}");
    world.clock.advance(time::Duration::days(1));
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(plan["queued"], 0, "grace period: {plan}");
    assert_eq!(world.record(&first).len(), 1, "previous record kept");

    // Grace over: the previous record is retired, then the fleet is idle again.
    world.clock.advance(time::Duration::days(7));
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(reasons(&plan), json!({"retire": 1}), "{plan}");
    assert!(world.record(&first).is_empty(), "retired");
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(plan["queued"], 0, "{plan}");

    // SES turns the confirmed selector TEMPORARY_FAILURE (its record stopped resolving): the
    // tags cannot show it, so nothing is sent...
    world.ses.set_status(DOMAIN, DkimStatus::TemporaryFailure);
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(plan["queued"], 0, "{plan}");
    // ...until the secret's health-check day (one check a day here: every day is its day).
    // The worker reads SES and tells a person.
    rotator.fleet.health_check_days = 1;
    let told = notifier.sent().len();
    let (plan, _) = plan_then_work(&rotator, &world).await;
    assert_eq!(reasons(&plan), json!({"health_check": 1}), "{plan}");
    let notes = notifier.sent();
    assert!(
        notes[told..]
            .iter()
            .any(|n| n.kind == NotificationKind::TemporaryFailure),
        "no TEMPORARY_FAILURE notification: {:?}",
        notes[told..].iter().map(|n| &n.subject).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_worker_reports_exactly_the_failed_records_and_is_idempotent() {
    let (rotator, _, world) = rotator(World::new(PublishMode::Route53));
    let good = format!(r#"{{"secret_id":"{}"}}"#, world.arn);
    let out = rotator
        .handle(event(sqs_event(&[
            ("m-good", good.as_str()),
            ("m-poison", "rotate everything"),
            (
                "m-unknown",
                r#"{"secret_id":"arn:aws:secretsmanager:us-east-1:123456789012:secret:gone"}"#,
            ),
        ])))
        .await
        .unwrap();
    let failed: Vec<&str> = out["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["m-poison", "m-unknown"], "{out}");
    assert_eq!(
        world.ses.puts().len(),
        1,
        "the good record rotated its identity"
    );
    world.assert_invariant();

    // SQS delivers the good message again (e.g. the batch's visibility timed out): no-op.
    let out = rotator
        .handle(event(sqs_event(&[("m-good", good.as_str())])))
        .await
        .unwrap();
    assert_eq!(out["batchItemFailures"], json!([]), "{out}");
    assert_eq!(
        world.ses.puts().len(),
        1,
        "work already done is not done again"
    );
}

#[tokio::test]
async fn concurrent_invocations_store_publish_and_switch_exactly_one_key() {
    // Three invocations of each step at once, interleaving call by call. Secrets Manager keeps
    // the first value stored under a token and refuses a different one (MemorySecrets, as AWS;
    // moto lets the last write win, which is why this is proved here): exactly one key is ever
    // stored, published and put in SES, whichever invocation made it.
    let world = World::new(PublishMode::Route53);
    world.secrets.interleave_calls();
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    let mut selectors = std::collections::BTreeSet::new();
    for step in STEPS {
        let request = world.request(step, &token);
        let (a, b, c) = tokio::join!(
            world.engine.run_step(&request),
            world.engine.run_step(&request),
            world.engine.run_step(&request)
        );
        for report in [a, b, c] {
            let report = report.unwrap_or_else(|e| panic!("{step}: {e}"));
            selectors.extend(report.selector);
        }
    }
    assert_eq!(
        selectors.len(),
        1,
        "every invocation reported one key: {selectors:?}"
    );
    let selector = selectors.into_iter().next().unwrap();
    let versions = world.secrets.stages(&world.arn);
    assert_eq!(versions.len(), 2, "one new version: {versions:?}");
    assert_eq!(world.selector(), selector);
    assert_eq!(
        world.zone.names(),
        [format!("{selector}._domainkey.{DOMAIN}")],
        "one record published"
    );
    let puts = world.ses.puts();
    assert!(
        !puts.is_empty() && puts.iter().all(|(_, s)| *s == selector),
        "{puts:?}"
    );
    assert_eq!(world.ses_selector().as_deref(), Some(selector.as_str()));
    world.assert_invariant();
}

#[tokio::test]
async fn a_queue_message_cannot_force_a_rotation_and_an_operator_invocation_can() {
    let (mut rotator, _, world) = rotator(World::new(PublishMode::Route53));
    rotator.fleet.work_queue_url = Some("https://sqs.example/dkim-work".into());
    let good = format!(r#"{{"secret_id":"{}"}}"#, world.arn);
    rotator
        .handle(event(sqs_event(&[("m-first", good.as_str())])))
        .await
        .unwrap();
    assert_eq!(world.ses.puts().len(), 1, "the first key");

    // Anyone who may send to the queue asks for a rotation of a young key, again and again.
    let before = (
        world.secrets.snapshot(),
        world.zone.names(),
        world.ses.puts(),
    );
    for force in ["true", "false"] {
        let forced = format!(r#"{{"secret_id":"{}","force":{force}}}"#, world.arn);
        let out = rotator
            .handle(event(sqs_event(&[("m-forced", forced.as_str())])))
            .await
            .unwrap();
        assert_eq!(
            out["batchItemFailures"],
            json!([{"itemIdentifier": "m-forced"}]),
            "{out}"
        );
    }
    assert_eq!(
        (
            world.secrets.snapshot(),
            world.zone.names(),
            world.ses.puts()
        ),
        before,
        "a message that names `force` changes nothing"
    );

    // An operator's direct invocation forces, in that invocation: nothing goes to the queue.
    let out = rotator
        .handle(event(json!({"secret_ids": [world.arn], "force": true})))
        .await
        .unwrap();
    assert_eq!(out["counts"]["rotated"], 1, "{out}");
    assert!(
        rotator.queue.sent().is_empty(),
        "a forced run is not queued"
    );
    assert_eq!(world.ses.puts().len(), 2);
    world.assert_invariant();
}
