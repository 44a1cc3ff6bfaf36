//! Continues a stored thread over a private `codex app-server`.
//!
//! ```text
//! cargo run -p codex-asp --example resume -- [--cd DIR] [--thread THREAD_ID] PROMPT
//! ```
//!
//! Without `--thread`, resumes the most recently updated thread whose working directory is
//! `--cd` (default: the current directory), found with `thread/list`. Uses the codex of the
//! environment (`CODEX_BIN`, else `PATH`) and its `CODEX_HOME`: threads persist under
//! `$CODEX_HOME/sessions`, so a thread started by another app-server (or by `codex exec`)
//! can be resumed. Prints the thread id and the final message. Exits 0 only when the turn
//! completed.

use std::path::PathBuf;
use std::process::ExitCode;

use codex_asp::AspBackend;
use codex_asp::backend::AspBackendOptions;
use codex_core::{Backend, CodexBinary, TaskSpec, ThreadId};

const USAGE: &str = "usage: resume [--cd DIR] [--thread THREAD_ID] PROMPT";

#[tokio::main]
async fn main() -> ExitCode {
    let mut cd = None;
    let mut thread = None;
    let mut prompt = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cd" => cd = args.next().map(PathBuf::from),
            "--thread" => thread = args.next().map(ThreadId),
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
            _ => prompt.push(arg),
        }
    }
    if prompt.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match run(cd, thread, prompt.join(" ")).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("resume: {}", codex_core::ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(
    cd: Option<PathBuf>,
    thread: Option<ThreadId>,
    prompt: String,
) -> codex_core::Result<bool> {
    let cwd = match cd {
        Some(dir) => dir,
        None => std::env::current_dir()
            .map_err(|e| codex_core::Error::io("reading the current directory", e))?,
    };
    let codex = CodexBinary::discover().await?;
    let backend = AspBackend::spawn(codex, AspBackendOptions::default()).await?;
    let thread = match thread {
        Some(id) => id,
        None => match backend.latest_thread_for(&cwd).await? {
            Some(id) => {
                println!("latest thread of {}: {id}", cwd.display());
                id
            }
            None => {
                println!(
                    "no stored thread has the working directory {}",
                    cwd.display()
                );
                return Ok(false);
            }
        },
    };
    let spec = TaskSpec::new(prompt).cwd(&cwd);
    match backend.resume(&thread, spec).await?.wait().await {
        Ok(outcome) => {
            println!("thread: {}", outcome.thread_id);
            println!(
                "final message:\n{}",
                outcome.final_message.unwrap_or_default()
            );
            Ok(true)
        }
        Err(e) => {
            println!("the turn did not complete: {}", codex_core::ErrorChain(&e));
            Ok(false)
        }
    }
}
