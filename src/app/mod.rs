//! The application: what both entry points (the Lambda handler and the `dkim-rotator` CLI)
//! run over the engine. [`Rotator`] is the engine with the fleet settings, the notifier and
//! the work queue; its work is split by file:
//! - [`gather`]: which secrets a scheduled run manages (payload, `DKIM_SECRET_IDS`, the tag),
//!   without duplicates;
//! - [`step`]: one Secrets Manager rotation step, with its metrics and notification;
//! - [`fleet`]: a scheduled run over many secrets in one invocation;
//! - [`planner`]: queue mode's planner (one message per identity with something due);
//! - [`worker`]: queue mode's worker (one identity per SQS record).
//!
//! Parsing an event and shaping the answer is [`crate::handler`]'s; nothing here knows Lambda.

pub mod fleet;
pub mod gather;
pub mod planner;
pub mod step;
pub mod worker;

use time::OffsetDateTime;

use crate::config::FleetSettings;
use crate::engine::Engine;
use crate::engine::ports::Ports;
use crate::engine::schedule::FleetSummary;
use crate::metrics;
use crate::notifications::{Notification, Notifier};
use crate::work_queue::WorkQueue;

/// A scheduled run: which secrets, and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduledRun {
    /// The secrets named by the payload; `None` = the configured ones.
    pub secret_ids: Option<Vec<String>>,
    /// Rotate even keys younger than the interval.
    pub force: bool,
    /// Report what would happen, change nothing.
    pub dry_run: bool,
}

/// Everything an invocation needs, built once at start-up.
#[derive(Debug)]
pub struct Rotator<P, N, Q> {
    /// The rotation engine.
    pub engine: Engine<P>,
    /// Scheduled-run settings.
    pub fleet: FleetSettings,
    /// Where notifications go.
    pub notifier: N,
    /// Where a planner sends work (used when `fleet.work_queue_url` is set).
    pub queue: Q,
}

/// Milliseconds since the epoch, for EMF timestamps.
pub(crate) fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// Sends `notification`, if any; a failure to send is logged, never fatal.
    pub(crate) async fn notify(&self, notification: Option<Notification>) {
        let Some(notification) = notification else {
            return;
        };
        if let Err(error) = self.notifier.publish(&notification).await {
            tracing::warn!(%error, kind = ?notification.kind, "could not send a notification");
        }
    }

    /// Prints the EMF lines of a fleet summary.
    pub(crate) fn print_metrics(&self, summary: &FleetSummary) {
        let rules = metrics::GaugeRules {
            stale_after_days: f64::from(self.fleet.stale_key_days),
            home_region: self.fleet.home_region.clone(),
        };
        for line in metrics::fleet_lines(&self.fleet.metrics_namespace, now_ms(), summary, &rules) {
            println!("{line}");
        }
    }
}
