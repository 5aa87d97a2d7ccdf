//! Queue mode's worker: each SQS record is one identity's work, maintained with the same
//! engine as a scheduled run; the answer names the records that failed.
//!
//! Work that a quota stopped, and records the invocation had no time to start, are not
//! failures: they are sent again as new messages (with a delay for throttled work) and the
//! originals are answered as done, so their receive count never creeps towards the
//! dead-letter queue's `maxReceiveCount`. Only real failures are named in the answer.
//!
//! No record waits inside the invocation: a worker publishes a new key's record, looks once,
//! and when DNS does not serve it yet (Route 53 takes up to a minute) sends the identity back
//! with a delay ([`DNS_RECHECK_DELAY`], doubling); the later visit only looks, then switches.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use time::OffsetDateTime;

use super::Rotator;
use crate::engine::ports::{Clock, Deadline, DnsPublisher, Ports};
use crate::engine::schedule::{Action, FleetSummary, MaintainOptions};
use crate::engine::spread::stable_hash;
use crate::notifications::{self, Notifier};
use crate::work_queue::{MAX_DELAY, QueueMessage, WorkItem, WorkQueue};

/// How long throttled work waits before it comes back: this plus up to as much again, spread
/// by a stable hash of the secret so a throttled batch does not return all at once.
pub const THROTTLED_DELAY: Duration = Duration::from_secs(60);

/// The first look again at a record a worker published: Route 53 usually has a change on all
/// its servers within 60 seconds. Each later look waits twice as long, up to SQS's 15 minutes.
pub const DNS_RECHECK_DELAY: Duration = Duration::from_secs(30);

/// Looks again before an unseen record is left to the planner's next run (which publishes it
/// again): 30 s, 1, 2, 4, 8 min, then 15 min thrice, about an hour in all.
pub const MAX_DNS_RECHECKS: u32 = 8;

/// Records to send again, and after how long.
struct HandBack {
    delay_of: fn(&WorkItem) -> Duration,
    records: Vec<(String, WorkItem)>,
}

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// The worker: each SQS record is one identity's work, maintained with the same engine as
    /// a scheduled run. Answers with the records that failed, so SQS retries only those; a
    /// record whose body is not a work item fails with a clear log line (the queue's redrive
    /// policy moves it to the dead-letter queue after `maxReceiveCount`). Work already done is
    /// a no-op: the plan finds nothing to do. A record is not started with less than
    /// `DKIM_IDENTITY_BUDGET_SECONDS` left before the deadline.
    pub async fn work(&self, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let mut reports = Vec::new();
        let mut not_started = HandBack {
            delay_of: |_| Duration::ZERO,
            records: Vec::new(),
        };
        let mut throttled = HandBack {
            delay_of: throttled_delay,
            records: Vec::new(),
        };
        let mut propagating = HandBack {
            delay_of: dns_recheck_delay,
            records: Vec::new(),
        };
        let writes_records = self.engine.ports().dns().writes_records();
        for record in event.records {
            let Some(message_id) = record.message_id.clone() else {
                continue; // refused by parse_invocation
            };
            let item = match QueueMessage::from_body(record.body.as_deref().unwrap_or_default()) {
                Ok(QueueMessage::Identity(item)) => item,
                Ok(QueueMessage::Planning(rest)) => {
                    if let Err(error) = self.continue_plan(&rest, deadline).await {
                        tracing::error!(
                            message_id,
                            %error,
                            "the planner's continuation failed; SQS delivers it again"
                        );
                        response.add_failure(message_id);
                    }
                    continue;
                }
                Err(reason) => {
                    tracing::error!(
                        message_id,
                        %reason,
                        "poison message: failed; after maxReceiveCount deliveries the queue moves it to the dead-letter queue"
                    );
                    response.add_failure(message_id);
                    continue;
                }
            };
            if !self.time_for_one_more(deadline) {
                not_started.records.push((message_id, item));
                continue;
            }
            let options = MaintainOptions {
                // A message never forces (see `WorkItem`): forcing is an operator's act.
                force: false,
                dry_run: false,
                rotation_interval: self.fleet.rotation_interval,
                // One look at DNS, no INSYNC poll: a record not served yet comes back later.
                deadline: deadline.without_waiting(),
                record_published: item.dns_rechecks > 0,
            };
            let report = self.engine.maintain(&item.secret_id, &options).await;
            match report.action {
                Action::Failed => {
                    tracing::error!(
                        message_id,
                        secret_id = %item.secret_id,
                        error_type = report.error_type,
                        error = report.error.as_deref(),
                        "work item failed; SQS delivers it again"
                    );
                    response.add_failure(message_id);
                }
                Action::Throttled => {
                    tracing::info!(
                        message_id,
                        secret_id = %item.secret_id,
                        error = report.error.as_deref(),
                        "work item throttled; it is sent again with a delay and resumes where it stopped"
                    );
                    throttled.records.push((message_id, item));
                }
                Action::WaitingForDns if writes_records && item.dns_rechecks < MAX_DNS_RECHECKS => {
                    tracing::info!(
                        message_id,
                        secret_id = %item.secret_id,
                        rechecks = item.dns_rechecks,
                        "record published, not served yet; the work item comes back to look again"
                    );
                    let again = WorkItem {
                        dns_rechecks: item.dns_rechecks + 1,
                        ..item
                    };
                    propagating.records.push((message_id, again));
                    reports.push(report);
                    continue; // not yet news for a person: no notification
                }
                _ => {}
            }
            self.notify(notifications::for_identity(&report)).await;
            reports.push(report);
        }
        self.hand_back(not_started, &mut response).await;
        self.hand_back(throttled, &mut response).await;
        self.hand_back(propagating, &mut response).await;
        let summary = FleetSummary::of(reports);
        self.print_metrics(&summary);
        tracing::info!(counts = ?summary.counts, failed = response.batch_item_failures.len(), "work batch done");
        response
    }

    /// Whether a record may start: no deadline, or more than the identity budget left.
    fn time_for_one_more(&self, deadline: Deadline) -> bool {
        let now: OffsetDateTime = self.engine.ports().clock().now();
        deadline.leaves(now, self.fleet.identity_budget, true)
    }

    /// Sends `back`'s records again as new messages, one `SendMessageBatch` (of up to ten)
    /// per delay; the records of a send that fails are named as failed instead, so SQS
    /// delivers their originals again.
    async fn hand_back(&self, back: HandBack, response: &mut SqsBatchResponse) {
        let mut by_delay: BTreeMap<Duration, Vec<(String, WorkItem)>> = BTreeMap::new();
        for (message_id, item) in back.records {
            by_delay
                .entry((back.delay_of)(&item))
                .or_default()
                .push((message_id, item));
        }
        for (delay, records) in by_delay {
            let items: Vec<WorkItem> = records.iter().map(|(_, item)| item.clone()).collect();
            if let Err(error) = self.queue.send(&items, delay).await {
                for (message_id, item) in records {
                    tracing::warn!(
                        message_id,
                        secret_id = %item.secret_id,
                        %error,
                        "could not send the work item again; SQS delivers the original again"
                    );
                    response.add_failure(message_id);
                }
            }
        }
    }
}

/// [`DNS_RECHECK_DELAY`] doubled for each look already made (`item.dns_rechecks` counts
/// this one), at most SQS's [`MAX_DELAY`].
fn dns_recheck_delay(item: &WorkItem) -> Duration {
    let doublings = item.dns_rechecks.saturating_sub(1).min(10);
    (DNS_RECHECK_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

/// [`THROTTLED_DELAY`] plus a stable share of it for `item`.
fn throttled_delay(item: &WorkItem) -> Duration {
    let spread = stable_hash(&item.secret_id) % THROTTLED_DELAY.as_secs().max(1);
    THROTTLED_DELAY + Duration::from_secs(spread)
}
