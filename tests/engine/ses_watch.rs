//! SES as it really behaves: watch, confirm, roll back, alert.

use super::*;

impl World {
    /// Rotates on schedule and lets SES confirm; returns the selector.
    pub(crate) async fn rotate_confirmed(&self) -> String {
        let report = self.maintain().await;
        assert!(
            matches!(report.action, Action::Rotated | Action::Resumed),
            "{report:?}"
        );
        self.ses_checks();
        assert_eq!(self.maintain().await.action, Action::Confirmed);
        self.selector()
    }

    /// Makes SES reject the current key: its record disappears and 72 hours pass.
    pub(crate) fn ses_rejects_current(&self) {
        let selector = self.selector();
        self.zone.remove(&format!("{selector}._domainkey.{DOMAIN}"));
        self.clock.advance(time::Duration::hours(72));
        self.ses_checks();
        assert_eq!(
            self.ses.state_of(DOMAIN).unwrap().status,
            Some(DkimStatus::Failed)
        );
    }
}

#[tokio::test]
async fn grace_counts_from_confirmation_not_from_the_switch() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.clock.advance(time::Duration::days(91));
    assert_eq!(world.maintain().await.action, Action::Rotated);
    // SES takes two days to confirm the new selector.
    world.clock.advance(time::Duration::days(2));
    assert_eq!(world.maintain().await.action, Action::Pending);
    world.ses_checks();
    assert_eq!(world.maintain().await.action, Action::Confirmed);
    assert!(
        world
            .secrets
            .tags(&world.arn)
            .contains_key(TAG_CONFIRMED_AT)
    );
    // 7 days after the switch, but only 5 after confirmation: still published.
    world.clock.advance(time::Duration::days(5));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Skipped, "{report:?}");
    assert_eq!(world.record(&first).len(), 1);
    world.clock.advance(time::Duration::days(2));
    assert_eq!(world.maintain().await.action, Action::Retired);
    assert!(world.record(&first).is_empty());
}

#[tokio::test]
async fn no_previous_record_is_retired_while_the_current_selector_is_not_success() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.clock.advance(time::Duration::days(91));
    assert_eq!(world.maintain().await.action, Action::Rotated);
    // SES never gets round to it (up to 72 h on AWS; here: a month of daily runs).
    for _ in 0..30 {
        world.clock.advance(time::Duration::days(1));
        let report = world.maintain().await;
        assert_ne!(report.action, Action::Retired, "{report:?}");
        assert_eq!(world.record(&first).len(), 1, "retired while PENDING");
    }
    // Nor through a retirement attempt made directly.
    let report = world.engine.retire_previous(&world.arn).await.unwrap();
    assert_ne!(report.outcome, RetireOutcome::Deleted);
    assert_eq!(world.record(&first).len(), 1);
}

#[tokio::test]
async fn the_watcher_rolls_back_a_key_ses_failed_and_never_puts_it_again() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    let first_version = world
        .secrets
        .version_with_stage(&world.arn, STAGE_CURRENT)
        .unwrap();
    world.clock.advance(time::Duration::days(91));
    assert_eq!(world.maintain().await.action, Action::Rotated);
    let rejected = world.selector();
    world.ses_rejects_current();

    let report = world.maintain().await;
    assert_eq!(report.action, Action::RolledBack, "{report:?}");
    assert!(report.rolled_back);
    assert_eq!(
        world.ses_selector(),
        Some(first.clone()),
        "SES is back on the previous key"
    );
    assert_eq!(
        world.selector(),
        first,
        "AWSCURRENT is the previous key again"
    );
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_CURRENT),
        Some(first_version)
    );
    assert_eq!(
        world.secrets.tags(&world.arn).get(TAG_REJECTED),
        Some(&rejected)
    );
    world.assert_invariant();
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::RolledBack);
    let summary = ses_dkim_rotator::engine::schedule::FleetSummary {
        counts: Default::default(),
        identities: vec![report],
    };
    let counts: Value =
        serde_json::from_str(&metrics::fleet_lines("Ns", 0, &summary, &gauge_rules())[0]).unwrap();
    assert_eq!(counts["Rollbacks"], 1);

    // The next run starts a fresh key (the old one is due); the rejected one is never put.
    world.ses_checks();
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Rotated, "{report:?}");
    let fresh = world.selector();
    assert_ne!(fresh, rejected);
    assert_ne!(fresh, first);
    let rejected_puts = world
        .ses
        .puts()
        .iter()
        .filter(|(_, selector)| *selector == rejected)
        .count();
    assert_eq!(rejected_puts, 1, "the rejected selector was put again");
    world.assert_invariant();
}

#[tokio::test]
async fn the_watcher_does_not_guess_when_the_previous_record_is_gone() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.clock.advance(time::Duration::days(91));
    world.maintain().await;
    world.ses_rejects_current();
    world.zone.remove(&format!("{first}._domainkey.{DOMAIN}"));
    let before = (world.secrets.snapshot(), world.ses.state_of(DOMAIN));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Failed, "{report:?}");
    assert!(!report.rolled_back);
    assert_eq!(
        (world.secrets.snapshot(), world.ses.state_of(DOMAIN)),
        before
    );
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::Failure);
    assert!(
        notification.text.contains(&first),
        "says which record to re-publish: {}",
        notification.text
    );
}

#[tokio::test]
async fn a_secrets_manager_retry_never_puts_a_rejected_key_back() {
    let (world, previous, token, _) = World::second_key_rejected_by_ses().await;
    world.ses.set_status_after_put(None);
    let puts = world.ses.puts().len();
    // Secrets Manager retries the failed step: no flip-flop back to the rejected key.
    let err = world.step(Step::FinishSecret, &token).await.unwrap_err();
    assert_eq!(err.error_type(), "SelectorRejected", "{err}");
    assert_eq!(world.ses.puts().len(), puts);
    assert_eq!(world.ses_selector(), Some(previous));
}

#[tokio::test]
async fn pending_too_long_raises_an_alert() {
    let world = World::new(PublishMode::Route53);
    world.maintain().await;
    world.clock.advance(time::Duration::hours(23));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Pending);
    assert_eq!(report.alert, None);
    assert!(notifications::for_identity(&report).is_none());
    world.clock.advance(time::Duration::hours(2));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Pending);
    assert_eq!(report.ses_pending_hours, Some(25.0));
    assert!(matches!(
        report.alert,
        Some(Alert::VerificationOverdue { .. })
    ));
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::VerificationOverdue);
    let lines: Vec<Value> = metrics::fleet_lines(
        "Ns",
        0,
        &ses_dkim_rotator::engine::schedule::FleetSummary {
            counts: Default::default(),
            identities: vec![report],
        },
        &gauge_rules(),
    )
    .iter()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect();
    // The fleet gauge (an EMF metric, no identity dimension) and the identity's log line.
    let gauge = lines.iter().find(|l| l["Region"] == "us-east-1").unwrap();
    assert_eq!(gauge["MaxSesPendingHours"], 25.0);
    assert_eq!(gauge["AwaitingSes"], 1);
    let identity = lines.iter().find(|l| l["Identity"] == DOMAIN).unwrap();
    assert_eq!(identity["SesPendingHours"], 25.0);
    assert!(
        identity.get("_aws").is_none(),
        "a metric per identity: {identity}"
    );
}

#[tokio::test]
async fn a_temporary_failure_is_told_and_not_rolled_back() {
    let world = World::new(PublishMode::Route53);
    let first = world.rotate_confirmed().await;
    world.zone.remove(&format!("{first}._domainkey.{DOMAIN}"));
    world.ses_checks();
    let puts = world.ses.puts().len();
    let report = world.maintain().await;
    assert_eq!(report.action, Action::TemporaryFailure, "{report:?}");
    assert_eq!(world.ses.puts().len(), puts);
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::TemporaryFailure);
}
