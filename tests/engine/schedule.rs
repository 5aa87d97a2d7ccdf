//! The scheduled run.

use super::*;

#[tokio::test]
async fn a_scheduled_run_rotates_a_never_rotated_secret() {
    let world = World::new(PublishMode::Route53);
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Rotated, "{report:?}");
    assert_eq!(world.ses_selector().as_deref(), report.selector.as_deref());
    world.assert_invariant();
    assert_eq!(
        world.secrets.version_with_stage(&world.arn, STAGE_PENDING),
        None
    );
}

#[tokio::test]
async fn the_whole_lifecycle_on_the_manual_clock() {
    let world = World::new(PublishMode::Route53);
    assert_eq!(world.maintain().await.action, Action::Rotated);
    let first = world.selector();

    // SES has not looked yet: pending.
    assert_eq!(world.maintain().await.action, Action::Pending);
    world.ses_checks();
    assert_eq!(world.maintain().await.action, Action::Confirmed);
    assert_eq!(
        world.secrets.tags(&world.arn).get(TAG_CONFIRMED),
        Some(&first)
    );
    assert_eq!(world.maintain().await.action, Action::Skipped);

    // 90 days on: due again.
    world.clock.advance(time::Duration::days(90));
    assert_eq!(world.maintain().await.action, Action::Rotated);
    let second = world.selector();
    assert_ne!(first, second);
    world.ses_checks();
    assert_eq!(world.maintain().await.action, Action::Confirmed);

    // The previous record stays through the grace period (7 days from the switch)…
    world.clock.advance(time::Duration::days(6));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Skipped, "{report:?}");
    assert!(report.skipped.is_some(), "{report:?}");
    assert_eq!(world.record(&first).len(), 1);
    world.assert_invariant();

    // … and goes after it.
    world.clock.advance(time::Duration::days(1));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Retired, "{report:?}");
    assert_eq!(report.retired, Some(RetireOutcome::Deleted));
    assert!(world.record(&first).is_empty());
    assert_eq!(world.record(&second).len(), 1);
    assert_eq!(
        world.secrets.tags(&world.arn).get(TAG_RETIRED),
        Some(&first)
    );
    world.assert_invariant();

    // Nothing more to do.
    assert_eq!(world.maintain().await.action, Action::Skipped);
}

#[tokio::test]
async fn revoke_mode_replaces_the_old_record_with_an_empty_key() {
    let world = World::with_policy(
        PublishMode::Rfc2136,
        RotationPolicy {
            retire_mode: RetireMode::Revoke,
            ..policy()
        },
    );
    world.maintain().await;
    let first = world.selector();
    world.clock.advance(time::Duration::days(91));
    world.maintain().await;
    world.ses_checks();
    assert_eq!(world.maintain().await.action, Action::Confirmed);
    world.clock.advance(time::Duration::days(8));
    let report = world.maintain().await;
    assert_eq!(report.retired, Some(RetireOutcome::Revoked), "{report:?}");
    assert_eq!(world.record(&first), vec![REVOKED_VALUE.to_owned()]);
}

#[tokio::test]
async fn hint_mode_retirement_tells_a_person_and_deletes_nothing() {
    let world = World::new(PublishMode::Hint);
    // A person publishes every record the run asks for.
    let publish_pending = |world: &World| {
        if let Some(pending) = world.secrets.json(&world.arn, STAGE_PENDING) {
            world.zone.add(
                pending["dns_name"].as_str().unwrap(),
                pending["dns_value"].as_str().unwrap(),
            );
        }
    };
    assert_eq!(world.maintain().await.action, Action::WaitingForDns);
    publish_pending(&world);
    assert_eq!(world.maintain().await.action, Action::Resumed);
    let first = world.selector();
    world.clock.advance(time::Duration::days(91));
    assert_eq!(world.maintain().await.action, Action::WaitingForDns);
    publish_pending(&world);
    assert_eq!(world.maintain().await.action, Action::Resumed);
    world.ses_checks();
    world.maintain().await;
    world.clock.advance(time::Duration::days(8));
    let report = world.maintain().await;
    assert_eq!(
        report.retired,
        Some(RetireOutcome::RemovalHinted),
        "{report:?}"
    );
    assert_eq!(world.record(&first).len(), 1, "a person removes it, not us");
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::RecordRemovable);
}

#[tokio::test]
async fn waiting_for_dns_reports_the_record_and_its_age() {
    let world = World::new(PublishMode::Hint);
    assert_eq!(world.maintain().await.action, Action::WaitingForDns);
    world.clock.advance(time::Duration::hours(5));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::WaitingForDns);
    assert!(report.dns_record.is_some());
    assert_eq!(report.pending_hours, Some(5.0));
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::RecordToAdd);
}

#[tokio::test]
async fn a_secret_secrets_manager_rotates_is_never_rotated_by_the_schedule() {
    let world = World::new(PublishMode::Route53);
    world.secrets.set_rotation_enabled(&world.arn, true);
    let report = world
        .engine
        .maintain(
            &world.arn,
            &MaintainOptions {
                force: true,
                ..world.options()
            },
        )
        .await;
    assert_eq!(report.action, Action::Skipped, "{report:?}");
    assert!(world.ses.puts().is_empty());
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let world = World::new(PublishMode::Route53);
    let before = (world.secrets.snapshot(), world.ses.state_of(DOMAIN));
    let report = world
        .engine
        .maintain(
            &world.arn,
            &MaintainOptions {
                dry_run: true,
                ..world.options()
            },
        )
        .await;
    assert!(report.planned);
    assert_eq!(report.action, Action::Rotated);
    assert_eq!(
        (world.secrets.snapshot(), world.ses.state_of(DOMAIN)),
        before
    );
    assert!(notifications::for_identity(&report).is_none());
}

#[tokio::test]
async fn a_current_key_ses_failed_is_reported_not_counted_as_a_rollback() {
    // The bug this guards against: a scheduled run that found the current key FAILED raised
    // SesRejectedKey, and notifications and metrics counted a rollback that never happened.
    let world = World::new(PublishMode::Route53);
    world.maintain().await;
    world.ses.set_status(DOMAIN, DkimStatus::Failed);
    let report = world.maintain().await;
    // The first key has nothing to roll back to: the watcher refuses and says so.
    assert_eq!(report.action, Action::Failed);
    assert_eq!(report.error_type, Some("RollbackRefused"));
    assert!(!report.rolled_back);
    let notification = notifications::for_identity(&report).unwrap();
    assert_eq!(notification.kind, NotificationKind::Failure);
    let summary = ses_dkim_rotator::engine::schedule::FleetSummary {
        counts: Default::default(),
        identities: vec![report],
    };
    let counts: Value =
        serde_json::from_str(&metrics::fleet_lines("Ns", 0, &summary, &gauge_rules())[0]).unwrap();
    assert_eq!(counts["Rollbacks"], 0);
    assert_eq!(counts["Failures"], 1);
}

#[tokio::test]
async fn a_fleet_defers_what_the_deadline_leaves_no_time_for() {
    let world = World::new(PublishMode::Route53);
    let options = MaintainOptions {
        deadline: Deadline::at(START + time::Duration::seconds(20)),
        record_published: false,
        ..world.options()
    };
    let summary = world
        .engine
        .maintain_fleet(
            &[world.arn.clone(), world.arn.clone()],
            &options,
            2,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(summary.counts.get(&Action::Deferred), Some(&2));
    assert!(world.ses.puts().is_empty());
}

#[tokio::test]
async fn one_broken_secret_fails_alone_in_a_fleet() {
    let world = World::new(PublishMode::Route53);
    let broken = world.secrets.create_secret("broken", "{}");
    let summary = world
        .engine
        .maintain_fleet(
            &[world.arn.clone(), broken.clone()],
            &world.options(),
            4,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(summary.identities[0].action, Action::Rotated);
    assert_eq!(summary.identities[1].action, Action::Failed);
    assert_eq!(summary.identities[1].error_type, Some("CorruptSecret"));
    assert!(summary.has_failures());
}

#[tokio::test]
async fn the_retirement_guard_refuses_the_selector_ses_signs_with() {
    let world = World::new(PublishMode::Route53);
    world.maintain().await;
    let first = world.selector();
    world.clock.advance(time::Duration::days(91));
    world.maintain().await;
    world.ses_checks();
    world.maintain().await;
    // SES is put back on the old selector behind the rotator's back.
    let old_key = world.secrets.json(&world.arn, STAGE_PREVIOUS).unwrap();
    ses_dkim_rotator::engine::ports::DkimSigningService::sign_with_external_key(
        &world.ses,
        DOMAIN,
        None,
        &first,
        &SecretText::new(old_key["private_key"].as_str().unwrap()),
    )
    .await
    .unwrap();
    world.ses.set_status(DOMAIN, DkimStatus::Success);
    world.clock.advance(time::Duration::days(8));
    let report = world.maintain().await;
    assert_eq!(report.action, Action::Failed, "{report:?}");
    assert_eq!(report.error_type, Some("RetireRefused"));
    assert_eq!(world.record(&first).len(), 1, "the record SES uses stays");
}
