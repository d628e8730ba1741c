//! The X.509-SVID checks on arbitrary DER: the SPIFFE ID of a leaf, the leaf rules, the details `inspect`
//! prints, and full verification (chain + rules) against a fixed bundle, with the input split into a leaf and
//! an intermediate. Never panics; a verified leaf's ID is the one `spiffe_id_of_leaf` reads.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use policy::{Role, TrustBundle, TrustDomain, svid};
use rustls_pki_types::{CertificateDer, UnixTime};

static BUNDLE: LazyLock<TrustBundle> = LazyLock::new(|| {
    let td = TrustDomain::parse("example.org").expect("valid");
    TrustBundle::from_pem(td, include_bytes!("../fixtures/bundle.pem")).expect("the fixture bundle is valid")
});

/// Inside the fixtures' validity (see FUZZING.md), so a valid seed verifies.
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    // [leaf length: u16 big-endian][leaf][intermediate]; shorter inputs are a leaf alone.
    let (leaf, intermediate) = match data {
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) <= rest.len() => {
            rest.split_at(usize::from(u16::from_be_bytes([*hi, *lo])))
        }
        _ => (data, &[][..]),
    };
    let leaf = CertificateDer::from(leaf);
    let id = svid::spiffe_id_of_leaf(&leaf);
    let _ = svid::leaf_rule_violations(&leaf, None);
    let _ = svid::leaf_rule_violations(&leaf, Some(Role::Client));
    let _ = svid::leaf_details(&leaf);
    let intermediates: Vec<CertificateDer<'_>> =
        if intermediate.is_empty() { vec![] } else { vec![CertificateDer::from(intermediate)] };
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW));
    for role in [Role::Client, Role::Server] {
        if let Ok(verified) = BUNDLE.verify(&leaf, &intermediates, now, role) {
            assert_eq!(id.as_ref().ok(), Some(&verified));
        }
    }
});
