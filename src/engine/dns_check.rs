//! Checking a DKIM TXT record as DNS serves it, before SES is pointed at its selector.
//!
//! The lookup returns every TXT record at `<selector>._domainkey.<domain>`, each with its
//! character-strings already concatenated (RFC 6376 §3.6.2.2). [`check_dkim_record`] turns
//! that answer into one of six distinct outcomes (published, or one of five reasons it is not),
//! each with a message that says what to do.

use std::fmt;

/// What a DNS server answered for a TXT query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtAnswer {
    /// The TXT records at the name, each one's strings joined.
    Records(Vec<String>),
    /// NXDOMAIN, or the name exists without TXT records.
    NoRecords,
}

/// One server's answer to a TXT query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAnswer {
    /// The server asked (`ip:port`).
    pub server: String,
    /// Its answer, or why there was none.
    pub answer: Result<TxtAnswer, LookupFailure>,
}

/// Why a lookup produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{server}: {reason}")]
pub struct LookupFailure {
    /// The server asked (`ip:port`) or the discovery step.
    pub server: String,
    /// SERVFAIL, REFUSED, timeout, connection error…
    pub reason: String,
}

/// The outcome of checking a DKIM record against the key it must publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsCheck {
    /// Exactly one DKIM record, publishing the expected key.
    Published,
    /// No TXT record at the name.
    Missing,
    /// One DKIM record, but with a different `p=`.
    Mismatch {
        /// The start of the `p=` found, for the operator to recognise it.
        found_prefix: String,
    },
    /// More than one TXT record at the name: verifiers may pick either.
    Several(usize),
    /// One record that is not a usable DKIM key record.
    Malformed(String),
    /// The server failed or did not answer.
    ServerFailure(LookupFailure),
}

impl DnsCheck {
    /// Whether SES may be switched to the selector.
    pub fn is_published(&self) -> bool {
        matches!(self, DnsCheck::Published)
    }

    /// A stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DnsCheck::Published => "published",
            DnsCheck::Missing => "missing",
            DnsCheck::Mismatch { .. } => "mismatch",
            DnsCheck::Several(_) => "several_records",
            DnsCheck::Malformed(_) => "malformed",
            DnsCheck::ServerFailure(_) => "server_failure",
        }
    }

    /// What is wrong with the record `name` and what to do, for error messages.
    pub fn explain(&self, name: &str, presentation: &str) -> String {
        match self {
            DnsCheck::Published => format!("{name} TXT is published"),
            DnsCheck::Missing => format!(
                "{name} has no TXT record yet; add TXT {presentation} (one record) and retry"
            ),
            DnsCheck::Mismatch { found_prefix } => format!(
                "{name} TXT publishes a different key (p={found_prefix}…); replace it with {presentation}"
            ),
            DnsCheck::Several(n) => format!(
                "{name} has {n} TXT records; keep exactly one: {presentation} (a long value is several quoted strings in ONE record)"
            ),
            DnsCheck::Malformed(reason) => format!(
                "{name} TXT is not a usable DKIM record ({reason}); replace it with {presentation}"
            ),
            DnsCheck::ServerFailure(failure) => format!(
                "could not check {name}: {failure}; check the DNS servers (DKIM_DNS_SERVERS) and retry"
            ),
        }
    }
}

impl fmt::Display for DnsCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Parses DKIM tag=value pairs (RFC 6376 §3.2); `None` when the syntax is broken.
fn parse_tags(record: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags = Vec::new();
    for part in record.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{}` is not tag=value", truncate(part, 20)))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad tag name `{}`", truncate(name, 20)));
        }
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        tags.push((name.to_owned(), value));
    }
    Ok(tags)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Checks a DNS answer against the base64 SubjectPublicKeyInfo the record must carry.
pub fn check_dkim_record(
    answer: &Result<TxtAnswer, LookupFailure>,
    expected_public_key: &str,
) -> DnsCheck {
    let records = match answer {
        Err(failure) => return DnsCheck::ServerFailure(failure.clone()),
        Ok(TxtAnswer::NoRecords) => return DnsCheck::Missing,
        Ok(TxtAnswer::Records(records)) if records.is_empty() => return DnsCheck::Missing,
        Ok(TxtAnswer::Records(records)) if records.len() > 1 => {
            return DnsCheck::Several(records.len());
        }
        Ok(TxtAnswer::Records(records)) => records,
    };
    let tags = match parse_tags(&records[0]) {
        Ok(tags) => tags,
        Err(reason) => return DnsCheck::Malformed(reason),
    };
    let tag = |name: &str| {
        tags.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some((first, _)) = tags.first()
        && tag("v").is_some()
        && first != "v"
    {
        return DnsCheck::Malformed("v= must be the first tag".into());
    }
    if let Some(version) = tag("v")
        && version != "DKIM1"
    {
        return DnsCheck::Malformed(format!("v={} is not DKIM1", truncate(version, 10)));
    }
    if let Some(key_type) = tag("k")
        && !key_type.eq_ignore_ascii_case("rsa")
    {
        return DnsCheck::Malformed(format!("k={} is not rsa", truncate(key_type, 10)));
    }
    match tag("p") {
        None => DnsCheck::Malformed("no p= tag".into()),
        Some("") => DnsCheck::Malformed("p= is empty: the key is revoked".into()),
        Some(found) if found == expected_public_key => DnsCheck::Published,
        Some(found) => DnsCheck::Mismatch {
            found_prefix: truncate(found, 24).to_owned(),
        },
    }
}

/// Checks every server's answer: the record counts as published only when all agree.
/// Returns the first outcome that is not [`DnsCheck::Published`], naming its server.
pub fn check_all_servers(
    answers: &Result<Vec<ServerAnswer>, LookupFailure>,
    expected_public_key: &str,
) -> DnsCheck {
    let answers = match answers {
        Err(failure) => return DnsCheck::ServerFailure(failure.clone()),
        Ok(answers) if answers.is_empty() => {
            return DnsCheck::ServerFailure(LookupFailure {
                server: "-".into(),
                reason: "no DNS server to ask".into(),
            });
        }
        Ok(answers) => answers,
    };
    for answer in answers {
        let check = check_dkim_record(&answer.answer, expected_public_key);
        if !check.is_published() {
            return match check {
                DnsCheck::Malformed(reason) => {
                    DnsCheck::Malformed(format!("{reason}, at {}", answer.server))
                }
                other => other,
            };
        }
    }
    DnsCheck::Published
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC1";

    fn check(records: &[&str]) -> DnsCheck {
        check_dkim_record(
            &Ok(TxtAnswer::Records(
                records.iter().map(|s| s.to_string()).collect(),
            )),
            KEY,
        )
    }

    #[test]
    fn published_record_in_any_spacing() {
        assert_eq!(
            check(&[&format!("v=DKIM1; k=rsa; p={KEY}")]),
            DnsCheck::Published
        );
        assert_eq!(
            check(&[&format!("v=DKIM1;p={}  {}", &KEY[..10], &KEY[10..])]),
            DnsCheck::Published
        );
        assert_eq!(check(&[&format!("k=rsa; p={KEY};")]), DnsCheck::Published);
    }

    #[test]
    fn five_outcomes_are_distinct() {
        assert_eq!(
            check_dkim_record(&Ok(TxtAnswer::NoRecords), KEY),
            DnsCheck::Missing
        );
        assert_eq!(check(&[]), DnsCheck::Missing);
        assert!(
            matches!(check(&["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"]), DnsCheck::Mismatch { found_prefix } if found_prefix.starts_with("MIIBIjAN"))
        );
        assert_eq!(
            check(&[&format!("v=DKIM1; p={KEY}"), "v=DKIM1; p=other"]),
            DnsCheck::Several(2)
        );
        for (bad, hint) in [
            ("hello world", "tag=value"),
            ("v=DKIM2; p=abc", "DKIM1"),
            ("k=ed25519; p=abc", "rsa"),
            ("v=DKIM1; k=rsa", "no p="),
            ("v=DKIM1; k=rsa; p=", "revoked"),
            ("k=rsa; v=DKIM1; p=abc", "first"),
        ] {
            match check(&[bad]) {
                DnsCheck::Malformed(reason) => assert!(reason.contains(hint), "{bad}: {reason}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let failure = LookupFailure {
            server: "127.0.0.1:53".into(),
            reason: "SERVFAIL".into(),
        };
        assert_eq!(
            check_dkim_record(&Err(failure.clone()), KEY),
            DnsCheck::ServerFailure(failure)
        );
    }

    #[test]
    fn every_server_must_agree() {
        let good = ServerAnswer {
            server: "a".into(),
            answer: Ok(TxtAnswer::Records(vec![format!("v=DKIM1; p={KEY}")])),
        };
        let stale = ServerAnswer {
            server: "b".into(),
            answer: Ok(TxtAnswer::NoRecords),
        };
        assert_eq!(
            check_all_servers(&Ok(vec![good.clone()]), KEY),
            DnsCheck::Published
        );
        assert_eq!(
            check_all_servers(&Ok(vec![good, stale]), KEY),
            DnsCheck::Missing
        );
        assert!(matches!(
            check_all_servers(&Ok(vec![]), KEY),
            DnsCheck::ServerFailure(_)
        ));
    }

    #[test]
    fn explanations_say_what_to_do() {
        let name = "s._domainkey.example.com";
        let shown = "\"v=DKIM1; k=rsa; p=AAA\"";
        assert!(DnsCheck::Missing.explain(name, shown).contains("add TXT"));
        assert!(
            DnsCheck::Several(2)
                .explain(name, shown)
                .contains("keep exactly one")
        );
        assert!(
            DnsCheck::Mismatch {
                found_prefix: "X".into()
            }
            .explain(name, shown)
            .contains("replace")
        );
    }
}
