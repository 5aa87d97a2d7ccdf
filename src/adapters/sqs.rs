//! [`WorkQueue`] over Amazon SQS: `SendMessageBatch`, ten messages a call (SQS's limit).

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::port_error;
use crate::engine::ports::{FailureKind, PortError};
use crate::work_queue::{MAX_DELAY, PlanContinuation, WorkItem, WorkQueue};

const SERVICE: &str = "SQS";
/// SQS takes at most ten entries per `SendMessageBatch`.
const BATCH: usize = 10;

/// Sends work to one queue (`DKIM_WORK_QUEUE_URL`).
#[derive(Debug, Clone)]
pub struct SqsWorkQueue {
    client: Client,
    queue_url: String,
}

impl SqsWorkQueue {
    /// A queue at `queue_url`.
    pub fn new(client: Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }
}

impl WorkQueue for SqsWorkQueue {
    async fn send(&self, items: &[WorkItem], delay: Duration) -> Result<usize, PortError> {
        let delay_seconds = delay.min(MAX_DELAY).as_secs() as i32;
        for chunk in items.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(item.to_body())
                        .delay_seconds(delay_seconds)
                        .build()
                        .map_err(|e| PortError {
                            service: SERVICE,
                            operation: "SendMessageBatch",
                            kind: FailureKind::InvalidRequest,
                            message: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| port_error(SERVICE, "SendMessageBatch", e, |_| None))?;
            // A batch can succeed as a call and still refuse entries: that is a failure too.
            if let Some(failed) = out.failed().first() {
                return Err(PortError {
                    service: SERVICE,
                    operation: "SendMessageBatch",
                    kind: if failed.sender_fault() {
                        FailureKind::InvalidRequest
                    } else {
                        FailureKind::Unavailable
                    },
                    message: format!(
                        "{} of {} messages refused: {}",
                        out.failed().len(),
                        chunk.len(),
                        failed.message().unwrap_or(failed.code())
                    ),
                });
            }
        }
        Ok(items.len())
    }

    async fn send_continuation(&self, next: &PlanContinuation) -> Result<(), PortError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(next.to_body())
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "SendMessage", e, |_| None))?;
        Ok(())
    }
}

/// The work queue chosen by the settings.
#[derive(Debug, Clone)]
pub enum ConfiguredWorkQueue {
    /// No queue: scheduled runs maintain every identity in the invocation.
    Off,
    /// SQS.
    Sqs(SqsWorkQueue),
}

impl WorkQueue for ConfiguredWorkQueue {
    async fn send(&self, items: &[WorkItem], delay: Duration) -> Result<usize, PortError> {
        match self {
            Self::Off => Err(PortError {
                service: SERVICE,
                operation: "SendMessageBatch",
                kind: FailureKind::InvalidRequest,
                message: "no work queue is configured (DKIM_WORK_QUEUE_URL)".into(),
            }),
            Self::Sqs(queue) => queue.send(items, delay).await,
        }
    }

    async fn send_continuation(&self, next: &PlanContinuation) -> Result<(), PortError> {
        match self {
            Self::Off => Err(PortError {
                service: SERVICE,
                operation: "SendMessage",
                kind: FailureKind::InvalidRequest,
                message: "no work queue is configured (DKIM_WORK_QUEUE_URL)".into(),
            }),
            Self::Sqs(queue) => queue.send_continuation(next).await,
        }
    }
}
