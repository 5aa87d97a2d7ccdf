//! The Lambda handler over the fakes.

use super::*;

pub(crate) type MemoryRotator = Rotator<MemoryPorts, RecordingNotifier, MemoryQueue>;

pub(crate) fn rotator(world: World) -> (MemoryRotator, RecordingNotifier, World) {
    let notifier = RecordingNotifier::default();
    let mut fleet =
        Settings::from_lookup(|name| (name == "DKIM_ALLOWED_IDENTITIES").then(|| "*".to_owned()))
            .unwrap()
            .fleet;
    fleet.secret_ids = vec![world.arn.clone()];
    let engine = Engine::new(world.engine.ports().clone(), world.engine.policy().clone());
    (
        Rotator {
            engine,
            fleet,
            notifier: notifier.clone(),
            queue: MemoryQueue::default(),
        },
        notifier,
        world,
    )
}

pub(crate) fn event(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, Context::default())
}

#[tokio::test]
async fn the_handler_runs_secrets_manager_events_and_notifies_the_switch() {
    let (rotator, notifier, world) = rotator(World::new(PublishMode::Route53));
    let token = world.secrets.start_rotation(&world.arn).unwrap();
    for step in STEPS {
        let out = rotator
            .handle(event(json!({
                "Step": step.as_str(), "SecretId": world.arn, "ClientRequestToken": token,
                "RotationToken": "a-very-secret-token"
            })))
            .await
            .unwrap();
        assert!(!out.to_string().contains("a-very-secret-token"));
        assert!(!out.to_string().contains("private_key"));
    }
    let kinds: Vec<_> = notifier.sent().iter().map(|n| n.kind).collect();
    assert_eq!(kinds, [NotificationKind::RotationCompleted]);
}

#[tokio::test]
async fn the_handler_runs_a_scheduled_event_over_the_configured_secrets() {
    let (rotator, notifier, world) = rotator(World::new(PublishMode::Route53));
    let out = rotator
        .handle(event(json!({
            "version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}
        })))
        .await
        .unwrap();
    assert_eq!(out["counts"]["rotated"], 1, "{out}");
    assert_eq!(out["identities"][0]["secret_id"], json!(world.arn));
    assert_eq!(notifier.sent().len(), 1);
}

#[tokio::test]
async fn the_handler_refuses_a_bad_event_and_changes_nothing() {
    let (rotator, notifier, world) = rotator(World::new(PublishMode::Route53));
    let before = world.secrets.snapshot();
    let err = rotator
        .handle(event(
            json!({"Step": "rotate", "SecretId": world.arn, "ClientRequestToken": "t"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidEvent");
    assert_eq!(world.secrets.snapshot(), before);
    assert!(notifier.sent().is_empty());
}

#[tokio::test]
async fn a_scheduled_payload_naming_secrets_runs_only_those() {
    let (rotator, _, world) = rotator(World::new(PublishMode::Route53));
    let other = world
        .secrets
        .create_secret("other", &json!({"identity": DOMAIN}).to_string());
    let summary = rotator
        .scheduled(
            &ScheduledRun {
                secret_ids: Some(vec![other.clone()]),
                force: false,
                dry_run: true,
            },
            Deadline::NONE,
        )
        .await
        .unwrap();
    assert_eq!(summary.identities.len(), 1);
    assert_eq!(summary.identities[0].secret_id, other);
}
