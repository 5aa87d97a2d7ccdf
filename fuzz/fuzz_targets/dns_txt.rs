//! DNS TXT answers: raw bytes as a server's reply through the same decoding the lookup uses
//! ([`decode_txt_response`]), then the DKIM record check; and the bytes as one TXT record's
//! text straight into the tag parser.
//!
//! Checked beyond "no panic": `Published` only when the record's `p=` really is the key.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use ses_dkim_rotator::adapters::dns_wire::decode_txt_response;
use ses_dkim_rotator::engine::dns_check::{DnsCheck, TxtAnswer, check_dkim_record};

const KEY: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC1";

fn check(answer: &Result<TxtAnswer, ses_dkim_rotator::engine::dns_check::LookupFailure>) {
    let outcome = check_dkim_record(answer, KEY);
    if outcome == DnsCheck::Published {
        let Ok(TxtAnswer::Records(records)) = answer else {
            panic!("published without records");
        };
        assert_eq!(records.len(), 1);
        let compact: String = records[0].chars().filter(|c| !c.is_whitespace()).collect();
        assert!(
            compact.contains(&format!("p={KEY}")),
            "published without the key"
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
