//! The Lambda binary: wires tracing, settings and AWS clients once, then serves events.

use lambda_runtime::{Error, run, service_fn, tracing};
use ses_dkim_rotator::assembly::{build_rotator, load_aws_config};
use ses_dkim_rotator::config::Settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env().inspect_err(|error| {
        tracing::error!(error_type = error.error_type(), %error, "invalid configuration");
    })?;
    if !settings.policy.verify_dns {
        tracing::warn!(
            "DKIM_VERIFY_DNS=false: SES will be switched without checking that DNS serves the new TXT record"
        );
    }
    let aws = load_aws_config().await;
    let rotator = build_rotator(&settings, &aws);
    let rotator = &rotator;
    run(service_fn(move |event| rotator.handle(event))).await
}
