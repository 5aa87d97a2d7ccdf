//! A scheduled run over many secrets in one invocation (no queue): the engine's fleet runner
//! over the gathered secrets, then one notification per secret.

use super::{Rotator, ScheduledRun};
use crate::engine::ports::{Deadline, Ports};
use crate::engine::schedule::{FleetSummary, MaintainOptions};
use crate::error::AppError;
use crate::notifications::{self, Notifier};
use crate::work_queue::WorkQueue;

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// Runs a scheduled run, sends its notifications and returns its summary (the Lambda
    /// handler also prints its metrics).
    pub async fn scheduled(
        &self,
        run: &ScheduledRun,
        deadline: Deadline,
    ) -> Result<FleetSummary, AppError> {
        let secret_ids = self.managed_secrets(run).await?;
        tracing::info!(
            secrets = secret_ids.len(),
            deadline = ?deadline.instant(),
            dry_run = run.dry_run,
            "scheduled run starts"
        );
        let options = MaintainOptions {
            force: run.force,
            dry_run: run.dry_run,
            rotation_interval: self.fleet.rotation_interval,
            deadline,
            record_published: false,
        };
        let summary = self
            .engine
            .maintain_fleet(
                &secret_ids,
                &options,
                self.fleet.max_concurrency,
                self.fleet.identity_budget,
            )
            .await;
        for report in &summary.identities {
            self.notify(notifications::for_identity(report)).await;
        }
        tracing::info!(counts = ?summary.counts, secrets = secret_ids.len(), dry_run = run.dry_run, "scheduled run done");
        Ok(summary)
    }
}
