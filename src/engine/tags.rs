//! The tags the rotator keeps on each secret: its memory between runs, and the one home of
//! their keys. [`RotatorTags`] reads them once from a tag map; [`TagUpdate`] is every write,
//! built here and sent as one `TagResource`. Every rule that reads them is written so a missing
//! or stale tag delays an action (never hastens it).

use std::collections::HashMap;

use time::OffsetDateTime;

use super::time_format::{parse_rfc3339, rfc3339};

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
/// The SES identity the planner may look up in its `ListEmailIdentities` screen (the secret's
/// key lives in the function's own region only); empty: never screen this secret.
pub const TAG_SCREEN_AS: &str = "ses-dkim-rotator:screen-as";

/// The version id of the rotation attempt that last stored a key (written before the key is):
/// the only unfinished attempt a later rotation may resume. A version someone else wrote, with
/// no such tag naming it, is never resumed: writing a secret's value must not be the power to
/// publish and switch a key of one's choice (the function's role may write only these tags).
pub const TAG_ATTEMPT: &str = "ses-dkim-rotator:attempt";

/// AWS's limit on a tag value.
const MAX_TAG_VALUE: usize = 256;

/// The rotator's tags on one secret, read once. Text is kept as written (an empty value is a
/// value: `previous` empty means "there was none"); a time that does not parse is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotatorTags {
    /// [`TAG_SWITCHED_TO`].
    pub switched_to: Option<String>,
    /// [`TAG_SWITCHED_AT`], when it parses.
    pub switched_at: Option<OffsetDateTime>,
    /// [`TAG_PREVIOUS`] (empty: the switch had no previous selector).
    pub previous: Option<String>,
    /// [`TAG_CONFIRMED`].
    pub confirmed: Option<String>,
    /// [`TAG_CONFIRMED_AT`], when it parses.
    pub confirmed_at: Option<OffsetDateTime>,
    /// [`TAG_RETIRED`].
    pub retired: Option<String>,
    /// [`TAG_REJECTED`], as written.
    pub rejected: Option<String>,
    /// [`TAG_ADOPTED_FROM`].
    pub adopted_from: Option<String>,
    /// [`TAG_SCREEN_AS`] (empty: not to be screened).
    pub screen_as: Option<String>,
    /// [`TAG_ATTEMPT`].
    pub attempt: Option<String>,
}

impl RotatorTags {
    /// The rotator's tags among a secret's tags (others are ignored).
    pub fn of(tags: &HashMap<String, String>) -> Self {
        let text = |key: &str| tags.get(key).cloned();
        let time = |key: &str| tags.get(key).and_then(|t| parse_rfc3339(t));
        Self {
            switched_to: text(TAG_SWITCHED_TO),
            switched_at: time(TAG_SWITCHED_AT),
            previous: text(TAG_PREVIOUS),
            confirmed: text(TAG_CONFIRMED),
            confirmed_at: time(TAG_CONFIRMED_AT),
            retired: text(TAG_RETIRED),
            rejected: text(TAG_REJECTED),
            adopted_from: text(TAG_ADOPTED_FROM),
            screen_as: text(TAG_SCREEN_AS),
            attempt: text(TAG_ATTEMPT),
        }
    }

    /// Whether SES rejected `selector` before.
    pub fn is_rejected(&self, selector: &str) -> bool {
        self.rejected.as_deref().is_some_and(|value| {
            value
                .split_whitespace()
                .any(|s| s.eq_ignore_ascii_case(selector))
        })
    }

    /// Whether the recorded switch is to `selector`, with a time that parses.
    pub fn switch_to_is_known(&self, selector: &str) -> bool {
        self.switched_to
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(selector))
            && self.switched_at.is_some()
    }
}

/// Tags to write in one `TagResource`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagUpdate(Vec<(&'static str, String)>);

impl TagUpdate {
    /// A switch of SES to `selector` at `at`; `previous` is the selector before it.
    pub fn switch(selector: &str, previous: Option<&str>, at: OffsetDateTime) -> Self {
        Self(vec![
            (TAG_SWITCHED_TO, selector.to_owned()),
            (TAG_SWITCHED_AT, rfc3339(at)),
            (TAG_PREVIOUS, previous.unwrap_or_default().to_owned()),
        ])
    }

    /// The same update, also naming the SES identity the planner's screen may look up:
    /// `identity` when the key lives in the function's own region only, else nothing
    /// (`home_only` false: the secret is never screened).
    pub fn screened_as(mut self, identity: &str, home_only: bool) -> Self {
        let value = if home_only { identity } else { "" };
        self.0.push((TAG_SCREEN_AS, value.to_owned()));
        self
    }

    /// A rollback to `selector`: a switch like any other, and SES's earlier confirmation no
    /// longer counts (SES verifies it again), so watchers and planners watch it again.
    pub fn rollback(selector: &str, previous: Option<&str>, at: OffsetDateTime) -> Self {
        let mut update = Self::switch(selector, previous, at);
        update.0.push((TAG_CONFIRMED, String::new()));
        update.0.push((TAG_CONFIRMED_AT, String::new()));
        update
    }

    /// SES's confirmation of `selector` seen at `at` (the grace clock starts); `previous` is
    /// the selector before it.
    pub fn confirmation(selector: &str, previous: Option<&str>, at: OffsetDateTime) -> Self {
        Self(vec![
            (TAG_CONFIRMED, selector.to_owned()),
            (TAG_CONFIRMED_AT, rfc3339(at)),
            (TAG_PREVIOUS, previous.unwrap_or_default().to_owned()),
        ])
    }

    /// `selector` retired.
    pub fn retired(selector: &str) -> Self {
        Self(vec![(TAG_RETIRED, selector.to_owned())])
    }

    /// `selector` rejected by SES, added first to the list in `tags`; the oldest are dropped
    /// to fit AWS's limit on a tag value.
    pub fn rejected(tags: &RotatorTags, selector: &str) -> Self {
        let mut value = selector.to_owned();
        for old in tags
            .rejected
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
        {
            if old.eq_ignore_ascii_case(selector) {
                continue;
            }
            if value.len() + 1 + old.len() > MAX_TAG_VALUE {
                break;
            }
            value.push(' ');
            value.push_str(old);
        }
        Self(vec![(TAG_REJECTED, value)])
    }

    /// The rotation attempt `version` is about to store a key (see [`TAG_ATTEMPT`]).
    pub fn attempt(version: &str) -> Self {
        Self(vec![(TAG_ATTEMPT, version.to_owned())])
    }

    /// The signing origin the identity had when the rotator first switched it.
    pub fn adopted_from(origin: &str) -> Self {
        Self(vec![(TAG_ADOPTED_FROM, origin.to_owned())])
    }

    /// Adds `key` = `value`.
    pub(crate) fn push(&mut self, key: &'static str, value: String) {
        self.0.push((key, value));
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, as the store takes them.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(tags: &RotatorTags, update: &TagUpdate) -> RotatorTags {
        let mut map = HashMap::new();
        map.insert(
            TAG_REJECTED.to_owned(),
            tags.rejected.clone().unwrap_or_default(),
        );
        for (key, value) in update.pairs() {
            map.insert(key.to_owned(), value.to_owned());
        }
        RotatorTags::of(&map)
    }

    #[test]
    fn rejected_selectors_accumulate_within_the_tag_limit() {
        let mut tags = RotatorTags::default();
        for i in 0..40 {
            tags = applied(
                &tags,
                &TagUpdate::rejected(&tags, &format!("ses-20300101-{i:04x}")),
            );
        }
        let value = tags.rejected.clone().unwrap();
        assert!(value.len() <= MAX_TAG_VALUE, "{}", value.len());
        assert!(tags.is_rejected("ses-20300101-0027"), "newest kept");
        assert!(!tags.is_rejected("ses-20300101-0000"), "oldest dropped");
        assert!(!RotatorTags::default().is_rejected("x"));
        let ab = RotatorTags {
            rejected: Some("a b".into()),
            ..RotatorTags::default()
        };
        assert_eq!(
            TagUpdate::rejected(&ab, "a").pairs(),
            [(TAG_REJECTED, "a b")]
        );
    }

    #[test]
    fn tags_are_read_once_with_times_parsed() {
        let map: HashMap<String, String> = [
            (TAG_SWITCHED_TO, "new"),
            (TAG_SWITCHED_AT, "2030-05-01T00:00:00Z"),
            (TAG_CONFIRMED_AT, "yesterday"),
            (TAG_PREVIOUS, ""),
            ("owner", "someone"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let tags = RotatorTags::of(&map);
        assert!(tags.switch_to_is_known("NEW"));
        assert!(!tags.switch_to_is_known("old"));
        assert_eq!(tags.confirmed_at, None, "an unreadable time is no time");
        assert_eq!(tags.previous.as_deref(), Some(""), "empty is a value");
        assert_eq!(tags.confirmed, None);
    }
}
