//! Interoperability: OpenSSL accepts what certs-agent issues. Skipped (with a notice) without `openssl`.
// Test helpers outside #[test] functions may unwrap too (clippy's allow-unwrap-in-tests does not reach them).
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

const ID: &str = "spiffe://example.org/ns/web/sa/frontend";

fn openssl(args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new("openssl").args(args).output().ok()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

fn agent(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_certs-agent")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn openssl_verifies_the_svid_for_both_purposes() {
    if openssl(&["version"]).is_none() {
        eprintln!("NOTICE: openssl not on PATH; skipping the OpenSSL interoperability test");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    agent(&["ca", "init", "--trust-domain", "example.org", "--dir", p(&ca)]);
    agent(&["issue", "--ca-dir", p(&ca), "--id", ID, "--out", p(&id)]);

    let bundle = ca.join("bundle.pem");
    let svid = id.join("svid.pem");
    for purpose in ["sslclient", "sslserver"] {
        let (ok, text) = openssl(&["verify", "-CAfile", p(&bundle), "-purpose", purpose, p(&svid)]).unwrap();
        assert!(ok, "openssl verify -purpose {purpose}: {text}");
    }

    let (ok, text) = openssl(&["x509", "-in", p(&svid), "-noout", "-text"]).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(!text.contains("Certificate Sign"), "{text}");
    assert_eq!(text.matches("URI:").count(), 1, "{text}");
    assert!(text.contains(&format!("URI:{ID}")), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"), "{text}");

    let (ok, text) = openssl(&["x509", "-in", p(&ca.join("ca.pem")), "-noout", "-text"]).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("CA:TRUE") && text.contains("URI:spiffe://example.org\n"), "{text}");
    assert!(!text.contains("Name Constraints"), "{text}");

    // The key file is PKCS#8 and matches the certificate.
    let (ok, key_pub) = openssl(&["pkey", "-in", p(&id.join("svid_key.pem")), "-pubout"]).unwrap();
    assert!(ok, "{key_pub}");
    let (ok, cert_pub) = openssl(&["x509", "-in", p(&svid), "-noout", "-pubkey"]).unwrap();
    assert!(ok, "{cert_pub}");
    assert_eq!(key_pub, cert_pub);
}
