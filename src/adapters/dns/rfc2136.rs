//! [`DnsPublisher`] by RFC 2136 dynamic update signed with TSIG (BIND, Knot, PowerDNS).
//!
//! The TSIG key is never a plain setting: it is read, once and on first use, from the Secrets
//! Manager secret named by `DKIM_DNS_TSIG_SECRET_ID`, whose value is
//! `{"name": "key-name.", "algorithm": "hmac-sha256", "secret": "<base64>"}`.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hickory_proto::op::update_message::{self, UpdateMessage};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::wire::{Signer, send_update};
use crate::engine::key::split_txt_strings;
use crate::engine::ports::{
    Deadline, DnsPublisher, FailureKind, PortError, Publication, SecretStore, TxtRecord, VersionRef,
};
use crate::engine::quoting::quote_prefix;

const SERVICE: &str = "DNS";

fn port_error(operation: &'static str, kind: FailureKind, message: impl ToString) -> PortError {
    PortError {
        service: SERVICE,
        operation,
        kind,
        message: message.to_string(),
    }
}

/// Parses the TSIG secret's JSON. Errors name the field, never the key.
pub fn parse_tsig_secret(text: &str) -> Result<TSigner, String> {
    let json: Value = serde_json::from_str(text).map_err(|_| {
        "the TSIG secret is not JSON; store {\"name\": \"key.\", \"algorithm\": \"hmac-sha256\", \"secret\": \"<base64>\"}".to_owned()
    })?;
    let field = |name: &str| {
        json.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the TSIG secret has no string field `{name}`"))
    };
    let algorithm = match field("algorithm")?
        .to_ascii_lowercase()
        .trim_end_matches('.')
    {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(format!(
                "TSIG algorithm `{}` is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512",
                quote_prefix(other)
            ));
        }
    };
    let key = BASE64
        .decode(field("secret")?)
        .map_err(|_| "the TSIG secret's `secret` is not base64".to_owned())?;
    let name = Name::from_ascii(field("name")?)
        .map_err(|_| "the TSIG secret's `name` is not a DNS name".to_owned())?;
    TSigner::new(key, algorithm, name, 300).map_err(|e| format!("unusable TSIG key: {e}"))
}

/// Publishes by RFC 2136 update to one primary server.
pub struct Rfc2136Publisher<S> {
    server: SocketAddr,
    zone: Option<String>,
    ttl: u32,
    timeout: Duration,
    tsig_secret_id: Option<String>,
    secrets: S,
    signer: OnceCell<Option<Signer>>,
}

impl<S> std::fmt::Debug for Rfc2136Publisher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136Publisher")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("tsig_secret_id", &self.tsig_secret_id)
            .finish_non_exhaustive()
    }
}

impl<S: SecretStore> Rfc2136Publisher<S> {
    /// A publisher updating `zone` (or, when `None`, the identity's own name as the zone) at
    /// `server`, signing with the TSIG key in `tsig_secret_id` read through `secrets`.
    pub fn new(
        server: SocketAddr,
        zone: Option<String>,
        ttl: u32,
        tsig_secret_id: Option<String>,
        secrets: S,
    ) -> Self {
        Self {
            server,
            zone,
            ttl,
            timeout: Duration::from_secs(5),
            tsig_secret_id,
            secrets,
            signer: OnceCell::new(),
        }
    }

    async fn signer(&self) -> Result<Option<Signer>, PortError> {
        self.signer
            .get_or_try_init(|| async {
                let Some(secret_id) = &self.tsig_secret_id else {
                    return Ok(None);
                };
                let stored = self
                    .secrets
                    .read(secret_id, VersionRef::Current)
                    .await?
                    .ok_or_else(|| {
                        port_error(
                            "LoadTsigKey",
                            FailureKind::NotFound,
                            format!("TSIG secret {secret_id} has no AWSCURRENT value"),
                        )
                    })?;
                let signer =
                    parse_tsig_secret(stored.secret_string.expose()).map_err(|reason| {
                        port_error(
                            "LoadTsigKey",
                            FailureKind::InvalidRequest,
                            format!("{secret_id}: {reason}"),
                        )
                    })?;
                Ok(Some(signer))
            })
            .await
            .cloned()
    }

    fn names(&self, record: &TxtRecord<'_>) -> Result<(Name, Name), PortError> {
        let bad = |e| {
            port_error(
                "Update",
                FailureKind::InvalidRequest,
                format!("bad DNS name: {e}"),
            )
        };
        let zone = Name::from_ascii(format!(
            "{}.",
            self.zone
                .as_deref()
                .unwrap_or(record.identity)
                .trim_end_matches('.')
        ))
        .map_err(bad)?;
        let name =
            Name::from_ascii(format!("{}.", record.name.trim_end_matches('.'))).map_err(bad)?;
        if !zone.zone_of(&name) {
            return Err(port_error(
                "Update",
                FailureKind::InvalidRequest,
                format!(
                    "{name} is not inside zone {zone}; set DKIM_DNS_ZONE to the zone that holds it"
                ),
            ));
        }
        Ok((zone, name))
    }

    async fn send(
        &self,
        operation: &'static str,
        update: hickory_proto::op::Message,
    ) -> Result<(), PortError> {
        let signer = self.signer().await?;
        send_update(self.server, update, self.timeout, signer)
            .await
            .map_err(|failure| port_error(operation, FailureKind::Unavailable, failure))
    }
}

impl<S: SecretStore> DnsPublisher for Rfc2136Publisher<S> {
    async fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        _deadline: Deadline,
    ) -> Result<Publication, PortError> {
        let (zone, name) = self.names(&record)?;
        // One update message: delete the TXT RRset, add the one record. Atomic on the server.
        let mut update = update_message::delete_rrset(
            Record::update0(name.clone(), 0, RecordType::TXT),
            zone,
            true,
        );
        let strings = split_txt_strings(record.value)
            .into_iter()
            .map(str::to_owned)
            .collect();
        update.add_update(Record::from_rdata(
            name,
            self.ttl,
            RData::TXT(TXT::new(strings)),
        ));
        self.send("Update", update).await?;
        Ok(Publication::Written)
    }

    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<Publication, PortError> {
        let (zone, name) = self.names(&record)?;
        let update =
            update_message::delete_rrset(Record::update0(name, 0, RecordType::TXT), zone, true);
        self.send("Update", update).await?;
        Ok(Publication::Written)
    }
}
