//! SES domain identities and the allow-list (`DKIM_ALLOWED_IDENTITIES`).
//!
//! A rotation Lambda will rotate whatever secret Secrets Manager points it at; the allow-list is
//! the guard that stops it acting for an identity its operator never meant it to manage.

use std::collections::BTreeSet;
use std::fmt;

use super::quoting::quote_prefix;

/// A domain identity name, lower-cased and without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainIdentity(String);

impl DomainIdentity {
    /// Checks `text` is a domain name SES can sign for (BYODKIM is for domains, not addresses).
    ///
    /// An error quotes at most a short prefix of `text` ([`quote_prefix`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let quoted = quote_prefix(text);
        let text = quoted.as_str();
        if name.is_empty() {
            return Err("the identity is empty; give a domain such as `example.com`".into());
        }
        if name.contains('@') {
            return Err(format!(
                "`{text}` is an email address; BYODKIM keys belong to a domain identity such as `{}`",
                quote_prefix(name.rsplit('@').next().unwrap_or("example.com"))
            ));
        }
        if !name.is_ascii() {
            return Err(format!(
                "`{text}` is not ASCII; give the domain in its punycode (xn--) form"
            ));
        }
        if name.len() > 253 {
            return Err(format!(
                "`{text}` is longer than the 253 characters of a domain name"
            ));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(format!(
                "`{text}` has no dot; give a full domain such as `example.com`"
            ));
        }
        for label in labels {
            let ok = (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "`{text}` is not a valid domain name: label `{}` must be 1-63 letters, digits or inner hyphens",
                    quote_prefix(label)
                ));
            }
        }
        Ok(Self(name))
    }

    /// The domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which identities this deployment may rotate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedIdentities {
    /// `DKIM_ALLOWED_IDENTITIES` unset: refuse every identity.
    #[default]
    Unset,
    /// `*`: any identity.
    Any,
    /// An explicit list.
    Only(BTreeSet<DomainIdentity>),
}

impl AllowedIdentities {
    /// Parses the comma list (or `*`). An empty value is treated as unset.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::Unset);
        }
        if text == "*" {
            return Ok(Self::Any);
        }
        let mut set = BTreeSet::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                return Err("`*` must stand alone; it already allows every identity".into());
            }
            set.insert(DomainIdentity::parse(item)?);
        }
        Ok(Self::Only(set))
    }

    /// Whether `identity` may be rotated; the error says how to allow it.
    pub fn check(&self, identity: &DomainIdentity) -> Result<(), String> {
        match self {
            Self::Any => Ok(()),
            Self::Only(set) if set.contains(identity) => Ok(()),
            Self::Only(set) => Err(format!(
                "identity `{identity}` is not in DKIM_ALLOWED_IDENTITIES ({}); add it to that comma list if this function should rotate it",
                set.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(",")
            )),
            Self::Unset => Err(format!(
                "DKIM_ALLOWED_IDENTITIES is not set, so no identity may be rotated; set it to a comma list of domains (e.g. `{identity}`) or to `*` to allow any"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_normalised() {
        assert_eq!(
            DomainIdentity::parse(" Example.COM. ").unwrap().as_str(),
            "example.com"
        );
    }

    #[test]
    fn bad_identities_say_why() {
        for (bad, hint) in [
            ("", "empty"),
            ("user@example.com", "email address"),
            ("localhost", "no dot"),
            ("bücher.de", "punycode"),
            ("a..b", "label"),
            ("-a.com", "label"),
        ] {
            let err = DomainIdentity::parse(bad).unwrap_err();
            assert!(err.contains(hint), "{bad}: {err}");
        }
    }

    #[test]
    fn errors_quote_at_most_a_short_prefix_of_what_they_were_given() {
        let blob = format!("{}.example.com", "MIICXAIBAAKBgQC".repeat(40));
        let err = DomainIdentity::parse(&blob).unwrap_err();
        assert!(err.contains("longer than the 253"), "{err}");
        assert!(err.len() < 200, "{err}");
        assert!(!err.contains(&blob[..100]));
        let label = format!("{}.com", "x".repeat(300));
        assert!(DomainIdentity::parse(&label).unwrap_err().len() < 300);
    }

    #[test]
    fn allow_list_modes() {
        let example = DomainIdentity::parse("example.com").unwrap();
        let other = DomainIdentity::parse("other.org").unwrap();
        assert!(AllowedIdentities::parse("*").unwrap().check(&other).is_ok());
        let list = AllowedIdentities::parse("example.com, EXAMPLE.net").unwrap();
        assert!(list.check(&example).is_ok());
        assert!(
            list.check(&other)
                .unwrap_err()
                .contains("not in DKIM_ALLOWED_IDENTITIES")
        );
        let unset = AllowedIdentities::parse("").unwrap();
        assert!(unset.check(&example).unwrap_err().contains("set it to"));
        assert!(AllowedIdentities::parse("a.com,*").is_err());
        assert!(AllowedIdentities::parse("not a domain").is_err());
    }
}
