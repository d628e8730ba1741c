//! File-system steps shared by the CA store and the publisher, each failing with the path and the action.
//!
//! Secrets are created with their final mode (`0600`) by `open(2)`, never chmod-ed afterwards, so there is
//! no moment at which a key is readable by others. Everything written is fsync-ed, and so is the directory
//! that names it, so a crash right after we report success cannot lose or truncate it.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and bundles (public material).
pub const CERT_MODE: u32 = 0o644;
/// Mode of directories this crate creates.
pub const DIR_MODE: u32 = 0o700;

/// A file-system operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        FsError { action, path: path.into(), source }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// Creates `dir` and missing parents with mode 0700; an existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), FsError> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| FsError::new("create directory", dir, e))
}

/// Creates `path` (which must not exist) with `mode`, writes `contents` and fsyncs the file.
pub fn write_synced(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| FsError::new("create", path, e))?;
    file.write_all(contents).map_err(|e| FsError::new("write", path, e))?;
    file.sync_all().map_err(|e| FsError::new("fsync", path, e))
}

/// Writes `path` completely or not at all, and never replaces an existing file: the content goes to a
/// hidden temporary file first, which is then hard-linked to `path` (`link(2)` fails if `path` exists, so
/// of two concurrent writers exactly one wins). Fails with [`io::ErrorKind::AlreadyExists`] when `path`
/// exists. The directory is fsync-ed afterwards.
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = parent_of(path);
    let tmp = sibling(path, ".", ".tmp");
    // A leftover from a crashed run is ours to remove.
    remove_if_present(&tmp)?;
    write_synced(&tmp, contents, mode)?;
    let linked = fs::hard_link(&tmp, path).map_err(|e| FsError::new("create", path, e));
    let removed = fs::remove_file(&tmp).map_err(|e| FsError::new("remove", &tmp, e));
    linked?;
    removed?;
    sync_dir(&dir)
}

/// Replaces `path` (or creates it) with `contents` atomically: a hidden temporary twin is written with `mode`
/// and fsync-ed, then renamed over `path`, then the directory is fsync-ed. Readers see the old file or the new
/// one, never a mix; a crash leaves at most the temporary twin, which the next call removes. Callers
/// serialize writers of the same path (the CA directory lock does).
pub fn write_replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    let tmp = sibling(path, ".", ".tmp");
    remove_if_present(&tmp)?;
    write_synced(&tmp, contents, mode)?;
    fs::rename(&tmp, path).map_err(|e| FsError::new("replace", path, e))?;
    sync_dir(&parent_of(path))
}

/// Reads a whole file, or None if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::new("read", path, e)),
    }
}

/// fsyncs a directory, making the creation, rename or removal of its entries durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| FsError::new("fsync directory", dir, e))
}

/// Removes a file or symlink if it exists.
pub fn remove_if_present(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(FsError::new("remove", path, e)),
        _ => Ok(()),
    }
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(|e| FsError::new("read", path, e))
}

/// The permission bits of `path` (following symlinks).
pub fn mode_of(path: &Path) -> Result<u32, FsError> {
    fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).map_err(|e| FsError::new("stat", path, e))
}

/// Whether a mode lets group or others read, write or execute.
pub fn is_group_or_world_accessible(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `dir/<prefix><file name><suffix>`, e.g. the hidden temporary twin of a file.
fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parent_of(path).join(format!("{prefix}{name}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_file_sets_the_mode_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_new_file(&path, b"one", KEY_MODE).unwrap();
        assert_eq!(mode_of(&path).unwrap(), 0o600);
        let err = write_new_file(&path, b"two", KEY_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("k.pem"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_new_file_replaces_a_stale_temporary() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".k.pem.tmp"), b"half").unwrap();
        write_new_file(&dir.path().join("k.pem"), b"whole", KEY_MODE).unwrap();
        assert_eq!(fs::read(dir.path().join("k.pem")).unwrap(), b"whole");
    }

    #[test]
    fn write_replace_swaps_content_and_mode_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(dir.path().join(".k.pem.tmp"), b"leftover").unwrap();
        write_replace(&path, b"new", KEY_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode_of(&path).unwrap(), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(read_optional(&dir.path().join("absent")).unwrap(), None);
    }

    #[test]
    fn create_private_dir_uses_0700() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        assert_eq!(mode_of(&sub).unwrap(), 0o700);
    }
}
