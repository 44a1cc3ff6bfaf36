//! `fake-codex`: a fault-injecting stand-in for the codex CLI, for tests of the library's
//! process handling (`env!("CARGO_BIN_EXE_fake-codex")` in this package's tests).
//!
//! Always:
//! - `--version` / `-V` (anywhere in argv) prints `codex-cli 0.169.0`, or
//!   `codex-cli $FAKE_CODEX_VERSION`.
//! - `exec --help` prints the real 0.169.0 help text; when `FAKE_CODEX_VERSION` is older than
//!   0.150.0 it also lists `--full-auto`. `exec resume --help` prints the real resume help.
//! - `exec` checks its flags against that help like the real parser: an unknown flag (such as
//!   `--full-auto` from 0.150.0 on) is a usage error, exit 2.
//! - With `FAKE_CODEX_RECORD=FILE`, each run appends one JSON line
//!   `{"args":[..],"cwd":"..","codex_home":..}` to FILE before doing anything else.
//!
//! `exec` behaviour, chosen by `FAKE_CODEX_MODE`:
//! - `ok` (the default): reads the prompt (argv, or stdin for `-` / no prompt) and prints
//!   `thread.started` (`t-1`, or the resumed id), `turn.started`, an `agent_message`
//!   `fake: <prompt>` and `turn.completed`; exit 0.
//! - `exit-now`: prints `fake: boom` on stderr and exits 3 at once.
//! - `garbage`: a few non-JSON lines, then `{"type":"thread.started","thread_id":"t-1"}` and
//!   `turn.completed` with usage; exit 0.
//! - `hang`: starts a child `sleep 1000` in the fake's own process group (its pid goes to
//!   stderr as `fake: child <pid>`), prints `thread.started` and `turn.started`, then sleeps forever.
//! - `huge-line`: `thread.started`, `turn.started`, then one `item.completed` line of 20 MiB
//!   (`FAKE_CODEX_HUGE_BYTES` overrides the size; written in pieces, never held whole), then
//!   an `agent_message` `fake: after the fault` and `turn.completed`; exit 0.
//! - `deep-json`: the same with a line nesting 100 000 arrays (`FAKE_CODEX_DEPTH`) inside an
//!   `item.completed` instead of the huge line.
//! - `bad-utf8`: the same with two lines that are not UTF-8: bare bytes, and an
//!   `agent_message` whose text holds invalid bytes.
//! - `die-mid-turn`: `thread.started`, `turn.started`, then kills itself with SIGKILL
//!   (a shell would report 137).
//! - `abort-mid-turn`: the same, dying by `abort()` (SIGABRT, 134).
//! - `exit-mid-stream`: `thread.started`, `turn.started`, half a line (no newline), then
//!   `fake: lost the stream` on stderr and exit 7.
//! - `segv`: `thread.started`, `turn.started`, then dies of SIGSEGV (no core file).
//! - `close-stdout`: `thread.started`, `turn.started`, then closes its stdout and sleeps
//!   forever, with a detached child (below).
//! - `silent`: prints nothing and never exits, with a detached child.
//!
//! `app-server` (JSON-RPC over stdio, one message per line), chosen by the same
//! `FAKE_CODEX_MODE`:
//! - `ok` (the default): answers `initialize`, `thread/start`, `thread/resume`, `turn/start`
//!   and `turn/interrupt` (anything else gets -32600); a turn sends `turn/started`, an
//!   `agentMessage` item `fake: <prompt>` and `turn/completed`. It exits at the end of stdin.
//! - `exit-now`: `fake: boom` on stderr, exit 3, before reading anything.
//! - `silent`: reads its input and never answers, not even `initialize`; never exits (also
//!   not at the end of stdin); a detached child.
//! - `hang`: a turn starts (`turn/started`) and never ends unless interrupted
//!   (`turn/interrupt` answers and completes it as `interrupted`).
//! - `huge-line`, `deep-json`, `bad-utf8`: after `turn/started`, the fault line(s) of the
//!   exec mode of the same name (as JSON-RPC notifications), then the agent message
//!   `fake: after the fault` and `turn/completed`.
//! - `exit-mid-stream`, `segv`, `close-stdout`: after `turn/started`, as in exec (the server
//!   that closed its stdout keeps reading its input and never exits).
//!
//! Probe faults, chosen by `FAKE_CODEX_PROBE` (whatever the mode): `hang-version` makes
//! `--version` print nothing and never exit; `hang-help` does the same to `exec --help` and
//! `exec resume --help`. Both start a detached child.
//!
//! A *detached child* is a `sleep 1000` in a process group of its own (as codex's login
//! shells run in a session of their own), its stdio on `/dev/null`; its pid goes to stderr
//! as `fake: detached child <pid>`. Killing the fake's process group does not reach it.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

const REAL_VERSION: &str = "0.169.0";
const EXEC_HELP: &str = include_str!("../../fixtures/help/codex-exec-help-0.169.0.txt");
const EXEC_RESUME_HELP: &str =
    include_str!("../../fixtures/help/codex-exec-resume-help-0.169.0.txt");
const FULL_AUTO_HELP: &str = "      --full-auto\n          Convenience alias for low-friction sandboxed automatic execution (-a on-request,\n          --sandbox workspace-write)\n\n";
/// The first version that rejects `exec --full-auto`.
const FULL_AUTO_REMOVED: (u64, u64, u64) = (0, 150, 0);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let version = std::env::var("FAKE_CODEX_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.trim_start_matches("codex-cli ").to_owned())
        .unwrap_or_else(|| REAL_VERSION.to_owned());
    record(&args);

    let probe = std::env::var("FAKE_CODEX_PROBE").unwrap_or_default();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        if probe == "hang-version" {
            spawn_detached_child();
            hang_forever();
        }
        println!("codex-cli {version}");
        return ExitCode::SUCCESS;
    }
    let mode = std::env::var("FAKE_CODEX_MODE").unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("exec" | "e") => exec(&args[1..], &version, &mode),
        Some("app-server") => app_server(&args[1..], &mode),
        other => {
            eprintln!("fake-codex: unsupported command {other:?}");
            ExitCode::from(2)
        }
    }
}

/// Appends the invocation to `$FAKE_CODEX_RECORD`, if set.
fn record(args: &[String]) {
    let Some(path) = std::env::var_os("FAKE_CODEX_RECORD") else {
        return;
    };
    let line = serde_json::json!({
        "args": args,
        "cwd": std::env::current_dir().ok().map(|d| d.to_string_lossy().into_owned()),
        "codex_home": std::env::var("CODEX_HOME").ok(),
    });
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

fn parse_version(v: &str) -> (u64, u64, u64) {
    let mut parts = v
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn exec_help(version: &str) -> String {
    if parse_version(version) >= FULL_AUTO_REMOVED {
        return EXEC_HELP.to_owned();
    }
    let anchor = "      --dangerously-bypass-approvals-and-sandbox";
    match EXEC_HELP.find(anchor) {
        Some(at) => format!("{}{FULL_AUTO_HELP}{}", &EXEC_HELP[..at], &EXEC_HELP[at..]),
        None => format!("{EXEC_HELP}{FULL_AUTO_HELP}"),
    }
}

/// The flags a help text lists: `(names, takes_value)`.
fn flags_of(help: &str) -> Vec<(Vec<String>, bool)> {
    let mut out = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') || line.len() - trimmed.len() > 6 {
            continue;
        }
        let spec = trimmed.split("  ").next().unwrap_or(trimmed);
        let mut names = Vec::new();
        let mut takes_value = false;
        for token in spec.split([',', ' ']).filter(|t| !t.is_empty()) {
            if token.starts_with('<') {
                takes_value = true;
            } else if token.starts_with('-') {
                names.push(token.to_owned());
            }
        }
        if !names.is_empty() {
            out.push((names, takes_value));
        }
    }
    out
}

/// What `exec` was asked to do.
#[derive(Debug, Default)]
struct ExecArgs {
    resume: bool,
    session_id: Option<String>,
    prompt: Option<String>,
}

fn usage_error(arg: &str) -> ExitCode {
    eprintln!(
        "error: unexpected argument '{arg}' found\n\n  tip: to pass '{arg}' as a value, use '-- {arg}'\n\nUsage: codex exec [OPTIONS] [PROMPT]\n       codex exec [OPTIONS] <COMMAND> [ARGS]\n\nFor more information, try '--help'."
    );
    ExitCode::from(2)
}

fn parse_exec(args: &[String], version: &str) -> Result<ExecArgs, ExitCode> {
    let exec_flags = flags_of(&exec_help(version));
    let resume_flags = flags_of(EXEC_RESUME_HELP);
    let mut parsed = ExecArgs::default();
    let mut positionals = Vec::new();
    let mut iter = args.iter();
    let mut only_positionals = false;
    while let Some(arg) = iter.next() {
        if only_positionals || arg == "-" || !arg.starts_with('-') {
            if positionals.is_empty() && !parsed.resume && arg == "resume" {
                parsed.resume = true;
            } else {
                positionals.push(arg.clone());
            }
            continue;
        }
        if arg == "--" {
            only_positionals = true;
            continue;
        }
        let name = arg.split('=').next().unwrap_or(arg);
        let flags = if parsed.resume {
            &resume_flags
        } else {
            &exec_flags
        };
        let Some((_, takes_value)) = flags
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == name))
        else {
            return Err(usage_error(arg));
        };
        if *takes_value && !arg.contains('=') && iter.next().is_none() {
            eprintln!("error: a value is required for '{arg}' but none was supplied");
            return Err(ExitCode::from(2));
        }
    }
    let mut positionals = positionals.into_iter();
    if parsed.resume {
        parsed.session_id = positionals.next();
    }
    parsed.prompt = positionals.next();
    Ok(parsed)
}

fn exec(args: &[String], version: &str, mode: &str) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        if std::env::var("FAKE_CODEX_PROBE").is_ok_and(|p| p == "hang-help") {
            spawn_detached_child();
            hang_forever();
        }
        if args.first().is_some_and(|a| a == "resume") {
            print!("{EXEC_RESUME_HELP}");
        } else {
            print!("{}", exec_help(version));
        }
        return ExitCode::SUCCESS;
    }
    let parsed = match parse_exec(args, version) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let thread_id = parsed
        .session_id
        .clone()
        .unwrap_or_else(|| "t-1".to_owned());
    match mode {
        "" | "ok" => {
            let prompt = match parsed.prompt.as_deref() {
                Some("-") | None => {
                    let mut text = String::new();
                    let _ = std::io::stdin().read_to_string(&mut text);
                    text
                }
                Some(prompt) => prompt.to_owned(),
            };
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            let message = serde_json::json!({
                "type": "item.completed",
                "item": {"id": "item_0", "type": "agent_message", "text": format!("fake: {prompt}")},
            });
            emit(&message.to_string());
            emit(turn_completed());
            ExitCode::SUCCESS
        }
        "exit-now" => {
            eprintln!("fake: boom");
            ExitCode::from(3)
        }
        "garbage" => {
            emit("this is not JSON");
            emit("{\"type\": \"thread.started\", broken");
            emit("\u{1b}[31mWARNING\u{1b}[0m: colourful noise");
            emit("");
            emit("[1, 2, 3]");
            emit(&thread_started("t-1"));
            emit(turn_completed());
            ExitCode::SUCCESS
        }
        "hang" => {
            match std::process::Command::new("sleep").arg("1000").spawn() {
                Ok(child) => eprintln!("fake: child {}", child.id()),
                Err(e) => eprintln!("fake: cannot start sleep: {e}"),
            }
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "huge-line" | "deep-json" | "bad-utf8" => {
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            match mode {
                "huge-line" => huge_line(
                    r#"{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":""#,
                    r#""}}"#,
                ),
                "deep-json" => deep_line(r#"{"type":"item.completed","item":"#, "}"),
                _ => bad_utf8_lines(
                    b"{\"type\":\"item.completed\",\"item\":{\"id\":\"item_0\",\"type\":\"agent_message\",\"text\":\"",
                    b"\"}}",
                ),
            }
            let message = json!({
                "type": "item.completed",
                "item": {"id": "item_1", "type": "agent_message", "text": AFTER_THE_FAULT},
            });
            emit(&message.to_string());
            emit(turn_completed());
            ExitCode::SUCCESS
        }
        "exit-mid-stream" => {
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            exit_mid_stream(r#"{"type":"item.completed","item":{"id":"item_0","type":"agent_mes"#)
        }
        "segv" => {
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            segfault()
        }
        "close-stdout" => {
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            close_stdout();
            hang_forever()
        }
        "silent" => {
            spawn_detached_child();
            hang_forever()
        }
        "die-mid-turn" => {
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
            std::thread::sleep(Duration::from_secs(10));
            ExitCode::from(137)
        }
        "abort-mid-turn" => {
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            std::process::abort()
        }
        other => {
            eprintln!("fake-codex: unknown FAKE_CODEX_MODE {other:?} for exec");
            ExitCode::from(2)
        }
    }
}

/// The agent message that follows a fault the run survives.
const AFTER_THE_FAULT: &str = "fake: after the fault";

fn app_server(_args: &[String], mode: &str) -> ExitCode {
    match mode {
        "" | "ok" | "hang" | "huge-line" | "deep-json" | "bad-utf8" | "exit-mid-stream"
        | "segv" | "close-stdout" => AppServer::new(mode).serve(),
        "exit-now" => {
            eprintln!("fake: boom");
            ExitCode::from(3)
        }
        "silent" => {
            spawn_detached_child();
            let mut sink = Vec::new();
            let _ = std::io::stdin().lock().read_to_end(&mut sink);
            hang_forever()
        }
        other => {
            eprintln!("fake-codex: unknown FAKE_CODEX_MODE {other:?} for app-server");
            ExitCode::from(2)
        }
    }
}

/// The state of the fake app-server.
struct AppServer {
    mode: String,
    threads: u32,
    turns: u32,
    /// The running turn: (thread id, turn id).
    active: Option<(String, String)>,
    /// Stdout was closed: write nothing more.
    closed: bool,
}

impl AppServer {
    fn new(mode: &str) -> Self {
        AppServer {
            mode: mode.to_owned(),
            threads: 0,
            turns: 0,
            active: None,
            closed: false,
        }
    }

    /// Answers requests line by line until the end of stdin (or forever, once stdout is
    /// closed).
    fn serve(mut self) -> ExitCode {
        let mut input = std::io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Ok(msg) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let Some(method) = msg.get("method").and_then(Value::as_str) else {
                continue;
            };
            let params = msg.get("params").cloned().unwrap_or(Value::Null);
            // notifications (`initialized`) need nothing
            if let Some(id) = msg.get("id")
                && let Some(code) = self.request(id, method, &params)
            {
                return code;
            }
        }
        if self.closed {
            hang_forever();
        }
        ExitCode::SUCCESS
    }

    fn send(&self, msg: &Value) {
        if !self.closed {
            emit(&msg.to_string());
        }
    }

    fn notify(&self, method: &str, params: Value) {
        self.send(&json!({"method": method, "params": params}));
    }

    /// Handles one request; `Some(code)` ends the process.
    fn request(&mut self, id: &Value, method: &str, params: &Value) -> Option<ExitCode> {
        let result = match method {
            "initialize" => json!({
                "userAgent": format!("fake-codex/{REAL_VERSION} (fake)"),
                "codexHome": std::env::var("CODEX_HOME").ok(),
                "platformFamily": "unix",
                "platformOs": "linux",
            }),
            "thread/start" => {
                self.threads += 1;
                let thread_id = format!("thr-{}", self.threads);
                thread_answer(&thread_id, params)
            }
            "thread/resume" => {
                let thread_id = params
                    .get("threadId")
                    .and_then(Value::as_str)
                    .unwrap_or("thr-0")
                    .to_owned();
                thread_answer(&thread_id, params)
            }
            "turn/start" => {
                self.turns += 1;
                let thread_id = params
                    .get("threadId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let turn_id = format!("turn-{}", self.turns);
                self.send(&json!({"id": id, "result": {"turn": turn(&turn_id, "inProgress")}}));
                return self.run_turn(thread_id, turn_id, params);
            }
            "turn/interrupt" => {
                self.send(&json!({"id": id, "result": {}}));
                if let Some((thread_id, turn_id)) = self.active.take() {
                    self.notify(
                        "turn/completed",
                        json!({"threadId": thread_id, "turn": turn(&turn_id, "interrupted")}),
                    );
                }
                return None;
            }
            other => {
                self.send(&json!({
                    "id": id,
                    "error": {"code": -32600, "message": format!("fake-codex does not know {other}")},
                }));
                return None;
            }
        };
        self.send(&json!({"id": id, "result": result}));
        None
    }

    /// Plays one turn in the server's mode; `Some(code)` ends the process.
    fn run_turn(&mut self, thread_id: String, turn_id: String, params: &Value) -> Option<ExitCode> {
        let ids = json!({"threadId": thread_id, "turnId": turn_id});
        self.notify(
            "turn/started",
            json!({"threadId": thread_id, "turn": turn(&turn_id, "inProgress")}),
        );
        let text = match self.mode.as_str() {
            "hang" => {
                self.active = Some((thread_id, turn_id));
                return None;
            }
            "huge-line" => {
                let head = format!(
                    r#"{{"method":"item/completed","params":{{"threadId":"{thread_id}","turnId":"{turn_id}","item":{{"type":"agentMessage","id":"msg-huge","text":""#
                );
                huge_line(&head, r#""}}}"#);
                AFTER_THE_FAULT.to_owned()
            }
            "deep-json" => {
                let head = format!(
                    r#"{{"method":"item/completed","params":{{"threadId":"{thread_id}","turnId":"{turn_id}","item":"#
                );
                deep_line(&head, "}}");
                AFTER_THE_FAULT.to_owned()
            }
            "bad-utf8" => {
                let head = format!(
                    r#"{{"method":"item/completed","params":{{"threadId":"{thread_id}","turnId":"{turn_id}","item":{{"type":"agentMessage","id":"msg-bad","text":""#
                );
                bad_utf8_lines(head.as_bytes(), b"\"}}}");
                AFTER_THE_FAULT.to_owned()
            }
            "exit-mid-stream" => {
                return Some(exit_mid_stream(
                    r#"{"method":"item/completed","params":{"threadId":"#,
                ));
            }
            "segv" => return Some(segfault()),
            "close-stdout" => {
                close_stdout();
                self.closed = true;
                return None;
            }
            _ => format!("fake: {}", prompt_of(params)),
        };
        let mut item = ids.clone();
        item["item"] =
            json!({"type": "agentMessage", "id": format!("msg-{turn_id}"), "text": text});
        self.notify("item/completed", item);
        self.notify(
            "turn/completed",
            json!({"threadId": thread_id, "turn": turn(&turn_id, "completed")}),
        );
        None
    }
}

/// The text inputs of `turn/start` params, joined.
fn prompt_of(params: &Value) -> String {
    params
        .get("input")
        .and_then(Value::as_array)
        .map(|inputs| {
            inputs
                .iter()
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn turn(turn_id: &str, status: &str) -> Value {
    json!({"id": turn_id, "status": status, "items": [], "rootTurnId": turn_id})
}

/// The answer to `thread/start` / `thread/resume` for `thread_id`.
fn thread_answer(thread_id: &str, params: &Value) -> Value {
    let cwd = params.get("cwd").cloned().unwrap_or(Value::Null);
    json!({
        "thread": {"id": thread_id, "preview": "", "ephemeral": false, "modelProvider": "fake", "createdAt": 0, "turns": []},
        "model": "fake",
        "modelProvider": "fake",
        "cwd": cwd,
    })
}

/// Writes `head`, then `x` up to `FAKE_CODEX_HUGE_BYTES` (default 20 MiB) bytes in all,
/// then `tail` and a newline, in pieces (the line is never held whole).
fn huge_line(head: &str, tail: &str) {
    let size = std::env::var("FAKE_CODEX_HUGE_BYTES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20 * 1024 * 1024);
    let mut filler = size.saturating_sub(head.len() + tail.len());
    let chunk = vec![b'x'; 64 * 1024];
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(head.as_bytes());
    while filler > 0 {
        let n = filler.min(chunk.len());
        if out.write_all(&chunk[..n]).is_err() {
            return;
        }
        filler -= n;
    }
    let _ = out.write_all(tail.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes `head`, `FAKE_CODEX_DEPTH` (default 100 000) nested arrays, `tail`, a newline.
fn deep_line(head: &str, tail: &str) {
    let depth = std::env::var("FAKE_CODEX_DEPTH")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100_000);
    let mut line = String::with_capacity(head.len() + 2 * depth + tail.len());
    line.push_str(head);
    line.extend(std::iter::repeat_n('[', depth));
    line.extend(std::iter::repeat_n(']', depth));
    line.push_str(tail);
    emit(&line);
}

/// Writes two lines that are not UTF-8: bare bytes, and `head` + invalid bytes + `tail`.
fn bad_utf8_lines(head: &[u8], tail: &[u8]) {
    const BAD: &[u8] = b"\xff\xfe\xc3\x28 \xe2\x82 \xf0\x28\x8c\xbc";
    let mut out = std::io::stdout().lock();
    let mut bare = BAD.to_vec();
    bare.push(b'\n');
    let mut wrapped = head.to_vec();
    wrapped.extend_from_slice(BAD);
    wrapped.extend_from_slice(tail);
    wrapped.push(b'\n');
    let _ = out.write_all(&bare);
    let _ = out.write_all(&wrapped);
    let _ = out.flush();
}

/// Writes `partial` without a newline, says why on stderr, exits 7.
fn exit_mid_stream(partial: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(partial.as_bytes());
    let _ = out.flush();
    eprintln!("fake: lost the stream");
    ExitCode::from(7)
}

/// Dies of SIGSEGV, without writing a core file.
fn segfault() -> ExitCode {
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    eprintln!("fake: segfaulting");
    // Rust's runtime catches SIGSEGV (to report stack overflows); a fault outside a guard
    // page puts the default action back and returns, so the second one is fatal
    for _ in 0..3 {
        let _ = nix::sys::signal::raise(nix::sys::signal::SIGSEGV);
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("fake: SIGSEGV did not kill me");
    ExitCode::from(139)
}

/// Closes stdout (the reader sees its end), after a detached child was started.
fn close_stdout() {
    spawn_detached_child();
    let _ = std::io::stdout().lock().flush();
    if let Err(e) = nix::unistd::close(1) {
        eprintln!("fake: cannot close stdout: {e}");
    }
    eprintln!("fake: stdout closed");
}

/// Starts a `sleep 1000` in a process group of its own, stdio on /dev/null.
fn spawn_detached_child() {
    use std::os::unix::process::CommandExt as _;
    match std::process::Command::new("sleep")
        .arg("1000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(child) => eprintln!("fake: detached child {}", child.id()),
        Err(e) => eprintln!("fake: cannot start sleep: {e}"),
    }
}

/// Never returns (and prints nothing more).
fn hang_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn thread_started(thread_id: &str) -> String {
    serde_json::json!({"type": "thread.started", "thread_id": thread_id}).to_string()
}

fn turn_completed() -> &'static str {
    r#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":5,"reasoning_output_tokens":0}}"#
}

/// Prints one line and flushes, so that readers see it before whatever comes next.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
