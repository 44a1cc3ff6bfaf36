//! `codex-bridge-demo` (run by `cargo xtask demo`): one offline turn of the real pinned codex.
//!
//! Starts the mock Responses API with a streamed reply scripted, writes a private
//! `CODEX_HOME`, runs `codex exec --json --skip-git-repo-check -` on the prompt "Say hello"
//! and prints each JSONL line codex wrote. A placeholder: it will go through the library.

use std::process::{ExitCode, Stdio};

use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace, pinned_codex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PROMPT: &str = "Say hello";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("codex-bridge-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let mock = MockModel::start().await;
    mock.push(Reply::streamed(&["Hello", ", ", "world", "!"]));
    let home = CodexHome::new(&mock);
    let workspace = TempWorkspace::new();
    let codex = pinned_codex();
    println!("# codex: {}", codex.display());
    println!("# mock:  {}", mock.base_url());
    println!("# prompt: {PROMPT}");

    let mut command = tokio::process::Command::new(&codex);
    home.apply_env(&mut command)
        .args(["exec", "--json", "--skip-git-repo-check", "-"])
        .current_dir(workspace.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(PROMPT.as_bytes()).await?;
    }
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let reading = async {
        while let Some(line) = lines.next_line().await? {
            println!("{line}");
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), reading)
        .await
        .map_err(|_| anyhow::anyhow!("codex did not finish within 60 s"))??;
    let status = child.wait().await?;
    println!("# exit: {status}");
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
