//! Log output of the Lambda binary: JSON when the function's log format is JSON
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`, as `template.yaml` sets it), text otherwise; the level from
//! the function's application log level (`AWS_LAMBDA_LOG_LEVEL`), else `RUST_LOG` (which may
//! also name targets: `info,aws_smithy_runtime=debug`), else INFO.
//!
//! Filtering uses tracing-subscriber's `Targets` rather than `EnvFilter`: the same level and
//! target directives, without a regex engine in the binary.
//!
//! Whatever the level, TRACE lines of other crates are never written ([`never_logged`]):
//! `lambda_runtime` logs the raw event body at TRACE (a Secrets Manager event carries the
//! `RotationToken`), and the HTTP and SDK layers log wire data there (a `GetSecretValue`
//! answer holds a private key). TRACE is this crate's own, which logs no secret at any level.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterFn, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber, writing to stdout (CloudWatch Logs).
pub fn init_lambda_logging() {
    let filter = log_filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    let registry = tracing_subscriber::registry()
        .with(FilterFn::new(|meta| !never_logged(meta)))
        .with(filter);
    if json {
        registry.with(format.json()).init();
    } else {
        registry.with(format).init();
    }
}

/// Whether an event is dropped whatever the settings: TRACE from any crate but this one.
pub fn never_logged(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::TRACE && !is_own_target(meta.target())
}

fn is_own_target(target: &str) -> bool {
    let own = env!("CARGO_CRATE_NAME");
    target
        .strip_prefix(own)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// The filter for the Lambda's settings: `lambda_level` (`TRACE`…`FATAL`) wins; `rust_log`
/// is a `Targets` directive list; anything unreadable falls back to INFO.
pub fn log_filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    if let Some(level) = lambda_level.filter(|l| !l.trim().is_empty()) {
        let level = match level.trim() {
            l if l.eq_ignore_ascii_case("fatal") => LevelFilter::ERROR,
            l => l.parse().unwrap_or(LevelFilter::INFO),
        };
        return Targets::new().with_default(level);
    }
    rust_log
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_is_this_crates_own() {
        assert!(is_own_target("ses_dkim_rotator"));
        assert!(is_own_target("ses_dkim_rotator::engine::rotation"));
        assert!(!is_own_target("ses_dkim_rotator_fork"));
        assert!(!is_own_target("lambda_runtime::layers::api_response"));
        assert!(!is_own_target("aws_smithy_runtime"));
    }

    #[test]
    fn lambda_level_wins_and_fatal_means_error() {
        let filter = log_filter(Some("DEBUG"), Some("error"));
        assert!(filter.would_enable("ses_dkim_rotator", &Level::DEBUG));
        assert!(!filter.would_enable("ses_dkim_rotator", &Level::TRACE));
        let filter = log_filter(Some("FATAL"), None);
        assert!(filter.would_enable("x", &Level::ERROR));
        assert!(!filter.would_enable("x", &Level::WARN));
    }

    #[test]
    fn rust_log_names_targets_and_garbage_falls_back_to_info() {
        let filter = log_filter(None, Some("warn,ses_dkim_rotator=trace"));
        assert!(filter.would_enable("ses_dkim_rotator::engine", &Level::TRACE));
        assert!(!filter.would_enable("aws_smithy_runtime", &Level::INFO));
        let filter = log_filter(Some(" "), Some("=?=nonsense=="));
        assert!(filter.would_enable("x", &Level::INFO));
        assert!(!filter.would_enable("x", &Level::DEBUG));
    }
}
