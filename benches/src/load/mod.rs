//! `handshake-load`: new mutual TLS connections against any TLS server, as fast as a closed loop of workers
//! can make them or at a fixed open-loop rate, counted by outcome and timed with an HDR histogram.
//!
//! One module per concern: [`cli`] (the command line) -> [`config`] (the checked plan) -> [`tls`] (the one
//! shared `ClientConfig`) -> [`scheduler`] (when each handshake starts) -> [`conn`] (one connection's life)
//! -> [`tally`] (the counting task) -> [`report`] (text or JSON); [`reason`] classifies failures and [`cpu`]
//! reads CPU time from `/proc`.

pub mod cli;
pub mod config;
pub mod conn;
pub mod cpu;
pub mod reason;
pub mod report;
pub mod scheduler;
pub mod tally;
pub mod tls;

use std::{sync::Arc, time::Instant};

use tokio::{runtime::Handle, sync::mpsc};

use self::{
    config::{Config, Load},
    conn::Connector,
    cpu::{CpuError, CpuTime},
    report::{Measured, Report},
    scheduler::Budget,
    tally::Tally,
    tls::{ClientTls, TlsSetupError},
};

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("CPU time: {0}")]
    Cpu(#[from] CpuError),
    #[error("latency histogram: {0:?}")]
    Histogram(hdrhistogram::CreationError),
    #[error("starting the scheduler thread: {0}")]
    Scheduler(std::io::Error),
}

/// Runs `config` on the current multi-thread runtime and returns the report and the raw tally (whose
/// histogram `--histogram-out` writes). With `progress`, a status line is redrawn on stderr each second
/// when stderr is a terminal. Ctrl-C stops starting handshakes; the ones in flight finish and are reported.
pub async fn run(config: &Config, progress: bool) -> Result<(Report, Tally), RunError> {
    let tls = ClientTls::build(&config.tls, &config.host)?;
    let connector = Arc::new(Connector::new(config.addr, &tls, config.timeouts, config.confirm));
    let tally = Tally::new().map_err(RunError::Histogram)?;
    let (events, received) = mpsc::unbounded_channel();

    let server_before = server_cpu(&config.server_pids)?;
    let client_before = CpuTime::of_self()?;
    let start = Instant::now();
    let budget = Arc::new(Budget::new(config.stop, start));
    let interrupt = tokio::spawn(stop_on_ctrl_c(budget.clone()));
    match config.load {
        Load::Closed { concurrency } => scheduler::closed_loop(connector, concurrency, budget, events),
        Load::Open(plan) => {
            // The thread ends by itself once the budget is spent; nothing needs to join it.
            scheduler::open_loop(plan, connector, budget, events, Handle::current()).map_err(RunError::Scheduler)?;
        }
    }
    // Every connection task and the scheduler hold a sender: this returns when the last one is done.
    let tally = tally::collect(received, tally, progress).await;
    let elapsed = start.elapsed();
    let client_cpu = CpuTime::of_self()? - client_before;
    let server_cpu = match (server_cpu(&config.server_pids)?, server_before) {
        (Some(after), Some(before)) => Some(after - before),
        _ => None,
    };
    interrupt.abort();

    let report = Report::new(config, &tally, &Measured { elapsed, client_cpu, server_cpu });
    Ok((report, tally))
}

fn server_cpu(pids: &[u32]) -> Result<Option<CpuTime>, CpuError> {
    if pids.is_empty() { Ok(None) } else { CpuTime::of_pids(pids).map(Some) }
}

/// The first Ctrl-C ends the run gracefully; a second one quits at once.
async fn stop_on_ctrl_c(budget: Arc<Budget>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        budget.cancel();
        eprintln!("\ninterrupted: finishing the handshakes in flight (Ctrl-C again to quit now)");
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    }
}
