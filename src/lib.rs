//! ses-dkim-rotator: rotates Amazon SES "Bring Your Own DKIM" keys held in Secrets Manager.
//!
//! The crate is laid out hexagonally:
//! - [`engine`] is the pure rotation logic (keys, selectors, the secret document, the four
//!   Secrets Manager steps). It knows nothing of the AWS SDK; it talks to the outside world
//!   through the small traits in [`engine::ports`].
//! - [`adapters`] implements those traits with the AWS SDK and the system clock.
//! - [`handler`] turns a Lambda event into an engine call and the result into a response.
//! - [`assembly`] picks the adapters the settings ask for and builds the engine.
//! - [`config`] reads and checks the settings once, at start-up.
//! - [`notifications`] and [`metrics`] say what happened: SNS messages, CloudWatch EMF lines.
//! - [`error`] is the one error type every entry point returns.
//! - [`logging`] and [`panic_report`] are the Lambda binary's log set-up and panic net.

pub mod adapters;
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
