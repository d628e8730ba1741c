//! The `handshake-load` command line (SPEC §1), as the user types it. [`super::config`] turns it into the plan
//! a run follows.

use std::{path::PathBuf, time::Duration};

use clap::{ArgGroup, Parser};

use super::tls::KeyExchange;

/// Opens TLS connections with full (or resumed) mutual TLS 1.3 handshakes against any TLS server and reports
/// handshakes/s, errors by reason, latency percentiles and the CPU it took.
///
/// Closed loop by default (`--concurrency` workers, back to back); `--rate` makes it open-loop, with latency
/// measured from each handshake's scheduled start. See benches/README.md for how to read the results.
#[derive(Debug, Clone, Parser)]
#[command(name = "handshake-load", version, group(ArgGroup::new("verify").required(true).args(["server_id", "server_name"])))]
pub struct Args {
    /// The TLS server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: String,

    /// Client certificate chain, PEM, leaf first. Without --cert/--key no client certificate is offered
    /// (to see how a server refuses that).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key of --cert, PEM (PKCS#8, SEC1 or PKCS#1).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Trusted roots for the server's certificate, PEM (a SPIFFE trust bundle, or any CA).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,

    /// Require the server to present an X.509-SVID with exactly this SPIFFE ID (its trust domain picks the
    /// bundle in --ca). No SNI is sent.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub server_id: Option<String>,

    /// Instead of --server-id: verify the server by WebPKI rules for this DNS name (or IP), and send it as
    /// SNI. Works against any TLS server.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// Closed loop: this many connections in flight, each started when the previous one ended.
    #[arg(long, value_name = "N", conflicts_with = "rate", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,

    /// Open loop: start handshakes at this fixed rate (per second; "500" or "500/s").
    #[arg(long, value_name = "R/s", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Open loop: at most this many handshakes in flight; one due beyond that is not started and is
    /// counted as dropped.
    #[arg(long, value_name = "N", requires = "rate", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight: u32,

    /// Run this long, e.g. 30s or 2m [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "handshakes")]
    pub duration: Option<Duration>,

    /// Start exactly this many handshakes, then stop.
    #[arg(long, value_name = "N")]
    pub handshakes: Option<u64>,

    /// Offer TLS 1.3 session tickets from earlier connections (resumed handshakes). The sidecar disables
    /// resumption by design, so against it every handshake stays full. Tickets arrive after the handshake,
    /// so this needs the confirmation read (not --no-confirm).
    #[arg(long, conflicts_with = "no_confirm")]
    pub resume: bool,

    /// After each handshake, send BYTES bytes and read the reply (an echo server: the same count back).
    /// Also makes a refusal after the handshake (a policy deny) visible as `no_reply`.
    #[arg(long, value_name = "BYTES", conflicts_with = "no_confirm")]
    pub send: Option<usize>,

    /// Count at handshake completion and drop the connection, like `openssl s_time -new`. Fastest, but a
    /// server that refuses the client certificate is then counted as a success.
    #[arg(long)]
    pub no_confirm: bool,

    /// Key exchange group offered first.
    #[arg(long, value_enum, default_value_t = KeyExchange::X25519)]
    pub kx: KeyExchange,

    /// Allow TLS 1.2 too (TLS 1.3 only by default).
    #[arg(long)]
    pub tls12: bool,

    /// Time limit for the TCP connect.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5s")]
    pub connect_timeout: Duration,

    /// Time limit for the TLS handshake, and again for the confirmation exchange after it.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    pub handshake_timeout: Duration,

    /// Runtime worker threads [default: the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,

    /// Also report the CPU time these server processes used during the run, and handshakes per server
    /// CPU-second (repeat for a server with several processes).
    #[arg(long, value_name = "PID")]
    pub server_pid: Vec<u32>,

    /// Print one JSON object (schema in benches/README.md) instead of the text report.
    #[arg(long)]
    pub json: bool,

    /// Write the latency distribution (HdrHistogram percentile text, ms) to FILE; draw it with
    /// `latency-plot FILE --out latency.svg`.
    #[arg(long, value_name = "FILE")]
    pub histogram_out: Option<PathBuf>,
}

/// `500`, `500/s` or `2.5/s`: a positive, finite rate per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a positive rate per second (e.g. 500 or 500/s)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["handshake-load", "--target", "127.0.0.1:1", "--ca", "ca.pem"];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn one_way_to_verify_the_server_is_required() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--server-id", "spiffe://td/x", "--server-name", "x"]).is_err());
        assert!(parse(&["--server-name", "localhost"]).is_ok());
    }

    #[test]
    fn rates_take_an_optional_per_second_suffix() {
        assert_eq!(parse_rate("500/s"), Ok(500.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn contradictory_flags_are_refused() {
        let id = ["--server-id", "spiffe://td/x"];
        let with = |more: &[&'static str]| parse(&[id.as_slice(), more].concat());
        assert!(with(&["--rate", "10", "--concurrency", "2"]).is_err());
        assert!(with(&["--duration", "1s", "--handshakes", "5"]).is_err());
        assert!(with(&["--cert", "c.pem"]).is_err());
        assert!(with(&["--send", "10", "--no-confirm"]).is_err());
        assert!(with(&["--resume", "--no-confirm"]).is_err());
        assert!(with(&["--max-inflight", "5"]).is_err());
        assert!(with(&["--rate", "100/s", "--max-inflight", "5", "--handshakes", "10"]).is_ok());
    }
}
