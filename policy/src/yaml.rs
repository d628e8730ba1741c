//! Strict YAML for the files this project reads (the policy, the sidecar configuration): limits that keep a
//! hostile file (alias bombs, deep nesting, many documents) from costing more than a large honest one,
//! duplicate and merge keys refused, and every error reduced to one line plus the position serde-saphyr
//! attributes it to.

use serde::de::DeserializeOwned;
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

/// A YAML error: the 1-based (line, column) when known, and one line of text.
pub type YamlError = (Option<(u64, u64)>, String);

/// Deserializes `text` with the strict options.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| describe(&e))
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // A policy is four levels deep; 32 leaves room for flow style and stops stack-eating nesting.
    budget.max_depth = 32;
    budget.max_documents = 1;
    // Aliases are legitimate (sharing a pattern list) but never numerous in a hand-written policy.
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;

    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // Alias expansion is what turns a few kilobytes into gigabytes; cap the total replayed events well above
    // what any sane sharing needs and far below what would hurt.
    options.alias_limits.max_total_replayed_events = 200_000;
    options.alias_limits.max_replay_stack_depth = 16;
    options.alias_limits.max_alias_expansions_per_anchor = 10_000;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    // `<<` merges have no use in a policy and make "which key wins" hard to read.
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Error;
    options
}

/// One line of text and the position serde-saphyr attributes the error to. The default rendering draws a
/// multi-line source snippet, which does not fit a log line or a `FILE:LINE:COL: reason` diagnostic.
fn describe(err: &serde_saphyr::Error) -> YamlError {
    let mut inner = err;
    // The wrappers only add a snippet or an alias site; the message is the wrapped error's.
    while let serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error;
    }
    let message = UserMessageFormatter.format_message(inner);
    let reason = one_line(&message);
    let position = err.location().and_then(|l| known(l.line(), l.column()));
    (position, reason)
}

/// Collapses whitespace runs (including newlines) to one space and drops other control characters.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    if out.is_empty() { "invalid YAML".to_owned() } else { out }
}

/// The 1-based (line, column) of a spanned value, when the parser recorded one.
pub fn span_position<T>(value: &serde_saphyr::Spanned<T>) -> Option<(u64, u64)> {
    known(value.referenced.line(), value.referenced.column())
}

fn known(line: u64, column: u64) -> Option<(u64, u64)> {
    (line > 0).then_some((line, column.max(1)))
}

/// Whether `text` has no YAML content: only whitespace, comments, and document markers.
pub fn is_blank(text: &str) -> bool {
    text.lines()
        .map(|line| line.trim_start_matches('\u{feff}').trim())
        .all(|line| line.is_empty() || line.starts_with('#') || line == "---" || line == "...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_detection() {
        for text in ["", "  \n\t\n", "# only a comment\n", "---\n# c\n...\n", "\u{feff}\n"] {
            assert!(is_blank(text), "{text:?}");
        }
        for text in ["rules: []", "mode: enforce", "~", "--- x"] {
            assert!(!is_blank(text), "{text:?}");
        }
    }

    #[test]
    fn one_line_flattens() {
        assert_eq!(one_line("a\n  b\tc\r\n"), "a b c");
        assert_eq!(one_line("\n"), "invalid YAML");
    }
}
