//! The hint publisher: writes nothing. It logs the record a person must add (or may now
//! remove) as one structured line, and answers [`Publication::LeftToOperator`], so the step
//! report and the notification carry the record to a person.

use crate::engine::key::txt_presentation;
use crate::engine::ports::{Deadline, DnsPublisher, PortError, Publication, TxtRecord};
use crate::engine::retirement::REVOKED_VALUE;

/// Tells a person what to publish; see the module's documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct HintPublisher;

/// The selector of a `<selector>._domainkey.<domain>` name.
fn selector_of(name: &str) -> &str {
    name.split('.').next().unwrap_or_default()
}

impl DnsPublisher for HintPublisher {
    fn writes_records(&self) -> bool {
        false
    }

    async fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        _deadline: Deadline,
    ) -> Result<Publication, PortError> {
        if record.value == REVOKED_VALUE {
            tracing::info!(
                secret_id = record.secret_id,
                dns_name = record.name,
                selector = selector_of(record.name),
                action = "replace its value with `v=DKIM1; k=rsa; p=`",
                "the previous DKIM selector's grace period is over: you may now retire its TXT record"
            );
        } else {
            tracing::info!(
                secret_id = record.secret_id,
                identity = record.identity,
                selector = selector_of(record.name),
                dns_name = record.name,
                dns_type = "TXT",
                dns_value = record.value,
                dns_presentation = %txt_presentation(record.value),
                "publish this DKIM TXT record"
            );
        }
        Ok(Publication::LeftToOperator)
    }

    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<Publication, PortError> {
        tracing::info!(
            secret_id = record.secret_id,
            dns_name = record.name,
            selector = selector_of(record.name),
            action = "remove it",
            "the previous DKIM selector's grace period is over: you may now retire its TXT record"
        );
        Ok(Publication::LeftToOperator)
    }
}
