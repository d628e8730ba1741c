//! The policy file (SPEC §5): YAML, unknown keys are errors, every error carries line:column.
//!
//! [`parse`] turns text into a validated [`PolicyFile`]; compiling it for decisions is [`crate::decide`]'s job.
//! The YAML specifics (parser limits, error extraction) live in the private `yaml` module.

mod yaml;

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
};

use crate::{decide::DEFAULT_RULE, pattern::Pattern};

/// The largest policy file accepted. Real policies are kilobytes; the cap bounds parse time and memory.
pub const MAX_POLICY_BYTES: usize = 4 * 1024 * 1024;

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

/// A policy file that parsed and passed validation, rules in file order. [`crate::Policy::from_yaml`] compiles
/// it for decisions; the model is public so tools can show what a file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub mode: Mode,
    pub on_revoke: OnRevoke,
    pub rules: Vec<Rule>,
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique in the file, non-empty, never [`DEFAULT_RULE`].
    pub name: String,
    /// Inbound listeners the rule applies to; `None` means all. Never `Some(empty)`.
    pub listeners: Option<Vec<String>>,
    pub allow: Vec<Pattern>,
    pub deny: Vec<Pattern>,
}

impl Rule {
    /// Whether the rule applies to the inbound listener named `listener`.
    pub fn applies_to(&self, listener: &str) -> bool {
        self.listeners.as_ref().is_none_or(|names| names.iter().any(|n| n == listener))
    }
}

/// Reads a policy file whole (the only I/O this crate does), refusing one over [`MAX_POLICY_BYTES`].
pub fn read(path: &Path) -> Result<String, LoadError> {
    let read_error = |e: std::io::Error| LoadError::Read { path: path.to_path_buf(), reason: e.to_string() };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = String::new();
    // One byte more than allowed tells "exactly at the cap" from "over it" without trusting metadata.
    file.take(MAX_POLICY_BYTES as u64 + 1).read_to_string(&mut text).map_err(read_error)?;
    check_size(&text, Some(path))?;
    Ok(text)
}

/// Parses and validates policy text. `path` only labels errors.
///
/// Refuses a file that is empty or holds only comments: that is what a reader sees when it catches a writer
/// between truncate and write, and treating it as "no rules" would silently deny every caller. A file that
/// means "deny everyone" says so with `rules: []`.
pub fn parse(text: &str, path: Option<&Path>) -> Result<PolicyFile, LoadError> {
    check_size(text, path)?;
    if yaml::is_blank(text) {
        return Err(invalid(path, Some((1, 1)), "policy file is empty; write `rules: []` to deny everyone"));
    }
    let raw = yaml::parse(text).map_err(|(position, reason)| invalid(path, position, reason))?;
    validate(raw).map_err(|(position, reason)| invalid(path, position, reason))
}

fn check_size(text: &str, path: Option<&Path>) -> Result<(), LoadError> {
    if text.len() > MAX_POLICY_BYTES {
        let reason = format!("policy file is larger than {} MiB", MAX_POLICY_BYTES / (1024 * 1024));
        return Err(invalid(path, None, reason));
    }
    Ok(())
}

fn invalid(path: Option<&Path>, position: Option<(u64, u64)>, reason: impl Into<String>) -> LoadError {
    LoadError::Invalid { path: path.map(Path::to_path_buf), position, reason: reason.into() }
}

/// A validation failure: where (when known) and why.
type Invalid = (Option<(u64, u64)>, String);

/// The checks serde cannot express: rule names unique, not reserved, not blank; listener lists not empty;
/// every rule has at least one pattern.
fn validate(raw: yaml::RawFile) -> Result<PolicyFile, Invalid> {
    let mut seen: HashMap<String, Option<(u64, u64)>> = HashMap::with_capacity(raw.rules.len());
    let mut rules = Vec::with_capacity(raw.rules.len());
    for rule in raw.rules {
        let name_at = yaml::position(&rule.name);
        let name = rule.name.value;
        check_name(&name).map_err(|reason| (name_at, reason))?;
        if let Some(first) = seen.get(&name) {
            let first = match first {
                Some((line, col)) => format!(" (first used at line {line}, column {col})"),
                None => String::new(),
            };
            return Err((name_at, format!("duplicate rule name {name:?}{first}")));
        }
        seen.insert(name.clone(), name_at);
        let listeners = match rule.listeners {
            None => None,
            Some(list) => Some(check_listeners(&name, list)?),
        };
        let allow = rule.allow.unwrap_or_default();
        let deny = rule.deny.unwrap_or_default();
        if allow.is_empty() && deny.is_empty() {
            return Err((name_at, format!("rule {name:?} has no `allow` or `deny` patterns")));
        }
        rules.push(Rule { name, listeners, allow, deny });
    }
    Ok(PolicyFile { mode: raw.mode, on_revoke: raw.on_revoke, rules })
}

/// Names end up in logs and metric labels, so they must be non-blank single-line text.
fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("rule `name` must not be empty".into());
    }
    if name == DEFAULT_RULE {
        return Err(format!("rule name {DEFAULT_RULE:?} is reserved for \"no rule matched\""));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("rule name {name:?} contains a control character"));
    }
    Ok(())
}

fn check_listeners(rule: &str, list: yaml::Spanned<Vec<yaml::Spanned<String>>>) -> Result<Vec<String>, Invalid> {
    if list.value.is_empty() {
        let reason = format!("rule {rule:?}: `listeners` is empty; omit it to apply the rule to every listener");
        return Err((yaml::position(&list), reason));
    }
    list.value
        .into_iter()
        .map(|name| {
            if name.value.trim().is_empty() {
                Err((yaml::position(&name), format!("rule {rule:?}: a listener name is empty")))
            } else {
                Ok(name.value)
            }
        })
        .collect()
}
