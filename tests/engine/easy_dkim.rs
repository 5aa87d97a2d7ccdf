//! Easy DKIM adoption.

use super::*;

#[tokio::test]
async fn easy_dkim_that_signs_is_not_adopted_without_consent_and_nothing_changes() {
    let world = World::new(PublishMode::Route53);
    world.ses.set_status(DOMAIN, DkimStatus::Success);
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    let before = (world.secrets.snapshot(), world.zone.names());
    let err = world.step(Step::CreateSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "EasyDkimInUse");
    assert!(err.to_string().contains("DKIM_ADOPT_EASY_DKIM"), "{err}");
    assert!(err.to_string().contains("unsigned"), "{err}");
    assert_eq!((world.secrets.snapshot(), world.zone.names()), before);
    // The scheduled path refuses the same way (a secret Secrets Manager does not rotate).
    let scheduled = World::new(PublishMode::Route53);
    scheduled.ses.set_status(DOMAIN, DkimStatus::Success);
    let before = (scheduled.secrets.snapshot(), scheduled.zone.names());
    let report = scheduled.maintain().await;
    assert_eq!(report.action, Action::Failed, "{report:?}");
    assert_eq!(report.error_type, Some("EasyDkimInUse"));
    assert!(scheduled.ses.puts().is_empty());
    assert_eq!(
        (scheduled.secrets.snapshot(), scheduled.zone.names()),
        before
    );
}

#[tokio::test]
async fn easy_dkim_is_adopted_with_consent_and_the_origin_recorded() {
    let world = World::with_policy(
        PublishMode::Route53,
        RotationPolicy {
            adopt_easy_dkim: true,
            ..policy()
        },
    );
    world.ses.set_status(DOMAIN, DkimStatus::Success);
    assert_eq!(world.maintain().await.action, Action::Rotated);
    assert_eq!(
        world
            .secrets
            .tags(&world.arn)
            .get(TAG_ADOPTED_FROM)
            .map(String::as_str),
        Some("AWS_SES")
    );
    world.assert_invariant();
}

#[tokio::test]
async fn easy_dkim_that_does_not_sign_is_adopted_without_asking() {
    let world = World::new(PublishMode::Route53);
    // A new identity: Easy DKIM, PENDING (its CNAMEs were never published).
    assert_eq!(world.maintain().await.action, Action::Rotated);
    assert_eq!(world.ses.puts().len(), 1);
}

#[tokio::test]
async fn a_first_key_failing_after_easy_dkim_says_how_to_go_back() {
    let world = World::with_policy(
        PublishMode::Route53,
        RotationPolicy {
            adopt_easy_dkim: true,
            ..policy()
        },
    );
    world.ses.set_status(DOMAIN, DkimStatus::Success);
    world.maintain().await;
    world.ses_rejects_current();
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Failed, "{report:?}");
    let notification = notifications::for_identity(&report).unwrap();
    assert!(
        notification
            .text
            .contains("--signing-attributes-origin AWS_SES"),
        "{}",
        notification.text
    );
}
