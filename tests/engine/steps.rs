//! The four steps.

use super::*;

#[tokio::test]
async fn a_rotation_publishes_verifies_then_switches() {
    let world = World::new(PublishMode::Route53);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    let mut outcomes = Vec::new();
    for step in STEPS {
        outcomes.push(world.step(step, &token).await.unwrap());
        world.assert_invariant();
    }
    assert_eq!(
        outcomes,
        [
            Outcome::KeyCreated,
            Outcome::RecordPublished,
            Outcome::PendingKeyTested,
            Outcome::SesSwitched
        ]
    );
    let current = world.current();
    let selector = world.selector();
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_CURRENT),
        Some(token.clone())
    );
    assert_eq!(world.ses_selector(), Some(selector.clone()));
    assert_eq!(
        world.record(&selector),
        vec![current["dns_value"].as_str().unwrap().to_owned()]
    );
    assert_eq!(
        world.ses.key_of(DOMAIN).as_deref(),
        current["private_key"].as_str()
    );
    // SES verifies on its own time: right after the switch it is PENDING, not SUCCESS.
    assert_eq!(
        world.ses.state_of(DOMAIN).unwrap().status,
        Some(DkimStatus::Pending)
    );
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_PENDING),
        None,
        "AWSPENDING must not stay behind to block the next RotateSecret"
    );
    let tags = world.secrets.tags(&world.arn);
    assert_eq!(tags.get(TAG_SWITCHED_TO), Some(&selector));
    assert!(tags.contains_key(TAG_SWITCHED_AT));
}

#[tokio::test]
async fn the_switch_comes_after_the_dns_check_in_the_call_order() {
    let world = World::new(PublishMode::Rfc2136);
    world.rotate().await;
    let dns = world.zone.calls();
    let lookups = dns.iter().filter(|c| *c == "DNS.Lookup").count();
    assert_eq!(
        lookups, 2,
        "testSecret and finishSecret each check DNS: {dns:?}"
    );
    let ses = world.ses.calls();
    let put = ses
        .iter()
        .position(|c| c.ends_with("PutEmailIdentityDkimSigningAttributes"))
        .unwrap();
    assert!(put > 0, "SES is read before it is switched: {ses:?}");
    assert_eq!(world.ses.puts().len(), 1);
}

#[tokio::test]
async fn every_step_retried_gives_the_same_state() {
    let world = World::new(PublishMode::Route53);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    for step in STEPS {
        world.step(step, &token).await.unwrap();
        let before = world.secrets.snapshot();
        let again = world.step(step, &token).await.unwrap();
        world.assert_invariant();
        match step {
            Step::CreateSecret => assert_eq!(again, Outcome::KeyAlreadyCreated),
            Step::FinishSecret => assert_eq!(again, Outcome::AlreadyCurrent),
            _ => {}
        }
        if step != Step::FinishSecret {
            assert_eq!(
                world.secrets.snapshot(),
                before,
                "{step} retried changed state"
            );
        }
    }
    assert_eq!(world.ses.puts().len(), 1, "SES is switched once");
}

#[tokio::test]
async fn a_retried_finish_that_finds_ses_switched_skips_the_put() {
    let world = World::new(PublishMode::Route53);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    for step in &STEPS[..3] {
        world.step(*step, &token).await.unwrap();
    }
    // The step fails after SES was switched (the fake reports the selector in `Tokens`, as
    // real SES does); Secrets Manager retries it.
    world
        .secrets
        .fail_next("UpdateSecretVersionStage", FailureKind::Unavailable);
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "AwsCallFailed");
    assert_eq!(
        world.ses.puts().len(),
        1,
        "the Put landed before the failure"
    );
    assert_eq!(
        world.step(Step::FinishSecret, &token).await.unwrap(),
        Outcome::SesAlreadySwitched
    );
    assert_eq!(world.ses.puts().len(), 1, "no second Put");
    world.assert_invariant();
}

#[tokio::test]
async fn a_failed_switch_tag_is_repaired_by_the_retry() {
    let world = World::new(PublishMode::Route53);
    // A second rotation: SES is on BYODKIM already, so the only tag written is the switch.
    world.rotate().await;
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    for step in &STEPS[..3] {
        world.step(*step, &token).await.unwrap();
    }
    world
        .secrets
        .fail_next("TagResource", FailureKind::Throttled);
    assert!(world.step(Step::FinishSecret, &token).await.is_err());
    assert_ne!(
        world.secrets.version_with_stage(&world.arn, STAGE_CURRENT),
        Some(token.clone()),
        "AWSCURRENT must not move before the switch is recorded"
    );
    world.step(Step::FinishSecret, &token).await.unwrap();
    assert_eq!(
        world.secrets.tags(&world.arn).get(TAG_SWITCHED_TO),
        Some(&world.selector())
    );
}

#[tokio::test]
async fn hint_mode_waits_for_a_person_to_add_the_record() {
    let world = World::new(PublishMode::Hint);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &token).await.unwrap();
    assert_eq!(
        world.step(Step::SetSecret, &token).await.unwrap(),
        Outcome::RecordHintPublished
    );
    assert!(world.zone.names().is_empty(), "hint mode writes no DNS");
    let err = world.step(Step::TestSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "DnsNotVerified");
    assert!(err.to_string().contains("_domainkey"), "{err}");
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "DnsNotVerified");
    assert!(
        world.ses.puts().is_empty(),
        "SES never switched to an unverified selector"
    );

    let pending = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    world.zone.add(
        pending["dns_name"].as_str().unwrap(),
        pending["dns_value"].as_str().unwrap(),
    );
    world.step(Step::TestSecret, &token).await.unwrap();
    assert_eq!(
        world.step(Step::FinishSecret, &token).await.unwrap(),
        Outcome::SesSwitched
    );
    world.assert_invariant();
}

#[tokio::test]
async fn a_record_with_another_key_is_a_mismatch_and_ses_is_not_switched() {
    let world = World::new(PublishMode::Hint);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &token).await.unwrap();
    let pending = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    let other = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
    world
        .zone
        .add(pending["dns_name"].as_str().unwrap(), &other.txt_value());
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert!(matches!(
        err,
        EngineError::DnsNotVerified {
            outcome: "mismatch",
            ..
        }
    ));
    assert!(world.ses.puts().is_empty());
}

#[tokio::test]
async fn dns_verification_retries_until_the_deadline_on_the_manual_clock() {
    let world = World::new(PublishMode::Hint);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &token).await.unwrap();
    let request = RotationRequest {
        deadline: Deadline::at(START + time::Duration::seconds(60)),
        ..world.request(Step::TestSecret, &token)
    };
    let err = world.engine.run_step(&request).await.unwrap_err();
    assert_eq!(err.error_type(), "DnsNotVerified");
    // Attempts at t = 0, 5, …, 45 s: each leaves more than the 5 s pause + 10 s margin.
    let lookups = world
        .zone
        .calls()
        .iter()
        .filter(|c| *c == "DNS.Lookup")
        .count();
    assert_eq!(lookups, 10);
    assert_eq!(world.clock_now(), START + time::Duration::seconds(45));
}

impl World {
    pub(crate) fn clock_now(&self) -> OffsetDateTime {
        use ses_dkim_rotator::engine::ports::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn a_dns_server_failure_is_not_taken_for_a_published_record() {
    let world = World::new(PublishMode::Route53);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &token).await.unwrap();
    world.step(Step::SetSecret, &token).await.unwrap();
    world.zone.set_down(true);
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::DnsNotVerified {
                outcome: "server_failure",
                ..
            }
        ),
        "{err}"
    );
    assert!(world.ses.puts().is_empty());
}

#[tokio::test]
async fn create_secret_twice_at_once_makes_one_key() {
    let world = World::new(PublishMode::Route53);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    let (a, b) = tokio::join!(
        world.step(Step::CreateSecret, &token),
        world.step(Step::CreateSecret, &token)
    );
    a.unwrap();
    b.unwrap();
    let puts = world
        .secrets
        .calls()
        .iter()
        .filter(|c| c.ends_with("PutSecretValue"))
        .count();
    assert!(puts >= 1);
    let value = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    // Whatever the interleaving, one key is pending and every later step uses it.
    for step in &STEPS[1..] {
        world.step(*step, &token).await.unwrap();
    }
    assert_eq!(world.current()["selector"], value["selector"]);
}

#[tokio::test]
async fn a_pending_key_of_another_size_fails_test_secret() {
    let world = World::new(PublishMode::Route53);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &token).await.unwrap();
    world.step(Step::SetSecret, &token).await.unwrap();
    // The same secret, tested by a deployment whose DKIM_KEY_BITS changed meanwhile.
    let strict = Engine::new(
        world.engine.ports().clone(),
        RotationPolicy {
            key_bits: KeyBits::Rsa2048,
            ..policy()
        },
    );
    let err = strict
        .run_step(&world.request(Step::TestSecret, &token))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "PendingKeyInvalid");
    assert!(
        err.to_string().contains("update-secret-version-stage"),
        "{err}"
    );
}

#[tokio::test]
async fn a_2048_bit_policy_makes_2048_bit_keys() {
    let world = World::with_policy(
        PublishMode::Route53,
        RotationPolicy {
            key_bits: KeyBits::Rsa2048,
            ..policy()
        },
    );
    world.rotate().await;
    assert_eq!(world.current()["key_bits"], 2048);
    world.assert_invariant();
}

#[tokio::test]
async fn rotation_steps_need_rotation_enabled_and_a_staged_token() {
    let world = World::new(PublishMode::Route53);
    let err = world
        .step(Step::CreateSecret, "not-a-version")
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "RotationNotEnabled");
    world.secrets.set_rotation_enabled(&world.arn, true);
    let err = world
        .step(Step::CreateSecret, "not-a-version")
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "TokenNotStaged");
}

#[tokio::test]
async fn a_finished_token_is_already_current_for_every_step() {
    let world = World::new(PublishMode::Route53);
    let token = world.rotate().await;
    for step in STEPS {
        assert_eq!(
            world.step(step, &token).await.unwrap(),
            Outcome::AlreadyCurrent
        );
    }
}

#[tokio::test]
async fn an_old_token_is_refused() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate().await;
    world.rotate().await;
    let err = world.step(Step::SetSecret, &first).await.unwrap_err();
    assert_eq!(err.error_type(), "TokenNotPending");
}

#[tokio::test]
async fn identities_outside_the_allow_list_are_refused_and_nothing_changes() {
    let world = World::with_policy(
        PublishMode::Route53,
        RotationPolicy {
            allowed_identities: AllowedIdentities::parse("other.example").unwrap(),
            ..policy()
        },
    );
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    let before = world.secrets.snapshot();
    let err = world.step(Step::CreateSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "IdentityNotAllowed");
    assert_eq!(world.secrets.snapshot(), before);
    assert!(world.zone.names().is_empty());
}

#[tokio::test]
async fn an_identity_missing_from_ses_is_named() {
    let world = World::new(PublishMode::Route53);
    world.secrets.overwrite(
        &world.arn,
        STAGE_CURRENT,
        &json!({"identity": "absent.example"}).to_string(),
    );
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    let err = world.step(Step::CreateSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "IdentityNotInSes");
    assert!(err.to_string().contains("create-email-identity"), "{err}");
}

#[tokio::test]
async fn corrupt_secrets_change_nothing_at_any_step() {
    for body in [
        "not json",
        r#"{"identity": 5}"#,
        r#"{"identity": "example.com", "selector": "bad_selector"}"#,
        r#"{"identity": "example.com", "private_key": "-----BEGIN"}"#,
    ] {
        let world = World::new(PublishMode::Route53);
        world.secrets.overwrite(&world.arn, STAGE_CURRENT, body);
        let token = world.secrets.start_rotation(&world.arn).unwrap();
        for step in STEPS {
            let before = (
                world.secrets.snapshot(),
                world.ses.state_of(DOMAIN),
                world.zone.names(),
            );
            let err = world.step(step, &token).await.unwrap_err();
            assert!(
                matches!(err.error_type(), "CorruptSecret" | "PendingMissing"),
                "{body} at {step}: {err}"
            );
            assert_eq!(
                (
                    world.secrets.snapshot(),
                    world.ses.state_of(DOMAIN),
                    world.zone.names()
                ),
                before,
                "{body} at {step} changed state"
            );
            assert!(!err.to_string().contains("BEGIN"));
        }
    }
}

#[tokio::test]
async fn a_pending_version_for_another_identity_is_refused_before_any_switch() {
    let world = World::new(PublishMode::Route53);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &token).await.unwrap();
    let mut pending = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    pending["identity"] = json!("evil.example");
    pending["dns_name"] = json!(format!(
        "{}._domainkey.evil.example",
        pending["selector"].as_str().unwrap()
    ));
    world
        .secrets
        .overwrite(&world.arn, STAGE_PENDING, &pending.to_string());
    // setSecret publishes nothing for it, and finishSecret switches nothing.
    let err = world.step(Step::SetSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "IdentityMismatch");
    assert!(err.to_string().contains("evil.example"), "{err}");
    assert!(world.zone.names().is_empty(), "{:?}", world.zone.names());
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "IdentityMismatch");
    assert!(world.ses.puts().is_empty());
}
