//! Noticing that identity or policy files changed, and triggering the reload.
//!
//! One inotify watcher (notify) for every directory that matters: the identity directory, the policy file's
//! directory, and the parent of each, so that replacing a watched directory wholesale (a symlink swapped
//! above it, a directory deleted and recreated) is seen and the watch re-added. Directories, never files:
//! editors and the kubelet replace files by rename, which silently kills a watch on the file.
//!
//! Events are debounced (100 ms of quiet, at most 1 s after the first event) so that one atomic publication
//! (4-6 events) or an editor's save causes one reload; while a file is being written in place (modified and
//! not yet closed) the reload waits for the writer to close it, up to that second. Behind the events there are two safety nets: a
//! content-hash re-read every 30 s catches anything missed (network filesystems send no events), and if the
//! watcher cannot be created at all (inotify limits) the files are polled every second instead, which `/status`
//! and the log say.
//!
//! A failed identity reload (a writer that replaced the certificate but not yet the key) is retried with
//! backoff; until it succeeds the identity in force keeps serving.

use std::{
    collections::HashMap,
    ffi::OsString,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use notify::{
    EventKind, RecursiveMode, Watcher as _,
    event::{AccessKind, AccessMode, ModifyKind},
};
use tokio::{sync::mpsc, time::Instant};
use tracing::{debug, info, warn};

use crate::{identity::IdentityError, state::Shared};

const DEBOUNCE: Duration = Duration::from_millis(100);
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
const RECHECK: Duration = Duration::from_secs(30);
const POLL_WITHOUT_WATCHER: Duration = Duration::from_secs(1);
const POLL_BEFORE_IDENTITY: Duration = Duration::from_millis(250);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How the operator asked for changes to be noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileWatch {
    /// inotify when it can be had, polling otherwise.
    #[default]
    Auto,
    /// Poll every second: for filesystems that deliver no inotify events (NFS, some FUSE and overlay mounts).
    Poll,
}

/// How changes are noticed, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMode {
    Starting,
    /// inotify events, debounced.
    Events,
    /// No watcher could be created: periodic polling.
    Polling {
        reason: String,
    },
}

/// Shared, observable watcher state.
#[derive(Debug)]
pub struct WatchState(Mutex<WatchMode>);

impl Default for WatchState {
    fn default() -> Self {
        Self(Mutex::new(WatchMode::Starting))
    }
}

impl WatchState {
    pub fn get(&self) -> WatchMode {
        self.0.lock().map(|m| m.clone()).unwrap_or(WatchMode::Starting)
    }

    fn set(&self, mode: WatchMode) {
        if let Ok(mut m) = self.0.lock() {
            *m = mode;
        }
    }
}

/// Which reload a change calls for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pending {
    identity: bool,
    policy: bool,
}

/// A directory whose entries matter, and which of them.
#[derive(Debug, Clone)]
struct Interest {
    dir: PathBuf,
    /// File names that matter; None: any entry. `..data` (kubelet/certs-agent layout) always matters.
    names: Option<Vec<OsString>>,
    identity: bool,
}

/// The directories of interest for the configuration's identity and policy.
fn interests(shared: &Shared) -> Vec<Interest> {
    let mut out = Vec::new();
    let id = &shared.config.identity;
    match &id.dir {
        Some(dir) => out.push(Interest { dir: absolute(dir), names: None, identity: true }),
        None => {
            for file in [&id.cert, &id.key, &id.bundle] {
                if let (Some(dir), Some(name)) = (file.parent(), file.file_name()) {
                    out.push(Interest { dir: absolute(dir), names: Some(vec![name.to_owned()]), identity: true });
                }
            }
        }
    }
    let policy = shared.policy.path();
    if let (Some(dir), Some(name)) = (policy.parent(), policy.file_name()) {
        out.push(Interest { dir: absolute(dir), names: Some(vec![name.to_owned()]), identity: false });
    }
    out
}

fn absolute(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Interest {
    /// What an event on `path` means for this interest.
    fn classify(&self, path: &Path) -> Pending {
        let hit = Pending { identity: self.identity, policy: !self.identity };
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return Pending::default() };
        if parent == self.dir {
            let named = match &self.names {
                None => true,
                Some(names) => names.iter().any(|n| n == name) || name.to_string_lossy().starts_with("..data"),
            };
            return if named { hit } else { Pending::default() };
        }
        // The watched directory itself was created, replaced or removed in its parent.
        if path == self.dir {
            return hit;
        }
        Pending::default()
    }
}

/// Keeps inotify watches on the directories of interest and their parents, re-adding a watch when the
/// directory at a path is no longer the one watched (replaced) or appears late.
struct Watches {
    watcher: notify::RecommendedWatcher,
    /// Watched path -> (device, inode) of the directory watched there.
    watched: HashMap<PathBuf, (u64, u64)>,
}

impl Watches {
    fn refresh(&mut self, interests: &[Interest]) {
        let mut wanted: Vec<&Path> = Vec::new();
        for i in interests {
            wanted.push(&i.dir);
            if let Some(parent) = i.dir.parent() {
                wanted.push(parent);
            }
        }
        wanted.sort();
        wanted.dedup();
        for path in wanted {
            let current = std::fs::metadata(path).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()));
            let known = self.watched.get(path).copied();
            if current == known {
                continue;
            }
            if known.is_some() {
                let _ = self.watcher.unwatch(path);
                self.watched.remove(path);
            }
            if let Some(inode) = current {
                match self.watcher.watch(path, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        debug!(dir = %path.display(), "watching");
                        self.watched.insert(path.to_path_buf(), inode);
                    }
                    Err(e) => {
                        warn!(dir = %path.display(), error = %e, "cannot watch directory; relying on periodic re-reads")
                    }
                }
            }
        }
    }
}

/// Whether an event can mean new content. Opens and reads (including our own) cannot.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Runs until shutdown: loads the identity as soon as it exists, then reloads identity and policy on change.
pub async fn run(shared: Arc<Shared>, strategy: FileWatch) {
    let interests = interests(&shared);
    let (tx, mut rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let watcher = match strategy {
        FileWatch::Auto => notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| format!("cannot create a file watcher (inotify limits?): {e}")),
        FileWatch::Poll => Err("polling was asked for (--file-watch poll)".to_string()),
    };
    let mut watches = match watcher {
        Ok(watcher) => {
            shared.watch.set(WatchMode::Events);
            Some(Watches { watcher, watched: HashMap::new() })
        }
        Err(reason) => {
            warn!(reason = %reason, every = ?POLL_WITHOUT_WATCHER, "polling identity and policy files instead of watching them");
            shared.watch.set(WatchMode::Polling { reason });
            None
        }
    };
    let poll = if watches.is_some() { RECHECK } else { POLL_WITHOUT_WATCHER };

    let mut reloads = Reloads::new(shared.clone());
    reloads.identity().await;
    let mut pending = Pending::default();
    let mut first_event: Option<Instant> = None;
    let mut quiet_until = Instant::now();
    let mut next_poll = Instant::now() + poll;
    // Re-check the watched inodes only when something relevant happened: a busy parent directory (say /tmp)
    // sends a stream of events about unrelated files, which must cost no more than classifying them.
    let mut rewatch = true;
    let mut writing = false;
    loop {
        if let Some(w) = watches.as_mut().filter(|_| std::mem::take(&mut rewatch)) {
            w.refresh(&interests);
        }
        // While a writer is mid-file (modified, not yet closed) wait for its close, up to DEBOUNCE_MAX: a
        // slow in-place write would otherwise be read half-done and counted as a failed reload.
        let flush_at =
            first_event.map(|first| if writing { first + DEBOUNCE_MAX } else { quiet_until.min(first + DEBOUNCE_MAX) });
        let retry_at = reloads.identity_retry_at();
        tokio::select! {
            event = rx.recv(), if watches.is_some() => {
                let Some(event) = event else { continue };
                let (changes, write_state) = classify(&interests, event);
                if let Some(busy) = write_state {
                    writing = busy;
                }
                if changes != Pending::default() {
                    pending.identity |= changes.identity;
                    pending.policy |= changes.policy;
                    let now = Instant::now();
                    first_event.get_or_insert(now);
                    quiet_until = now + DEBOUNCE;
                    rewatch = true;
                }
            }
            _ = sleep_until(flush_at) => {
                if pending.identity {
                    reloads.identity().await;
                }
                if pending.policy {
                    reloads.policy().await;
                }
                pending = Pending::default();
                first_event = None;
                writing = false;
            }
            _ = sleep_until(retry_at) => {
                reloads.identity().await;
                rewatch = true;
            }
            _ = tokio::time::sleep_until(next_poll) => {
                reloads.identity().await;
                reloads.policy().await;
                next_poll = Instant::now() + poll;
                rewatch = true;
            }
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What one event says: which reloads it calls for, and whether a writer is now busy (`Some(true)`: content
/// is being written in place), or done (`Some(false)`: closed after writing, or the file was renamed or
/// removed), as far as the files of interest go.
fn classify(interests: &[Interest], event: notify::Result<notify::Event>) -> (Pending, Option<bool>) {
    let everything = Pending { identity: true, policy: true };
    let event = match event {
        Ok(event) => event,
        // The watcher lost events (queue overflow): re-read everything.
        Err(_) => return (everything, Some(false)),
    };
    if event.need_rescan() {
        return (everything, Some(false));
    }
    if !is_change(&event.kind) {
        return (Pending::default(), None);
    }
    let mut out = Pending::default();
    for path in &event.paths {
        for i in interests {
            let p = i.classify(path);
            out.identity |= p.identity;
            out.policy |= p.policy;
        }
    }
    if out == Pending::default() {
        return (out, None);
    }
    let writing = match event.kind {
        EventKind::Modify(ModifyKind::Data(_)) => Some(true),
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(_) => Some(false),
        _ => None,
    };
    (out, writing)
}

/// Runs reloads and remembers when a failed identity reload should be retried.
struct Reloads {
    shared: Arc<Shared>,
    retry: Option<(Instant, Duration)>,
    reported_missing: bool,
}

impl Reloads {
    fn new(shared: Arc<Shared>) -> Self {
        Self { shared, retry: None, reported_missing: false }
    }

    /// Reloads run on the blocking pool: they read files, verify signatures and may parse megabytes of
    /// YAML, none of which belongs on a data-plane worker thread.
    async fn identity(&mut self) {
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || shared.reload_identity()).await;
        let Ok(result) = result else { return };
        match result {
            Ok(_) => self.retry = None,
            Err(IdentityError::Read(e)) if e.is_missing() && self.shared.identity.current().is_none() => {
                if !self.reported_missing {
                    info!(error = %e, "waiting for identity files; listeners accept nothing until they load");
                    self.reported_missing = true;
                }
                self.retry = Some((Instant::now() + POLL_BEFORE_IDENTITY, POLL_BEFORE_IDENTITY));
            }
            Err(e) => {
                let backoff = self.retry.map_or(RETRY_MIN, |(_, b)| (b * 2).min(RETRY_MAX));
                let keeping = if self.shared.identity.current().is_some() {
                    "keeping the identity in force"
                } else {
                    "no identity yet"
                };
                warn!(error = %e, retry_in = ?backoff, "identity reload failed; {keeping}");
                self.retry = Some((Instant::now() + backoff, backoff));
            }
        }
    }

    async fn policy(&mut self) {
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.reload_policy(false)).await;
    }

    fn identity_retry_at(&self) -> Option<Instant> {
        self.retry.map(|(at, _)| at)
    }
}
