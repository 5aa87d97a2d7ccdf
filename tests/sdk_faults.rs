//! Fault injection for every AWS call the function makes, with `aws-smithy-mocks`: each
//! operation goes through its adapter (the SDK's real request builders, serialisers, error
//! parsers and the function's own retry policy, [`sdk_retry_config`]).
//!
//! Per operation, two cases:
//! - `transient`: HTTP 500, then 503, then a throttling error, then success: the call
//!   completes after retries (four requests).
//! - `refused`: a 400 the service means (`InvalidParameter…`): one request, no retry, and an
//!   error naming the service, the operation and the service's message.
//!
//! What the engine does with such an error (stop, leave nothing half-done, converge when run
//! again) is `tests/crash_points.rs`: it stops the rotation at every one of these calls.

use std::time::Duration;

use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use ses_dkim_rotator::adapters::dns::route53::Route53Publisher;
use ses_dkim_rotator::adapters::secrets_manager::SecretsManagerStore;
use ses_dkim_rotator::adapters::sesv2::SesV2Signing;
use ses_dkim_rotator::adapters::sns::SnsNotifier;
use ses_dkim_rotator::assembly::sdk_retry_config;
use ses_dkim_rotator::engine::ports::Deadline;
use ses_dkim_rotator::engine::ports::{
    DkimSigningService, DnsPublisher, FailureKind, SecretStore, TxtRecord, VersionRef,
};
use ses_dkim_rotator::notifications::{Notification, NotificationKind, Notifier};
use ses_dkim_rotator::secret_text::SecretText;
use time::OffsetDateTime;

const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dkim/example.com-AbCdEf";
const TOKEN: &str = "11111111-2222-3333-4444-555555555555";
const DOMAIN: &str = "example.com";
const RECORD: &str = "ses-20261126-abcd._domainkey.example.com";
const VALUE: &str = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC1";
const REFUSAL: &str = "refused by the fault test";

/// An error body in the JSON protocols (Secrets Manager: awsJson1.1; SESv2: restJson1).
fn json_error(code: &str, message: &str) -> String {
    format!(r#"{{"__type":"{code}","message":"{message}"}}"#)
}

/// An error body in the XML protocols (Route 53: restXml; SNS: awsQuery).
fn xml_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    )
}

/// The record the Route 53 cases publish or delete; `zone` is the secret's `hosted_zone_id`.
fn record(zone: Option<&'static str>) -> TxtRecord<'static> {
    static NO_ZONE: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> =
        std::sync::LazyLock::new(serde_json::Map::new);
    static ZONE_Z1: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> =
        std::sync::LazyLock::new(|| {
            let mut fields = serde_json::Map::new();
            fields.insert("hosted_zone_id".into(), "Z1".into());
            fields
        });
    TxtRecord {
        secret_id: "arn:secret",
        identity: DOMAIN,
        name: RECORD,
        value: VALUE,
        secret_fields: match zone {
            Some("Z1") => &ZONE_Z1,
            Some(other) => panic!("no fixture for zone {other}"),
            None => &NO_ZONE,
        },
    }
}

/// A deadline far enough away for the Route 53 publisher to wait for `INSYNC`.
fn deadline() -> Deadline {
    Deadline::at(OffsetDateTime::now_utc() + Duration::from_secs(120))
}

/// Two tests for one operation: `transient` (retried to success) and `refused` (one request,
/// clear error). `others` are the rules for the calls the adapter makes around it.
macro_rules! fault_cases {
    (
        $name:ident: $sdk:ident, $op:path,
        ok: $ok:expr,
        errors: $body:ident($throttle:literal, $refuse:literal),
        others: [$($other:expr),* $(,)?],
        |$client:ident| $call:expr
    ) => {
        mod $name {
            use super::*;
            use aws_smithy_mocks::Rule;

            /// A client answering from `faulty` and `others`, with the function's retry policy.
            fn client(faulty: &Rule, others: &[Rule]) -> $sdk::Client {
                mock_client!(
                    $sdk,
                    RuleMode::MatchAny,
                    std::iter::once(faulty).chain(others.iter()),
                    |config| config.retry_config(sdk_retry_config())
                )
            }

            #[tokio::test]
            async fn transient() {
                let faulty = mock!($op)
                    .sequence()
                    .http_status(500, None)
                    .http_status(503, None)
                    .http_status(400, Some($body($throttle, "Rate exceeded")))
                    .output($ok)
                    .build();
                let others: Vec<Rule> = vec![$($other),*];
                let $client = client(&faulty, &others);
                let result = $call.await;
                assert!(result.is_ok(), "not retried to success: {:?}", result.err());
                assert_eq!(faulty.num_calls(), 4, "500, 503, throttled, then success");
            }

            #[tokio::test]
            async fn refused() {
                let faulty = mock!($op)
                    .sequence()
                    .http_status(400, Some($body($refuse, REFUSAL)))
                    .build();
                let others: Vec<Rule> = vec![$($other),*];
                let $client = client(&faulty, &others);
                let error = $call.await.expect_err("a refused call must fail");
                assert_eq!(faulty.num_calls(), 1, "a refusal is not retried");
                assert_eq!(error.kind, FailureKind::InvalidRequest, "{error}");
                let text = error.to_string();
                assert!(text.contains(REFUSAL) && text.contains($refuse), "{text}");
                assert!(text.contains(error.operation), "{text}");
            }
        }
    };
}

// ---------------------------------------------------------------- Secrets Manager

mod secrets_manager {
    use super::*;
    use aws_sdk_secretsmanager::Client;
    use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
    use aws_sdk_secretsmanager::operation::list_secret_version_ids::ListSecretVersionIdsOutput;
    use aws_sdk_secretsmanager::operation::list_secrets::ListSecretsOutput;
    use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueOutput;
    use aws_sdk_secretsmanager::operation::tag_resource::TagResourceOutput;
    use aws_sdk_secretsmanager::operation::update_secret_version_stage::UpdateSecretVersionStageOutput;
    use aws_sdk_secretsmanager::types::SecretListEntry;

    fn store(client: Client) -> SecretsManagerStore {
        SecretsManagerStore::new(client)
    }

    fault_cases!(describe_secret: aws_sdk_secretsmanager, Client::describe_secret,
        ok: || DescribeSecretOutput::builder().arn(ARN).build(),
        errors: json_error("ThrottlingException", "InvalidParameterException"),
        others: [],
        |client| store(client).describe(ARN));

    fault_cases!(get_secret_value: aws_sdk_secretsmanager, Client::get_secret_value,
        ok: || GetSecretValueOutput::builder().arn(ARN).version_id(TOKEN).secret_string("{}").build(),
        errors: json_error("ThrottlingException", "InvalidParameterException"),
        others: [],
        |client| store(client).read(ARN, VersionRef::Current));

    fault_cases!(put_secret_value: aws_sdk_secretsmanager, Client::put_secret_value,
        ok: || PutSecretValueOutput::builder().arn(ARN).version_id(TOKEN).build(),
        errors: json_error("ThrottlingException", "InvalidParameterException"),
        others: [],
        |client| store(client).put_pending(ARN, TOKEN, &SecretText::new("{}"), None));

    fault_cases!(update_secret_version_stage: aws_sdk_secretsmanager, Client::update_secret_version_stage,
        ok: || UpdateSecretVersionStageOutput::builder().arn(ARN).build(),
        errors: json_error("ThrottlingException", "InvalidParameterException"),
        others: [],
        |client| store(client).promote(ARN, TOKEN, Some("00000000-0000-0000-0000-000000000000")));

    fault_cases!(list_secret_version_ids: aws_sdk_secretsmanager, Client::list_secret_version_ids,
        ok: || ListSecretVersionIdsOutput::builder().arn(ARN).build(),
        errors: json_error("ThrottlingException", "InvalidParameterException"),
        others: [],
        |client| store(client).list_versions(ARN));

    fault_cases!(list_secrets: aws_sdk_secretsmanager, Client::list_secrets,
        ok: || ListSecretsOutput::builder().secret_list(SecretListEntry::builder().arn(ARN).build()).build(),
        errors: json_error("ThrottlingException", "InvalidParameterException"),
        others: [],
        |client| store(client).list_tagged_page("ses-dkim-rotator", "managed", None));

    fault_cases!(tag_resource: aws_sdk_secretsmanager, Client::tag_resource,
        ok: || TagResourceOutput::builder().build(),
        errors: json_error("ThrottlingException", "InvalidParameterException"),
        others: [],
        |client| store(client).set_tags(ARN, &[("ses-dkim-rotator:retired", "ses-20261001-0f0f")]));
}

// ---------------------------------------------------------------- SESv2

mod sesv2 {
    use super::*;
    use aws_sdk_sesv2::Client;
    use aws_sdk_sesv2::operation::get_email_identity::GetEmailIdentityOutput;
    use aws_sdk_sesv2::operation::put_email_identity_dkim_signing_attributes::PutEmailIdentityDkimSigningAttributesOutput;

    fault_cases!(get_email_identity: aws_sdk_sesv2, Client::get_email_identity,
        ok: || GetEmailIdentityOutput::builder().build(),
        errors: json_error("TooManyRequestsException", "BadRequestException"),
        others: [],
        |client| SesV2Signing::new(client).dkim_state(DOMAIN, None));

    fault_cases!(put_email_identity_dkim_signing_attributes: aws_sdk_sesv2,
        Client::put_email_identity_dkim_signing_attributes,
        ok: || PutEmailIdentityDkimSigningAttributesOutput::builder().build(),
        errors: json_error("TooManyRequestsException", "BadRequestException"),
        others: [],
        |client| SesV2Signing::new(client).sign_with_external_key(
            DOMAIN, None, "ses-20261126-abcd", &SecretText::new("AAAA")));

    /// When retries run out, the error says the service was unavailable (and is not a
    /// refusal the operator must fix).
    #[tokio::test]
    async fn retries_run_out_with_an_unavailable_error() {
        let down = mock!(Client::put_email_identity_dkim_signing_attributes)
            .sequence()
            .http_status(503, None)
            .times(8)
            .build();
        let client = mock_client!(aws_sdk_sesv2, RuleMode::Sequential, [&down], |config| {
            config.retry_config(sdk_retry_config())
        });
        let error = SesV2Signing::new(client)
            .sign_with_external_key(DOMAIN, None, "s1", &SecretText::new("AAAA"))
            .await
            .expect_err("503 eight times");
        assert_eq!(down.num_calls(), 8, "the policy's eight attempts");
        assert_eq!(error.kind, FailureKind::Unavailable, "{error}");
        assert!(!error.to_string().contains("AAAA"));
    }
}

// ---------------------------------------------------------------- Route 53

mod route53 {
    use super::*;
    use aws_sdk_route53::Client;
    use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
    use aws_sdk_route53::operation::get_change::GetChangeOutput;
    use aws_sdk_route53::operation::list_hosted_zones_by_name::ListHostedZonesByNameOutput;
    use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
    use aws_sdk_route53::types::{
        ChangeInfo, ChangeStatus, HostedZone, ResourceRecord, ResourceRecordSet, RrType,
    };

    fn change_info(status: ChangeStatus) -> ChangeInfo {
        ChangeInfo::builder()
            .id("/change/C1")
            .status(status)
            .submitted_at(DateTime::from_secs(0))
            .build()
            .unwrap()
    }

    fn zones() -> ListHostedZonesByNameOutput {
        ListHostedZonesByNameOutput::builder()
            .hosted_zones(
                HostedZone::builder()
                    .id("/hostedzone/Z1")
                    .name("example.com.")
                    .caller_reference("fault-test")
                    .build()
                    .unwrap(),
            )
            .is_truncated(false)
            .max_items(100)
            .build()
            .unwrap()
    }

    fn listing() -> ListResourceRecordSetsOutput {
        ListResourceRecordSetsOutput::builder()
            .resource_record_sets(
                ResourceRecordSet::builder()
                    .name(format!("{RECORD}."))
                    .r#type(RrType::Txt)
                    .ttl(300)
                    .resource_records(
                        ResourceRecord::builder()
                            .value("\"v=DKIM1; p=\"")
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .is_truncated(false)
            .max_items(1)
            .build()
            .unwrap()
    }

    fn changed(status: ChangeStatus) -> ChangeResourceRecordSetsOutput {
        ChangeResourceRecordSetsOutput::builder()
            .change_info(change_info(status))
            .build()
    }

    fn publisher(client: Client) -> Route53Publisher {
        Route53Publisher::new(client, None, 300)
    }

    fault_cases!(list_hosted_zones_by_name: aws_sdk_route53, Client::list_hosted_zones_by_name,
        ok: zones,
        errors: xml_error("Throttling", "InvalidInput"),
        others: [mock!(Client::change_resource_record_sets).then_output(|| changed(ChangeStatus::Insync))],
        |client| publisher(client).upsert_txt(record(None), deadline()));

    fault_cases!(change_resource_record_sets: aws_sdk_route53, Client::change_resource_record_sets,
        ok: || changed(ChangeStatus::Insync),
        errors: xml_error("Throttling", "InvalidInput"),
        others: [],
        |client| publisher(client).upsert_txt(record(Some("Z1")), deadline()));

    fault_cases!(get_change: aws_sdk_route53, Client::get_change,
        ok: || GetChangeOutput::builder().change_info(change_info(ChangeStatus::Insync)).build(),
        errors: xml_error("Throttling", "InvalidInput"),
        others: [mock!(Client::change_resource_record_sets).then_output(|| changed(ChangeStatus::Pending))],
        |client| publisher(client).upsert_txt(record(Some("Z1")), deadline()));

    fault_cases!(list_resource_record_sets: aws_sdk_route53, Client::list_resource_record_sets,
        ok: listing,
        errors: xml_error("Throttling", "InvalidInput"),
        others: [mock!(Client::change_resource_record_sets).then_output(|| changed(ChangeStatus::Insync))],
        |client| publisher(client).delete_txt(record(Some("Z1"))));
}

// ---------------------------------------------------------------- SNS

mod sns {
    use super::*;
    use aws_sdk_sns::Client;
    use aws_sdk_sns::operation::publish::PublishOutput;

    fn notification() -> Notification {
        Notification {
            kind: NotificationKind::RotationCompleted,
            subject: "DKIM rotated for example.com".into(),
            text: "SES signs with ses-20261126-abcd".into(),
            fields: vec![("identity", DOMAIN.into())],
        }
    }

    fault_cases!(publish: aws_sdk_sns, Client::publish,
        ok: || PublishOutput::builder().message_id("m1").build(),
        errors: xml_error("Throttling", "InvalidParameter"),
        others: [],
        |client| SnsNotifier::new(client, "arn:aws:sns:us-east-1:123456789012:dkim".into())
            .publish(&notification()));
}
