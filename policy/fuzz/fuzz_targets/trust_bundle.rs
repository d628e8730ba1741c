//! `TrustBundle::from_pem` on arbitrary bytes (PEM framing, then each root parsed as an X.509 trust anchor and
//! checked for URI name constraints). Never panics; an accepted bundle has as many anchors as roots.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::{TrustBundle, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let td = TrustDomain::parse("example.org").expect("valid");
    if let Ok(bundle) = TrustBundle::from_pem(td, data) {
        assert!(!bundle.roots().is_empty());
        assert_eq!(bundle.roots().len(), bundle.anchors().len());
    }
});
