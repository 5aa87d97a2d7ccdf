//! [`MemoryQueue`]: keeps the work items (and planner continuations) it was sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::call_log::lock;
use crate::engine::ports::PortError;
use crate::work_queue::{PlanContinuation, WorkItem, WorkQueue};

/// A work queue that keeps what it was sent.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    sent: Arc<Mutex<Vec<(WorkItem, Duration)>>>,
    continuations: Arc<Mutex<Vec<PlanContinuation>>>,
}

impl MemoryQueue {
    /// Everything sent so far, in order.
    pub fn sent(&self) -> Vec<WorkItem> {
        lock(&self.sent)
            .iter()
            .map(|(item, _)| item.clone())
            .collect()
    }

    /// Everything sent so far with its delivery delay, in order.
    pub fn sent_with_delays(&self) -> Vec<(WorkItem, Duration)> {
        lock(&self.sent).clone()
    }

    /// Takes the planner continuations sent so far.
    pub fn take_continuations(&self) -> Vec<PlanContinuation> {
        std::mem::take(&mut *lock(&self.continuations))
    }

    /// Takes everything sent so far (the queue is then empty).
    pub fn drain(&self) -> Vec<(WorkItem, Duration)> {
        std::mem::take(&mut *lock(&self.sent))
    }
}

impl WorkQueue for MemoryQueue {
    async fn send(&self, items: &[WorkItem], delay: Duration) -> Result<usize, PortError> {
        lock(&self.sent).extend(items.iter().map(|item| (item.clone(), delay)));
        Ok(items.len())
    }

    async fn send_continuation(&self, next: &PlanContinuation) -> Result<(), PortError> {
        lock(&self.continuations).push(next.clone());
        Ok(())
    }
}
