//! `certs-agent run --metrics ADDR`: the metrics registry and a small HTTP server with `/metrics` (Prometheus
//! text), `/ready` (200 once an SVID is published and while it is valid, else 503 with the reason) and
//! `/live` (200 while the process runs).
//!
//! | metric | |
//! |---|---|
//! | `certs_agent_svid_expiry_timestamp_seconds` | notAfter of the SVID in force (SPEC §7) |
//! | `certs_agent_renewals_total{result}` | issuance + publication attempts, the first included; `ok` or `error` (SPEC §7) |
//! | `certs_agent_last_renewal_success_timestamp_seconds` | when the SVID in force was published |
//! | `certs_agent_signing_root_expiry_timestamp_seconds` | notAfter of the root that signed the SVID in force |
//! | `certs_agent_trust_anchors` | roots in the published bundle |
//!
//! Plus `process_*`. Alert on `certs_agent_svid_expiry_timestamp_seconds - time() < 600` and on
//! `increase(certs_agent_renewals_total{result="error"}[10m]) > 0`.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, Gauge, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tracing::warn;

use crate::validity::{self, rfc3339};

/// The outcome label of `certs_agent_renewals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

/// Every metric of the agent.
pub struct AgentMetrics {
    registry: Registry,
    svid_expiry: Gauge,
    renewals: IntCounterVec,
    last_success: Gauge,
    signing_root_expiry: Gauge,
    trust_anchors: IntGauge,
}

impl AgentMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let svid_expiry = Gauge::new(
            "certs_agent_svid_expiry_timestamp_seconds",
            "notAfter of the published SVID, in seconds since the Unix epoch",
        )?;
        let renewals = IntCounterVec::new(
            Opts::new(
                "certs_agent_renewals_total",
                "Attempts to issue and publish an SVID (the first included), by result",
            ),
            &["result"],
        )?;
        let last_success = Gauge::new(
            "certs_agent_last_renewal_success_timestamp_seconds",
            "When the published SVID was published, in seconds since the Unix epoch",
        )?;
        let signing_root_expiry = Gauge::new(
            "certs_agent_signing_root_expiry_timestamp_seconds",
            "notAfter of the root that signed the published SVID, in seconds since the Unix epoch",
        )?;
        let trust_anchors = IntGauge::new("certs_agent_trust_anchors", "Roots in the published trust bundle")?;
        registry.register(Box::new(svid_expiry.clone()))?;
        registry.register(Box::new(renewals.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(signing_root_expiry.clone()))?;
        registry.register(Box::new(trust_anchors.clone()))?;
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        // Both series exist from the start, so `increase()` sees the first error.
        for outcome in [Outcome::Ok, Outcome::Error] {
            renewals.with_label_values(&[outcome.as_str()]);
        }
        Ok(AgentMetrics { registry, svid_expiry, renewals, last_success, signing_root_expiry, trust_anchors })
    }

    pub fn renewal(&self, outcome: Outcome) {
        self.renewals.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Records a publication.
    pub fn published(
        &self,
        svid_not_after: OffsetDateTime,
        root_not_after: OffsetDateTime,
        roots: usize,
        now: OffsetDateTime,
    ) {
        self.svid_expiry.set(validity::unix_seconds_f64(svid_not_after));
        self.signing_root_expiry.set(validity::unix_seconds_f64(root_not_after));
        self.trust_anchors.set(i64::try_from(roots).unwrap_or(i64::MAX));
        self.last_success.set(validity::unix_seconds_f64(now));
    }

    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// `/ready`: an SVID published by this process and still valid.
#[derive(Debug, Default)]
pub struct Readiness {
    /// notAfter of the SVID in force.
    published: Mutex<Option<OffsetDateTime>>,
}

impl Readiness {
    pub fn published(&self, not_after: OffsetDateTime) {
        if let Ok(mut slot) = self.published.lock() {
            *slot = Some(not_after);
        }
    }

    /// None when ready, else why not.
    pub fn pending(&self, now: OffsetDateTime) -> Option<String> {
        match self.published.lock().ok().and_then(|slot| *slot) {
            None => Some("identity (no SVID published yet)".into()),
            Some(not_after) if not_after <= now => {
                Some(format!("identity (the published SVID expired at {}; renewal is failing)", rfc3339(not_after)))
            }
            Some(_) => None,
        }
    }
}

/// What the HTTP server reads.
pub struct AgentState {
    pub metrics: AgentMetrics,
    pub readiness: Readiness,
}

type Body = Full<Bytes>;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics`, `/ready` and `/live` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AgentState>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&req, &state)) }
            });
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn route(req: &Request<Incoming>, state: &AgentState) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n".into()),
        (&Method::GET, "/ready") => match state.readiness.pending(OffsetDateTime::now_utc()) {
            None => text(StatusCode::OK, "ready\n".into()),
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
        },
        (&Method::GET, "/metrics") => match state.metrics.render() {
            Ok(body) => response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body.into()),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render metrics: {e}\n")),
        },
        (_, "/live" | "/ready" | "/metrics") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into()),
        _ => text(StatusCode::NOT_FOUND, "not found; try /live, /ready, /metrics\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", Bytes::from(body))
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn ready_follows_publication_and_expiry() {
        let state = Arc::new(AgentState { metrics: AgentMetrics::new().unwrap(), readiness: Readiness::default() });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, state.clone()));

        let (status, body) = get(addr, "/ready").await;
        assert_eq!(status, 503);
        assert!(body.contains("identity (no SVID published yet)"), "{body}");
        assert_eq!(get(addr, "/live").await.0, 200);
        assert_eq!(get(addr, "/nope").await.0, 404);

        let now = OffsetDateTime::now_utc();
        state.readiness.published(now + time::Duration::hours(1));
        state.metrics.published(now + time::Duration::hours(1), now + time::Duration::days(1), 2, now);
        state.metrics.renewal(Outcome::Ok);
        state.metrics.renewal(Outcome::Error);
        assert_eq!(get(addr, "/ready").await.0, 200);
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(text.contains("certs_agent_renewals_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("certs_agent_renewals_total{result=\"error\"} 1"), "{text}");
        assert!(text.contains("certs_agent_trust_anchors 2"), "{text}");
        assert!(text.contains("certs_agent_svid_expiry_timestamp_seconds "), "{text}");

        state.readiness.published(now - time::Duration::seconds(1));
        let (status, body) = get(addr, "/ready").await;
        assert_eq!(status, 503);
        assert!(body.contains("expired"), "{body}");
        server.abort();
    }
}
