//! Runs one codex turn over a private `codex app-server` (stdio) and prints what happens.
//!
//! ```text
//! cargo run -p codex-asp --example turn -- [--cd DIR]
//!     [--approval-policy untrusted|on-request|never] [--on-approval accept|decline|cancel]
//!     [--resume THREAD_ID] [--timeout SECS] PROMPT
//! ```
//!
//! Uses the codex of the environment (`CODEX_BIN`, else `codex` on `PATH`) and its
//! `CODEX_HOME`. Prints the thread id, the streamed deltas as they arrive, each approval
//! request with the answer given (`--on-approval`, default `decline`), and the final message
//! last. `--resume` runs the turn on an existing thread. `--timeout` (default 600 s) bounds
//! the whole run, start-up included: it stops a turn that never ends (codex retries an
//! unreachable model provider forever) and an app-server that never answers `initialize`
//! (whose handshake gets at most 30 s of it). Exits 0 only when the turn completed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use codex_asp::AspBackend;
use codex_asp::approval::{ApprovalHandler, Decision, ServerReply, ServerRequestCtx};
use codex_asp::backend::AspBackendOptions;
use codex_asp::connection::DEFAULT_HANDSHAKE_TIMEOUT;
use codex_core::event::DeltaKind;
use codex_core::{ApprovalPolicy, Backend, CodexBinary, Event, TaskSpec, ThreadId};

/// `println!` that ignores a closed stdout (e.g. piped into `head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout, flushed so streamed deltas show at once.
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = write!(out, $($arg)*);
        let _ = out.flush();
    }};
}

const USAGE: &str = "usage: turn [--cd DIR] [--approval-policy untrusted|on-request|never] [--on-approval accept|decline|cancel] [--resume THREAD_ID] [--timeout SECS] PROMPT";

struct Options {
    cd: Option<PathBuf>,
    approval_policy: Option<ApprovalPolicy>,
    on_approval: Decision,
    resume: Option<String>,
    timeout: Duration,
    prompt: String,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        cd: None,
        approval_policy: None,
        on_approval: Decision::Decline,
        resume: None,
        timeout: Duration::from_secs(600),
        prompt: String::new(),
    };
    let mut prompt = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--cd" => opts.cd = Some(PathBuf::from(value("--cd")?)),
            "--approval-policy" => {
                opts.approval_policy = Some(
                    value("--approval-policy")?
                        .parse()
                        .map_err(|e: codex_core::Error| e.to_string())?,
                )
            }
            "--on-approval" => {
                opts.on_approval = match value("--on-approval")?.as_str() {
                    "accept" => Decision::Accept,
                    "decline" => Decision::Decline,
                    "cancel" => Decision::Cancel,
                    other => {
                        return Err(format!(
                            "--on-approval: unknown value {other:?}; expected accept, decline or cancel"
                        ));
                    }
                }
            }
            "--resume" => opts.resume = Some(value("--resume")?),
            "--timeout" => {
                let secs = value("--timeout")?;
                let secs: u64 = secs.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("--timeout: {secs:?} is not a positive number of seconds")
                })?;
                opts.timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            _ => prompt.push(arg),
        }
    }
    opts.prompt = prompt.join(" ");
    if opts.prompt.trim().is_empty() {
        return Err("the prompt is missing".into());
    }
    Ok(opts)
}

/// Answers every approval with one decision, printing the request and the answer.
struct PrintingHandler {
    decision: Decision,
}

#[async_trait::async_trait]
impl ApprovalHandler for PrintingHandler {
    async fn handle(&self, request: ServerRequestCtx) -> ServerReply {
        let params = request.params();
        let what = params
            .get("command")
            .and_then(|c| c.as_str())
            .or_else(|| params.get("reason").and_then(|r| r.as_str()))
            .unwrap_or_default();
        say!(
            "\n[approval] {} {} -> {:?}",
            request.method(),
            what,
            self.decision
        );
        self.decision.clone().into()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("turn: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(opts).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("turn: {}", codex_core::ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

/// What is left of `timeout` at `deadline`; a timeout error once nothing is left.
fn remaining(deadline: Instant, timeout: Duration) -> codex_core::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(codex_core::Error::Timeout {
            after: timeout,
            thread_id: None,
        });
    }
    Ok(left)
}

async fn run(opts: Options) -> codex_core::Result<bool> {
    // --timeout covers the whole run: finding codex, the handshake, the turn
    let deadline = Instant::now() + opts.timeout;
    let timed_out = || codex_core::Error::Timeout {
        after: opts.timeout,
        thread_id: None,
    };
    let codex = tokio::time::timeout_at(deadline.into(), CodexBinary::discover())
        .await
        .map_err(|_| timed_out())??;
    let options = AspBackendOptions::default()
        .client_info("codex-asp-turn-example", env!("CARGO_PKG_VERSION"))
        .approval_handler(PrintingHandler {
            decision: opts.on_approval.clone(),
        })
        .handshake_timeout(remaining(deadline, opts.timeout)?.min(DEFAULT_HANDSHAKE_TIMEOUT));
    let backend = AspBackend::spawn(codex, options).await?;

    let mut spec = TaskSpec::new(opts.prompt).timeout(remaining(deadline, opts.timeout)?);
    if let Some(dir) = opts.cd {
        spec = spec.cwd(dir);
    }
    if let Some(policy) = opts.approval_policy {
        spec = spec.approval(policy);
    }
    let mut run = match &opts.resume {
        Some(id) => backend.resume(&ThreadId::from(id.as_str()), spec).await?,
        None => backend.start(spec).await?,
    };

    let mut last_kind = None;
    while let Some(event) = run.next_event().await {
        match &event {
            Event::ThreadStarted { thread_id } => say!("thread: {thread_id}"),
            Event::Delta { kind, delta, .. } => {
                if last_kind != Some(*kind) {
                    let label = match kind {
                        DeltaKind::AgentMessage => "message",
                        DeltaKind::Reasoning => "reasoning",
                        DeltaKind::CommandOutput => "command output",
                        DeltaKind::FileChangeOutput => "patch output",
                        _ => "delta",
                    };
                    say_part!("\n[{label}] ");
                    last_kind = Some(*kind);
                }
                say_part!("{delta}");
                let _ = std::io::stdout().flush();
            }
            Event::ItemCompleted { item } => {
                last_kind = None;
                say!("\n[item] {} {}", item.details.kind_name(), item.id);
            }
            Event::Error { message } => say!("\n[error] {message}"),
            _ => {}
        }
    }
    match run.outcome().await {
        Ok(outcome) => {
            say!("\nthread: {}", outcome.thread_id);
            say!(
                "final message:\n{}",
                outcome.final_message.unwrap_or_default()
            );
            Ok(true)
        }
        Err(e) => {
            say!(
                "\nthe turn did not complete: {}",
                codex_core::ErrorChain(&e)
            );
            Ok(false)
        }
    }
}
