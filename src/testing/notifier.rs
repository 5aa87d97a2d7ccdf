//! [`RecordingNotifier`]: keeps the notifications it was asked to send.

use std::sync::{Arc, Mutex};

use super::call_log::lock;
use crate::engine::ports::PortError;
use crate::notifications::{Notification, Notifier};

/// A notifier that keeps what it was asked to send.
#[derive(Debug, Clone, Default)]
pub struct RecordingNotifier {
    sent: Arc<Mutex<Vec<Notification>>>,
}

impl RecordingNotifier {
    /// What was sent so far.
    pub fn sent(&self) -> Vec<Notification> {
        lock(&self.sent).clone()
    }
}

impl Notifier for RecordingNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), PortError> {
        lock(&self.sent).push(notification.clone());
        Ok(())
    }
}
