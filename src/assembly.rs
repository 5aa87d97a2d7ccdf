//! Builds the production engine from [`Settings`] and an AWS config: one place that picks the
//! adapters, shared by the Lambda binary and the tests.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

use crate::adapters::clock::SystemClock;
use crate::adapters::dns::ConfiguredPublisher;
use crate::adapters::dns::hint::HintPublisher;
use crate::adapters::dns::lookup::{HickoryTxtLookup, LookupServers};
use crate::adapters::dns::rfc2136::Rfc2136Publisher;
use crate::adapters::dns::route53::Route53Publisher;
use crate::adapters::http_client::DeferredTlsClient;
use crate::adapters::secrets_manager::SecretsManagerStore;
use crate::adapters::sesv2::SesV2Signing;
use crate::adapters::sns::{ConfiguredNotifier, SnsNotifier};
use crate::adapters::sqs::{ConfiguredWorkQueue, SqsWorkQueue};
use crate::app::Rotator;
use crate::config::{PublisherSetting, Settings};
use crate::engine::Engine;
use crate::engine::pacing::{PacedSes, Pacer, Rate};
use crate::engine::ports::PortSet;

/// The real AWS and DNS adapters, as one [`crate::engine::ports::Ports`] bundle.
pub type AwsPorts = PortSet<
    SecretsManagerStore,
    PacedSes<SesV2Signing, SystemClock>,
    ConfiguredPublisher,
    HickoryTxtLookup,
    SystemClock,
>;

/// The engine over the real AWS and DNS adapters.
pub type AwsEngine = Engine<AwsPorts>;

/// The whole function: engine, fleet settings, notifier.
pub type AwsRotator = Rotator<AwsPorts, ConfiguredNotifier, ConfiguredWorkQueue>;

/// Wires the engine, the scheduled-run settings, the notifier and the work queue. Makes no
/// network call.
pub fn build_rotator(settings: &Settings, aws: &SdkConfig) -> AwsRotator {
    let notifier = match &settings.fleet.notify_topic_arn {
        Some(topic) => ConfiguredNotifier::Sns(SnsNotifier::new(
            aws_sdk_sns::Client::new(&with_retries(aws)),
            topic.clone(),
        )),
        None => ConfiguredNotifier::Off,
    };
    let queue = match &settings.fleet.work_queue_url {
        Some(url) => ConfiguredWorkQueue::Sqs(SqsWorkQueue::new(
            aws_sdk_sqs::Client::new(&with_retries(aws)),
            url.clone(),
        )),
        None => ConfiguredWorkQueue::Off,
    };
    Rotator {
        engine: build_engine(settings, aws),
        fleet: settings.fleet.clone(),
        notifier,
        queue,
    }
}

/// How long one DNS query may take.
const DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// The AWS config inside Lambda, built from the environment Lambda sets and nothing else:
/// region from `AWS_REGION`, credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
/// `AWS_SESSION_TOKEN` (the function's role), endpoints from `AWS_ENDPOINT_URL` and
/// `AWS_ENDPOINT_URL_<SERVICE>` as the SDK reads them (VPC endpoints, the local emulators).
///
/// The default provider chain ([`load_aws_config`]) is for workstations: profiles, SSO, web
/// identity through STS, IMDS, ECS. The Lambda binary never calls it, so none of that code is
/// linked (about 400 KB of the binary) and start-up reads no config files.
pub fn lambda_aws_config() -> SdkConfig {
    let region = env_var("AWS_REGION").or_else(|| env_var("AWS_DEFAULT_REGION"));
    let ignore_endpoints = env_var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut builder = SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(region.map(aws_config::Region::new))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(DeferredTlsClient::new())
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .time_source(SharedTimeSource::default())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(3100))
                .build(),
        )
        .retry_config(sdk_retry_config());
    if !ignore_endpoints {
        builder.set_endpoint_url(env_var("AWS_ENDPOINT_URL"));
        builder = builder.service_config(EnvEndpoints);
    }
    builder.build()
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `AWS_ENDPOINT_URL_<SERVICE_ID>` (e.g. `AWS_ENDPOINT_URL_SECRETS_MANAGER`), read the way the
/// SDK's own environment config reads it.
#[derive(Debug)]
struct EnvEndpoints;

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_uppercase().replace(' ', "_");
        env_var(&format!("{}_{service}", key.env()))
    }
}

/// The AWS config the CLI uses: the standard provider chains (profiles, SSO with the `sso`
/// feature, …), with the SDK's HTTPS client deferred to the first request (see
/// [`DeferredTlsClient`]).
pub async fn load_aws_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(DeferredTlsClient::new())
        .load()
        .await
}

/// Retries for every AWS call: throttling (`TooManyRequestsException`, 429) and 5xx are
/// retried with exponential backoff and full jitter, up to 8 attempts.
pub fn sdk_retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5))
}

/// The SDK config with this crate's retry policy.
fn with_retries(aws: &SdkConfig) -> SdkConfig {
    aws.to_builder().retry_config(sdk_retry_config()).build()
}

/// The process's one SES pacer: the share is the process's, however many engines it builds
/// (one in Lambda and in the CLI; many in a test binary, whose tests then share it as two
/// Lambda invocations never could). The first engine's settings set its rate.
static PROCESS_SES_PACER: OnceLock<Arc<Pacer>> = OnceLock::new();

/// This process's share of the account's Route 53 request rate, shared by every publisher it
/// builds (first settings win, as for [`PROCESS_SES_PACER`]).
static PROCESS_ROUTE53_PACER: OnceLock<Arc<Pacer>> = OnceLock::new();

/// The process's Route 53 pacer: no burst; a turn further than the identity budget away is
/// refused (the work comes back later).
fn process_route53_pacer(settings: &Settings) -> &'static Arc<Pacer> {
    PROCESS_ROUTE53_PACER.get_or_init(|| {
        Arc::new(Pacer::new(
            Rate {
                per_second: settings.fleet.route53_share_per_second(),
                burst: 1,
            },
            settings.fleet.identity_budget,
        ))
    })
}

/// SESv2 behind this process's share of the SES quota (see [`crate::engine::pacing`]): no
/// burst, so concurrent invocations together stay within the budget; a call whose turn is
/// further than the identity budget away is not sent (the work comes back later).
fn paced_ses(settings: &Settings, aws: &SdkConfig) -> PacedSes<SesV2Signing, SystemClock> {
    let pacer = PROCESS_SES_PACER.get_or_init(|| {
        Arc::new(Pacer::new(
            Rate {
                per_second: settings.fleet.ses_share_per_second(),
                burst: 1,
            },
            settings.fleet.identity_budget,
        ))
    });
    let home_region = aws.region().map(|r| r.to_string()).unwrap_or_default();
    // SES's retries are the pacer's, each on a later turn of the share: the SDK's own would
    // go out between turns, meet the quota again, and drain the SDK's retry budget (after
    // which an injected 5xx fails on its first attempt).
    let one_attempt = aws
        .to_builder()
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    PacedSes::new(
        SesV2Signing::new(aws_sdk_sesv2::Client::new(&one_attempt)),
        Arc::clone(pacer),
        SystemClock,
        home_region,
    )
    .with_retries(settings.fleet.ses_paced_retries)
}

/// Wires the adapters `settings` asks for. Makes no network call.
pub fn build_engine(settings: &Settings, aws: &SdkConfig) -> AwsEngine {
    let aws = &with_retries(aws);
    let secrets = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(aws));
    let dns = match &settings.dns.publisher {
        PublisherSetting::Hint => ConfiguredPublisher::Hint(HintPublisher),
        PublisherSetting::Route53 { hosted_zone_id } => ConfiguredPublisher::Route53(
            Route53Publisher::new(
                aws_sdk_route53::Client::new(aws),
                hosted_zone_id.clone(),
                settings.dns.ttl,
            )
            .paced_by(Arc::clone(process_route53_pacer(settings))),
        ),
        PublisherSetting::Rfc2136 {
            server,
            zone,
            tsig_secret_id,
        } => ConfiguredPublisher::Rfc2136(Rfc2136Publisher::new(
            *server,
            zone.clone(),
            settings.dns.ttl,
            Some(tsig_secret_id.clone()),
            secrets.clone(),
        )),
    };
    let servers = match &settings.dns.check_servers {
        Some(servers) => LookupServers::Fixed(servers.clone()),
        None => LookupServers::Authoritative { port: 53 },
    };
    Engine::new(
        PortSet {
            secrets,
            ses: paced_ses(settings, aws),
            dns,
            lookup: HickoryTxtLookup::new(servers, DNS_QUERY_TIMEOUT),
            clock: SystemClock,
        },
        settings.policy.clone(),
    )
}
