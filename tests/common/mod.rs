//! Shared test bed for integration tests: real SDK clients pointed at the local stand-ins
//! started by `scripts/testbed.sh` (moto for Secrets Manager, Route 53, SNS, SQS; the SES model
//! `scripts/ses_model.py` for SESv2; knot for DNS).
//!
//! Each suite declares it `pub mod common;`: its items are then reachable, so a suite that uses
//! only some of them raises no dead-code warning (no `allow` needed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::process::Command;
use std::time::Duration;

use aws_sdk_secretsmanager::types::RotationRulesType;
use serde_json::Value;
use ses_dkim_rotator::adapters::clock::SystemClock;
use ses_dkim_rotator::adapters::dns::ConfiguredPublisher;
use ses_dkim_rotator::adapters::dns::lookup::{HickoryTxtLookup, LookupServers};
use ses_dkim_rotator::adapters::dns::rfc2136::Rfc2136Publisher;
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::app::Rotator;
use ses_dkim_rotator::assembly::{AwsEngine, build_engine};
use ses_dkim_rotator::config::Settings;
use ses_dkim_rotator::engine::dns_check::{TxtAnswer, check_dkim_record};
use ses_dkim_rotator::engine::error::EngineError;
use ses_dkim_rotator::engine::identity::AllowedIdentities;
use ses_dkim_rotator::engine::ports::PortSet;
use ses_dkim_rotator::engine::ports::{
    Deadline, DkimSigningService, DkimStatus, ListedPage, PortError, Ports, SecretDescription,
    SecretStore, SesDkimState, SigningOrigin, StoredVersion, VersionInfo, VersionRef,
};
use ses_dkim_rotator::engine::rotation::{RotationRequest, Step, StepReport};
use ses_dkim_rotator::engine::schedule::{Action, MaintainOptions};
use ses_dkim_rotator::engine::{Engine, RotationPolicy};
use ses_dkim_rotator::notifications::Notifier;
use ses_dkim_rotator::secret_text::SecretText;
use ses_dkim_rotator::work_queue::WorkQueue;

/// The engine as the Lambda builds it, over the emulated services and the real DNS server.
pub type RealEngine = AwsEngine;

/// The zone the test DNS server (knot) is authoritative for.
pub const ZONE: &str = "dkim.test";

/// Any ARN: moto fails RotateSecret on it but leaves AWSPENDING staged, as AWS does before
/// it invokes createSecret.
pub const FAKE_LAMBDA_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:ses-dkim-rotator";

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

/// The engine [`TestBed::engine_over`] builds: given Secrets Manager and SES ports, RFC 2136
/// to knot, DNS checked at knot, the system clock.
pub type EngineOver<S, E> =
    Engine<PortSet<S, E, ConfiguredPublisher, HickoryTxtLookup, SystemClock>>;

impl TestBed {
    /// Connects to the stand-ins named by `AWS_ENDPOINT_URL_*`; panics with how to start them.
    pub async fn connect() -> Self {
        for var in ["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SESV2"] {
            assert!(
                std::env::var(var).is_ok(),
                "{var} is not set: run integration tests through `make test` (scripts/testbed.sh starts the emulators)"
            );
        }
        let config = ses_dkim_rotator::assembly::lambda_aws_config();
        // The bed's own set-up and checks call SES with an access key of their own, which the
        // SES model does not meter (`--unmetered-key BEDTOOLS`): the function's key meets the
        // quota with its own traffic only, as on AWS, where the bed's set-up would not exist.
        let bed_tools = aws_sdk_sesv2::config::Builder::from(&config)
            .credentials_provider(aws_credential_types::Credentials::new(
                "BEDTOOLS", "testing", None, None, "test-bed",
            ))
            .build();
        Self {
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            ses: aws_sdk_sesv2::Client::from_conf(bed_tools),
        }
    }

    /// Settings as the Lambda reads them: RFC 2136 to knot with a TSIG key stored in Secrets
    /// Manager, DNS checked at knot, every identity allowed.
    pub async fn settings(&self, publisher: &str) -> Settings {
        let vars = self.settings_vars(publisher).await;
        Settings::from_lookup(|name| vars.get(name).cloned()).expect("test settings")
    }

    /// The environment variables behind [`Self::settings`], for a child process.
    pub async fn settings_vars(&self, publisher: &str) -> HashMap<String, String> {
        let tsig_secret = self.tsig_secret().await;
        [
            ("DKIM_ALLOWED_IDENTITIES", "*".to_owned()),
            ("DKIM_DNS_PUBLISHER", publisher.to_owned()),
            ("DKIM_DNS_UPDATE_SERVER", dns_server()),
            ("DKIM_DNS_ZONE", ZONE.to_owned()),
            ("DKIM_DNS_TSIG_SECRET_ID", tsig_secret),
            ("DKIM_DNS_SERVERS", dns_server()),
            ("DKIM_DNS_VERIFY_INTERVAL_SECONDS", "1".to_owned()),
            ("DKIM_DNS_TTL", "60".to_owned()),
            // The bed scales SES's quota (and so the pacing) by one factor to run fast.
            ("DKIM_SES_REQUESTS_PER_SECOND", quota_scale()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The AWS config the SDK clients were built from.
    pub async fn aws_config(&self) -> aws_config::SdkConfig {
        ses_dkim_rotator::assembly::lambda_aws_config()
    }

    /// A new SQS queue named `<prefix>-<random>`, with `redrive` as its redrive policy (dead
    /// letter queue ARN, receives before a message moves there); its URL and ARN.
    pub async fn queue(&self, prefix: &str, redrive: Option<(&str, u32)>) -> (String, String) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let sqs = aws_sdk_sqs::Client::new(&self.aws_config().await);
        let mut create = sqs.create_queue().queue_name(format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        if let Some((dead_letter_arn, max_receives)) = redrive {
            create = create.attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({
                    "deadLetterTargetArn": dead_letter_arn,
                    "maxReceiveCount": max_receives.to_string(),
                })
                .to_string(),
            );
        }
        let url = create.send().await.unwrap().queue_url().unwrap().to_owned();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        (url, arn)
    }

    /// A new SNS topic named `<prefix>-<random>`; its ARN.
    pub async fn topic(&self, prefix: &str) -> String {
        aws_sdk_sns::Client::new(&self.aws_config().await)
            .create_topic()
            .name(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
            .send()
            .await
            .unwrap()
            .topic_arn()
            .unwrap()
            .to_owned()
    }

    /// A rotation engine wired exactly as the Lambda wires it (RFC 2136 to knot), with `policy`.
    pub async fn engine(&self, policy: RotationPolicy) -> RealEngine {
        self.engine_with("rfc2136", policy).await
    }

    /// Like [`Self::engine`] with another publisher (`hint`, `route53`, `rfc2136`).
    pub async fn engine_with(&self, publisher: &str, policy: RotationPolicy) -> RealEngine {
        let mut settings = self.settings(publisher).await;
        settings.policy = RotationPolicy {
            verify_retry_interval: settings.policy.verify_retry_interval,
            ..policy
        };
        build_engine(&settings, &self.aws_config().await)
    }

    /// An engine over a given Secrets Manager and SES port, with RFC 2136 to knot.
    pub async fn engine_over<S: SecretStore, E: DkimSigningService>(
        &self,
        store: S,
        ses: E,
        policy: RotationPolicy,
    ) -> EngineOver<S, E> {
        let tsig_secret = self.tsig_secret().await;
        Engine::new(
            PortSet {
                secrets: store,
                ses,
                dns: ConfiguredPublisher::Rfc2136(Rfc2136Publisher::new(
                    dns_server().parse().unwrap(),
                    Some(ZONE.to_owned()),
                    60,
                    Some(tsig_secret),
                    SecretsManagerStore::new(self.secrets.clone()),
                )),
                lookup: HickoryTxtLookup::new(
                    LookupServers::Fixed(vec![dns_server().parse().unwrap()]),
                    Duration::from_secs(3),
                ),
                clock: SystemClock,
            },
            policy,
        )
    }

    /// Stores the test bed's TSIG key as a secret, as an operator would; returns its name.
    pub async fn tsig_secret(&self) -> String {
        let name = format!("dns/tsig-{}", uuid::Uuid::new_v4().simple());
        let body = serde_json::json!({
            "name": std::env::var("DKIM_TEST_TSIG_NAME").unwrap(),
            "algorithm": std::env::var("DKIM_TEST_TSIG_ALGORITHM").unwrap(),
            "secret": std::env::var("DKIM_TEST_TSIG_SECRET").unwrap(),
        });
        self.create_secret(&name, &body.to_string()).await;
        name
    }

    /// Asserts the invariant: if SES signs `domain` with an external key, DNS serves a TXT
    /// record for that selector that publishes the key the secret holds for it.
    /// Counted in `$SES_DKIM_INVARIANT_LOG` when set.
    pub async fn assert_invariant(&self, domain: &str, arn: &str) {
        let state = self.ses_dkim(domain).await;
        let mut checked = 0;
        if state.origin == Some(SigningOrigin::External) {
            let selector = self
                .ses_selector(domain)
                .await
                .expect("SES signs with an external key but names no selector");
            let mut public_key = None;
            for stage in ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"] {
                if let Some(doc) = self.try_secret_json(arn, stage).await
                    && doc["selector"].as_str() == Some(selector.as_str())
                {
                    public_key = doc["public_key"].as_str().map(str::to_owned);
                }
            }
            let public_key = public_key.unwrap_or_else(|| {
                panic!("invariant: SES uses selector {selector}, which no version of {arn} holds")
            });
            let name = format!("{selector}._domainkey.{domain}");
            let check = check_dkim_record(&Ok(dns_txt(&name)), &public_key);
            assert!(
                check.is_published(),
                "invariant broken: SES signs {domain} with {selector} but DNS says {check:?}"
            );
            checked += 1;
        }
        // No previous record is retired while SES has not verified the current selector.
        if let Some(current) = self.try_secret_json(arn, "AWSCURRENT").await
            && let (Some(previous), Some(selector)) = (
                current["previous_selector"].as_str(),
                current["selector"].as_str(),
            )
        {
            let retired = match dns_txt(&format!("{previous}._domainkey.{domain}")) {
                TxtAnswer::NoRecords => true,
                TxtAnswer::Records(records) => records.iter().all(|r| r.trim_end().ends_with("p=")),
            };
            if retired {
                assert!(
                    state.status == Some(DkimStatus::Success)
                        && state.selectors.iter().any(|s| s == selector),
                    "invariant broken: {previous} of {domain} retired while SES says {:?} for {:?} (current {selector})",
                    state.status,
                    state.selectors
                );
            }
            checked += 1;
        }
        if checked > 0
            && let Ok(log) = std::env::var("SES_DKIM_INVARIANT_LOG")
        {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            for _ in 0..checked {
                writeln!(file, "{domain}").unwrap();
            }
        }
    }

    /// The JSON in the version carrying `stage`, if there is one with a value.
    pub async fn try_secret_json(&self, secret_id: &str, stage: &str) -> Option<Value> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .send()
            .await
            .ok()?;
        serde_json::from_str(out.secret_string()?).ok()
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

    /// `RotateSecret` with AWS's rule that moto does not enforce: refused while `AWSPENDING`
    /// sits on a version that is not `AWSCURRENT` ("A previous rotation isn't complete").
    /// Otherwise [`Self::start_rotation`].
    pub async fn rotate_secret_as_aws(&self, secret_id: &str) -> Result<String, String> {
        let blocked = self.stages(secret_id).await.into_iter().any(|(_, stages)| {
            stages.iter().any(|s| s == "AWSPENDING") && !stages.iter().any(|s| s == "AWSCURRENT")
        });
        if blocked {
            return Err("InvalidRequestException: A previous rotation isn't complete. That rotation will be reattempted.".into());
        }
        Ok(self.start_rotation(secret_id).await)
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

    /// The JSON in the version carrying `stage`; panics when there is none.
    pub async fn secret_json(&self, secret_id: &str, stage: &str) -> Value {
        self.try_secret_json(secret_id, stage)
            .await
            .unwrap_or_else(|| panic!("{secret_id} has no JSON value at {stage}"))
    }

    /// Everything a rotation could change for `secret_id`, to compare before and after: every
    /// version's labels and body, the secret's tags, and SES's whole state (the SES model's).
    pub async fn whole_state(&self, secret_id: &str) -> Value {
        let described = self
            .secrets
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .expect("DescribeSecret");
        let mut versions = std::collections::BTreeMap::new();
        for (id, mut stages) in described
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default()
        {
            stages.sort();
            let body = self
                .secrets
                .get_secret_value()
                .secret_id(secret_id)
                .version_id(&id)
                .send()
                .await
                .ok()
                .and_then(|o| o.secret_string().map(str::to_owned));
            versions.insert(id, serde_json::json!({"stages": stages, "body": body}));
        }
        let tags: std::collections::BTreeMap<String, String> = described
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect();
        let ses = ses_model("GET", "/_model/state", &Value::Null).await;
        serde_json::json!({"versions": versions, "tags": tags, "ses": ses["identities"]})
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
            status: dkim.status().map(|s| DkimStatus::parse(s.as_str())),
            origin: dkim
                .signing_attributes_origin()
                .map(|o| SigningOrigin::parse(o.as_str())),
            selectors: dkim.tokens().to_vec(),
        }
    }

    /// The selector SES signs `domain` with (BYODKIM: `Tokens` holds it, as on real SES).
    pub async fn ses_selector(&self, domain: &str) -> Option<String> {
        let state = self.ses_dkim(domain).await;
        (state.origin == Some(SigningOrigin::External))
            .then(|| state.selectors.into_iter().next())
            .flatten()
    }

    /// "SES looks now": the SES model checks `domain`'s selector in DNS (knot) and moves its
    /// status as real SES would (PENDING → SUCCESS when served, …). Returns the new status
    /// (`None` for an Easy DKIM identity, which the model does not check).
    pub async fn ses_check(&self, domain: &str) -> Option<DkimStatus> {
        let out = ses_model(
            "POST",
            "/_model/check",
            &serde_json::json!({"identity": domain}),
        )
        .await;
        out["Status"].as_str().map(DkimStatus::parse)
    }

    /// SES looks at DNS and says `SUCCESS`; a scheduled run of `engine` records the
    /// confirmation (the previous selector's grace period starts then).
    pub async fn confirm<P: Ports>(&self, engine: &Engine<P>, seeded: &Seeded) {
        assert_eq!(
            self.ses_check(&seeded.domain).await,
            Some(DkimStatus::Success)
        );
        let options = MaintainOptions {
            force: false,
            dry_run: false,
            rotation_interval: time::Duration::days(90),
            deadline: Deadline::NONE,
            record_published: false,
        };
        let report = engine.maintain(&seeded.arn, &options).await;
        assert_eq!(report.action, Action::Confirmed, "{report:?}");
    }

    /// Forces SES's DKIM status of `domain` (the SES model's control API).
    pub async fn ses_force(&self, domain: &str, status: DkimStatus) {
        ses_model(
            "POST",
            "/_model/status",
            &serde_json::json!({"identity": domain, "status": status.as_str()}),
        )
        .await;
    }

    /// The secret `dkim/<domain>` = `{"identity": domain}` (its SES identity made elsewhere);
    /// returns its ARN.
    pub async fn secret_for(&self, domain: &str) -> String {
        self.create_secret(
            &format!("dkim/{domain}"),
            &serde_json::json!({ "identity": domain }).to_string(),
        )
        .await
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

/// A domain name, inside the test DNS zone, that no other test uses.
pub fn unique_domain(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{tag}-{n}-{}.{ZONE}", &id[..8])
}

/// `ip:port` of the test DNS server.
pub fn dns_server() -> String {
    std::env::var("DKIM_TEST_DNS_SERVER")
        .expect("DKIM_TEST_DNS_SERVER is set by scripts/testbed.sh; run `make test`")
}

fn dns_port() -> String {
    dns_server().rsplit(':').next().unwrap().to_owned()
}

/// The TXT records at `name`, read with `kdig` (a DNS client not written here).
pub fn dns_txt(name: &str) -> TxtAnswer {
    let out = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &dns_port(),
            "+short",
            "+tcp",
            "TXT",
            name,
        ])
        .output()
        .expect("kdig");
    assert!(out.status.success(), "kdig failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let records: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            // `"part one" "part two"` → the strings joined, as a DKIM verifier reads them.
            line.split('"')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, part)| part.replace("\\\\", "\\"))
                .collect::<String>()
        })
        .collect();
    if records.is_empty() {
        TxtAnswer::NoRecords
    } else {
        TxtAnswer::Records(records)
    }
}

/// Changes the test zone with `knsupdate` (not this crate's RFC 2136 code): each line is an
/// nsupdate command such as `update add NAME 60 TXT "..."`.
pub fn dns_update(commands: &[String]) {
    use std::io::Write;
    let key = format!(
        "{}:{}:{}",
        std::env::var("DKIM_TEST_TSIG_ALGORITHM").unwrap(),
        std::env::var("DKIM_TEST_TSIG_NAME").unwrap(),
        std::env::var("DKIM_TEST_TSIG_SECRET").unwrap()
    );
    let mut child = Command::new("knsupdate")
        .args(["-y", &key])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("knsupdate");
    let mut script = format!("server 127.0.0.1 {}\nzone {ZONE}.\n", dns_port());
    for line in commands {
        script.push_str(line);
        script.push('\n');
    }
    script.push_str("send\nquit\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "knsupdate failed");
}

/// Adds one TXT record with the given strings at `name`.
pub fn dns_add_txt(name: &str, strings: &[&str]) {
    let quoted: Vec<String> = strings.iter().map(|s| format!("\"{s}\"")).collect();
    dns_update(&[format!("update add {name}. 60 TXT {}", quoted.join(" "))]);
}

/// Deletes every TXT record at `name`.
pub fn dns_delete_txt(name: &str) {
    dns_update(&[format!("update delete {name}. TXT")]);
}

/// A policy that allows every identity, 1024-bit keys.
pub fn allow_all() -> RotationPolicy {
    RotationPolicy {
        allowed_identities: AllowedIdentities::Any,
        ..RotationPolicy::default()
    }
}

/// The request for `step` of the rotation `token` (no deadline: one DNS check, no waiting).
pub fn request(step: Step, secret_id: &str, token: &str) -> RotationRequest {
    RotationRequest::new(step, secret_id, token)
}

/// Runs all four steps in order, checking the invariant after each; returns the reports.
pub async fn rotate(
    bed: &TestBed,
    engine: &RealEngine,
    seeded: &Seeded,
    token: &str,
) -> Vec<StepReport> {
    let mut reports = Vec::new();
    for step in ALL_STEPS {
        reports.push(
            engine
                .run_step(&request(step, &seeded.arn, token))
                .await
                .unwrap_or_else(|e| panic!("{step} failed: {e}")),
        );
        bed.assert_invariant(&seeded.domain, &seeded.arn).await;
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
) -> EngineError {
    let err = engine
        .run_step(&request(step, secret_id, token))
        .await
        .expect_err("the step should fail");
    assert_eq!(err.error_type(), error_type, "{err}");
    err
}

/// One call to the SES model's control API (`scripts/ses_model.py`, under `/_model/`).
pub async fn ses_model(method: &'static str, path: &'static str, body: &Value) -> Value {
    control_api("AWS_ENDPOINT_URL_SESV2", method, path, body).await
}

/// What the AWS front (`scripts/aws_front.py`, Route 53 and Secrets Manager quotas in front of
/// moto) refused and admitted, and per accepted Route 53 change its zone and GetChange's
/// answers (`GET /_front/state`).
pub async fn aws_front_state() -> Value {
    control_api(
        "AWS_ENDPOINT_URL_ROUTE_53",
        "GET",
        "/_front/state",
        &Value::Null,
    )
    .await
}

/// One call to the control API of the stand-in at `$endpoint_var` (JSON, no auth).
async fn control_api(
    endpoint_var: &'static str,
    method: &'static str,
    path: &'static str,
    body: &Value,
) -> Value {
    let endpoint = std::env::var(endpoint_var).unwrap_or_else(|_| panic!("{endpoint_var}"));
    let authority = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let body = if body.is_null() {
        "{}".to_owned()
    } else {
        body.to_string()
    };
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&authority)
            .unwrap_or_else(|e| panic!("connect to {endpoint_var}: {e}"));
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{method} {path}: {head}\n{body}");
        serde_json::from_str(body).unwrap_or(Value::Null)
    })
    .await
    .unwrap()
}

/// One call to the Secrets Manager port, for wrappers that act around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCall {
    /// The AWS operation (`UpdateSecretVersionStage`…), as the crash-point lists name it.
    pub api: &'static str,
    /// The port method (`promote`, `clear_pending`…): tells apart calls of one operation.
    pub method: &'static str,
}

/// What a test does around each call of a wrapped store: delay it, fail it, abort after it.
pub trait AroundStoreCall: Send + Sync {
    /// Runs (or does not run) `call`, the wrapped store's future for `which`.
    fn around<T: Send>(
        &self,
        which: StoreCall,
        call: impl Future<Output = Result<T, PortError>> + Send,
    ) -> impl Future<Output = Result<T, PortError>> + Send;
}

/// A [`SecretStore`] whose every call goes through `around`.
pub struct AroundStore<S, A> {
    /// The real store.
    pub inner: S,
    /// What happens around each call.
    pub around: A,
}

const fn call(api: &'static str, method: &'static str) -> StoreCall {
    StoreCall { api, method }
}

impl<S: SecretStore, A: AroundStoreCall> SecretStore for AroundStore<S, A> {
    async fn describe(&self, id: &str) -> Result<SecretDescription, PortError> {
        let which = call("DescribeSecret", "describe");
        self.around.around(which, self.inner.describe(id)).await
    }
    async fn read(&self, id: &str, v: VersionRef<'_>) -> Result<Option<StoredVersion>, PortError> {
        let which = call("GetSecretValue", "read");
        self.around.around(which, self.inner.read(id, v)).await
    }
    async fn put_pending(
        &self,
        id: &str,
        token: &str,
        value: &SecretText,
        rotation_token: Option<&SecretText>,
    ) -> Result<(), PortError> {
        let which = call("PutSecretValue", "put_pending");
        let put = self.inner.put_pending(id, token, value, rotation_token);
        self.around.around(which, put).await
    }
    async fn promote(&self, id: &str, to: &str, from: Option<&str>) -> Result<(), PortError> {
        let which = call("UpdateSecretVersionStage", "promote");
        self.around
            .around(which, self.inner.promote(id, to, from))
            .await
    }
    async fn list_versions(&self, id: &str) -> Result<Vec<VersionInfo>, PortError> {
        let which = call("ListSecretVersionIds", "list_versions");
        self.around
            .around(which, self.inner.list_versions(id))
            .await
    }
    async fn list_tagged_page(
        &self,
        key: &str,
        value: &str,
        page: Option<&str>,
    ) -> Result<ListedPage, PortError> {
        let which = call("ListSecrets", "list_tagged_page");
        self.around
            .around(which, self.inner.list_tagged_page(key, value, page))
            .await
    }
    async fn set_tags(&self, id: &str, tags: &[(&str, &str)]) -> Result<(), PortError> {
        let which = call("TagResource", "set_tags");
        self.around
            .around(which, self.inner.set_tags(id, tags))
            .await
    }
    async fn clear_pending(&self, id: &str, version: &str) -> Result<(), PortError> {
        let which = call("UpdateSecretVersionStage", "clear_pending");
        self.around
            .around(which, self.inner.clear_pending(id, version))
            .await
    }
}

/// The event source mapping, as a test driver: receives up to `max` messages and hands them to
/// the function as one SQS event; deletes the ones the function did not report failed (what
/// Lambda does with a partial batch response); returns the batch response. `visibility_timeout`
/// 0 lets a test see a failed message again at once; concurrent drivers need more.
pub async fn deliver<P: Ports, N: Notifier, Q: WorkQueue>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    rotator: &Rotator<P, N, Q>,
    max: i32,
    visibility_timeout: i32,
) -> Option<Value> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max)
        .visibility_timeout(visibility_timeout)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    if messages.is_empty() {
        return None;
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": {}, "messageAttributes": {}, "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    let response = rotator
        .handle(lambda_runtime::LambdaEvent::new(
            serde_json::json!({ "Records": records }),
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    let failed: std::collections::HashSet<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    for message in messages {
        if !failed.contains(message.message_id().unwrap()) {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    Some(response)
}

/// `DKIM_TEST_QUOTA_SCALE` (scripts/testbed.sh; default 10): the factor the bed multiplies
/// AWS's rate quotas by, and so the SES requests per second the function is told it may make.
pub fn quota_scale() -> String {
    std::env::var("DKIM_TEST_QUOTA_SCALE").unwrap_or_else(|_| "10".to_owned())
}
