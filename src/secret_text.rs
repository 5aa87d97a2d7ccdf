//! [`SecretText`]: a string that holds secret material (a private key, a rotation token).
//!
//! Its `Debug` and `Display` never show the content, and the memory is zeroed on drop, so a
//! value can travel through structs that are logged or formatted without leaking.

use std::fmt;
use zeroize::Zeroizing;

/// A secret string: redacted in `Debug`/`Display`, zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret value. Call only where the value must leave the process (an AWS request
    /// parameter) or be parsed; never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl fmt::Display for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = SecretText::new("MIIEpAIBAAKCAQEA-very-secret");
        assert_eq!(format!("{secret:?}"), "SecretText(<redacted>)");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(secret.expose(), "MIIEpAIBAAKCAQEA-very-secret");
    }
}
