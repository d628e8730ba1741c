//! The one rustls `ClientConfig` every connection of a run shares, built once at start.
//!
//! The server is verified either as an X.509-SVID with exactly the SPIFFE ID `--server-id` (the sidecar's own
//! [`SvidServerVerifier`], trust domain taken from that ID; no SNI, as the sidecar's outbound side does) or,
//! with `--server-name`, by standard WebPKI rules for that DNS name (SNI sent), which any TLS server passes.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use policy::{BundleError, SpiffeId, SpiffeIdError, TrustBundle};
use rustls::{
    ClientConfig, RootCertStore, SupportedProtocolVersion,
    client::{Resumption, WebPkiServerVerifier},
    crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs::kx_group},
    sign::{CertifiedKey, SingleCertAndKey},
    version::{TLS12, TLS13},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use sidecar::tls::verify::SvidServerVerifier;

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum ServerCheck {
    /// An X.509-SVID (SPEC §4) with serverAuth whose SPIFFE ID is exactly this.
    SpiffeId(SpiffeId),
    /// WebPKI verification for this DNS name (or IP address); sent as SNI.
    Name(ServerName<'static>),
}

/// The key exchange group offered first (the client sends a key share for it alone; the others stay
/// available through a HelloRetryRequest, counted as `hello_retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyExchange {
    X25519,
    #[value(name = "p256")]
    P256,
    #[value(name = "x25519mlkem768")]
    X25519Mlkem768,
}

impl KeyExchange {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyExchange::X25519 => "x25519",
            KeyExchange::P256 => "p256",
            KeyExchange::X25519Mlkem768 => "x25519mlkem768",
        }
    }

    fn group(self) -> &'static dyn SupportedKxGroup {
        match self {
            KeyExchange::X25519 => kx_group::X25519,
            KeyExchange::P256 => kx_group::SECP256R1,
            KeyExchange::X25519Mlkem768 => kx_group::X25519MLKEM768,
        }
    }
}

/// What the client presents, where it finds its roots, and how it talks.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `(cert chain, key)` PEM files; `None` presents no client certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
    pub ca: PathBuf,
    pub server: ServerCheck,
    pub key_exchange: KeyExchange,
    /// Allow TLS 1.2 as well (TLS 1.3 only by default).
    pub tls12: bool,
    pub resume: bool,
}

/// A ready client: the shared config and the name to hand to every `connect`.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// Why the client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("--server-id {id:?}: {source}")]
    ServerId { id: String, source: SpiffeIdError },
    #[error("--server-id {0}: a workload ID has a path (spiffe://TRUST_DOMAIN/PATH)")]
    ServerIdWithoutPath(SpiffeId),
    #[error("--server-name {0:?} is not a DNS name or IP address")]
    ServerName(String),
    #[error("--ca {path}: {source}")]
    Ca { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("--ca {path}: {source}")]
    Bundle { path: PathBuf, source: BundleError },
    #[error("--ca {path}: no usable root certificate ({detail})")]
    Roots { path: PathBuf, detail: String },
    #[error("--cert {path}: {source}")]
    Cert { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("--key {path}: {source}")]
    Key { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("--cert/--key: {0}")]
    Identity(rustls::Error),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

impl ServerCheck {
    /// Parses `--server-id`: a SPIFFE ID with a path.
    pub fn spiffe_id(text: &str) -> Result<Self, TlsSetupError> {
        let id = SpiffeId::parse(text).map_err(|source| TlsSetupError::ServerId { id: text.to_string(), source })?;
        if !id.has_path() {
            return Err(TlsSetupError::ServerIdWithoutPath(id));
        }
        Ok(ServerCheck::SpiffeId(id))
    }

    /// Parses `--server-name`: a DNS name or an IP address.
    pub fn name(text: &str) -> Result<Self, TlsSetupError> {
        let name = ServerName::try_from(text.to_string()).map_err(|_| TlsSetupError::ServerName(text.to_string()))?;
        Ok(ServerCheck::Name(name))
    }
}

impl ClientTls {
    /// Reads the PEM files and builds the config. `target_host` names the server in SPIFFE mode, where the
    /// name is neither sent nor checked (it only keys the session cache).
    pub fn build(opts: &TlsOptions, target_host: &str) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(provider(opts.key_exchange));
        let versions: &[&'static SupportedProtocolVersion] = if opts.tls12 { &[&TLS13, &TLS12] } else { &[&TLS13] };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(TlsSetupError::Config)?;
        let (builder, server_name, sni) = match &opts.server {
            ServerCheck::SpiffeId(expected) => {
                let verifier = svid_verifier(&opts.ca, expected, &provider)?;
                let name = ServerName::try_from(target_host.to_string())
                    .unwrap_or_else(|_| ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                (builder.dangerous().with_custom_certificate_verifier(verifier), name, false)
            }
            ServerCheck::Name(name) => {
                let verifier = webpki_verifier(&opts.ca, &provider)?;
                (builder.with_webpki_verifier(verifier), name.clone(), true)
            }
        };
        let mut config = match &opts.identity {
            Some((cert, key)) => {
                let certified = read_identity(cert, key, &provider)?;
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
            }
            None => builder.with_no_client_auth(),
        };
        config.enable_sni = sni;
        config.resumption = if opts.resume { Resumption::in_memory_sessions(1024) } else { Resumption::disabled() };
        Ok(Self { config: Arc::new(config), server_name })
    }
}

/// aws-lc-rs with its default suites, `first` moved to the front of the key exchange groups.
fn provider(first: KeyExchange) -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let group = first.group();
    provider.kx_groups.retain(|g| g.name() != group.name());
    provider.kx_groups.insert(0, group);
    provider
}

fn svid_verifier(
    ca: &Path,
    expected: &SpiffeId,
    provider: &CryptoProvider,
) -> Result<Arc<SvidServerVerifier>, TlsSetupError> {
    let pem = read(ca).map_err(|source| TlsSetupError::Ca { path: ca.to_path_buf(), source })?;
    let bundle = TrustBundle::from_pem(expected.trust_domain(), &pem)
        .map_err(|source| TlsSetupError::Bundle { path: ca.to_path_buf(), source })?;
    let algs = provider.signature_verification_algorithms;
    Ok(Arc::new(SvidServerVerifier::new(Arc::new(bundle), expected.clone(), algs)))
}

fn webpki_verifier(ca: &Path, provider: &Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    let roots = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsSetupError::Ca { path: ca.to_path_buf(), source })?;
    let mut store = RootCertStore::empty();
    let (_, rejected) = store.add_parsable_certificates(roots);
    if store.is_empty() {
        let detail = format!("{rejected} certificate(s) could not be trust anchors");
        return Err(TlsSetupError::Roots { path: ca.to_path_buf(), detail });
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Roots { path: ca.to_path_buf(), detail: e.to_string() })
}

/// The client certificate chain (leaf first) and its key (PKCS#8, SEC1 or PKCS#1 PEM), checked to match.
fn read_identity(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsSetupError::Cert { path: cert.to_path_buf(), source })?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|source| TlsSetupError::Key { path: key.to_path_buf(), source })?;
    CertifiedKey::from_der(chain, key, provider).map(Arc::new).map_err(TlsSetupError::Identity)
}

fn read(path: &Path) -> Result<Vec<u8>, rustls_pki_types::pem::Error> {
    std::fs::read(path).map_err(rustls_pki_types::pem::Error::Io)
}
