//! What every benchmark tool's `main` shares: one way to report a failure and exit.

use std::process::ExitCode;

/// 0 when `result` is `Ok`; otherwise prints `TOOL: message` on stderr and returns 1 (clap exits 2 on usage
/// errors before this).
pub fn exit_status(tool: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{tool}: {message}");
            ExitCode::FAILURE
        }
    }
}
