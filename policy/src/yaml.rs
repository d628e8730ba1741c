//! Strict YAML for the files this project reads (the policy, the sidecar configuration): limits that keep a
//! hostile file (alias bombs, deep nesting, many documents) from costing more than a large honest one,
//! duplicate and merge keys refused, and every error reduced to one line plus the position serde-saphyr
//! attributes it to.

use serde::de::DeserializeOwned;
use serde_saphyr::{MessageFormatter, UserMessageFormatter, budget::BudgetBreach};

/// A YAML error: the 1-based (line, column) when known, and one line of text.
pub type YamlError = (Option<(u64, u64)>, String);

/// Deserializes `text` with the strict options.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| describe(&e))
}

/// A policy is four levels deep; 32 leaves room for flow style and stops stack-eating nesting.
const MAX_DEPTH: usize = 32;
/// Aliases are legitimate (sharing a pattern list) but never numerous in a hand-written policy.
const MAX_ALIASES: usize = 10_000;
const MAX_ANCHORS: usize = 10_000;

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_documents = 1;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ANCHORS;

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
    let reason = match inner {
        serde_saphyr::Error::Budget { breach, .. } => budget_reason(breach),
        other => one_line(&UserMessageFormatter.format_message(other)),
    };
    let position = err.location().and_then(|l| known(l.line(), l.column()));
    (position, reason)
}

/// A limit of [`options`] the text exceeded, said plainly (serde-saphyr's own message is the breach's Debug
/// output, e.g. `Documents { documents: 2 }`).
fn budget_reason(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Documents { .. } => {
            "more than one YAML document (a `---` line starts another; this file holds one)".into()
        }
        BudgetBreach::Depth { .. } => format!("nesting deeper than {MAX_DEPTH} levels"),
        BudgetBreach::Aliases { .. } => format!("too many aliases (more than {MAX_ALIASES})"),
        BudgetBreach::Anchors { .. } => format!("too many anchors (more than {MAX_ANCHORS})"),
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => {
            format!("too many aliases for the anchors they refer to ({aliases} aliases of {anchors} anchors)")
        }
        BudgetBreach::MergeKeys { .. } => "too many merge keys (`<<`)".into(),
        BudgetBreach::SequenceUnbalanced => "unbalanced structure (truncated or malformed YAML)".into(),
        BudgetBreach::Events { .. }
        | BudgetBreach::Nodes { .. }
        | BudgetBreach::ScalarBytes { .. }
        | BudgetBreach::InputBytes { .. }
        | BudgetBreach::RecordedAnchorEvents { .. }
        | BudgetBreach::RecordedAnchorBytes { .. } => "YAML document too large".into(),
        // Limits of features this crate does not use (includes, properties), and any added later.
        _ => "YAML document too large or too complex".into(),
    }
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

    fn error(text: &str) -> YamlError {
        match from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => e,
        }
    }

    #[test]
    fn limit_breaches_read_as_plain_reasons() {
        let (position, reason) = error("rules: []\n---\nrules: []\n");
        assert_eq!(position, Some((2, 1)));
        assert_eq!(reason, "more than one YAML document (a `---` line starts another; this file holds one)");

        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(error(&deep).1, "nesting deeper than 32 levels");

        let mut aliases = String::from("a: &x 1\nb: [");
        aliases.push_str(&["*x"; 10_001].join(", "));
        aliases.push_str("]\n");
        assert_eq!(error(&aliases).1, "too many aliases (more than 10000)");

        let anchors: Vec<String> = (0..=10_000).map(|i| format!("&a{i} 1")).collect();
        assert_eq!(error(&format!("[{}]", anchors.join(", "))).1, "too many anchors (more than 10000)");
    }

    #[test]
    fn one_line_flattens() {
        assert_eq!(one_line("a\n  b\tc\r\n"), "a b c");
        assert_eq!(one_line("\n"), "invalid YAML");
    }
}
