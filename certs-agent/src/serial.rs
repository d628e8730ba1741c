//! Certificate serial numbers: 128 random bits from the OS, made positive.
//!
//! Random (not derived from the key, rcgen's default) so that two certificates for the same key never share
//! a serial, and unpredictable, as RFC 5280 §4.1.2.2 and the CA/B baseline ask of every issuer.

use std::fmt;

/// A positive certificate serial number, big-endian.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Serial(Vec<u8>);

/// The OS random source failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read random bytes for a serial number: {0}")]
pub struct SerialError(String);

impl Serial {
    /// 16 random bytes with the top bit cleared, so the DER INTEGER is positive and at most 16 bytes long.
    pub fn random() -> Result<Self, SerialError> {
        loop {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| SerialError(e.to_string()))?;
            bytes[0] &= 0x7f;
            // Zero is not a valid serial; with 127 random bits this loop runs once in practice.
            if bytes.iter().any(|&b| b != 0) {
                return Ok(Serial(bytes.to_vec()));
            }
        }
    }

    /// Wraps the magnitude bytes of a serial read back from a certificate.
    pub fn from_be_bytes(bytes: &[u8]) -> Self {
        Serial(bytes.to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex without separators, leading zero bytes dropped (as `openssl x509 -serial` shows it).
    pub fn to_hex(&self) -> String {
        let start = self.0.iter().position(|&b| b != 0).unwrap_or(self.0.len());
        let digits: String = self.0[start..].iter().map(|b| format!("{b:02x}")).collect();
        if digits.is_empty() { "00".to_owned() } else { digits }
    }

    pub(crate) fn to_rcgen(&self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_positive_and_differ() {
        let a = Serial::random().unwrap();
        let b = Serial::random().unwrap();
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert_eq!(s.as_bytes().len(), 16);
            assert_eq!(s.as_bytes()[0] & 0x80, 0);
        }
    }

    #[test]
    fn hex_drops_leading_zero_bytes() {
        assert_eq!(Serial::from_be_bytes(&[0, 0x0a, 0xff]).to_hex(), "0aff");
        assert_eq!(Serial::from_be_bytes(&[]).to_hex(), "00");
    }
}
