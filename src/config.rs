//! Settings read once from the environment at start-up, each checked with a clear message.
//! The table of variables, defaults and meanings is the README's "Configuration" section (its
//! one copy); a test checks that every variable read here is in it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::RotationPolicy;
use crate::engine::identity::AllowedIdentities;
use crate::engine::key::KeyBits;
use crate::engine::quoting::quote_prefix;
use crate::engine::retirement::RetireMode;
use crate::engine::selector::SelectorPrefix;
use crate::error::AppError;

/// How DKIM records are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherSetting {
    /// Log and return the record for a person to add.
    Hint,
    /// Amazon Route 53.
    Route53 {
        /// `DKIM_HOSTED_ZONE_ID`, when set.
        hosted_zone_id: Option<String>,
    },
    /// RFC 2136 dynamic update with TSIG.
    Rfc2136 {
        /// `DKIM_DNS_UPDATE_SERVER`.
        server: SocketAddr,
        /// `DKIM_DNS_ZONE`, when set.
        zone: Option<String>,
        /// `DKIM_DNS_TSIG_SECRET_ID`.
        tsig_secret_id: String,
    },
}

/// DNS publishing and checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Where records go.
    pub publisher: PublisherSetting,
    /// TTL of published records.
    pub ttl: u32,
    /// `DKIM_DNS_SERVERS`: servers to check instead of the authoritative ones.
    pub check_servers: Option<Vec<SocketAddr>>,
}

/// Scheduled runs over a fleet of secrets, notifications and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    /// `DKIM_SECRET_IDS`.
    pub secret_ids: Vec<String>,
    /// `DKIM_SECRET_TAG` as (key, value).
    pub secret_tag: Option<(String, String)>,
    /// `DKIM_ROTATION_INTERVAL_DAYS`.
    pub rotation_interval: time::Duration,
    /// `DKIM_HEALTH_CHECK_DAYS`: in queue mode, every idle identity is sent for a look at SES
    /// once in this many days (0: never).
    pub health_check_days: u32,
    /// `DKIM_MAX_CONCURRENCY`.
    pub max_concurrency: usize,
    /// `DKIM_IDENTITY_BUDGET_SECONDS`.
    pub identity_budget: Duration,
    /// `DKIM_NOTIFY_TOPIC_ARN`.
    pub notify_topic_arn: Option<String>,
    /// `DKIM_WORK_QUEUE_URL`: scheduled runs plan and send one message per identity here.
    pub work_queue_url: Option<String>,
    /// `DKIM_METRICS_NAMESPACE`.
    pub metrics_namespace: String,
    /// `DKIM_SES_REQUESTS_PER_SECOND`: the SES requests per second per region this stack may
    /// make (SES's quota is 1 for the whole account and region).
    pub ses_requests_per_second: f64,
    /// `DKIM_ROUTE53_REQUESTS_PER_SECOND`: the Route 53 requests per second this stack may
    /// make (Route 53 throttles the whole account at 5 per second, every zone and the console
    /// included).
    pub route53_requests_per_second: f64,
    /// `DKIM_QUEUE_MAX_CONCURRENCY`: the queue's `MaximumConcurrency` (the template passes
    /// it), so each worker takes its share of the SES budget.
    pub queue_max_concurrency: u32,
    /// `DKIM_STALE_KEY_DAYS`: a key older than this counts in the `StaleKeys` metric.
    pub stale_key_days: u32,
    /// `AWS_REGION` (Lambda sets it): the SES region of a secret that names none, for the
    /// per-region metrics.
    pub home_region: String,
    /// `DKIM_MAX_ROTATIONS_PER_RUN`: the queue planner sends at most this many rotations
    /// (keys due, and secrets never rotated here) per run; the rest wait for the next run.
    /// Unset: [`FleetSettings::derived_rotations_per_run`].
    pub max_rotations_per_run: u64,
    /// How many more times an SES call SES throttled anyway is sent, each on a later paced
    /// turn (not a setting: [`crate::engine::pacing::PACED_RETRIES`] for the function; the
    /// CLI waits longer, as a person's command shares the quota with a running fleet).
    pub ses_paced_retries: u32,
}

/// SES calls the rotation day costs per identity: read SES, switch, read back, and one more
/// read on the visit that finds the record propagated (measured: the 10,000-identity wave of
/// `make bench` made 40,001 on its rotation day).
pub const SES_CALLS_PER_ROTATION: f64 = 4.0;

/// Of a day's SES budget, the hours a planner run may fill with rotations: two thirds, so the
/// day's rotations drain from the queue before the 20-hour backlog alarm and the next daily
/// run, and a third is left for confirmations (one read each), watching and health checks.
pub const ROTATION_HOURS_PER_RUN: f64 = 16.0;

/// The part of the SES budget the pacer sends at: requests leave exactly one interval apart
/// but reach SES with network jitter, and a bucket of one second's depth throttles one that
/// arrives early; 10 % headroom absorbs jitter up to a tenth of the interval.
pub const SES_PACING_HEADROOM: f64 = 0.9;

impl FleetSettings {
    /// The rotations one planner run sends by default: as many as SES's budget (with
    /// [`SES_PACING_HEADROOM`]) serves in [`ROTATION_HOURS_PER_RUN`], at
    /// [`SES_CALLS_PER_ROTATION`] each. At 1 request/s: 12,960.
    pub fn derived_rotations_per_run(ses_requests_per_second: f64) -> u64 {
        (ses_requests_per_second * SES_PACING_HEADROOM * ROTATION_HOURS_PER_RUN * 3600.0
            / SES_CALLS_PER_ROTATION)
            .floor()
            .max(1.0) as u64
    }

    /// This process's share of the SES budget per region, with [`SES_PACING_HEADROOM`]: all
    /// of the budget when one invocation runs (a scheduled run, a Secrets Manager step), a
    /// `1 / MaximumConcurrency` part for a queue worker.
    pub fn ses_share_per_second(&self) -> f64 {
        self.share_of(self.ses_requests_per_second)
    }

    /// This process's share of the account's Route 53 budget, as [`Self::ses_share_per_second`].
    pub fn route53_share_per_second(&self) -> f64 {
        self.share_of(self.route53_requests_per_second)
    }

    /// This process's part of `budget` requests per second, with [`SES_PACING_HEADROOM`].
    fn share_of(&self, budget: f64) -> f64 {
        let invocations = if self.work_queue_url.is_some() {
            self.queue_max_concurrency.max(1)
        } else {
            1
        };
        budget * SES_PACING_HEADROOM / f64::from(invocations)
    }

    /// A share so small that one SES call waits longer than an identity's budget would stop
    /// every rotation half-way, visit after visit (a rotation needs several SES calls in a
    /// row): refused at start-up, saying what to change.
    fn check_ses_share(&self) -> Result<(), AppError> {
        let interval = 1.0 / self.ses_share_per_second();
        let budget = self.identity_budget.as_secs_f64();
        if interval <= budget {
            return Ok(());
        }
        let most = (self.ses_requests_per_second * SES_PACING_HEADROOM * budget)
            .floor()
            .max(1.0);
        Err(invalid(
            "DKIM_QUEUE_MAX_CONCURRENCY",
            format!(
                "{} workers sharing {} SES requests/s leaves each one request every {interval:.0} s, longer than DKIM_IDENTITY_BUDGET_SECONDS ({budget:.0} s), so no rotation could finish; set the queue's MaximumConcurrency (and this) to at most {most}, or raise DKIM_IDENTITY_BUDGET_SECONDS",
                self.queue_max_concurrency, self.ses_requests_per_second
            ),
        ))
    }
}

/// All settings of the function.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// What the rotation engine needs.
    pub policy: RotationPolicy,
    /// DNS publishing and checking.
    pub dns: DnsSettings,
    /// Scheduled runs, notifications, metrics.
    pub fleet: FleetSettings,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> AppError {
    AppError::InvalidSetting {
        name,
        reason: reason.into(),
    }
}

fn socket_addr(name: &'static str, text: &str) -> Result<SocketAddr, AppError> {
    text.trim().parse().map_err(|_| {
        invalid(
            name,
            format!(
                "`{}` is not ip:port (e.g. 192.0.2.53:53 or [2001:db8::53]:53)",
                text.trim()
            ),
        )
    })
}

/// A lower-cased choice among `allowed`, or the default when unset.
fn choice<'a>(
    name: &'static str,
    value: Option<String>,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, AppError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.trim().to_ascii_lowercase();
    allowed
        .iter()
        .find(|a| **a == value)
        .map(|a| Some(*a))
        .ok_or_else(|| {
            invalid(
                name,
                format!(
                    "`{}` is not one of {}",
                    quote_prefix(&value),
                    allowed.join(", ")
                ),
            )
        })
}

/// The variables, read through a lookup: the environment, or a map in tests.
struct Variables<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Variables<F> {
    /// The variable's value; unset and blank are the same.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A whole number from 0 to `max`, or `default` when unset.
    fn number(&self, name: &'static str, default: u64, max: u64) -> Result<u64, AppError> {
        self.bounded(name, default, 0..=max, "a whole number")
    }

    /// A decimal number from `min` to `max`, or `default` when unset.
    fn decimal(
        &self,
        name: &'static str,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, AppError> {
        self.bounded(name, default, min..=max, "a number")
    }

    /// A number of kind `what` within `range`, or `default` when unset.
    fn bounded<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
        what: &str,
    ) -> Result<T, AppError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<T>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    invalid(
                        name,
                        format!(
                            "`{}` is not {what} from {} to {}",
                            quote_prefix(&text),
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        }
    }

    /// true/false (also 1/0, yes/no), or `default` when unset.
    fn flag(&self, name: &'static str, default: bool) -> Result<bool, AppError> {
        Ok(
            match choice(
                name,
                self.get(name),
                &["true", "false", "1", "0", "yes", "no"],
            )? {
                None => default,
                Some(value) => matches!(value, "true" | "1" | "yes"),
            },
        )
    }

    /// The engine's settings: keys, selectors, the allow-list, DNS checks, retirement.
    fn policy(&self) -> Result<RotationPolicy, AppError> {
        let key_bits = match self.get("DKIM_KEY_BITS") {
            None => KeyBits::Rsa1024,
            Some(text) => text
                .parse()
                .map_err(|reason: String| invalid("DKIM_KEY_BITS", reason))?,
        };
        let selector_prefix = match self.get("DKIM_SELECTOR_PREFIX") {
            None => SelectorPrefix::default(),
            Some(text) => SelectorPrefix::parse(text.trim())
                .map_err(|reason| invalid("DKIM_SELECTOR_PREFIX", reason))?,
        };
        let allowed_identities = match (self.lookup)("DKIM_ALLOWED_IDENTITIES") {
            None => AllowedIdentities::Unset,
            Some(text) => AllowedIdentities::parse(&text)
                .map_err(|reason| invalid("DKIM_ALLOWED_IDENTITIES", reason))?,
        };
        let verify_dns = self.flag("DKIM_VERIFY_DNS", true)?;
        let adopt_easy_dkim = self.flag("DKIM_ADOPT_EASY_DKIM", false)?;
        let pending_alert_hours = self.number("DKIM_PENDING_ALERT_HOURS", 24, 720)?.max(1);
        let retire_mode = match choice(
            "DKIM_RETIRE",
            self.get("DKIM_RETIRE"),
            &["delete", "revoke"],
        )? {
            Some("revoke") => RetireMode::Revoke,
            _ => RetireMode::Delete,
        };
        let grace_days = self.number("DKIM_OLD_KEY_GRACE_DAYS", 7, 3650)?;
        let interval = self.number("DKIM_DNS_VERIFY_INTERVAL_SECONDS", 5, 300)?;
        Ok(RotationPolicy {
            key_bits,
            selector_prefix,
            allowed_identities,
            verify_dns,
            verify_retry_interval: Duration::from_secs(interval),
            old_key_grace: time::Duration::days(grace_days as i64),
            retire_mode,
            adopt_easy_dkim,
            pending_alert: time::Duration::hours(pending_alert_hours as i64),
            ..RotationPolicy::default()
        })
    }

    /// Where records are published and where they are checked.
    fn dns(&self) -> Result<DnsSettings, AppError> {
        let ttl = self.number("DKIM_DNS_TTL", 300, 86_400)? as u32;
        let publisher = match choice(
            "DKIM_DNS_PUBLISHER",
            self.get("DKIM_DNS_PUBLISHER"),
            &["hint", "route53", "rfc2136"],
        )? {
            None | Some("hint") => PublisherSetting::Hint,
            Some("route53") => PublisherSetting::Route53 {
                hosted_zone_id: self.get("DKIM_HOSTED_ZONE_ID").map(|z| z.trim().to_owned()),
            },
            _ => PublisherSetting::Rfc2136 {
                server: socket_addr(
                    "DKIM_DNS_UPDATE_SERVER",
                    &self.get("DKIM_DNS_UPDATE_SERVER").ok_or_else(|| {
                        invalid(
                            "DKIM_DNS_UPDATE_SERVER",
                            "is required with DKIM_DNS_PUBLISHER=rfc2136: the primary server's ip:port",
                        )
                    })?,
                )?,
                zone: self
                    .get("DKIM_DNS_ZONE")
                    .map(|z| z.trim().trim_end_matches('.').to_owned()),
                tsig_secret_id: self.get("DKIM_DNS_TSIG_SECRET_ID").ok_or_else(|| {
                    invalid(
                        "DKIM_DNS_TSIG_SECRET_ID",
                        "is required with DKIM_DNS_PUBLISHER=rfc2136: the Secrets Manager secret holding {\"name\", \"algorithm\", \"secret\"}",
                    )
                })?,
            },
        };
        let check_servers = self
            .get("DKIM_DNS_SERVERS")
            .map(|text| {
                text.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| socket_addr("DKIM_DNS_SERVERS", s))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(DnsSettings {
            publisher,
            ttl,
            check_servers,
        })
    }

    /// Scheduled runs over a fleet, the queue, notifications and metrics.
    fn fleet(&self) -> Result<FleetSettings, AppError> {
        let secret_tag = self
            .get("DKIM_SECRET_TAG")
            .map(|text| {
                text.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "DKIM_SECRET_TAG",
                            format!(
                                "`{}` is not key=value (e.g. dkim-rotator=managed)",
                                quote_prefix(&text)
                            ),
                        )
                    })
            })
            .transpose()?;
        let trimmed = |name: &str| self.get(name).map(|t| t.trim().to_owned());
        let rotation_days = self.number("DKIM_ROTATION_INTERVAL_DAYS", 90, 3650)?.max(1);
        let ses_requests_per_second =
            self.decimal("DKIM_SES_REQUESTS_PER_SECOND", 1.0, 0.01, 100.0)?;
        let fleet = FleetSettings {
            secret_ids: self
                .get("DKIM_SECRET_IDS")
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            secret_tag,
            rotation_interval: time::Duration::days(rotation_days as i64),
            health_check_days: self.number("DKIM_HEALTH_CHECK_DAYS", 7, 365)? as u32,
            max_concurrency: self.number("DKIM_MAX_CONCURRENCY", 4, 256)?.max(1) as usize,
            identity_budget: Duration::from_secs(self.number(
                "DKIM_IDENTITY_BUDGET_SECONDS",
                20,
                900,
            )?),
            notify_topic_arn: trimmed("DKIM_NOTIFY_TOPIC_ARN"),
            work_queue_url: trimmed("DKIM_WORK_QUEUE_URL"),
            metrics_namespace: trimmed("DKIM_METRICS_NAMESPACE")
                .unwrap_or_else(|| "SesDkimRotator".to_owned()),
            ses_requests_per_second,
            route53_requests_per_second: self.decimal(
                "DKIM_ROUTE53_REQUESTS_PER_SECOND",
                5.0,
                0.1,
                50.0,
            )?,
            queue_max_concurrency: self.number("DKIM_QUEUE_MAX_CONCURRENCY", 2, 1000)?.max(1)
                as u32,
            stale_key_days: self
                .number("DKIM_STALE_KEY_DAYS", rotation_days + 14, 3650 + 365)?
                .max(1) as u32,
            home_region: trimmed("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
            max_rotations_per_run: self
                .number(
                    "DKIM_MAX_ROTATIONS_PER_RUN",
                    FleetSettings::derived_rotations_per_run(ses_requests_per_second),
                    10_000_000,
                )?
                .max(1),
            ses_paced_retries: crate::engine::pacing::PACED_RETRIES,
        };
        fleet.check_ses_share()?;
        Ok(fleet)
    }
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, AppError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests), section by
    /// section: the engine's policy, DNS, the fleet.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AppError> {
        let variables = Variables { lookup };
        Ok(Self {
            policy: variables.policy()?,
            dns: variables.dns()?,
            fleet: variables.fleet()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rotation_cap_is_what_sixteen_hours_of_the_ses_budget_serve() {
        let cap = |vars: &[(&str, &str)]| settings(vars).unwrap().fleet.max_rotations_per_run;
        assert_eq!(cap(&[]), 12_960);
        assert_eq!(cap(&[("DKIM_SES_REQUESTS_PER_SECOND", "0.5")]), 6_480);
        assert_eq!(cap(&[("DKIM_MAX_ROTATIONS_PER_RUN", "500")]), 500);
    }

    #[test]
    fn every_variable_read_is_in_the_readme_table() {
        let source = include_str!("config.rs");
        let readme = include_str!("../README.md");
        let table = readme
            .split("## Configuration")
            .nth(1)
            .expect("README has a Configuration section");
        let mut names: Vec<&str> = source
            .split('"')
            .filter(|s| {
                s.len() > "DKIM_".len()
                    && s.starts_with("DKIM_")
                    && s.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() > 20, "{names:?}");
        for name in names {
            assert!(
                table.contains(&format!("`{name}`")),
                "{name} is missing from the README's Configuration table"
            );
        }
    }

    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, AppError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.policy.key_bits, KeyBits::Rsa1024);
        assert_eq!(s.policy.selector_prefix.as_str(), "ses");
        assert_eq!(s.policy.allowed_identities, AllowedIdentities::Unset);
    }

    #[test]
    fn explicit_values() {
        let s = settings(&[
            ("DKIM_KEY_BITS", "2048"),
            ("DKIM_SELECTOR_PREFIX", "Mail"),
            ("DKIM_ALLOWED_IDENTITIES", "*"),
        ])
        .unwrap();
        assert_eq!(s.policy.key_bits, KeyBits::Rsa2048);
        assert_eq!(s.policy.selector_prefix.as_str(), "mail");
        assert_eq!(s.policy.allowed_identities, AllowedIdentities::Any);
    }

    #[test]
    fn dns_settings() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.dns.publisher, PublisherSetting::Hint);
        assert!(s.policy.verify_dns);
        assert_eq!(s.policy.old_key_grace, time::Duration::days(7));
        let s = settings(&[
            ("DKIM_DNS_PUBLISHER", "rfc2136"),
            ("DKIM_DNS_UPDATE_SERVER", "127.0.0.1:5353"),
            ("DKIM_DNS_TSIG_SECRET_ID", "dns/tsig"),
            ("DKIM_DNS_SERVERS", "127.0.0.1:5353, [::1]:53"),
            ("DKIM_VERIFY_DNS", "false"),
            ("DKIM_RETIRE", "revoke"),
        ])
        .unwrap();
        assert!(matches!(s.dns.publisher, PublisherSetting::Rfc2136 { .. }));
        assert_eq!(s.dns.check_servers.unwrap().len(), 2);
        assert!(!s.policy.verify_dns);
        assert_eq!(s.policy.retire_mode, RetireMode::Revoke);
        let err = settings(&[("DKIM_DNS_PUBLISHER", "rfc2136")]).unwrap_err();
        assert!(err.to_string().contains("DKIM_DNS_UPDATE_SERVER"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_fix() {
        for (name, value, hint) in [
            ("DKIM_KEY_BITS", "4096", "1024 or 2048"),
            (
                "DKIM_SELECTOR_PREFIX",
                "my_prefix",
                "no dots or underscores",
            ),
            ("DKIM_ALLOWED_IDENTITIES", "a.com,*", "stand alone"),
            ("DKIM_DNS_PUBLISHER", "bind", "hint, route53, rfc2136"),
            ("DKIM_VERIFY_DNS", "maybe", "true, false"),
            ("DKIM_RETIRE", "shred", "delete, revoke"),
            ("DKIM_OLD_KEY_GRACE_DAYS", "-1", "whole number"),
            ("DKIM_DNS_SERVERS", "dns.example.com", "ip:port"),
            ("DKIM_SECRET_TAG", "managed", "key=value"),
            ("DKIM_MAX_CONCURRENCY", "lots", "whole number"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.error_type(), "InvalidSetting");
            let text = err.to_string();
            assert!(text.contains(name) && text.contains(hint), "{text}");
        }
    }
}
