//! Why one connection did not count as a handshake, classified once into the key of the report's `errors`
//! map. Verifier refusals reuse the sidecar's own classification ([`sidecar::tls::HandshakeFailure`]), so a
//! server certificate that the sidecar would call `untrusted` is `untrusted` here too.

use std::{fmt, io};

use rustls::{AlertDescription, CertificateError};
use sidecar::tls::{HandshakeFailure, HandshakeReason};

/// The reason a connection failed. Small and `Copy`: the collector counts by it, and only the report turns
/// it into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// The server's port refused the TCP connection (RST to our SYN).
    ConnectRefused,
    /// No TCP connection within `--connect-timeout`.
    ConnectTimeout,
    /// No local port left (EADDRNOTAVAIL): too many sockets in TIME_WAIT toward this target.
    ConnectNoLocalPort,
    /// Any other failure to connect.
    ConnectError,
    /// No TLS handshake within `--handshake-timeout`.
    HandshakeTimeout,
    /// The server sent a fatal TLS alert (during the handshake, or right after it when it refused our
    /// certificate: TLS 1.3 clients learn of that on their first read). The alert's code: rustls's
    /// `AlertDescription` is not `Hash`.
    Alert(u8),
    /// Our verifier refused the server's certificate (`untrusted`, `expired`, `bad_svid`, `wrong_peer_id`,
    /// ...), or the handshake broke the protocol (`protocol_error`): the sidecar's reason names.
    Refused(HandshakeReason),
    /// `--server-name` mode: the server's certificate is valid but not for that DNS name.
    WrongServerName,
    /// The server reset the connection.
    ConnectionReset,
    /// The server closed the TCP connection in the middle of the handshake, without an alert.
    ClosedDuringHandshake,
    /// Any other I/O error.
    Io,
    /// The confirmation exchange after the handshake did not finish within `--handshake-timeout`.
    ConfirmTimeout,
    /// `--send`: the server closed after the handshake without sending a byte back (the sidecar does this to
    /// a caller its policy denies).
    NoReply,
}

impl ErrorReason {
    /// Classifies a failed `TcpStream::connect`.
    pub fn connect(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ErrorReason::ConnectRefused,
            io::ErrorKind::TimedOut => ErrorReason::ConnectTimeout,
            io::ErrorKind::AddrNotAvailable => ErrorReason::ConnectNoLocalPort,
            _ => ErrorReason::ConnectError,
        }
    }

    /// Classifies an error from the TLS handshake or from a read or write on the TLS stream.
    pub fn tls(e: &io::Error) -> Self {
        let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
            return Self::io(e);
        };
        match tls {
            rustls::Error::AlertReceived(alert) => ErrorReason::Alert(u8::from(*alert)),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => ErrorReason::WrongServerName,
            _ => ErrorReason::Refused(HandshakeFailure::from_io(e).reason),
        }
    }

    fn io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
                ErrorReason::ConnectionReset
            }
            io::ErrorKind::UnexpectedEof => ErrorReason::ClosedDuringHandshake,
            _ => ErrorReason::Io,
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorReason::ConnectRefused => "connect_refused",
            ErrorReason::ConnectTimeout => "connect_timeout",
            ErrorReason::ConnectNoLocalPort => "connect_no_local_port",
            ErrorReason::ConnectError => "connect_error",
            ErrorReason::HandshakeTimeout => "handshake_timeout",
            ErrorReason::Alert(code) => return write!(f, "tls_alert:{}", alert_name(AlertDescription::from(*code))),
            ErrorReason::Refused(reason) => reason.as_str(),
            ErrorReason::WrongServerName => "wrong_server_name",
            ErrorReason::ConnectionReset => "connection_reset",
            ErrorReason::ClosedDuringHandshake => "closed_during_handshake",
            ErrorReason::Io => "io",
            ErrorReason::ConfirmTimeout => "confirm_timeout",
            ErrorReason::NoReply => "no_reply",
        };
        f.write_str(name)
    }
}

/// The RFC 8446 name of an alert in snake case (`bad_certificate`, `unknown_ca`, `certificate_required`), or
/// `unknown_N` for a code rustls does not name.
pub fn alert_name(alert: AlertDescription) -> String {
    if let AlertDescription::Unknown(code) = alert {
        return format!("unknown_{code}");
    }
    snake_case(&format!("{alert:?}"))
}

/// `BadCertificate` -> `bad_certificate`, `UnknownCA` -> `unknown_ca`, `UnknownPSKIdentity` ->
/// `unknown_psk_identity`: a word starts at an uppercase letter after a lowercase one, or at the last
/// capital of an acronym followed by lowercase.
fn snake_case(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| chars.get(p));
        let next = chars.get(i + 1);
        let starts_word = c.is_uppercase()
            && prev.is_some_and(|p| p.is_lowercase() || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase())));
        if starts_word {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_named_as_in_the_rfc() {
        assert_eq!(alert_name(AlertDescription::BadCertificate), "bad_certificate");
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(alert_name(AlertDescription::CertificateRequired), "certificate_required");
        assert_eq!(alert_name(AlertDescription::UnknownPSKIdentity), "unknown_psk_identity");
        assert_eq!(alert_name(AlertDescription::Unknown(200)), "unknown_200");
        assert_eq!(ErrorReason::Alert(u8::from(AlertDescription::DecryptError)).to_string(), "tls_alert:decrypt_error");
    }

    #[test]
    fn verifier_refusals_keep_the_sidecar_reason_names() {
        let err = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(ErrorReason::tls(&err).to_string(), "untrusted");
        let alert =
            io::Error::new(io::ErrorKind::InvalidData, rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(ErrorReason::tls(&alert).to_string(), "tls_alert:unknown_ca");
        let name = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        );
        assert_eq!(ErrorReason::tls(&name), ErrorReason::WrongServerName);
    }

    #[test]
    fn plain_io_errors_are_classified_by_kind() {
        assert_eq!(ErrorReason::connect(&io::ErrorKind::ConnectionRefused.into()), ErrorReason::ConnectRefused);
        assert_eq!(ErrorReason::connect(&io::ErrorKind::AddrNotAvailable.into()), ErrorReason::ConnectNoLocalPort);
        assert_eq!(ErrorReason::tls(&io::ErrorKind::ConnectionReset.into()), ErrorReason::ConnectionReset);
        assert_eq!(ErrorReason::tls(&io::ErrorKind::UnexpectedEof.into()), ErrorReason::ClosedDuringHandshake);
    }
}
