//! The tags the rotator keeps on each secret: its memory between runs. Every rule that reads
//! them is written so a missing or stale tag delays an action (never hastens it).

/// The selector SES was last switched to.
pub const TAG_SWITCHED_TO: &str = "ses-dkim-rotator:switched-to";
/// When SES was switched to it (RFC 3339).
pub const TAG_SWITCHED_AT: &str = "ses-dkim-rotator:switched-at";
/// The selector before the switched-to one, written with the switch (empty when there was
/// none): with it a planner sees from `ListSecrets` alone whether a record awaits retirement.
pub const TAG_PREVIOUS: &str = "ses-dkim-rotator:previous";
/// The selector SES last reported `SUCCESS` for.
pub const TAG_CONFIRMED: &str = "ses-dkim-rotator:confirmed";
/// When that was first seen (RFC 3339): the previous selector's grace period starts here.
pub const TAG_CONFIRMED_AT: &str = "ses-dkim-rotator:confirmed-at";
/// The last selector retired.
pub const TAG_RETIRED: &str = "ses-dkim-rotator:retired";
/// Selectors SES rejected (`FAILED`), space-separated, newest first: never put again.
pub const TAG_REJECTED: &str = "ses-dkim-rotator:rejected";
/// The signing origin the identity had when this rotator first switched it (`AWS_SES`).
pub const TAG_ADOPTED_FROM: &str = "ses-dkim-rotator:adopted-from";

/// AWS's limit on a tag value.
const MAX_TAG_VALUE: usize = 256;

/// Whether `selector` is in a [`TAG_REJECTED`] value.
pub fn is_rejected(tag_value: Option<&str>, selector: &str) -> bool {
    tag_value.is_some_and(|value| {
        value
            .split_whitespace()
            .any(|s| s.eq_ignore_ascii_case(selector))
    })
}

/// The [`TAG_REJECTED`] value with `selector` added first, oldest dropped to fit AWS's limit.
pub fn with_rejected(tag_value: Option<&str>, selector: &str) -> String {
    let mut value = selector.to_owned();
    for old in tag_value.unwrap_or_default().split_whitespace() {
        if old.eq_ignore_ascii_case(selector) {
            continue;
        }
        if value.len() + 1 + old.len() > MAX_TAG_VALUE {
            break;
        }
        value.push(' ');
        value.push_str(old);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_selectors_accumulate_within_the_tag_limit() {
        let mut value: Option<String> = None;
        for i in 0..40 {
            value = Some(with_rejected(
                value.as_deref(),
                &format!("ses-20300101-{i:04x}"),
            ));
        }
        let value = value.unwrap();
        assert!(value.len() <= MAX_TAG_VALUE, "{}", value.len());
        assert!(
            is_rejected(Some(&value), "ses-20300101-0027"),
            "newest kept"
        );
        assert!(
            !is_rejected(Some(&value), "ses-20300101-0000"),
            "oldest dropped"
        );
        assert!(!is_rejected(None, "x"));
        assert_eq!(with_rejected(Some("a b"), "a"), "a b");
    }
}
