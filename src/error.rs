//! [`AppError`]: what the Lambda function and the CLI return. It wraps the engine's
//! [`EngineError`] with the two failures only an entry point has (a bad event, a bad setting)
//! and turns into Lambda's [`Diagnostic`], so `errorType` means something.
//!
//! No variant ever carries key material or a `RotationToken`.

use lambda_runtime::Diagnostic;

use crate::engine::error::EngineError;

/// Everything that can stop an invocation or the function's start-up.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The invocation payload is not an event this function accepts.
    #[error("invalid event: {0}")]
    InvalidEvent(String),

    /// A setting (environment variable) has a value the function cannot use.
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting {
        /// The environment variable.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl AppError {
    /// A stable name for Lambda's `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidEvent(_) => "InvalidEvent",
            Self::InvalidSetting { .. } => "InvalidSetting",
            Self::Engine(error) => error.error_type(),
        }
    }
}

impl From<crate::engine::ports::PortError> for AppError {
    fn from(error: crate::engine::ports::PortError) -> Self {
        Self::Engine(error.into())
    }
}

impl From<AppError> for Diagnostic {
    fn from(error: AppError) -> Self {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}
