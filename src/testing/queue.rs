//! [`MemoryQueue`]: keeps the work items it was sent.

use std::sync::{Arc, Mutex};

use super::call_log::lock;
use crate::engine::ports::PortError;
use crate::work_queue::{WorkItem, WorkQueue};

/// A work queue that keeps what it was sent.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    sent: Arc<Mutex<Vec<WorkItem>>>,
}

impl MemoryQueue {
    /// Everything sent so far, in order.
    pub fn sent(&self) -> Vec<WorkItem> {
        lock(&self.sent).clone()
    }
}

impl WorkQueue for MemoryQueue {
    async fn send(&self, items: &[WorkItem]) -> Result<usize, PortError> {
        lock(&self.sent).extend_from_slice(items);
        Ok(items.len())
    }
}
