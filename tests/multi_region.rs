//! An identity sent from two SES regions (`"regions": [...]` in the secret), on the in-memory
//! ports: one key and one selector for both, the switch complete only when both sign with it,
//! a refusing region left for the retry, a `FAILED` region rolling every region back, and
//! retirement waiting for every region. SES is regional in the fake as it is on AWS.

use serde_json::json;
use ses_dkim_rotator::engine::error::EngineError;
use ses_dkim_rotator::engine::identity::AllowedIdentities;
use ses_dkim_rotator::engine::ports::{
    Deadline, DkimStatus, FailureKind, STAGE_CURRENT, STAGE_PENDING, SigningOrigin,
};
use ses_dkim_rotator::engine::rotation::{Outcome, RotationRequest, Step};
use ses_dkim_rotator::engine::schedule::{Action, Alert, MaintainOptions};
use ses_dkim_rotator::engine::{Engine, RotationPolicy};
use ses_dkim_rotator::notifications::{self, NotificationKind};
use ses_dkim_rotator::testing::{
    FakeSes, ManualClock, MemoryPorts, MemorySecrets, MemoryZone, PublishMode, memory_ports,
};
use time::macros::datetime;

const DOMAIN: &str = "example.com";
const EU: &str = "eu-west-1";
const US: &str = "us-east-2";

/// A scheduled run's options: `force`, the rotation interval in days, no deadline.
fn run_options(force: bool, interval_days: i64) -> MaintainOptions {
    MaintainOptions {
        force,
        dry_run: false,
        rotation_interval: time::Duration::days(interval_days),
        deadline: Deadline::NONE,
        record_published: false,
    }
}

struct TwoRegions {
    engine: Engine<MemoryPorts>,
    secrets: MemorySecrets,
    ses: FakeSes,
    zone: MemoryZone,
    clock: ManualClock,
    arn: String,
}

impl TwoRegions {
    fn new() -> Self {
        Self::adopting_easy_dkim(false)
    }

    /// [`Self::new`] with `DKIM_ADOPT_EASY_DKIM` set to `adopt`.
    fn adopting_easy_dkim(adopt: bool) -> Self {
        let ports = memory_ports(PublishMode::Rfc2136, datetime!(2030-01-10 08:00 UTC));
        let (secrets, ses, zone, clock) = (
            ports.secrets.clone(),
            ports.ses.clone(),
            ports.dns.clone(),
            ports.clock.clone(),
        );
        ses.create_identity_in(DOMAIN, EU);
        ses.create_identity_in(DOMAIN, US);
        let arn = secrets.create_secret(
            "dkim/example",
            &json!({"identity": DOMAIN, "regions": [EU, US]}).to_string(),
        );
        let policy = RotationPolicy {
            allowed_identities: AllowedIdentities::parse("*").unwrap(),
            adopt_easy_dkim: adopt,
            ..RotationPolicy::default()
        };
        Self {
            engine: Engine::new(ports, policy),
            secrets,
            ses,
            zone,
            clock,
            arn,
        }
    }

    async fn step(&self, step: Step, token: &str) -> Result<Outcome, EngineError> {
        self.engine
            .run_step(&RotationRequest::new(step, &self.arn, token))
            .await
            .map(|r| r.outcome)
    }

    /// Secrets Manager's four steps for `arn`, stopping at the first error.
    async fn rotate_secret(&self, arn: &str) -> Result<String, EngineError> {
        let token = self.secrets.start_rotation(arn).unwrap();
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            self.engine
                .run_step(&RotationRequest::new(step, arn, &token))
                .await?;
        }
        Ok(token)
    }

    /// What a refusal must leave as it was: the secrets, the zone, SES in both regions.
    fn everything(&self) -> impl PartialEq + std::fmt::Debug + use<> {
        (
            self.secrets.snapshot(),
            self.zone.names(),
            self.ses.state_in(DOMAIN, EU),
            self.ses.state_in(DOMAIN, US),
        )
    }

    /// Both triggers refuse the switch with `error_type`, naming `words`, and change nothing:
    /// a forced scheduled run, then Secrets Manager's `createSecret`.
    async fn both_triggers_refuse(&self, error_type: &str, words: &[&str]) {
        let check = |error_type_seen: Option<&str>, message: &str| {
            assert_eq!(error_type_seen, Some(error_type), "{message}");
            for word in words.iter().chain(&["Nothing was changed"]) {
                assert!(message.contains(word), "{word:?} missing from: {message}");
            }
        };
        self.secrets.set_rotation_enabled(&self.arn, false);
        let before = self.everything();
        let options = run_options(true, 90);
        let report = self.engine.maintain(&self.arn, &options).await;
        assert_eq!(report.action, Action::Failed, "{report:?}");
        check(
            report.error_type,
            report.error.as_deref().unwrap_or_default(),
        );
        assert_eq!(self.everything(), before);

        let token = self.secrets.start_rotation(&self.arn).unwrap();
        let before = self.everything();
        let err = self.step(Step::CreateSecret, &token).await.unwrap_err();
        check(Some(err.error_type()), &err.to_string());
        assert_eq!(self.everything(), before);
    }

    async fn rotate(&self) -> String {
        let token = self.secrets.start_rotation(&self.arn).unwrap();
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            self.step(step, &token)
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        token
    }

    fn current_selector(&self) -> String {
        self.secrets.json(&self.arn, STAGE_CURRENT).unwrap()["selector"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The external selector SES signs with in `region`.
    fn signs_with(&self, region: &str) -> Option<String> {
        self.ses
            .state_in(DOMAIN, region)
            .filter(|s| s.origin == Some(SigningOrigin::External))
            .and_then(|s| s.selectors.first().cloned())
    }

    fn published(&self, selector: &str) -> bool {
        !self
            .zone
            .txt(&format!("{selector}._domainkey.{DOMAIN}"))
            .is_empty()
    }

    fn both_regions_look(&self) {
        self.ses.check_dns_in(DOMAIN, EU, &self.zone);
        self.ses.check_dns_in(DOMAIN, US, &self.zone);
    }

    async fn maintain(&self) -> Action {
        let options = run_options(false, 90);
        let report = self.engine.maintain(&self.arn, &options).await;
        assert!(report.error.is_none(), "{report:?}");
        report.action
    }

    /// A first rotation, verified in both regions and confirmed; then 91 days later.
    async fn with_a_confirmed_key(&self) -> String {
        self.rotate().await;
        self.both_regions_look();
        assert_eq!(self.maintain().await, Action::Confirmed);
        self.clock.advance(time::Duration::days(91));
        self.current_selector()
    }
}

#[tokio::test]
async fn one_key_and_one_record_serve_every_region() {
    let world = TwoRegions::new();
    world.rotate().await;
    let selector = world.current_selector();
    assert_eq!(world.signs_with(EU).as_deref(), Some(selector.as_str()));
    assert_eq!(world.signs_with(US).as_deref(), Some(selector.as_str()));
    assert_eq!(
        world.ses.puts_by_region(),
        vec![
            (DOMAIN.to_owned(), EU.to_owned(), selector.clone()),
            (DOMAIN.to_owned(), US.to_owned(), selector.clone()),
        ]
    );
    assert_eq!(
        world.zone.names(),
        vec![format!("{selector}._domainkey.{DOMAIN}")],
        "one TXT record for both regions"
    );
    assert_eq!(
        world.ses.key_of(DOMAIN),
        None,
        "nothing goes to the function's own region when the secret names its regions"
    );
}

#[tokio::test]
async fn a_refusing_region_leaves_the_rest_switched_and_the_retry_finishes_it() {
    let world = TwoRegions::new();
    let old = world.with_a_confirmed_key().await;
    world.ses.refuse_region(US, FailureKind::AccessDenied);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    for step in [Step::CreateSecret, Step::SetSecret, Step::TestSecret] {
        world.step(step, &token).await.unwrap();
    }
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "SesRegionRefused", "{err}");
    let message = err.to_string();
    assert!(
        message.contains(US) && message.contains(&format!("[{EU}]")),
        "{message}"
    );
    assert!(message.contains("SesRegions"), "{message}");
    let new = world.secrets.json(&world.arn, STAGE_PENDING).unwrap()["selector"]
        .as_str()
        .unwrap()
        .to_owned();
    // Consistent: AWSCURRENT did not move; each region signs with a published selector.
    assert_eq!(world.current_selector(), old);
    assert_eq!(world.signs_with(EU).as_deref(), Some(new.as_str()));
    assert_eq!(world.signs_with(US).as_deref(), Some(old.as_str()));
    assert!(world.published(&old) && world.published(&new));

    world.ses.accept_region(US);
    let puts_before = world.ses.puts_by_region().len();
    assert_eq!(
        world.step(Step::FinishSecret, &token).await.unwrap(),
        Outcome::SesSwitched
    );
    assert_eq!(
        world.ses.puts_by_region()[puts_before..],
        [(DOMAIN.to_owned(), US.to_owned(), new.clone())],
        "the retry puts the key only where it is missing"
    );
    assert_eq!(world.current_selector(), new);
    assert_eq!(world.signs_with(US).as_deref(), Some(new.as_str()));
}

#[tokio::test]
async fn ses_failing_the_key_in_one_region_rolls_every_region_back() {
    let world = TwoRegions::new();
    let old = world.with_a_confirmed_key().await;
    world.rotate().await;
    let rejected = world.current_selector();
    world.ses.check_dns_in(DOMAIN, EU, &world.zone);
    world.ses.set_status_in(DOMAIN, US, DkimStatus::Failed);
    assert_eq!(world.maintain().await, Action::RolledBack);
    assert_eq!(world.current_selector(), old);
    assert_eq!(world.signs_with(EU).as_deref(), Some(old.as_str()));
    assert_eq!(world.signs_with(US).as_deref(), Some(old.as_str()));
    assert_ne!(rejected, old);
}

#[tokio::test]
async fn the_previous_record_stays_until_every_region_verified_the_new_one() {
    let world = TwoRegions::new();
    let old = world.with_a_confirmed_key().await;
    world.rotate().await;
    world.ses.check_dns_in(DOMAIN, EU, &world.zone);
    assert_eq!(
        world.ses.state_in(DOMAIN, US).unwrap().status,
        Some(DkimStatus::Pending)
    );
    assert_eq!(world.maintain().await, Action::Pending);
    world.clock.advance(time::Duration::days(30));
    world.maintain().await;
    assert!(world.published(&old), "one region still verifying");
    world.ses.check_dns_in(DOMAIN, US, &world.zone);
    assert_eq!(world.maintain().await, Action::Confirmed);
}

#[tokio::test]
async fn an_identity_missing_in_one_region_is_named_and_nothing_changes() {
    let world = TwoRegions::new();
    let secret = world.secrets.create_secret(
        "dkim/other",
        &json!({"identity": "other.example", "regions": [EU, "ap-south-1"]}).to_string(),
    );
    world.ses.create_identity_in("other.example", EU);
    let token = world.secrets.start_rotation(&secret).unwrap();
    let before = world.secrets.snapshot();
    let err = world
        .engine
        .run_step(&RotationRequest::new(Step::CreateSecret, &secret, &token))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "IdentityNotInSes");
    assert!(err.to_string().contains("region ap-south-1"), "{err}");
    assert_eq!(world.secrets.snapshot(), before);
    assert!(world.ses.puts().is_empty());
    assert!(world.zone.names().is_empty());
}

#[tokio::test]
async fn a_deed_replica_is_not_switched_without_consent_whatever_its_status() {
    let world = TwoRegions::new();
    // The parent (EU) is Easy DKIM, not verified: on its own it would be adopted without asking.
    world.ses.create_replica_in(DOMAIN, US, EU);
    assert_eq!(
        world.ses.state_in(DOMAIN, US).unwrap().origin,
        Some(SigningOrigin::EasyDkimReplica("AWS_SES_EU_WEST_1".into()))
    );
    world
        .both_triggers_refuse(
            "EasyDkimReplicaInUse",
            &[
                "AWS_SES_EU_WEST_1",
                EU,
                US,
                "DKIM_ADOPT_EASY_DKIM",
                "unsigned",
            ],
        )
        .await;
    assert!(world.ses.puts().is_empty());
}

#[tokio::test]
async fn a_deed_replica_is_adopted_with_consent_its_origin_recorded_and_its_parent_untouched() {
    let world = TwoRegions::adopting_easy_dkim(true);
    let replica = world.secrets.create_secret(
        "dkim/replica",
        &json!({"identity": "replica.example", "regions": [US]}).to_string(),
    );
    world.ses.create_identity_in("replica.example", EU);
    world
        .ses
        .set_status_in("replica.example", EU, DkimStatus::Success);
    world.ses.create_replica_in("replica.example", US, EU);
    world.rotate_secret(&replica).await.unwrap();
    assert_eq!(
        world
            .secrets
            .tags(&replica)
            .get("ses-dkim-rotator:adopted-from")
            .map(String::as_str),
        Some("AWS_SES_EU_WEST_1")
    );
    let us = world.ses.state_in("replica.example", US).unwrap();
    assert_eq!(us.origin, Some(SigningOrigin::External));
    let eu = world.ses.state_in("replica.example", EU).unwrap();
    assert_eq!(
        eu.origin,
        Some(SigningOrigin::AwsSes),
        "the parent is not the secret's"
    );
}

#[tokio::test]
async fn an_origin_this_build_does_not_know_is_refused_even_with_consent() {
    let world = TwoRegions::adopting_easy_dkim(true);
    world.ses.set_origin_in(DOMAIN, US, "AWS_SES_FUTURE");
    assert_eq!(
        world.ses.state_in(DOMAIN, US).unwrap().origin,
        Some(SigningOrigin::Other("AWS_SES_FUTURE".into()))
    );
    world
        .both_triggers_refuse("UnknownSigningOrigin", &["AWS_SES_FUTURE", US])
        .await;
    assert!(world.ses.puts().is_empty());
}

#[tokio::test]
async fn signing_turned_off_is_reported_and_never_switched_on_or_off() {
    let world = TwoRegions::adopting_easy_dkim(true);
    world.with_a_confirmed_key().await;
    let puts = world.ses.puts_by_region().len();
    world.ses.set_signing_enabled_in(DOMAIN, US, false);

    // Each run says so, and how to turn it on; nothing is rotated while it is off.
    world
        .both_triggers_refuse(
            "SigningDisabled",
            &[
                US,
                "SigningEnabled=false",
                "put-email-identity-dkim-attributes",
            ],
        )
        .await;
    let options = run_options(false, 900);
    let report = world.engine.maintain(&world.arn, &options).await;
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(
        report.alert,
        Some(Alert::SigningDisabled {
            regions: vec![US.to_owned()]
        })
    );
    let notice = notifications::for_identity(&report).expect("a notification");
    assert_eq!(notice.kind, NotificationKind::SigningDisabled);
    assert!(notice.text.contains(US), "{}", notice.text);

    assert_eq!(
        world.ses.puts_by_region().len(),
        puts,
        "no put while signing is off"
    );
    assert!(!world.ses.state_in(DOMAIN, US).unwrap().signing_enabled);
    assert!(world.ses.state_in(DOMAIN, EU).unwrap().signing_enabled);
}
