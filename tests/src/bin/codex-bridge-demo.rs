//! `codex-bridge-demo` (run by `cargo xtask demo`): real codex turns, offline, through the
//! library.
//!
//! Starts the bundled mock Responses API on 127.0.0.1, writes a private `CODEX_HOME` that
//! points codex at it, and runs turns of the real pinned codex through codex-bridge's
//! backends, printing every event as it arrives and the outcome last:
//!
//! 1. the exec backend (`codex exec --json`): a streamed answer, a shell command, and resume
//!    of the first thread;
//! 2. the app-server backend (`codex app-server`, JSON-RPC over stdio): streamed deltas and
//!    a command that needs approval, answered by an approval handler; then a second turn on
//!    the same warm connection.
//!
//! Exit status 0 only when every turn completed.

use std::process::ExitCode;
use std::time::Duration;

use codex_asp::AspBackend;
use codex_asp::approval::{ApprovalHandler, Decision, ServerReply, ServerRequestCtx};
use codex_asp::backend::AspBackendOptions;
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace, pinned_codex};
use codex_cli_backend::CliBackend;
use codex_core::event::DeltaKind;
use codex_core::{
    ApprovalPolicy, Backend, CodexBinary, Event, ItemDetails, Run, TaskSpec, TurnOutcome,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codex-bridge-demo: {}", codex_core::ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let workspace = TempWorkspace::new().git_repo();
    let binary = CodexBinary::probe(pinned_codex()).await?;
    println!("codex   {} ({})", binary.version(), binary.path().display());
    println!("model   mock Responses API at {}", mock.base_url());
    println!("home    {}", home.path().display());

    let backend = CliBackend::builder()
        .binary(binary.clone())
        .envs(home.env())
        .default_timeout(Duration::from_secs(60))
        .build()?;

    println!("\n== exec backend: a streamed answer");
    mock.push(Reply::streamed(&[
        "Hello", " from", " the", " mock", " model.",
    ]));
    let spec = TaskSpec::new("Say hello").cwd(workspace.path());
    let first = show(backend.start(spec).await?).await?;

    println!("\n== exec backend: a shell command");
    mock.push(Reply::exec_command("call-1", "echo codex-bridge says hi"));
    mock.push(Reply::text("The command printed a greeting."));
    let spec = TaskSpec::new("Run a greeting command").cwd(workspace.path());
    show(backend.start(spec).await?).await?;

    println!("\n== exec backend: resume thread {}", first.thread_id);
    mock.push(Reply::text("Yes, I remember saying hello."));
    let spec = TaskSpec::new("Do you remember what you said?").cwd(workspace.path());
    let resumed = show(backend.resume(&first.thread_id, spec).await?).await?;
    anyhow::ensure!(
        resumed.thread_id == first.thread_id,
        "resume changed the thread id"
    );

    println!("\n== app-server backend: spawn `codex app-server`, initialize");
    let options = AspBackendOptions::default()
        .envs(home.env())
        .approval_handler(ApproveEcho)
        .default_timeout(Duration::from_secs(60));
    let asp = AspBackend::spawn(binary, options).await?;
    if let Some(info) = asp.server_info() {
        println!("  server: {}", info.user_agent);
    }

    println!("\n== app-server backend: streamed deltas");
    mock.push(Reply::streamed(&["Streaming", " over", " JSON-RPC."]));
    let spec = TaskSpec::new("Say something").cwd(workspace.path());
    show(asp.start(spec).await?).await?;

    println!("\n== app-server backend: a command that asks for approval (policy untrusted)");
    mock.push(Reply::exec_command("call-2", "echo approved command ran"));
    mock.push(Reply::text("The approved command ran."));
    let spec = TaskSpec::new("Run a command")
        .cwd(workspace.path())
        .approval(ApprovalPolicy::Untrusted);
    show(asp.start(spec).await?).await?;
    Ok(())
}

/// Accepts `echo` commands and declines everything else.
struct ApproveEcho;

#[async_trait::async_trait]
impl ApprovalHandler for ApproveEcho {
    async fn handle(&self, request: ServerRequestCtx) -> ServerReply {
        let command = request
            .params()
            .get("command")
            .and_then(|c| c.as_str())
            .unwrap_or("");
        let decision = if command.contains("echo ") {
            Decision::Accept
        } else {
            Decision::Decline
        };
        println!(
            "  approval asked: {} {command:?} -> {decision:?}",
            request.method()
        );
        ServerReply::Decision(decision)
    }
}

async fn show(mut run: Run) -> anyhow::Result<TurnOutcome> {
    while let Some(event) = run.next_event().await {
        println!("  {}", describe(&event));
    }
    let outcome = run.outcome().await?;
    println!(
        "  => thread {} | final message: {}",
        outcome.thread_id,
        outcome.final_message.as_deref().unwrap_or("(none)")
    );
    Ok(outcome)
}

fn describe(event: &Event) -> String {
    match event {
        Event::ThreadStarted { thread_id } => format!("thread.started {thread_id}"),
        Event::TurnStarted { turn_id: None } => "turn.started".into(),
        Event::ItemStarted { item } => format!("item.started {}", item.details.kind_name()),
        Event::ItemUpdated { item } => format!("item.updated {}", item.details.kind_name()),
        Event::ItemCompleted { item } => match &item.details {
            ItemDetails::AgentMessage { text } => format!("agent_message: {text}"),
            ItemDetails::CommandExecution {
                command,
                aggregated_output,
                exit_code,
                ..
            } => {
                format!(
                    "command_execution: {command} -> exit {} output {:?}",
                    exit_code.map_or("?".into(), |c| c.to_string()),
                    aggregated_output.trim()
                )
            }
            other => format!("item.completed {}", other.kind_name()),
        },
        Event::TurnStarted { turn_id: Some(id) } => format!("turn.started {id}"),
        Event::Delta {
            kind: DeltaKind::AgentMessage,
            delta,
            ..
        } => format!("delta {delta:?}"),
        Event::TurnCompleted { usage, .. } => format!(
            "turn.completed (tokens in/out: {}/{})",
            usage.map_or(0, |u| u.input_tokens),
            usage.map_or(0, |u| u.output_tokens)
        ),
        Event::Unknown { kind, .. } => format!("({kind})"),
        other => format!("{other:?}"),
    }
}
