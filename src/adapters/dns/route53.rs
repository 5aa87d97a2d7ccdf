//! [`DnsPublisher`] over Amazon Route 53.
//!
//! The zone is the secret's `hosted_zone_id`, else `DKIM_HOSTED_ZONE_ID`, else the public
//! hosted zone with the longest name that contains the record (`ListHostedZonesByName`). The
//! TXT record is `UPSERT`ed as ONE record of ≤255-char strings, then the change is polled until
//! `INSYNC`, bounded by the invocation's deadline, when the invocation may wait at all (a queue
//! worker does not: the DNS check of a later visit decides).
//!
//! Every request first takes a turn of this process's share of the account's Route 53 rate
//! ([`Route53Publisher::paced_by`]); `Throttling` and `PriorRequestNotComplete` (the zone is
//! still busy with an earlier request) are [`FailureKind::Throttled`]: the work comes back.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use time::OffsetDateTime;

use crate::adapters::port_error;
use crate::engine::key::txt_presentation;
use crate::engine::pacing::Pacer;
use crate::engine::ports::{
    Deadline, DnsPublisher, FailureKind, PortError, Publication, TxtRecord,
};

const SERVICE: &str = "Route53";

/// Route 53 through the SDK.
#[derive(Debug, Clone)]
pub struct Route53Publisher {
    client: Client,
    default_zone_id: Option<String>,
    ttl: i64,
    poll_interval: Duration,
    /// This process's share of the account's Route 53 request rate, when paced.
    pacer: Option<Arc<Pacer>>,
}

/// The pacer lane of Route 53: one budget for the whole account (every zone, every region).
const ROUTE53_LANE: &str = "route53";

fn invalid(operation: &'static str, message: String) -> PortError {
    PortError {
        service: SERVICE,
        operation,
        kind: FailureKind::InvalidRequest,
        message,
    }
}

/// The zone an operator pinned in the secret (its `hosted_zone_id` field), if any.
fn pinned_zone<'a>(record: &TxtRecord<'a>) -> Option<&'a str> {
    record
        .secret_fields
        .get("hosted_zone_id")
        .and_then(|v| v.as_str())
}

impl Route53Publisher {
    /// A publisher; `default_zone_id` is `DKIM_HOSTED_ZONE_ID`.
    pub fn new(client: Client, default_zone_id: Option<String>, ttl: u32) -> Self {
        Self {
            client,
            default_zone_id,
            ttl: i64::from(ttl),
            poll_interval: Duration::from_secs(2),
            pacer: None,
        }
    }

    /// The same publisher taking a `pacer` turn before every Route 53 request (Route 53
    /// throttles the account as a whole: `Throttling`, "Rate exceeded").
    pub fn paced_by(self, pacer: Arc<Pacer>) -> Self {
        Self {
            pacer: Some(pacer),
            ..self
        }
    }

    /// Waits for this process's next Route 53 turn; a turn further away than the pacer's
    /// longest wait is refused as [`FailureKind::Throttled`] (the work comes back later).
    async fn turn(&self, operation: &'static str) -> Result<(), PortError> {
        let Some(pacer) = &self.pacer else {
            return Ok(());
        };
        match pacer.reserve(ROUTE53_LANE, OffsetDateTime::now_utc()) {
            Ok(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
            Err(wait) => Err(PortError {
                service: SERVICE,
                operation,
                kind: FailureKind::Throttled,
                message: format!(
                    "this process's next Route 53 turn is {:.1} s away, past DKIM_IDENTITY_BUDGET_SECONDS; not sent (DKIM_ROUTE53_REQUESTS_PER_SECOND paces it)",
                    wait.as_secs_f64()
                ),
            }),
        }
    }

    /// The same publisher polling `GetChange` every `interval` (2 s by default).
    pub fn polling_every(self, interval: Duration) -> Self {
        Self {
            poll_interval: interval,
            ..self
        }
    }

    /// The hosted zone to change for `record`.
    async fn zone_for(&self, record: &TxtRecord<'_>) -> Result<String, PortError> {
        if let Some(zone) = pinned_zone(record).or(self.default_zone_id.as_deref()) {
            return Ok(zone.trim_start_matches("/hostedzone/").to_owned());
        }
        let name = format!(
            "{}.",
            record.name.trim_end_matches('.').to_ascii_lowercase()
        );
        let mut best: Vec<(String, String, bool)> = Vec::new();
        let mut marker: Option<(String, Option<String>)> = None;
        loop {
            let mut request = self.client.list_hosted_zones_by_name();
            if let Some((dns_name, zone_id)) = &marker {
                request = request
                    .dns_name(dns_name)
                    .set_hosted_zone_id(zone_id.clone());
            }
            self.turn("ListHostedZonesByName").await?;
            let page = request
                .send()
                .await
                .map_err(|e| port_error(SERVICE, "ListHostedZonesByName", e, |_| None))?;
            for zone in page.hosted_zones() {
                let zone_name = zone.name().to_ascii_lowercase();
                if name == zone_name || name.ends_with(&format!(".{zone_name}")) {
                    let private = zone.config().is_some_and(|c| c.private_zone());
                    best.push((zone_name, zone.id().to_owned(), private));
                }
            }
            if !page.is_truncated() {
                break;
            }
            marker = Some((
                page.next_dns_name().unwrap_or_default().to_owned(),
                page.next_hosted_zone_id().map(str::to_owned),
            ));
        }
        let longest = best.iter().map(|(n, _, _)| n.len()).max().ok_or_else(|| {
            invalid(
                "ListHostedZonesByName",
                format!("no hosted zone contains {name}; create one, or set hosted_zone_id in the secret or DKIM_HOSTED_ZONE_ID"),
            )
        })?;
        let matches: Vec<&(String, String, bool)> =
            best.iter().filter(|(n, _, _)| n.len() == longest).collect();
        if matches.len() > 1 {
            return Err(invalid(
                "ListHostedZonesByName",
                format!(
                    "{} hosted zones are named {}; pick one with hosted_zone_id in the secret or DKIM_HOSTED_ZONE_ID",
                    matches.len(),
                    matches[0].0
                ),
            ));
        }
        let (zone_name, zone_id, private) = matches[0];
        if *private {
            return Err(invalid(
                "ListHostedZonesByName",
                format!(
                    "the closest zone {zone_name} ({zone_id}) is private, so the world cannot see DKIM records in it; set hosted_zone_id to the public zone"
                ),
            ));
        }
        Ok(zone_id.trim_start_matches("/hostedzone/").to_owned())
    }

    async fn change(
        &self,
        action: ChangeAction,
        record: TxtRecord<'_>,
        value: &str,
        deadline: Deadline,
    ) -> Result<(), PortError> {
        let zone_id = self.zone_for(&record).await?;
        let set = ResourceRecordSet::builder()
            .name(record.name)
            .r#type(RrType::Txt)
            .ttl(self.ttl)
            .resource_records(
                ResourceRecord::builder()
                    .value(txt_presentation(value))
                    .build()
                    .map_err(|e| invalid("ChangeResourceRecordSets", e.to_string()))?,
            )
            .build()
            .map_err(|e| invalid("ChangeResourceRecordSets", e.to_string()))?;
        let batch = ChangeBatch::builder()
            .comment("ses-dkim-rotator")
            .changes(
                Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()
                    .map_err(|e| invalid("ChangeResourceRecordSets", e.to_string()))?,
            )
            .build()
            .map_err(|e| invalid("ChangeResourceRecordSets", e.to_string()))?;
        self.turn("ChangeResourceRecordSets").await?;
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| {
                port_error(SERVICE, "ChangeResourceRecordSets", e, |e| {
                    if e.is_no_such_hosted_zone() {
                        Some(FailureKind::NotFound)
                    } else if e.is_invalid_change_batch() || e.is_invalid_input() {
                        Some(FailureKind::InvalidRequest)
                    } else if e.is_prior_request_not_complete() {
                        // The zone is still busy with an earlier request: come back later.
                        Some(FailureKind::Throttled)
                    } else {
                        None
                    }
                })
            })?;
        let Some(mut info) = out.change_info().cloned() else {
            return Ok(());
        };
        while info.status() != &ChangeStatus::Insync {
            if !deadline.may_wait(OffsetDateTime::now_utc(), self.poll_interval * 3) {
                // Not INSYNC yet: the DNS check before the switch decides whether it is live
                // (a queue worker looks later, in another visit).
                tracing::info!(
                    change_id = info.id(),
                    "Route 53 change submitted, not INSYNC yet; not waiting for it here"
                );
                return Ok(());
            }
            tokio::time::sleep(self.poll_interval).await;
            self.turn("GetChange").await?;
            info = self
                .client
                .get_change()
                .id(info.id())
                .send()
                .await
                .map_err(|e| port_error(SERVICE, "GetChange", e, |_| None))?
                .change_info()
                .cloned()
                .ok_or_else(|| invalid("GetChange", "no ChangeInfo".into()))?;
        }
        Ok(())
    }
}

impl DnsPublisher for Route53Publisher {
    async fn upsert_txt(
        &self,
        record: TxtRecord<'_>,
        deadline: Deadline,
    ) -> Result<Publication, PortError> {
        self.change(ChangeAction::Upsert, record, record.value, deadline)
            .await?;
        Ok(Publication::Written)
    }

    async fn delete_txt(&self, record: TxtRecord<'_>) -> Result<Publication, PortError> {
        // Route 53 deletes only an exact match: read the record's current value first.
        let zone_id = self.zone_for(&record).await?;
        let name = format!("{}.", record.name.trim_end_matches('.'));
        self.turn("ListResourceRecordSets").await?;
        let listing = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .start_record_name(&name)
            .start_record_type(RrType::Txt)
            .max_items(1)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "ListResourceRecordSets", e, |_| None))?;
        let Some(existing) = listing
            .resource_record_sets()
            .iter()
            .find(|set| set.name().eq_ignore_ascii_case(&name) && set.r#type() == &RrType::Txt)
        else {
            return Ok(Publication::Written); // already gone
        };
        let batch = ChangeBatch::builder()
            .changes(
                Change::builder()
                    .action(ChangeAction::Delete)
                    .resource_record_set(existing.clone())
                    .build()
                    .map_err(|e| invalid("ChangeResourceRecordSets", e.to_string()))?,
            )
            .build()
            .map_err(|e| invalid("ChangeResourceRecordSets", e.to_string()))?;
        self.turn("ChangeResourceRecordSets").await?;
        self.client
            .change_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "ChangeResourceRecordSets", e, |_| None))?;
        Ok(Publication::Written)
    }
}
