//! The admin server (SPEC §6): `/live`, `/ready`, `/metrics`, `/status`, `POST /shutdown`.
//!
//! It runs on its own thread and single-threaded runtime, so a slow scrape or a flood of admin requests
//! cannot add latency to the data path, and the data path under load cannot starve health checks.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, thread, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    addr::{ClientAddr, ListenAddr},
    state::Shared,
    status,
    transport::{BindError, Listener},
};

type Body = Full<Bytes>;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A running admin server.
pub struct AdminServer {
    /// The bound address (with the real port when the configuration said 0); None for a unix socket.
    pub addr: Option<SocketAddr>,
    stop: CancellationToken,
    stopped: tokio::sync::oneshot::Receiver<()>,
}

impl AdminServer {
    /// Binds `addr` and serves the admin API from a thread of its own. Returns once the listener is bound, or
    /// with the bind error.
    pub async fn spawn(addr: ListenAddr, shared: Arc<Shared>) -> Result<Self, BindError> {
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel();
        let stop = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| BindError::Io { addr: addr.to_string(), source })?;
        let text = addr.to_string();
        let stop_serving = stop.clone();
        thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match Listener::bind(&addr).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = bound_tx.send(Ok(listener.local_addr()));
                    serve(listener, shared, stop_serving).await;
                    let _ = stopped_tx.send(());
                });
            })
            .map_err(|source| BindError::Io { addr: text.clone(), source })?;
        let bound = bound_rx.await.unwrap_or_else(|_| {
            Err(BindError::Io { addr: text, source: std::io::Error::other("admin thread exited") })
        })?;
        Ok(Self { addr: bound, stop, stopped })
    }

    /// Stops accepting, lets responses in flight (such as the answer to `POST /shutdown`) finish, then
    /// returns; gives up after `within`.
    pub async fn stop(self, within: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(within, self.stopped).await;
    }
}

async fn serve(listener: Listener, shared: Arc<Shared>, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&req, client, &shared)) }
            });
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn route(req: &Request<Incoming>, client: ClientAddr, shared: &Shared) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n".into()),
        (&Method::GET, "/ready") => {
            let pending = shared.readiness.pending(&shared.identity, std::time::SystemTime::now());
            if pending.is_empty() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", pending.join(", ")))
            }
        }
        (&Method::GET, "/metrics") => match shared.render_metrics() {
            Ok(body) => response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body.into()),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render metrics: {e}\n")),
        },
        (&Method::GET, "/status") => {
            let body = serde_json::to_vec_pretty(&status::snapshot(shared)).unwrap_or_default();
            response(StatusCode::OK, "application/json", body.into())
        }
        (&Method::POST, "/shutdown") => {
            if !client.is_local() {
                return text(StatusCode::FORBIDDEN, "shutdown is only accepted from loopback\n".into());
            }
            if !shared.shutdown.is_cancelled() {
                info!(client = %client, "shutdown requested over the admin API");
                shared.shutdown.cancel();
            }
            text(StatusCode::ACCEPTED, "draining\n".into())
        }
        (_, "/live" | "/ready" | "/metrics" | "/status" | "/shutdown") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into())
        }
        _ => text(StatusCode::NOT_FOUND, "not found; try /live, /ready, /metrics, /status\n".into()),
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
