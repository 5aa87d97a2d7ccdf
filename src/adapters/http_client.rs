//! The HTTPS client the AWS SDK clients share: the SDK's own hyper 1 + rustls client, with
//! ring as the crypto provider (already linked for hickory's TSIG, so no aws-lc in the
//! binary), built per connector only when the first request is sent.
//!
//! Building a rustls connector reads and parses the platform's CA bundle (a few milliseconds).
//! The clients themselves are created before the first Runtime API poll, as AWS recommends;
//! only this file read moves to the first request, out of the cold start.

use std::sync::OnceLock;

use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// An [`HttpClient`] whose connectors come into being on their first request.
#[derive(Debug, Clone)]
pub struct DeferredTlsClient {
    inner: SharedHttpClient,
}

impl DeferredTlsClient {
    /// The SDK's HTTPS client (rustls with ring, proxy settings from the environment),
    /// deferred.
    pub fn new() -> Self {
        let inner = Builder::new().build_with_connector_fn(|settings, components| {
            let mut builder = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ));
            builder.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            builder.set_proxy_config(Some(aws_smithy_http_client::proxy::ProxyConfig::from_env()));
            builder.build()
        });
        Self { inner }
    }
}

impl Default for DeferredTlsClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient for DeferredTlsClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(DeferredConnector {
            client: self.inner.clone(),
            settings: settings.clone(),
            components: components.clone(),
            connector: OnceLock::new(),
        })
    }
}

#[derive(Debug)]
struct DeferredConnector {
    client: SharedHttpClient,
    settings: HttpConnectorSettings,
    components: RuntimeComponents,
    connector: OnceLock<SharedHttpConnector>,
}

impl HttpConnector for DeferredConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.connector
            .get_or_init(|| self.client.http_connector(&self.settings, &self.components))
            .call(request)
    }
}
