//! What every fake shares: the [`CallLog`] of calls received and failures queued.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::engine::ports::{FailureKind, PortError};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn refused(
    service: &'static str,
    operation: &'static str,
    kind: FailureKind,
    message: &str,
) -> PortError {
    PortError {
        service,
        operation,
        kind,
        message: message.to_owned(),
    }
}

/// The calls a fake received, in order (`Service.Operation`), and the failures queued for it.
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Vec<String>,
    failures: HashMap<&'static str, VecDeque<FailureKind>>,
}

impl CallLog {
    /// The calls made so far.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.clone()
    }

    /// Queues a failure of kind `kind` for the next call of `operation`.
    pub(crate) fn fail_next(&mut self, operation: &'static str, kind: FailureKind) {
        self.failures.entry(operation).or_default().push_back(kind);
    }

    /// Records `operation`; returns the queued failure for it, if any.
    pub(crate) fn enter(
        &mut self,
        service: &'static str,
        operation: &'static str,
    ) -> Result<(), PortError> {
        self.calls.push(format!("{service}.{operation}"));
        match self
            .failures
            .get_mut(operation)
            .and_then(VecDeque::pop_front)
        {
            Some(kind) => Err(refused(service, operation, kind, "injected failure")),
            None => Ok(()),
        }
    }
}
