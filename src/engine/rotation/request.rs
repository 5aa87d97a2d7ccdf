//! What a rotation step is asked to do: the step, the secret, the token, who asked.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::engine::ports::Deadline;
use crate::engine::quoting::quote_prefix;
use crate::secret_text::SecretText;

/// One of Secrets Manager's four rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// Make the new key and store it as `AWSPENDING`.
    CreateSecret,
    /// Publish the new key's DNS record.
    SetSecret,
    /// Check the pending key before it goes live.
    TestSecret,
    /// Switch SES to the new key and make it `AWSCURRENT`.
    FinishSecret,
}

impl Step {
    /// The four step names, for messages that list what is accepted.
    pub const NAMES: &'static str = "createSecret, setSecret, testSecret, finishSecret";

    /// The name Secrets Manager uses for the step.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateSecret => "createSecret",
            Step::SetSecret => "setSecret",
            Step::TestSecret => "testSecret",
            Step::FinishSecret => "finishSecret",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "createSecret" => Ok(Step::CreateSecret),
            "setSecret" => Ok(Step::SetSecret),
            "testSecret" => Ok(Step::TestSecret),
            "finishSecret" => Ok(Step::FinishSecret),
            other => Err(format!(
                "`Step` is `{}`; expected one of {}",
                quote_prefix(other),
                Step::NAMES
            )),
        }
    }
}

/// One invocation of a rotation step.
#[derive(Debug, Clone)]
pub struct RotationRequest {
    /// Which step.
    pub step: Step,
    /// The secret's ARN or name.
    pub secret_id: String,
    /// The version being rotated in (`ClientRequestToken`).
    pub token: String,
    /// Secrets Manager's `RotationToken`, passed on to `PutSecretValue` (redacted in `Debug`).
    pub rotation_token: Option<SecretText>,
    /// When the invocation must be done (Lambda's deadline); bounds DNS waits.
    pub deadline: Deadline,
    /// Who asked: Secrets Manager's rotation, or this function's own schedule.
    pub trigger: Trigger,
}

/// Who drives a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Secrets Manager's rotation: rotation must be enabled and the token staged by it.
    SecretsManager,
    /// The scheduled run: the token is this function's own, staged by `createSecret`.
    Schedule,
}

impl RotationRequest {
    /// A Secrets Manager rotation request with no deadline and no `RotationToken`.
    pub fn new(step: Step, secret_id: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            step,
            secret_id: secret_id.into(),
            token: token.into(),
            rotation_token: None,
            deadline: Deadline::NONE,
            trigger: Trigger::SecretsManager,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_round_trip() {
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        let err = "CreateSecret".parse::<Step>().unwrap_err();
        assert!(err.contains("createSecret, setSecret"), "{err}");
        // Found by the event_parse fuzzer: a 2 KB `Step` was echoed whole.
        let err = "x".repeat(2000).parse::<Step>().unwrap_err();
        assert!(err.len() < 200, "{} bytes", err.len());
    }
}
