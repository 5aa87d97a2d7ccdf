//! The scheduled run's read cache (`engine::read_cache::CachedPorts`) over the in-memory ports:
//! after every write its answers are the store's answers, a failed write makes the next read
//! ask the store, SES is read afresh after a put, and a scheduled rotation reads each thing
//! once.

use serde_json::json;
use ses_dkim_rotator::engine::identity::AllowedIdentities;
use ses_dkim_rotator::engine::key::{DkimKeyPair, KeyBits};
use ses_dkim_rotator::engine::ports::Deadline;
use ses_dkim_rotator::engine::ports::{
    DkimSigningService, FailureKind, Ports, STAGE_CURRENT, SecretStore, VersionRef,
};
use ses_dkim_rotator::engine::read_cache::CachedPorts;
use ses_dkim_rotator::engine::schedule::{Action, MaintainOptions};
use ses_dkim_rotator::engine::{Engine, RotationPolicy};
use ses_dkim_rotator::secret_text::SecretText;
use ses_dkim_rotator::testing::{MemoryPorts, PublishMode, memory_ports};
use time::macros::datetime;

const DOMAIN: &str = "example.com";

fn world() -> (MemoryPorts, String) {
    let ports = memory_ports(PublishMode::Route53, datetime!(2030-01-10 08:00 UTC));
    ports.ses.create_identity(DOMAIN);
    let arn = ports
        .secrets
        .create_secret("dkim/example", &json!({"identity": DOMAIN}).to_string());
    (ports, arn)
}

fn count(calls: &[String], operation: &str) -> usize {
    calls.iter().filter(|c| c.ends_with(operation)).count()
}

/// The cache's description equals the store's, read directly.
async fn assert_same_view(cached: &CachedPorts<'_, MemoryPorts>, ports: &MemoryPorts, arn: &str) {
    let seen = cached.secrets().describe(arn).await.unwrap();
    let truth = ports.secrets.describe(arn).await.unwrap();
    let sorted = |d: &ses_dkim_rotator::engine::ports::SecretDescription| {
        let mut versions: Vec<_> = d
            .versions
            .iter()
            .map(|(id, stages)| {
                let mut stages = stages.clone();
                stages.sort();
                (id.clone(), stages)
            })
            .filter(|(_, stages)| !stages.is_empty())
            .collect();
        versions.sort();
        let mut tags: Vec<_> = d.tags.clone().into_iter().collect();
        tags.sort();
        (versions, tags, d.rotation_enabled)
    };
    assert_eq!(
        sorted(&seen),
        sorted(&truth),
        "the cache and the store disagree"
    );
}

#[tokio::test]
async fn after_every_write_the_cache_answers_what_the_store_would() {
    let (ports, arn) = world();
    let cached = CachedPorts::new(&ports);
    let store = cached.secrets();
    assert_same_view(&cached, &ports, &arn).await;
    let current_id = ports
        .secrets
        .version_with_stage(&arn, STAGE_CURRENT)
        .unwrap();
    store.read(&arn, VersionRef::Current).await.unwrap();

    store.set_tags(&arn, &[("k", "v")]).await.unwrap();
    assert_same_view(&cached, &ports, &arn).await;

    let value = SecretText::new(json!({"identity": DOMAIN, "n": 2}).to_string());
    store.put_pending(&arn, "t-2", &value, None).await.unwrap();
    assert_same_view(&cached, &ports, &arn).await;
    let pending = store.read(&arn, VersionRef::Pending("t-2")).await.unwrap();
    assert_eq!(pending.unwrap().secret_string, value);

    store.promote(&arn, "t-2", Some(&current_id)).await.unwrap();
    assert_same_view(&cached, &ports, &arn).await;
    let current = store
        .read(&arn, VersionRef::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        current.version_id, "t-2",
        "AWSCURRENT moved with the promotion"
    );
    let previous = store
        .read(&arn, VersionRef::Previous)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previous.version_id, current_id, "AWSPREVIOUS followed");

    store.clear_pending(&arn, "t-2").await.unwrap();
    assert_same_view(&cached, &ports, &arn).await;
    assert_eq!(
        store.read(&arn, VersionRef::Pending("t-2")).await.unwrap(),
        None,
        "no AWSPENDING, no pending value"
    );
    // Everything above after the first reads came from the cache.
    let calls = ports.secrets.calls();
    assert_eq!(count(&calls, "GetSecretValue"), 1, "{calls:?}");
}

#[tokio::test]
async fn a_failed_write_makes_the_next_read_ask_the_store() {
    let (ports, arn) = world();
    let cached = CachedPorts::new(&ports);
    cached.secrets().describe(&arn).await.unwrap();
    cached.secrets().describe(&arn).await.unwrap();
    assert_eq!(count(&ports.secrets.calls(), "DescribeSecret"), 1);
    ports
        .secrets
        .fail_next("TagResource", FailureKind::Unavailable);
    cached
        .secrets()
        .set_tags(&arn, &[("k", "v")])
        .await
        .unwrap_err();
    cached.secrets().describe(&arn).await.unwrap();
    assert_eq!(count(&ports.secrets.calls(), "DescribeSecret"), 2);
}

#[tokio::test]
async fn ses_is_read_again_after_a_put() {
    let (ports, _) = world();
    let cached = CachedPorts::new(&ports);
    let key = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
    cached.ses().dkim_state(DOMAIN, None).await.unwrap();
    cached.ses().dkim_state(DOMAIN, None).await.unwrap();
    assert_eq!(count(&ports.ses.calls(), "GetEmailIdentity"), 1);
    cached
        .ses()
        .sign_with_external_key(DOMAIN, None, "sel-1", key.private_key())
        .await
        .unwrap();
    let after = cached
        .ses()
        .dkim_state(DOMAIN, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.selectors, ["sel-1"], "SES's answer after the put");
    assert_eq!(count(&ports.ses.calls(), "GetEmailIdentity"), 2);
}

#[tokio::test]
async fn a_scheduled_rotation_reads_each_thing_once() {
    let (ports, arn) = world();
    let (secrets, ses, zone) = (ports.secrets.clone(), ports.ses.clone(), ports.dns.clone());
    let policy = RotationPolicy {
        allowed_identities: AllowedIdentities::parse("*").unwrap(),
        adopt_easy_dkim: true,
        ..RotationPolicy::default()
    };
    let engine = Engine::new(ports, policy);
    let options = MaintainOptions {
        force: false,
        dry_run: false,
        rotation_interval: time::Duration::days(90),
        deadline: Deadline::NONE,
        record_published: false,
    };
    let report = engine.maintain(&arn, &options).await;
    assert_eq!(report.action, Action::Rotated, "{report:?}");
    let (secret_calls, ses_calls) = (secrets.calls(), ses.calls());
    assert_eq!(
        count(&secret_calls, "DescribeSecret"),
        1,
        "{secret_calls:?}"
    );
    assert_eq!(
        count(&secret_calls, "GetSecretValue"),
        1,
        "{secret_calls:?}"
    );
    assert_eq!(
        count(&ses_calls, "GetEmailIdentity"),
        2,
        "once to decide, once after the switch: {ses_calls:?}"
    );
    // DNS is never cached: the check before the switch asks again.
    assert_eq!(count(&zone.calls(), "Lookup"), 2, "{:?}", zone.calls());
}
