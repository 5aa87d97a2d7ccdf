//! Queue mode's planner: decides from `ListSecrets` alone (see [`crate::engine::triage`])
//! which secrets need a worker, and sends one queue message for each.
//!
//! A health check (nothing due, the identity's day for a look at SES) is screened first: when
//! the secret's tags name an identity of the function's own region that `ListEmailIdentities`
//! (1,000 a call) lists as `SUCCESS`, it is not sent. The screen only chooses whom not to look
//! at this time; every decision about a key is the worker's, from `GetEmailIdentity`.
//!
//! It sends while it lists, page by page; when the invocation's deadline comes near with
//! pages left, it puts a [`PlanContinuation`] (the listing's `NextToken` and the rotations
//! sent so far) on the queue and stops, and the worker that receives it carries on. So
//! 100,000 secrets (1,000 pages) are planned across as many invocations as they need.
//!
//! Rotations are capped per run (`DKIM_MAX_ROTATIONS_PER_RUN`, by default what 16 hours of
//! SES's budget serves): onboarding more identities than that in one day rotates them over
//! the fewest days the quota allows, and the queue drains before the next daily run. Watching,
//! retirements and health checks are never held back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use time::OffsetDateTime;

use super::gather::{each_secret_once, nothing_to_manage, secret_key};
use super::{Rotator, ScheduledRun};
use crate::engine::plan::PlanOptions;
use crate::engine::ports::{
    Clock, Deadline, DkimSigningService, DkimStatus, Ports, SecretDescription,
};
use crate::engine::tags::RotatorTags;
use crate::engine::time_format::rfc3339;
use crate::engine::triage::{Triage, WorkReason, triage};
use crate::error::AppError;
use crate::notifications::Notifier;
use crate::work_queue::{PlanContinuation, WorkItem, WorkQueue};

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
    /// Health checks not sent: SES's `ListEmailIdentities` lists the identity as `SUCCESS`.
    #[serde(skip_serializing_if = "is_zero")]
    pub screened: usize,
    /// Rotations due but held for a later run: this run sent `DKIM_MAX_ROTATIONS_PER_RUN`.
    #[serde(skip_serializing_if = "is_zero")]
    pub deferred: usize,
    /// The listing was not finished: the rest goes on in another invocation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
    /// When the earliest idle secret falls due (RFC 3339), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<String>,
    /// Nothing was sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Time a planner invocation keeps for one more listing page and its sends (one `ListSecrets`
/// call and up to ten `SendMessageBatch` calls); with less left before the deadline it sends
/// the rest of the run on as a [`PlanContinuation`] message and stops.
pub const PLANNER_PAGE_BUDGET: Duration = Duration::from_secs(10);

/// Why the planner refuses a forced run (the handler never hands it one).
const FORCED_RUN_NOT_QUEUED: &str = "a forced run is not planned to the queue (queue messages never force a rotation); invoke the function with {\"secret_ids\": [...], \"force\": true}, which rotates them in that invocation, or use dkim-rotator rotate --force";

/// One planner invocation's decisions so far.
struct Planning {
    plan: QueuedPlan,
    next_due: Option<OffsetDateTime>,
    rotations: u64,
    /// The `ListEmailIdentities` screen, loaded at the first health check that may use it.
    screen: Option<Screen>,
}

/// Each identity's `VerificationStatus` in the function's own region, or why there is none.
enum Screen {
    /// Identity → status.
    Listed(HashMap<String, DkimStatus>),
    /// The listing failed: every health check is sent (a look costs more; missing one is worse).
    Unavailable,
}

impl Screen {
    /// Whether a health check of `identity` may be skipped: SES lists it as `SUCCESS`.
    fn passes(&self, identity: &str) -> bool {
        matches!(self, Self::Listed(statuses) if statuses.get(identity) == Some(&DkimStatus::Success))
    }
}

impl Planning {
    /// Counts `decision` for `secret_id`; the work item when it is to be sent.
    fn decide(&mut self, secret_id: String, decision: Triage, cap: u64) -> Option<WorkItem> {
        match decision {
            Triage::Send(reason) if reason.may_rotate() && self.rotations >= cap => {
                self.plan.deferred += 1;
                None
            }
            Triage::Send(reason) => {
                self.rotations += u64::from(reason.may_rotate());
                *self.plan.reasons.entry(reason).or_default() += 1;
                self.plan.secret_ids.push(secret_id.clone());
                Some(WorkItem {
                    secret_id,
                    dns_rechecks: 0,
                })
            }
            Triage::Idle { next } => {
                self.plan.idle += 1;
                self.next_due = match (self.next_due, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                None
            }
        }
    }
}

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// The planner: decides from `ListSecrets` alone (see [`crate::engine::triage`]) which
    /// secrets need a worker, and sends one queue message for each, page by page as it
    /// lists. Secrets named in the payload or in `DKIM_SECRET_IDS` are always sent (the
    /// listing does not cover them). Nothing is read per secret. When the deadline leaves
    /// less than [`PLANNER_PAGE_BUDGET`] and pages remain, the rest of the run goes on in
    /// another invocation (a [`PlanContinuation`] on the queue). Returns what was sent.
    pub async fn plan_to_queue(
        &self,
        run: &ScheduledRun,
        deadline: Deadline,
    ) -> Result<QueuedPlan, AppError> {
        if run.force {
            // The handler runs a forced run in its invocation; a queue message never forces.
            return Err(AppError::InvalidEvent(FORCED_RUN_NOT_QUEUED.into()));
        }
        let mut planning = self.planning(run.dry_run, 0);
        let named = run
            .secret_ids
            .clone()
            .unwrap_or_else(|| self.fleet.secret_ids.clone());
        let named = each_secret_once(named, &self.fleet.home_region, String::as_str);
        let listing = match (&run.secret_ids, &self.fleet.secret_tag) {
            (None, Some(tag)) => Some(tag),
            _ => None,
        };
        if named.is_empty() && listing.is_none() {
            return Err(nothing_to_manage());
        }
        let items: Vec<WorkItem> = named
            .iter()
            .filter_map(|id| {
                let decision = Triage::Send(WorkReason::Named);
                planning.decide(id.clone(), decision, self.fleet.max_rotations_per_run)
            })
            .collect();
        self.send_planned(&mut planning, &items).await?;
        if let Some((key, value)) = listing {
            let skip: HashSet<String> = named
                .iter()
                .map(|id| secret_key(id, &self.fleet.home_region))
                .collect();
            self.plan_pages(&mut planning, key, value, None, &skip, deadline)
                .await?;
            if planning.plan.secret_ids.is_empty()
                && planning.plan.idle == 0
                && planning.plan.deferred == 0
                && planning.plan.screened == 0
                && !planning.plan.continued
            {
                return Err(nothing_to_manage());
            }
        }
        Ok(self.planned(planning))
    }

    /// The rest of a planner run, from where an earlier invocation's listing stopped.
    pub async fn continue_plan(
        &self,
        from: &PlanContinuation,
        deadline: Deadline,
    ) -> Result<QueuedPlan, AppError> {
        let mut planning = self.planning(false, from.rotations_sent);
        if let Some((key, value)) = &self.fleet.secret_tag {
            let page = Some(from.continue_planning_from.as_str());
            self.plan_pages(&mut planning, key, value, page, &HashSet::new(), deadline)
                .await?;
        }
        Ok(self.planned(planning))
    }

    /// An empty plan of a run (`dry_run`) that has sent `rotations` already.
    fn planning(&self, dry_run: bool, rotations: u64) -> Planning {
        Planning {
            plan: QueuedPlan {
                queued: 0,
                secret_ids: Vec::new(),
                reasons: BTreeMap::new(),
                idle: 0,
                screened: 0,
                deferred: 0,
                next_due: None,
                continued: false,
                dry_run,
            },
            next_due: None,
            rotations,
            screen: None,
        }
    }

    /// Whether `listing`'s health check may be skipped: its tags name an identity of the
    /// function's own region that SES lists as `SUCCESS` (the screen is loaded on first use,
    /// one `ListEmailIdentities` call per 1,000 identities). Anything else is looked at.
    async fn screened(&self, planning: &mut Planning, listing: &SecretDescription) -> bool {
        let tags = RotatorTags::of(&listing.tags);
        let Some(identity) = tags.screen_as.filter(|i| !i.is_empty()) else {
            return false;
        };
        if planning.screen.is_none() {
            planning.screen = Some(self.load_screen().await);
        }
        planning
            .screen
            .as_ref()
            .is_some_and(|s| s.passes(&identity))
    }

    /// Every identity's `VerificationStatus` in the function's own region.
    async fn load_screen(&self) -> Screen {
        let mut statuses = HashMap::new();
        let mut page: Option<String> = None;
        loop {
            match self
                .engine
                .ports()
                .ses()
                .list_identities(None, page.as_deref())
                .await
            {
                Ok(listed) => {
                    statuses.extend(listed.identities);
                    match listed.next_page {
                        Some(next) => page = Some(next),
                        None => return Screen::Listed(statuses),
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "no ListEmailIdentities screen: every health check is sent");
                    return Screen::Unavailable;
                }
            }
        }
    }

    /// Lists the secrets tagged `key` = `value` page by page from `page`, deciding and
    /// sending each page's work before the next; hands the rest on when time runs short.
    async fn plan_pages(
        &self,
        planning: &mut Planning,
        key: &str,
        value: &str,
        from: Option<&str>,
        skip: &HashSet<String>,
        deadline: Deadline,
    ) -> Result<(), AppError> {
        let options = PlanOptions {
            force: false,
            rotation_interval: self.fleet.rotation_interval,
        };
        let grace = self.engine.policy().retirement().grace;
        let mut page: Option<String> = from.map(str::to_owned);
        loop {
            let listed = self
                .engine
                .list_tagged_page(key, value, page.as_deref())
                .await?;
            let now = self.engine.ports().clock().now();
            let mut items: Vec<WorkItem> = Vec::new();
            for secret in listed.secrets {
                if skip.contains(&secret_key(&secret.arn, &self.fleet.home_region)) {
                    continue;
                }
                let decision = triage(&secret, options, grace, self.fleet.health_check_days, now);
                if decision == Triage::Send(WorkReason::HealthCheck)
                    && self.screened(planning, &secret).await
                {
                    planning.plan.screened += 1;
                    continue;
                }
                let cap = self.fleet.max_rotations_per_run;
                items.extend(planning.decide(secret.arn, decision, cap));
            }
            self.send_planned(planning, &items).await?;
            let Some(next) = listed.next_page else {
                return Ok(());
            };
            let now = self.engine.ports().clock().now();
            if deadline.leaves(now, PLANNER_PAGE_BUDGET, true) {
                page = Some(next);
                continue;
            }
            if !planning.plan.dry_run {
                let rest = PlanContinuation {
                    continue_planning_from: next,
                    rotations_sent: planning.rotations,
                };
                self.queue.send_continuation(&rest).await?;
            }
            planning.plan.continued = true;
            tracing::info!(
                rotations_sent = planning.rotations,
                "the listing goes on in another invocation (a continuation message)"
            );
            return Ok(());
        }
    }

    /// Sends `items` (nothing in a dry run), counting them.
    async fn send_planned(
        &self,
        planning: &mut Planning,
        items: &[WorkItem],
    ) -> Result<(), AppError> {
        if !planning.plan.dry_run && !items.is_empty() {
            planning.plan.queued += self.queue.send(items, Duration::ZERO).await?;
        }
        Ok(())
    }

    /// The plan, logged.
    fn planned(&self, planning: Planning) -> QueuedPlan {
        let mut plan = planning.plan;
        plan.next_due = planning.next_due.map(rfc3339);
        tracing::info!(
            to_work = plan.secret_ids.len(),
            idle = plan.idle,
            screened = plan.screened,
            deferred = plan.deferred,
            queued = plan.queued,
            continued = plan.continued,
            reasons = ?plan.reasons,
            next_due = plan.next_due.as_deref(),
            dry_run = plan.dry_run,
            "planned from the listing: one work message per identity with something due"
        );
        plan
    }
}

/// Serde's `skip_serializing_if` for counts.
fn is_zero(n: &usize) -> bool {
    *n == 0
}
