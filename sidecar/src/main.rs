//! `sidecar run --config FILE` and `sidecar policy check FILE`.
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use policy::{Policy, SpiffeId};

#[derive(Parser)]
#[command(name = "sidecar", version, about = "mTLS sidecar proxy with SPIFFE identity and caller allowlists")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// The YAML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Log format on stderr. The level comes from RUST_LOG (default: info).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// How identity and policy file changes are noticed: inotify (falling back to polling when no watcher
        /// can be created), or polling every second, for filesystems that send no inotify events (NFS, FUSE).
        #[arg(long, value_enum, default_value_t = FileWatchArg::Auto)]
        file_watch: FileWatchArg,
    },
    /// Policy file tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file (exit 0 valid, 1 invalid); with --peer, print the decision and its rule (exit 2:
    /// --peer is not a SPIFFE ID).
    Check {
        file: PathBuf,
        /// A caller's SPIFFE ID to decide on.
        #[arg(long)]
        peer: Option<String>,
        /// The inbound listener the caller connects to (rules scoped to other listeners do not apply).
        #[arg(long, requires = "peer")]
        listener: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FileWatchArg {
    Auto,
    Poll,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format, file_watch } => {
            let file_watch = match file_watch {
                FileWatchArg::Auto => sidecar::watch::FileWatch::Auto,
                FileWatchArg::Poll => sidecar::watch::FileWatch::Poll,
            };
            run(config, log_format, file_watch)
        }
        Command::Policy { command: PolicyCommand::Check { file, peer, listener } } => {
            policy_check(&file, peer.as_deref(), listener.as_deref())
        }
    }
}

fn run(config: PathBuf, format: LogFormat, file_watch: sidecar::watch::FileWatch) -> ExitCode {
    init_logging(format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sidecar: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sidecar::app::run(&config, file_watch)) {
        Ok(code) => code,
        Err(e) => {
            // One line, in the format the operator chose.
            match format {
                LogFormat::Json => tracing::error!(error = %e, "cannot start"),
                LogFormat::Text => eprintln!("sidecar: error: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn policy_check(file: &std::path::Path, peer: Option<&str>, listener: Option<&str>) -> ExitCode {
    let policy = match Policy::load(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}: ok: {} rule(s), mode {}, on_revoke {}, sha256 {}",
        file.display(),
        policy.rule_names().count(),
        format!("{:?}", policy.mode()).to_lowercase(),
        format!("{:?}", policy.on_revoke()).to_lowercase(),
        policy.sha256()
    );
    let Some(peer) = peer else { return ExitCode::SUCCESS };
    let peer = match SpiffeId::parse(peer) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("--peer {peer:?}: not a SPIFFE ID: {e}");
            return ExitCode::from(2);
        }
    };
    let (name, note) = match listener {
        Some(l) => (l, String::new()),
        None => ("", " (no --listener given: rules scoped to listeners were not considered)".to_string()),
    };
    let d = policy.decide(name, &peer);
    println!("{}: {} by rule {:?}{note}", peer, d.verdict.as_str(), d.rule);
    ExitCode::SUCCESS
}
