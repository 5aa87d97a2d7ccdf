//! The sample events in `events/` stay in step with the handler: the step events parse, and
//! every malformed one is refused with `InvalidEvent` naming the accepted shape.

use std::fs;
use std::path::Path;

use ses_dkim_rotator::engine::rotation::Step;
use ses_dkim_rotator::handler::{Invocation, parse_invocation, parse_rotation_event};

fn read(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn step_events_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    for (file, step) in [
        ("create-secret.json", Step::CreateSecret),
        ("set-secret.json", Step::SetSecret),
        ("test-secret.json", Step::TestSecret),
        ("finish-secret.json", Step::FinishSecret),
    ] {
        let request = parse_rotation_event(&read(&dir.join(file))).unwrap();
        assert_eq!(request.step, step, "{file}");
        assert!(request.rotation_token.is_some());
    }
}

#[test]
fn scheduled_events_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    for file in ["scheduled-event.json", "scheduler-payload.json"] {
        let invocation = parse_invocation(&read(&dir.join(file))).unwrap();
        assert!(matches!(invocation, Invocation::Scheduled(_)), "{file}");
    }
}

#[test]
fn the_sample_sqs_event_is_queue_work() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let invocation = parse_invocation(&read(&dir.join("sqs-work.json"))).unwrap();
    let Invocation::Queue(event) = invocation else {
        panic!("not queue work: {invocation:?}")
    };
    assert_eq!(event.records.len(), 1);
}

#[test]
fn malformed_events_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events/malformed");
    let mut seen = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let err = parse_invocation(&read(&path)).expect_err(&path.display().to_string());
        assert_eq!(err.error_type(), "InvalidEvent", "{}", path.display());
        // Either the accepted shapes, or the field at fault and what it must be.
        let text = err.to_string();
        assert!(
            text.contains("expected") || (text.contains('`') && text.contains("must be")),
            "{text}"
        );
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} malformed events");
}
