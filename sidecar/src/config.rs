//! The sidecar configuration (SPEC §2): YAML parsed once, at start, into typed values. Unknown keys are
//! errors; every error names the file, the position or key, and the reason. Nothing downstream looks up
//! strings.
//!
//! Relative paths are resolved against the configuration file's directory, so a configuration means the same
//! thing whatever the working directory.

use std::{
    collections::HashSet,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use policy::SpiffeId;
use serde::Deserialize;

use crate::addr::{Addr, ConnectAddr, ListenAddr};

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub identity: IdentityPaths,
    pub admin: ListenAddr,
    pub policy: PathBuf,
    pub inbound: Vec<InboundConfig>,
    pub outbound: Vec<OutboundConfig>,
    pub timeouts: Timeouts,
    pub limits: Limits,
}

/// Where the workload's identity lives. With a directory, the default file names are SPIRE spiffe-helper's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPaths {
    /// The directory holding the files, when configured (watched for changes).
    pub dir: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

/// A listener's name: unique, and used as a metric label and in policy `listeners:` lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerName(pub std::sync::Arc<str>);

#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub name: ListenerName,
    pub listen: ListenAddr,
    pub forward: ConnectAddr,
}

#[derive(Debug, Clone)]
pub struct OutboundConfig {
    pub name: ListenerName,
    pub listen: ListenAddr,
    pub connect: ConnectAddr,
    /// The identity the peer must prove, exactly.
    pub server_id: SpiffeId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub handshake: Duration,
    pub connect: Duration,
    pub half_close_idle: Duration,
    pub drain: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            half_close_idle: Duration::from_secs(60),
            drain: Duration::from_secs(30),
        }
    }
}

/// The largest `limits.max_connections` accepted: far beyond what one process can hold open, and well inside
/// what a semaphore can count.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

impl Default for Limits {
    fn default() -> Self {
        Self { max_connections: 10_000 }
    }
}

impl fmt::Display for ListenerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ListenerName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why the configuration is unusable. Displays as one line: `FILE: [LINE:COL: ]reason`, the reason naming
/// the key.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub reason: String,
}

// === the file as written ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    identity: IdentitySpec,
    admin: String,
    policy: PathBuf,
    #[serde(default)]
    inbound: Vec<InboundSpec>,
    #[serde(default)]
    outbound: Vec<OutboundSpec>,
    #[serde(default)]
    timeouts: TimeoutsSpec,
    #[serde(default)]
    limits: LimitsSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySpec {
    dir: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    bundle: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundSpec {
    name: String,
    listen: String,
    forward: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundSpec {
    name: String,
    listen: String,
    connect: String,
    server_id: SpiffeId,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsSpec {
    handshake: Option<DurationText>,
    connect: Option<DurationText>,
    half_close_idle: Option<DurationText>,
    drain: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSpec {
    max_connections: Option<usize>,
}

/// A duration written with a unit: `ms`, `s`, `m` or `h` (e.g. `10s`, `1500ms`).
#[derive(Debug, Clone, Copy)]
struct DurationText(Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map(DurationText).map_err(serde::de::Error::custom)
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` (and humantime's other spellings).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration {text:?}: write a number and a unit, ms, s, m or h (e.g. 500ms, 10s, 1m30s)");
    // Only the units SPEC §2 names, one or more number+unit pairs; humantime then does the arithmetic.
    let trimmed = text.trim();
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h"].into_iter().find(|u| rest.starts_with(u)).ok_or_else(bad)?;
        rest = &rest[unit.len()..];
    }
    if trimmed.is_empty() {
        return Err(bad());
    }
    humantime::parse_duration(trimmed).map_err(|_| bad())
}

// === loading ===

impl Config {
    /// Reads and validates the configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        Self::parse(&text, &base).map_err(err)
    }

    /// Parses configuration text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let file: File = policy::yaml::from_str(text).map_err(|(position, reason)| match position {
            Some((line, column)) => format!("{line}:{column}: {reason}"),
            None => reason,
        })?;
        // Relative to the configuration file; `.` components dropped so logs and /status show plain paths
        // (`..` is kept: only the filesystem knows what it means under symlinks).
        let resolve = |p: &Path| {
            let joined = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
            joined.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect::<PathBuf>()
        };

        let identity = identity_paths(&file.identity, &resolve)?;
        let admin = ListenAddr(parse_addr("admin", &file.admin)?);
        let policy = resolve(&file.policy);

        let mut names = HashSet::new();
        let mut check_name = |name: &str, at: &str| -> Result<ListenerName, String> {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return Err(format!("{at}.name {name:?}: use letters, digits, '-', '_' or '.'"));
            }
            if !names.insert(name.to_string()) {
                return Err(format!("{at}.name {name:?}: listener names must be unique"));
            }
            Ok(ListenerName(name.into()))
        };

        let mut inbound = Vec::new();
        for (i, spec) in file.inbound.iter().enumerate() {
            let at = format!("inbound[{i}]");
            let name = check_name(&spec.name, &at)?;
            let listen = ListenAddr(parse_addr(&format!("{at}.listen"), &spec.listen)?);
            let forward = parse_addr(&format!("{at}.forward"), &spec.forward)?;
            if !forward.is_local() {
                return Err(format!(
                    "{at}.forward {forward}: plaintext is only forwarded to loopback or unix: addresses"
                ));
            }
            inbound.push(InboundConfig { name, listen, forward: ConnectAddr(forward) });
        }

        let mut outbound = Vec::new();
        for (i, spec) in file.outbound.iter().enumerate() {
            let at = format!("outbound[{i}]");
            let name = check_name(&spec.name, &at)?;
            let listen = parse_addr(&format!("{at}.listen"), &spec.listen)?;
            if !listen.is_local() {
                return Err(format!(
                    "{at}.listen {listen}: an outbound listener lends this workload's identity to whoever \
                     connects, so it must be on loopback or a unix: socket"
                ));
            }
            let connect = parse_addr(&format!("{at}.connect"), &spec.connect)?;
            if matches!(connect, Addr::Unix(_)) {
                return Err(format!("{at}.connect {connect}: the peer sidecar is dialed over TCP"));
            }
            if !spec.server_id.has_path() {
                return Err(format!("{at}.server_id {}: a workload SPIFFE ID has a path", spec.server_id));
            }
            outbound.push(OutboundConfig {
                name,
                listen: ListenAddr(listen),
                connect: ConnectAddr(connect),
                server_id: spec.server_id.clone(),
            });
        }
        if inbound.is_empty() && outbound.is_empty() {
            return Err("no inbound or outbound listeners: nothing to do".into());
        }

        let defaults = Timeouts::default();
        let t = &file.timeouts;
        let timeouts = Timeouts {
            handshake: t.handshake.map_or(defaults.handshake, |d| d.0),
            connect: t.connect.map_or(defaults.connect, |d| d.0),
            half_close_idle: t.half_close_idle.map_or(defaults.half_close_idle, |d| d.0),
            drain: t.drain.map_or(defaults.drain, |d| d.0),
        };
        for (key, value) in [("handshake", timeouts.handshake), ("connect", timeouts.connect)] {
            if value.is_zero() {
                return Err(format!("timeouts.{key}: must be more than zero"));
            }
        }
        let limits =
            Limits { max_connections: file.limits.max_connections.unwrap_or(Limits::default().max_connections) };
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&limits.max_connections) {
            return Err(format!("limits.max_connections: must be from 1 to {MAX_CONNECTIONS_LIMIT}"));
        }

        Ok(Config { identity, admin, policy, inbound, outbound, timeouts, limits })
    }
}

fn identity_paths(spec: &IdentitySpec, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<IdentityPaths, String> {
    match &spec.dir {
        Some(dir) => {
            let dir = resolve(dir);
            let name = |p: &Option<PathBuf>, default: &str| match p {
                Some(p) if p.is_absolute() => p.clone(),
                Some(p) => dir.join(p),
                None => dir.join(default),
            };
            Ok(IdentityPaths {
                cert: name(&spec.cert, "svid.pem"),
                key: name(&spec.key, "svid_key.pem"),
                bundle: name(&spec.bundle, "svid_bundle.pem"),
                dir: Some(dir),
            })
        }
        None => match (&spec.cert, &spec.key, &spec.bundle) {
            (Some(cert), Some(key), Some(bundle)) => {
                Ok(IdentityPaths { dir: None, cert: resolve(cert), key: resolve(key), bundle: resolve(bundle) })
            }
            _ => Err("identity: give `dir`, or all three of `cert`, `key` and `bundle`".into()),
        },
    }
}

fn parse_addr(key: &str, text: &str) -> Result<Addr, String> {
    text.parse::<Addr>().map_err(|e| format!("{key}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
identity:
  dir: ./certs/web
admin: 127.0.0.1:15000
policy: ./policy.yaml
inbound:
  - name: api
    listen: 0.0.0.0:15006
    forward: 127.0.0.1:8080
outbound:
  - name: payments
    listen: 127.0.0.1:15001
    connect: 10.0.0.7:15006
    server_id: spiffe://example.org/ns/pay/sa/payments
timeouts: { handshake: 10s, connect: 5s, half_close_idle: 60s, drain: 30s }
limits: { max_connections: 10000 }
"#;

    #[test]
    fn parses_the_spec_example() {
        let c = Config::parse(GOOD, Path::new("/etc/sidecar")).unwrap();
        assert_eq!(c.identity.cert, Path::new("/etc/sidecar/certs/web/svid.pem"));
        assert_eq!(c.identity.key, Path::new("/etc/sidecar/certs/web/svid_key.pem"));
        assert_eq!(c.policy, Path::new("/etc/sidecar/policy.yaml"));
        assert_eq!(c.inbound[0].name.as_str(), "api");
        assert_eq!(c.outbound[0].server_id.as_str(), "spiffe://example.org/ns/pay/sa/payments");
        assert_eq!(c.timeouts.handshake, Duration::from_secs(10));
        assert_eq!(c.limits.max_connections, 10_000);
    }

    #[test]
    fn durations_take_the_spec_units() {
        for (text, ms) in [("10s", 10_000), ("500ms", 500), ("2m", 120_000), ("1h", 3_600_000), ("1m30s", 90_000)] {
            assert_eq!(parse_duration(text).unwrap(), Duration::from_millis(ms), "{text}");
        }
        for text in ["", "10", "s", "2days", "1 h", "10sec", "-1s", "1.5s"] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn explicit_identity_paths() {
        let text = GOOD.replace("  dir: ./certs/web", "  cert: tls.crt\n  key: tls.key\n  bundle: ca.crt");
        let c = Config::parse(&text, Path::new("/s")).unwrap();
        assert_eq!(c.identity.dir, None);
        assert_eq!(c.identity.bundle, Path::new("/s/ca.crt"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (GOOD.replace("limits:", "limitz:"), "limitz"),
            (GOOD.replace("handshake: 10s", "handshake: 10 parsecs"), "10 parsecs"),
            (GOOD.replace("handshake: 10s", "handshake: 2days"), "2days"),
            (GOOD.replace("handshake: 10s", "handshake: 10"), "\"10\""),
            (GOOD.replace("forward: 127.0.0.1:8080", "forward: 127.0.0.1"), "inbound[0].forward"),
            (GOOD.replace("forward: 127.0.0.1:8080", "forward: 10.1.1.1:80"), "loopback"),
            (GOOD.replace("listen: 127.0.0.1:15001", "listen: 0.0.0.0:15001"), "outbound[0].listen"),
            (GOOD.replace("name: payments", "name: api"), "unique"),
            (GOOD.replace("sa/payments", "sa/payments/"), "trailing"),
            (GOOD.replace("  dir: ./certs/web", "  cert: a.pem"), "identity"),
            (GOOD.replace("max_connections: 10000", "max_connections: 0"), "max_connections"),
            (GOOD.replace("max_connections: 10000", "max_connections: 18446744073709551615"), "max_connections"),
        ];
        for (text, needle) in cases {
            let e = Config::parse(&text, Path::new("/")).expect_err(needle);
            assert!(e.contains(needle), "{e:?} should mention {needle:?}");
            assert!(!e.contains('\n'), "{e:?} should be one line");
        }
    }
}
