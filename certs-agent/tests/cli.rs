//! The built `certs-agent` binary, end to end: exit statuses, files and their modes, error lines.
// Test helpers outside #[test] functions may unwrap too (clippy's allow-unwrap-in-tests does not reach them).
#![allow(clippy::unwrap_used)]

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use certs_agent::{Ca, Issuer, publish};
use policy::{SpiffeId, TrustDomain};
use time::OffsetDateTime;

const ID: &str = "spiffe://example.org/ns/web/sa/frontend";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certs-agent")).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn init_ca(dir: &Path) {
    let out = run(&["ca", "init", "--trust-domain", "example.org", "--dir", path(dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn issue(ca: &Path, out_dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["issue", "--ca-dir", path(ca), "--id", ID, "--out", path(out_dir)];
    args.extend_from_slice(extra);
    run(&args)
}

/// The single stderr line of a failed command.
fn error_line(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {err:?}");
    assert!(lines[0].starts_with("certs-agent: error: "), "{err}");
    lines[0].to_owned()
}

#[test]
fn ca_init_writes_private_files_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    init_ca(&ca);
    assert_eq!(mode(&ca), 0o700);
    assert_eq!(mode(&ca.join("ca_key.pem")), 0o600);
    assert!(ca.join("ca.pem").is_file() && ca.join("bundle.pem").is_file());
    let key = fs::read(ca.join("ca_key.pem")).unwrap();

    let again = run(&["ca", "init", "--trust-domain", "example.org", "--dir", path(&ca)]);
    assert_eq!(again.status.code(), Some(1));
    let line = error_line(&again);
    assert!(line.contains("already exists") && line.contains("ca_key.pem"), "{line}");
    assert_eq!(fs::read(ca.join("ca_key.pem")).unwrap(), key);
}

#[test]
fn ca_init_rejects_a_bad_trust_domain_and_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["ca", "init", "--trust-domain", "Example.org", "--dir", path(tmp.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("lowercase"));
    let out = run(&["ca", "init", "--trust-domain", "example.org", "--dir", path(tmp.path()), "--ttl", "1y2x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("invalid duration"));
    assert!(!tmp.path().join("ca.pem").exists());
}

#[test]
fn issue_publishes_the_atomic_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    init_ca(&ca);
    let out = issue(&ca, &id, &["--ttl", "30m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(ID));

    assert_eq!(mode(&id), 0o700);
    let data = fs::read_link(id.join("..data")).unwrap();
    for name in ["svid.pem", "svid_key.pem", "svid_bundle.pem", "svid_bundle.spiffe.json"] {
        assert_eq!(fs::read_link(id.join(name)).unwrap(), Path::new("..data").join(name));
        assert!(id.join(&data).join(name).is_file());
    }
    assert_eq!(mode(&id.join("svid_key.pem")), 0o600);
    assert_eq!(fs::read(id.join("svid_bundle.pem")).unwrap(), fs::read(ca.join("bundle.pem")).unwrap());
    assert_eq!(fs::read(id.join("svid_bundle.spiffe.json")).unwrap(), fs::read(ca.join("bundle.spiffe.json")).unwrap());
    assert!(fs::read_to_string(id.join("svid_key.pem")).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));

    // A second issue swaps ..data and removes the first version.
    let out = issue(&ca, &id, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data2 = fs::read_link(id.join("..data")).unwrap();
    assert_ne!(data, data2);
    assert!(!id.join(&data).exists());
}

#[test]
fn issue_refuses_a_ttl_beyond_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    let out = run(&["ca", "init", "--trust-domain", "example.org", "--dir", path(&ca), "--ttl", "2h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = issue(&ca, &id, &["--ttl", "3h"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(line.contains("would outlive the CA") && line.contains("left"), "{line}");
    assert!(!id.join("svid.pem").exists());
}

#[test]
fn issue_reports_bad_ids_and_missing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    let out = issue(&ca, &id, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("ca.pem"));

    init_ca(&ca);
    for (bad, why) in [
        ("spiffe://example.org", "no path"),
        ("spiffe://other.org/a", "outside the CA's trust domain"),
        ("spiffe://example.org/a/../b", "invalid SPIFFE ID"),
        ("https://example.org/a", "invalid SPIFFE ID"),
    ] {
        let out = run(&["issue", "--ca-dir", path(&ca), "--id", bad, "--out", path(&id)]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let line = error_line(&out);
        assert!(line.contains(why), "{bad}: {line}");
    }
    assert!(!id.exists());
}

#[test]
fn issue_reports_an_unwritable_output_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    init_ca(&ca);
    let file = tmp.path().join("a-file");
    fs::write(&file, "").unwrap();
    let out = issue(&ca, &file.join("id"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("a-file"));
}

#[test]
fn inspect_exit_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    init_ca(&ca);
    assert!(issue(&ca, &id, &[]).status.success());

    // Directory: uses svid_bundle.pem and verifies the chain.
    let out = run(&["inspect", path(&id)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    for want in [
        ID,
        "valid X.509-SVID",
        "ECDSA P-256",
        "digitalSignature (critical)",
        "serverAuth, clientAuth",
        "verified for serverAuth and clientAuth",
        "left)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    // A file with --bundle.
    let out = run(&["inspect", path(&id.join("svid.pem")), "--bundle", path(&ca.join("bundle.pem"))]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // The CA certificate is not an SVID: exit 1, one violation per line naming the field.
    let out = run(&["inspect", path(&ca.join("ca.pem"))]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("NOT a valid X.509-SVID"), "{text}");
    assert!(text.contains("violation:      extensions.basicConstraints.cA: cA is TRUE (X509-SVID §4.1"), "{text}");
    assert!(
        text.contains(
            "violation:      extensions.keyUsage: keyCertSign is set (X509-SVID §4.3: a leaf must not set keyCertSign)"
        ),
        "{text}"
    );

    // Under a foreign root of the same trust domain: the chain fails.
    let other = tmp.path().join("other-ca");
    init_ca(&other);
    let out = run(&["inspect", path(&id), "--bundle", path(&other.join("bundle.pem"))]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("violation:      chain:"), "{}", stdout(&out));

    // Unreadable input and usage errors: exit 2.
    let out = run(&["inspect", path(&tmp.path().join("missing.pem"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("missing.pem"));
    let garbage = tmp.path().join("garbage.pem");
    fs::write(&garbage, "not pem").unwrap();
    let out = run(&["inspect", path(&garbage)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("no CERTIFICATE"));
    assert_eq!(run(&["inspect"]).status.code(), Some(2));
    assert_eq!(run(&["inspect", "--bogus", "x"]).status.code(), Some(2));
}

#[test]
fn inspect_passes_only_a_chain_it_verified_and_uses_the_bundle_beside_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    init_ca(&ca);
    assert!(issue(&ca, &id, &[]).status.success());

    // A file of an identity directory: the svid_bundle.pem beside it verifies the chain, and is named.
    let out = run(&["inspect", path(&id.join("svid.pem"))]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let beside = id.join("svid_bundle.pem");
    assert!(text.contains(&format!("verified for serverAuth and clientAuth against {}", beside.display())), "{text}");

    // A forger's certificate (same trust domain, its own CA) with no bundle anywhere: the leaf rules hold, but
    // nothing vouches for it, so `inspect x && deploy` must not pass it.
    let forger = tmp.path().join("forger-ca");
    init_ca(&forger);
    let forged = tmp.path().join("forged");
    assert!(issue(&forger, &forged, &[]).status.success());
    let lone = tmp.path().join("lone");
    fs::create_dir(&lone).unwrap();
    fs::copy(forged.join("svid.pem"), lone.join("cert.pem")).unwrap();
    let out = run(&["inspect", path(&lone.join("cert.pem"))]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("chain was NOT verified"), "{text}");
    assert!(text.contains(ID), "the leaf findings are still printed: {text}");

    // The forged leaf dropped into the victim's identity directory: the bundle beside it refuses the chain.
    fs::copy(forged.join("svid.pem"), id.join("forged.pem")).unwrap();
    let out = run(&["inspect", path(&id.join("forged.pem"))]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("violation:      chain:"), "{text}");
}

#[test]
fn inspect_reports_an_expired_svid() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca_dir, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    let past = OffsetDateTime::now_utc() - time::Duration::hours(5);
    let td = TrustDomain::parse("example.org").unwrap();
    let issuer = Issuer::new(Ca::init(&ca_dir, &td, Duration::from_secs(2 * 3600), past).unwrap());
    let svid = issuer.issue(&SpiffeId::parse(ID).unwrap(), Duration::from_secs(3600), past).unwrap();
    publish::publish(&id, &svid.payload()).unwrap();

    let out = run(&["inspect", path(&id)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("violation:      validity.notAfter: expired"), "{text}");
    assert!(text.contains("ago)"), "{text}");
}

#[test]
fn help_documents_the_inspect_exit_statuses() {
    let out = run(&["inspect", "--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("Exit status: 0 only when the chain verified against a trust bundle"), "{text}");
    assert!(text.contains("svid_bundle.pem beside the certificate"), "{text}");
}

/// A CA directory in the plain SPEC §1 layout (three files), as another tool would make it.
fn plain_ca(dir: &Path) {
    init_ca(dir);
    fs::remove_file(dir.join("roots.json")).unwrap();
    fs::remove_dir_all(dir.join("roots")).unwrap();
    fs::remove_file(dir.join("bundle.spiffe.json")).unwrap();
}

fn run_agent(ca: &Path, id: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--ca-dir", path(ca), "--id", id, "--out", path(out)];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn run_refuses_to_start_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, out) = (tmp.path().join("ca"), tmp.path().join("out"));

    // Missing CA files.
    let o = run_agent(&ca, ID, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(line.contains("ca.pem") && line.contains("missing"), "{line}");

    // A CA key that does not match the CA certificate.
    plain_ca(&ca);
    let other = tmp.path().join("other");
    init_ca(&other);
    fs::remove_file(ca.join("ca_key.pem")).unwrap();
    fs::copy(other.join("ca_key.pem"), ca.join("ca_key.pem")).unwrap();
    let o = run_agent(&ca, ID, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(line.contains("ca_key.pem does not match the certificate"), "{line}");
    fs::remove_dir_all(&ca).unwrap();
    init_ca(&ca);

    // Invalid SPIFFE IDs and foreign trust domains are usage errors.
    for (bad, why) in [
        ("spiffe://example.org/a//b", "invalid SPIFFE ID"),
        ("spiffe://other.org/a", "outside the CA's trust domain"),
        ("spiffe://example.org", "no path"),
    ] {
        let o = run_agent(&ca, bad, &out, &[]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(error_line(&o).contains(why), "{bad}: {}", stderr(&o));
    }

    // An unwritable output directory (under a regular file: fails even for root).
    let file = tmp.path().join("a-file");
    fs::write(&file, "").unwrap();
    let o = run_agent(&ca, ID, &file.join("out"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(line.contains("cannot publish into") && line.contains("a-file"), "{line}");

    // A TTL longer than the CA's remaining life.
    let short = tmp.path().join("short");
    let o = run(&["ca", "init", "--trust-domain", "example.org", "--dir", path(&short), "--ttl", "2h"]);
    assert!(o.status.success());
    let o = run_agent(&short, ID, &out, &["--ttl", "3h"]);
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(line.contains("would outlive the CA") && line.contains("left"), "{line}");

    // Bad durations.
    let o = run_agent(&ca, ID, &out, &["--retry-max", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(error_line(&o).contains("--retry-max"));

    // Nothing was published by any of these.
    assert!(!out.join("svid.pem").exists());
}

#[test]
fn run_refuses_a_metrics_address_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, out) = (tmp.path().join("ca"), tmp.path().join("out"));
    init_ca(&ca);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = run_agent(&ca, ID, &out, &["--metrics", &addr, "--log-format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("certs-agent: error: --metrics") && last.contains("cannot listen"), "{err}");
}

#[test]
fn rotate_and_retire_report_what_they_did_and_why_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    init_ca(&ca);
    assert!(issue(&ca, &id, &["--ttl", "1h"]).status.success());

    // Nothing to retire yet.
    let o = run(&["ca", "retire", "--dir", path(&ca)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(error_line(&o).contains("nothing to retire"));

    // Rotate with a delay: the bundle holds both roots at once; a second rotation waits.
    let o = run(&["ca", "rotate", "--dir", path(&ca), "--activate-after", "1h"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("now trusts 2 roots"), "{}", stdout(&o));
    assert_eq!(fs::read_to_string(ca.join("bundle.pem")).unwrap().matches("BEGIN CERTIFICATE").count(), 2);
    let o = run(&["ca", "rotate", "--dir", path(&ca)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(error_line(&o).contains("already in progress"));

    // The old root still signs: retire must wait (exit 3), even with --force.
    let o = run(&["ca", "retire", "--dir", path(&ca), "--force"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(error_line(&o).contains("still signs"));
    assert!(run(&["ca", "retire", "--help"]).status.success());

    // With immediate activation, the old root's live SVID blocks retirement; --force overrides, loudly.
    let ca2 = tmp.path().join("ca2");
    init_ca(&ca2);
    assert!(issue(&ca2, &tmp.path().join("id2"), &["--ttl", "1h"]).status.success());
    assert!(run(&["ca", "rotate", "--dir", path(&ca2), "--activate-after", "0s"]).status.success());
    let o = run(&["ca", "retire", "--dir", path(&ca2)]);
    assert_eq!(o.status.code(), Some(3));
    let line = error_line(&o);
    assert!(line.contains("stay valid until") && line.contains("--force"), "{line}");
    let o = run(&["ca", "retire", "--dir", path(&ca2), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: --force"), "{}", stderr(&o));
    assert!(stdout(&o).contains("retired root") && stdout(&o).contains("now trusts 1 root"), "{}", stdout(&o));
    assert_eq!(fs::read_to_string(ca2.join("bundle.pem")).unwrap().matches("BEGIN CERTIFICATE").count(), 1);

    let o = run(&["ca", "rotate", "--dir", path(&ca2), "--activate-after", "soon"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn issue_records_what_each_root_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    init_ca(&ca);
    assert!(issue(&ca, &id, &["--ttl", "30m"]).status.success());
    let roots: serde_json::Value = serde_json::from_slice(&fs::read(ca.join("roots.json")).unwrap()).unwrap();
    let until = roots["roots"][0]["signed_until"].as_i64().unwrap();
    let leaf = certs_agent::pem::certificates(&fs::read(id.join("svid.pem")).unwrap()).unwrap();
    let facts = policy::svid::leaf_details(&leaf[0]).unwrap();
    assert_eq!(until, facts.not_after);
}

#[test]
fn a_plain_ca_directory_is_adopted_by_the_first_command() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, id) = (tmp.path().join("ca"), tmp.path().join("id"));
    plain_ca(&ca);
    let before = fs::read(ca.join("ca.pem")).unwrap();
    assert!(issue(&ca, &id, &[]).status.success());
    assert!(ca.join("roots.json").is_file() && ca.join("bundle.spiffe.json").is_file());
    assert_eq!(fs::read(ca.join("ca.pem")).unwrap(), before);
    assert_eq!(mode(&ca.join("ca_key.pem")), 0o600);
}
