//! One Secrets Manager rotation step, as the function runs it: the engine's step, then its
//! EMF counts ([`RunCounts::of_step`]), its log line and its notification.

use serde_json::Value;

use super::{Rotator, now_ms};
use crate::engine::ports::{Deadline, Ports};
use crate::engine::rotation::RotationRequest;
use crate::error::AppError;
use crate::metrics::{self, RunCounts};
use crate::notifications::{self, Notifier};
use crate::work_queue::WorkQueue;

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// Runs one step with `deadline`; returns its report as JSON.
    pub async fn rotation(
        &self,
        mut request: RotationRequest,
        deadline: Deadline,
    ) -> Result<Value, AppError> {
        request.deadline = deadline;
        let result = self.engine.run_step(&request).await;
        if let Some(counts) = RunCounts::of_step(&result) {
            let namespace = &self.fleet.metrics_namespace;
            println!("{}", metrics::counts_line(namespace, now_ms(), counts));
        }
        match &result {
            Ok(report) => {
                tracing::info!(
                    step = %request.step,
                    secret_id = %request.secret_id,
                    outcome = ?report.outcome,
                    "rotation step done"
                );
                self.notify(notifications::for_step(report)).await;
            }
            Err(error) => {
                tracing::error!(
                    step = %request.step,
                    secret_id = %request.secret_id,
                    error_type = error.error_type(),
                    error = %error,
                    "rotation step failed"
                );
                self.notify(Some(notifications::for_error(
                    &request.secret_id,
                    None,
                    error,
                )))
                .await;
            }
        }
        Ok(serde_json::to_value(result?).expect("a StepReport always serialises"))
    }
}
