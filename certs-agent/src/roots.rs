//! The root set of a CA directory, as recorded in `roots.json`: every root the trust domain has, when each one
//! signs, and until when the SVIDs each one signed stay valid. Pure data and rules; the CA store
//! ([`crate::store`]) reads and writes it under the directory lock.
//!
//! A root is in one of four phases at any instant, decided by its `activate_at` alone, so that activation needs
//! no write and every issuer that looks at the set at the same instant picks the same signing root:
//!
//! | phase | condition | signs | in the bundle |
//! |---|---|---|---|
//! | pending | `activate_at` in the future | no | yes |
//! | active | the activated root with the latest `activate_at` | yes | yes |
//! | superseded | activated, but a later root activated since | no | yes, until `ca retire` |
//! | trust-only | no `activate_at` (an extra root adopted from `bundle.pem`, no key here) | no | yes, until `ca retire` |
//!
//! Every root of the set is in the bundle: the set *is* the trust bundle. `ca rotate` adds a pending root;
//! `ca retire` removes superseded and trust-only roots, and only once every SVID they signed has expired
//! (`signed_until` in the past) unless forced. So the bundle always holds every root that signed a live SVID.

use serde::{Deserialize, Serialize};

/// The format version of `roots.json`.
pub const VERSION: u32 = 1;

/// The contents of `roots.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSet {
    pub version: u32,
    pub trust_domain: String,
    /// Bumped whenever the set of trusted roots changes; published as the SPIFFE bundle's `spiffe_sequence`.
    pub sequence: u64,
    /// Oldest first (the order of `bundle.pem`).
    pub roots: Vec<RootEntry>,
}

/// One root of the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootEntry {
    /// Lowercase hex serial: names `roots/<serial>.pem` and `roots/<serial>_key.pem`.
    pub serial: String,
    /// When the root joined the set (Unix seconds).
    pub added_at: i64,
    /// When the root starts signing SVIDs (Unix seconds); None for a trust-only root.
    pub activate_at: Option<i64>,
    /// The latest notAfter of any SVID this root signed (Unix seconds, inclusive); None if it signed none.
    #[serde(default)]
    pub signed_until: Option<i64>,
}

/// Where a root stands at some instant (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Active,
    Superseded,
    TrustOnly,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Active => "active",
            Phase::Superseded => "superseded",
            Phase::TrustOnly => "trust-only",
        }
    }
}

/// Why `ca retire` did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetireBlock {
    /// A superseded root signed SVIDs that are still valid (the latest such root and until when).
    LiveSvids { serial: String, until: i64 },
    /// The old root still signs: the new one is pending.
    RotationPending { active: String, pending: String, activate_at: i64 },
    /// Nothing but the signing root is left (a pending root is `RotationPending`).
    NothingToRetire { active: Option<String> },
}

impl RootSet {
    /// A set of one signing root, active since `activate_at`.
    pub fn new(trust_domain: &str, serial: String, added_at: i64, activate_at: i64) -> Self {
        RootSet {
            version: VERSION,
            trust_domain: trust_domain.to_owned(),
            sequence: 1,
            roots: vec![RootEntry { serial, added_at, activate_at: Some(activate_at), signed_until: None }],
        }
    }

    /// The signing root at `now`: the activated root with the latest `activate_at` (the later one in the list on
    /// a tie).
    pub fn active(&self, now: i64) -> Option<&RootEntry> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(_, r)| r.activate_at.is_some_and(|t| t <= now))
            .max_by_key(|(i, r)| (r.activate_at, *i))
            .map(|(_, r)| r)
    }

    /// The phase of `root` at `now`.
    pub fn phase(&self, root: &RootEntry, now: i64) -> Phase {
        match root.activate_at {
            None => Phase::TrustOnly,
            Some(t) if t > now => Phase::Pending,
            Some(_) if self.active(now).is_some_and(|a| a.serial == root.serial) => Phase::Active,
            Some(_) => Phase::Superseded,
        }
    }

    /// The root waiting to take over, if any.
    pub fn pending(&self, now: i64) -> Option<&RootEntry> {
        self.roots.iter().find(|r| self.phase(r, now) == Phase::Pending)
    }

    pub fn get(&self, serial: &str) -> Option<&RootEntry> {
        self.roots.iter().find(|r| r.serial == serial)
    }

    /// The latest notAfter of any SVID signed by any root (None if none was recorded).
    pub fn latest_signed_until(&self) -> Option<i64> {
        self.roots.iter().filter_map(|r| r.signed_until).max()
    }

    /// Records that `serial` signed an SVID valid until `not_after`. Returns whether the record changed.
    pub fn record_issued(&mut self, serial: &str, not_after: i64) -> bool {
        match self.roots.iter_mut().find(|r| r.serial == serial) {
            Some(root) if root.signed_until.is_none_or(|t| t < not_after) => {
                root.signed_until = Some(not_after);
                true
            }
            _ => false,
        }
    }

    /// Adds a pending root and bumps the sequence.
    pub fn add(&mut self, entry: RootEntry) {
        self.roots.push(entry);
        self.sequence += 1;
    }

    /// The roots `ca retire` would remove at `now` (superseded and trust-only ones), or why there are none to
    /// remove. Without `force`, a root whose SVIDs are still valid blocks the whole retirement.
    pub fn retirable(&self, now: i64, force: bool) -> Result<Vec<&RootEntry>, RetireBlock> {
        let candidates: Vec<&RootEntry> =
            self.roots.iter().filter(|r| matches!(self.phase(r, now), Phase::Superseded | Phase::TrustOnly)).collect();
        if candidates.is_empty() {
            let active = self.active(now).map(|r| r.serial.clone());
            return Err(match (self.pending(now), active) {
                (Some(p), Some(active)) => RetireBlock::RotationPending {
                    active,
                    pending: p.serial.clone(),
                    activate_at: p.activate_at.unwrap_or_default(),
                },
                (_, active) => RetireBlock::NothingToRetire { active },
            });
        }
        if !force {
            // notAfter is inclusive (RFC 5280 §4.1.2.5): an SVID is valid through its last second.
            let live =
                candidates.iter().filter(|r| r.signed_until.is_some_and(|t| t >= now)).max_by_key(|r| r.signed_until);
            if let Some(r) = live {
                return Err(RetireBlock::LiveSvids {
                    serial: r.serial.clone(),
                    until: r.signed_until.unwrap_or_default(),
                });
            }
        }
        Ok(candidates)
    }

    /// Removes the roots named in `serials` and bumps the sequence.
    pub fn remove(&mut self, serials: &[String]) {
        self.roots.retain(|r| !serials.contains(&r.serial));
        self.sequence += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: &str, activate_at: Option<i64>, signed_until: Option<i64>) -> RootEntry {
        RootEntry { serial: serial.into(), added_at: 0, activate_at, signed_until }
    }

    fn set(roots: Vec<RootEntry>) -> RootSet {
        RootSet { version: VERSION, trust_domain: "example.org".into(), sequence: 1, roots }
    }

    #[test]
    fn activation_is_decided_by_time_alone() {
        let s = set(vec![entry("a", Some(0), None), entry("b", Some(100), None)]);
        assert_eq!(s.active(99).unwrap().serial, "a");
        assert_eq!(s.active(100).unwrap().serial, "b");
        let (a, b) = (&s.roots[0], &s.roots[1]);
        assert_eq!((s.phase(a, 50), s.phase(b, 50)), (Phase::Active, Phase::Pending));
        assert_eq!((s.phase(a, 150), s.phase(b, 150)), (Phase::Superseded, Phase::Active));
        assert_eq!(s.pending(50).unwrap().serial, "b");
        assert!(s.pending(150).is_none());
        assert!(s.active(-1).is_none());
    }

    #[test]
    fn trust_only_roots_never_sign() {
        let s = set(vec![entry("x", None, None), entry("a", Some(0), None)]);
        assert_eq!(s.active(10).unwrap().serial, "a");
        assert_eq!(s.phase(&s.roots[0], 10), Phase::TrustOnly);
    }

    #[test]
    fn the_record_only_moves_forward() {
        let mut s = set(vec![entry("a", Some(0), None)]);
        assert!(s.record_issued("a", 50));
        assert!(!s.record_issued("a", 40));
        assert!(s.record_issued("a", 60));
        assert!(!s.record_issued("zz", 99));
        assert_eq!(s.roots[0].signed_until, Some(60));
        assert_eq!(s.latest_signed_until(), Some(60));
    }

    #[test]
    fn retire_waits_for_the_last_svid_of_the_old_root() {
        let s = set(vec![entry("a", Some(0), Some(130)), entry("b", Some(100), Some(500))]);
        assert_eq!(s.retirable(120, false), Err(RetireBlock::LiveSvids { serial: "a".into(), until: 130 }));
        // notAfter is inclusive: still live during second 130.
        assert!(s.retirable(130, false).is_err());
        assert_eq!(s.retirable(131, false).unwrap()[0].serial, "a");
        assert_eq!(s.retirable(120, true).unwrap().len(), 1);
        // b is active: never retirable, whatever its SVIDs.
        assert!(s.retirable(1000, false).unwrap().iter().all(|r| r.serial == "a"));
    }

    #[test]
    fn retire_refuses_while_the_new_root_is_pending_or_alone() {
        let s = set(vec![entry("a", Some(0), None), entry("b", Some(100), None)]);
        assert_eq!(
            s.retirable(50, true),
            Err(RetireBlock::RotationPending { active: "a".into(), pending: "b".into(), activate_at: 100 })
        );
        let single = set(vec![entry("a", Some(0), None)]);
        assert_eq!(single.retirable(50, true), Err(RetireBlock::NothingToRetire { active: Some("a".into()) }));
    }

    #[test]
    fn changes_to_the_trusted_set_bump_the_sequence() {
        let mut s = set(vec![entry("a", Some(0), None)]);
        s.add(entry("b", Some(10), None));
        assert_eq!(s.sequence, 2);
        s.record_issued("b", 99);
        assert_eq!(s.sequence, 2, "the issuance record is not a bundle change");
        s.remove(&["a".into()]);
        assert_eq!(s.sequence, 3);
        assert_eq!(s.roots.len(), 1);
    }

    #[test]
    fn json_round_trips_and_refuses_unknown_fields() {
        let s = set(vec![entry("a", Some(0), Some(5)), entry("x", None, None)]);
        let text = serde_json::to_string_pretty(&s).unwrap();
        assert_eq!(serde_json::from_str::<RootSet>(&text).unwrap(), s);
        assert!(serde_json::from_str::<RootSet>(&text.replace("\"sequence\"", "\"sequense\"")).is_err());
    }
}
