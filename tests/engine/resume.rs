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
