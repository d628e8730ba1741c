//! Clients that misbehave on purpose: silent sockets, garbage senders, oversized handshakes, absurd
//! certificate chains, abortive closes. Each is built from real sockets and real certificates, so what the
//! sidecar sees is what an attacker or a broken peer would send.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{apps::pattern, pki::write_identity};

/// How a connection ended, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Orderly: the read returned 0 (or a TLS stream ended).
    Eof { after: Duration, bytes: usize },
    /// The peer reset the connection (or the TLS layer failed).
    Error { after: Duration, bytes: usize },
    /// Still open when we stopped waiting.
    StillOpen,
}

impl Closed {
    /// When the connection ended, if it did.
    pub fn after(self) -> Option<Duration> {
        match self {
            Closed::Eof { after, .. } | Closed::Error { after, .. } => Some(after),
            Closed::StillOpen => None,
        }
    }

    pub fn is_closed(self) -> bool {
        self != Closed::StillOpen
    }

    /// Bytes read before the end.
    pub fn bytes(self) -> usize {
        match self {
            Closed::Eof { bytes, .. } | Closed::Error { bytes, .. } => bytes,
            Closed::StillOpen => 0,
        }
    }
}

/// Reads (and discards) until the peer closes, for at most `within`; times are measured from `since`.
pub async fn wait_closed<S: AsyncRead + Unpin>(stream: &mut S, since: Instant, within: Duration) -> Closed {
    let mut buf = [0u8; 4096];
    let mut bytes = 0;
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Closed::Eof { after: since.elapsed(), bytes },
                Ok(n) => bytes += n,
                Err(_) => return Closed::Error { after: since.elapsed(), bytes },
            }
        }
    };
    tokio::time::timeout(within, read_all).await.unwrap_or(Closed::StillOpen)
}

/// `len` pseudo-random bytes that are certainly not a TLS record: the first byte is not a content type
/// (20..=24), so a TLS server can refuse them at the first record header.
pub fn garbage(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes = pattern(len.max(1), seed);
    if (20..=24).contains(&bytes[0]) {
        bytes[0] = 0x47; // 'G', as in a plaintext "GET"
    }
    bytes
}

/// A TLS 1.3-looking ClientHello whose single extension is `extension_len` bytes of padding, split into
/// handshake records of at most 16 KiB as a real client would. With `extension_len` near 65,535 the whole
/// handshake message is over 64 KiB.
pub fn oversized_client_hello(extension_len: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x03]); // legacy_version
    body.extend_from_slice(&pattern(32, 7)); // random
    body.push(0); // legacy_session_id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // cipher_suites: TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    let ext_len = usize::from(extension_len);
    let mut ext = Vec::with_capacity(ext_len);
    ext.extend_from_slice(&[0x00, 0x15]); // padding extension
    ext.extend_from_slice(&u16::try_from(ext_len.saturating_sub(4)).unwrap_or(0).to_be_bytes());
    ext.resize(ext_len, 0);
    body.extend_from_slice(&extension_len.to_be_bytes());
    body.extend_from_slice(&ext);

    let mut message = vec![0x01]; // client_hello
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);

    let mut wire = Vec::new();
    for chunk in message.chunks(16 * 1024) {
        wire.extend_from_slice(&[0x16, 0x03, 0x01]);
        wire.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        wire.extend_from_slice(chunk);
    }
    wire
}

/// Handshake records announcing one ClientHello of `declared` bytes (up to 16 MiB), followed by `send` bytes of
/// it: what a peer does to make a server buffer a huge message.
pub fn huge_declared_handshake(declared: u32, send: usize) -> Vec<u8> {
    let mut message = vec![0x01];
    message.extend_from_slice(&declared.to_be_bytes()[1..]);
    message.resize(4 + send, 0x41);
    let mut wire = Vec::new();
    for chunk in message.chunks(16 * 1024) {
        wire.extend_from_slice(&[0x16, 0x03, 0x01]);
        wire.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        wire.extend_from_slice(chunk);
    }
    wire
}

/// Connects, sends `bytes` (ignoring a reset halfway: the server may refuse before the end), and waits up to
/// `within` for the server to close.
pub async fn send_and_wait_closed(addr: SocketAddr, bytes: &[u8], within: Duration) -> anyhow::Result<Closed> {
    let mut s = TcpStream::connect(addr).await?;
    let since = Instant::now();
    let _ = s.write_all(bytes).await;
    Ok(wait_closed(&mut s, since, within).await)
}

/// Closes `stream` abortively: `SO_LINGER` 0, so the kernel sends a RST instead of a FIN.
pub fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::hours(1);
    params
}

fn leaf_params(uri: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "hostile");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::hours(1);
    Ok(params)
}

/// Writes an identity directory whose `svid.pem` is a leaf for `id` followed by `intermediates` CA
/// certificates, each signed by the next, the last signed by `root`: a chain far deeper than any verifier
/// allows. The bundle is `bundle_pem`.
pub fn deep_chain_identity(
    root: &Issuer<'_, KeyPair>,
    intermediates: usize,
    id: &str,
    bundle_pem: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    // Built from the root down; written leaf first.
    let mut pems = Vec::new();
    let mut issuer_key = None::<Issuer<'static, KeyPair>>;
    for i in 0..intermediates {
        let key = KeyPair::generate()?;
        let params = ca_params(&format!("intermediate {i}"));
        let cert = match &issuer_key {
            None => params.signed_by(&key, root)?,
            Some(parent) => params.signed_by(&key, parent)?,
        };
        pems.push(cert.pem());
        issuer_key = Some(Issuer::new(params, key));
    }
    let key = KeyPair::generate()?;
    let leaf = match &issuer_key {
        None => leaf_params(id)?.signed_by(&key, root)?,
        Some(parent) => leaf_params(id)?.signed_by(&key, parent)?,
    };
    pems.push(leaf.pem());
    pems.reverse();
    write_identity(dir, &pems.concat(), &key.serialize_pem(), bundle_pem)
}

/// Writes an identity directory with a leaf signed by `root` whose single URI SAN is `uri` (e.g. a SPIFFE ID
/// of 10,000 bytes).
pub fn leaf_with_uri(root: &Issuer<'_, KeyPair>, uri: &str, bundle_pem: &str, dir: &Path) -> anyhow::Result<()> {
    let key = KeyPair::generate()?;
    let leaf = leaf_params(uri)?.signed_by(&key, root)?;
    write_identity(dir, &leaf.pem(), &key.serialize_pem(), bundle_pem)
}
