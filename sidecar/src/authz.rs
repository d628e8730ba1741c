//! The caller allowlist in use: a compiled [`Policy`] swapped atomically on reload. A reload parses and
//! compiles off the data path; an invalid file never replaces a good policy.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use arc_swap::ArcSwap;
use policy::{LoadError, Policy};
use sha2::{Digest, Sha256};

/// A policy and where it came from.
#[derive(Debug)]
pub struct LoadedPolicy {
    pub policy: Policy,
    /// 1 for the policy loaded at start, +1 for every load that changed it.
    pub generation: u64,
    pub loaded_at: SystemTime,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyReload {
    /// The file's content changed and the new policy is in force.
    Changed { generation: u64 },
    /// The file holds the policy already in force.
    Unchanged,
    /// The file failed to load before and now holds the policy in force again (an edit was reverted).
    Restored,
    /// The file holds the same invalid text as at the last failed attempt (already logged and counted).
    StillInvalid,
}

/// The policy in force.
#[derive(Debug)]
pub struct PolicyStore {
    path: PathBuf,
    current: ArcSwap<LoadedPolicy>,
    /// sha256 of the text of the last failed load, so an unchanged bad file is not re-reported at every
    /// periodic re-read.
    last_failed: Mutex<Option<String>>,
}

impl PolicyStore {
    /// Loads the policy at start; an error here is a configuration error.
    pub fn load(path: PathBuf) -> Result<Self, LoadError> {
        let policy = Policy::load(&path)?;
        let loaded = LoadedPolicy { policy, generation: 1, loaded_at: SystemTime::now() };
        Ok(Self { path, current: ArcSwap::from_pointee(loaded), last_failed: Mutex::new(None) })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The policy in force (a pointer read).
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// Re-reads the file; swaps in the new policy if it is valid and different. On error the policy in
    /// force stays. Unless `force`d, a file whose text already failed is not parsed again.
    pub fn reload(&self, force: bool) -> Result<PolicyReload, LoadError> {
        let text = policy::file::read(&self.path)?;
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        let old = self.current.load();
        let mut last_failed = self.last_failed.lock().unwrap_or_else(|p| p.into_inner());
        if sha == old.policy.sha256() {
            return Ok(if last_failed.take().is_some() { PolicyReload::Restored } else { PolicyReload::Unchanged });
        }
        if !force && last_failed.as_deref() == Some(sha.as_str()) {
            return Ok(PolicyReload::StillInvalid);
        }
        let policy = match Policy::from_yaml(&text, Some(&self.path)) {
            Ok(policy) => policy,
            Err(e) => {
                *last_failed = Some(sha);
                return Err(e);
            }
        };
        *last_failed = None;
        let generation = old.generation + 1;
        self.current.store(Arc::new(LoadedPolicy { policy, generation, loaded_at: SystemTime::now() }));
        Ok(PolicyReload::Changed { generation })
    }
}
