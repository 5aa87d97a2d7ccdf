//! DNS adapters: the [`DnsPublisher`] ports (hint, Route 53, RFC 2136) and the
//! [`crate::engine::ports::DnsTxtLookup`] that reads records back ([`lookup`], over
//! [`wire`]). [`ConfiguredPublisher`] is the publisher `DKIM_DNS_PUBLISHER` picks.
//!
//! Adding a publisher: one file here implementing [`DnsPublisher`], one variant of
//! [`ConfiguredPublisher`] (and of `config::PublisherSetting`), one line in
//! `assembly::build_engine`. The engine does not change: it asks for a record and is told
//! whether it was written or left to a person.

pub mod hint;
pub mod lookup;
pub mod rfc2136;
pub mod route53;
pub mod wire;

use self::hint::HintPublisher;
use self::rfc2136::Rfc2136Publisher;
use self::route53::Route53Publisher;
use crate::adapters::secrets_manager::SecretsManagerStore;
use crate::engine::ports::{Deadline, DnsPublisher, PortError, Publication, TxtRecord};

/// One of the publishers, picked at start-up.
#[derive(Debug)]
pub enum ConfiguredPublisher {
    /// Writes nothing: the record is logged and returned for a person to add.
    Hint(HintPublisher),
    /// Route 53.
    Route53(Route53Publisher),
    /// RFC 2136 + TSIG.
    Rfc2136(Rfc2136Publisher<SecretsManagerStore>),
}

impl DnsPublisher for ConfiguredPublisher {
    fn writes_records(&self) -> bool {
        !matches!(self, Self::Hint(_))
    }

    async fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        deadline: Deadline,
    ) -> Result<Publication, PortError> {
        match self {
            Self::Hint(p) => p.upsert_txt(record, deadline).await,
            Self::Route53(p) => p.upsert_txt(record, deadline).await,
            Self::Rfc2136(p) => p.upsert_txt(record, deadline).await,
        }
    }

    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<Publication, PortError> {
        match self {
            Self::Hint(p) => p.delete_txt(record).await,
            Self::Route53(p) => p.delete_txt(record).await,
            Self::Rfc2136(p) => p.delete_txt(record).await,
        }
    }
}
