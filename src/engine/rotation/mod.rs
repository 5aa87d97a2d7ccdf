//! The four Secrets Manager rotation steps, one file per step, over the engine's ports.
//!
//! Every step starts with the same preamble (`DescribeSecret`, in this file): rotation must be
//! on, the event's token must be a staged version; a token that is already `AWSCURRENT` means
//! the step has nothing left to do; anything else not `AWSPENDING` is an error. Each step is
//! idempotent, so Secrets Manager may retry any of them:
//!
//! | step | file | does | on retry |
//! |---|---|---|---|
//! | `createSecret` | [`create`] | new key + selector into `AWSPENDING` | finds the pending key, makes no second one |
//! | `setSecret` | [`set`] | publishes the TXT record (the publisher says whether it wrote it or left it to a person) | same record again |
//! | `testSecret` | [`test`] | checks the pending key, then that DNS serves its TXT record | same checks |
//! | `finishSecret` | [`finish`] | re-verifies DNS, points SES at the new selector, confirms SES's status (rolls back on `FAILED`), then moves `AWSCURRENT` | SES already switched: only the stage move |
//!
//! The reads and checks the steps share (the pending key, the current key, "same identity",
//! "a new key") are in [`reads`]; the request and report types in [`request`] and [`report`].
//!
//! Every step reads what it needs. When one invocation runs all four (a scheduled rotation),
//! the ports are wrapped in [`crate::engine::read_cache`], which answers repeated reads.
//!
//! Mail never breaks: SES is switched only to a selector whose TXT record DNS serves, and the
//! previous selector's record stays published (see [`crate::engine::retirement`]).

pub mod create;
pub mod finish;
pub mod reads;
pub mod report;
pub mod request;
pub mod set;
pub mod test;

pub use self::report::{Outcome, StepReport};
pub use self::request::{RotationRequest, Step, Trigger};

use crate::engine::Engine;
use crate::engine::error::EngineError;
use crate::engine::ports::{Ports, STAGE_CURRENT, STAGE_PENDING, SecretDescription, SecretStore};

impl<P: Ports> Engine<P> {
    /// Runs one rotation step.
    pub async fn run_step(&self, request: &RotationRequest) -> Result<StepReport, EngineError> {
        let description = self.store().describe(&request.secret_id).await?;
        if self.check_staging(request, &description)? {
            // A finishSecret that died after moving AWSCURRENT may have left AWSPENDING on
            // the same version: take it off so the next rotation can start.
            if request.step == Step::FinishSecret {
                self.clear_pending_left_on_current(&request.secret_id, &description)
                    .await?;
            }
            return Ok(StepReport::new(request, Outcome::AlreadyCurrent));
        }
        match request.step {
            Step::CreateSecret => self.create_secret(request, &description).await,
            Step::SetSecret => self.set_secret(request).await,
            Step::TestSecret => self.test_secret(request).await,
            Step::FinishSecret => self.finish_secret(request, &description).await,
        }
    }

    /// A run that died after moving `AWSCURRENT` and before taking `AWSPENDING` off that
    /// version leaves both labels on it (harmless to `RotateSecret`, but not the state an
    /// uninterrupted rotation ends in): take `AWSPENDING` off.
    pub(crate) async fn clear_pending_left_on_current(
        &self,
        secret_id: &str,
        description: &SecretDescription,
    ) -> Result<(), EngineError> {
        let leftover = description.versions.iter().find(|(_, stages)| {
            stages.iter().any(|s| s == STAGE_CURRENT) && stages.iter().any(|s| s == STAGE_PENDING)
        });
        let Some((version, _)) = leftover else {
            return Ok(());
        };
        self.store().clear_pending(secret_id, version).await?;
        tracing::info!(
            secret_id,
            version,
            "took a leftover AWSPENDING off the current version"
        );
        Ok(())
    }

    /// The preamble every step shares; `Ok(true)` means the token is already current.
    fn check_staging(
        &self,
        request: &RotationRequest,
        description: &SecretDescription,
    ) -> Result<bool, EngineError> {
        let scheduled = request.trigger == Trigger::Schedule;
        if !scheduled && !description.rotation_enabled {
            return Err(EngineError::RotationNotEnabled {
                secret_id: request.secret_id.clone(),
            });
        }
        let Some(stages) = description.versions.get(&request.token) else {
            // A scheduled rotation's own token is staged by its createSecret.
            if scheduled && request.step == Step::CreateSecret {
                return Ok(false);
            }
            return Err(EngineError::TokenNotStaged {
                secret_id: request.secret_id.clone(),
                token: request.token.clone(),
            });
        };
        if stages.iter().any(|s| s == STAGE_CURRENT) {
            return Ok(true);
        }
        if !stages.iter().any(|s| s == STAGE_PENDING) {
            return Err(EngineError::TokenNotPending {
                secret_id: request.secret_id.clone(),
                token: request.token.clone(),
                stages: if stages.is_empty() {
                    "none".into()
                } else {
                    stages.join(",")
                },
            });
        }
        Ok(false)
    }
}
