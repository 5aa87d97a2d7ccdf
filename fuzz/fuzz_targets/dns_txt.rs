//! DNS TXT answers: raw bytes as a server's reply through the same decoding the lookup uses
//! ([`decode_txt_response`]), then the DKIM record check; and the bytes as one TXT record's
//! text straight into the tag parser.
//!
//! Checked beyond "no panic": `Published` only when the record's `p=` tag is exactly the key
//! (an oracle of its own: RFC 6376 tag-list split, whitespace removed; a `p=` that merely
//! starts with the key, or a key found in another tag, is not published).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use ses_dkim_rotator::adapters::dns::wire::decode_txt_response;
use ses_dkim_rotator::engine::dns_check::{DnsCheck, TxtAnswer, check_dkim_record};

const KEY: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC1";

/// The value of the record's first `p` tag, whitespace removed (RFC 6376 §3.2 tag-list).
fn p_tag(record: &str) -> Option<String> {
    record.split(';').find_map(|tag| {
        let (name, value) = tag.split_once('=')?;
        (name.trim() == "p").then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

fn check(answer: &Result<TxtAnswer, ses_dkim_rotator::engine::dns_check::LookupFailure>) {
    let outcome = check_dkim_record(answer, KEY);
    if outcome == DnsCheck::Published {
        let Ok(TxtAnswer::Records(records)) = answer else {
            panic!("published without records");
        };
        assert_eq!(records.len(), 1);
        assert_eq!(
            p_tag(&records[0]).as_deref(),
            Some(KEY),
            "published, but the p= tag is not exactly the key"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    check(&decode_txt_response(server, data));
    if let Ok(text) = std::str::from_utf8(data) {
        check(&Ok(TxtAnswer::Records(vec![text.to_owned()])));
    }
});
