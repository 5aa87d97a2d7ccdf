//! DKIM RSA keys: generation, the encodings SES and DNS expect, and checking a stored key.
//!
//! - Private key: bare base64 of the PKCS#1 `RSAPrivateKey` DER, no PEM armour, no newlines:
//!   exactly what SES's `DomainSigningPrivateKey` takes.
//! - Public key: base64 of the `SubjectPublicKeyInfo` DER (what `openssl rsa -pubout` gives),
//!   which is what the DKIM `p=` tag holds.
//! - TXT value: `v=DKIM1; k=rsa; p=<public key>`, and its DNS presentation as quoted strings
//!   of at most 255 characters inside one record (RFC 6376 §3.6.2.2).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::PrivateKey as RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;

use crate::secret_text::SecretText;

/// The longest character-string one DNS TXT string may hold.
pub const TXT_STRING_MAX: usize = 255;

/// RSA key sizes SES accepts for BYODKIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyBits {
    /// 1024-bit RSA: the default; its TXT value fits one DNS string.
    Rsa1024,
    /// 2048-bit RSA: recommended by RFC 8301; its TXT value needs several strings.
    Rsa2048,
}

impl KeyBits {
    /// The size in bits.
    pub fn bits(self) -> u32 {
        match self {
            KeyBits::Rsa1024 => 1024,
            KeyBits::Rsa2048 => 2048,
        }
    }

    /// Maps a modulus size to a supported key size.
    pub fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            1024 => Some(KeyBits::Rsa1024),
            2048 => Some(KeyBits::Rsa2048),
            _ => None,
        }
    }
}

impl fmt::Display for KeyBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bits())
    }
}

impl FromStr for KeyBits {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim()
            .parse::<u32>()
            .ok()
            .and_then(KeyBits::from_bits)
            .ok_or_else(|| {
                format!(
                    "`{}` is not a key size SES accepts; use 1024 or 2048",
                    super::quoting::quote_prefix(text)
                )
            })
    }
}

/// Why a key could not be made or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Random prime search or encoding failed (should not happen on a healthy host).
    #[error("RSA key generation failed: {0}")]
    Generation(String),
    /// The stored private key is not base64.
    #[error("the private key is not bare base64 (no PEM header, no newlines)")]
    NotBase64,
    /// The stored private key is base64 but neither PKCS#1 nor PKCS#8 RSA DER.
    #[error(
        "the private key is neither a PKCS#1 RSAPrivateKey nor a PKCS#8 PrivateKeyInfo (RSA) in DER form"
    )]
    NotRsaDer,
    /// The key has a size SES does not accept.
    #[error("the key is {0} bits; SES accepts 1024 or 2048")]
    UnsupportedSize(u32),
}

/// An RSA key pair for DKIM, already encoded for SES and DNS.
#[derive(Clone, PartialEq, Eq)]
pub struct DkimKeyPair {
    private_key: SecretText,
    public_key: String,
    bits: KeyBits,
}

impl fmt::Debug for DkimKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKeyPair")
            .field("private_key", &self.private_key)
            .field("public_key", &self.public_key)
            .field("bits", &self.bits)
            .finish()
    }
}

impl DkimKeyPair {
    /// Generates a new key of the given size from the operating system's random source.
    pub fn generate(bits: KeyBits) -> Result<Self, KeyError> {
        let key = RsaPrivateKey::new(&mut rand::rngs::SysRng, bits.bits() as usize)
            .map_err(|e| KeyError::Generation(e.to_string()))?;
        Self::from_rsa(&key)
    }

    /// Reads a stored private key (bare base64 DER, PKCS#1 or PKCS#8) and derives its public
    /// half. The key it holds afterwards is PKCS#1, whatever was stored.
    pub fn from_private_key(private_key: &SecretText) -> Result<Self, KeyError> {
        let der = zeroize::Zeroizing::new(
            BASE64
                .decode(private_key.expose())
                .map_err(|_| KeyError::NotBase64)?,
        );
        // SES takes PKCS#1 or PKCS#8 (AWS's troubleshooting page asks for PKCS#1): a stored
        // PKCS#8 key is read as is and re-encoded, so SES is always sent PKCS#1.
        let key = RsaPrivateKey::from_pkcs1_der(&der)
            .or_else(|_| RsaPrivateKey::from_pkcs8_der(&der))
            .map_err(|_| KeyError::NotRsaDer)?;
        Self::from_rsa(&key)
    }

    fn from_rsa(key: &RsaPrivateKey) -> Result<Self, KeyError> {
        let modulus_bits = (key.size() * 8) as u32;
        let bits =
            KeyBits::from_bits(modulus_bits).ok_or(KeyError::UnsupportedSize(modulus_bits))?;
        let private_der = key
            .to_pkcs1_der()
            .map_err(|e| KeyError::Generation(e.to_string()))?;
        let public_der = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| KeyError::Generation(e.to_string()))?;
        Ok(Self {
            private_key: SecretText::new(BASE64.encode(private_der.as_bytes())),
            public_key: BASE64.encode(public_der.as_bytes()),
            bits,
        })
    }

    /// The private key as SES's `DomainSigningPrivateKey` wants it. Secret: never log it.
    pub fn private_key(&self) -> &SecretText {
        &self.private_key
    }

    /// Base64 of the SubjectPublicKeyInfo DER: the DKIM `p=` value.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The key size.
    pub fn bits(&self) -> KeyBits {
        self.bits
    }

    /// The DKIM TXT record value, unsplit.
    pub fn txt_value(&self) -> String {
        txt_value_for(&self.public_key)
    }
}

/// The DKIM TXT value that publishes `public_key`.
pub fn txt_value_for(public_key: &str) -> String {
    format!("v=DKIM1; k=rsa; p={public_key}")
}

/// Splits a TXT value into character-strings of at most [`TXT_STRING_MAX`] bytes.
///
/// The value is ASCII (base64 and tag syntax), so splitting on bytes never cuts a character.
pub fn split_txt_strings(value: &str) -> Vec<&str> {
    let mut rest = value;
    let mut parts = Vec::with_capacity(value.len() / TXT_STRING_MAX + 1);
    while rest.len() > TXT_STRING_MAX {
        let mut cut = TXT_STRING_MAX;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

/// The zone-file presentation of one TXT record holding `value`: `"…" "…"`.
pub fn txt_presentation(value: &str) -> String {
    split_txt_strings(value)
        .iter()
        .map(|part| format!("\"{}\"", part.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bits_parse_accepts_only_ses_sizes() {
        assert_eq!("1024".parse::<KeyBits>(), Ok(KeyBits::Rsa1024));
        assert_eq!(" 2048 ".parse::<KeyBits>(), Ok(KeyBits::Rsa2048));
        for bad in ["4096", "512", "", "abc", "-1"] {
            let err = bad.parse::<KeyBits>().unwrap_err();
            assert!(err.contains("1024 or 2048"), "{err}");
        }
    }

    #[test]
    fn generated_1024_key_round_trips_and_fits_one_string() {
        let pair = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
        assert_eq!(pair.bits(), KeyBits::Rsa1024);
        let again = DkimKeyPair::from_private_key(pair.private_key()).unwrap();
        assert_eq!(again, pair);
        assert!(!pair.private_key().expose().contains('\n'));
        assert!(!pair.private_key().expose().contains("BEGIN"));
        // SubjectPublicKeyInfo of RSA always starts with this DER prefix.
        assert!(
            pair.public_key().starts_with("MIGf"),
            "{}",
            pair.public_key()
        );
        assert_eq!(split_txt_strings(&pair.txt_value()).len(), 1);
    }

    #[test]
    fn generated_2048_key_is_split_into_several_strings() {
        let pair = DkimKeyPair::generate(KeyBits::Rsa2048).unwrap();
        assert_eq!(pair.bits(), KeyBits::Rsa2048);
        assert!(pair.public_key().starts_with("MIIBIjAN"));
        let value = pair.txt_value();
        let parts = split_txt_strings(&value);
        assert!(parts.len() >= 2);
        assert!(parts.iter().all(|p| p.len() <= TXT_STRING_MAX));
        assert_eq!(parts.concat(), value);
        let shown = txt_presentation(&value);
        assert!(shown.starts_with("\"v=DKIM1; k=rsa; p=MIIB"));
        assert_eq!(shown.matches("\" \"").count(), parts.len() - 1);
    }

    #[test]
    fn split_handles_exact_boundaries() {
        let exact = "a".repeat(TXT_STRING_MAX);
        assert_eq!(split_txt_strings(&exact), vec![exact.as_str()]);
        let over = "b".repeat(TXT_STRING_MAX + 1);
        assert_eq!(split_txt_strings(&over).len(), 2);
        assert_eq!(split_txt_strings(""), vec![""]);
    }

    #[test]
    fn bad_private_keys_are_named() {
        assert_eq!(
            DkimKeyPair::from_private_key(&SecretText::new("-----BEGIN RSA")),
            Err(KeyError::NotBase64)
        );
        assert_eq!(
            DkimKeyPair::from_private_key(&SecretText::new("aGVsbG8=")),
            Err(KeyError::NotRsaDer)
        );
    }

    #[test]
    fn debug_redacts_private_key() {
        let pair = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
        let shown = format!("{pair:?}");
        assert!(!shown.contains(pair.private_key().expose()));
        assert!(shown.contains("<redacted>"));
    }
}
