//! Atomic publication of an identity directory, the way the kubelet's `AtomicWriter` updates Secret volumes
//! (SPEC §3).
//!
//! Layout after a publication:
//!
//! ```text
//! DIR/..2026_01_01_12_00_00.123456789/   the current version:
//!     svid.pem  svid_key.pem (0600)  svid_bundle.pem  svid_bundle.spiffe.json
//! DIR/..data -> ..2026_01_01_12_00_00.123456789
//! DIR/svid.pem -> ..data/svid.pem   (same for the three others)
//! ```
//!
//! `svid_bundle.spiffe.json` is the trust bundle of `svid_bundle.pem` in SPIFFE bundle format
//! ([`crate::spiffe_bundle`]), for consumers that read JWKS bundles; it changes in the same swap.
//!
//! The only step that changes what readers see is `rename(..data_tmp, ..data)`, which replaces the `..data`
//! symlink atomically; the three files therefore always change together, and a reader never pairs a new
//! certificate with an old key. A reader that opens `DIR/svid.pem` etc. sees a complete set; one that
//! resolves `DIR/..data` once and reads through that directory sees a consistent set.
//!
//! Crash safety: every step either leaves the previous version live or completes the swap. What a crash
//! can leave behind (a half-written version directory, `..data_tmp`, a temporary visible link) is removed
//! or replaced by the next publication.
//!
//! Several publishers (two `run`s by mistake, an `issue` while a `run` is going) take turns: each publication
//! holds an exclusive [`DirLock`] on `DIR/..lock` from creating its version directory to removing the old
//! ones, so no publisher removes a `..data_tmp` or a version directory another one is still writing, and
//! `..data` never names a removed version. Readers never look at `..lock` (and its name does not start with
//! `..data`, which readers treat specially, nor with `..` and a digit, which names a version).

use std::{
    fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use time::OffsetDateTime;

use crate::{
    files::{self, CERT_MODE, DIR_MODE, FsError, KEY_MODE},
    lock::DirLock,
};

/// The certificate chain, leaf first (spiffe-helper's name).
pub const CERT_FILE: &str = "svid.pem";
/// The private key, PKCS#8, mode 0600.
pub const KEY_FILE: &str = "svid_key.pem";
/// The trust bundle.
pub const BUNDLE_FILE: &str = "svid_bundle.pem";
/// The trust bundle in SPIFFE bundle format (JWKS).
pub const SPIFFE_BUNDLE_FILE: &str = "svid_bundle.spiffe.json";
/// The symlink naming the current version directory.
pub const DATA_LINK: &str = "..data";
/// The symlink built next to `..data` and renamed over it.
pub const DATA_TMP_LINK: &str = "..data_tmp";
/// The lock file publishers serialize on (empty; readers never open it).
pub const LOCK_FILE: &str = "..lock";

/// The visible names, each a symlink into `..data`.
pub const VISIBLE_FILES: [&str; 4] = [CERT_FILE, KEY_FILE, BUNDLE_FILE, SPIFFE_BUNDLE_FILE];

/// The contents of one identity version.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    pub chain_pem: &'a [u8],
    pub key_pem: &'a [u8],
    pub bundle_pem: &'a [u8],
    pub spiffe_bundle_json: &'a [u8],
}

impl std::fmt::Debug for Payload<'_> {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload").finish_non_exhaustive()
    }
}

/// What a successful publication did.
#[derive(Debug)]
pub struct Published {
    /// The new version directory, now the target of `..data`.
    pub version_dir: PathBuf,
    /// Old version directories removed after the swap.
    pub removed: Vec<PathBuf>,
    /// Old version directories that could not be removed. The new version is live regardless; the next
    /// publication tries again.
    pub cleanup_errors: Vec<FsError>,
}

/// Why a publication failed. The previously published version, if any, is still live.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot publish into {}: {}", dir.display(), source)]
    Fs {
        dir: PathBuf,
        #[source]
        source: FsError,
    },
    #[error("cannot publish into {}: no free version directory name near {name}", dir.display())]
    NoVersionName { dir: PathBuf, name: String },
}

/// Publishes `payload` into `dir` (created with mode 0700 if missing) as a new version and makes it current.
pub fn publish(dir: &Path, payload: &Payload<'_>) -> Result<Published, PublishError> {
    let fs_err = |source| PublishError::Fs { dir: dir.to_path_buf(), source };
    files::create_private_dir(dir).map_err(fs_err)?;
    let _lock = DirLock::exclusive(&dir.join(LOCK_FILE)).map_err(fs_err)?;

    let (version_name, version_dir) = create_version_dir(dir)?;
    write_version(&version_dir, payload).map_err(fs_err)?;
    swap_data_link(dir, &version_name).map_err(fs_err)?;
    for name in VISIBLE_FILES {
        ensure_visible_link(dir, name).map_err(fs_err)?;
    }
    files::sync_dir(dir).map_err(fs_err)?;

    let (removed, cleanup_errors) = remove_old_versions(dir, &version_name);
    Ok(Published { version_dir, removed, cleanup_errors })
}

/// Checks that `dir` can be published into (creating it with mode 0700 if missing): creates and removes a
/// probe file, under the publishers' lock. Lets `run` refuse an unusable output directory before it issues
/// anything.
pub fn check_writable(dir: &Path) -> Result<(), PublishError> {
    let fs_err = |source| PublishError::Fs { dir: dir.to_path_buf(), source };
    files::create_private_dir(dir).map_err(fs_err)?;
    let _lock = DirLock::exclusive(&dir.join(LOCK_FILE)).map_err(fs_err)?;
    let probe = dir.join(".certs-agent-probe");
    files::remove_if_present(&probe).map_err(fs_err)?;
    files::write_synced(&probe, b"", CERT_MODE).map_err(fs_err)?;
    files::remove_if_present(&probe).map_err(fs_err)
}

/// The version directory `..data` points to now, if any.
pub fn current_version(dir: &Path) -> Option<PathBuf> {
    let target = fs::read_link(dir.join(DATA_LINK)).ok()?;
    Some(dir.join(target))
}

/// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` in UTC, the kubelet's format.
fn version_name(t: OffsetDateTime) -> String {
    format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// Whether `name` is a version directory name (ours to delete when it is not current).
fn is_version_name(name: &str) -> bool {
    name.strip_prefix("..").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// Creates a fresh, empty version directory. A name already taken (a leftover, or the same nanosecond)
/// gets a numeric suffix rather than being reused: a directory we did not just create may be in use.
fn create_version_dir(dir: &Path) -> Result<(String, PathBuf), PublishError> {
    use std::os::unix::fs::DirBuilderExt;
    let base = version_name(OffsetDateTime::now_utc());
    for attempt in 0..100 {
        let name = if attempt == 0 { base.clone() } else { format!("{base}_{attempt}") };
        let path = dir.join(&name);
        match fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => return Ok((name, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(PublishError::Fs {
                    dir: dir.to_path_buf(),
                    source: FsError::new("create directory", path, e),
                });
            }
        }
    }
    Err(PublishError::NoVersionName { dir: dir.to_path_buf(), name: base })
}

/// Writes and fsyncs the three files, then the directory itself. The key goes first.
fn write_version(version_dir: &Path, payload: &Payload<'_>) -> Result<(), FsError> {
    files::write_synced(&version_dir.join(KEY_FILE), payload.key_pem, KEY_MODE)?;
    files::write_synced(&version_dir.join(CERT_FILE), payload.chain_pem, CERT_MODE)?;
    files::write_synced(&version_dir.join(BUNDLE_FILE), payload.bundle_pem, CERT_MODE)?;
    files::write_synced(&version_dir.join(SPIFFE_BUNDLE_FILE), payload.spiffe_bundle_json, CERT_MODE)?;
    files::sync_dir(version_dir)
}

/// `..data_tmp -> <version>` then `rename(..data_tmp, ..data)`: the atomic step.
fn swap_data_link(dir: &Path, version_name: &str) -> Result<(), FsError> {
    let tmp = dir.join(DATA_TMP_LINK);
    files::remove_if_present(&tmp)?;
    symlink(version_name, &tmp).map_err(|e| FsError::new("create symlink", &tmp, e))?;
    let data = dir.join(DATA_LINK);
    fs::rename(&tmp, &data).map_err(|e| FsError::new("swap symlink", &data, e))
}

/// Makes `dir/name` a symlink to `..data/name`, replacing (by rename) whatever else is there.
fn ensure_visible_link(dir: &Path, name: &str) -> Result<(), FsError> {
    let path = dir.join(name);
    let target = Path::new(DATA_LINK).join(name);
    // A temporary link left by a crash in the middle of this step.
    let tmp = dir.join(format!(".{name}.tmp"));
    files::remove_if_present(&tmp)?;
    if fs::read_link(&path).is_ok_and(|t| t == target) {
        return Ok(());
    }
    symlink(&target, &tmp).map_err(|e| FsError::new("create symlink", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| FsError::new("replace with a symlink", &path, e))
}

/// Removes every version directory but `keep` (the previous one and orphans of crashed runs). Under the lock,
/// none of them is being written.
fn remove_old_versions(dir: &Path, keep: &str) -> (Vec<PathBuf>, Vec<FsError>) {
    let (mut removed, mut errors) = (Vec::new(), Vec::new());
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return (removed, vec![FsError::new("list", dir, e)]),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // `file_type` does not follow symlinks: only real directories are removed.
        if name == keep || !is_version_name(name) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        match fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            Err(e) => errors.push(FsError::new("remove old version", path, e)),
        }
    }
    (removed, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn payload(tag: &str) -> [String; 4] {
        [format!("chain {tag}"), format!("key {tag}"), format!("bundle {tag}"), format!("json {tag}")]
    }

    fn publish_tag(dir: &Path, tag: &str) -> Published {
        let [c, k, b, j] = payload(tag);
        let payload = Payload {
            chain_pem: c.as_bytes(),
            key_pem: k.as_bytes(),
            bundle_pem: b.as_bytes(),
            spiffe_bundle_json: j.as_bytes(),
        };
        publish(dir, &payload).unwrap()
    }

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap()
    }

    fn version_dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| is_version_name(n))
            .collect();
        names.sort();
        names
    }

    fn assert_layout(dir: &Path, tag: &str) {
        let data = fs::read_link(dir.join(DATA_LINK)).unwrap();
        assert!(is_version_name(data.to_str().unwrap()), "{data:?}");
        assert!(data.is_relative());
        for name in VISIBLE_FILES {
            assert_eq!(fs::read_link(dir.join(name)).unwrap(), Path::new("..data").join(name));
        }
        assert_eq!(read(dir, CERT_FILE), format!("chain {tag}"));
        assert_eq!(read(dir, KEY_FILE), format!("key {tag}"));
        assert_eq!(read(dir, BUNDLE_FILE), format!("bundle {tag}"));
        assert_eq!(read(dir, SPIFFE_BUNDLE_FILE), format!("json {tag}"));
        let key_mode = fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        assert!(!dir.join(DATA_TMP_LINK).exists());
        assert!(fs::symlink_metadata(dir.join(DATA_TMP_LINK)).is_err());
    }

    #[test]
    fn first_publish_creates_the_symlink_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("id");
        let published = publish_tag(&dir, "one");
        assert_layout(&dir, "one");
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(current_version(&dir).unwrap(), published.version_dir);
        assert_eq!(version_dirs(&dir).len(), 1);
    }

    #[test]
    fn second_publish_swaps_data_and_removes_the_old_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let first = publish_tag(dir, "one");
        let second = publish_tag(dir, "two");
        assert_ne!(first.version_dir, second.version_dir);
        assert_layout(dir, "two");
        assert!(!first.version_dir.exists());
        assert_eq!(second.removed, vec![first.version_dir]);
        assert!(second.cleanup_errors.is_empty());
        assert_eq!(version_dirs(dir).len(), 1);
    }

    #[test]
    fn leftovers_of_a_crashed_run_do_not_break_the_next_publish() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        publish_tag(dir, "one");
        // A run killed after writing half a version and pointing ..data_tmp at it, and one killed while
        // replacing a visible link.
        let orphan = dir.join("..2001_01_01_00_00_00.000000001");
        fs::create_dir(&orphan).unwrap();
        fs::write(orphan.join(KEY_FILE), "half").unwrap();
        symlink("..2001_01_01_00_00_00.000000001", dir.join(DATA_TMP_LINK)).unwrap();
        symlink("..data/svid.pem", dir.join(".svid.pem.tmp")).unwrap();
        // Until the next publication readers still see the complete first version.
        assert_layout_readable(dir, "one");

        publish_tag(dir, "two");
        assert_layout(dir, "two");
        assert!(!orphan.exists());
        assert_eq!(version_dirs(dir).len(), 1);
        assert!(fs::symlink_metadata(dir.join(".svid.pem.tmp")).is_err());
    }

    fn assert_layout_readable(dir: &Path, tag: &str) {
        assert_eq!(read(dir, CERT_FILE), format!("chain {tag}"));
        assert_eq!(read(dir, KEY_FILE), format!("key {tag}"));
    }

    #[test]
    fn dangling_data_tmp_and_a_version_name_collision_are_handled() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        symlink("..does_not_exist", dir.join(DATA_TMP_LINK)).unwrap();
        publish_tag(dir, "one");
        assert_layout(dir, "one");
    }

    #[test]
    fn plain_files_from_another_writer_become_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for name in VISIBLE_FILES {
            fs::write(dir.join(name), "old plain file").unwrap();
        }
        publish_tag(dir, "one");
        assert_layout(dir, "one");
    }

    #[test]
    fn a_reader_holding_data_sees_one_consistent_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        publish_tag(dir, "one");
        let held = fs::canonicalize(dir.join(DATA_LINK)).unwrap();
        assert_eq!(fs::read_to_string(held.join(CERT_FILE)).unwrap(), "chain one");
        assert_eq!(fs::read_to_string(held.join(KEY_FILE)).unwrap(), "key one");
    }

    #[test]
    fn concurrent_publishers_take_turns_and_readers_always_see_a_whole_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::sync::Arc::new(tmp.path().join("id"));
        publish_tag(&dir, "first");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut whole = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let version = fs::read_link(dir.join(DATA_LINK)).expect("..data is always there");
                    let read = |name: &str| fs::read_to_string(dir.join(&version).join(name));
                    match (read(CERT_FILE), read(KEY_FILE)) {
                        (Ok(chain), Ok(key)) => {
                            assert_eq!(chain.strip_prefix("chain "), key.strip_prefix("key "), "{version:?}");
                            whole += 1;
                        }
                        // Superseded and removed between the two steps: a reader's normal race. But `..data`
                        // itself never names a removed or unfinished version.
                        _ => assert_ne!(fs::read_link(dir.join(DATA_LINK)).unwrap(), version, "dangling ..data"),
                    }
                }
                whole
            })
        };
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let [c, k, b, j] = payload(&format!("{w}-{i}"));
                        let payload = Payload {
                            chain_pem: c.as_bytes(),
                            key_pem: k.as_bytes(),
                            bundle_pem: b.as_bytes(),
                            spiffe_bundle_json: j.as_bytes(),
                        };
                        let published = publish(&dir, &payload).unwrap_or_else(|e| panic!("writer {w}: {e}"));
                        assert!(published.cleanup_errors.is_empty(), "{:?}", published.cleanup_errors);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(version_dirs(&dir).len(), 1);
        assert!(fs::symlink_metadata(dir.join(DATA_TMP_LINK)).is_err());
    }

    #[test]
    fn check_writable_names_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        check_writable(&tmp.path().join("a/b")).unwrap();
        assert!(tmp.path().join("a/b").is_dir());
        let left: Vec<_> = fs::read_dir(tmp.path().join("a/b")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [LOCK_FILE], "the probe is removed");
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        let err = check_writable(&file.join("id")).unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
        let err = check_writable(&file).unwrap_err();
        assert!(err.to_string().contains("cannot publish into") && err.to_string().contains("file"), "{err}");
    }

    #[test]
    fn version_names_follow_the_kubelet_format() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(1_500_000_007);
        assert_eq!(version_name(t), "..1970_01_01_00_00_01.500000007");
        assert!(is_version_name(&version_name(t)));
        assert!(!is_version_name("..data"));
        assert!(!is_version_name("..data_tmp"));
        assert!(!is_version_name(LOCK_FILE) && !LOCK_FILE.starts_with(DATA_LINK));
        assert!(!is_version_name("svid.pem"));
    }
}
