//! Adapters: the ports of [`crate::engine::ports`] implemented with the AWS SDK and the system clock.

pub mod clock;
pub mod secrets_manager;
pub mod sesv2;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::engine::ports::{FailureKind, PortError};

/// Turns an SDK error into a [`PortError`], classifying it by its error code and HTTP status.
pub(crate) fn port_error<E, R>(
    service: &'static str,
    operation: &'static str,
    error: SdkError<E, R>,
) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().unwrap_or_default().to_owned();
    let kind = match (&error, code.as_str()) {
        (_, "ResourceNotFoundException" | "NotFoundException" | "NoSuchHostedZone") => {
            FailureKind::NotFound
        }
        (_, "ResourceExistsException" | "AlreadyExistsException" | "ConcurrentModificationException" | "PriorRequestNotComplete") => {
            FailureKind::Conflict
        }
        (_, "TooManyRequestsException" | "ThrottlingException" | "Throttling" | "LimitExceededException") => {
            FailureKind::Throttled
        }
        (_, "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException") => {
            FailureKind::AccessDenied
        }
        (SdkError::ServiceError(_), code) if !code.is_empty() && !code.contains("Internal") => {
            FailureKind::InvalidRequest
        }
        _ => FailureKind::Unavailable,
    };
    let message = match error.message() {
        Some(message) if !code.is_empty() => format!("{code}: {message}"),
        Some(message) => message.to_owned(),
        None if !code.is_empty() => code,
        None => aws_smithy_types::error::display::DisplayErrorContext(&error).to_string(),
    };
    PortError {
        service,
        operation,
        kind,
        message,
    }
}
