//! ses-dkim-rotator: rotates Amazon SES "Bring Your Own DKIM" keys held in Secrets Manager.
//!
//! The crate is laid out hexagonally:
//! - [`engine`] is the pure rotation logic (keys, selectors, the secret document, the four
//!   Secrets Manager steps, the scheduled run's plan). It knows nothing of the AWS SDK or of
//!   Lambda; it talks to the outside world through one [`engine::ports::Ports`] bundle.
//! - [`adapters`] implements those ports with the AWS SDK, hickory and the system clock;
//!   `testing` (feature `testing`, on in `cargo test`) implements them in memory.
//! - [`app`] is what both entry points run: one step, a fleet run, the queue's planner and
//!   worker, gathering the managed secrets.
//! - [`handler`] parses a Lambda event, hands it to [`app`], and answers with its report.
//! - [`assembly`] picks the adapters the settings ask for and builds the engine.
//! - [`config`] reads and checks the settings once, at start-up.
//! - [`notifications`] and [`metrics`] say what happened: SNS messages, CloudWatch EMF lines.
//! - [`work_queue`] fans a fleet out through SQS: the planner's messages, the worker's items.
//! - [`error`] is the entry points' error: the engine's, plus a bad event or setting.
//! - [`logging`] and [`panic_report`] are the Lambda binary's log set-up and panic net.
//!
//! The module map with its layers is `docs/ARCHITECTURE.md`.

#![warn(missing_docs)]

pub mod adapters;
pub mod app;
pub mod assembly;
pub mod config;
pub mod engine;
pub mod error;
pub mod handler;
pub mod logging;
pub mod metrics;
pub mod notifications;
pub mod panic_report;
pub mod secret_text;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod work_queue;
