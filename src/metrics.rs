//! CloudWatch Embedded Metric Format (EMF) lines: JSON on stdout that CloudWatch Logs turns
//! into metrics, with no API call.
//!
//! Metrics: `Rotations`, `Failures`, `Rollbacks`, `Retirements`, `Throttles` (counts, no
//! dimension), and the fleet's gauges per run (no dimension, and per `Region`):
//! `Identities`, `MaxKeyAgeDays`, `StaleKeys`, `AwaitingSes`, `MaxSesPendingHours`, `WaitingForDns`,
//! `MaxPendingRecordHours`. No metric has an `Identity` dimension: each identity's figures are
//! a plain log line ([`identity_line`]), so the metric count does not grow with the fleet.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::engine::error::EngineError;
use crate::engine::rotation::{Outcome, StepReport};
use crate::engine::schedule::{Action, FleetSummary, IdentityReport};

/// Counts of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Keys rotated in (switched).
    pub rotations: u64,
    /// Failures.
    pub failures: u64,
    /// Rollbacks after SES said `FAILED`.
    pub rollbacks: u64,
    /// Previous selectors retired.
    pub retirements: u64,
    /// Identities (or steps) a service's quota stopped; they come back later.
    pub throttles: u64,
}

impl RunCounts {
    /// The counts of one Secrets Manager step: a rotation when it switched SES, a failure
    /// (and a rollback when it rolled back) when it failed, `None` when nothing counts.
    pub fn of_step(result: &Result<StepReport, EngineError>) -> Option<Self> {
        match result {
            Ok(report) if report.outcome == Outcome::SesSwitched => Some(RunCounts {
                rotations: 1,
                ..RunCounts::default()
            }),
            Ok(_) => None,
            Err(error) if error.throttled() => Some(RunCounts {
                throttles: 1,
                ..RunCounts::default()
            }),
            Err(error) => Some(RunCounts {
                failures: 1,
                rollbacks: u64::from(error.rolled_back()),
                ..RunCounts::default()
            }),
        }
    }

    /// The counts of a scheduled run (a dry run's planned actions do not count).
    pub fn of_fleet(summary: &FleetSummary) -> Self {
        let live: Vec<&IdentityReport> = summary.identities.iter().filter(|r| !r.planned).collect();
        let count =
            |pred: &dyn Fn(&IdentityReport) -> bool| live.iter().filter(|r| pred(r)).count() as u64;
        RunCounts {
            rotations: count(&|r| matches!(r.action, Action::Rotated | Action::Resumed)),
            failures: count(&|r| r.action == Action::Failed),
            rollbacks: count(&|r| r.rolled_back),
            retirements: count(&|r| r.action == Action::Retired),
            throttles: count(&|r| r.action == Action::Throttled),
        }
    }
}

fn envelope(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: Value,
    metrics: &[(&str, &str)],
) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimensions,
                "Metrics": metrics.iter().map(|(name, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }]
        }
    })
}

/// The counts line.
pub fn counts_line(namespace: &str, timestamp_ms: i64, counts: RunCounts) -> String {
    let mut line = envelope(
        namespace,
        timestamp_ms,
        json!([[]]),
        &[
            ("Rotations", "Count"),
            ("Failures", "Count"),
            ("Rollbacks", "Count"),
            ("Retirements", "Count"),
            ("Throttles", "Count"),
        ],
    );
    line["Rotations"] = counts.rotations.into();
    line["Failures"] = counts.failures.into();
    line["Rollbacks"] = counts.rollbacks.into();
    line["Retirements"] = counts.retirements.into();
    line["Throttles"] = counts.throttles.into();
    line.to_string()
}

/// What the fleet gauges need besides the reports.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeRules {
    /// A key older than this many days is stale (`DKIM_STALE_KEY_DAYS`).
    pub stale_after_days: f64,
    /// The region of an identity whose secret names none (the function's own).
    pub home_region: String,
}

/// The fleet's state in one SES region, from one run's reports (a dry run's do not count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionGauges {
    /// Identities looked at.
    pub identities: u64,
    /// The oldest `AWSCURRENT` key, in days.
    pub max_key_age_days: f64,
    /// Keys older than the stale threshold.
    pub stale_keys: u64,
    /// Identities whose current selector SES is still verifying (`PENDING`).
    pub awaiting_ses: u64,
    /// The longest SES has said `PENDING` for a current selector, in hours.
    pub max_ses_pending_hours: f64,
    /// Rotations waiting for their TXT record.
    pub waiting_for_dns: u64,
    /// The longest a pending key has waited for its record, in hours.
    pub max_pending_record_hours: f64,
}

/// The gauges per SES region (an identity sent from several regions counts in each).
pub fn gauges(summary: &FleetSummary, rules: &GaugeRules) -> BTreeMap<String, RegionGauges> {
    let mut regions: BTreeMap<String, RegionGauges> = BTreeMap::new();
    for report in summary.identities.iter().filter(|r| !r.planned) {
        if report.identity.is_none() {
            continue; // never read: nothing known about it
        }
        let home = [rules.home_region.clone()];
        let names = if report.regions.is_empty() {
            &home[..]
        } else {
            &report.regions[..]
        };
        for name in names {
            let g = regions.entry(name.clone()).or_default();
            g.identities += 1;
            if let Some(age) = report.key_age_days {
                g.max_key_age_days = g.max_key_age_days.max(age);
                g.stale_keys += u64::from(age > rules.stale_after_days);
            }
            if report.action == Action::Pending {
                g.awaiting_ses += 1;
            }
            if let Some(hours) = report.ses_pending_hours {
                g.max_ses_pending_hours = g.max_ses_pending_hours.max(hours);
            }
            if report.action == Action::WaitingForDns {
                g.waiting_for_dns += 1;
            }
            if let Some(hours) = report.pending_hours {
                g.max_pending_record_hours = g.max_pending_record_hours.max(hours);
            }
        }
    }
    regions
}

/// Hundredths are plenty for days and hours.
fn rounded(value: f64) -> Value {
    json!((value * 100.0).round() / 100.0)
}

/// One region's gauges as an EMF line: each metric with no dimension (the fleet; alarms look
/// there) and with `Region`.
pub fn gauge_line(namespace: &str, timestamp_ms: i64, region: &str, g: &RegionGauges) -> String {
    let mut line = envelope(
        namespace,
        timestamp_ms,
        json!([[], ["Region"]]),
        &[
            ("Identities", "Count"),
            ("MaxKeyAgeDays", "None"),
            ("StaleKeys", "Count"),
            ("AwaitingSes", "Count"),
            ("MaxSesPendingHours", "None"),
            ("WaitingForDns", "Count"),
            ("MaxPendingRecordHours", "None"),
        ],
    );
    line["Region"] = region.into();
    line["Identities"] = g.identities.into();
    line["MaxKeyAgeDays"] = rounded(g.max_key_age_days);
    line["StaleKeys"] = g.stale_keys.into();
    line["AwaitingSes"] = g.awaiting_ses.into();
    line["MaxSesPendingHours"] = rounded(g.max_ses_pending_hours);
    line["WaitingForDns"] = g.waiting_for_dns.into();
    line["MaxPendingRecordHours"] = rounded(g.max_pending_record_hours);
    line.to_string()
}

/// One identity's figures as a plain JSON log line (no metric: CloudWatch Logs Insights finds
/// it by `Identity`; a metric per identity would cost $0.30 a month each).
pub fn identity_line(report: &IdentityReport) -> Option<String> {
    let identity = report.identity.as_deref()?;
    let mut line =
        json!({"message": "identity figures", "Identity": identity, "SecretId": report.secret_id});
    if let Some(age) = report.key_age_days {
        line["KeyAgeDays"] = rounded(age);
    }
    if let Some(hours) = report.pending_hours {
        line["PendingRecordHours"] = rounded(hours);
    }
    if let Some(hours) = report.ses_pending_hours {
        line["SesPendingHours"] = rounded(hours);
    }
    Some(line.to_string())
}

/// Every line for a scheduled run or a worker's batch: the counts (EMF), the gauges per
/// region (EMF), then one log line per identity.
pub fn fleet_lines(
    namespace: &str,
    timestamp_ms: i64,
    summary: &FleetSummary,
    rules: &GaugeRules,
) -> Vec<String> {
    let mut lines = vec![counts_line(
        namespace,
        timestamp_ms,
        RunCounts::of_fleet(summary),
    )];
    for (region, g) in gauges(summary, rules) {
        lines.push(gauge_line(namespace, timestamp_ms, &region, &g));
    }
    lines.extend(summary.identities.iter().filter_map(identity_line));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::error::Rollback;
    use crate::engine::rotation::{RotationRequest, Step};

    #[test]
    fn a_step_counts_a_rotation_only_when_it_switched_and_a_rollback_only_when_done() {
        let request = RotationRequest::new(Step::FinishSecret, "arn:s", "t");
        let switched = Ok(StepReport::new(&request, Outcome::SesSwitched));
        assert_eq!(RunCounts::of_step(&switched).unwrap().rotations, 1);
        let stored = Ok(StepReport::new(&request, Outcome::KeyCreated));
        assert_eq!(RunCounts::of_step(&stored), None);
        let rejected = |rollback| {
            RunCounts::of_step(&Err(EngineError::SesRejectedKey {
                identity: "example.com".into(),
                selector: "s1".into(),
                rollback,
                action: String::new(),
            }))
            .unwrap()
        };
        let done = rejected(Rollback::Done {
            selector: "s0".into(),
        });
        assert_eq!((done.failures, done.rollbacks), (1, 1));
        let refused = rejected(Rollback::NoPreviousKey);
        assert_eq!((refused.failures, refused.rollbacks), (1, 0));
    }

    fn report(identity: &str, action: Action, age: f64, regions: &[&str]) -> IdentityReport {
        IdentityReport {
            identity: Some(identity.into()),
            key_age_days: Some(age),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            ..IdentityReport::new(&format!("arn:{identity}"), action)
        }
    }

    #[test]
    fn gauges_are_per_region_and_count_only_what_was_read_for_real() {
        let mut pending = report(
            "b.example",
            Action::Pending,
            3.0,
            &["eu-west-1", "us-east-1"],
        );
        pending.ses_pending_hours = Some(30.0);
        let mut planned = report("c.example", Action::Rotated, 400.0, &[]);
        planned.planned = true;
        let unread = IdentityReport::new("arn:broken", Action::Failed);
        let summary = FleetSummary::of(vec![
            report("a.example", Action::Skipped, 105.5, &[]),
            pending,
            planned,
            unread,
        ]);
        let rules = GaugeRules {
            stale_after_days: 104.0,
            home_region: "us-east-1".into(),
        };
        let by_region = gauges(&summary, &rules);
        let home = &by_region["us-east-1"];
        assert_eq!(home.identities, 2);
        assert_eq!(home.stale_keys, 1);
        assert_eq!(home.max_key_age_days, 105.5);
        assert_eq!(home.awaiting_ses, 1);
        assert_eq!(home.max_ses_pending_hours, 30.0);
        let eu = &by_region["eu-west-1"];
        assert_eq!((eu.identities, eu.stale_keys, eu.awaiting_ses), (1, 0, 1));
        assert_eq!(by_region.len(), 2);

        let lines = fleet_lines("Ns", 0, &summary, &rules);
        let metric_lines = lines.iter().filter(|l| l.contains("\"_aws\"")).count();
        assert_eq!(metric_lines, 1 + 2, "counts + one gauge line per region");
        let home_line: Value = serde_json::from_str(
            lines
                .iter()
                .find(|l| l.contains("\"Region\":\"us-east-1\""))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (
                home_line["Identities"].as_u64(),
                home_line["StaleKeys"].as_u64()
            ),
            (Some(2), Some(1))
        );
        for line in lines.iter().filter(|l| l.contains("\"Identity\"")) {
            assert!(!line.contains("_aws"), "a metric per identity: {line}");
        }
    }

    #[test]
    fn counts_line_is_valid_emf() {
        let line = counts_line(
            "Ns",
            1_700_000_000_000,
            RunCounts {
                rotations: 2,
                failures: 1,
                ..Default::default()
            },
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Ns");
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "{name} has no value");
        }
        assert_eq!(v["Rotations"], 2);
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }

    #[test]
    fn fleet_lines_count_each_outcome_and_carry_the_hours() {
        let report = |action: Action, fill: fn(&mut IdentityReport)| {
            let mut report = IdentityReport::new("arn:secret", action);
            report.identity = Some("example.com".into());
            fill(&mut report);
            report
        };
        let summary = FleetSummary::of(vec![
            report(Action::Retired, |_| {}),
            report(Action::Retired, |_| {}),
            report(Action::RolledBack, |r| r.rolled_back = true),
            // SES failed the current key and nothing could be rolled back: a failure, no rollback.
            report(Action::Failed, |r| r.error_type = Some("SesRejectedKey")),
            report(Action::Failed, |r| r.pending_hours = Some(5.678)),
            report(Action::Rotated, |r| r.key_age_days = Some(0.0)),
            report(Action::Pending, |r| r.ses_pending_hours = Some(80.004)),
            // A dry run's plans are not outcomes.
            report(Action::Retired, |r| r.planned = true),
        ]);
        let rules = GaugeRules {
            stale_after_days: 104.0,
            home_region: "us-east-1".into(),
        };
        let lines: Vec<Value> = fleet_lines("Ns", 1, &summary, &rules)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let counts = &lines[0];
        assert_eq!(counts["Retirements"], 2);
        assert_eq!(counts["Rollbacks"], 1);
        assert_eq!(counts["Failures"], 2);
        assert_eq!(counts["Rotations"], 1);
        let value_of = |metric: &str| -> Vec<Value> {
            lines[1..]
                .iter()
                .filter_map(|l| l.get(metric).cloned())
                .collect()
        };
        assert_eq!(value_of("PendingRecordHours"), [json!(5.68)]);
        assert_eq!(value_of("SesPendingHours"), [json!(80.0)]);
        assert_eq!(value_of("KeyAgeDays"), [json!(0.0)]);
        let gauge = &lines[1];
        assert_eq!(gauge["MaxPendingRecordHours"], json!(5.68));
        assert_eq!(gauge["MaxSesPendingHours"], json!(80.0));
        assert_eq!(gauge["AwaitingSes"], 1);
    }
}
