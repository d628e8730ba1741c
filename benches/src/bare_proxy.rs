//! `bare-proxy`: the floor for our own overhead. A tokio-rustls mutual TLS terminator with nothing else: the
//! client certificate is verified by rustls' `WebPkiClientVerifier` against the bundle (chain and clientAuth
//! only: no SPIFFE checks, no policy, no metrics, no logs), then bytes are copied to the forward address with
//! `tokio::io::copy_bidirectional`.
//!
//! What it shares with the sidecar, so that the comparison isolates the sidecar's own work: the crypto
//! provider (`sidecar::tls::provider()`: aws-lc-rs, AES-128-GCM-SHA256 first, X25519 first), TLS 1.3 only, the
//! server's suite order, no session resumption and no tickets, no CA names in the CertificateRequest, Nagle off
//! on both sockets, a multi-thread runtime with one worker per CPU it may run on.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rustls::{
    RootCertStore, ServerConfig,
    server::{NoServerSessionStorage, WebPkiClientVerifier},
    version::TLS13,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    net::{TcpListener, TcpStream},
    time::timeout,
};
use tokio_rustls::TlsAcceptor;

/// Bounds a client's handshake, like the sidecar's default `timeouts.handshake`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{path}: {source}")]
    Pem { path: String, source: rustls_pki_types::pem::Error },
    #[error("--ca {0}: no usable root certificate")]
    NoRoots(String),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The server config: `cert` (chain, leaf first) and `key` presented, clients verified against `ca`.
pub fn server_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<ServerConfig>, SetupError> {
    fn pem(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> SetupError + '_ {
        move |source| SetupError::Pem { path: path.display().to_string(), source }
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(pem(cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem(key))?;
    let roots =
        CertificateDer::pem_file_iter(ca).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(pem(ca))?;
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(roots);
    if store.is_empty() {
        return Err(SetupError::NoRoots(ca.display().to_string()));
    }
    let provider = sidecar::tls::provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .clear_root_hint_subjects()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Accepts on `listener` forever; each connection is terminated and copied to `forward`.
pub async fn serve(listener: TcpListener, forward: SocketAddr, acceptor: TlsAcceptor) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(Ok(mut tls)) = timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else { return };
            let Ok(mut app) = TcpStream::connect(forward).await else { return };
            let _ = app.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut app).await;
        });
    }
}
