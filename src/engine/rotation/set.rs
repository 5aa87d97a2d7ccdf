//! `setSecret`: publishes the pending key's TXT record through the DNS publisher, which says
//! whether it wrote the record or left it to a person (hint mode), after the guards: the
//! pending key's identity is allowed and is `AWSCURRENT`'s, and the key and selector are new
//! (a pending version written by hand for another identity publishes nothing). Safe to retry:
//! the same record is written again.

use super::reads::{check_pending_is_new, check_same_identity};
use super::report::{Outcome, StepReport};
use super::request::RotationRequest;
use crate::engine::Engine;
use crate::engine::error::EngineError;
use crate::engine::ports::{DnsPublisher, Ports, Publication, TxtRecord};
use crate::engine::secret_doc::DnsRecord;

impl<P: Ports> Engine<P> {
    /// `setSecret` (see the module's documentation).
    pub(crate) async fn set_secret(
        &self,
        request: &RotationRequest,
    ) -> Result<StepReport, EngineError> {
        let pending = self.require_pending(request).await?;
        self.policy()
            .allowed_identities
            .check(&pending.doc.identity)
            .map_err(EngineError::IdentityNotAllowed)?;
        let current = self.read_current(&request.secret_id).await?;
        check_same_identity(request, &current, &pending)?;
        check_pending_is_new(request, &current, &pending)?;
        let record = DnsRecord::for_key(&pending.doc.identity, &pending.key);
        let published = self
            .ports()
            .dns()
            .upsert_txt(
                TxtRecord {
                    secret_id: &request.secret_id,
                    identity: pending.doc.identity.as_str(),
                    name: &record.name,
                    value: &record.value,
                    secret_fields: &pending.doc.extra,
                },
                request.deadline,
            )
            .await
            .map_err(|source| EngineError::DnsPublishFailed {
                secret_id: request.secret_id.clone(),
                name: record.name.clone(),
                source,
            })?;
        let outcome = match published {
            Publication::Written => {
                tracing::info!(
                    secret_id = %request.secret_id,
                    dns_name = %record.name,
                    "published DKIM TXT record"
                );
                Outcome::RecordPublished
            }
            Publication::LeftToOperator => Outcome::RecordHintPublished,
        };
        Ok(StepReport::new(request, outcome).with_pending(&pending.doc, &pending.key))
    }
}
