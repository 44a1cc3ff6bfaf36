//! Runs one codex turn over a private `codex app-server` (stdio) and prints what happens.
//!
//! ```text
//! cargo run -p codex-asp --example turn -- [--cd DIR]
//!     [--approval-policy untrusted|on-request|never] [--on-approval accept|decline|cancel]
//!     [--resume THREAD_ID] PROMPT
//! ```
//!
//! Uses the codex of the environment (`CODEX_BIN`, else `codex` on `PATH`) and its
//! `CODEX_HOME`. Prints the thread id, the streamed deltas as they arrive, each approval
//! request with the answer given (`--on-approval`, default `decline`), and the final message
//! last. `--resume` runs the turn on an existing thread. Exits 0 only when the turn
//! completed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use codex_asp::AspBackend;
use codex_asp::approval::{ApprovalHandler, Decision, ServerReply, ServerRequestCtx};
use codex_asp::backend::AspBackendOptions;
use codex_core::event::DeltaKind;
use codex_core::{ApprovalPolicy, Backend, CodexBinary, Event, TaskSpec, ThreadId};

const USAGE: &str = "usage: turn [--cd DIR] [--approval-policy untrusted|on-request|never] [--on-approval accept|decline|cancel] [--resume THREAD_ID] PROMPT";

struct Options {
    cd: Option<PathBuf>,
    approval_policy: Option<ApprovalPolicy>,
    on_approval: Decision,
    resume: Option<String>,
    prompt: String,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        cd: None,
        approval_policy: None,
        on_approval: Decision::Decline,
        resume: None,
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
        println!(
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
            eprintln!("turn: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Options) -> codex_core::Result<bool> {
    let codex = CodexBinary::discover().await?;
    let options = AspBackendOptions::default()
        .client_info("codex-asp-turn-example", env!("CARGO_PKG_VERSION"))
        .approval_handler(PrintingHandler {
            decision: opts.on_approval.clone(),
        });
    let backend = AspBackend::spawn(codex, options).await?;

    let mut spec = TaskSpec::new(opts.prompt);
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
            Event::ThreadStarted { thread_id } => println!("thread: {thread_id}"),
            Event::Delta { kind, delta, .. } => {
                if last_kind != Some(*kind) {
                    let label = match kind {
                        DeltaKind::AgentMessage => "message",
                        DeltaKind::Reasoning => "reasoning",
                        DeltaKind::CommandOutput => "command output",
                        DeltaKind::FileChangeOutput => "patch output",
                        _ => "delta",
                    };
                    print!("\n[{label}] ");
                    last_kind = Some(*kind);
                }
                print!("{delta}");
                let _ = std::io::stdout().flush();
            }
            Event::ItemCompleted { item } => {
                last_kind = None;
                println!("\n[item] {} {}", item.details.kind_name(), item.id);
            }
            Event::Error { message } => println!("\n[error] {message}"),
            _ => {}
        }
    }
    match run.outcome().await {
        Ok(outcome) => {
            println!("\nthread: {}", outcome.thread_id);
            println!(
                "final message:\n{}",
                outcome.final_message.unwrap_or_default()
            );
            Ok(true)
        }
        Err(e) => {
            println!("\nthe turn did not complete: {e}");
            Ok(false)
        }
    }
}
