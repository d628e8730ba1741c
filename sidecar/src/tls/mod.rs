//! rustls configurations built from the current [`Credentials`], once per identity change, never per
//! connection.
//!
//! TLS 1.3 only. Session resumption is off in both directions: every connection is a full handshake, so
//! every connection is verified and authorized against the current bundle and policy (a resumed session
//! would skip the certificate check, letting a revoked or expired peer back in).

pub mod reason;
pub mod verified;
pub mod verify;

use std::sync::Arc;

use policy::SpiffeId;
use rustls::{
    ClientConfig, ServerConfig, client::Resumption, crypto::CryptoProvider, server::NoServerSessionStorage,
    sign::SingleCertAndKey, version::TLS13,
};

use crate::identity::Credentials;
pub use reason::{HandshakeFailure, HandshakeReason};
use verify::{SvidClientVerifier, SvidServerVerifier};

/// The TLS configurations of one identity: the inbound server config and one client config per outbound
/// route (each pins the route's `server_id`).
#[derive(Debug)]
pub struct TlsConfigs {
    pub server: Arc<ServerConfig>,
    /// Indexed like the configuration's `outbound` list.
    pub clients: Vec<Arc<ClientConfig>>,
}

/// The crypto provider: aws-lc-rs, TLS 1.3 suites only, AES-128-GCM-SHA256 first.
///
/// AES-128 first (as Linkerd does): the TLS 1.3 key schedule then runs on SHA-256, which has hardware
/// support on current x86 and ARM CPUs, where SHA-384 does not: a profile of full mTLS handshakes showed
/// SHA-512 block processing at ~7% of the sidecar's CPU with AES-256-GCM-SHA384. Key exchange stays
/// X25519 first (aws-lc-rs defaults).
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider};
    let mut provider = default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

impl TlsConfigs {
    /// Builds all configurations for `creds`; `server_ids` are the outbound routes' required peer IDs.
    pub fn build(
        creds: &Credentials,
        provider: &Arc<CryptoProvider>,
        server_ids: &[SpiffeId],
    ) -> Result<Self, rustls::Error> {
        let algs = provider.signature_verification_algorithms;
        let verifier = Arc::new(SvidClientVerifier::new(creds.bundle.clone(), algs));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(creds.certified.clone())));
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        // Our suite order, not the client's: every suite offered is fine, and ours is the cheapest.
        server.ignore_client_order = true;

        let clients = server_ids
            .iter()
            .map(|expected| {
                let verifier = Arc::new(SvidServerVerifier::new(creds.bundle.clone(), expected.clone(), algs));
                let mut client = ClientConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(&[&TLS13])?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(creds.certified.clone())));
                client.resumption = Resumption::disabled();
                // The peer is named by its SPIFFE ID, not by DNS: sending SNI would only leak the address.
                client.enable_sni = false;
                Ok(Arc::new(client))
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;

        Ok(TlsConfigs { server: Arc::new(server), clients })
    }
}

/// Runs one handshake (tokio-rustls' fallible accept or connect) within `limit`, records its duration and
/// outcome in `metrics`, and returns the stream, or the classified failure with the socket back when the
/// handshake failed (rather than timed out). Shared by both directions so they measure alike.
pub async fn timed_handshake<S, IO>(
    handshake: impl std::future::Future<Output = Result<S, (std::io::Error, IO)>>,
    limit: std::time::Duration,
    metrics: &crate::metrics::HandshakeMetrics,
) -> Result<S, (HandshakeFailure, Option<IO>)> {
    let started = tokio::time::Instant::now();
    let (failure, io) = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(stream)) => {
            metrics.record(started.elapsed(), HandshakeReason::Ok);
            return Ok(stream);
        }
        Ok(Err((e, io))) => (HandshakeFailure::from_io(&e), Some(io)),
        Err(_) => (HandshakeFailure::timeout(limit), None),
    };
    metrics.record(started.elapsed(), failure.reason);
    Err((failure, io))
}
