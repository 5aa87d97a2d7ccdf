//! The Lambda binary: wires tracing, settings and AWS clients once, then serves events.

use lambda_runtime::{Error, run, service_fn, tracing};
use ses_dkim_rotator::adapters::clock::SystemClock;
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::config::Settings;
use ses_dkim_rotator::engine::rotation::RotationEngine;
use ses_dkim_rotator::handler::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env().inspect_err(|error| {
        tracing::error!(error_type = error.error_type(), %error, "invalid configuration");
    })?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let engine = RotationEngine::new(
        SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&aws)),
        SesV2Signing::new(aws_sdk_sesv2::Client::new(&aws)),
        SystemClock,
        settings.policy,
    );
    let engine = &engine;
    run(service_fn(move |event| handle(engine, event))).await
}
