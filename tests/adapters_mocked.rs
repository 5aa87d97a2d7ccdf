//! The SDK adapters and the engine's call order, with `aws-smithy-mocks` rules that go
//! through the SDK's real request builders and serialisers.

use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::{
    GetSecretValueError, GetSecretValueOutput,
};
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput;
use aws_sdk_secretsmanager::operation::update_secret_version_stage::UpdateSecretVersionStageOutput;
use aws_sdk_secretsmanager::types::error::ResourceNotFoundException;
use aws_sdk_sesv2::operation::get_email_identity::{GetEmailIdentityError, GetEmailIdentityOutput};
use aws_sdk_sesv2::operation::put_email_identity_dkim_signing_attributes::{
    PutEmailIdentityDkimSigningAttributesError, PutEmailIdentityDkimSigningAttributesOutput,
};
use aws_sdk_sesv2::types::error::{
    BadRequestException, NotFoundException, TooManyRequestsException,
};
use aws_sdk_sesv2::types::{DkimAttributes, DkimSigningAttributesOrigin, DkimStatus};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use ses_dkim_rotator::adapters::clock::SystemClock;
use ses_dkim_rotator::adapters::dns::ConfiguredPublisher;
use ses_dkim_rotator::adapters::dns::hint::HintPublisher;
use ses_dkim_rotator::adapters::dns::lookup::{HickoryTxtLookup, LookupServers};
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::engine::identity::AllowedIdentities;
use ses_dkim_rotator::engine::key::{DkimKeyPair, KeyBits};
use ses_dkim_rotator::engine::ports::PortSet;
use ses_dkim_rotator::engine::ports::{DkimSigningService, FailureKind, SecretStore, VersionRef};
use ses_dkim_rotator::engine::rotation::{Outcome, RotationRequest, Step};
use ses_dkim_rotator::engine::secret_doc::{DkimSecret, PublishedKey};
use ses_dkim_rotator::engine::selector::Selector;
use ses_dkim_rotator::engine::{Engine, RotationPolicy};
use ses_dkim_rotator::secret_text::SecretText;
use std::time::Duration;

const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dkim/example.com-AbCdEf";
const DOMAIN: &str = "example.com";
const TOKEN: &str = "11111111-2222-3333-4444-555555555555";
const OLD_VERSION: &str = "00000000-0000-0000-0000-000000000000";

#[tokio::test]
async fn ses_put_sends_external_origin_selector_and_bare_key() {
    let key = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
    let expected_key = key.private_key().expose().to_owned();
    let put = mock!(aws_sdk_sesv2::Client::put_email_identity_dkim_signing_attributes)
        .match_requests(move |req| {
            let attrs = req.signing_attributes().unwrap();
            req.email_identity() == Some(DOMAIN)
                && req.signing_attributes_origin() == Some(&DkimSigningAttributesOrigin::External)
                && attrs.domain_signing_selector() == Some("ses-20261126-abcd")
                && attrs.domain_signing_private_key() == Some(expected_key.as_str())
        })
        .then_output(|| PutEmailIdentityDkimSigningAttributesOutput::builder().build());
    let ses = SesV2Signing::new(mock_client!(aws_sdk_sesv2, [&put]));
    ses.sign_with_external_key(DOMAIN, None, "ses-20261126-abcd", key.private_key())
        .await
        .unwrap();
    assert_eq!(put.num_calls(), 1);
}

#[tokio::test]
async fn ses_errors_are_classified() {
    let missing = mock!(aws_sdk_sesv2::Client::get_email_identity).then_error(|| {
        GetEmailIdentityError::NotFoundException(
            NotFoundException::builder()
                .message("no such identity")
                .build(),
        )
    });
    let ses = SesV2Signing::new(mock_client!(aws_sdk_sesv2, [&missing]));
    assert_eq!(ses.dkim_state(DOMAIN, None).await.unwrap(), None);

    let throttled = mock!(aws_sdk_sesv2::Client::put_email_identity_dkim_signing_attributes)
        .then_error(|| {
            PutEmailIdentityDkimSigningAttributesError::TooManyRequestsException(
                TooManyRequestsException::builder()
                    .message("slow down")
                    .build(),
            )
        });
    let ses = SesV2Signing::new(mock_client!(
        aws_sdk_sesv2,
        RuleMode::MatchAny,
        [&throttled]
    ));
    let err = ses
        .sign_with_external_key(DOMAIN, None, "s1", &SecretText::new("AAAA"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Throttled);
    assert!(err.message.contains("slow down"), "{err}");
    assert!(!err.to_string().contains("AAAA"));

    let bad =
        mock!(aws_sdk_sesv2::Client::put_email_identity_dkim_signing_attributes).then_error(|| {
            PutEmailIdentityDkimSigningAttributesError::BadRequestException(
                BadRequestException::builder()
                    .message("invalid key")
                    .build(),
            )
        });
    let ses = SesV2Signing::new(mock_client!(aws_sdk_sesv2, [&bad]));
    let err = ses
        .sign_with_external_key(DOMAIN, None, "s1", &SecretText::new("AAAA"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::InvalidRequest);
}

#[tokio::test]
async fn secrets_manager_put_pending_stages_awspending_and_passes_rotation_token() {
    let put = mock!(aws_sdk_secretsmanager::Client::put_secret_value)
        .match_requests(|req| {
            req.secret_id() == Some(ARN)
                && req.client_request_token() == Some(TOKEN)
                && req.version_stages() == ["AWSPENDING".to_owned()]
                && req.rotation_token() == Some("opaque")
                && req.secret_string() == Some("{}")
        })
        .then_output(|| PutSecretValueOutput::builder().build());
    let missing = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .match_requests(|req| {
            req.version_id() == Some(TOKEN) && req.version_stage() == Some("AWSPENDING")
        })
        .then_error(|| {
            GetSecretValueError::ResourceNotFoundException(
                ResourceNotFoundException::builder().build(),
            )
        });
    let store = SecretsManagerStore::new(mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&put, &missing]
    ));
    assert_eq!(
        store.read(ARN, VersionRef::Pending(TOKEN)).await.unwrap(),
        None
    );
    store
        .put_pending(
            ARN,
            TOKEN,
            &SecretText::new("{}"),
            Some(&SecretText::new("opaque")),
        )
        .await
        .unwrap();
    assert_eq!((put.num_calls(), missing.num_calls()), (1, 1));
}

/// The secret's versions: the seed as current, a rotated key as pending.
fn versions() -> (String, String, String) {
    let current = DkimSecret::parse(&format!(r#"{{"identity":"{DOMAIN}"}}"#)).unwrap();
    let pending = current.rotated(PublishedKey {
        selector: Selector::parse("ses-20261126-abcd").unwrap(),
        key: DkimKeyPair::generate(KeyBits::Rsa1024).unwrap(),
        created_at: None,
    });
    let private_key = pending
        .key
        .as_ref()
        .unwrap()
        .key
        .private_key()
        .expose()
        .to_owned();
    (
        current.to_secret_string().expose().to_owned(),
        pending.to_secret_string().expose().to_owned(),
        private_key,
    )
}

/// Mocked clients for a finishSecret, recording the order of calls across both services.
struct FinishFixture {
    calls: Arc<Mutex<Vec<&'static str>>>,
    engine: Engine<
        PortSet<
            SecretsManagerStore,
            SesV2Signing,
            ConfiguredPublisher,
            HickoryTxtLookup,
            SystemClock,
        >,
    >,
    put_ses: aws_smithy_mocks::Rule,
    promote: aws_smithy_mocks::Rule,
}

fn finish_fixture(ses_put_fails: bool) -> FinishFixture {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (current, pending, private_key) = versions();
    let log = |name: &'static str, calls: &Arc<Mutex<Vec<&'static str>>>| {
        let calls = calls.clone();
        move || calls.lock().unwrap().push(name)
    };

    let record = log("DescribeSecret", &calls);
    let describe = mock!(aws_sdk_secretsmanager::Client::describe_secret)
        .match_requests(move |_| {
            record();
            true
        })
        .then_output(|| {
            DescribeSecretOutput::builder()
                .arn(ARN)
                .rotation_enabled(true)
                .version_ids_to_stages(OLD_VERSION, vec!["AWSCURRENT".into()])
                .version_ids_to_stages(TOKEN, vec!["AWSPENDING".into()])
                .build()
        });
    let record = log("GetSecretValue", &calls);
    let get = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .match_requests(move |_| {
            record();
            true
        })
        .then_compute_output(move |req| {
            let body = if req.version_stage() == Some("AWSPENDING") {
                &pending
            } else {
                &current
            };
            GetSecretValueOutput::builder()
                .arn(ARN)
                .secret_string(body.clone())
                .build()
        });
    let record = log("UpdateSecretVersionStage", &calls);
    let promote = mock!(aws_sdk_secretsmanager::Client::update_secret_version_stage)
        .match_requests(move |req| {
            let matched = req.version_stage() == Some("AWSCURRENT")
                && req.move_to_version_id() == Some(TOKEN)
                && req.remove_from_version_id() == Some(OLD_VERSION);
            if matched {
                record();
            }
            matched
        })
        .then_output(|| UpdateSecretVersionStageOutput::builder().build());
    let record = log("UpdateSecretVersionStage(AWSPENDING)", &calls);
    let clear = mock!(aws_sdk_secretsmanager::Client::update_secret_version_stage)
        .match_requests(move |req| {
            let matched = req.version_stage() == Some("AWSPENDING")
                && req.move_to_version_id().is_none()
                && req.remove_from_version_id() == Some(TOKEN);
            if matched {
                record();
            }
            matched
        })
        .then_output(|| UpdateSecretVersionStageOutput::builder().build());
    let record = log("GetEmailIdentity", &calls);
    let get_identity = mock!(aws_sdk_sesv2::Client::get_email_identity)
        .match_requests(move |_| {
            record();
            true
        })
        .then_output(|| {
            GetEmailIdentityOutput::builder()
                .dkim_attributes(
                    DkimAttributes::builder()
                        .signing_enabled(true)
                        .status(DkimStatus::Success)
                        .signing_attributes_origin(DkimSigningAttributesOrigin::AwsSes)
                        .build(),
                )
                .build()
        });
    let record = log("PutEmailIdentityDkimSigningAttributes", &calls);
    let put_ses = mock!(aws_sdk_sesv2::Client::put_email_identity_dkim_signing_attributes)
        .match_requests(move |req| {
            record();
            req.signing_attributes()
                .and_then(|a| a.domain_signing_private_key())
                == Some(private_key.as_str())
        });
    let put_ses = if ses_put_fails {
        put_ses.then_error(|| {
            PutEmailIdentityDkimSigningAttributesError::BadRequestException(
                BadRequestException::builder()
                    .message("key rejected")
                    .build(),
            )
        })
    } else {
        put_ses.then_output(|| PutEmailIdentityDkimSigningAttributesOutput::builder().build())
    };

    let tag = mock!(aws_sdk_secretsmanager::Client::tag_resource).then_output(|| {
        aws_sdk_secretsmanager::operation::tag_resource::TagResourceOutput::builder().build()
    });
    let secrets = mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&describe, &get, &promote, &clear, &tag]
    );
    let ses = mock_client!(aws_sdk_sesv2, RuleMode::MatchAny, [&get_identity, &put_ses]);
    let engine = Engine::new(
        PortSet {
            secrets: SecretsManagerStore::new(secrets),
            ses: SesV2Signing::new(ses),
            dns: ConfiguredPublisher::Hint(HintPublisher),
            // Never asked: DNS checks are off for these call-order tests.
            lookup: HickoryTxtLookup::new(LookupServers::Fixed(vec![]), Duration::from_secs(1)),
            clock: SystemClock,
        },
        RotationPolicy {
            allowed_identities: AllowedIdentities::Any,
            verify_dns: false,
            // SES answers Easy DKIM, SUCCESS: this first switch adopts it.
            adopt_easy_dkim: true,
            ..RotationPolicy::default()
        },
    );
    FinishFixture {
        calls,
        engine,
        put_ses,
        promote,
    }
}

fn finish_request() -> RotationRequest {
    RotationRequest::new(Step::FinishSecret, ARN, TOKEN)
}

#[tokio::test]
async fn finish_switches_ses_before_moving_awscurrent() {
    let fixture = finish_fixture(false);
    let report = fixture.engine.run_step(&finish_request()).await.unwrap();
    assert_eq!(report.outcome, Outcome::SesSwitched);
    let calls = fixture.calls.lock().unwrap().clone();
    let put = calls
        .iter()
        .position(|c| *c == "PutEmailIdentityDkimSigningAttributes")
        .expect("SES was switched");
    let promote = calls
        .iter()
        .position(|c| *c == "UpdateSecretVersionStage")
        .expect("stage was moved");
    assert!(put < promote, "{calls:?}");
    let clear = calls
        .iter()
        .position(|c| *c == "UpdateSecretVersionStage(AWSPENDING)")
        .expect("AWSPENDING was cleared");
    assert!(promote < clear, "{calls:?}");
    assert_eq!(calls[0], "DescribeSecret", "{calls:?}");
    assert_eq!(
        (fixture.put_ses.num_calls(), fixture.promote.num_calls()),
        (1, 1)
    );
}

#[tokio::test]
async fn finish_keeps_awscurrent_when_ses_refuses_the_key() {
    let fixture = finish_fixture(true);
    let err = fixture
        .engine
        .run_step(&finish_request())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "AwsCallFailed");
    assert!(err.to_string().contains("key rejected"), "{err}");
    assert_eq!(fixture.promote.num_calls(), 0, "AWSCURRENT must not move");
    let calls = fixture.calls.lock().unwrap().clone();
    assert!(!calls.contains(&"UpdateSecretVersionStage"), "{calls:?}");
}

#[tokio::test]
async fn ses_access_denied_in_another_region_names_the_template_parameter() {
    let denied = mock!(aws_sdk_sesv2::Client::get_email_identity)
        .sequence()
        .http_status(
            403,
            Some(r#"{"__type":"AccessDeniedException","message":"not authorized"}"#.to_owned()),
        )
        .build();
    let ses = SesV2Signing::new(mock_client!(aws_sdk_sesv2, RuleMode::MatchAny, [&denied]));
    let err = ses.dkim_state(DOMAIN, Some("eu-west-1")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::AccessDenied, "{err}");
    assert!(
        err.message.contains("eu-west-1") && err.message.contains("SesRegions"),
        "{err}"
    );
}

/// A DKIM TXT record of `DOMAIN` for the publisher tests.
fn dkim_txt_record(
    fields: &serde_json::Map<String, serde_json::Value>,
) -> ses_dkim_rotator::engine::ports::TxtRecord<'_> {
    ses_dkim_rotator::engine::ports::TxtRecord {
        secret_id: ARN,
        identity: DOMAIN,
        name: "s1._domainkey.example.com",
        value: "v=DKIM1; k=rsa; p=AAAA",
        secret_fields: fields,
    }
}

/// The Route 53 publisher: a change answered `PENDING` is polled with `GetChange` only when
/// the invocation may wait; a queue worker (no waiting) submits it and returns at once.
#[tokio::test]
async fn route53_polls_get_change_only_when_the_invocation_may_wait() {
    use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
    use aws_sdk_route53::operation::get_change::GetChangeOutput;
    use aws_sdk_route53::types::{ChangeInfo, ChangeStatus};
    use ses_dkim_rotator::adapters::dns::route53::Route53Publisher;
    use ses_dkim_rotator::engine::ports::{Deadline, DnsPublisher};

    let info = |status: ChangeStatus| {
        ChangeInfo::builder()
            .id("/change/C1")
            .status(status)
            .submitted_at(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    };
    let fields = serde_json::Map::new();
    let record = dkim_txt_record(&fields);
    let deadline = Deadline::at(time::OffsetDateTime::now_utc() + Duration::from_secs(600));
    for (waits, expected_polls) in [(false, 0), (true, 1)] {
        let change = mock!(aws_sdk_route53::Client::change_resource_record_sets)
            .match_requests(|req| req.hosted_zone_id() == Some("Z1"))
            .then_output(move || {
                ChangeResourceRecordSetsOutput::builder()
                    .change_info(info(ChangeStatus::Pending))
                    .build()
            });
        let poll = mock!(aws_sdk_route53::Client::get_change).then_output(move || {
            GetChangeOutput::builder()
                .change_info(info(ChangeStatus::Insync))
                .build()
        });
        let client = mock_client!(aws_sdk_route53, RuleMode::MatchAny, [&change, &poll]);
        let publisher =
            Route53Publisher::new(client, Some("Z1".into()), 300).polling_every(Duration::ZERO);
        let deadline = if waits {
            deadline
        } else {
            deadline.without_waiting()
        };
        publisher.upsert_txt(record, deadline).await.unwrap();
        assert_eq!(change.num_calls(), 1);
        assert_eq!(poll.num_calls(), expected_polls, "waits: {waits}");
    }
}

/// The Route 53 publisher takes a turn of the account's share before each request: one past
/// the share is not sent and comes back as throttled; a zone still busy with an earlier
/// request (`PriorRequestNotComplete`) is throttled too, never a failure.
#[tokio::test]
async fn route53_requests_past_the_share_are_not_sent_and_a_busy_zone_is_throttled() {
    use aws_sdk_route53::operation::change_resource_record_sets::{
        ChangeResourceRecordSetsError, ChangeResourceRecordSetsOutput,
    };
    use aws_sdk_route53::types::error::PriorRequestNotComplete;
    use aws_sdk_route53::types::{ChangeInfo, ChangeStatus};
    use ses_dkim_rotator::adapters::dns::route53::Route53Publisher;
    use ses_dkim_rotator::engine::pacing::{Pacer, Rate};
    use ses_dkim_rotator::engine::ports::{Deadline, DnsPublisher};

    let fields = serde_json::Map::new();
    let record = dkim_txt_record(&fields);
    let change = mock!(aws_sdk_route53::Client::change_resource_record_sets).then_output(|| {
        ChangeResourceRecordSetsOutput::builder()
            .change_info(
                ChangeInfo::builder()
                    .id("/change/C1")
                    .status(ChangeStatus::Insync)
                    .submitted_at(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap(),
            )
            .build()
    });
    // One request every two seconds, and no waiting for a turn: the second is refused.
    let pacer = Arc::new(Pacer::new(
        Rate {
            per_second: 0.5,
            burst: 1,
        },
        Duration::ZERO,
    ));
    let client = mock_client!(aws_sdk_route53, RuleMode::MatchAny, [&change]);
    let publisher = Route53Publisher::new(client, Some("Z1".into()), 300).paced_by(pacer);
    publisher.upsert_txt(record, Deadline::NONE).await.unwrap();
    let refused = publisher
        .upsert_txt(record, Deadline::NONE)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, FailureKind::Throttled, "{refused}");
    assert_eq!(change.num_calls(), 1, "a request past the share was sent");

    let busy = mock!(aws_sdk_route53::Client::change_resource_record_sets).then_error(|| {
        ChangeResourceRecordSetsError::PriorRequestNotComplete(
            PriorRequestNotComplete::builder()
                .message("The request was rejected because Route 53 was still processing a prior request.")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_route53, RuleMode::MatchAny, [&busy]);
    let publisher = Route53Publisher::new(client, Some("Z1".into()), 300);
    let error = publisher
        .upsert_txt(record, Deadline::NONE)
        .await
        .unwrap_err();
    assert_eq!(error.kind, FailureKind::Throttled, "{error}");
}

/// `ListEmailIdentities` asks for SES's largest page and reads each identity's
/// `VerificationStatus` and the next page's token.
#[tokio::test]
async fn ses_lists_identities_a_thousand_a_page_with_their_verification_status() {
    use aws_sdk_sesv2::operation::list_email_identities::ListEmailIdentitiesOutput;
    use aws_sdk_sesv2::types::{IdentityInfo, IdentityType, VerificationStatus};
    use ses_dkim_rotator::engine::ports::DkimStatus as Status;
    let list = mock!(aws_sdk_sesv2::Client::list_email_identities)
        .match_requests(|req| req.page_size() == Some(1000) && req.next_token() == Some("p2"))
        .then_output(|| {
            ListEmailIdentitiesOutput::builder()
                .email_identities(
                    IdentityInfo::builder()
                        .identity_type(IdentityType::Domain)
                        .identity_name("a.example.com")
                        .verification_status(VerificationStatus::Success)
                        .build(),
                )
                .email_identities(
                    IdentityInfo::builder()
                        .identity_type(IdentityType::Domain)
                        .identity_name("b.example.com")
                        .verification_status(VerificationStatus::TemporaryFailure)
                        .build(),
                )
                .next_token("p3")
                .build()
        });
    let ses = SesV2Signing::new(mock_client!(aws_sdk_sesv2, [&list]));
    let page = ses.list_identities(None, Some("p2")).await.unwrap();
    assert_eq!(
        page.identities,
        [
            ("a.example.com".to_owned(), Status::Success),
            ("b.example.com".to_owned(), Status::TemporaryFailure)
        ]
    );
    assert_eq!(page.next_page.as_deref(), Some("p3"));
    assert_eq!(list.num_calls(), 1);
}
