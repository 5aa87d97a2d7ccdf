//! Adapters: the ports of [`crate::engine::ports`] implemented with the AWS SDK, hickory DNS
//! and the system clock.

pub mod clock;
pub mod dns;
pub mod http_client;
pub mod secrets_manager;
pub mod sesv2;
pub mod sns;
pub mod sqs;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::engine::ports::{FailureKind, PortError};

/// Turns an SDK error into a [`PortError`].
///
/// `typed` classifies the operation's modeled errors (the reliable way); the error code and
/// the kind of SDK failure are the fallback for errors the model does not name.
pub(crate) fn port_error<E, R>(
    service: &'static str,
    operation: &'static str,
    error: SdkError<E, R>,
    typed: impl FnOnce(&E) -> Option<FailureKind>,
) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().unwrap_or_default().to_owned();
    let kind = error
        .as_service_error()
        .and_then(typed)
        .unwrap_or_else(|| kind_from_code(&code, matches!(error, SdkError::ServiceError(_))));
    let message = match (error.as_service_error(), error.message()) {
        (_, Some(message)) if !code.is_empty() => format!("{code}: {message}"),
        (_, Some(message)) => message.to_owned(),
        (Some(service_error), None) => service_error.to_string(),
        (None, None) => aws_smithy_types::error::display::DisplayErrorContext(&error).to_string(),
    };
    PortError {
        service,
        operation,
        kind,
        message,
    }
}

/// Classifies by error code: for errors the operation's model does not name.
fn kind_from_code(code: &str, is_service_error: bool) -> FailureKind {
    match code {
        "ResourceNotFoundException" | "NotFoundException" | "NoSuchHostedZone" => {
            FailureKind::NotFound
        }
        "ResourceExistsException"
        | "AlreadyExistsException"
        | "ConcurrentModificationException" => FailureKind::Conflict,
        // Route 53's zone still busy with an earlier request is a quota too: come back later.
        "TooManyRequestsException"
        | "ThrottlingException"
        | "Throttling"
        | "PriorRequestNotComplete" => FailureKind::Throttled,
        "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException" => {
            FailureKind::AccessDenied
        }
        // Server-side trouble, whatever the service calls it (`InternalFailure`,
        // `ServiceUnavailable`, `RequestTimeout`, …): worth another try later.
        code if code.contains("Internal")
            || code.contains("Unavailable")
            || code.contains("Timeout") =>
        {
            FailureKind::Unavailable
        }
        code if is_service_error && !code.is_empty() => FailureKind::InvalidRequest,
        _ => FailureKind::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_codes_are_unavailable_and_other_service_codes_invalid() {
        for code in [
            "ServiceUnavailable",
            "ServiceUnavailableException",
            "InternalFailure",
            "RequestTimeout",
        ] {
            assert_eq!(
                kind_from_code(code, true),
                FailureKind::Unavailable,
                "{code}"
            );
        }
        assert_eq!(
            kind_from_code("TooManyRequestsException", true),
            FailureKind::Throttled
        );
        assert_eq!(
            kind_from_code("BadRequestException", true),
            FailureKind::InvalidRequest
        );
        assert_eq!(kind_from_code("", false), FailureKind::Unavailable);
    }
}
