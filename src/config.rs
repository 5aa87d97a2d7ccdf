//! Settings read once from the environment at start-up, each checked with a clear message.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DKIM_KEY_BITS` | `1024` | RSA size of new keys: `1024` or `2048` |
//! | `DKIM_SELECTOR_PREFIX` | `ses` | start of new selectors (`<prefix>-<yyyymmdd>-<hex4>`) |
//! | `DKIM_ALLOWED_IDENTITIES` | unset = refuse all | comma list of domains, or `*` |

use crate::engine::identity::AllowedIdentities;
use crate::engine::key::KeyBits;
use crate::engine::rotation::RotationPolicy;
use crate::engine::selector::SelectorPrefix;
use crate::error::RotatorError;

/// All settings of the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// What the rotation engine needs.
    pub policy: RotationPolicy,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, RotatorError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, RotatorError> {
        let key_bits = match lookup("DKIM_KEY_BITS") {
            None => KeyBits::Rsa1024,
            Some(text) => text
                .parse()
                .map_err(|reason| RotatorError::InvalidSetting {
                    name: "DKIM_KEY_BITS",
                    reason,
                })?,
        };
        let selector_prefix = match lookup("DKIM_SELECTOR_PREFIX") {
            None => SelectorPrefix::default(),
            Some(text) => SelectorPrefix::parse(text.trim()).map_err(|reason| {
                RotatorError::InvalidSetting {
                    name: "DKIM_SELECTOR_PREFIX",
                    reason,
                }
            })?,
        };
        let allowed_identities = match lookup("DKIM_ALLOWED_IDENTITIES") {
            None => AllowedIdentities::Unset,
            Some(text) => {
                AllowedIdentities::parse(&text).map_err(|reason| RotatorError::InvalidSetting {
                    name: "DKIM_ALLOWED_IDENTITIES",
                    reason,
                })?
            }
        };
        Ok(Self {
            policy: RotationPolicy {
                key_bits,
                selector_prefix,
                allowed_identities,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, RotatorError> {
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
    fn bad_values_name_the_variable_and_the_fix() {
        for (name, value, hint) in [
            ("DKIM_KEY_BITS", "4096", "1024 or 2048"),
            (
                "DKIM_SELECTOR_PREFIX",
                "my_prefix",
                "no dots or underscores",
            ),
            ("DKIM_ALLOWED_IDENTITIES", "a.com,*", "stand alone"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.error_type(), "InvalidSetting");
            let text = err.to_string();
            assert!(text.contains(name) && text.contains(hint), "{text}");
        }
    }
}
