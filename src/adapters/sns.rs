//! [`Notifier`] over Amazon SNS: the text as the message, the fields as message attributes.

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use super::port_error;
use crate::engine::ports::PortError;
use crate::notifications::{Notification, Notifier};

/// Publishes to one SNS topic (`DKIM_NOTIFY_TOPIC_ARN`).
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    /// A notifier for `topic_arn`.
    pub fn new(client: Client, topic_arn: String) -> Self {
        Self { client, topic_arn }
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), PortError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&notification.subject)
            .message(&notification.text);
        for (name, value) in &notification.fields {
            if value.is_empty() {
                continue;
            }
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PortError {
                    service: "SNS",
                    operation: "Publish",
                    kind: crate::engine::ports::FailureKind::InvalidRequest,
                    message: e.to_string(),
                })?;
            request = request.message_attributes(*name, attribute);
        }
        request
            .send()
            .await
            .map_err(|e| port_error("SNS", "Publish", e, |_| None))?;
        Ok(())
    }
}

/// The notifier chosen by the settings.
#[derive(Debug, Clone)]
pub enum ConfiguredNotifier {
    /// No topic configured.
    Off,
    /// SNS.
    Sns(SnsNotifier),
}

impl Notifier for ConfiguredNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), PortError> {
        match self {
            Self::Off => Ok(()),
            Self::Sns(sns) => sns.publish(notification).await,
        }
    }
}
