//! TLS for every client (the AWS SDK, the HTTP services, Postgres): rustls
//! with ring. ring rather than aws-lc, the SDK's default: each function
//! binary is smaller (docs/benchmarks), and TLS speed is not what
//! bounds a pipeline that waits on Postgres and the providers.

use aws_sdk_secretsmanager::config::SharedHttpClient;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use rustls::crypto::CryptoProvider;
use std::sync::Arc;

/// The crypto provider, installed as the process's default on first use, so
/// that clients which take the default (reqwest) use it too.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    if let Some(installed) = CryptoProvider::get_default() {
        return installed.clone();
    }
    // Fails only if another thread installed one first; either is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The AWS SDK's HTTPS client, over the same provider.
pub fn aws_http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
