//! The one way times are written and read where the rotator keeps them (tags, the secret's
//! `created_at`, reports): RFC 3339, UTC as given.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 text of `at`.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// `text` read as RFC 3339; `None` when it is not.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Days from `from` to `to` (fractional).
pub fn days_between(from: OffsetDateTime, to: OffsetDateTime) -> f64 {
    (to - from).as_seconds_f64() / 86_400.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn round_trips_and_refuses_other_text() {
        let at = datetime!(2030-06-01 12:30:05 UTC);
        assert_eq!(rfc3339(at), "2030-06-01T12:30:05Z");
        assert_eq!(parse_rfc3339(&rfc3339(at)), Some(at));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339(""), None);
        assert_eq!(days_between(at, at + time::Duration::hours(36)), 1.5);
    }
}
