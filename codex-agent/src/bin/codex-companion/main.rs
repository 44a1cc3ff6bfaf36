//! `codex-companion`: drive the OpenAI Codex CLI from another tool — tasks, native and
//! adversarial reviews, background jobs with status, results and cancellation — through the
//! resident `codex-broker` (one warm app-server shared by every client) or a private
//! app-server.
//!
//! Delegation, job records and proof of execution come from [`codex_agent`]; the modules
//! here are the binary's own: the command line and commands, background workers, reviews
//! (native and adversarial), progress lines, rendering, the broker connection, and typed
//! errors that know their exit code.

/// Printing that never panics: a reader that went away (`codex-companion status | head`)
/// closes the pipe, and a closed stdout or stderr must not abort a command whose job record
/// is already safe. Write errors are ignored.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
/// [`outln!`] without the newline.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
/// [`outln!`] for stderr.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
/// [`out!`] for stderr.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod adversarial;
mod cli;
mod commands;
mod connect;
mod error;
#[cfg(test)]
mod fuzz;
mod progress;
mod render;
mod review;
mod worker;

use std::process::ExitCode;

use clap::Parser;
use error::CompanionError;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("codex-companion: error: cannot start the async runtime: {e}");
            return ExitCode::from(error::ExitCode::Failure.code());
        }
    };
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => report(&err, json),
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    ExitCode::from(code.code())
}

/// Prints an error (on stderr; with `--json` also as a JSON document on stdout) and returns
/// its exit code.
fn report(err: &anyhow::Error, json: bool) -> error::ExitCode {
    let code = exit_code_of(err);
    // the error and each cause, once; codex's messages may quote its stderr: no secret
    // reaches the terminal or a log
    let message = codex_agent::jobs::redact(&codex_core::error_chain(err.as_ref()));
    errln!("codex-companion: error: {message}");
    if json {
        let doc = serde_json::json!({
            "ok": false,
            "error": message,
            "exit_code": code.code(),
        });
        outln!("{doc}");
    }
    code
}

/// The exit code of an error: the first [`CompanionError`] in its chain decides; anything
/// else is a failure (1).
fn exit_code_of(err: &anyhow::Error) -> error::ExitCode {
    err.chain()
        .find_map(|e| e.downcast_ref::<CompanionError>())
        .map_or(error::ExitCode::Failure, CompanionError::exit_code)
}
