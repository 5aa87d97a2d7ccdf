//! The rotation engine: pure Rust, no AWS SDK types.
//!
//! - [`key`]: RSA key generation and the encodings SES and DNS want.
//! - [`selector`]: DKIM selector names SES accepts.
//! - [`dns_check`]: judging a DKIM TXT record as DNS serves it.
//! - [`identity`]: domain identities and the allow-list that guards against a confused deputy.
//! - [`secret_doc`]: the JSON document kept in each Secrets Manager version.
//! - [`operations`]: inspecting a secret and rolling back, for the CLI.
//! - [`ports`]: the traits through which the engine reaches Secrets Manager, SES and the clock.
//! - [`retirement`]: removing the previous selector's record after the grace period.
//! - [`schedule`]: the scheduled run for one secret and for a fleet.
//! - [`rotation`]: the four Secrets Manager rotation steps, driven through the ports.
//! - [`quoting`]: how error messages quote a refused value (briefly).

pub mod dns_check;
pub mod identity;
pub mod key;
pub mod operations;
pub mod ports;
pub mod quoting;
pub mod retirement;
pub mod rotation;
pub mod schedule;
pub mod secret_doc;
pub mod selector;
