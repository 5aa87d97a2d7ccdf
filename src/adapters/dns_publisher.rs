//! The publisher chosen by `DKIM_DNS_PUBLISHER`: hint (default), Route 53 or RFC 2136.

use super::rfc2136::Rfc2136Publisher;
use super::route53::Route53Publisher;
use super::secrets_manager::SecretsManagerStore;
use crate::engine::ports::{Deadline, DnsPublisher, PortError, PublishMode, TxtRecord};

/// One of the three publishers, picked at start-up.
#[derive(Debug)]
pub enum ConfiguredPublisher {
    /// Writes nothing: the record is logged and returned for a person to add.
    Hint,
    /// Route 53.
    Route53(Route53Publisher),
    /// RFC 2136 + TSIG.
    Rfc2136(Rfc2136Publisher<SecretsManagerStore>),
}

impl DnsPublisher for ConfiguredPublisher {
    fn mode(&self) -> PublishMode {
        match self {
            Self::Hint => PublishMode::Hint,
            Self::Route53(p) => p.mode(),
            Self::Rfc2136(p) => p.mode(),
        }
    }

    async fn upsert_txt(&self, record: TxtRecord<'_>, deadline: Deadline) -> Result<(), PortError> {
        match self {
            Self::Hint => Ok(()),
            Self::Route53(p) => p.upsert_txt(record, deadline).await,
            Self::Rfc2136(p) => p.upsert_txt(record, deadline).await,
        }
    }

    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<(), PortError> {
        match self {
            Self::Hint => Ok(()),
            Self::Route53(p) => p.delete_txt(record).await,
            Self::Rfc2136(p) => p.delete_txt(record).await,
        }
    }
}
