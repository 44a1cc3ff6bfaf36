//! Tests of the harness itself: real turns of the pinned codex binary, run directly with
//! `codex exec --json`, against the mock Responses API.
//!
//! With `CODEX_BRIDGE_WRITE_FIXTURES=1` (see `cargo xtask fixtures`) each scenario also writes
//! what codex printed on stdout, raw, to `tests/fixtures/exec/<scenario>.jsonl`.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use codex_bridge_tests::mock::RESPONSES_PATH;
use codex_bridge_tests::procs::{GroupGuard, processes_with_env, wait_until_gone_async};
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace, fixtures_dir, pinned_codex};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const TURN_TIMEOUT: Duration = Duration::from_secs(60);

/// What one `codex exec` printed.
struct Exec {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Exec {
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The `item` of every `item.completed` event of the given item type.
    fn completed_items(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == kind)
            .map(|e| e["item"].clone())
            .collect()
    }

    fn event_types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn thread_id(&self) -> String {
        self.events()
            .iter()
            .find(|e| e["type"] == "thread.started")
            .and_then(|e| e["thread_id"].as_str())
            .unwrap_or_else(|| panic!("no thread.started in:\n{}", self.stdout))
            .to_owned()
    }

    fn describe(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Keeps the raw stdout as a fixture when asked to.
    fn save_fixture(&self, scenario: &str) {
        if std::env::var_os("CODEX_BRIDGE_WRITE_FIXTURES").is_none() {
            return;
        }
        let dir = fixtures_dir().join("exec");
        std::fs::create_dir_all(&dir).expect("create the fixtures dir");
        std::fs::write(dir.join(format!("{scenario}.jsonl")), &self.stdout)
            .expect("write the fixture");
    }
}

fn exec_command(home: &CodexHome, ws: &TempWorkspace, args: &[&str]) -> Command {
    let mut command = Command::new(pinned_codex());
    home.apply_env(&mut command)
        .arg("exec")
        .arg("--json")
        .arg("--skip-git-repo-check")
        .args(args)
        .current_dir(ws.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// Runs `codex exec --json --skip-git-repo-check ARGS` with `prompt` on stdin.
async fn run_exec(home: &CodexHome, ws: &TempWorkspace, args: &[&str], prompt: &str) -> Exec {
    let mut args = args.to_vec();
    if args.last() != Some(&"-") {
        args.push("-");
    }
    let mut child = exec_command(home, ws, &args).spawn().expect("spawn codex");
    let _group = GroupGuard::new(child.id());
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(prompt.as_bytes())
        .await
        .expect("write the prompt");
    drop(stdin);
    let output = tokio::time::timeout(TURN_TIMEOUT, child.wait_with_output())
        .await
        .expect("codex exec did not finish in time")
        .expect("wait for codex");
    Exec {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_turn_completed(exec: &Exec) {
    assert!(exec.status.success(), "{}", exec.describe());
    let types = exec.event_types();
    assert_eq!(types.first().map(String::as_str), Some("thread.started"));
    assert_eq!(
        types.last().map(String::as_str),
        Some("turn.completed"),
        "{}",
        exec.describe()
    );
}

#[tokio::test]
async fn text_reply_gives_agent_message_and_records_the_prompt() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("Hello from the mock"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "Say hello").await;
    exec.save_fixture("text");

    assert_turn_completed(&exec);
    let messages = exec.completed_items("agent_message");
    assert_eq!(messages.len(), 1, "{}", exec.describe());
    assert_eq!(messages[0]["text"], "Hello from the mock");
    let completed = exec.events().pop().unwrap();
    assert_eq!(completed["usage"]["input_tokens"], 10);
    assert_eq!(completed["usage"]["output_tokens"], 5);

    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "only POST /v1/responses is expected");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, RESPONSES_PATH);
    assert_eq!(request.last_user_text().as_deref(), Some("Say hello"));
    assert_eq!(request.model(), Some("gpt-5.5"));
    assert_eq!(request.body["stream"], true);
    assert!(request.tools().iter().any(|t| t == "exec_command"));
    assert!(request.tools().iter().any(|t| t == "apply_patch"));
    assert_eq!(request.header("originator"), Some("codex_exec"));
    assert!(request.text_format().is_none());
    assert_eq!(mock.pending_replies(), 0);
}

#[tokio::test]
async fn default_reply_echoes_the_prompt() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "ping 42").await;

    assert_turn_completed(&exec);
    let messages = exec.completed_items("agent_message");
    assert_eq!(messages[0]["text"], "echo: ping 42", "{}", exec.describe());
}

#[tokio::test]
async fn exec_command_runs_and_its_output_goes_back_to_the_model() {
    let mock = MockModel::start().await;
    mock.push(Reply::exec_command("call-1", "echo hi-from-exec"));
    mock.push(Reply::text("The command printed hi-from-exec."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "Run echo").await;
    exec.save_fixture("exec_command");

    assert_turn_completed(&exec);
    let commands = exec.completed_items("command_execution");
    assert_eq!(commands.len(), 1, "{}", exec.describe());
    let command = &commands[0];
    assert!(
        command["command"]
            .as_str()
            .unwrap()
            .contains("echo hi-from-exec")
    );
    assert!(
        command["aggregated_output"]
            .as_str()
            .unwrap()
            .contains("hi-from-exec")
    );
    assert_eq!(command["exit_code"], 0);
    assert_eq!(command["status"], "completed");
    let messages = exec.completed_items("agent_message");
    assert_eq!(messages[0]["text"], "The command printed hi-from-exec.");

    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "{}", exec.describe());
    assert!(requests[0].function_call_outputs().is_empty());
    let outputs = requests[1].function_call_outputs();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].0, "call-1");
    assert!(outputs[0].1.contains("hi-from-exec"), "{:?}", outputs[0]);
    // The follow-up request repeats the prompt as the last user text.
    assert_eq!(requests[1].last_user_text().as_deref(), Some("Run echo"));
}

#[tokio::test]
async fn failing_exec_command_is_a_failed_command_execution() {
    let mock = MockModel::start().await;
    mock.push(Reply::exec_command("call-f", "echo oops >&2; exit 7"));
    mock.push(Reply::text("It failed."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "Run a failing command").await;
    exec.save_fixture("exec_command_failed");

    assert_turn_completed(&exec);
    let commands = exec.completed_items("command_execution");
    assert_eq!(commands.len(), 1, "{}", exec.describe());
    assert_eq!(commands[0]["exit_code"], 7);
    assert_eq!(commands[0]["status"], "failed");
    let outputs = mock.requests()[1].function_call_outputs();
    assert!(outputs[0].1.contains("oops"), "{outputs:?}");
}

#[tokio::test]
async fn apply_patch_creates_the_file() {
    let mock = MockModel::start().await;
    mock.push(Reply::apply_patch(
        "call-p",
        "*** Begin Patch\n*** Add File: hello.txt\n+hi from the patch\n*** End Patch\n",
    ));
    mock.push(Reply::text("Created hello.txt."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "Create hello.txt").await;
    exec.save_fixture("apply_patch");

    assert_turn_completed(&exec);
    assert_eq!(
        ws.read("hello.txt").as_deref(),
        Some("hi from the patch\n"),
        "{}",
        exec.describe()
    );
    let changes = exec.completed_items("file_change");
    assert_eq!(changes.len(), 1, "{}", exec.describe());
    assert_eq!(changes[0]["status"], "completed");
    assert_eq!(changes[0]["changes"][0]["kind"], "add");
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let outputs = requests[1].custom_tool_call_outputs();
    assert_eq!(outputs.len(), 1, "{:?}", requests[1].input());
    assert_eq!(outputs[0].0, "call-p");
}

#[tokio::test]
async fn http_500_fails_the_turn() {
    let mock = MockModel::start().await;
    mock.push(Reply::http_status(500));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "This will fail").await;
    exec.save_fixture("http_500");

    assert_eq!(exec.status.code(), Some(1), "{}", exec.describe());
    let events = exec.events();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "turn.failed", "{}", exec.describe());
    assert!(last["error"]["message"].is_string());
    // request_max_retries = 0: exactly one attempt.
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn http_429_fails_the_turn() {
    let mock = MockModel::start().await;
    mock.push(Reply::http_status(429));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "Too many").await;
    exec.save_fixture("http_429");

    assert_eq!(exec.status.code(), Some(1), "{}", exec.describe());
    assert_eq!(exec.events().last().unwrap()["type"], "turn.failed");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn response_failed_fails_the_turn() {
    let mock = MockModel::start().await;
    mock.push(Reply::failed("the mock model failed"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "This fails in the stream").await;
    exec.save_fixture("response_failed");

    assert_eq!(exec.status.code(), Some(1), "{}", exec.describe());
    assert_eq!(
        exec.events().last().unwrap()["type"],
        "turn.failed",
        "{}",
        exec.describe()
    );
}

#[tokio::test]
async fn reasoning_reply_gives_a_reasoning_item() {
    let mock = MockModel::start().await;
    mock.push(Reply::reasoning(
        "Thinking about greetings",
        "Hello after thinking",
    ));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "Think, then greet").await;
    exec.save_fixture("reasoning");

    assert_turn_completed(&exec);
    let reasoning = exec.completed_items("reasoning");
    assert_eq!(reasoning.len(), 1, "{}", exec.describe());
    assert!(
        reasoning[0]["text"]
            .as_str()
            .unwrap()
            .contains("Thinking about greetings")
    );
    assert_eq!(
        exec.completed_items("agent_message")[0]["text"],
        "Hello after thinking"
    );
}

#[tokio::test]
async fn streamed_reply_gives_the_whole_text() {
    let mock = MockModel::start().await;
    mock.push(Reply::streamed(&["Hel", "lo, ", "world"]));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let exec = run_exec(&home, &ws, &[], "Say hello").await;
    exec.save_fixture("streamed");

    assert_turn_completed(&exec);
    assert_eq!(
        exec.completed_items("agent_message")[0]["text"],
        "Hello, world"
    );
}

#[tokio::test]
async fn resume_keeps_the_thread_and_the_history() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("First answer"));
    mock.push(Reply::text("Second answer"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let first = run_exec(&home, &ws, &[], "First prompt").await;
    assert_turn_completed(&first);
    let thread_id = first.thread_id();
    first.save_fixture("resume_first");

    let second = run_exec(&home, &ws, &["resume", &thread_id, "-"], "Second prompt").await;
    second.save_fixture("resume");

    assert_turn_completed(&second);
    assert_eq!(second.thread_id(), thread_id);
    assert_eq!(
        second.completed_items("agent_message")[0]["text"],
        "Second answer"
    );
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let texts = requests[1].user_texts();
    assert!(texts.iter().any(|t| t == "First prompt"), "{texts:?}");
    assert_eq!(texts.last().map(String::as_str), Some("Second prompt"));
    assert!(!home.session_files().is_empty());
}

#[tokio::test]
async fn output_schema_reaches_the_request() {
    let mock = MockModel::start().await;
    mock.push(Reply::text(r#"{"answer":"42"}"#));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let schema = json!({
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": false,
    });
    let schema_path = ws.write("schema.json", &schema.to_string());

    let exec = run_exec(
        &home,
        &ws,
        &["--output-schema", schema_path.to_str().unwrap()],
        "Answer in JSON",
    )
    .await;
    exec.save_fixture("output_schema");

    assert_turn_completed(&exec);
    let format = mock.requests()[0]
        .text_format()
        .cloned()
        .expect("text.format");
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["schema"], schema);
}

#[tokio::test]
async fn routed_replies_and_responder() {
    let mock = MockModel::start().await;
    mock.set_responder(|req| Reply::text(format!("responder saw {}", req.user_texts().len())));
    mock.push_for_prompt("marker-b", Reply::text("routed to b"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let (a, b) = tokio::join!(
        run_exec(&home, &ws, &[], "prompt marker-a"),
        run_exec(&home, &ws, &[], "prompt marker-b"),
    );

    assert_turn_completed(&a);
    assert_turn_completed(&b);
    assert_eq!(b.completed_items("agent_message")[0]["text"], "routed to b");
    let a_text = a.completed_items("agent_message")[0]["text"].clone();
    assert!(
        a_text.as_str().unwrap().starts_with("responder saw "),
        "{a_text}"
    );
    assert_eq!(mock.pending_replies(), 0);
}

#[tokio::test]
async fn hanging_stream_is_closed_when_codex_is_killed() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let home_path = home.path().to_string_lossy().into_owned();

    // exec_command puts codex in a process group of its own, so the whole tree (node
    // launcher + native binary) can be killed.
    let mut child = exec_command(&home, &ws, &["-"])
        .spawn()
        .expect("spawn codex");
    let _group = GroupGuard::new(child.id());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hang please").await.unwrap();
    drop(stdin);

    mock.wait_for_requests(1, TURN_TIMEOUT)
        .await
        .expect("codex sent its request");
    assert_eq!(mock.open_streams(), 1);
    let alive = processes_with_env("CODEX_HOME", &home_path);
    assert!(
        !alive.is_empty(),
        "the codex processes carry CODEX_HOME in their environment"
    );

    let pgid = child.id().expect("pid") as i32;
    let status = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .expect("run kill");
    assert!(status.success());
    let _ = child.wait().await;

    wait_until_gone_async("CODEX_HOME", &home_path, Duration::from_secs(10))
        .await
        .expect("no codex process survives");
    mock.wait_for_streams_closed(Duration::from_secs(10))
        .await
        .expect("the mock noticed the client went away");
}

#[tokio::test]
async fn mock_answers_404_and_400_and_records_them() {
    let mock = MockModel::start().await;
    let base = mock.base_url();
    let addr = mock.addr();
    assert!(addr.ip().is_loopback());
    assert!(base.starts_with("http://127.0.0.1:"));

    let get = raw_http(
        addr,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(get.starts_with("HTTP/1.1 404"), "{get}");
    let bad = "not json";
    let post = raw_http(
        addr,
        &format!(
            "POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
            bad.len()
        ),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 400"), "{post}");

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/v1/models");
    assert_eq!(requests[0].status, 404);
    assert_eq!(requests[1].status, 400);
    assert!(requests[1].body_error.is_some());
    assert_eq!(&requests[1].raw_body[..], bad.as_bytes());

    // A good request after the bad one is still served.
    let body = json!({"input": [{"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hi"}]}]})
    .to_string();
    let ok = raw_http(
        addr,
        &format!(
            "POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("text/event-stream"));
    assert!(ok.contains("event: response.created\ndata: {"));
    assert!(ok.contains("echo: hi"));
    assert!(ok.contains("\"id\":\"resp-1\""));
}

async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn mock_works_without_an_async_test() {
    let mock = MockModel::start_blocking();
    mock.push(Reply::text("from a sync test"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let mut command = std::process::Command::new(pinned_codex());
    home.apply_env_std(&mut command)
        .args(["exec", "--json", "--skip-git-repo-check", "Say something"])
        .current_dir(ws.path())
        .stdin(Stdio::null());
    let output = command.output().expect("run codex");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("from a sync test"), "{stdout}");
}

#[test]
fn store_api_key_writes_auth_json() {
    let mock = MockModel::start_blocking();
    let home = CodexHome::new(&mock);
    home.store_api_key("sk-test-0123456789").expect("login");
    let auth: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("auth.json")).unwrap())
            .unwrap();
    assert_eq!(auth["OPENAI_API_KEY"], "sk-test-0123456789");
    assert_eq!(auth["auth_mode"], "apikey");
}

#[test]
fn non_git_workspace_needs_skip_git_repo_check() {
    let mock = MockModel::start_blocking();
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::outside_git();
    let mut command = std::process::Command::new(pinned_codex());
    home.apply_env_std(&mut command)
        .args(["exec", "--json", "hi"])
        .current_dir(ws.path())
        .stdin(Stdio::null());
    let output = command.output().expect("run codex");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--skip-git-repo-check"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(mock.requests().is_empty());

    let repo = TempWorkspace::outside_git().git_repo();
    let mut command = std::process::Command::new(pinned_codex());
    home.apply_env_std(&mut command)
        .args(["exec", "--json", "hi"])
        .current_dir(repo.path())
        .stdin(Stdio::null());
    let output = command.output().expect("run codex");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn killing_the_codex_group_also_ends_the_running_command() {
    let mock = MockModel::start().await;
    mock.push(Reply::exec_command("call-s", "sleep 123"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let home_path = home.path().to_string_lossy().into_owned();

    let mut child = exec_command(&home, &ws, &["-"])
        .spawn()
        .expect("spawn codex");
    let _group = GroupGuard::new(child.id());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"sleep a while").await.unwrap();
    drop(stdin);

    // The command runs under a PTY in a session of its own, and inherits CODEX_HOME.
    let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
    let sleeper = loop {
        let found = processes_with_env("CODEX_HOME", &home_path)
            .into_iter()
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            });
        if let Some(pid) = found {
            break pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap();
    let pgrp: u32 = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(2))
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert_ne!(
        Some(pgrp),
        child.id(),
        "the command has a process group of its own"
    );

    let pgid = child.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .expect("run kill");
    let _ = child.wait().await;
    // Closing codex's PTY hangs the command's session up.
    wait_until_gone_async("CODEX_HOME", &home_path, Duration::from_secs(10))
        .await
        .expect("no process of the turn survives");
}

/// A minimal app-server client over stdio, enough to check the escalation reply.
struct AppServer {
    child: tokio::process::Child,
    group: GroupGuard,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    transcript: String,
}

impl AppServer {
    fn start(home: &CodexHome, ws: &TempWorkspace) -> AppServer {
        let mut command = Command::new(pinned_codex());
        home.apply_env(&mut command)
            .arg("app-server")
            .current_dir(ws.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn codex app-server");
        let group = GroupGuard::new(child.id());
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        AppServer {
            child,
            group,
            stdin,
            lines: tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout)),
            transcript: String::new(),
        }
    }

    async fn send(&mut self, message: Value) {
        let line = format!("{message}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// Reads messages until `stop` matches one, answering approvals with `decision`.
    async fn read_until(&mut self, decision: &str, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(TURN_TIMEOUT, self.lines.next_line())
                .await
                .expect("app-server answered in time")
                .expect("read app-server stdout")
                .expect("app-server closed stdout");
            self.transcript.push_str(&line);
            self.transcript.push('\n');
            let message: Value = serde_json::from_str(&line).expect("app-server prints JSON");
            if message["method"] == "item/commandExecution/requestApproval" {
                let answer = json!({"id": message["id"], "result": {"decision": decision}});
                self.send(answer).await;
            }
            let done = stop(&message);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn escalated_exec_command_asks_the_app_server_client() {
    let mock = MockModel::start().await;
    mock.push(Reply::exec_command_escalated(
        "call-e",
        "echo escalated-ran",
    ));
    mock.push(Reply::text("after approval"));
    let home = CodexHome::new(&mock)
        .approval_policy("on-request")
        .sandbox_mode("workspace-write");
    let ws = TempWorkspace::new();

    let mut server = AppServer::start(&home, &ws);
    server
        .send(json!({"id": 1, "method": "initialize",
            "params": {"clientInfo": {"name": "harness", "version": "0.0.0"}}}))
        .await;
    server.read_until("accept", |m| m["id"] == 1).await;
    server
        .send(json!({"method": "initialized", "params": {}}))
        .await;
    server
        .send(json!({"id": 2, "method": "thread/start", "params": {"cwd": ws.path()}}))
        .await;
    let started = server.read_until("accept", |m| m["id"] == 2).await;
    let thread_id = started.last().unwrap()["result"]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .send(
            json!({"id": 3, "method": "turn/start", "params": {"threadId": thread_id,
            "input": [{"type": "text", "text": "run it escalated"}]}}),
        )
        .await;
    let turn = server
        .read_until("accept", |m| m["method"] == "turn/completed")
        .await;
    if std::env::var_os("CODEX_BRIDGE_WRITE_FIXTURES").is_some() {
        let dir = fixtures_dir().join("app-server");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("escalated_approval.jsonl"), &server.transcript).unwrap();
    }
    server.group.kill();
    let _ = server.child.wait().await;

    let approval = turn
        .iter()
        .find(|m| m["method"] == "item/commandExecution/requestApproval")
        .expect("an approval request");
    assert_eq!(approval["params"]["reason"], "test");
    assert_eq!(approval["params"]["itemId"], "call-e");
    let completed = turn.last().unwrap();
    assert_eq!(completed["params"]["turn"]["status"], "completed");
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.is_responses()));
    assert_eq!(requests[0].header("originator"), Some("harness"));
    let outputs = requests[1].function_call_outputs();
    assert!(outputs[0].1.contains("escalated-ran"), "{outputs:?}");
}

#[tokio::test]
async fn sigint_interrupts_a_hanging_turn() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("partial answer").then_hang());
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let mut child = exec_command(&home, &ws, &["-"])
        .spawn()
        .expect("spawn codex");
    let _group = GroupGuard::new(child.id());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hang after a message").await.unwrap();
    drop(stdin);
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();

    // Wait for the message item: it is printed before the (never coming) completion.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + TURN_TIMEOUT;
    while !String::from_utf8_lossy(&seen).contains("partial answer") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncReadExt::read(&mut stdout, &mut buf),
        )
        .await
        .expect("the message item in time")
        .unwrap();
        assert!(n > 0, "codex closed stdout early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(mock.open_streams(), 1);

    // The launcher forwards SIGINT to the native binary.
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut rest)
        .await
        .unwrap();
    seen.extend_from_slice(&rest);
    let status = tokio::time::timeout(TURN_TIMEOUT, child.wait())
        .await
        .expect("codex exits after SIGINT")
        .unwrap();
    let mut err = String::new();
    let _ =
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::BufReader::new(stderr), &mut err)
            .await;
    let exec = Exec {
        status,
        stdout: String::from_utf8_lossy(&seen).into_owned(),
        stderr: err,
    };
    exec.save_fixture("sigint_during_turn");

    assert_eq!(exec.status.code(), Some(1), "{}", exec.describe());
    let types = exec.event_types();
    assert!(
        !types
            .iter()
            .any(|t| t == "turn.completed" || t == "turn.failed"),
        "{types:?}"
    );
    assert_eq!(
        exec.completed_items("agent_message")[0]["text"],
        "partial answer"
    );
    mock.wait_for_streams_closed(Duration::from_secs(10))
        .await
        .expect("the stream was closed");
}
