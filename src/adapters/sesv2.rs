//! [`DkimSigningService`] over the AWS SDK's SESv2 client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::config::Region;
use aws_sdk_sesv2::types::{DkimSigningAttributes, DkimSigningAttributesOrigin};

use super::port_error;
use crate::engine::ports::{
    DkimSigningService, DkimStatus, FailureKind, IdentityPage, PortError, SesDkimState,
    SigningOrigin,
};
use crate::secret_text::SecretText;

const SERVICE: &str = "SESv2";

/// Classifies an SESv2 operation's modeled error; every operation's error type has these
/// predicates, but no common trait, hence a macro.
macro_rules! ses_failure_kind {
    ($error:expr) => {{
        let error = $error;
        if error.is_not_found_exception() {
            Some(FailureKind::NotFound)
        } else if error.is_too_many_requests_exception() {
            Some(FailureKind::Throttled)
        } else if error.is_bad_request_exception() {
            Some(FailureKind::InvalidRequest)
        } else {
            None
        }
    }};
}

/// SESv2 through the SDK; one client per region, made on first use.
#[derive(Debug, Clone)]
pub struct SesV2Signing {
    client: Client,
    regional: Arc<Mutex<HashMap<String, Client>>>,
}

impl SesV2Signing {
    /// Wraps a configured client (the function's own region).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            regional: Arc::default(),
        }
    }

    /// The client for `region` (DKIM is per region: a secret's `region` selects it).
    fn client_for(&self, region: Option<&str>) -> Client {
        let Some(region) = region else {
            return self.client.clone();
        };
        if self.client.config().region().map(|r| r.as_ref()) == Some(region) {
            return self.client.clone();
        }
        let mut regional = self.regional.lock().expect("region map lock");
        regional
            .entry(region.to_owned())
            .or_insert_with(|| {
                let config = self
                    .client
                    .config()
                    .to_builder()
                    .region(Region::new(region.to_owned()))
                    .build();
                Client::from_conf(config)
            })
            .clone()
    }
}

/// An access refusal in another region than the function's own most often means the role may
/// not use SES there: say so, and how to allow it.
fn in_region(mut error: PortError, region: Option<&str>) -> PortError {
    if let (FailureKind::AccessDenied, Some(region)) = (error.kind, region) {
        error.message.push_str(&format!(
            " (the secret names region {region}: the function's role must be allowed SES there; add {region} to the template parameter SesRegions)"
        ));
    }
    error
}

impl DkimSigningService for SesV2Signing {
    async fn dkim_state(
        &self,
        identity: &str,
        region: Option<&str>,
    ) -> Result<Option<SesDkimState>, PortError> {
        let out = match self
            .client_for(region)
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let error = in_region(
                    port_error(SERVICE, "GetEmailIdentity", e, |e| ses_failure_kind!(e)),
                    region,
                );
                return if error.kind == FailureKind::NotFound {
                    Ok(None)
                } else {
                    Err(error)
                };
            }
        };
        let Some(dkim) = out.dkim_attributes() else {
            return Ok(Some(SesDkimState::default()));
        };
        Ok(Some(SesDkimState {
            signing_enabled: dkim.signing_enabled(),
            status: dkim.status().map(|s| DkimStatus::parse(s.as_str())),
            origin: dkim
                .signing_attributes_origin()
                .map(|o| SigningOrigin::parse(o.as_str())),
            selectors: dkim.tokens().to_vec(),
        }))
    }

    async fn sign_with_external_key(
        &self,
        identity: &str,
        region: Option<&str>,
        selector: &str,
        private_key: &SecretText,
    ) -> Result<(), PortError> {
        let attributes = DkimSigningAttributes::builder()
            .domain_signing_selector(selector)
            .domain_signing_private_key(private_key.expose())
            .build();
        self.client_for(region)
            .put_email_identity_dkim_signing_attributes()
            .email_identity(identity)
            .signing_attributes_origin(DkimSigningAttributesOrigin::External)
            .signing_attributes(attributes)
            .send()
            .await
            .map_err(|e| {
                let error = port_error(SERVICE, "PutEmailIdentityDkimSigningAttributes", e, |e| {
                    ses_failure_kind!(e)
                });
                in_region(error, region)
            })?;
        Ok(())
    }

    async fn list_identities(
        &self,
        region: Option<&str>,
        page: Option<&str>,
    ) -> Result<IdentityPage, PortError> {
        let out = self
            .client_for(region)
            .list_email_identities()
            .page_size(1000)
            .set_next_token(page.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                let error = port_error(SERVICE, "ListEmailIdentities", e, |e| {
                    if e.is_too_many_requests_exception() {
                        Some(FailureKind::Throttled)
                    } else if e.is_bad_request_exception() {
                        Some(FailureKind::InvalidRequest)
                    } else {
                        None
                    }
                });
                in_region(error, region)
            })?;
        Ok(IdentityPage {
            identities: out
                .email_identities()
                .iter()
                .filter_map(|info| {
                    let name = info.identity_name()?;
                    let status = info.verification_status()?;
                    Some((name.to_owned(), DkimStatus::parse(status.as_str())))
                })
                .collect(),
            next_page: out.next_token().map(str::to_owned),
        })
    }
}
