//! Lambda payloads: any bytes the runtime could hand over, through the same JSON decoding and
//! [`parse_invocation`] the handler uses.
//!
//! Checked beyond "no panic": an error stays short (it never echoes a huge payload back), and
//! neither an error nor a parsed request's `Debug` shows the `RotationToken`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use ses_dkim_rotator::handler::parse_invocation;
use ses_dkim_rotator_fuzz::texts_of;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // A token worth looking for: long enough not to occur by chance in field names, and
    // nowhere else in the payload (a SecretId may legitimately contain the same text).
    let mut rest = payload.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("RotationToken");
    }
    let texts = texts_of(&rest);
    let rotation_token = payload
        .get("RotationToken")
        .and_then(Value::as_str)
        .filter(|t| t.len() >= 16 && !texts.iter().any(|text| text.contains(*t)))
        .map(str::to_owned);
    match parse_invocation(&payload) {
        Ok(invocation) => {
            if let Some(token) = &rotation_token {
                let shown = format!("{invocation:?}");
                assert!(!shown.contains(token.as_str()), "RotationToken in Debug");
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.len() <= 2048, "error of {} bytes", message.len());
            if let Some(token) = &rotation_token {
                assert!(!message.contains(token.as_str()), "RotationToken in error");
            }
        }
    }
});
