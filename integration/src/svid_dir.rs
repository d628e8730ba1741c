//! Reading an identity directory that `certs-agent` published, the way a consumer does, and checking that it
//! is one complete, matching set: rustls accepts the key for the leaf, the sidecar's own verifier accepts the
//! leaf under the bundle in both roles, and the SPIFFE bundle holds exactly the PEM bundle's roots.

use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, bail, ensure};
use policy::{LeafDetails, Role, SpiffeId, TrustBundle, svid::leaf_details};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use serde_json::Value;

/// The files of the identity directory.
pub const FILES: [&str; 4] = ["svid.pem", "svid_key.pem", "svid_bundle.pem", "svid_bundle.spiffe.json"];

/// One publication, read in one pass.
#[derive(Debug, Clone)]
pub struct Published {
    /// The version directory `..data` named.
    pub version: String,
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub bundle_pem: Vec<u8>,
    pub bundle_json: Value,
    pub leaf: LeafDetails,
    pub id: SpiffeId,
    /// Roots in the bundle.
    pub roots: usize,
}

/// Reads `dir` through `..data` resolved once (as the sidecar reads it) and checks the set (see the module
/// docs), the key file's mode (0600) and the visible links (`NAME -> ..data/NAME`).
pub fn read_checked(dir: &Path) -> anyhow::Result<Published> {
    read_version(dir, &data_target(dir)?)
}

/// The version directory `DIR/..data` names.
pub fn data_target(dir: &Path) -> anyhow::Result<String> {
    let version = std::fs::read_link(dir.join("..data")).context("..data")?;
    Ok(version.to_str().context("non-UTF-8 version")?.to_owned())
}

/// What one read of the current publication found.
#[derive(Debug)]
pub enum Read {
    /// A complete, matching set.
    Consistent(Box<Published>),
    /// The version `..data` named was replaced and cleaned up between resolving `..data` and reading it: a
    /// normal race for a reader, which reads again (the sidecar retries).
    Superseded,
}

/// Reads the current publication as the sidecar does (resolve `..data` once, read through it) and tells a
/// reader's normal race (the version was superseded and removed meanwhile) from a broken directory: `..data`
/// missing, or still naming a version that is not a complete, matching set (dangling, half-written, or
/// emptied by a writer).
pub fn read_current(dir: &Path) -> anyhow::Result<Read> {
    let version = data_target(dir)?;
    match read_version(dir, &version) {
        Ok(published) => Ok(Read::Consistent(Box::new(published))),
        Err(_) if data_target(dir).ok().as_deref() != Some(version.as_str()) => Ok(Read::Superseded),
        Err(e) => Err(e.context(format!("..data still names {version}"))),
    }
}

/// Reads and checks the version directory `version` of `dir` (see [`read_checked`]).
pub fn read_version(dir: &Path, version: &str) -> anyhow::Result<Published> {
    let version = version.to_owned();
    for name in FILES {
        let link = std::fs::read_link(dir.join(name)).with_context(|| format!("visible link {name}"))?;
        ensure!(link == Path::new("..data").join(name), "{name} -> {}", link.display());
    }
    let vdir = dir.join(&version);
    let read = |name: &str| std::fs::read(vdir.join(name)).with_context(|| format!("{version}/{name}"));
    let (chain_pem, key_pem, bundle_pem, json) =
        (read("svid.pem")?, read("svid_key.pem")?, read("svid_bundle.pem")?, read("svid_bundle.spiffe.json")?);
    let mode = std::fs::metadata(vdir.join("svid_key.pem"))?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "svid_key.pem has mode {mode:o}");

    let chain = certs(&chain_pem).context("svid.pem")?;
    let leaf = leaf_details(&chain[0])?;
    let id = SpiffeId::parse(leaf.uri_sans.first().context("no URI SAN")?)?;
    key_matches(&chain, &key_pem)?;
    let bundle = TrustBundle::from_pem(id.trust_domain(), &bundle_pem).context("svid_bundle.pem")?;
    for role in [Role::Server, Role::Client] {
        bundle.verify(&chain[0], &chain[1..], UnixTime::now(), role).with_context(|| format!("as {role:?}"))?;
    }
    let bundle_json: Value = serde_json::from_slice(&json).context("svid_bundle.spiffe.json")?;
    let x5c: Vec<String> = bundle_json["keys"]
        .as_array()
        .context("no keys")?
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .filter_map(|k| k["x5c"][0].as_str().map(str::to_owned))
        .collect();
    ensure!(x5c == pem_bodies(&bundle_pem), "the SPIFFE bundle and svid_bundle.pem hold different roots");
    Ok(Published { version, chain_pem, key_pem, bundle_pem, bundle_json, leaf, id, roots: x5c.len() })
}

/// The leaf serial through the visible name (None while there is none).
pub fn serial(dir: &Path) -> Option<String> {
    let pem = std::fs::read(dir.join("svid.pem")).ok()?;
    Some(leaf_details(certs(&pem).ok()?.first()?).ok()?.serial_hex)
}

/// What a publication interrupted by a crash left beside the current version: other version directories,
/// `..data_tmp`, temporary visible links.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let current = std::fs::read_link(dir.join("..data")).ok();
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            let version = n.starts_with("..") && n[2..].starts_with(|c: char| c.is_ascii_digit());
            (version && current.as_deref() != Some(Path::new(n))) || n == "..data_tmp" || n.ends_with(".tmp")
        })
        .collect()
}

/// Every CERTIFICATE of a PEM text.
pub fn certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        bail!("no certificate");
    }
    Ok(certs)
}

/// The base64 bodies of the CERTIFICATE blocks of a PEM text (standard base64 of the DER: what `x5c` holds).
pub fn pem_bodies(pem: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(pem);
    let mut bodies = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match line {
            "-----BEGIN CERTIFICATE-----" => current = Some(String::new()),
            "-----END CERTIFICATE-----" => bodies.extend(current.take()),
            _ => {
                if let Some(body) = current.as_mut() {
                    body.push_str(line);
                }
            }
        }
    }
    bodies
}

/// Checks with rustls that `key_pem` is the private key of the leaf of `chain`.
pub fn key_matches(chain: &[CertificateDer<'static>], key_pem: &[u8]) -> anyhow::Result<()> {
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("svid_key.pem")?;
    let provider = sidecar::tls::provider();
    CertifiedKey::from_der(chain.to_vec(), key, &provider).context("the key does not match the leaf")?;
    Ok(())
}

/// Whether the leaf of `chain_pem` verifies (as a server) under the roots of `roots_pem` alone: tells which
/// root signed it. Checked at the middle of the leaf's validity, so an expired leaf still tells its root.
pub fn signed_by(chain_pem: &[u8], roots_pem: &[u8]) -> bool {
    let Ok(chain) = certs(chain_pem) else { return false };
    let Ok(leaf) = leaf_details(&chain[0]) else { return false };
    let Some(Ok(id)) = leaf.uri_sans.first().map(|u| SpiffeId::parse(u)) else { return false };
    let Ok(bundle) = TrustBundle::from_pem(id.trust_domain(), roots_pem) else { return false };
    let middle = u64::try_from(leaf.not_before / 2 + leaf.not_after / 2).unwrap_or(0);
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(middle));
    bundle.verify(&chain[0], &chain[1..], at, Role::Server).is_ok()
}

/// The PEM of root `serial` from a CA directory (`roots/<serial>.pem`).
pub fn root_pem(ca_dir: &Path, serial: &str) -> anyhow::Result<Vec<u8>> {
    Ok(std::fs::read(ca_dir.join("roots").join(format!("{serial}.pem")))?)
}

/// Runs `openssl` with `args`: success and the combined output; None when openssl is missing.
pub fn openssl(args: &[&str]) -> Option<(bool, String)> {
    let out = std::process::Command::new("openssl").args(args).output().ok()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

/// The independent check of the acceptance criteria: `openssl verify -CAfile bundle -purpose sslclient` and
/// `sslserver` accept the leaf, and `openssl x509 -text` shows a critical key usage and exactly one URI SAN
/// (the expected one). Files are written to `scratch`.
pub fn openssl_accepts(published: &Published, scratch: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(scratch)?;
    let (leaf, bundle) = (scratch.join("leaf.pem"), scratch.join("bundle.pem"));
    std::fs::write(&leaf, &published.chain_pem)?;
    std::fs::write(&bundle, &published.bundle_pem)?;
    let (leaf, bundle) = (leaf.to_str().context("path")?, bundle.to_str().context("path")?);
    for purpose in ["sslclient", "sslserver"] {
        let (ok, text) =
            openssl(&["verify", "-CAfile", bundle, "-purpose", purpose, leaf]).context("openssl is needed")?;
        ensure!(ok, "openssl verify -purpose {purpose}: {text}");
    }
    let (ok, text) = openssl(&["x509", "-in", leaf, "-noout", "-text"]).context("openssl is needed")?;
    ensure!(ok, "{text}");
    ensure!(text.contains("X509v3 Key Usage: critical"), "key usage not critical:\n{text}");
    ensure!(text.matches("URI:").count() == 1, "not exactly one URI SAN:\n{text}");
    ensure!(text.contains(&format!("URI:{}", published.id)), "URI SAN is not {}:\n{text}", published.id);
    Ok(())
}

/// One new SVID seen in a watched directory.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// When it was first seen (wall clock, Unix seconds; and monotonic).
    pub unix: f64,
    pub at: std::time::Instant,
    pub serial: String,
    /// The checked publication, or why the check failed.
    pub published: Result<Published, String>,
}

/// Polls an identity directory every few milliseconds from a thread of its own, and records every new
/// serial with the time it was first seen and the result of [`read_checked`].
pub struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sightings: std::sync::Arc<std::sync::Mutex<Vec<Sighting>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often a [`Watch`] looks.
pub const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

impl Watch {
    pub fn start(dir: &Path) -> Self {
        use std::sync::{Arc, Mutex, atomic::AtomicBool};
        let stop = Arc::new(AtomicBool::new(false));
        let sightings = Arc::new(Mutex::new(Vec::<Sighting>::new()));
        let (flag, seen, dir) = (stop.clone(), sightings.clone(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut last: Option<String> = None;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(serial) = serial(&dir)
                    && last.as_ref() != Some(&serial)
                {
                    let (unix, at) = (crate::agent::unix_now(), std::time::Instant::now());
                    let published = read_checked(&dir).map_err(|e| format!("{e:#}"));
                    // A renewal between the two reads: record what was read, the next poll sees the rest.
                    let serial = published.as_ref().map(|p| p.leaf.serial_hex.clone()).unwrap_or(serial);
                    seen.lock().unwrap().push(Sighting { unix, at, serial: serial.clone(), published });
                    last = Some(serial);
                }
                std::thread::sleep(WATCH_INTERVAL);
            }
        });
        Watch { stop, sightings, thread: Some(thread) }
    }

    /// Every sighting so far.
    pub fn sightings(&self) -> Vec<Sighting> {
        self.sightings.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for some sighting; returns it.
    pub async fn wait_for(
        &self,
        within: std::time::Duration,
        what: &str,
        pred: impl Fn(&Sighting) -> bool,
    ) -> anyhow::Result<Sighting> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(s) = self.sightings().into_iter().find(|s| pred(s)) {
                return Ok(s);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "{what}: not within {within:?}; seen: {:?}",
                    self.sightings().iter().map(|s| &s.serial).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
