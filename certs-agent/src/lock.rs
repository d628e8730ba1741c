//! The CA directory lock: `flock(2)` on `CA_DIR/.lock`, held by every certs-agent command while it reads or
//! changes the CA directory.
//!
//! Several `certs-agent run` processes, a one-shot `issue` and an operator's `ca rotate` / `ca retire` may
//! share one CA directory. Each of them reads `roots.json`, maybe changes it (the issuance record, the root
//! set) and writes it back; the lock makes those read-modify-write cycles one at a time. It is advisory and
//! released by the kernel when the holder exits, however it exits (SIGKILL included), so a crashed process
//! never leaves the directory locked.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use rustix::fs::{FlockOperation, flock};

use crate::files::{FsError, KEY_MODE};

/// An exclusive lock, released on drop (closing the file releases it).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Opens (creating it with mode 0600 if needed) and exclusively locks `path`, waiting for other holders.
    ///
    /// An existing lock file is opened read-only (`flock` needs no more): closing a file opened for writing
    /// is an inotify `IN_CLOSE_WRITE`, which a watcher of the directory (the sidecar's, on an identity
    /// directory) would take for new content. Where an exclusive lock needs a writable descriptor (NFS
    /// emulates `flock` with byte-range locks), it is reopened for writing.
    pub fn exclusive(path: &Path) -> Result<Self, FsError> {
        let open_failed = |e| FsError::new("open lock file", path, e);
        let (mut file, mut writable) = match File::open(path) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (open_writable(path).map_err(open_failed)?, true),
            Err(e) => return Err(open_failed(e)),
        };
        loop {
            match flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(DirLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::BADF) if !writable => {
                    file = open_writable(path).map_err(open_failed)?;
                    writable = true;
                }
                Err(e) => return Err(FsError::new("lock", path, io::Error::from(e))),
            }
        }
    }
}

fn open_writable(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(KEY_MODE).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    #[test]
    fn holders_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join(".lock"));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, inside) = (path.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        let _lock = DirLock::exclusive(&path).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        std::thread::sleep(Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(crate::files::mode_of(&path).unwrap(), 0o600);
    }
}
