//! Abort: cancelling a rotation the way that works on AWS.

use super::*;

#[tokio::test]
async fn abort_unblocks_rotate_secret_and_the_next_attempt_resumes_the_key() {
    let world = World::new(PublishMode::Hint);
    let first = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &first).await.unwrap();
    let handed_out = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    world.secrets.cancel_rotation(&world.arn);
    assert!(world.secrets.start_rotation(&world.arn).is_err());

    let (ses_calls, dns_calls) = (world.ses.calls().len(), world.zone.calls().len());
    let report = world.engine.abort(&world.arn).await.unwrap();
    assert_eq!(report.version.as_deref(), Some(first.as_str()));
    assert_eq!(report.selector.as_deref(), handed_out["selector"].as_str());
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_PENDING),
        None
    );
    assert!(
        world.secrets.value_of(&world.arn, &first).is_some(),
        "the version (and its key) is kept"
    );
    assert_eq!(
        (world.ses.calls().len(), world.zone.calls().len()),
        (ses_calls, dns_calls),
        "abort touches neither SES nor DNS"
    );

    let second = world.secrets.start_rotation(&world.arn).unwrap();
    assert_eq!(
        world.step(Step::CreateSecret, &second).await.unwrap(),
        Outcome::KeyResumed
    );
    let resumed = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    assert_eq!(resumed["selector"], handed_out["selector"]);

    // Nothing to abort: says so and changes nothing.
    let token = world.finish_by_hand(&second).await;
    let before = world.secrets.snapshot();
    let report = world.engine.abort(&world.arn).await.unwrap();
    assert_eq!(report.version, None);
    assert_eq!(world.secrets.snapshot(), before);
    drop(token);
}

impl World {
    /// Finishes the rotation of `token` in hint mode (a person publishes the record).
    pub(crate) async fn finish_by_hand(&self, token: &str) -> String {
        let pending = self.secrets.json(&self.arn, STAGE_PENDING).unwrap();
        self.zone.add(
            pending["dns_name"].as_str().unwrap(),
            pending["dns_value"].as_str().unwrap(),
        );
        for step in &STEPS[1..] {
            self.step(*step, token).await.unwrap();
        }
        token.to_owned()
    }
}

#[tokio::test]
async fn a_stored_pkcs8_key_is_accepted_and_sent_to_ses_as_pkcs1() {
    use base64::Engine as _;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let world = World::new(PublishMode::Route53);
    world.rotate().await;
    // An operator stored the current key as PKCS#8 (e.g. from `openssl genpkey`).
    let mut current = world.current();
    let pkcs1 = base64::engine::general_purpose::STANDARD
        .decode(current["private_key"].as_str().unwrap())
        .unwrap();
    let key = rsa::PrivateKey::from_pkcs1_der(&pkcs1).unwrap();
    let pkcs8 =
        base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8_der().unwrap().as_bytes());
    current["private_key"] = json!(pkcs8);
    world
        .secrets
        .overwrite(&world.arn, STAGE_CURRENT, &current.to_string());
    world.rotate().await;
    // Rolling back sends the stored PKCS#8 key to SES as PKCS#1.
    world.engine.rollback(&world.arn).await.unwrap();
    let sent = world.ses.key_of(DOMAIN).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(sent)
            .unwrap(),
        pkcs1
    );
}

#[tokio::test]
async fn the_guard_refuses_retirement_while_ses_has_not_verified_the_current_selector() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.clock.advance(time::Duration::days(91));
    world.maintain().await;
    let current = world.selector();
    // Tags that claim the current selector was confirmed long ago (stale, or edited by hand)
    // while SES still says PENDING: the guard, not the tags, decides.
    ses_dkim_rotator::engine::ports::SecretStore::set_tags(
        &world.secrets,
        &world.arn,
        &[
            (TAG_CONFIRMED, current.as_str()),
            (TAG_CONFIRMED_AT, "2000-01-01T00:00:00Z"),
        ],
    )
    .await
    .unwrap();
    let err = world.engine.retire_previous(&world.arn).await.unwrap_err();
    assert_eq!(err.error_type(), "RetireRefused", "{err}");
    assert!(err.to_string().contains("not verified"), "{err}");
    assert_eq!(world.record(&first).len(), 1);
}
