//! Reading identity files: cert chain, private key and trust bundle, in one pass.
//!
//! When the identity directory is laid out like a kubelet Secret volume or by certs-agent
//! (`svid.pem -> ..data/svid.pem`, `..data -> ..<timestamp>/`), `..data` is resolved once and every file is
//! read from that one directory, so the three files always come from the same publication.

use std::{
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::config::IdentityPaths;

/// The raw bytes of one identity, read together.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub bundle: Vec<u8>,
}

/// The largest identity file we read: a chain or bundle of many certificates fits easily.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why the identity files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{}: private key is readable or writable by group or others (mode {mode:03o}); make it 0600 or 0400 \
         (Kubernetes: defaultMode: 0400)",
        path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("{}: larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
}

impl ReadError {
    /// Whether the files are simply not there yet (the sidecar started before its identity was issued).
    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

impl std::fmt::Debug for IdentityFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(
            f,
            "IdentityFiles {{ cert: {} bytes, key: {} bytes, bundle: {} bytes }}",
            self.cert.len(),
            self.key.len(),
            self.bundle.len()
        )
    }
}

/// Reads cert, key and bundle. The key must not be readable by group or others.
///
/// Each directory's `..data` is resolved once per read, whether the files were configured as a directory or
/// one by one (`tls.crt`, `tls.key`, `ca.crt` of a Kubernetes Secret mount are in the same directory).
pub fn read(paths: &IdentityPaths) -> Result<IdentityFiles, ReadError> {
    let [cert, key, bundle] = locations(paths);
    Ok(IdentityFiles {
        cert: read_file(&cert, false)?,
        key: read_file(&key, true)?,
        bundle: read_file(&bundle, false)?,
    })
}

/// Where to read cert, key and bundle from: through each directory's `..data`, resolved once.
fn locations(paths: &IdentityPaths) -> [PathBuf; 3] {
    let mut data_dirs: Vec<(PathBuf, Option<PathBuf>)> = Vec::with_capacity(1);
    let mut locate = |p: &Path| {
        let Some(parent) = p.parent() else { return p.to_path_buf() };
        let data = match data_dirs.iter().find(|(dir, _)| dir == parent) {
            Some((_, data)) => data.clone(),
            None => {
                let data = resolve_data_dir(parent);
                data_dirs.push((parent.to_path_buf(), data.clone()));
                data
            }
        };
        data.and_then(|data| through_data_link(p, &data)).unwrap_or_else(|| p.to_path_buf())
    };
    [locate(&paths.cert), locate(&paths.key), locate(&paths.bundle)]
}

/// `DIR/..data` resolved to the real directory it points at, when the layout uses one.
fn resolve_data_dir(dir: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(dir.join("..data")).ok()
}

/// When `path` is a symlink into `..data/`, the same file inside the already-resolved data directory.
fn through_data_link(path: &Path, data: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(path).ok()?;
    let rest = target.strip_prefix("..data").ok()?;
    Some(data.join(rest))
}

fn read_file(path: &Path, secret: bool) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if secret {
        let mode = meta.permissions().mode() & 0o777;
        // Readable by others leaks the key; writable by others lets them swap in their own.
        if mode & 0o066 != 0 {
            return Err(ReadError::KeyPermissions { path: path.to_path_buf(), mode });
        }
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { path: path.to_path_buf() });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { path: path.to_path_buf() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> IdentityPaths {
        IdentityPaths {
            dir: Some(dir.to_path_buf()),
            cert: dir.join("svid.pem"),
            key: dir.join("svid_key.pem"),
            bundle: dir.join("svid_bundle.pem"),
        }
    }

    #[test]
    fn a_key_others_can_read_or_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["svid.pem", "svid_key.pem", "svid_bundle.pem"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let key = dir.path().join("svid_key.pem");
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o644, false), (0o602, false), (0o620, false)]
        {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let result = read(&paths(dir.path()));
            assert_eq!(result.is_ok(), ok, "mode {mode:o}: {result:?}");
            if let Err(e) = result {
                assert!(matches!(e, ReadError::KeyPermissions { .. }), "{e}");
                assert!(e.to_string().contains("svid_key.pem"), "{e}");
            }
        }
    }

    #[test]
    fn explicit_files_of_a_secret_mount_come_from_one_data_directory_too() {
        // tls.crt, tls.key, ca.crt configured one by one; `..data` is swapped between the reads of one call
        // only if it is resolved per file, which it must not be.
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..v1");
        std::fs::create_dir(&v1).unwrap();
        for name in ["tls.crt", "tls.key", "ca.crt"] {
            std::fs::write(v1.join(name), format!("{name} v1")).unwrap();
            std::os::unix::fs::symlink(Path::new("..data").join(name), dir.path().join(name)).unwrap();
        }
        std::fs::set_permissions(v1.join("tls.key"), std::fs::Permissions::from_mode(0o400)).unwrap();
        std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
        let paths = IdentityPaths {
            dir: None,
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            bundle: dir.path().join("ca.crt"),
        };
        let files = read(&paths).unwrap();
        assert_eq!(files.cert, b"tls.crt v1");
        assert_eq!(files.key, b"tls.key v1");
        // All three are read inside the one resolved version directory, not through the visible links.
        let v1 = v1.canonicalize().unwrap();
        assert_eq!(locations(&paths), [v1.join("tls.crt"), v1.join("tls.key"), v1.join("ca.crt")]);
    }

    #[test]
    fn all_three_files_come_from_the_data_directory_resolved_once() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..v1");
        std::fs::create_dir(&v1).unwrap();
        for name in ["svid.pem", "svid_key.pem", "svid_bundle.pem"] {
            std::fs::write(v1.join(name), format!("{name} v1")).unwrap();
            std::os::unix::fs::symlink(Path::new("..data").join(name), dir.path().join(name)).unwrap();
        }
        std::fs::set_permissions(v1.join("svid_key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
        let files = read(&paths(dir.path())).unwrap();
        assert_eq!(files.cert, b"svid.pem v1");
        assert_eq!(files.key, b"svid_key.pem v1");
        assert_eq!(files.bundle, b"svid_bundle.pem v1");
    }
}
