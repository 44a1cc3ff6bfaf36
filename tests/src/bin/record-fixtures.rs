//! `record-fixtures`: re-records `tests/fixtures/exec/*.jsonl`, the raw stdout of the real
//! `codex exec --json` against the mock model, one scenario per file.
//!
//! ```text
//! cargo run -p codex-bridge-tests --bin record-fixtures -- [--out DIR] [--list] [SCENARIO...]
//! ```
//!
//! Runs the pinned codex (`CODEX_BIN` if set), each scenario in a fresh private
//! `CODEX_HOME` and workspace, with the same replies and prompts as the harness tests, so a
//! re-recording differs only in ids and paths (which the snapshot tests redact). Without
//! scenario names every scenario is recorded. `cargo xtask fixtures` runs this.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use codex_bridge_tests::home::ENV_TO_REMOVE;
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace, fixtures_dir, pinned_codex};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

/// Longest a recorded turn may take.
const TURN_LIMIT: Duration = Duration::from_secs(120);

/// Every scenario, in recording order; `resume` also writes `resume_first`.
const SCENARIOS: &[&str] = &[
    "text",
    "streamed",
    "reasoning",
    "exec_command",
    "exec_command_failed",
    "apply_patch",
    "http_500",
    "http_429",
    "response_failed",
    "resume",
    "output_schema",
    "sigint_during_turn",
];

/// What one codex run printed.
struct Recorded {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Recorded {
    fn describe(&self) -> String {
        format!(
            "{}\n--- stdout\n{}--- stderr\n{}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }

    fn thread_id(&self) -> Result<String> {
        String::from_utf8_lossy(&self.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["type"] == "thread.started")
            .and_then(|e| e["thread_id"].as_str().map(str::to_owned))
            .with_context(|| format!("no thread.started in:\n{}", self.describe()))
    }

    fn last_event_type(&self) -> Option<String> {
        String::from_utf8_lossy(&self.stdout)
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|e| e["type"].as_str().map(str::to_owned))
    }

    fn expect_last(&self, kind: &str) -> Result<&Self> {
        match self.last_event_type() {
            Some(k) if k == kind => Ok(self),
            other => bail!("expected {kind} last, got {other:?}:\n{}", self.describe()),
        }
    }
}

/// One scenario's world: mock, home, workspace.
struct World {
    mock: MockModel,
    home: CodexHome,
    ws: TempWorkspace,
    codex: PathBuf,
}

impl World {
    async fn new(codex: &Path) -> World {
        let mock = MockModel::start().await;
        let home = CodexHome::new(&mock);
        World {
            mock,
            home,
            ws: TempWorkspace::new(),
            codex: codex.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.codex);
        for key in ENV_TO_REMOVE {
            command.env_remove(key);
        }
        command
            .envs(self.home.env())
            .arg("exec")
            .args(args)
            .current_dir(self.ws.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    /// `codex exec [resume ID] --json --skip-git-repo-check EXTRA -` with `prompt` on stdin.
    async fn exec(&self, resume: Option<&str>, extra: &[&str], prompt: &str) -> Result<Recorded> {
        let mut args: Vec<&str> = Vec::new();
        if let Some(id) = resume {
            args.extend(["resume", id]);
        }
        args.extend(["--json", "--skip-git-repo-check"]);
        args.extend(extra);
        args.push("-");
        let mut child = self.command(&args).spawn().context("starting codex")?;
        let mut stdin = child.stdin.take().context("codex stdin")?;
        stdin.write_all(prompt.as_bytes()).await?;
        drop(stdin);
        let output = tokio::time::timeout(TURN_LIMIT, child.wait_with_output())
            .await
            .context("codex exec did not finish in time")??;
        Ok(Recorded {
            status: output.status,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    /// A turn that hangs after a message; codex gets SIGINT once the message is out.
    async fn exec_then_sigint(&self, prompt: &str, wait_for: &str) -> Result<Recorded> {
        let mut child = self
            .command(&["--json", "--skip-git-repo-check", "-"])
            .spawn()
            .context("starting codex")?;
        let mut stdin = child.stdin.take().context("codex stdin")?;
        stdin.write_all(prompt.as_bytes()).await?;
        drop(stdin);
        let mut stdout = child.stdout.take().context("codex stdout")?;
        let mut stderr = child.stderr.take().context("codex stderr")?;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + TURN_LIMIT;
        while !String::from_utf8_lossy(&seen).contains(wait_for) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
                .await
                .context("waiting for the partial message")??;
            if n == 0 {
                bail!(
                    "codex closed stdout early:\n{}",
                    String::from_utf8_lossy(&seen)
                );
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let pid = child.id().context("codex pid")?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        // the npm launcher forwards SIGINT to the native binary
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGINT)?;
        stdout.read_to_end(&mut seen).await?;
        let status = tokio::time::timeout(TURN_LIMIT, child.wait())
            .await
            .context("codex did not exit after SIGINT")??;
        let mut err = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_end(&mut err)).await;
        Ok(Recorded {
            status,
            stdout: seen,
            stderr: err,
        })
    }
}

/// Records one scenario: `(file stem, recording)` pairs.
async fn record(codex: &Path, scenario: &str) -> Result<Vec<(String, Recorded)>> {
    let w = World::new(codex).await;
    let one = |r: Recorded| Ok(vec![(scenario.to_owned(), r)]);
    match scenario {
        "text" => {
            w.mock.push(Reply::text("Hello from the mock"));
            let r = w.exec(None, &[], "Say hello").await?;
            r.expect_last("turn.completed")?;
            one(r)
        }
        "streamed" => {
            w.mock.push(Reply::streamed(&["Hel", "lo, ", "world"]));
            let r = w.exec(None, &[], "Say hello").await?;
            r.expect_last("turn.completed")?;
            one(r)
        }
        "reasoning" => {
            w.mock.push(Reply::reasoning(
                "Thinking about greetings",
                "Hello after thinking",
            ));
            let r = w.exec(None, &[], "Think, then greet").await?;
            r.expect_last("turn.completed")?;
            one(r)
        }
        "exec_command" => {
            w.mock
                .push(Reply::exec_command("call-1", "echo hi-from-exec"));
            w.mock
                .push(Reply::text("The command printed hi-from-exec."));
            let r = w.exec(None, &[], "Run echo").await?;
            r.expect_last("turn.completed")?;
            one(r)
        }
        "exec_command_failed" => {
            w.mock
                .push(Reply::exec_command("call-f", "echo oops >&2; exit 7"));
            w.mock.push(Reply::text("It failed."));
            let r = w.exec(None, &[], "Run a failing command").await?;
            r.expect_last("turn.completed")?;
            one(r)
        }
        "apply_patch" => {
            w.mock.push(Reply::apply_patch(
                "call-p",
                "*** Begin Patch\n*** Add File: hello.txt\n+hi from the patch\n*** End Patch\n",
            ));
            w.mock.push(Reply::text("Created hello.txt."));
            let r = w.exec(None, &[], "Create hello.txt").await?;
            r.expect_last("turn.completed")?;
            if w.ws.read("hello.txt").as_deref() != Some("hi from the patch\n") {
                bail!("the patch did not create hello.txt:\n{}", r.describe());
            }
            one(r)
        }
        "http_500" => {
            w.mock.push(Reply::http_status(500));
            let r = w.exec(None, &[], "This will fail").await?;
            r.expect_last("turn.failed")?;
            one(r)
        }
        "http_429" => {
            w.mock.push(Reply::http_status(429));
            let r = w.exec(None, &[], "Too many").await?;
            r.expect_last("turn.failed")?;
            one(r)
        }
        "response_failed" => {
            w.mock.push(Reply::failed("the mock model failed"));
            let r = w.exec(None, &[], "This fails in the stream").await?;
            r.expect_last("turn.failed")?;
            one(r)
        }
        "resume" => {
            w.mock.push(Reply::text("First answer"));
            w.mock.push(Reply::text("Second answer"));
            let first = w.exec(None, &[], "First prompt").await?;
            first.expect_last("turn.completed")?;
            let id = first.thread_id()?;
            let second = w.exec(Some(&id), &[], "Second prompt").await?;
            second.expect_last("turn.completed")?;
            if second.thread_id()? != id {
                bail!("resume changed the thread id:\n{}", second.describe());
            }
            Ok(vec![
                ("resume_first".to_owned(), first),
                ("resume".to_owned(), second),
            ])
        }
        "output_schema" => {
            w.mock.push(Reply::text(r#"{"answer":"42"}"#));
            let schema = json!({
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": false,
            });
            let path = w.ws.write("schema.json", &schema.to_string());
            let path = path.to_str().context("non-UTF-8 workspace path")?;
            let r = w
                .exec(None, &["--output-schema", path], "Answer in JSON")
                .await?;
            r.expect_last("turn.completed")?;
            one(r)
        }
        "sigint_during_turn" => {
            w.mock.push(Reply::text("partial answer").then_hang());
            let r = w
                .exec_then_sigint("hang after a message", "partial answer")
                .await?;
            if r.status.code() != Some(1) {
                bail!("expected exit code 1 after SIGINT:\n{}", r.describe());
            }
            one(r)
        }
        other => bail!(
            "unknown scenario {other:?}; known: {}",
            SCENARIOS.join(", ")
        ),
    }
}

struct Options {
    out: PathBuf,
    scenarios: Vec<String>,
}

fn parse_args() -> Result<Option<Options>> {
    let mut out = fixtures_dir().join("exec");
    let mut scenarios = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(args.next().context("--out needs a directory")?),
            "--list" => {
                for s in SCENARIOS {
                    println!("{s}");
                }
                return Ok(None);
            }
            "-h" | "--help" => {
                println!(
                    "usage: record-fixtures [--out DIR] [--list] [SCENARIO...]\n\
                     Re-records the raw `codex exec --json` output of each scenario into \
                     DIR/<scenario>.jsonl (default {}).",
                    out.display()
                );
                return Ok(None);
            }
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => {
                if !SCENARIOS.contains(&s) {
                    bail!("unknown scenario {s:?}; known: {}", SCENARIOS.join(", "));
                }
                scenarios.push(s.to_owned());
            }
        }
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    Ok(Some(Options { out, scenarios }))
}

async fn run() -> Result<()> {
    let Some(options) = parse_args()? else {
        return Ok(());
    };
    let codex = pinned_codex();
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    for scenario in &options.scenarios {
        let files = record(&codex, scenario)
            .await
            .with_context(|| format!("scenario {scenario}"))?;
        for (stem, recorded) in files {
            let path = options.out.join(format!("{stem}.jsonl"));
            std::fs::write(&path, &recorded.stdout)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("record-fixtures: wrote {}", path.display());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("record-fixtures: {}", codex_core::ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
