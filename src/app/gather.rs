//! Which secrets a scheduled run manages: the payload's, else `DKIM_SECRET_IDS` plus every
//! secret tagged `DKIM_SECRET_TAG`; each once.

use std::collections::HashSet;

use super::{Rotator, ScheduledRun};
use crate::engine::ports::Ports;
use crate::error::AppError;
use crate::notifications::Notifier;
use crate::work_queue::WorkQueue;

/// The error of a run with nothing to manage.
pub(crate) fn nothing_to_manage() -> AppError {
    AppError::InvalidSetting {
        name: "DKIM_SECRET_IDS",
        reason: "a scheduled run has no secrets to manage: set DKIM_SECRET_IDS (comma list) and/or DKIM_SECRET_TAG (key=value), or pass secret_ids".into(),
    }
}

/// `items` with each secret once (the first seen is kept), in order. The one dedupe.
pub(crate) fn each_secret_once<T>(items: Vec<T>, secret_id: impl Fn(&T) -> &str) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(secret_id(item).to_owned()))
        .collect()
}

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// The secrets a scheduled run manages: the payload's, else `DKIM_SECRET_IDS` plus every
    /// secret tagged `DKIM_SECRET_TAG`, without duplicates.
    pub async fn managed_secrets(&self, run: &ScheduledRun) -> Result<Vec<String>, AppError> {
        if let Some(ids) = &run.secret_ids {
            return Ok(each_secret_once(ids.clone(), String::as_str));
        }
        let mut ids = self.fleet.secret_ids.clone();
        if let Some((key, value)) = &self.fleet.secret_tag {
            let listed = self.engine.list_tagged(key, value).await?;
            ids.extend(listed.into_iter().map(|secret| secret.arn));
        }
        if ids.is_empty() {
            return Err(nothing_to_manage());
        }
        Ok(each_secret_once(ids, String::as_str))
    }
}
