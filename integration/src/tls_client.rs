//! A real TLS client for tests that act as a calling sidecar: presents a client certificate (or none) and
//! verifies the server as an X.509-SVID with the sidecar's own verifier.

use std::{net::SocketAddr, path::Path, sync::Arc};

use policy::{SpiffeId, TrustBundle, TrustDomain};
use rustls::{ClientConfig, client::Resumption, sign::SingleCertAndKey, version::TLS13};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use sidecar::tls::verify::SvidServerVerifier;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// What the client presents.
pub enum ClientCert<'a> {
    /// `svid.pem` + `svid_key.pem` from an identity directory.
    Dir(&'a Path),
    None,
}

/// Builds a client config that requires the server to be `server_id` under `bundle_pem`.
pub fn config(cert: ClientCert<'_>, bundle_pem: &[u8], server_id: &str) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = sidecar::tls::provider();
    let expected = SpiffeId::parse(server_id)?;
    let td = TrustDomain::parse(expected.trust_domain_str())?;
    let bundle = Arc::new(TrustBundle::from_pem(td, bundle_pem)?);
    let verifier = Arc::new(SvidServerVerifier::new(bundle, expected, provider.signature_verification_algorithms));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match cert {
        ClientCert::Dir(dir) => {
            let chain = CertificateDer::pem_file_iter(dir.join("svid.pem"))?.collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(dir.join("svid_key.pem"))?;
            let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        ClientCert::None => builder.with_no_client_auth(),
    };
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// Connects and completes a TLS handshake. In TLS 1.3 the server checks the client certificate after the
/// client has finished, so a refused client usually learns it on its first read, not here.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("sidecar.test").map_err(std::io::Error::other)?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// Handshakes and returns the serial (hex) of the certificate the server presented.
pub async fn served_serial(addr: SocketAddr, config: Arc<ClientConfig>) -> anyhow::Result<String> {
    let tls = connect(addr, config).await?;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or_else(|| anyhow::anyhow!("no cert"))?;
    Ok(policy::svid::leaf_details(leaf)?.serial_hex)
}

/// Handshakes, sends `payload`, half-closes and reads the reply to the end (an echo app returns `payload`).
pub async fn round_trip(addr: SocketAddr, config: Arc<ClientConfig>, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect(addr, config).await?;
    tls.write_all(payload).await?;
    tls.shutdown().await?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await?;
    Ok(reply)
}
