//! Rollback on FAILED.

use super::*;

impl World {
    /// One finished rotation, then a second whose finishSecret SES answers with `FAILED` (and
    /// the engine rolls back): the world, the first selector, the second token, the error.
    pub(crate) async fn second_key_rejected_by_ses() -> (World, String, String, EngineError) {
        let world = World::new(PublishMode::Route53);
        world.rotate().await;
        let previous = world.selector();
        world.ses.set_status_after_put(Some(DkimStatus::Failed));
        let token = world.secrets.start_rotation(&world.arn).unwrap();
        for step in &STEPS[..3] {
            world.step(*step, &token).await.unwrap();
        }
        let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
        assert!(err.rolled_back(), "{err}");
        (world, previous, token, err)
    }
}

#[tokio::test]
async fn ses_failing_the_new_key_puts_the_previous_one_back() {
    let (world, previous, _, err) = World::second_key_rejected_by_ses().await;
    assert!(matches!(
        &err,
        EngineError::SesRejectedKey { rollback: Rollback::Done { selector }, .. } if *selector == previous
    ));
    assert_eq!(world.ses_selector(), Some(previous.clone()));
    assert_eq!(world.selector(), previous, "AWSCURRENT unchanged");
    let puts = world.ses.puts();
    assert_eq!(
        puts.len(),
        3,
        "first rotation, new key, previous key back: {puts:?}"
    );

    // What the step path makes of it: a real rollback, counted and told.
    let notification = notifications::for_error(&world.arn, Some(DOMAIN), &err);
    assert_eq!(notification.kind, NotificationKind::RolledBack);
}

#[tokio::test]
async fn a_first_key_failing_has_nothing_to_roll_back_to_and_says_so() {
    let world = World::new(PublishMode::Route53);
    world.ses.set_status_after_put(Some(DkimStatus::Failed));
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    for step in &STEPS[..3] {
        world.step(*step, &token).await.unwrap();
    }
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert!(matches!(
        err,
        EngineError::SesRejectedKey {
            rollback: Rollback::NoPreviousKey,
            ..
        }
    ));
    assert!(!err.rolled_back());
    assert_eq!(
        notifications::for_error(&world.arn, Some(DOMAIN), &err).kind,
        NotificationKind::Failure
    );
}

#[tokio::test]
async fn operator_rollback_restores_the_previous_key_and_version() {
    let world = World::new(PublishMode::Route53);
    world.rotate().await;
    let first = world.selector();
    let first_version = world
        .secrets
        .version_with_stage(&world.arn, STAGE_CURRENT)
        .unwrap();
    world.rotate().await;
    assert_ne!(world.selector(), first);
    let inspection = world.engine.rollback(&world.arn).await.unwrap();
    assert_eq!(inspection.current_selector.as_deref(), Some(first.as_str()));
    assert_eq!(world.ses_selector(), Some(first));
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_CURRENT),
        Some(first_version)
    );
    world.assert_invariant();
}

#[tokio::test]
async fn operator_rollback_refuses_when_the_previous_record_is_gone() {
    let world = World::new(PublishMode::Route53);
    world.rotate().await;
    let first = world.selector();
    world.rotate().await;
    world.zone.remove(&format!("{first}._domainkey.{DOMAIN}"));
    let before = (world.secrets.snapshot(), world.ses.state_of(DOMAIN));
    let err = world.engine.rollback(&world.arn).await.unwrap_err();
    assert_eq!(err.error_type(), "RollbackRefused");
    assert!(err.to_string().contains(&first), "{err}");
    assert_eq!(
        (world.secrets.snapshot(), world.ses.state_of(DOMAIN)),
        before
    );
}

#[tokio::test]
async fn operator_rollback_without_a_previous_key_is_its_own_error() {
    let world = World::new(PublishMode::Route53);
    world.rotate().await;
    let err = world.engine.rollback(&world.arn).await.unwrap_err();
    assert_eq!(err.error_type(), "RollbackRefused");
    assert!(err.to_string().contains("AWSPREVIOUS"), "{err}");
}
