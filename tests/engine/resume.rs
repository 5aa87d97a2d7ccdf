//! Resume.

use super::*;

#[tokio::test]
async fn an_abandoned_attempt_is_resumed_with_the_same_key() {
    let world = World::new(PublishMode::Hint);
    let first = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &first).await.unwrap();
    let handed_out = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    // A person gives up on it the way that works on AWS: AWSPENDING off, then rotate again.
    ses_dkim_rotator::engine::ports::SecretStore::clear_pending(&world.secrets, &world.arn, &first)
        .await
        .unwrap();
    let second = world.secrets.start_rotation(&world.arn).unwrap();
    assert_eq!(
        world.step(Step::CreateSecret, &second).await.unwrap(),
        Outcome::KeyResumed
    );
    let resumed = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    assert_eq!(resumed["selector"], handed_out["selector"]);
    assert_eq!(resumed["private_key"], handed_out["private_key"]);
}

#[tokio::test]
async fn cancel_rotate_secret_alone_blocks_the_next_rotation_as_on_aws() {
    let world = World::new(PublishMode::Hint);
    let first = world.secrets.start_rotation(&world.arn).unwrap();
    world.step(Step::CreateSecret, &first).await.unwrap();
    world.secrets.cancel_rotation(&world.arn);
    let err = world.secrets.start_rotation(&world.arn).unwrap_err();
    assert!(err.message.contains("previous rotation"), "{err}");
}

#[tokio::test]
async fn a_version_the_rotator_did_not_write_is_never_resumed() {
    use ses_dkim_rotator::engine::ports::SecretStore;
    use ses_dkim_rotator::secret_text::SecretText;
    // Someone who may write the secret (but not the rotator's tags) stores a key of their
    // choosing as a new, unlabelled version: a valid key, for the same identity.
    let world = World::new(PublishMode::Hint);
    let elsewhere = World::new(PublishMode::Hint);
    let token = elsewhere.secrets.start_rotation(&elsewhere.arn).unwrap();
    elsewhere.step(Step::CreateSecret, &token).await.unwrap();
    let planted = elsewhere
        .secrets
        .json(&elsewhere.arn, STAGE_PENDING)
        .unwrap();
    assert_eq!(planted["identity"], DOMAIN);
    let body = SecretText::new(planted.to_string());
    world
        .secrets
        .put_pending(&world.arn, "planted-version", &body, None)
        .await
        .unwrap();
    world
        .secrets
        .clear_pending(&world.arn, "planted-version")
        .await
        .unwrap();

    let second = world.secrets.start_rotation(&world.arn).unwrap();
    assert_eq!(
        world.step(Step::CreateSecret, &second).await.unwrap(),
        Outcome::KeyCreated,
        "only the version the rotator's attempt tag names is resumed"
    );
    let pending = world.secrets.json(&world.arn, STAGE_PENDING).unwrap();
    assert_ne!(pending["private_key"], planted["private_key"]);
    assert_ne!(pending["selector"], planted["selector"]);
    assert_eq!(
        world.secrets.value_of(&world.arn, "planted-version"),
        Some(planted.to_string()),
        "the planted version is left as it was"
    );
}
