//! The policy file (SPEC §5): YAML, unknown keys are errors, every error carries line:column.

use std::path::{Path, PathBuf};

/// `mode:` enforce decisions, or only log and count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide, log and count, but allow.
    Audit,
}

/// `on_revoke:` what a reload does to open connections whose caller it no longer allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRevoke {
    #[default]
    Close,
    Keep,
}

/// Why a policy could not be loaded. Displays as `FILE:LINE:COLUMN: reason` when the position is known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}{}: {reason}", path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<policy>".into()), position.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// 1-based line and column of the offending node, when known.
        position: Option<(u64, u64)>,
        /// One line saying what is wrong.
        reason: String,
    },
}

impl LoadError {
    /// The 1-based (line, column) of the error, when known.
    pub fn position(&self) -> Option<(u64, u64)> {
        match self {
            LoadError::Read { .. } => None,
            LoadError::Invalid { position, .. } => *position,
        }
    }

    /// The reason alone, without file or position.
    pub fn reason(&self) -> &str {
        match self {
            LoadError::Read { reason, .. } | LoadError::Invalid { reason, .. } => reason,
        }
    }
}

/// Reads a policy file whole (the only I/O this crate does).
pub fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| LoadError::Read { path: path.to_path_buf(), reason: e.to_string() })
}
