//! The YAML shape of the policy file. Parsing limits and error positions are [`crate::yaml`]'s.

use serde::Deserialize;
pub(super) use serde_saphyr::Spanned;

use super::{Invalid, Mode, OnRevoke};
use crate::pattern::Pattern;

/// The file as written. Values whose position a later check reports are [`Spanned`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub on_revoke: OnRevoke,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub name: Spanned<String>,
    #[serde(default)]
    pub listeners: Option<Spanned<Vec<Spanned<String>>>>,
    // A bad pattern fails inside the deserializer, which then knows its position: no span needed.
    #[serde(default)]
    pub allow: Option<Vec<Pattern>>,
    #[serde(default)]
    pub deny: Option<Vec<Pattern>>,
}

/// Parses `text` into the raw shape (strict YAML: see [`crate::yaml`]).
pub(super) fn parse(text: &str) -> Result<RawFile, Invalid> {
    crate::yaml::from_str(text)
}

/// The 1-based (line, column) of a spanned value, when the parser recorded one.
pub(super) fn position<T>(value: &Spanned<T>) -> Option<(u64, u64)> {
    crate::yaml::span_position(value)
}

pub(super) use crate::yaml::is_blank;
