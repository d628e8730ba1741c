//! `Policy::from_yaml` on arbitrary text (the YAML parser, the policy model, pattern compilation), then
//! decisions for peers and listeners derived from the text itself, so that decisions reach the patterns the
//! input declared. Never panics; a decision always names a rule of the policy or `default`; audit mode never
//! denies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::{Mode, Policy, SpiffeId, Verdict, decide::DEFAULT_RULE};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let policy = match Policy::from_yaml(text, None) {
        Ok(p) => p,
        Err(e) => {
            // Errors render as one line with a position when they have one.
            let _ = e.to_string();
            let _ = (e.position(), e.reason());
            return;
        }
    };
    assert_eq!(policy.sha256().len(), 64);
    let rules: Vec<&str> = policy.rule_names().collect();
    assert_eq!(rules.len(), policy.rule_count());
    let listeners: Vec<&str> = policy.scoped_listeners().take(4).chain(["", "api"]).collect();

    // Peers: every token of the text that is a SPIFFE ID (wildcards stripped), and a child of each.
    let mut peers = Vec::new();
    for token in text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '"' || c == '\'') {
        let token = token.trim_end_matches("/**").trim_end_matches("/*");
        if let Ok(id) = SpiffeId::parse(token) {
            if let Ok(child) = SpiffeId::parse(&format!("{token}/fuzz")) {
                peers.push(child);
            }
            peers.push(id);
        }
        if peers.len() >= 16 {
            break;
        }
    }
    peers.push(SpiffeId::parse("spiffe://example.org/ns/web/sa/web").expect("valid"));

    for listener in &listeners {
        for peer in &peers {
            let d = policy.decide(listener, peer);
            assert!(d.rule == DEFAULT_RULE || rules.contains(&d.rule), "unknown rule {:?}", d.rule);
            if policy.mode() == Mode::Audit {
                assert_ne!(d.verdict, Verdict::Deny);
            }
            assert_eq!(policy.decide(listener, peer), d, "decisions are deterministic");
        }
    }
});
