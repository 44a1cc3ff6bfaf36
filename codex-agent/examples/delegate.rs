//! Delegate one task to Codex and print the verified outcome, or why Codex did not run.
//!
//! ```text
//! cargo run -p codex-agent --example delegate -- [--write] [--cwd DIR] [--background] \
//!     [--resume-last] [--intent fix|diagnose|review|research|free] [--timeout SECS] PROMPT
//! ```
//!
//! Uses the codex of the environment (`CODEX_BIN`, else `codex` on `PATH`) with its
//! `CODEX_HOME`. Exits non-zero when the delegation ends in an error.
//!
//! The backends offered are listed in [`available_backends`], best first: the running broker's
//! app-server if there is one, else a private app-server, then `codex exec`. The delegate
//! picks among them per request (exec only when no approvals are needed, or when no
//! app-server could be reached) and the outcome names the one that ran.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use codex_agent::prompt::Intent;
use codex_agent::{Delegate, DelegateRequest, Delegation, Verified};
use codex_asp::AspBackend;
use codex_asp::backend::AspBackendOptions;
use codex_asp::broker::{self, BrokerOptions};
use codex_asp::protocol::InitializeParams;
use codex_cli_backend::CliBackend;
use codex_core::{AuthContext, Backend, BackendKind, CodexBinary};

/// The client name this example gives the app-server.
const CLIENT_NAME: &str = "codex-agent-delegate-example";

/// Delegate a task to Codex with proof of execution.
#[derive(Debug, Parser)]
struct Args {
    /// Let Codex write in the workspace (sandbox workspace-write).
    #[arg(long)]
    write: bool,
    /// The workspace Codex runs in (default: the current directory).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Run as a background job: print its id at once, follow its phases, then the outcome.
    #[arg(long)]
    background: bool,
    /// Continue the latest finished task thread of this workspace.
    #[arg(long)]
    resume_last: bool,
    /// What the task is for (picks the prompt recipe).
    #[arg(long, default_value = "fix")]
    intent: Intent,
    /// Stop Codex after this many seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Print the rendered prompt before running.
    #[arg(long)]
    show_prompt: bool,
    /// The task.
    #[arg(required = true, num_args = 1..)]
    prompt: Vec<String>,
}

/// The backends offered, best first: the resident broker's shared app-server when one is
/// running (it is never started here), else a private `codex app-server` (killed when this
/// process ends), and always one-shot `codex exec` (a candidate only for requests that need
/// no approvals). A backend that cannot be reached is reported on stderr and left out.
async fn available_backends(codex: &CodexBinary) -> Vec<(BackendKind, Arc<dyn Backend>)> {
    let mut backends: Vec<(BackendKind, Arc<dyn Backend>)> = Vec::new();
    let broker_options =
        BrokerOptions::new()
            .codex(codex.path())
            .client_info(InitializeParams::new(
                CLIENT_NAME,
                env!("CARGO_PKG_VERSION"),
            ));
    match broker::connect(&broker_options).await {
        Ok(conn) => {
            let backend = AspBackend::from_connection_with(
                conn,
                AspBackendOptions::default().kind(BackendKind::Broker),
            );
            backends.push((BackendKind::Broker, Arc::new(backend)));
        }
        Err(broker::Error::NotRunning { .. }) => {}
        Err(e) => eprintln!(
            "warning: the running broker cannot be reached ({}); not using it",
            codex_core::ErrorChain(&e)
        ),
    }
    if backends.is_empty() {
        let options =
            AspBackendOptions::default().client_info(CLIENT_NAME, env!("CARGO_PKG_VERSION"));
        match AspBackend::spawn(codex.clone(), options).await {
            Ok(backend) => backends.push((BackendKind::AppServer, Arc::new(backend))),
            Err(e) => eprintln!(
                "warning: no private app-server ({}); only exec is offered",
                codex_core::ErrorChain(&e)
            ),
        }
    }
    backends.push((
        BackendKind::Exec,
        Arc::new(CliBackend::new(codex.clone())) as Arc<dyn Backend>,
    ));
    backends
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(verified) => {
            print_verified(&verified);
            ExitCode::SUCCESS
        }
        Err(err) => {
            // the error and each of its causes, once
            eprintln!("error: {}", codex_core::ErrorChain(&err));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> codex_agent::Result<Verified> {
    let codex = CodexBinary::discover().await?;
    let mut builder = Delegate::builder(codex.clone());
    for (kind, backend) in available_backends(&codex).await {
        builder = builder.backend(kind, backend);
    }
    // the configured model provider decides; "not logged in" only warns (codex may use a key
    // from its environment or refresh its session) and a rejected run says so with codex's text
    match codex.auth(&AuthContext::new()).await {
        Ok(auth) => {
            eprintln!("codex {}: {auth}", codex.version());
            builder = builder.auth(auth);
        }
        Err(e) => eprintln!("codex {}: sign-in unknown ({e})", codex.version()),
    }
    let delegate = builder.build();

    let mut request = DelegateRequest::new(args.prompt.join(" "))
        .intent(args.intent)
        .write(args.write)
        .background(args.background);
    if let Some(cwd) = args.cwd {
        request = request.cwd(cwd);
    }
    if args.resume_last {
        request = request.resume_last();
    }
    if let Some(secs) = args.timeout {
        request = request.timeout(Duration::from_secs(secs));
    }
    if args.show_prompt {
        eprintln!("--- prompt ---\n{}\n--------------", request.prompt());
    }
    let candidates = delegate.candidates(&request)?;
    eprintln!(
        "backends to try: {}",
        candidates
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );

    match delegate.delegate(request).await? {
        Delegation::Finished(verified) => Ok(*verified),
        Delegation::Background(job) => {
            println!("job: {}", job.id());
            println!("log: {}", job.log_path()?.display());
            let mut last = None;
            while !job.is_finished() {
                if let Ok(record) = job.record() {
                    let now = (record.status, record.phase);
                    if last != Some(now) {
                        eprintln!("job {}: {} ({:?})", job.id(), record.status, record.phase);
                        last = Some(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            job.wait().await
        }
        _ => Err(codex_agent::Error::NoBackend {
            reason: "unknown delegation kind".into(),
        }),
    }
}

fn print_verified(v: &Verified) {
    println!("backend: {}", v.backend());
    println!("codex version: {}", v.codex_version());
    println!("thread id: {}", v.thread_id());
    println!(
        "turn id: {}",
        v.turn_id().map_or_else(
            || "(not reported by this backend)".to_owned(),
            ToString::to_string
        )
    );
    if let Some(job) = v.job_id() {
        println!("job: {job}");
    }
    for file in v.touched_files() {
        println!("touched: {}", file.display());
    }
    for (command, exit) in v.commands() {
        println!(
            "ran: {command} (exit {})",
            exit.map_or("?".to_owned(), |c| c.to_string())
        );
    }
    if let Some(usage) = v.usage() {
        println!(
            "usage: {} input ({} cached), {} output tokens",
            usage.input_tokens, usage.cached_input_tokens, usage.output_tokens
        );
    }
    println!("final message:\n{}", v.final_message().unwrap_or("(none)"));
}
