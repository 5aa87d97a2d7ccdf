//! CloudWatch Embedded Metric Format (EMF) lines: JSON on stdout that CloudWatch Logs turns
//! into metrics, with no API call.
//!
//! Metrics: `Rotations`, `Failures`, `Rollbacks`, `Retirements`, `Throttles` (counts, no dimension), and per
//! identity (dimension `Identity`) `KeyAgeDays`, `PendingRecordHours` (a rotation waiting for
//! its TXT record) and `SesPendingHours` (SES verifying the current selector since the switch).

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

/// The per-identity line (key age; pending hours when a record is awaited).
pub fn identity_line(
    namespace: &str,
    timestamp_ms: i64,
    report: &IdentityReport,
) -> Option<String> {
    let identity = report.identity.as_deref()?;
    let mut metrics = Vec::new();
    if report.key_age_days.is_some() {
        metrics.push(("KeyAgeDays", "None"));
    }
    if report.pending_hours.is_some() {
        metrics.push(("PendingRecordHours", "None"));
    }
    if report.ses_pending_hours.is_some() {
        metrics.push(("SesPendingHours", "None"));
    }
    if metrics.is_empty() {
        return None;
    }
    let mut line = envelope(namespace, timestamp_ms, json!([["Identity"]]), &metrics);
    line["Identity"] = identity.into();
    if let Some(age) = report.key_age_days {
        line["KeyAgeDays"] = json!((age * 100.0).round() / 100.0);
    }
    if let Some(hours) = report.pending_hours {
        line["PendingRecordHours"] = json!((hours * 100.0).round() / 100.0);
    }
    if let Some(hours) = report.ses_pending_hours {
        line["SesPendingHours"] = json!((hours * 100.0).round() / 100.0);
    }
    Some(line.to_string())
}

/// Every EMF line for a scheduled run.
pub fn fleet_lines(namespace: &str, timestamp_ms: i64, summary: &FleetSummary) -> Vec<String> {
    let mut lines = vec![counts_line(
        namespace,
        timestamp_ms,
        RunCounts::of_fleet(summary),
    )];
    lines.extend(
        summary
            .identities
            .iter()
            .filter_map(|r| identity_line(namespace, timestamp_ms, r)),
    );
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
        let lines: Vec<Value> = fleet_lines("Ns", 1, &summary)
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
    }
}
