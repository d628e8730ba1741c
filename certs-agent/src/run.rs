//! `certs-agent run`: keeps one workload's identity directory holding a valid, fresh X.509-SVID.
//!
//! - **Start**: refuses at once (one error line, exit 1 or 2) when the CA is unusable, the SPIFFE ID is invalid
//!   or outside the CA's trust domain, the TTL outlives the signing root, or the output directory is not
//!   writable. Then issues and publishes the first SVID; only then is `/ready` 200.
//! - **Renewal** at half the useful life, ±10 % jitter ([`crate::schedule`]). Every renewal makes a new key
//!   (generated here, written only to the output directory, mode 0600) and a new serial.
//! - **CA changes**: `roots.json` is polled every [`POLL_INTERVAL`] (a lock-free read; activation is a matter
//!   of time, so there may be no file event to wait for). When the bundle's sequence or the signing root
//!   differs from what the SVID in force was issued under, the agent re-issues at once, so a rotation or a
//!   retirement reaches the workload within about a poll interval, not at the next renewal.
//! - **Failures** (CA unreadable, disk full, ...): logged with their reason, counted as
//!   `certs_agent_renewals_total{result="error"}`, retried with backoff; the published SVID stays in place
//!   until a new one replaces it (it is never removed, even once expired). Once it has expired the workload
//!   is down, so retries come at least every second ([`schedule::retry_after`]), and the poll retries at once
//!   when a CA directory that could not be read comes back (`ca back`).
//! - **Never publish a bad certificate**: each SVID is checked as a peer would check it, and against its key and
//!   bundle, before publication ([`IssuedSvid::verify`]).
//! - **Leaves never outlive their root**: when the signing root has less life left than `--ttl`, leaves end
//!   with the root, and each such issuance logs a warning (rotate the CA).
//! - **Log**: each publication logs `published` with its `reason`: `start`, `renewal` (half-life), `retry`
//!   (after a failure), `ca changed` (new bundle or signing root) or `ca back` (the CA directory is readable
//!   again while no valid SVID is published).
//! - **Signals**: SIGTERM/SIGINT stop the agent after any publication in progress, leaving the published SVID
//!   in place; exit 0. SIGKILL at any instant leaves either the previous or the new publication
//!   ([`crate::publish`]) and a consistent CA directory ([`crate::ca`]).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use policy::SpiffeId;
use time::OffsetDateTime;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::{
    duration::human,
    issuer::{IssueError, IssuedSvid, Issuer, TtlBeyondCa},
    metrics::{AgentMetrics, AgentState, Outcome, Readiness},
    publish::{self, PublishError},
    schedule,
    store::{self, CaStore},
    validity::{self, rfc3339},
};

/// How often the CA directory is checked for a new bundle or a new signing root.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub ca_dir: PathBuf,
    pub id: SpiffeId,
    pub out: PathBuf,
    pub ttl: Duration,
    pub retry_max: Duration,
    pub metrics: Option<SocketAddr>,
    /// Test hook: re-issue and publish back to back instead of at half-life (crash-consistency tests).
    pub churn: bool,
}

/// Why `run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("--metrics {addr}: cannot listen: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up {0}")]
    Setup(String),
}

impl StartError {
    /// Whether the error is in the command line (exit status 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, StartError::Issue(e) if e.is_usage())
    }
}

/// Why one renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the renewal task failed: {0}")]
    Task(String),
}

/// Checks everything `run` needs before it issues anything, and returns the parsed SPIFFE ID: the CA in
/// `ca_dir` loads, `id_text` is a SPIFFE ID it issues for, `ttl` fits in the signing root's remaining life, and
/// `out` is writable.
pub fn preflight(ca_dir: &Path, id_text: &str, ttl: Duration, out: &Path) -> Result<SpiffeId, StartError> {
    let now = OffsetDateTime::now_utc();
    let issuer = Issuer::new(CaStore::open(ca_dir).map_err(IssueError::from)?.snapshot(now).map_err(IssueError::from)?);
    let id = issuer.workload_id(id_text)?;
    issuer.check_ttl(ttl, now)?;
    publish::check_writable(out)?;
    Ok(id)
}

/// One issuance and publication, under the CA lock for the issuance only. Blocking.
pub fn renew_once(config: &RunConfig, now: OffsetDateTime, beyond_ca: TtlBeyondCa) -> Result<IssuedSvid, RenewError> {
    let svid =
        CaStore::open(&config.ca_dir).map_err(IssueError::from)?.issue(&config.id, config.ttl, now, beyond_ca)?;
    svid.verify(OffsetDateTime::now_utc())?;
    let published = publish::publish(&config.out, &svid.payload())?;
    for e in &published.cleanup_errors {
        warn!(error = %e, "cannot remove an old version directory; the next publication retries");
    }
    Ok(svid)
}

/// The SVID in force.
#[derive(Debug, Clone)]
struct InForce {
    not_after: OffsetDateTime,
    /// (bundle sequence, signing root) it was issued under.
    issued_under: (u64, Option<String>),
}

/// The renewal loop. Returns the exit status once stopped by a signal.
pub async fn run(config: RunConfig) -> Result<u8, StartError> {
    let metrics = AgentMetrics::new().map_err(|e| StartError::Setup(format!("metrics: {e}")))?;
    let state = Arc::new(AgentState { metrics, readiness: Readiness::default() });
    let mut term = signal(SignalKind::terminate()).map_err(|e| StartError::Setup(format!("SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| StartError::Setup(format!("SIGINT handler: {e}")))?;
    if let Some(addr) = config.metrics {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Metrics { addr, source })?;
        let bound = listener.local_addr().map_err(|source| StartError::Metrics { addr, source })?;
        info!(addr = %bound, "metrics listening");
        tokio::spawn(crate::metrics::serve(listener, state.clone()));
    }
    info!(id = %config.id, out = %config.out.display(), ca_dir = %config.ca_dir.display(), ttl = %human(config.ttl), "starting");

    let (first, mut next) = match attempt(&config, &state, TtlBeyondCa::Refuse, "start").await {
        Ok(done) => done,
        Err(RenewError::Issue(e)) => return Err(StartError::Issue(e)),
        Err(RenewError::Publish(e)) => return Err(StartError::Publish(e)),
        Err(e) => return Err(StartError::Setup(e.to_string())),
    };
    let mut current = InForce::of(&first);
    let mut failures: u32 = 0;
    let mut ca = CaWatch { reacted_to: current.issued_under.clone(), readable: true };
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let reason = tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => if failures == 0 { "renewal" } else { "retry" },
            _ = poll.tick() => match ca.poll(&config.ca_dir, &current, failures > 0, OffsetDateTime::now_utc()) {
                Some(reason) => reason,
                None => continue,
            },
            _ = term.recv() => break stop("SIGTERM"),
            _ = int.recv() => break stop("SIGINT"),
        };
        match attempt(&config, &state, TtlBeyondCa::Clamp, reason).await {
            Ok((svid, renew_at)) => {
                failures = 0;
                current = InForce::of(&svid);
                ca.reacted_to = current.issued_under.clone();
                next = renew_at;
            }
            Err(e) => {
                let left = validity::remaining(OffsetDateTime::now_utc(), current.not_after);
                let wait = schedule::retry_after(failures, config.retry_max, left, schedule::jitter_sample());
                failures += 1;
                warn!(
                    error = %e,
                    reason,
                    attempt = failures,
                    retry_in_ms = wait.as_millis() as u64,
                    svid_expires_in_ms = left.as_millis() as u64,
                    "renewal failed; the published SVID stays in place"
                );
                next = Instant::now() + wait;
            }
        }
    }
}

/// What the poll of the CA directory acts on.
#[derive(Debug)]
struct CaWatch {
    /// The last CA state reacted to: a change is acted on once, not on every poll while renewals fail.
    reacted_to: (u64, Option<String>),
    /// Whether the last poll could read `roots.json`.
    readable: bool,
}

impl CaWatch {
    /// Looks at the CA directory; returns why to issue now, if at all: the bundle or the signing root changed
    /// since `current` was issued, or renewals are `failing` with no valid SVID published and the CA has just
    /// become readable again (the next retry may be up to a second away; the workload is down meanwhile).
    fn poll(&mut self, ca_dir: &Path, current: &InForce, failing: bool, now: OffsetDateTime) -> Option<&'static str> {
        let Ok(seen) = store::peek(ca_dir, now) else {
            self.readable = false;
            return None;
        };
        let came_back = !std::mem::replace(&mut self.readable, true);
        if seen != self.reacted_to {
            self.reacted_to = seen;
            if self.reacted_to != current.issued_under {
                return Some("ca changed");
            }
        }
        (came_back && failing && current.not_after <= now).then_some("ca back")
    }
}

fn stop(signal: &str) -> Result<u8, StartError> {
    info!(signal, "stopping; the published SVID stays in place");
    Ok(0)
}

impl InForce {
    fn of(svid: &IssuedSvid) -> Self {
        InForce { not_after: svid.not_after, issued_under: (svid.bundle_sequence, Some(svid.signing_root.to_hex())) }
    }
}

/// Issues and publishes once (off the async runtime), records the outcome, and returns the new SVID with the
/// instant to renew it.
async fn attempt(
    config: &RunConfig,
    state: &AgentState,
    beyond_ca: TtlBeyondCa,
    reason: &str,
) -> Result<(IssuedSvid, Instant), RenewError> {
    let started = Instant::now();
    let now = OffsetDateTime::now_utc();
    let job = config.clone();
    let result = tokio::task::spawn_blocking(move || renew_once(&job, now, beyond_ca))
        .await
        .unwrap_or_else(|e| Err(RenewError::Task(e.to_string())));
    let svid = match result {
        Ok(svid) => svid,
        Err(e) => {
            state.metrics.renewal(Outcome::Error);
            return Err(e);
        }
    };
    state.metrics.renewal(Outcome::Ok);
    let published_at = OffsetDateTime::now_utc();
    let roots = bundle_roots(&svid);
    state.metrics.published(svid.not_after, svid.signing_root_not_after, roots, published_at);
    state.readiness.published(svid.not_after);
    let renew_in =
        if config.churn { Duration::ZERO } else { schedule::renew_after(svid.lifetime(), schedule::jitter_sample()) };
    if svid.clamped {
        warn!(
            root = %svid.signing_root,
            root_not_after = %rfc3339(svid.signing_root_not_after),
            ttl = %human(config.ttl),
            "the signing root expires sooner than --ttl: this SVID ends with it; rotate the CA"
        );
    }
    info!(
        reason,
        serial = %svid.serial,
        not_after = %rfc3339(svid.not_after),
        lifetime_ms = svid.lifetime().as_millis() as u64,
        renew_in_ms = renew_in.as_millis() as u64,
        root = %svid.signing_root,
        bundle_roots = roots,
        bundle_sequence = svid.bundle_sequence,
        "published"
    );
    Ok((svid, started + renew_in))
}

fn bundle_roots(svid: &IssuedSvid) -> usize {
    crate::pem::certificates(svid.bundle_pem.as_bytes()).map(|r| r.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::Ca;
    use policy::TrustDomain;

    #[test]
    fn the_poll_retries_when_the_ca_comes_back_only_while_no_valid_svid_is_published() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, away) = (tmp.path().join("ca"), tmp.path().join("away"));
        let now = OffsetDateTime::now_utc();
        let td = TrustDomain::parse("example.org").unwrap();
        let ca = Ca::init(&dir, &td, Duration::from_secs(3600), now).unwrap();
        let issued_under = (ca.sequence(), Some(ca.serial().to_hex()));
        let expired = InForce { not_after: now - time::Duration::SECOND, issued_under: issued_under.clone() };
        let valid = InForce { not_after: now + time::Duration::HOUR, ..expired.clone() };
        let mut watch = CaWatch { reacted_to: issued_under, readable: true };
        let outage = |watch: &mut CaWatch| {
            std::fs::rename(&dir, &away).unwrap();
            assert_eq!(watch.poll(&dir, &expired, true, now), None);
            assert!(!watch.readable);
            std::fs::rename(&away, &dir).unwrap();
        };

        outage(&mut watch);
        assert_eq!(watch.poll(&dir, &expired, true, now), Some("ca back"));
        assert_eq!(watch.poll(&dir, &expired, true, now), None, "once per outage");
        outage(&mut watch);
        assert_eq!(watch.poll(&dir, &valid, true, now), None, "a valid SVID keeps the backoff");
        outage(&mut watch);
        assert_eq!(watch.poll(&dir, &expired, false, now), None, "nothing is failing");
    }
}
