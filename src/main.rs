//! The Lambda binary: wires logging, settings and AWS clients once, then serves events.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use ses_dkim_rotator::assembly::{build_rotator, lambda_aws_config};
use ses_dkim_rotator::config::Settings;
use ses_dkim_rotator::{logging, panic_report};

#[tokio::main]
async fn main() -> Result<(), Error> {
    logging::init_lambda_logging();
    panic_report::install();
    let settings = Settings::from_env().inspect_err(|error| {
        tracing::error!(error_type = error.error_type(), %error, "invalid configuration");
    })?;
    if !settings.policy.verify_dns {
        tracing::warn!(
            "DKIM_VERIFY_DNS=false: SES will be switched without checking that DNS serves the new TXT record"
        );
    }
    let rotator = build_rotator(&settings, &lambda_aws_config());
    let rotator = &rotator;
    run(service_fn(move |event: LambdaEvent<Value>| {
        panic_report::invocation_started(&event.context.request_id);
        rotator.handle(event)
    }))
    .await
}
