//! `dkim-rotator`: the operator's CLI, with the same engine and settings (environment) as the
//! Lambda function.
//!
//! Exit codes: 0 success; 1 a command (or an identity in it) failed; 2 usage error;
//! 3 invalid configuration.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use ses_dkim_rotator::app::ScheduledRun;
use ses_dkim_rotator::assembly::{AwsRotator, build_rotator, load_aws_config};
use ses_dkim_rotator::config::Settings;
use ses_dkim_rotator::engine::error::EngineError;
use ses_dkim_rotator::engine::identity::DomainIdentity;
use ses_dkim_rotator::engine::key::{DkimKeyPair, KeyBits, txt_presentation};
use ses_dkim_rotator::engine::ports::Deadline;
use ses_dkim_rotator::engine::schedule::{Action, FleetSummary, IdentityReport};
use ses_dkim_rotator::engine::selector::{Selector, SelectorPrefix};
use ses_dkim_rotator::error::AppError;

/// How many more paced turns the CLI gives an SES call SES throttled (the function: 3): about
/// half a minute at 1 request/s while a fleet run takes the rest of the quota.
const OPERATOR_SES_RETRIES: u32 = 30;

/// Rotate and inspect SES BYODKIM keys kept in Secrets Manager.
#[derive(Debug, Parser)]
#[command(name = "dkim-rotator", version)]
struct Cli {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Identity, SES origin/status/selector, key age, DNS of current and previous selector, next action.
    Status {
        /// Secrets to show (default: DKIM_SECRET_IDS and DKIM_SECRET_TAG).
        #[arg(long = "secret-id")]
        secret_ids: Vec<String>,
    },
    /// What the next scheduled run would do; changes nothing.
    Plan {
        /// Secrets to plan for (default: DKIM_SECRET_IDS and DKIM_SECRET_TAG).
        #[arg(long = "secret-id")]
        secret_ids: Vec<String>,
        /// Plan as if rotation were forced.
        #[arg(long)]
        force: bool,
    },
    /// Rotate one secret now (resumes an unfinished rotation first).
    Rotate {
        /// The secret.
        #[arg(long = "secret-id")]
        secret_id: String,
        /// Rotate even if the key is younger than DKIM_ROTATION_INTERVAL_DAYS.
        #[arg(long)]
        force: bool,
    },
    /// Put the previous key back (its TXT record must still be published).
    Rollback {
        /// The secret.
        #[arg(long = "secret-id")]
        secret_id: String,
    },
    /// Cancel an unfinished rotation: takes AWSPENDING off its version (what
    /// `CancelRotateSecret` leaves behind), keeping the version so the next attempt resumes its
    /// key. Touches neither SES nor DNS.
    Abort {
        /// The secret.
        #[arg(long = "secret-id")]
        secret_id: String,
    },
    /// Offline: print a new key, selector and TXT record; touches no AWS service.
    Keygen {
        /// RSA size: 1024 or 2048.
        #[arg(long, default_value = "1024")]
        bits: u32,
        /// The domain the record is for.
        #[arg(long)]
        domain: String,
        /// Selector prefix.
        #[arg(long, default_value = "ses")]
        selector_prefix: String,
    },
}

fn fail(json: bool, error: &AppError) -> ExitCode {
    if json {
        println!(
            "{}",
            json!({"error_type": error.error_type(), "error": error.to_string()})
        );
    } else {
        eprintln!("error ({}): {error}", error.error_type());
    }
    match error {
        AppError::InvalidSetting { .. } => ExitCode::from(3),
        _ => ExitCode::from(1),
    }
}

fn keygen(json: bool, bits: u32, domain: &str, prefix: &str) -> Result<(), AppError> {
    let invalid = |name, reason| AppError::InvalidSetting { name, reason };
    let bits = KeyBits::from_bits(bits)
        .ok_or_else(|| invalid("--bits", format!("{bits} is not 1024 or 2048")))?;
    let domain = DomainIdentity::parse(domain).map_err(|r| invalid("--domain", r))?;
    let prefix = SelectorPrefix::parse(prefix).map_err(|r| invalid("--selector-prefix", r))?;
    let key = DkimKeyPair::generate(bits).map_err(EngineError::from)?;
    let selector = Selector::generate(
        &prefix,
        time::OffsetDateTime::now_utc().date(),
        &[],
        rand::random::<u16>,
    );
    let name = format!("{selector}._domainkey.{domain}");
    if json {
        println!(
            "{}",
            json!({
                "domain": domain.as_str(), "selector": selector.as_str(), "key_bits": bits.bits(),
                "private_key": key.private_key().expose(), "public_key": key.public_key(),
                "dns_name": name, "dns_value": key.txt_value(),
            })
        );
    } else {
        println!("selector     {selector}");
        println!(
            "TXT record   {name} TXT {}",
            txt_presentation(&key.txt_value())
        );
        println!("private key  (for SES DomainSigningPrivateKey; keep it secret)");
        println!("{}", key.private_key().expose());
    }
    Ok(())
}

fn print_summary(json: bool, summary: &FleetSummary) {
    if json {
        println!(
            "{}",
            serde_json::to_string(summary).expect("summary serialises")
        );
        return;
    }
    println!(
        "{:<40} {:<16} {:<24} {:<10} {:>8}  detail",
        "identity", "action", "selector", "ses", "key age"
    );
    for r in &summary.identities {
        print_line(r);
    }
}

fn print_line(r: &IdentityReport) {
    let action = serde_json::to_value(r.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let detail = r.error.clone().or(r.detail.clone()).unwrap_or_default();
    println!(
        "{:<40} {:<16} {:<24} {:<10} {:>8}  {}",
        r.identity.as_deref().unwrap_or(&r.secret_id),
        if r.planned {
            format!("{action}?")
        } else {
            action
        },
        r.selector.as_deref().unwrap_or("-"),
        r.ses_status.as_ref().map_or("-", |s| s.as_str()),
        r.key_age_days
            .map(|d| format!("{d:.1}d"))
            .unwrap_or("-".into()),
        detail
    );
}

async fn status(
    rotator: &AwsRotator,
    json: bool,
    secret_ids: Vec<String>,
) -> Result<bool, AppError> {
    let run = ScheduledRun {
        secret_ids: (!secret_ids.is_empty()).then_some(secret_ids),
        force: false,
        dry_run: true,
    };
    let plan = rotator.scheduled(&run, Deadline::NONE).await?;
    let mut rows = Vec::new();
    let mut ok = true;
    for planned in &plan.identities {
        let inspection = rotator.engine.inspect(&planned.secret_id).await;
        ok &= inspection.is_ok() && planned.action != Action::Failed;
        rows.push((planned.clone(), inspection));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(plan, inspection)| match inspection {
                Ok(i) => json!({"status": i, "next_action": plan.action, "key_age_days": plan.key_age_days}),
                Err(e) => json!({"secret_id": plan.secret_id, "error_type": e.error_type(), "error": e.to_string()}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
        return Ok(ok);
    }
    println!(
        "{:<36} {:<9} {:<9} {:<24} {:>7} {:<10} {:<10} next",
        "identity", "origin", "status", "selector", "age", "dns", "prev dns"
    );
    for (plan, inspection) in rows {
        match inspection {
            Ok(i) => println!(
                "{:<36} {:<9} {:<9} {:<24} {:>7} {:<10} {:<10} {}",
                i.identity,
                i.ses_origin.as_ref().map_or("-", |s| s.as_str()),
                i.ses_status.as_ref().map_or("-", |s| s.as_str()),
                i.current_selector.as_deref().unwrap_or("-"),
                plan.key_age_days
                    .map(|d| format!("{d:.1}d"))
                    .unwrap_or("-".into()),
                i.current_dns.unwrap_or("-"),
                i.previous_dns.unwrap_or("-"),
                serde_json::to_value(plan.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            ),
            Err(e) => println!("{:<36} error ({}): {e}", plan.secret_id, e.error_type()),
        }
    }
    Ok(ok)
}

async fn run(cli: Cli) -> Result<bool, AppError> {
    if let Command::Keygen {
        bits,
        domain,
        selector_prefix,
    } = &cli.command
    {
        keygen(cli.json, *bits, domain, selector_prefix)?;
        return Ok(true);
    }
    let mut settings = Settings::from_env()?;
    // A person's command shares SES's quota with the fleet (which takes its whole share):
    // a throttled call waits more turns before the command gives up.
    settings.fleet.ses_paced_retries = OPERATOR_SES_RETRIES;
    let aws = load_aws_config().await;
    let rotator = build_rotator(&settings, &aws);
    match cli.command {
        Command::Status { secret_ids } => status(&rotator, cli.json, secret_ids).await,
        Command::Plan { secret_ids, force } => {
            let run = ScheduledRun {
                secret_ids: (!secret_ids.is_empty()).then_some(secret_ids),
                force,
                dry_run: true,
            };
            let summary = rotator.scheduled(&run, Deadline::NONE).await?;
            print_summary(cli.json, &summary);
            Ok(!summary.has_failures())
        }
        Command::Rotate { secret_id, force } => {
            let run = ScheduledRun {
                secret_ids: Some(vec![secret_id]),
                force,
                dry_run: false,
            };
            let summary = rotator.scheduled(&run, Deadline::NONE).await?;
            print_summary(cli.json, &summary);
            Ok(summary
                .identities
                .iter()
                .all(|r| !matches!(r.action, Action::Failed | Action::WaitingForDns)))
        }
        Command::Rollback { secret_id } => {
            let state = rotator.engine.rollback(&secret_id).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&state).expect("serialises"));
            } else {
                println!(
                    "rolled back: {} signs with {} (DNS {})",
                    state.identity,
                    state.current_selector.as_deref().unwrap_or("-"),
                    state.current_dns.unwrap_or("-")
                );
            }
            Ok(true)
        }
        Command::Abort { secret_id } => {
            let report = rotator.engine.abort(&secret_id).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&report).expect("serialises"));
            } else {
                match (&report.version, &report.selector) {
                    (Some(version), selector) => println!(
                        "aborted: took AWSPENDING off version {version} (selector {}); the version and its key stay, so the next rotation resumes them. SES and DNS were not touched. Rotate again when ready.",
                        selector.as_deref().unwrap_or("-")
                    ),
                    (None, _) => {
                        println!("nothing to abort: {secret_id} has no unfinished rotation")
                    }
                }
            }
            Ok(true)
        }
        Command::Keygen { .. } => unreachable!("handled above"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => fail(json, &error),
    }
}
