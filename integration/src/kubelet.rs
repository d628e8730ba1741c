//! Writers that update identity and policy files the ways real deployments do, to test that the sidecar
//! follows every one of them.

use std::{
    os::unix::fs::{PermissionsExt, symlink},
    path::Path,
    time::SystemTime,
};

/// Updates `dir` the way the kubelet's AtomicWriter updates a Secret volume: files are written into a new
/// `..<timestamp>` directory, `..data_tmp` is pointed at it and renamed over `..data`, the visible names are
/// symlinks `name -> ..data/name`, and the previous timestamped directory is removed.
pub fn atomic_update(dir: &Path, files: &[(&str, &[u8])]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let stamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_nanos();
    let version = format!("..{stamp}");
    let version_dir = dir.join(&version);
    std::fs::create_dir(&version_dir)?;
    for (name, bytes) in files {
        let path = version_dir.join(name);
        std::fs::write(&path, bytes)?;
        // Like a Secret mounted with defaultMode 0400.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&version, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    for (name, _) in files {
        let visible = dir.join(name);
        if std::fs::symlink_metadata(&visible).is_err() {
            symlink(Path::new("..data").join(name), &visible)?;
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    Ok(())
}

/// Reads an identity directory's three files (through any symlinks).
pub fn read_identity(dir: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    Ok((
        std::fs::read(dir.join("svid.pem"))?,
        std::fs::read(dir.join("svid_key.pem"))?,
        std::fs::read(dir.join("svid_bundle.pem"))?,
    ))
}
