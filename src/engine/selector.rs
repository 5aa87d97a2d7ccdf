//! DKIM selectors: names SES accepts (`DomainSigningSelector`), made fresh for each rotation.
//!
//! A selector is one DNS label: 1–63 characters of letters, digits and hyphens, with no hyphen
//! at either end. New selectors read `<prefix>-<yyyymmdd>-<4 hex>`, so they sort by date.

use std::fmt;

use super::quoting::quote_prefix;

use time::Date;

/// Longest selector SES accepts.
pub const SELECTOR_MAX: usize = 63;
/// Characters a generated selector adds after the prefix: `-yyyymmdd-xxxx`.
const GENERATED_SUFFIX_LEN: usize = 14;
/// Longest prefix that still leaves room for the generated suffix.
pub const PREFIX_MAX: usize = SELECTOR_MAX - GENERATED_SUFFIX_LEN;

/// Checks one DNS label against SES's selector rule; `what` names the value in the message.
fn check_label(text: &str, what: &str, max: usize) -> Result<(), String> {
    let length = text.len();
    let quoted = quote_prefix(text);
    let shown = quoted.as_str();
    if text.is_empty() {
        return Err(format!(
            "{what} is empty; use letters, digits and inner hyphens"
        ));
    }
    if text.len() > max {
        return Err(format!(
            "{what} `{shown}` is {length} characters; the limit is {max}"
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
    {
        return Err(format!(
            "{what} `{shown}` contains {bad:?}; only letters, digits and inner hyphens are allowed (no dots or underscores)"
        ));
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err(format!(
            "{what} `{shown}` starts or ends with a hyphen; hyphens may only stand inside"
        ));
    }
    Ok(())
}

/// A DKIM selector that SES accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector(String);

impl Selector {
    /// Checks `text` against SES's `DomainSigningSelector` rule.
    pub fn parse(text: &str) -> Result<Self, String> {
        check_label(text, "selector", SELECTOR_MAX)?;
        Ok(Self(text.to_owned()))
    }

    /// Makes `<prefix>-<yyyymmdd>-<4 hex>` for `date`, avoiding every selector in `avoid`.
    ///
    /// `random` supplies the 16 random bits; it is called again on a clash.
    pub fn generate(
        prefix: &SelectorPrefix,
        date: Date,
        avoid: &[&Selector],
        mut random: impl FnMut() -> u16,
    ) -> Self {
        loop {
            let candidate = Selector(format!(
                "{}-{:04}{:02}{:02}-{:04x}",
                prefix.0,
                date.year(),
                u8::from(date.month()),
                date.day(),
                random()
            ));
            if !avoid
                .iter()
                .any(|old| old.0.eq_ignore_ascii_case(&candidate.0))
            {
                return candidate;
            }
        }
    }

    /// The selector text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configured start of every generated selector (`DKIM_SELECTOR_PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorPrefix(String);

impl SelectorPrefix {
    /// Checks that `text` can start an SES selector and leaves room for the date and suffix.
    pub fn parse(text: &str) -> Result<Self, String> {
        check_label(text, "selector prefix", PREFIX_MAX)?;
        Ok(Self(text.to_ascii_lowercase()))
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SelectorPrefix {
    fn default() -> Self {
        Self("ses".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    /// SES's published pattern, checked by hand so the test does not reuse `check_label`.
    fn ses_accepts(s: &str) -> bool {
        let bytes = s.as_bytes();
        (1..=63).contains(&s.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    }

    #[test]
    fn generated_selector_has_date_and_hex() {
        let prefix = SelectorPrefix::parse("ses").unwrap();
        let sel = Selector::generate(&prefix, date!(2026 - 11 - 26), &[], || 0xbeef);
        assert_eq!(sel.as_str(), "ses-20261126-beef");
        assert!(ses_accepts(sel.as_str()));
    }

    #[test]
    fn generated_selector_avoids_current_and_previous() {
        let prefix = SelectorPrefix::default();
        let taken = Selector::parse("ses-20261126-0001").unwrap();
        let also = Selector::parse("SES-20261126-0002").unwrap();
        let mut draws = [1u16, 2, 3].into_iter();
        let sel = Selector::generate(&prefix, date!(2026 - 11 - 26), &[&taken, &also], || {
            draws.next().unwrap()
        });
        assert_eq!(sel.as_str(), "ses-20261126-0003");
    }

    #[test]
    fn longest_prefix_still_gives_valid_selector() {
        let prefix = SelectorPrefix::parse(&"a".repeat(PREFIX_MAX)).unwrap();
        let sel = Selector::generate(&prefix, date!(2026 - 01 - 02), &[], || 0xffff);
        assert_eq!(sel.as_str().len(), SELECTOR_MAX);
        assert!(ses_accepts(sel.as_str()));
        assert!(SelectorPrefix::parse(&"a".repeat(PREFIX_MAX + 1)).is_err());
    }

    #[test]
    fn invalid_selectors_and_prefixes_are_refused_with_reason() {
        for (bad, hint) in [
            ("", "empty"),
            ("-ses", "hyphen"),
            ("ses-", "hyphen"),
            ("s_es", "'_'"),
            ("s.es", "'.'"),
            ("sés", "'é'"),
        ] {
            let err = Selector::parse(bad).unwrap_err();
            assert!(err.contains(hint), "{bad}: {err}");
            assert!(SelectorPrefix::parse(bad).is_err());
        }
        assert!(
            Selector::parse(&"a".repeat(64))
                .unwrap_err()
                .contains("limit is 63")
        );
        assert!(Selector::parse("a").is_ok());
        assert!(Selector::parse("A-1").is_ok());
    }
}
