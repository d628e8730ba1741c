//! The caller allowlist in use: a compiled [`Policy`] swapped atomically on reload. A reload parses and
//! compiles off the data path; an invalid file never replaces a good policy.

use std::{path::PathBuf, sync::Arc, time::SystemTime};

use arc_swap::ArcSwap;
use policy::{LoadError, Policy};

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
}

/// The policy in force.
#[derive(Debug)]
pub struct PolicyStore {
    path: PathBuf,
    current: ArcSwap<LoadedPolicy>,
}

impl PolicyStore {
    /// Loads the policy at start; an error here is a configuration error.
    pub fn load(path: PathBuf) -> Result<Self, LoadError> {
        let policy = Policy::load(&path)?;
        let loaded = LoadedPolicy { policy, generation: 1, loaded_at: SystemTime::now() };
        Ok(Self { path, current: ArcSwap::from_pointee(loaded) })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The policy in force (a pointer read).
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// Re-reads the file; swaps in the new policy if it is valid and different. On error the policy in
    /// force stays.
    pub fn reload(&self) -> Result<PolicyReload, LoadError> {
        let text = policy::file::read(&self.path)?;
        let policy = Policy::from_yaml(&text, Some(&self.path))?;
        let old = self.current.load();
        if policy.sha256() == old.policy.sha256() {
            return Ok(PolicyReload::Unchanged);
        }
        let generation = old.generation + 1;
        self.current.store(Arc::new(LoadedPolicy { policy, generation, loaded_at: SystemTime::now() }));
        Ok(PolicyReload::Changed { generation })
    }
}
