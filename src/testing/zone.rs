//! [`MemoryZone`]: one DNS zone in memory, as publisher and as lookup.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::call_log::{CallLog, lock, refused};
use super::clock::ManualClock;
use super::quota::{RequestQuota, TokenBuckets};
use crate::engine::dns_check::{LookupFailure, TxtAnswer};
use crate::engine::ports::{
    Clock, DnsPublisher, DnsTxtLookup, FailureKind, PortError, Publication, ServerAnswer, TxtRecord,
};

#[derive(Debug, Default)]
struct ZoneState {
    records: BTreeMap<String, Vec<String>>,
    /// Names written but not yet served, and from when they are (see
    /// [`MemoryZone::propagating`]).
    served_from: BTreeMap<String, OffsetDateTime>,
    log: CallLog,
    down: bool,
    /// Route 53's account rate, when enforced, on which clock.
    quota: Option<(RequestQuota, ManualClock)>,
    /// What the rate admitted and refused.
    buckets: TokenBuckets,
}

impl ZoneState {
    /// `requests` Route 53 API requests for `operation` under the account's rate, when it is
    /// enforced: admitted, or refused `Throttling` ("Rate exceeded") as Route 53 answers.
    fn admit(&mut self, operation: &'static str, requests: u32) -> Result<(), PortError> {
        let Some((quota, clock)) = &self.quota else {
            return Ok(());
        };
        let (quota, now) = (*quota, clock.now());
        for _ in 0..requests {
            if !self.buckets.take(quota, "account", now) {
                return Err(refused(
                    "Route53",
                    operation,
                    FailureKind::Throttled,
                    "Throttling: Rate exceeded",
                ));
            }
        }
        Ok(())
    }
}

/// How long a written record takes to reach the zone's servers, on which clock.
#[derive(Debug, Clone)]
struct Propagation {
    clock: ManualClock,
    delay: Duration,
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
    propagation: Option<Propagation>,
}

impl MemoryZone {
    /// An empty zone that publishes like `mode` (hint mode writes nothing: a person does).
    pub fn new(mode: PublishMode) -> Self {
        Self {
            state: Arc::default(),
            mode,
            propagation: None,
        }
    }

    /// A zone whose written records reach its servers `delay` after the write, on `clock`
    /// (Route 53 answers a change `PENDING` until its servers have it, typically within 60
    /// seconds): until then a lookup does not see them.
    pub fn propagating(mode: PublishMode, clock: ManualClock, delay: Duration) -> Self {
        Self {
            propagation: Some(Propagation { clock, delay }),
            ..Self::new(mode)
        }
    }

    /// From now on every write is held to Route 53's account rate `quota` on `clock`: an
    /// upsert is one request (`ChangeResourceRecordSets`), a delete two (the record is read
    /// first, as Route 53 deletes only an exact match). RFC 2136 and hint zones have no rate.
    pub fn enforce_route53_quota(&self, quota: RequestQuota, clock: ManualClock) {
        if self.mode == PublishMode::Route53 {
            lock(&self.state).quota = Some((quota, clock));
        }
    }

    /// How many Route 53 requests the account's rate refused so far.
    pub fn throttled(&self) -> u64 {
        lock(&self.state).buckets.throttled
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
    fn writes_records(&self) -> bool {
        self.mode != PublishMode::Hint
    }

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
        state.admit("ChangeResourceRecordSets", 1)?;
        let name = record.name.to_ascii_lowercase();
        let same_value = state
            .records
            .get(&name)
            .is_some_and(|v| v == &[record.value]);
        if let Some(p) = &self.propagation
            && !same_value
        {
            // Writing the same value again changes nothing the servers serve (Route 53 takes
            // the change; its servers already have, or are getting, that value).
            let from = p.clock.now() + p.delay;
            state.served_from.insert(name.clone(), from);
        }
        state.records.insert(name, vec![record.value.to_owned()]);
        Ok(Publication::Written)
    }

    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<Publication, PortError> {
        if self.mode == PublishMode::Hint {
            return Ok(Publication::LeftToOperator);
        }
        let mut state = lock(&self.state);
        state.log.enter("DNS", "Delete")?;
        state.admit("ChangeResourceRecordSets", 2)?;
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
            let name = name.to_ascii_lowercase();
            let now = self.propagation.as_ref().map(|p| p.clock.now());
            let propagating = matches!((now, state.served_from.get(&name)), (Some(now), Some(from)) if now < *from);
            Ok(match state.records.get(&name) {
                Some(records) if !records.is_empty() && !propagating => {
                    TxtAnswer::Records(records.clone())
                }
                _ => TxtAnswer::NoRecords,
            })
        };
        Ok(vec![ServerAnswer { server, answer }])
    }
}
