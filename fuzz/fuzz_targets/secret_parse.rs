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
            let private_key = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("private_key")?.as_str().map(str::to_owned))
                .filter(|k| k.len() >= 16);
            if let Some(key) = private_key {
                assert!(
                    !message.contains(key.as_str()),
                    "private_key echoed in error"
                );
            }
        }
    }
});
