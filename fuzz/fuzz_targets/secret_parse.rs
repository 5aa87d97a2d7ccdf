//! Secret documents: any `SecretString` through [`DkimSecret::parse`] (JSON, identity,
//! selectors, region, and the private key's base64 DER through the `rsa` crate).
//!
//! Checked beyond "no panic": an accepted document survives a write/read round trip
//! unchanged, and a refused one's error never repeats the `private_key` it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use ses_dkim_rotator::engine::secret_doc::DkimSecret;
use ses_dkim_rotator_fuzz::texts_of;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match DkimSecret::parse(text) {
        Ok(secret) => {
            let written = secret.to_secret_string();
            let again = DkimSecret::parse(written.expose()).expect("a written secret parses");
            assert!(again == secret, "round trip changed the document");
        }
        Err(message) => {
            assert!(message.len() <= 1024, "error of {} bytes", message.len());
            let Ok(Value::Object(mut doc)) = serde_json::from_str::<Value>(text) else {
                return;
            };
            let Some(Value::String(key)) = doc.remove("private_key") else {
                return;
            };
            // Only key-like text (base64 with a digit, 24+ characters) that no other field
            // repeats can be told apart from a field's (legitimately quoted, shortened) value
            // or from the message's own words.
            let key_like = key.len() >= 24
                && key.bytes().any(|b| b.is_ascii_digit())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
            let elsewhere = texts_of(&Value::Object(doc));
            if key_like && !elsewhere.iter().any(|t| t.contains(key.as_str())) {
                assert!(
                    !message.contains(key.as_str()),
                    "private_key echoed in error"
                );
            }
        }
    }
});
