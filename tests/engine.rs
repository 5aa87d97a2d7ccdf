//! The engine end to end on the in-memory ports (`ses_dkim_rotator::testing`): every step,
//! retries, resume, rollback, retirement across a grace period on a manual clock, the
//! scheduled run's rules, and what notifications and metrics make of the reports. No network,
//! no emulator, no wall-clock wait.

use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use ses_dkim_rotator::app::{Rotator, ScheduledRun};
use ses_dkim_rotator::config::Settings;
use ses_dkim_rotator::engine::error::{EngineError, Rollback};
use ses_dkim_rotator::engine::identity::AllowedIdentities;
use ses_dkim_rotator::engine::key::{DkimKeyPair, KeyBits};
use ses_dkim_rotator::engine::ports::{
    Deadline, DkimStatus, FailureKind, STAGE_CURRENT, STAGE_PENDING, STAGE_PREVIOUS, SigningOrigin,
};
use ses_dkim_rotator::engine::retirement::{REVOKED_VALUE, RetireMode, RetireOutcome};
use ses_dkim_rotator::engine::rotation::{Outcome, RotationRequest, Step};
use ses_dkim_rotator::engine::schedule::{Action, Alert, MaintainOptions};
use ses_dkim_rotator::engine::tags::{
    TAG_ADOPTED_FROM, TAG_CONFIRMED, TAG_CONFIRMED_AT, TAG_REJECTED, TAG_RETIRED, TAG_SWITCHED_AT,
    TAG_SWITCHED_TO,
};
use ses_dkim_rotator::engine::{Engine, RotationPolicy};
use ses_dkim_rotator::metrics;
use ses_dkim_rotator::notifications::{self, NotificationKind};
use ses_dkim_rotator::secret_text::SecretText;
use ses_dkim_rotator::testing::{
    FakeSes, ManualClock, MemoryPorts, MemoryQueue, MemorySecrets, MemoryZone, PublishMode,
    RecordingNotifier, memory_ports,
};
use time::OffsetDateTime;
use time::macros::datetime;

const DOMAIN: &str = "example.com";
const START: OffsetDateTime = datetime!(2030-01-10 08:00 UTC);
const STEPS: [Step; 4] = [
    Step::CreateSecret,
    Step::SetSecret,
    Step::TestSecret,
    Step::FinishSecret,
];

/// One identity, its secret, and the in-memory world around them.
struct World {
    engine: Engine<MemoryPorts>,
    secrets: MemorySecrets,
    ses: FakeSes,
    zone: MemoryZone,
    clock: ManualClock,
    arn: String,
}

fn policy() -> RotationPolicy {
    RotationPolicy {
        allowed_identities: AllowedIdentities::parse("*").unwrap(),
        ..RotationPolicy::default()
    }
}

impl World {
    fn new(mode: PublishMode) -> Self {
        Self::with_policy(mode, policy())
    }

    fn with_policy(mode: PublishMode, policy: RotationPolicy) -> Self {
        let ports = memory_ports(mode, START);
        let (secrets, ses, zone, clock) = (
            ports.secrets.clone(),
            ports.ses.clone(),
            ports.dns.clone(),
            ports.clock.clone(),
        );
        ses.create_identity(DOMAIN);
        let arn = secrets.create_secret("dkim/example", &json!({"identity": DOMAIN}).to_string());
        Self {
            engine: Engine::new(ports, policy),
            secrets,
            ses,
            zone,
            clock,
            arn,
        }
    }

    fn request(&self, step: Step, token: &str) -> RotationRequest {
        RotationRequest::new(step, &self.arn, token)
    }

    async fn step(&self, step: Step, token: &str) -> Result<Outcome, EngineError> {
        self.engine
            .run_step(&self.request(step, token))
            .await
            .map(|r| r.outcome)
    }

    /// `RotateSecret`, then the four steps as Secrets Manager invokes them.
    async fn rotate(&self) -> String {
        let token = self.secrets.start_rotation(&self.arn).unwrap();
        for step in STEPS {
            self.step(step, &token)
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        token
    }

    fn current(&self) -> Value {
        self.secrets.json(&self.arn, STAGE_CURRENT).unwrap()
    }

    fn selector(&self) -> String {
        self.current()["selector"].as_str().unwrap().to_owned()
    }

    fn record(&self, selector: &str) -> Vec<String> {
        self.zone.txt(&format!("{selector}._domainkey.{DOMAIN}"))
    }

    fn tag(&self, key: &str) -> Option<String> {
        self.secrets.tags(&self.arn).get(key).cloned()
    }

    fn ses_selector(&self) -> Option<String> {
        self.ses
            .state_of(DOMAIN)
            .filter(|s| s.origin == Some(SigningOrigin::External))
            .and_then(|s| s.selectors.first().cloned())
    }

    /// SES looks at DNS now.
    fn ses_checks(&self) {
        self.ses.check_dns(DOMAIN, &self.zone);
    }

    fn options(&self) -> MaintainOptions {
        MaintainOptions {
            force: false,
            dry_run: false,
            rotation_interval: time::Duration::days(90),
            deadline: Deadline::NONE,
        }
    }

    async fn maintain(&self) -> ses_dkim_rotator::engine::schedule::IdentityReport {
        self.engine.maintain(&self.arn, &self.options()).await
    }

    /// The invariant after every step: SES signs only with a selector whose record DNS serves
    /// with SES's own key.
    fn assert_invariant(&self) {
        let Some(selector) = self.ses_selector() else {
            return;
        };
        let key = DkimKeyPair::from_private_key(&SecretText::new(
            self.ses.key_of(DOMAIN).unwrap().as_str(),
        ))
        .unwrap();
        assert_eq!(
            self.record(&selector),
            vec![key.txt_value()],
            "SES signs with {selector} but DNS does not serve its key"
        );
    }
}

// ---- the four steps -------------------------------------------------------------------

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
    fn clock_now(&self) -> OffsetDateTime {
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
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "IdentityMismatch");
    assert!(world.ses.puts().is_empty());
}

// ---- resume -----------------------------------------------------------------------------

#[tokio::test]
async fn an_abandoned_attempt_is_resumed_with_the_same_key() {
    let world = World::new(PublishMode::Hint);
    let first = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &first).await.unwrap();
    let handed_out = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    // A person gives up on it the way that works on AWS: AWSPENDING off, then rotate again.
    ses_dkim_rotator::engine::ports::SecretStore::clear_pending(&world.secrets, &world.arn, &first)
        .await
        .unwrap();
    let second = world.secrets.start_rotation(&world.arn).unwrap();
    assert_eq!(
        world.step(Step::CreateSecret, &second).await.unwrap(),
        Outcome::KeyResumed
    );
    let resumed = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    assert_eq!(resumed["selector"], handed_out["selector"]);
    assert_eq!(resumed["private_key"], handed_out["private_key"]);
}

#[tokio::test]
async fn cancel_rotate_secret_alone_blocks_the_next_rotation_as_on_aws() {
    let world = World::new(PublishMode::Hint);
    let first = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &first).await.unwrap();
    world.secrets.cancel_rotation(&world.arn);
    let err = world.secrets.start_rotation(&world.arn).unwrap_err();
    assert!(err.message.contains("previous rotation"), "{err}");
}

// ---- rollback on FAILED -----------------------------------------------------------------

impl World {
    /// One finished rotation, then a second whose finishSecret SES answers with `FAILED` (and
    /// the engine rolls back): the world, the first selector, the second token, the error.
    async fn second_key_rejected_by_ses() -> (World, String, String, EngineError) {
        let world = World::new(PublishMode::Route53);
        world.rotate().await;
        let previous = world.selector();
        world.ses.set_status_after_put(Some(DkimStatus::Failed));
        let token = world.secrets.start_rotation(&world.arn).unwrap();
        for step in &STEPS[..3] {
            world.step(*step, &token).await.unwrap();
        }
        let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
        assert!(err.rolled_back(), "{err}");
        (world, previous, token, err)
    }
}

#[tokio::test]
async fn ses_failing_the_new_key_puts_the_previous_one_back() {
    let (world, previous, _, err) = World::second_key_rejected_by_ses().await;
    assert!(matches!(
        &err,
        EngineError::SesRejectedKey { rollback: Rollback::Done { selector }, .. } if *selector == previous
    ));
    assert_eq!(world.ses_selector(), Some(previous.clone()));
    assert_eq!(world.selector(), previous, "AWSCURRENT unchanged");
    let puts = world.ses.puts();
    assert_eq!(
        puts.len(),
        3,
        "first rotation, new key, previous key back: {puts:?}"
    );

    // What the step path makes of it: a real rollback, counted and told.
    let notification = notifications::for_error(&world.arn, Some(DOMAIN), &err);
    assert_eq!(notification.kind, NotificationKind::RolledBack);
}

#[tokio::test]
async fn a_first_key_failing_has_nothing_to_roll_back_to_and_says_so() {
    let world = World::new(PublishMode::Route53);
    world.ses.set_status_after_put(Some(DkimStatus::Failed));
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    for step in &STEPS[..3] {
        world.step(*step, &token).await.unwrap();
    }
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert!(matches!(
        err,
        EngineError::SesRejectedKey {
            rollback: Rollback::NoPreviousKey,
            ..
        }
    ));
    assert!(!err.rolled_back());
    assert_eq!(
        notifications::for_error(&world.arn, Some(DOMAIN), &err).kind,
        NotificationKind::Failure
    );
}

#[tokio::test]
async fn operator_rollback_restores_the_previous_key_and_version() {
    let world = World::new(PublishMode::Route53);
    world.rotate().await;
    let first = world.selector();
    let first_version = world
        .secrets
        .version_with_stage(&world.arn, STAGE_CURRENT)
        .unwrap();
    world.rotate().await;
    assert_ne!(world.selector(), first);
    let inspection = world.engine.rollback(&world.arn).await.unwrap();
    assert_eq!(inspection.current_selector.as_deref(), Some(first.as_str()));
    assert_eq!(world.ses_selector(), Some(first));
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_CURRENT),
        Some(first_version)
    );
    world.assert_invariant();
}

#[tokio::test]
async fn operator_rollback_refuses_when_the_previous_record_is_gone() {
    let world = World::new(PublishMode::Route53);
    world.rotate().await;
    let first = world.selector();
    world.rotate().await;
    world.zone.remove(&format!("{first}._domainkey.{DOMAIN}"));
    let before = (world.secrets.snapshot(), world.ses.state_of(DOMAIN));
    let err = world.engine.rollback(&world.arn).await.unwrap_err();
    assert_eq!(err.error_type(), "RollbackRefused");
    assert!(err.to_string().contains(&first), "{err}");
    assert_eq!(
        (world.secrets.snapshot(), world.ses.state_of(DOMAIN)),
        before
    );
}

#[tokio::test]
async fn operator_rollback_without_a_previous_key_is_its_own_error() {
    let world = World::new(PublishMode::Route53);
    world.rotate().await;
    let err = world.engine.rollback(&world.arn).await.unwrap_err();
    assert_eq!(err.error_type(), "RollbackRefused");
    assert!(err.to_string().contains("AWSPREVIOUS"), "{err}");
}

// ---- the scheduled run ------------------------------------------------------------------

#[tokio::test]
async fn a_scheduled_run_rotates_a_never_rotated_secret() {
    let world = World::new(PublishMode::Route53);
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Rotated, "{report:?}");
    assert_eq!(world.ses_selector().as_deref(), report.selector.as_deref());
    world.assert_invariant();
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_PENDING),
        None
    );
}

#[tokio::test]
async fn the_whole_lifecycle_on_the_manual_clock() {
    let world = World::new(PublishMode::Route53);
    assert_eq!(world.maintain().await.action, Action::Rotated);
    let first = world.selector();

    // SES has not looked yet: pending.
    assert_eq!(world.maintain().await.action, Action::Pending);
    world.ses_checks();
    assert_eq!(world.maintain().await.action, Action::Confirmed);
    assert_eq!(
        world.secrets.tags(&world.arn).get(TAG_CONFIRMED),
        Some(&first)
    );
    assert_eq!(world.maintain().await.action, Action::Skipped);

    // 90 days on: due again.
    world.clock.advance(time::Duration::days(90));
    assert_eq!(world.maintain().await.action, Action::Rotated);
    let second = world.selector();
    assert_ne!(first, second);
    world.ses_checks();
    assert_eq!(world.maintain().await.action, Action::Confirmed);

    // The previous record stays through the grace period (7 days from the switch)…
    world.clock.advance(time::Duration::days(6));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Skipped, "{report:?}");
    assert!(report.skipped.is_some(), "{report:?}");
    assert_eq!(world.record(&first).len(), 1);
    world.assert_invariant();

    // … and goes after it.
    world.clock.advance(time::Duration::days(1));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Retired, "{report:?}");
    assert_eq!(report.retired, Some(RetireOutcome::Deleted));
    assert!(world.record(&first).is_empty());
    assert_eq!(world.record(&second).len(), 1);
    assert_eq!(
        world.secrets.tags(&world.arn).get(TAG_RETIRED),
        Some(&first)
    );
    world.assert_invariant();

    // Nothing more to do.
    assert_eq!(world.maintain().await.action, Action::Skipped);
}

#[tokio::test]
async fn revoke_mode_replaces_the_old_record_with_an_empty_key() {
    let world = World::with_policy(
        PublishMode::Rfc2136,
        RotationPolicy {
            retire_mode: RetireMode::Revoke,
            ..policy()
        },
    );
    world.maintain().await;
    let first = world.selector();
    world.clock.advance(time::Duration::days(91));
    world.maintain().await;
    world.ses_checks();
    assert_eq!(world.maintain().await.action, Action::Confirmed);
    world.clock.advance(time::Duration::days(8));
    let report = world.maintain().await;
    assert_eq!(report.retired, Some(RetireOutcome::Revoked), "{report:?}");
    assert_eq!(world.record(&first), vec![REVOKED_VALUE.to_owned()]);
}

#[tokio::test]
async fn hint_mode_retirement_tells_a_person_and_deletes_nothing() {
    let world = World::new(PublishMode::Hint);
    // A person publishes every record the run asks for.
    let publish_pending = |world: &World| {
        if let Some(pending) = world.secrets.json(&world.arn, STAGE_PENDING) {
            world.zone.add(
                pending["dns_name"].as_str().unwrap(),
                pending["dns_value"].as_str().unwrap(),
            );
        }
    };
    assert_eq!(world.maintain().await.action, Action::WaitingForDns);
    publish_pending(&world);
    assert_eq!(world.maintain().await.action, Action::Resumed);
    let first = world.selector();
    world.clock.advance(time::Duration::days(91));
    assert_eq!(world.maintain().await.action, Action::WaitingForDns);
    publish_pending(&world);
    assert_eq!(world.maintain().await.action, Action::Resumed);
    world.ses_checks();
    world.maintain().await;
    world.clock.advance(time::Duration::days(8));
    let report = world.maintain().await;
    assert_eq!(
        report.retired,
        Some(RetireOutcome::RemovalHinted),
        "{report:?}"
    );
    assert_eq!(world.record(&first).len(), 1, "a person removes it, not us");
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::RecordRemovable);
}

#[tokio::test]
async fn waiting_for_dns_reports_the_record_and_its_age() {
    let world = World::new(PublishMode::Hint);
    assert_eq!(world.maintain().await.action, Action::WaitingForDns);
    world.clock.advance(time::Duration::hours(5));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::WaitingForDns);
    assert!(report.dns_record.is_some());
    assert_eq!(report.pending_hours, Some(5.0));
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::RecordToAdd);
}

#[tokio::test]
async fn a_secret_secrets_manager_rotates_is_never_rotated_by_the_schedule() {
    let world = World::new(PublishMode::Route53);
    world.secrets.set_rotation_enabled(&world.arn, true);
    let report = world
        .engine
        .maintain(
            &world.arn,
            &MaintainOptions {
                force: true,
                ..world.options()
            },
        )
        .await;
    assert_eq!(report.action, Action::Skipped, "{report:?}");
    assert!(world.ses.puts().is_empty());
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let world = World::new(PublishMode::Route53);
    let before = (world.secrets.snapshot(), world.ses.state_of(DOMAIN));
    let report = world
        .engine
        .maintain(
            &world.arn,
            &MaintainOptions {
                dry_run: true,
                ..world.options()
            },
        )
        .await;
    assert!(report.planned);
    assert_eq!(report.action, Action::Rotated);
    assert_eq!(
        (world.secrets.snapshot(), world.ses.state_of(DOMAIN)),
        before
    );
    assert!(notifications::for_identity(&report).is_none());
}

#[tokio::test]
async fn a_current_key_ses_failed_is_reported_not_counted_as_a_rollback() {
    // The bug this guards against: a scheduled run that found the current key FAILED raised
    // SesRejectedKey, and notifications and metrics counted a rollback that never happened.
    let world = World::new(PublishMode::Route53);
    world.maintain().await;
    world.ses.set_status(DOMAIN, DkimStatus::Failed);
    let report = world.maintain().await;
    // The first key has nothing to roll back to: the watcher refuses and says so.
    assert_eq!(report.action, Action::Failed);
    assert_eq!(report.error_type, Some("RollbackRefused"));
    assert!(!report.rolled_back);
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::Failure);
    let summary = ses_dkim_rotator::engine::schedule::FleetSummary {
        counts: Default::default(),
        identities: vec![report],
    };
    let counts: Value = serde_json::from_str(&metrics::fleet_lines("Ns", 0, &summary)[0]).unwrap();
    assert_eq!(counts["Rollbacks"], 0);
    assert_eq!(counts["Failures"], 1);
}

#[tokio::test]
async fn a_fleet_defers_what_the_deadline_leaves_no_time_for() {
    let world = World::new(PublishMode::Route53);
    let options = MaintainOptions {
        deadline: Deadline::at(START + time::Duration::seconds(20)),
        ..world.options()
    };
    let summary = world
        .engine
        .maintain_fleet(
            &[world.arn.clone(), world.arn.clone()],
            &options,
            2,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(summary.counts.get(&Action::Deferred), Some(&2));
    assert!(world.ses.puts().is_empty());
}

#[tokio::test]
async fn one_broken_secret_fails_alone_in_a_fleet() {
    let world = World::new(PublishMode::Route53);
    let broken = world.secrets.create_secret("broken", "{}");
    let summary = world
        .engine
        .maintain_fleet(
            &[world.arn.clone(), broken.clone()],
            &world.options(),
            4,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(summary.identities[0].action, Action::Rotated);
    assert_eq!(summary.identities[1].action, Action::Failed);
    assert_eq!(summary.identities[1].error_type, Some("CorruptSecret"));
    assert!(summary.has_failures());
}

#[tokio::test]
async fn the_retirement_guard_refuses_the_selector_ses_signs_with() {
    let world = World::new(PublishMode::Route53);
    world.maintain().await;
    let first = world.selector();
    world.clock.advance(time::Duration::days(91));
    world.maintain().await;
    world.ses_checks();
    world.maintain().await;
    // SES is put back on the old selector behind the rotator's back.
    let old_key = world.secrets.json(&world.arn, STAGE_PREVIOUS).unwrap();
    ses_dkim_rotator::engine::ports::DkimSigningService::sign_with_external_key(
        &world.ses,
        DOMAIN,
        None,
        &first,
        &SecretText::new(old_key["private_key"].as_str().unwrap()),
    )
    .await
    .unwrap();
    world.ses.set_status(DOMAIN, DkimStatus::Success);
    world.clock.advance(time::Duration::days(8));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Failed, "{report:?}");
    assert_eq!(report.error_type, Some("RetireRefused"));
    assert_eq!(world.record(&first).len(), 1, "the record SES uses stays");
}

// ---- the Lambda handler over the fakes ----------------------------------------------------

type MemoryRotator = Rotator<MemoryPorts, RecordingNotifier, MemoryQueue>;

fn rotator(world: World) -> (MemoryRotator, RecordingNotifier, World) {
    let notifier = RecordingNotifier::default();
    let mut fleet =
        Settings::from_lookup(|name| (name == "DKIM_ALLOWED_IDENTITIES").then(|| "*".to_owned()))
            .unwrap()
            .fleet;
    fleet.secret_ids = vec![world.arn.clone()];
    let engine = Engine::new(world.engine.ports().clone(), world.engine.policy().clone());
    (
        Rotator {
            engine,
            fleet,
            notifier: notifier.clone(),
            queue: MemoryQueue::default(),
        },
        notifier,
        world,
    )
}

fn event(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, Context::default())
}

#[tokio::test]
async fn the_handler_runs_secrets_manager_events_and_notifies_the_switch() {
    let (rotator, notifier, world) = rotator(World::new(PublishMode::Route53));
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    for step in STEPS {
        let out = rotator
            .handle(event(json!({
                "Step": step.as_str(), "SecretId": world.arn, "ClientRequestToken": token,
                "RotationToken": "a-very-secret-token"
            })))
            .await
            .unwrap();
        assert!(!out.to_string().contains("a-very-secret-token"));
        assert!(!out.to_string().contains("private_key"));
    }
    let kinds: Vec<_> = notifier.sent().iter().map(|n| n.kind).collect();
    assert_eq!(kinds, [NotificationKind::RotationCompleted]);
}

#[tokio::test]
async fn the_handler_runs_a_scheduled_event_over_the_configured_secrets() {
    let (rotator, notifier, world) = rotator(World::new(PublishMode::Route53));
    let out = rotator
        .handle(event(json!({
            "version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}
        })))
        .await
        .unwrap();
    assert_eq!(out["counts"]["rotated"], 1, "{out}");
    assert_eq!(out["identities"][0]["secret_id"], json!(world.arn));
    assert_eq!(notifier.sent().len(), 1);
}

#[tokio::test]
async fn the_handler_refuses_a_bad_event_and_changes_nothing() {
    let (rotator, notifier, world) = rotator(World::new(PublishMode::Route53));
    let before = world.secrets.snapshot();
    let err = rotator
        .handle(event(
            json!({"Step": "rotate", "SecretId": world.arn, "ClientRequestToken": "t"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidEvent");
    assert_eq!(world.secrets.snapshot(), before);
    assert!(notifier.sent().is_empty());
}

#[tokio::test]
async fn a_scheduled_payload_naming_secrets_runs_only_those() {
    let (rotator, _, world) = rotator(World::new(PublishMode::Route53));
    let other = world
        .secrets
        .create_secret("other", &json!({"identity": DOMAIN}).to_string());
    let summary = rotator
        .scheduled(
            &ScheduledRun {
                secret_ids: Some(vec![other.clone()]),
                force: false,
                dry_run: true,
            },
            Deadline::NONE,
        )
        .await
        .unwrap();
    assert_eq!(summary.identities.len(), 1);
    assert_eq!(summary.identities[0].secret_id, other);
}

// ---- SES as it really behaves: watch, confirm, roll back, alert --------------------------

impl World {
    /// Rotates on schedule and lets SES confirm; returns the selector.
    async fn rotate_confirmed(&self) -> String {
        let report = self.maintain().await;
        assert!(
            matches!(report.action, Action::Rotated | Action::Resumed),
            "{report:?}"
        );
        self.ses_checks();
        assert_eq!(self.maintain().await.action, Action::Confirmed);
        self.selector()
    }

    /// Makes SES reject the current key: its record disappears and 72 hours pass.
    fn ses_rejects_current(&self) {
        let selector = self.selector();
        self.zone.remove(&format!("{selector}._domainkey.{DOMAIN}"));
        self.clock.advance(time::Duration::hours(72));
        self.ses_checks();
        assert_eq!(
            self.ses.state_of(DOMAIN).unwrap().status,
            Some(DkimStatus::Failed)
        );
    }
}

#[tokio::test]
async fn grace_counts_from_confirmation_not_from_the_switch() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.clock.advance(time::Duration::days(91));
    assert_eq!(world.maintain().await.action, Action::Rotated);
    // SES takes two days to confirm the new selector.
    world.clock.advance(time::Duration::days(2));
    assert_eq!(world.maintain().await.action, Action::Pending);
    world.ses_checks();
    assert_eq!(world.maintain().await.action, Action::Confirmed);
    assert!(
        world
            .secrets
            .tags(&world.arn)
            .contains_key(TAG_CONFIRMED_AT)
    );
    // 7 days after the switch, but only 5 after confirmation: still published.
    world.clock.advance(time::Duration::days(5));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Skipped, "{report:?}");
    assert_eq!(world.record(&first).len(), 1);
    world.clock.advance(time::Duration::days(2));
    assert_eq!(world.maintain().await.action, Action::Retired);
    assert!(world.record(&first).is_empty());
}

#[tokio::test]
async fn no_previous_record_is_retired_while_the_current_selector_is_not_success() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.clock.advance(time::Duration::days(91));
    assert_eq!(world.maintain().await.action, Action::Rotated);
    // SES never gets round to it (up to 72 h on AWS; here: a month of daily runs).
    for _ in 0..30 {
        world.clock.advance(time::Duration::days(1));
        let report = world.maintain().await;
        assert_ne!(report.action, Action::Retired, "{report:?}");
        assert_eq!(world.record(&first).len(), 1, "retired while PENDING");
    }
    // Nor through a retirement attempt made directly.
    let report = world.engine.retire_previous(&world.arn).await.unwrap();
    assert_ne!(report.outcome, RetireOutcome::Deleted);
    assert_eq!(world.record(&first).len(), 1);
}

#[tokio::test]
async fn the_watcher_rolls_back_a_key_ses_failed_and_never_puts_it_again() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    let first_version = world
        .secrets
        .version_with_stage(&world.arn, STAGE_CURRENT)
        .unwrap();
    world.clock.advance(time::Duration::days(91));
    assert_eq!(world.maintain().await.action, Action::Rotated);
    let rejected = world.selector();
    world.ses_rejects_current();

    let report = world.maintain().await;
    assert_eq!(report.action, Action::RolledBack, "{report:?}");
    assert!(report.rolled_back);
    assert_eq!(
        world.ses_selector(),
        Some(first.clone()),
        "SES is back on the previous key"
    );
    assert_eq!(
        world.selector(),
        first,
        "AWSCURRENT is the previous key again"
    );
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_CURRENT),
        Some(first_version)
    );
    assert_eq!(
        world.secrets.tags(&world.arn).get(TAG_REJECTED),
        Some(&rejected)
    );
    world.assert_invariant();
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::RolledBack);
    let summary = ses_dkim_rotator::engine::schedule::FleetSummary {
        counts: Default::default(),
        identities: vec![report],
    };
    let counts: Value = serde_json::from_str(&metrics::fleet_lines("Ns", 0, &summary)[0]).unwrap();
    assert_eq!(counts["Rollbacks"], 1);

    // The next run starts a fresh key (the old one is due); the rejected one is never put.
    world.ses_checks();
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Rotated, "{report:?}");
    let fresh = world.selector();
    assert_ne!(fresh, rejected);
    assert_ne!(fresh, first);
    let rejected_puts = world
        .ses
        .puts()
        .iter()
        .filter(|(_, selector)| *selector == rejected)
        .count();
    assert_eq!(rejected_puts, 1, "the rejected selector was put again");
    world.assert_invariant();
}

#[tokio::test]
async fn the_watcher_does_not_guess_when_the_previous_record_is_gone() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.clock.advance(time::Duration::days(91));
    world.maintain().await;
    world.ses_rejects_current();
    world.zone.remove(&format!("{first}._domainkey.{DOMAIN}"));
    let before = (world.secrets.snapshot(), world.ses.state_of(DOMAIN));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Failed, "{report:?}");
    assert!(!report.rolled_back);
    assert_eq!(
        (world.secrets.snapshot(), world.ses.state_of(DOMAIN)),
        before
    );
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::Failure);
    assert!(
        notification.text.contains(&first),
        "says which record to re-publish: {}",
        notification.text
    );
}

#[tokio::test]
async fn a_secrets_manager_retry_never_puts_a_rejected_key_back() {
    let (world, previous, token, _) = World::second_key_rejected_by_ses().await;
    world.ses.set_status_after_put(None);
    let puts = world.ses.puts().len();
    // Secrets Manager retries the failed step: no flip-flop back to the rejected key.
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "SelectorRejected", "{err}");
    assert_eq!(world.ses.puts().len(), puts);
    assert_eq!(world.ses_selector(), Some(previous));
}

#[tokio::test]
async fn pending_too_long_raises_an_alert() {
    let world = World::new(PublishMode::Route53);
    world.maintain().await;
    world.clock.advance(time::Duration::hours(23));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Pending);
    assert_eq!(report.alert, None);
    assert!(notifications::for_identity(&report).is_none());
    world.clock.advance(time::Duration::hours(2));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Pending);
    assert_eq!(report.ses_pending_hours, Some(25.0));
    assert!(matches!(
        report.alert,
        Some(Alert::VerificationOverdue { .. })
    ));
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::VerificationOverdue);
    let lines = metrics::fleet_lines(
        "Ns",
        0,
        &ses_dkim_rotator::engine::schedule::FleetSummary {
            counts: Default::default(),
            identities: vec![report],
        },
    );
    let identity: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(identity["SesPendingHours"], 25.0);
}

#[tokio::test]
async fn a_temporary_failure_is_told_and_not_rolled_back() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.zone.remove(&format!("{first}._domainkey.{DOMAIN}"));
    world.ses_checks();
    let puts = world.ses.puts().len();
    let report = world.maintain().await;
    assert_eq!(report.action, Action::TemporaryFailure, "{report:?}");
    assert_eq!(world.ses.puts().len(), puts);
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::TemporaryFailure);
}

// ---- Easy DKIM adoption ------------------------------------------------------------------

#[tokio::test]
async fn easy_dkim_that_signs_is_not_adopted_without_consent_and_nothing_changes() {
    let world = World::new(PublishMode::Route53);
    world.ses.set_status(DOMAIN, DkimStatus::Success);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    let before = (world.secrets.snapshot(), world.zone.names());
    let err = world.step(Step::CreateSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "EasyDkimInUse");
    assert!(err.to_string().contains("DKIM_ADOPT_EASY_DKIM"), "{err}");
    assert!(err.to_string().contains("unsigned"), "{err}");
    assert_eq!((world.secrets.snapshot(), world.zone.names()), before);
    // The scheduled path refuses the same way (a secret Secrets Manager does not rotate).
    let scheduled = World::new(PublishMode::Route53);
    scheduled.ses.set_status(DOMAIN, DkimStatus::Success);
    let before = (scheduled.secrets.snapshot(), scheduled.zone.names());
    let report = scheduled.maintain().await;
    assert_eq!(report.action, Action::Failed, "{report:?}");
    assert_eq!(report.error_type, Some("EasyDkimInUse"));
    assert!(scheduled.ses.puts().is_empty());
    assert_eq!(
        (scheduled.secrets.snapshot(), scheduled.zone.names()),
        before
    );
}

#[tokio::test]
async fn easy_dkim_is_adopted_with_consent_and_the_origin_recorded() {
    let world = World::with_policy(
        PublishMode::Route53,
        RotationPolicy {
            adopt_easy_dkim: true,
            ..policy()
        },
    );
    world.ses.set_status(DOMAIN, DkimStatus::Success);
    assert_eq!(world.maintain().await.action, Action::Rotated);
    assert_eq!(
        world
            .secrets
            .tags(&world.arn)
            .get(TAG_ADOPTED_FROM)
            .map(String::as_str),
        Some("AWS_SES")
    );
    world.assert_invariant();
}

#[tokio::test]
async fn easy_dkim_that_does_not_sign_is_adopted_without_asking() {
    let world = World::new(PublishMode::Route53);
    // A new identity: Easy DKIM, PENDING (its CNAMEs were never published).
    assert_eq!(world.maintain().await.action, Action::Rotated);
    assert_eq!(world.ses.puts().len(), 1);
}

#[tokio::test]
async fn a_first_key_failing_after_easy_dkim_says_how_to_go_back() {
    let world = World::with_policy(
        PublishMode::Route53,
        RotationPolicy {
            adopt_easy_dkim: true,
            ..policy()
        },
    );
    world.ses.set_status(DOMAIN, DkimStatus::Success);
    world.maintain().await;
    world.ses_rejects_current();
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Failed, "{report:?}");
    let notification = notifications::for_identity(&report).unwrap();
    assert!(
        notification
            .text
            .contains("--signing-attributes-origin AWS_SES"),
        "{}",
        notification.text
    );
}

// ---- abort: cancelling a rotation the way that works on AWS ------------------------------

#[tokio::test]
async fn abort_unblocks_rotate_secret_and_the_next_attempt_resumes_the_key() {
    let world = World::new(PublishMode::Hint);
    let first = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &first).await.unwrap();
    let handed_out = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    world.secrets.cancel_rotation(&world.arn);
    assert!(world.secrets.start_rotation(&world.arn).is_err());

    let (ses_calls, dns_calls) = (world.ses.calls().len(), world.zone.calls().len());
    let report = world.engine.abort(&world.arn).await.unwrap();
    assert_eq!(report.version.as_deref(), Some(first.as_str()));
    assert_eq!(report.selector.as_deref(), handed_out["selector"].as_str());
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_PENDING),
        None
    );
    assert!(
        world.secrets.value_of(&world.arn, &first).is_some(),
        "the version (and its key) is kept"
    );
    assert_eq!(
        (world.ses.calls().len(), world.zone.calls().len()),
        (ses_calls, dns_calls),
        "abort touches neither SES nor DNS"
    );

    let second = world.secrets.start_rotation(&world.arn).unwrap();
    assert_eq!(
        world.step(Step::CreateSecret, &second).await.unwrap(),
        Outcome::KeyResumed
    );
    let resumed = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    assert_eq!(resumed["selector"], handed_out["selector"]);

    // Nothing to abort: says so and changes nothing.
    let token = world.finish_by_hand(&second).await;
    let before = world.secrets.snapshot();
    let report = world.engine.abort(&world.arn).await.unwrap();
    assert_eq!(report.version, None);
    assert_eq!(world.secrets.snapshot(), before);
    drop(token);
}

impl World {
    /// Finishes the rotation of `token` in hint mode (a person publishes the record).
    async fn finish_by_hand(&self, token: &str) -> String {
        let pending = self.secrets.json(&self.arn, STAGE_PENDING).unwrap();
        self.zone.add(
            pending["dns_name"].as_str().unwrap(),
            pending["dns_value"].as_str().unwrap(),
        );
        for step in &STEPS[1..] {
            self.step(*step, token).await.unwrap();
        }
        token.to_owned()
    }
}

#[tokio::test]
async fn a_stored_pkcs8_key_is_accepted_and_sent_to_ses_as_pkcs1() {
    use base64::Engine as _;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let world = World::new(PublishMode::Route53);
    world.rotate().await;
    // An operator stored the current key as PKCS#8 (e.g. from `openssl genpkey`).
    let mut current = world.current();
    let pkcs1 = base64::engine::general_purpose::STANDARD
        .decode(current["private_key"].as_str().unwrap())
        .unwrap();
    let key = rsa::PrivateKey::from_pkcs1_der(&pkcs1).unwrap();
    let pkcs8 =
        base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8_der().unwrap().as_bytes());
    current["private_key"] = json!(pkcs8);
    world
        .secrets
        .overwrite(&world.arn, STAGE_CURRENT, &current.to_string());
    world.rotate().await;
    // Rolling back sends the stored PKCS#8 key to SES as PKCS#1.
    world.engine.rollback(&world.arn).await.unwrap();
    let sent = world.ses.key_of(DOMAIN).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(sent)
            .unwrap(),
        pkcs1
    );
}

#[tokio::test]
async fn the_guard_refuses_retirement_while_ses_has_not_verified_the_current_selector() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.clock.advance(time::Duration::days(91));
    world.maintain().await;
    let current = world.selector();
    // Tags that claim the current selector was confirmed long ago (stale, or edited by hand)
    // while SES still says PENDING: the guard, not the tags, decides.
    ses_dkim_rotator::engine::ports::SecretStore::set_tags(
        &world.secrets,
        &world.arn,
        &[
            (TAG_CONFIRMED, current.as_str()),
            (TAG_CONFIRMED_AT, "2000-01-01T00:00:00Z"),
        ],
    )
    .await
    .unwrap();
    let err = world.engine.retire_previous(&world.arn).await.unwrap_err();
    assert_eq!(err.error_type(), "RetireRefused", "{err}");
    assert!(err.to_string().contains("not verified"), "{err}");
    assert_eq!(world.record(&first).len(), 1);
}

// ---- fleets through a queue: the planner and the worker ----------------------------------

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

/// One planner run over the tagged fleet, then its messages delivered to the worker as one
/// SQS batch. Returns the plan and the worker's actions; asserts the planner read nothing but
/// the listing.
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
    assert_eq!(
        world.ses.calls().len(),
        ses_before,
        "the planner called SES"
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
