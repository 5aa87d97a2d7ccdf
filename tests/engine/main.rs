//! The engine end to end on the in-memory ports (`ses_dkim_rotator::testing`): every step,
//! retries, resume, rollback, retirement across a grace period on a manual clock, the
//! scheduled run's rules, and what notifications and metrics make of the reports. No network,
//! no emulator, no wall-clock wait.

mod abort;
mod easy_dkim;
mod handler;
mod queue;
mod resume;
mod rollback;
mod schedule;
mod ses_watch;
mod steps;

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

/// The gauge rules of the default settings (stale after 104 days, home region us-east-1).
fn gauge_rules() -> metrics::GaugeRules {
    metrics::GaugeRules {
        stale_after_days: 104.0,
        home_region: "us-east-1".into(),
    }
}
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
            record_published: false,
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
