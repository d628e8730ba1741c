//! The trust bundle in SPIFFE bundle format (SPIFFE_Trust_Domain_and_Bundle.md §4; X509-SVID.md §6): a JWK
//! set with one `"use": "x509-svid"` key per root, the root certificate in `x5c`, plus `spiffe_sequence` and
//! `spiffe_refresh_hint`.
//!
//! ```json
//! {"keys":[{"use":"x509-svid","kty":"EC","crv":"P-256","x":"..","y":"..","x5c":["<base64 DER>"]}],
//!  "spiffe_sequence":2,"spiffe_refresh_hint":300}
//! ```
//!
//! `x` and `y` (and RSA's `n` and `e`) are base64url without padding (RFC 7518 §6); `x5c` entries are plain
//! base64 DER (RFC 7517 §4.7). No `kid` (X509-SVID §6 forbids it for x509-svid keys).

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};
use x509_parser::{certificate::X509Certificate, prelude::FromDer, public_key::PublicKey};

/// How often consumers should re-read the bundle, in seconds (the SPIFFE spec's suggested default, §6.1).
pub const REFRESH_HINT_SECS: u64 = 300;

/// Why a root cannot be expressed as a JWK, or a document is not a usable SPIFFE bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeBundleError {
    #[error("root #{index}: {reason}")]
    Root { index: usize, reason: String },
    #[error("not a SPIFFE bundle: {0}")]
    Document(String),
}

/// The SPIFFE bundle JSON (pretty-printed, newline-terminated) for `roots`.
pub fn to_json(roots: &[CertificateDer<'_>], sequence: u64) -> Result<String, SpiffeBundleError> {
    let keys = roots
        .iter()
        .enumerate()
        .map(|(index, root)| jwk(root).map_err(|reason| SpiffeBundleError::Root { index, reason }))
        .collect::<Result<Vec<_>, _>>()?;
    let doc = json!({ "keys": keys, "spiffe_sequence": sequence, "spiffe_refresh_hint": REFRESH_HINT_SECS });
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| SpiffeBundleError::Document(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// One `x509-svid` JWK for a root certificate.
fn jwk(root: &CertificateDer<'_>) -> Result<Value, String> {
    let (_, cert) = X509Certificate::from_der(root).map_err(|e| format!("does not parse: {e}"))?;
    let spki = cert.public_key();
    let mut key = Map::new();
    key.insert("use".into(), "x509-svid".into());
    match spki.parsed().map_err(|e| format!("public key does not parse: {e}"))? {
        PublicKey::EC(point) => {
            let curve_oid = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            let (crv, len) = match curve_oid.as_deref() {
                Some("1.2.840.10045.3.1.7") => ("P-256", 32),
                Some("1.3.132.0.34") => ("P-384", 48),
                Some("1.3.132.0.35") => ("P-521", 66),
                other => return Err(format!("EC curve {other:?} has no JWK name")),
            };
            let data = point.data();
            if data.len() != 1 + 2 * len || data[0] != 0x04 {
                return Err("EC public key is not an uncompressed point".into());
            }
            key.insert("kty".into(), "EC".into());
            key.insert("crv".into(), crv.into());
            key.insert("x".into(), URL_SAFE_NO_PAD.encode(&data[1..=len]).into());
            key.insert("y".into(), URL_SAFE_NO_PAD.encode(&data[1 + len..]).into());
        }
        PublicKey::RSA(rsa) => {
            key.insert("kty".into(), "RSA".into());
            key.insert("n".into(), URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.modulus)).into());
            key.insert("e".into(), URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.exponent)).into());
        }
        _ => return Err("only EC and RSA roots can be written as JWKs".into()),
    }
    key.insert("x5c".into(), json!([STANDARD.encode(root.as_ref())]));
    Ok(Value::Object(key))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}

/// A parsed SPIFFE bundle: its X.509 roots (`x5c[0]` of every `x509-svid` key) and its sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBundle {
    pub roots: Vec<CertificateDer<'static>>,
    pub sequence: Option<u64>,
    pub refresh_hint: Option<u64>,
}

/// Reads a SPIFFE bundle the way the spec tells consumers to: keys with another `use`, or without `x5c`, are
/// ignored; only `x5c[0]` counts.
pub fn parse(text: &[u8]) -> Result<ParsedBundle, SpiffeBundleError> {
    let doc: Value = serde_json::from_slice(text).map_err(|e| SpiffeBundleError::Document(e.to_string()))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| SpiffeBundleError::Document("no \"keys\" array".into()))?;
    let mut roots = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        if key.get("use").and_then(Value::as_str) != Some("x509-svid") || key.get("kty").is_none() {
            continue;
        }
        let Some(first) = key.get("x5c").and_then(Value::as_array).and_then(|a| a.first()) else { continue };
        let b64 =
            first.as_str().ok_or_else(|| SpiffeBundleError::Root { index, reason: "x5c[0] is not a string".into() })?;
        let der = STANDARD
            .decode(b64)
            .map_err(|e| SpiffeBundleError::Root { index, reason: format!("x5c[0] is not base64: {e}") })?;
        roots.push(CertificateDer::from(der));
    }
    Ok(ParsedBundle {
        roots,
        sequence: doc.get("spiffe_sequence").and_then(Value::as_u64),
        refresh_hint: doc.get("spiffe_refresh_hint").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};

    fn root(key: &KeyPair) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.self_signed(key).unwrap().der().clone()
    }

    #[test]
    fn p256_root_becomes_an_x509_svid_jwk() {
        let key = KeyPair::generate().unwrap();
        let der = root(&key);
        let text = to_json(std::slice::from_ref(&der), 7).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["spiffe_sequence"], 7);
        assert_eq!(doc["spiffe_refresh_hint"], REFRESH_HINT_SECS);
        let k = &doc["keys"][0];
        assert_eq!(
            (k["use"].as_str(), k["kty"].as_str(), k["crv"].as_str()),
            (Some("x509-svid"), Some("EC"), Some("P-256"))
        );
        assert!(k.get("kid").is_none());
        // x || y is the uncompressed point of the key.
        let x = URL_SAFE_NO_PAD.decode(k["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(k["y"].as_str().unwrap()).unwrap();
        let raw = key.public_key_raw();
        assert_eq!(raw[0], 0x04);
        assert_eq!([&raw[1..33], &raw[33..65]], [x.as_slice(), y.as_slice()]);
        assert_eq!(STANDARD.decode(k["x5c"][0].as_str().unwrap()).unwrap(), der.as_ref());

        let parsed = parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.roots, vec![der]);
        assert_eq!((parsed.sequence, parsed.refresh_hint), (Some(7), Some(REFRESH_HINT_SECS)));
    }

    #[test]
    fn p384_and_rsa_roots_are_supported() {
        let ec = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let doc: Value = serde_json::from_str(&to_json(&[root(&ec)], 1).unwrap()).unwrap();
        assert_eq!(doc["keys"][0]["crv"], "P-384");
        assert_eq!(URL_SAFE_NO_PAD.decode(doc["keys"][0]["x"].as_str().unwrap()).unwrap().len(), 48);
        if let Ok(rsa) = KeyPair::generate_for(&PKCS_RSA_SHA256) {
            let doc: Value = serde_json::from_str(&to_json(&[root(&rsa)], 1).unwrap()).unwrap();
            assert_eq!(doc["keys"][0]["kty"], "RSA");
            assert_eq!(doc["keys"][0]["e"], "AQAB");
        }
    }

    #[test]
    fn consumers_ignore_keys_they_must_ignore() {
        let der = root(&KeyPair::generate().unwrap());
        let b64 = STANDARD.encode(der.as_ref());
        let text = serde_json::to_vec(&json!({"keys": [
            {"use": "jwt-svid", "kty": "EC", "x5c": [b64]},
            {"kty": "EC", "x5c": [b64]},
            {"use": "x509-svid", "kty": "EC"},
            {"use": "x509-svid", "kty": "EC", "x5c": [b64, "ignored"]},
        ]}))
        .unwrap();
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.roots, vec![der]);
        assert_eq!(parsed.sequence, None);
        assert!(matches!(parse(b"{}"), Err(SpiffeBundleError::Document(_))));
        assert!(matches!(parse(b"not json"), Err(SpiffeBundleError::Document(_))));
    }
}
