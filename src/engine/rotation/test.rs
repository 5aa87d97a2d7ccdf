//! `testSecret`: the pending key is of the policy's size, for the current identity, new, and
//! DNS serves its TXT record. Pure reads, so safe to retry. Also home of the DNS verification
//! `finishSecret` repeats right before the switch.

use super::reads::PendingKey;
use super::report::{Outcome, StepReport};
use super::request::RotationRequest;
use crate::engine::Engine;
use crate::engine::dns_check::{DnsCheck, check_all_servers};
use crate::engine::error::{ABANDON_ROTATION, EngineError};
use crate::engine::ports::{Clock, DnsTxtLookup, Ports};
use crate::engine::secret_doc::DnsRecord;

impl<P: Ports> Engine<P> {
    /// `testSecret` (see the module's documentation).
    pub(crate) async fn test_secret(
        &self,
        request: &RotationRequest,
    ) -> Result<StepReport, EngineError> {
        let (_, _, pending) = self.current_and_new_pending(request).await?;
        // Parsing already proved the key is PKCS#1, a size SES takes, and that the stored
        // public key, TXT value and record name belong to it. What is left is policy and DNS.
        let bits = pending.key.key.bits();
        if bits != self.policy().key_bits {
            return Err(EngineError::PendingKeyInvalid {
                secret_id: request.secret_id.clone(),
                reason: format!(
                    "it is {bits} bits but DKIM_KEY_BITS is {}; {ABANDON_ROTATION}",
                    self.policy().key_bits
                ),
            });
        }
        let dns_check = self.verify_published(request, &pending).await?;
        let mut report = StepReport::new(request, Outcome::PendingKeyTested)
            .with_pending(&pending.doc, &pending.key);
        report.dns_check = dns_check;
        Ok(report)
    }

    /// Checks DNS for the pending key's record, retrying while the deadline allows. `None`
    /// when the policy turns verification off.
    pub(crate) async fn verify_published(
        &self,
        request: &RotationRequest,
        pending: &PendingKey,
    ) -> Result<Option<&'static str>, EngineError> {
        if !self.policy().verify_dns {
            return Ok(None);
        }
        let record = DnsRecord::for_key(&pending.doc.identity, &pending.key);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let answer = self
                .ports()
                .lookup()
                .lookup_txt(pending.doc.identity.as_str(), &record.name)
                .await;
            let check = check_all_servers(&answer, pending.key.key.public_key());
            if check.is_published() {
                return Ok(Some(check.kind()));
            }
            if !self.time_for_another_attempt(request.deadline) {
                tracing::warn!(
                    secret_id = %request.secret_id,
                    dns_name = %record.name,
                    outcome = check.kind(),
                    attempts,
                    "DKIM TXT record not verified"
                );
                return Err(dns_not_verified(request, &check, &record));
            }
            self.ports()
                .clock()
                .sleep(self.policy().verify_retry_interval)
                .await;
        }
    }
}

fn dns_not_verified(
    request: &RotationRequest,
    check: &DnsCheck,
    record: &DnsRecord,
) -> EngineError {
    EngineError::DnsNotVerified {
        secret_id: request.secret_id.clone(),
        outcome: check.kind(),
        detail: check.explain(&record.name, &record.presentation),
    }
}
