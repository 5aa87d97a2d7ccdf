//! In-memory ports for tests (feature `testing`; plain `cargo test` turns it on): the whole
//! engine runs with no emulator, no network and no wall-clock wait.
//!
//! - [`MemorySecrets`]: Secrets Manager with AWS's staging-label rules (one label on one
//!   version; `AWSPREVIOUS` follows `AWSCURRENT`; `PutSecretValue` idempotent per token;
//!   `RotateSecret` refuses while `AWSPENDING` sits on a version that is not current).
//! - [`FakeSes`]: SESv2 DKIM as AWS documents it: a new identity starts on Easy DKIM
//!   (`PENDING`, three tokens); an `EXTERNAL` put answers `PENDING` with the selector in
//!   `Tokens`; [`FakeSes::check_dns`] is "SES looks now" (`SUCCESS` when the zone serves the
//!   key, else still `PENDING`, or `FAILED` once the window is over); tests may force a status.
//! - [`MemoryZone`]: one DNS zone, as publisher and as lookup.
//! - [`ManualClock`]: time moves only when a test (or a sleep) moves it.
//!
//! - [`RecordingNotifier`], [`MemoryQueue`]: keep what they were sent.
//!
//! One fake per file. Every fake records its calls ([`CallLog`]) and can be told to fail a
//! named operation.

mod call_log;
mod clock;
mod notifier;
mod queue;
mod quota;
mod secrets;
mod ses;
mod zone;

use time::OffsetDateTime;

use crate::engine::ports::PortSet;

pub use self::call_log::CallLog;
pub use self::clock::ManualClock;
pub use self::notifier::RecordingNotifier;
pub use self::queue::MemoryQueue;
pub use self::quota::RequestQuota;
pub use self::secrets::{LIST_PAGE_SIZE, MemorySecrets};
pub use self::ses::{FakeSes, HOME_REGION};
pub use self::zone::{MemoryZone, PublishMode};

/// The in-memory ports bundle.
pub type MemoryPorts = PortSet<MemorySecrets, FakeSes, MemoryZone, MemoryZone, ManualClock>;

/// A fresh in-memory world: secrets, SES, one zone (publishing like `mode`), a clock at `start`.
pub fn memory_ports(mode: PublishMode, start: OffsetDateTime) -> MemoryPorts {
    let clock = ManualClock::at(start);
    let zone = MemoryZone::new(mode);
    PortSet {
        secrets: MemorySecrets::new(),
        ses: FakeSes::new(clock.clone()),
        dns: zone.clone(),
        lookup: zone,
        clock,
    }
}
