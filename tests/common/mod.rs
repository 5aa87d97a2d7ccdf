//! Shared test bed for integration tests: real SDK clients pointed at the local stand-ins
//! started by `scripts/testbed.sh` (moto for Secrets Manager, awsim for SESv2).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_secretsmanager::types::RotationRulesType;
use serde_json::Value;
use ses_dkim_rotator::adapters::clock::SystemClock;
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::engine::identity::AllowedIdentities;
use ses_dkim_rotator::engine::ports::SesDkimState;
use ses_dkim_rotator::engine::rotation::{
    RotationEngine, RotationPolicy, RotationRequest, Step, StepReport,
};
use ses_dkim_rotator::error::RotatorError;

/// The engine as the Lambda builds it, over the emulated services.
pub type RealEngine = RotationEngine<SecretsManagerStore, SesV2Signing, SystemClock>;

/// Any ARN: moto fails RotateSecret on it but leaves AWSPENDING staged, as AWS does before
/// it invokes createSecret.
const FAKE_LAMBDA_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:ses-dkim-rotator";

/// The four steps in order.
pub const ALL_STEPS: [Step; 4] = [
    Step::CreateSecret,
    Step::SetSecret,
    Step::TestSecret,
    Step::FinishSecret,
];

/// Clients for the stand-ins.
#[derive(Clone)]
pub struct TestBed {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub ses: aws_sdk_sesv2::Client,
}

impl TestBed {
    /// Connects to the stand-ins named by `AWS_ENDPOINT_URL_*`; panics with how to start them.
    pub async fn connect() -> Self {
        for var in ["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SESV2"] {
            assert!(
                std::env::var(var).is_ok(),
                "{var} is not set: run integration tests through `make test` (scripts/testbed.sh starts the emulators)"
            );
        }
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            ses: aws_sdk_sesv2::Client::new(&config),
        }
    }

    /// A rotation engine over real adapters with `policy`.
    pub fn engine(&self, policy: RotationPolicy) -> RealEngine {
        RotationEngine::new(
            SecretsManagerStore::new(self.secrets.clone()),
            SesV2Signing::new(self.ses.clone()),
            SystemClock,
            policy,
        )
    }

    /// Creates an SES domain identity.
    pub async fn create_identity(&self, domain: &str) {
        self.ses
            .create_email_identity()
            .email_identity(domain)
            .send()
            .await
            .expect("CreateEmailIdentity on the emulator");
    }

    /// Creates a secret with `body` as its SecretString; returns its ARN.
    pub async fn create_secret(&self, name: &str, body: &str) -> String {
        let out = self
            .secrets
            .create_secret()
            .name(name)
            .secret_string(body)
            .send()
            .await
            .expect("CreateSecret on the emulator");
        out.arn().expect("ARN").to_owned()
    }

    /// Starts a rotation as Secrets Manager does before invoking createSecret: rotation on,
    /// a new version id staged AWSPENDING with no value. Returns that version id.
    pub async fn start_rotation(&self, secret_id: &str) -> String {
        let token = uuid::Uuid::new_v4().to_string();
        // moto answers "Lambda not found" after staging the token, which is all we want.
        let _ = self
            .secrets
            .rotate_secret()
            .secret_id(secret_id)
            .client_request_token(&token)
            .rotation_lambda_arn(FAKE_LAMBDA_ARN)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(90)
                    .build(),
            )
            .send()
            .await;
        let stages = self.stages(secret_id).await;
        assert_eq!(
            stages.get(&token).map(Vec::as_slice),
            Some(&["AWSPENDING".to_owned()][..]),
            "the emulator did not stage the rotation token: {stages:?}"
        );
        token
    }

    /// Version id → stages.
    pub async fn stages(&self, secret_id: &str) -> HashMap<String, Vec<String>> {
        self.secrets
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .expect("DescribeSecret")
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default()
    }

    /// The version id carrying `stage`.
    pub async fn version_with_stage(&self, secret_id: &str, stage: &str) -> Option<String> {
        self.stages(secret_id)
            .await
            .into_iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(id, _)| id)
    }

    /// The JSON in the version carrying `stage`.
    pub async fn secret_json(&self, secret_id: &str, stage: &str) -> Value {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .send()
            .await
            .expect("GetSecretValue");
        serde_json::from_str(out.secret_string().expect("SecretString")).expect("JSON secret")
    }

    /// Whether the version `token` has a value.
    pub async fn has_value(&self, secret_id: &str, token: &str) -> bool {
        self.secrets
            .get_secret_value()
            .secret_id(secret_id)
            .version_id(token)
            .send()
            .await
            .is_ok()
    }

    /// SES's DKIM state for `domain`.
    pub async fn ses_dkim(&self, domain: &str) -> SesDkimState {
        let out = self
            .ses
            .get_email_identity()
            .email_identity(domain)
            .send()
            .await
            .expect("GetEmailIdentity");
        let dkim = out.dkim_attributes().expect("DkimAttributes");
        SesDkimState {
            signing_enabled: dkim.signing_enabled(),
            status: dkim.status().map(|s| s.as_str().to_owned()),
            origin: dkim
                .signing_attributes_origin()
                .map(|o| o.as_str().to_owned()),
            selectors: dkim.tokens().to_vec(),
        }
    }

    /// The selector SES signs `domain` with. Real SES reports a BYODKIM selector in
    /// `DkimAttributes.Tokens`; awsim leaves `Tokens` empty and puts it in a field of its own
    /// (`DomainSigningSelector`) that the SDK does not model, so read the raw JSON as well.
    pub async fn ses_selector(&self, domain: &str) -> Option<String> {
        if let Some(token) = self.ses_dkim(domain).await.selectors.into_iter().next() {
            return Some(token);
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL_SESV2").expect("AWS_ENDPOINT_URL_SESV2");
        let authority = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let path = format!("/v2/email/identities/{domain}");
        let body = tokio::task::spawn_blocking(move || raw_get(&authority, &path))
            .await
            .unwrap();
        let json: Value = serde_json::from_str(&body).expect("GetEmailIdentity JSON");
        json["DkimAttributes"]["DomainSigningSelector"]
            .as_str()
            .map(str::to_owned)
    }

    /// A fresh identity in SES plus its secret `{"identity": domain, ...extra}`.
    pub async fn seed(&self, tag: &str, extra: Value) -> Seeded {
        let domain = unique_domain(tag);
        self.create_identity(&domain).await;
        let mut body = serde_json::json!({ "identity": domain });
        if let (Value::Object(map), Value::Object(more)) = (&mut body, extra) {
            map.extend(more);
        }
        let arn = self
            .create_secret(&format!("dkim/{domain}"), &body.to_string())
            .await;
        Seeded { domain, arn }
    }
}

/// A seeded identity and secret.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub domain: String,
    pub arn: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A domain name no other test uses.
pub fn unique_domain(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{tag}-{n}-{}.example.com", &id[..8])
}

/// A policy that allows every identity, 1024-bit keys.
pub fn allow_all() -> RotationPolicy {
    RotationPolicy {
        allowed_identities: AllowedIdentities::Any,
        ..RotationPolicy::default()
    }
}

/// The request for `step` of the rotation `token`.
pub fn request(step: Step, secret_id: &str, token: &str) -> RotationRequest {
    RotationRequest {
        step,
        secret_id: secret_id.to_owned(),
        token: token.to_owned(),
        rotation_token: None,
    }
}

/// Runs all four steps in order; returns the reports.
pub async fn rotate(engine: &RealEngine, secret_id: &str, token: &str) -> Vec<StepReport> {
    let mut reports = Vec::new();
    for step in ALL_STEPS {
        reports.push(
            engine
                .run_step(&request(step, secret_id, token))
                .await
                .unwrap_or_else(|e| panic!("{step} failed: {e}")),
        );
    }
    reports
}

/// Runs one step and expects an error of `error_type`; returns it.
pub async fn expect_error(
    engine: &RealEngine,
    step: Step,
    secret_id: &str,
    token: &str,
    error_type: &str,
) -> RotatorError {
    let err = engine
        .run_step(&request(step, secret_id, token))
        .await
        .expect_err("the step should fail");
    assert_eq!(err.error_type(), error_type, "{err}");
    err
}

/// A plain HTTP/1.1 GET to the emulator (test-only; the emulator does not check signatures).
fn raw_get(authority: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to the emulator");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}
