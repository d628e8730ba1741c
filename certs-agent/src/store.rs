//! The CA directory on disk, opened under its lock ([`crate::lock`]): adopting a plain directory, reading the
//! root set and its certificates, keeping the views up to date, and every change to the directory: the
//! issuance record, rotation and retirement. The layout and the rotation design are in [`crate::ca`].
//!
//! A [`CaStore`] holds the lock for as long as it lives. Issuance happens inside it (snapshot, sign, record),
//! so a `ca retire` can never slip between an issuer choosing a root and recording what that root signed.

use std::{fs, path::Path, time::Duration};

use policy::{LeafDetails, SpiffeId, TrustDomain, svid};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::{
    ca::{self, Ca, CaDir, CaError},
    duration::human,
    files::{self, CERT_MODE, KEY_MODE},
    issuer::{IssueError, IssuedSvid, Issuer, TtlBeyondCa},
    lock::DirLock,
    pem,
    roots::{self, Phase, RetireBlock, RootEntry, RootSet},
    serial::Serial,
    spiffe_bundle,
    validity::{self, rfc3339},
};

/// A root of the set with its certificate.
#[derive(Debug, Clone)]
pub struct LoadedRoot {
    pub entry: RootEntry,
    pub der: CertificateDer<'static>,
    pub facts: LeafDetails,
}

/// The CA directory, locked.
#[derive(Debug)]
pub struct CaStore {
    dir: CaDir,
    _lock: DirLock,
    trust_domain: TrustDomain,
    set: RootSet,
    /// In the order of `set.roots`.
    roots: Vec<LoadedRoot>,
}

/// What `ca rotate` did.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub serial: Serial,
    pub subject: String,
    pub not_after: OffsetDateTime,
    pub activate_at: OffsetDateTime,
    pub bundle_len: usize,
}

/// What `ca retire` did.
#[derive(Debug, Clone)]
pub struct Retirement {
    /// (serial, subject) of each root removed.
    pub retired: Vec<(String, String)>,
    /// Roots removed by `--force` while SVIDs they signed were still valid: (serial, valid until).
    pub forced_live: Vec<(String, OffsetDateTime)>,
    pub bundle_len: usize,
}

/// Why `ca retire` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error(
        "root {serial} signed SVIDs that stay valid until {} ({} from now); retiring it now would make them fail \
         verification. Retry after that, or pass --force",
        rfc3339(*until), human(validity::remaining(*now, *until))
    )]
    LiveSvids { serial: String, until: OffsetDateTime, now: OffsetDateTime },
    #[error(
        "root {active} still signs SVIDs: the new root {pending} takes over at {}; retire the old root after that \
         (and after its last SVID expires)",
        rfc3339(*activate_at)
    )]
    RotationPending { active: String, pending: String, activate_at: OffsetDateTime },
    #[error("nothing to retire: the bundle holds only the signing root{}", active.as_deref().map(|s| format!(" {s}")).unwrap_or_default())]
    NothingToRetire { active: Option<String> },
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl RetireError {
    /// Whether the refusal is temporary (retrying later will succeed by itself).
    pub fn is_temporary(&self) -> bool {
        matches!(self, RetireError::LiveSvids { .. } | RetireError::RotationPending { .. })
    }
}

impl CaStore {
    /// Locks and opens the CA in `dir`: adopts a plain directory (no `roots.json`), loads the root set and every
    /// root certificate, and brings the views up to date.
    pub fn open(dir: &Path) -> Result<CaStore, CaError> {
        let ca_dir = CaDir::new(dir);
        if !dir.is_dir() {
            return Err(CaError::Missing { path: ca_dir.cert() });
        }
        let lock = DirLock::exclusive(&ca_dir.lock())?;
        let now = OffsetDateTime::now_utc();
        let set = match files::read_optional(&ca_dir.roots_file())? {
            Some(bytes) => parse_set(&ca_dir, &bytes)?,
            None => adopt(&ca_dir, now)?,
        };
        let bad_set = |reason: String| CaError::BadRootSet { path: ca_dir.roots_file(), reason };
        let trust_domain = TrustDomain::parse(&set.trust_domain).map_err(|e| bad_set(e.to_string()))?;
        let mut roots = Vec::with_capacity(set.roots.len());
        for entry in &set.roots {
            let path = ca_dir.root_cert(&entry.serial);
            let (der, facts, td) = ca::parse_root(&path, &ca::read_ca_file(&path)?)?;
            let bad_cert = |reason: String| CaError::BadCertificate { path: path.clone(), reason };
            if facts.serial_hex != entry.serial {
                return Err(bad_cert(format!("its serial is {}, not {}", facts.serial_hex, entry.serial)));
            }
            if td != trust_domain {
                return Err(bad_cert(format!("it is a root of {td}, not of {trust_domain}")));
            }
            roots.push(LoadedRoot { entry: entry.clone(), der, facts });
        }
        let store = CaStore { dir: ca_dir, _lock: lock, trust_domain, set, roots };
        store.sync_views(now)?;
        Ok(store)
    }

    pub fn dir(&self) -> &CaDir {
        &self.dir
    }
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    pub fn set(&self) -> &RootSet {
        &self.set
    }
    pub fn roots(&self) -> &[LoadedRoot] {
        &self.roots
    }

    /// The phase of each root at `now`, in bundle order.
    pub fn phases(&self, now: OffsetDateTime) -> Vec<(&LoadedRoot, Phase)> {
        self.roots.iter().map(|r| (r, self.set.phase(&r.entry, now.unix_timestamp()))).collect()
    }

    /// The CA at `now`: the signing root with its key, and every root of the set.
    pub fn snapshot(&self, now: OffsetDateTime) -> Result<Ca, CaError> {
        let active = self
            .set
            .active(now.unix_timestamp())
            .ok_or_else(|| CaError::NoSigningRoot { path: self.dir.roots_file() })?;
        let root = self.root(&active.serial)?;
        let (key, _) =
            ca::load_key(&self.dir.root_key(&active.serial), &self.dir.root_cert(&active.serial), &root.facts)?;
        let bundle = self.roots.iter().map(|r| r.der.clone()).collect();
        Ok(Ca::from_parts(
            self.dir.clone(),
            self.trust_domain.clone(),
            (root.der.clone(), root.facts.clone(), key),
            bundle,
            self.set.sequence,
        ))
    }

    /// Issues an SVID for `id` with the root that signs at `now`, and records it before returning, all under
    /// the lock.
    pub fn issue(
        &mut self,
        id: &SpiffeId,
        ttl: Duration,
        now: OffsetDateTime,
        beyond_ca: TtlBeyondCa,
    ) -> Result<IssuedSvid, IssueError> {
        let svid = Issuer::new(self.snapshot(now)?).issue_with(id, ttl, now, beyond_ca)?;
        self.record_issued(&svid.signing_root, svid.not_after)?;
        Ok(svid)
    }

    /// Records that the root `serial` signed an SVID valid until `not_after`.
    pub fn record_issued(&mut self, serial: &Serial, not_after: OffsetDateTime) -> Result<(), CaError> {
        if self.set.record_issued(&serial.to_hex(), not_after.unix_timestamp()) {
            self.write_set()?;
            let entry = self.set.get(&serial.to_hex()).cloned();
            if let (Some(entry), Some(root)) =
                (entry, self.roots.iter_mut().find(|r| r.entry.serial == serial.to_hex()))
            {
                root.entry = entry;
            }
        }
        Ok(())
    }

    /// `ca rotate`: makes a new root valid for `ttl`, adds it to the bundle now and lets it sign from
    /// `now + activate_after` (default: when the last SVID issued so far expires; see [`crate::ca`]).
    pub fn rotate(
        &mut self,
        ttl: Duration,
        activate_after: Option<Duration>,
        now: OffsetDateTime,
    ) -> Result<Rotation, CaError> {
        let unix = now.unix_timestamp();
        if let Some(pending) = self.set.pending(unix) {
            return Err(CaError::RotationInProgress {
                serial: pending.serial.clone(),
                activate_at: validity::from_unix(pending.activate_at.unwrap_or_default()),
            });
        }
        // Activation compares whole seconds: round up so the new root never signs before `activate_after`
        // has passed (zero means at once).
        let activate_at = match activate_after {
            Some(after) if after.is_zero() => validity::whole_seconds(now),
            Some(after) => validity::ceil_seconds(
                validity::add(now, after).ok_or(CaError::ActivatesAfterExpiry { activate_after: after })?,
            ),
            None => validity::from_unix(self.set.latest_signed_until().unwrap_or(unix).max(unix)),
        };
        let (der, key) = ca::new_root(&self.trust_domain, ttl, now)?;
        let bad = |reason: String| CaError::Generate(reason);
        let facts = svid::leaf_details(&der).map_err(|e| bad(e.to_string()))?;
        let not_after = validity::from_unix(facts.not_after);
        if activate_at >= not_after {
            let after = validity::remaining(now, activate_at);
            return Err(CaError::ActivatesAfterExpiry { activate_after: after });
        }
        let serial = facts.serial_hex.clone();
        files::create_private_dir(&self.dir.roots_dir())?;
        files::write_new_file(&self.dir.root_key(&serial), key.serialize_pem().as_bytes(), KEY_MODE)?;
        files::write_new_file(&self.dir.root_cert(&serial), pem::encode_certificate(&der).as_bytes(), CERT_MODE)?;
        let entry = RootEntry {
            serial: serial.clone(),
            added_at: unix,
            activate_at: Some(activate_at.unix_timestamp()),
            signed_until: None,
        };
        self.set.add(entry.clone());
        self.write_set()?;
        self.roots.push(LoadedRoot { entry, der, facts: facts.clone() });
        self.sync_views(now)?;
        Ok(Rotation {
            serial: Serial::from_be_bytes(&facts.serial),
            subject: facts.subject,
            not_after,
            activate_at,
            bundle_len: self.roots.len(),
        })
    }

    /// `ca retire`: removes the superseded and trust-only roots from the bundle and deletes their keys; refuses
    /// while any of them signed an SVID that is still valid, unless `force`.
    pub fn retire(&mut self, force: bool, now: OffsetDateTime) -> Result<Retirement, RetireError> {
        let unix = now.unix_timestamp();
        let candidates = self.set.retirable(unix, force).map_err(|block| match block {
            RetireBlock::LiveSvids { serial, until } => {
                RetireError::LiveSvids { serial, until: validity::from_unix(until), now }
            }
            RetireBlock::RotationPending { active, pending, activate_at } => {
                RetireError::RotationPending { active, pending, activate_at: validity::from_unix(activate_at) }
            }
            RetireBlock::NothingToRetire { active } => RetireError::NothingToRetire { active },
        })?;
        let forced_live: Vec<(String, OffsetDateTime)> = candidates
            .iter()
            .filter_map(|r| r.signed_until.filter(|&t| t >= unix).map(|t| (r.serial.clone(), validity::from_unix(t))))
            .collect();
        let serials: Vec<String> = candidates.iter().map(|r| r.serial.clone()).collect();
        let retired = self
            .roots
            .iter()
            .filter(|r| serials.contains(&r.entry.serial))
            .map(|r| (r.entry.serial.clone(), r.facts.subject.clone()))
            .collect();
        self.set.remove(&serials);
        self.write_set()?;
        self.roots.retain(|r| !serials.contains(&r.entry.serial));
        // Rewrites the views and deletes the retired roots' files (no longer referenced).
        self.sync_views(now)?;
        Ok(Retirement { retired, forced_live, bundle_len: self.roots.len() })
    }

    fn root(&self, serial: &str) -> Result<&LoadedRoot, CaError> {
        self.roots.iter().find(|r| r.entry.serial == serial).ok_or_else(|| CaError::BadRootSet {
            path: self.dir.roots_file(),
            reason: format!("root {serial} is not loaded"),
        })
    }

    /// Writes `roots.json` (the commit point of every change).
    fn write_set(&self) -> Result<(), CaError> {
        let mut text = serde_json::to_vec_pretty(&self.set)
            .map_err(|e| CaError::BadRootSet { path: self.dir.roots_file(), reason: e.to_string() })?;
        text.push(b'\n');
        files::write_replace(&self.dir.roots_file(), &text, CERT_MODE)?;
        Ok(())
    }

    /// Rewrites whichever view is out of date (`bundle.pem`, `bundle.spiffe.json`, `ca.pem`, `ca_key.pem`) and
    /// removes files of `roots/` that no root references (left by a crash, or by a retirement).
    fn sync_views(&self, now: OffsetDateTime) -> Result<(), CaError> {
        let ders: Vec<CertificateDer<'static>> = self.roots.iter().map(|r| r.der.clone()).collect();
        write_if_changed(&self.dir.bundle(), pem::encode_certificates(&ders).as_bytes(), CERT_MODE)?;
        let json = spiffe_bundle::to_json(&ders, self.set.sequence)
            .map_err(|e| CaError::BadBundle { path: self.dir.spiffe_bundle(), reason: e.to_string() })?;
        write_if_changed(&self.dir.spiffe_bundle(), json.as_bytes(), CERT_MODE)?;
        if let Some(active) = self.set.active(now.unix_timestamp()) {
            let root = self.root(&active.serial)?;
            write_if_changed(&self.dir.cert(), pem::encode_certificate(&root.der).as_bytes(), CERT_MODE)?;
            let key = ca::read_ca_file(&self.dir.root_key(&active.serial))?;
            write_if_changed(&self.dir.key(), &key, KEY_MODE)?;
        }
        self.remove_orphans();
        Ok(())
    }

    /// Best effort: a file that cannot be removed now is removed by a later command.
    fn remove_orphans(&self) {
        let Ok(entries) = fs::read_dir(self.dir.roots_dir()) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let serial = name.strip_suffix("_key.pem").or_else(|| name.strip_suffix(".pem"));
            let orphan = match serial {
                _ if name.starts_with('.') && name.ends_with(".tmp") => true,
                Some(s) if is_hex(s) => self.set.get(s).is_none(),
                _ => false,
            };
            if orphan {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads `roots.json` without the lock, for a cheap "did the CA change?" poll: the file is replaced
/// atomically, so any read sees a complete version. Returns the bundle sequence and the serial of the root that
/// signs at `now`.
pub fn peek(dir: &Path, now: OffsetDateTime) -> Result<(u64, Option<String>), CaError> {
    let ca_dir = CaDir::new(dir);
    let bytes = ca::read_ca_file(&ca_dir.roots_file())?;
    let set = parse_set(&ca_dir, &bytes)?;
    let active = set.active(now.unix_timestamp()).map(|r| r.serial.clone());
    Ok((set.sequence, active))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn parse_set(dir: &CaDir, bytes: &[u8]) -> Result<RootSet, CaError> {
    let bad = |reason: String| CaError::BadRootSet { path: dir.roots_file(), reason };
    let set: RootSet = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if set.version != roots::VERSION {
        return Err(bad(format!("version {} (this certs-agent reads version {})", set.version, roots::VERSION)));
    }
    if set.roots.is_empty() {
        return Err(bad("no roots".into()));
    }
    for (i, root) in set.roots.iter().enumerate() {
        if !is_hex(&root.serial) {
            return Err(bad(format!("root #{i}: serial {:?} is not lowercase hex", root.serial)));
        }
        if set.roots[..i].iter().any(|r| r.serial == root.serial) {
            return Err(bad(format!("root {} is listed twice", root.serial)));
        }
    }
    Ok(set)
}

/// Writes `path` unless it already holds `contents` (and, for a key, is private).
fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let current = files::read_optional(path)?;
    let private_enough =
        mode != KEY_MODE || files::mode_of(path).is_ok_and(|m| !files::is_group_or_world_accessible(m));
    if current.as_deref() != Some(contents) || !private_enough {
        files::write_replace(path, contents, mode)?;
    }
    Ok(())
}

/// Adopts the plain layout of SPEC §1 (`ca.pem`, `ca_key.pem`, `bundle.pem`): checks the three files, copies the
/// roots into `roots/` and writes `roots.json`. The roots of `bundle.pem` other than `ca.pem` become trust-only.
fn adopt(dir: &CaDir, now: OffsetDateTime) -> Result<RootSet, CaError> {
    let cert_path = dir.cert();
    let (cert_der, facts, trust_domain) = ca::parse_root(&cert_path, &ca::read_ca_file(&cert_path)?)?;
    let (_, key_bytes) = ca::load_key(&dir.key(), &cert_path, &facts)?;

    let bundle_path = dir.bundle();
    let bad_bundle = |reason: String| CaError::BadBundle { path: bundle_path.clone(), reason };
    let bundle = pem::certificates(&ca::read_ca_file(&bundle_path)?).map_err(|e| bad_bundle(e.to_string()))?;
    if !bundle.contains(&cert_der) {
        return Err(CaError::CertNotInBundle { bundle: bundle_path.clone(), cert: cert_path });
    }
    let mut roots: Vec<(CertificateDer<'static>, LeafDetails)> = Vec::new();
    for (index, der) in bundle.into_iter().enumerate() {
        if roots.iter().any(|(d, _)| *d == der) {
            continue;
        }
        let facts = svid::leaf_details(&der).map_err(|e| bad_bundle(format!("root #{index}: {e}")))?;
        let td = ca::root_trust_domain(&facts).map_err(|e| bad_bundle(format!("root #{index}: {e}")))?;
        if td != trust_domain {
            return Err(bad_bundle(format!("root #{index} is for trust domain {td}, not {trust_domain}")));
        }
        if roots.iter().any(|(_, f)| f.serial == facts.serial) {
            return Err(bad_bundle(format!("two roots share the serial {}", facts.serial_hex)));
        }
        roots.push((der, facts));
    }

    files::create_private_dir(&dir.roots_dir())?;
    let unix = now.unix_timestamp();
    let mut entries = Vec::with_capacity(roots.len());
    for (der, root_facts) in &roots {
        let serial = root_facts.serial_hex.clone();
        files::write_replace(&dir.root_cert(&serial), pem::encode_certificate(der).as_bytes(), CERT_MODE)?;
        let signing = *der == cert_der;
        if signing {
            files::write_replace(&dir.root_key(&serial), &key_bytes, KEY_MODE)?;
        }
        let activate_at = signing.then(|| facts.not_before.min(unix));
        entries.push(RootEntry { serial, added_at: unix, activate_at, signed_until: None });
    }
    let set = RootSet { version: roots::VERSION, trust_domain: trust_domain.to_string(), sequence: 1, roots: entries };
    let mut text = serde_json::to_vec_pretty(&set)
        .map_err(|e| CaError::BadRootSet { path: dir.roots_file(), reason: e.to_string() })?;
    text.push(b'\n');
    files::write_replace(&dir.roots_file(), &text, CERT_MODE)?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::TtlBeyondCa;

    const HOUR: Duration = Duration::from_secs(3600);

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn web() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/ns/web/sa/web").unwrap()
    }

    fn secs(n: i64) -> time::Duration {
        time::Duration::seconds(n)
    }

    fn init(dir: &Path, now: OffsetDateTime) -> Serial {
        Ca::init(dir, &td(), 24 * HOUR, now).unwrap().serial()
    }

    fn bundle_serials(dir: &Path) -> Vec<String> {
        let pem = fs::read(dir.join(ca::BUNDLE_FILE)).unwrap();
        pem::certificates(&pem).unwrap().iter().map(|d| svid::leaf_details(d).unwrap().serial_hex).collect()
    }

    fn view_serial(dir: &Path) -> String {
        let pem = fs::read(dir.join(ca::CA_CERT_FILE)).unwrap();
        svid::leaf_details(&pem::certificates(&pem).unwrap()[0]).unwrap().serial_hex
    }

    #[test]
    fn a_full_rotation_overlaps_the_bundle_with_every_live_svid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let t0 = OffsetDateTime::now_utc();
        let a = init(dir, t0).to_hex();

        // A signs; the record follows.
        let mut store = CaStore::open(dir).unwrap();
        let svid_a = store.issue(&web(), HOUR, t0, TtlBeyondCa::Refuse).unwrap();
        assert_eq!(svid_a.signing_root.to_hex(), a);
        assert_eq!(store.set().get(&a).unwrap().signed_until, Some(svid_a.not_after.unix_timestamp()));

        // Rotate: B is trusted at once, signs in 60 s.
        let rotation = store.rotate(24 * HOUR, Some(Duration::from_secs(60)), t0).unwrap();
        let b = rotation.serial.to_hex();
        assert_eq!(rotation.bundle_len, 2);
        assert_eq!(bundle_serials(dir), vec![a.clone(), b.clone()]);
        assert_eq!(view_serial(dir), a, "ca.pem is still the signing root");
        assert!(rotation.activate_at >= t0 + secs(60) && rotation.activate_at <= t0 + secs(61));
        let before = store.issue(&web(), HOUR, t0 + secs(30), TtlBeyondCa::Refuse).unwrap();
        assert_eq!(before.signing_root.to_hex(), a);
        assert_eq!(before.bundle_sequence, 2);
        assert_eq!(pem::certificates(before.bundle_pem.as_bytes()).unwrap().len(), 2);
        // A second rotation has to wait for this one.
        assert!(matches!(store.rotate(HOUR, None, t0), Err(CaError::RotationInProgress { .. })));
        // A still signs: nothing can be retired yet.
        assert!(matches!(store.retire(true, t0 + secs(30)), Err(RetireError::RotationPending { .. })));
        drop(store);

        // After activation B signs, and the ca.pem view follows at the next open.
        let t1 = rotation.activate_at;
        let mut store = CaStore::open(dir).unwrap();
        let svid_b = store.issue(&web(), HOUR, t1, TtlBeyondCa::Refuse).unwrap();
        assert_eq!(svid_b.signing_root.to_hex(), b);
        assert_eq!(store.snapshot(t1).unwrap().serial().to_hex(), b);

        // A's SVIDs are live until before.not_after: retire refuses, naming the root and the time.
        let err = store.retire(false, t1).unwrap_err();
        assert!(err.is_temporary());
        let text = err.to_string();
        assert!(text.contains(&a) && text.contains(&rfc3339(before.not_after)) && text.contains("--force"), "{text}");
        assert_eq!(bundle_serials(dir).len(), 2);

        // Once they have expired, A goes, with its key.
        assert!(matches!(store.retire(false, before.not_after), Err(RetireError::LiveSvids { .. })), "inclusive");
        let retirement = store.retire(false, before.not_after + secs(1)).unwrap();
        assert_eq!(retirement.retired.len(), 1);
        assert_eq!(retirement.retired[0].0, a);
        assert!(retirement.forced_live.is_empty());
        assert_eq!(bundle_serials(dir), vec![b.clone()]);
        assert!(!dir.join(ca::ROOTS_DIR).join(format!("{a}_key.pem")).exists());
        assert!(!dir.join(ca::ROOTS_DIR).join(format!("{a}.pem")).exists());
        assert_eq!(store.set().sequence, 3);
        let json = spiffe_bundle::parse(&fs::read(dir.join(ca::SPIFFE_BUNDLE_FILE)).unwrap()).unwrap();
        assert_eq!(json.sequence, Some(3));
        assert_eq!(json.roots.len(), 1);
        assert_eq!(view_serial(dir), b, "ca.pem follows the signing root");
        assert!(matches!(store.retire(true, before.not_after + secs(1)), Err(RetireError::NothingToRetire { .. })));
    }

    #[test]
    fn force_retires_despite_live_svids_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let t0 = OffsetDateTime::now_utc();
        init(tmp.path(), t0);
        let mut store = CaStore::open(tmp.path()).unwrap();
        let svid = store.issue(&web(), HOUR, t0, TtlBeyondCa::Refuse).unwrap();
        store.rotate(24 * HOUR, Some(Duration::ZERO), t0).unwrap();
        let t1 = t0 + secs(2);
        assert!(matches!(store.retire(false, t1), Err(RetireError::LiveSvids { .. })));
        let retirement = store.retire(true, t1).unwrap();
        assert_eq!(retirement.forced_live.len(), 1);
        assert_eq!(retirement.forced_live[0].1, svid.not_after);
    }

    #[test]
    fn default_activation_waits_for_every_svid_issued_so_far() {
        let tmp = tempfile::tempdir().unwrap();
        let t0 = OffsetDateTime::now_utc();
        init(tmp.path(), t0);
        let mut store = CaStore::open(tmp.path()).unwrap();
        let long = store.issue(&web(), 2 * HOUR, t0, TtlBeyondCa::Refuse).unwrap();
        store.issue(&web(), HOUR, t0, TtlBeyondCa::Refuse).unwrap();
        let rotation = store.rotate(24 * HOUR, None, t0).unwrap();
        assert_eq!(rotation.activate_at, long.not_after);

        // No SVID issued yet: the new root activates at once.
        let other = tempfile::tempdir().unwrap();
        init(other.path(), t0);
        let rotation = CaStore::open(other.path()).unwrap().rotate(24 * HOUR, None, t0).unwrap();
        assert!(rotation.activate_at <= OffsetDateTime::now_utc());
    }

    #[test]
    fn an_activation_after_the_new_root_expires_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let t0 = OffsetDateTime::now_utc();
        init(tmp.path(), t0);
        let mut store = CaStore::open(tmp.path()).unwrap();
        let err = store.rotate(HOUR, Some(2 * HOUR), t0).unwrap_err();
        assert!(matches!(err, CaError::ActivatesAfterExpiry { .. }), "{err}");
        assert_eq!(store.roots().len(), 1);
    }

    #[test]
    fn stale_views_and_orphans_of_a_crash_are_repaired_at_the_next_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let a = init(dir, OffsetDateTime::now_utc()).to_hex();
        // A crash after roots.json but before the views: bundle.pem and ca_key.pem stale, a temporary twin and
        // an unreferenced root left in roots/.
        fs::write(dir.join(ca::BUNDLE_FILE), "stale").unwrap();
        fs::write(dir.join(ca::CA_KEY_FILE), "stale").unwrap();
        let roots = dir.join(ca::ROOTS_DIR);
        fs::write(roots.join("abcd.pem"), "orphan").unwrap();
        fs::write(roots.join("abcd_key.pem"), "orphan").unwrap();
        fs::write(roots.join(".x.pem.tmp"), "half").unwrap();
        fs::write(roots.join("README"), "not ours").unwrap();

        let ca = Ca::load(dir).unwrap();
        assert_eq!(ca.serial().to_hex(), a);
        assert_eq!(fs::read(dir.join(ca::BUNDLE_FILE)).unwrap(), fs::read(dir.join(ca::CA_CERT_FILE)).unwrap());
        assert_eq!(fs::read(dir.join(ca::CA_KEY_FILE)).unwrap(), fs::read(roots.join(format!("{a}_key.pem"))).unwrap());
        assert_eq!(files::mode_of(&dir.join(ca::CA_KEY_FILE)).unwrap(), 0o600);
        let mut names: Vec<String> =
            fs::read_dir(&roots).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        let mut expected = vec!["README".to_owned(), format!("{a}.pem"), format!("{a}_key.pem")];
        expected.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn adoption_keeps_extra_bundle_roots_as_trust_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let now = OffsetDateTime::now_utc();
        let sa = init(&a, now).to_hex();
        let sb = init(&b, now).to_hex();
        // A plain directory: A signs, the bundle trusts A and B.
        fs::remove_file(a.join(ca::ROOTS_FILE)).unwrap();
        fs::remove_dir_all(a.join(ca::ROOTS_DIR)).unwrap();
        let both = [
            fs::read_to_string(b.join(ca::CA_CERT_FILE)).unwrap(),
            fs::read_to_string(a.join(ca::CA_CERT_FILE)).unwrap(),
        ];
        fs::write(a.join(ca::BUNDLE_FILE), both.concat()).unwrap();

        let mut store = CaStore::open(&a).unwrap();
        let phases: Vec<(String, Phase)> =
            store.phases(now).iter().map(|(r, p)| (r.entry.serial.clone(), *p)).collect();
        assert_eq!(phases, vec![(sb.clone(), Phase::TrustOnly), (sa.clone(), Phase::Active)]);
        assert!(!a.join(ca::ROOTS_DIR).join(format!("{sb}_key.pem")).exists());
        assert_eq!(store.snapshot(now).unwrap().serial().to_hex(), sa);
        // Trust-only roots retire at once (they signed nothing here).
        let retirement = store.retire(false, now).unwrap();
        assert_eq!(retirement.retired[0].0, sb);
        assert_eq!(bundle_serials(&a), vec![sa]);
    }

    #[test]
    fn concurrent_issuers_keep_the_latest_record() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let a = init(tmp.path(), now).to_hex();
        let dir = std::sync::Arc::new(tmp.path().to_path_buf());
        let threads: Vec<_> = (1..=6u64)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let mut latest = now;
                    for j in 0..4u64 {
                        let ttl = Duration::from_secs(600 * (i * 4 + j));
                        let svid = CaStore::open(&dir).unwrap().issue(&web(), ttl, now, TtlBeyondCa::Refuse).unwrap();
                        latest = latest.max(svid.not_after);
                    }
                    latest
                })
            })
            .collect();
        let latest = threads.into_iter().map(|t| t.join().unwrap()).max().unwrap();
        let store = CaStore::open(&dir).unwrap();
        assert_eq!(store.set().get(&a).unwrap().signed_until, Some(latest.unix_timestamp()));
    }

    #[test]
    fn a_corrupt_root_set_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), OffsetDateTime::now_utc());
        fs::write(tmp.path().join(ca::ROOTS_FILE), "{\"version\": 1").unwrap();
        let err = Ca::load(tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::BadRootSet { .. }), "{err}");
        assert!(err.to_string().contains("roots.json"), "{err}");
    }

    #[test]
    fn peek_sees_the_sequence_and_the_signing_root_without_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let a = init(tmp.path(), now).to_hex();
        assert_eq!(peek(tmp.path(), now).unwrap(), (1, Some(a.clone())));
        let _held = CaStore::open(tmp.path()).unwrap();
        assert_eq!(peek(tmp.path(), now).unwrap(), (1, Some(a)));
        assert!(peek(&tmp.path().join("gone"), now).is_err());
    }
}
