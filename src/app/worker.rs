//! Queue mode's worker: each SQS record is one identity's work, maintained with the same
//! engine as a scheduled run; the answer names the records that failed.
//!
//! Work that a quota stopped, and records the invocation had no time to start, are not
//! failures: they are sent again as new messages (with a delay for throttled work) and the
//! originals are answered as done, so their receive count never creeps towards the
//! dead-letter queue's `maxReceiveCount`. Only real failures are named in the answer.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use time::OffsetDateTime;

use super::Rotator;
use crate::engine::ports::{Clock, Deadline, Ports};
use crate::engine::schedule::{Action, FleetSummary, MaintainOptions};
use crate::engine::spread::stable_hash;
use crate::notifications::{self, Notifier};
use crate::work_queue::{WorkItem, WorkQueue};

/// How long throttled work waits before it comes back: this plus up to as much again, spread
/// by a stable hash of the secret so a throttled batch does not return all at once.
pub const THROTTLED_DELAY: Duration = Duration::from_secs(60);

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
        for record in event.records {
            let Some(message_id) = record.message_id.clone() else {
                continue; // refused by parse_invocation
            };
            let item = match WorkItem::from_body(record.body.as_deref().unwrap_or_default()) {
                Ok(item) => item,
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
                force: item.force,
                dry_run: false,
                rotation_interval: self.fleet.rotation_interval,
                deadline,
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
                _ => {}
            }
            self.notify(notifications::for_identity(&report)).await;
            reports.push(report);
        }
        self.hand_back(not_started, &mut response).await;
        self.hand_back(throttled, &mut response).await;
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

/// [`THROTTLED_DELAY`] plus a stable share of it for `item`.
fn throttled_delay(item: &WorkItem) -> Duration {
    let spread = stable_hash(&item.secret_id) % THROTTLED_DELAY.as_secs().max(1);
    THROTTLED_DELAY + Duration::from_secs(spread)
}
