//! Queue mode's worker: each SQS record is one identity's work, maintained with the same
//! engine as a scheduled run; the answer names the records that failed.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

use super::Rotator;
use crate::engine::ports::{Deadline, Ports};
use crate::engine::schedule::{Action, FleetSummary, MaintainOptions};
use crate::notifications::{self, Notifier};
use crate::work_queue::{WorkItem, WorkQueue};

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// The worker: each SQS record is one identity's work, maintained with the same engine as
    /// a scheduled run. Answers with the records that failed, so SQS retries only those; a
    /// record whose body is not a work item fails with a clear log line (the queue's redrive
    /// policy moves it to the dead-letter queue after `maxReceiveCount`). Work already done is
    /// a no-op: the plan finds nothing to do.
    pub async fn work(&self, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let mut reports = Vec::new();
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
            let options = MaintainOptions {
                force: item.force,
                dry_run: false,
                rotation_interval: self.fleet.rotation_interval,
                deadline,
            };
            let report = self.engine.maintain(&item.secret_id, &options).await;
            if report.action == Action::Failed {
                tracing::error!(
                    message_id,
                    secret_id = %item.secret_id,
                    error_type = report.error_type,
                    error = report.error.as_deref(),
                    "work item failed; SQS delivers it again"
                );
                response.add_failure(message_id);
            }
            self.notify(notifications::for_identity(&report)).await;
            reports.push(report);
        }
        let summary = FleetSummary::of(reports);
        self.print_metrics(&summary);
        tracing::info!(counts = ?summary.counts, failed = response.batch_item_failures.len(), "work batch done");
        response
    }
}
