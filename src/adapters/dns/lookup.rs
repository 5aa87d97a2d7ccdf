//! [`DnsTxtLookup`] over real DNS: the configured servers (`DKIM_DNS_SERVERS`), or else the
//! zone's authoritative name servers, found with an NS lookup through the system resolver.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use super::wire::query_txt;
use crate::engine::ports::{DnsTxtLookup, LookupFailure, ServerAnswer};

/// Where TXT records are read from.
#[derive(Debug, Clone)]
pub enum LookupServers {
    /// Ask exactly these servers.
    Fixed(Vec<SocketAddr>),
    /// Find the zone's NS records and ask each of them on this port (53 in production).
    Authoritative {
        /// The port the authoritative servers answer on.
        port: u16,
    },
}

/// Reads TXT records with hickory.
#[derive(Debug, Clone)]
pub struct HickoryTxtLookup {
    servers: LookupServers,
    timeout: Duration,
}

impl HickoryTxtLookup {
    /// A lookup asking `servers`, each query bounded by `timeout`.
    pub fn new(servers: LookupServers, timeout: Duration) -> Self {
        Self { servers, timeout }
    }

    /// The zone's authoritative servers: the NS set of the closest enclosing name that has one.
    async fn authoritative(
        &self,
        identity: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, LookupFailure> {
        let discovery = |reason: String| LookupFailure {
            server: "NS discovery".into(),
            reason,
        };
        let resolver = TokioResolver::builder_tokio()
            .map_err(|e| {
                discovery(format!(
                    "cannot read the system resolver configuration: {e}"
                ))
            })?
            .build()
            .map_err(|e| discovery(format!("cannot build the system resolver: {e}")))?;
        let labels: Vec<&str> = identity.split('.').collect();
        for start in 0..labels.len().saturating_sub(1) {
            let zone = labels[start..].join(".");
            let Ok(ns) = resolver.ns_lookup(format!("{zone}.")).await else {
                continue;
            };
            let hosts: Vec<String> = ns
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NS(ns) => Some(ns.0.to_ascii()),
                    _ => None,
                })
                .collect();
            if hosts.is_empty() {
                continue;
            }
            let mut addresses = Vec::new();
            for host in &hosts {
                if let Ok(ips) = resolver.lookup_ip(host.as_str()).await {
                    addresses.extend(ips.iter().map(|ip| SocketAddr::new(ip, port)));
                }
            }
            if addresses.is_empty() {
                return Err(discovery(format!(
                    "the name servers of {zone} ({}) have no addresses",
                    hosts.join(", ")
                )));
            }
            return Ok(addresses);
        }
        Err(discovery(format!(
            "no NS records found for {identity} or its parents; set DKIM_DNS_SERVERS=ip:port,..."
        )))
    }
}

impl DnsTxtLookup for HickoryTxtLookup {
    async fn lookup_txt(
        &self,
        identity: &str,
        name: &str,
    ) -> Result<Vec<ServerAnswer>, LookupFailure> {
        let servers = match &self.servers {
            LookupServers::Fixed(servers) => servers.clone(),
            LookupServers::Authoritative { port } => self.authoritative(identity, *port).await?,
        };
        let mut answers = Vec::with_capacity(servers.len());
        for server in servers {
            answers.push(ServerAnswer {
                server: server.to_string(),
                answer: query_txt(server, name, self.timeout).await,
            });
        }
        Ok(answers)
    }
}
