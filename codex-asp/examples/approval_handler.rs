//! A custom approval handler: accepts only commands whose first word is allow-listed.
//!
//! ```text
//! cargo run -p codex-asp --example approval_handler -- [--cd DIR] [--allow WORD]... PROMPT
//! ```
//!
//! Runs one turn with the `untrusted` approval policy (codex asks before every command that
//! is not known to be safe) over a private `codex app-server`, using the codex of the
//! environment (`CODEX_BIN`, else `PATH`) and its `CODEX_HOME`. Every command approval is
//! accepted when the command starts with one of the `--allow` words (default: `ls`, `cat`,
//! `echo`), declined otherwise; file changes and other requests are declined. Prints each
//! decision and the final message. Exits 0 only when the turn completed.

use std::path::PathBuf;
use std::process::ExitCode;

use codex_asp::AspBackend;
use codex_asp::approval::{
    ApprovalHandler, Decision, ServerReply, ServerRequestCtx, ServerRequestKind,
};
use codex_asp::backend::AspBackendOptions;
use codex_core::{ApprovalPolicy, Backend, CodexBinary, TaskSpec};

const USAGE: &str = "usage: approval_handler [--cd DIR] [--allow WORD]... PROMPT";

/// Accepts command approvals whose command starts with an allow-listed word.
struct AllowList {
    words: Vec<String>,
}

impl AllowList {
    /// The command a request is about, without codex's shell wrapper: codex reports
    /// `/bin/bash -c 'touch x'` in `command` and the parsed `touch x` in `commandActions`.
    fn command(request: &ServerRequestCtx) -> String {
        let params = request.params();
        if let Some(cmd) = params
            .get("commandActions")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.get("command"))
            .and_then(|c| c.as_str())
        {
            return cmd.to_owned();
        }
        let raw = params
            .get("command")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        for wrapper in ["/bin/bash -lc ", "/bin/bash -c ", "bash -lc ", "bash -c "] {
            if let Some(inner) = raw.strip_prefix(wrapper) {
                return inner.trim_matches('\'').to_owned();
            }
        }
        raw.to_owned()
    }

    fn allows(&self, command: &str) -> bool {
        let first = command.split_whitespace().next().unwrap_or_default();
        self.words.iter().any(|w| w == first)
    }
}

#[async_trait::async_trait]
impl ApprovalHandler for AllowList {
    async fn handle(&self, request: ServerRequestCtx) -> ServerReply {
        let decision = match request.kind() {
            ServerRequestKind::CommandExecution => {
                let command = Self::command(&request);
                let decision = if self.allows(&command) {
                    Decision::Accept
                } else {
                    Decision::Decline
                };
                println!("[approval] command {command:?} -> {decision:?}");
                decision
            }
            other => {
                println!("[approval] {other:?} ({}) -> Decline", request.method());
                Decision::Decline
            }
        };
        decision.into()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut cd = None;
    let mut words = Vec::new();
    let mut prompt = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cd" => cd = args.next().map(PathBuf::from),
            "--allow" => words.extend(args.next()),
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
    if words.is_empty() {
        words = vec!["ls".into(), "cat".into(), "echo".into()];
    }
    match run(cd, words, prompt.join(" ")).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("approval_handler: {}", codex_core::ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cd: Option<PathBuf>, words: Vec<String>, prompt: String) -> codex_core::Result<bool> {
    println!("allowed first words: {}", words.join(", "));
    let codex = CodexBinary::discover().await?;
    let options = AspBackendOptions::default().approval_handler(AllowList { words });
    let backend = AspBackend::spawn(codex, options).await?;
    let mut spec = TaskSpec::new(prompt).approval(ApprovalPolicy::Untrusted);
    if let Some(dir) = cd {
        spec = spec.cwd(dir);
    }
    match backend.run(spec).await {
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
