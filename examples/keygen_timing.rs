//! Times DKIM key generation as the rotation does it (`DkimKeyPair::generate`).
//!
//! `cargo run --release --example keygen_timing [samples]` prints median and p95 per size.

use std::time::Instant;

use ses_dkim_rotator::engine::key::{DkimKeyPair, KeyBits};

fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(41);
    for bits in [KeyBits::Rsa1024, KeyBits::Rsa2048] {
        let mut millis: Vec<f64> = (0..samples)
            .map(|_| {
                let start = Instant::now();
                DkimKeyPair::generate(bits).expect("key generation");
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        millis.sort_by(f64::total_cmp);
        let at = |q: f64| millis[((millis.len() - 1) as f64 * q).round() as usize];
        println!(
            "RSA-{bits}: median {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms ({samples} keys)",
            at(0.5),
            at(0.95),
            millis[0],
            millis[millis.len() - 1]
        );
    }
}
