//! Queue mode's planner: decides from `ListSecrets` alone (see [`crate::engine::triage`])
//! which secrets need a worker, and sends one queue message for each.
//!
//! Rotations are capped per run (`DKIM_MAX_ROTATIONS_PER_RUN`, by default what 16 hours of
//! SES's budget serves): onboarding more identities than that in one day rotates them over
//! the fewest days the quota allows, and the queue drains before the next daily run. Watching,
//! retirements and health checks are never held back.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::gather::{each_secret_once, nothing_to_manage};
use super::{Rotator, ScheduledRun};
use crate::engine::plan::PlanOptions;
use crate::engine::ports::{Clock, Ports};
use crate::engine::time_format::rfc3339;
use crate::engine::triage::{Triage, WorkReason, triage};
use crate::error::AppError;
use crate::notifications::Notifier;
use crate::work_queue::{WorkItem, WorkQueue};

/// What a planner sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueuedPlan {
    /// Messages sent (0 in a dry run).
    pub queued: usize,
    /// The secrets sent to a worker (would be, in a dry run).
    pub secret_ids: Vec<String>,
    /// How many were sent, per reason.
    pub reasons: BTreeMap<WorkReason, usize>,
    /// Secrets the listing showed with nothing due.
    pub idle: usize,
    /// Rotations due but held for a later run: this run sent `DKIM_MAX_ROTATIONS_PER_RUN`.
    #[serde(skip_serializing_if = "is_zero")]
    pub deferred: usize,
    /// When the earliest idle secret falls due (RFC 3339), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<String>,
    /// Nothing was sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// The planner: decides from `ListSecrets` alone (see [`crate::engine::triage`]) which
    /// secrets need a worker, and sends one queue message for each. Secrets named in the
    /// payload or in `DKIM_SECRET_IDS` are always sent (the listing does not cover them).
    /// Nothing is read per secret. Returns what was sent.
    pub async fn plan_to_queue(&self, run: &ScheduledRun) -> Result<QueuedPlan, AppError> {
        let now = self.engine.ports().clock().now();
        let options = PlanOptions {
            force: run.force,
            rotation_interval: self.fleet.rotation_interval,
        };
        let grace = self.engine.policy().retirement().grace;
        let mut plan = QueuedPlan {
            queued: 0,
            secret_ids: Vec::new(),
            reasons: BTreeMap::new(),
            idle: 0,
            deferred: 0,
            next_due: None,
            dry_run: run.dry_run,
        };
        let mut next_due: Option<OffsetDateTime> = None;
        let mut rotations: u64 = 0;
        let named = run
            .secret_ids
            .clone()
            .unwrap_or_else(|| self.fleet.secret_ids.clone());
        let mut decided: Vec<(String, Triage)> = named
            .into_iter()
            .map(|id| (id, Triage::Send(WorkReason::Named)))
            .collect();
        if run.secret_ids.is_none()
            && let Some((key, value)) = &self.fleet.secret_tag
        {
            let listed = self.engine.list_tagged(key, value).await?;
            decided.extend(listed.into_iter().map(|secret| {
                let decision = triage(&secret, options, grace, self.fleet.health_check_days, now);
                (secret.arn, decision)
            }));
        }
        if decided.is_empty() {
            return Err(nothing_to_manage());
        }
        for (secret_id, decision) in each_secret_once(decided, |(id, _)| id.as_str()) {
            match decision {
                Triage::Send(reason)
                    if reason.may_rotate() && rotations >= self.fleet.max_rotations_per_run =>
                {
                    plan.deferred += 1;
                }
                Triage::Send(reason) => {
                    rotations += u64::from(reason.may_rotate());
                    *plan.reasons.entry(reason).or_default() += 1;
                    plan.secret_ids.push(secret_id);
                }
                Triage::Idle { next } => {
                    plan.idle += 1;
                    next_due = match (next_due, next) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        plan.next_due = next_due.map(rfc3339);
        let items: Vec<WorkItem> = plan
            .secret_ids
            .iter()
            .map(|secret_id| WorkItem {
                secret_id: secret_id.clone(),
                force: run.force,
                dns_rechecks: 0,
            })
            .collect();
        if !run.dry_run && !items.is_empty() {
            plan.queued = self.queue.send(&items, Duration::ZERO).await?;
        }
        tracing::info!(
            to_work = items.len(),
            idle = plan.idle,
            deferred = plan.deferred,
            queued = plan.queued,
            reasons = ?plan.reasons,
            next_due = plan.next_due.as_deref(),
            dry_run = run.dry_run,
            "planned from the listing: one work message per identity with something due"
        );
        Ok(plan)
    }
}

/// Serde's `skip_serializing_if` for counts.
fn is_zero(n: &usize) -> bool {
    *n == 0
}
