//! [`MemoryZone`]: one DNS zone in memory, as publisher and as lookup.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::call_log::{CallLog, lock};
use crate::engine::dns_check::{LookupFailure, TxtAnswer};
use crate::engine::ports::{
    DnsPublisher, DnsTxtLookup, FailureKind, PortError, Publication, ServerAnswer, TxtRecord,
};

#[derive(Debug, Default)]
struct ZoneState {
    records: BTreeMap<String, Vec<String>>,
    log: CallLog,
    down: bool,
}

/// How a [`MemoryZone`] publishes: as a writing publisher (Route 53, RFC 2136), or as the hint
/// publisher (writes nothing; a person adds records with [`MemoryZone::add`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// Writes nothing and answers [`Publication::LeftToOperator`].
    Hint,
    /// Writes, like Route 53.
    Route53,
    /// Writes, like an RFC 2136 server.
    Rfc2136,
}

/// One DNS zone in memory: the publisher writes it, the lookup reads it. Clones share it.
#[derive(Debug, Clone)]
pub struct MemoryZone {
    state: Arc<Mutex<ZoneState>>,
    mode: PublishMode,
}

impl MemoryZone {
    /// An empty zone that publishes like `mode` (hint mode writes nothing: a person does).
    pub fn new(mode: PublishMode) -> Self {
        Self {
            state: Arc::default(),
            mode,
        }
    }

    /// The TXT records at `name` (strings joined).
    pub fn txt(&self, name: &str) -> Vec<String> {
        lock(&self.state)
            .records
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Adds a TXT record at `name` by hand (a person, or another system).
    pub fn add(&self, name: &str, value: &str) {
        lock(&self.state)
            .records
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.to_owned());
    }

    /// Removes every TXT record at `name` by hand.
    pub fn remove(&self, name: &str) {
        lock(&self.state).records.remove(&name.to_ascii_lowercase());
    }

    /// Makes the server fail every query (`SERVFAIL`) while `down`.
    pub fn set_down(&self, down: bool) {
        lock(&self.state).down = down;
    }

    /// Every name with TXT records.
    pub fn names(&self) -> Vec<String> {
        lock(&self.state).records.keys().cloned().collect()
    }

    /// The calls made so far (`DNS.Upsert`, `DNS.Delete`, `DNS.Lookup`).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).log.calls()
    }

    /// Makes the next `operation` (`Upsert`, `Delete`, `Lookup`) fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: FailureKind) {
        lock(&self.state).log.fail_next(operation, kind);
    }
}

impl DnsPublisher for MemoryZone {
    async fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        _deadline: crate::engine::ports::Deadline,
    ) -> Result<Publication, PortError> {
        if self.mode == PublishMode::Hint {
            return Ok(Publication::LeftToOperator);
        }
        let mut state = lock(&self.state);
        state.log.enter("DNS", "Upsert")?;
        state.records.insert(
            record.name.to_ascii_lowercase(),
            vec![record.value.to_owned()],
        );
        Ok(Publication::Written)
    }

    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<Publication, PortError> {
        if self.mode == PublishMode::Hint {
            return Ok(Publication::LeftToOperator);
        }
        let mut state = lock(&self.state);
        state.log.enter("DNS", "Delete")?;
        state.records.remove(&record.name.to_ascii_lowercase());
        Ok(Publication::Written)
    }
}

impl DnsTxtLookup for MemoryZone {
    async fn lookup_txt(
        &self,
        _identity: &str,
        name: &str,
    ) -> Result<Vec<ServerAnswer>, LookupFailure> {
        let mut state = lock(&self.state);
        let server = "memory-zone".to_owned();
        if let Err(error) = state.log.enter("DNS", "Lookup") {
            return Err(LookupFailure {
                server,
                reason: error.message,
            });
        }
        let answer = if state.down {
            Err(LookupFailure {
                server: server.clone(),
                reason: "SERVFAIL".into(),
            })
        } else {
            Ok(match state.records.get(&name.to_ascii_lowercase()) {
                Some(records) if !records.is_empty() => TxtAnswer::Records(records.clone()),
                _ => TxtAnswer::NoRecords,
            })
        };
        Ok(vec![ServerAnswer { server, answer }])
    }
}
