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
//!   (`FAKE_CODEX_HUGE_BYTES` overrides the size), then `turn.completed`; exit 0.
//! - `die-mid-turn`: `thread.started`, `turn.started`, then kills itself with SIGKILL
//!   (a shell would report 137).
//! - `abort-mid-turn`: the same, dying by `abort()` (SIGABRT, 134).
//!
//! `app-server` modes are not written yet: it exits 2 with a message naming the mode.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

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

    if args.iter().any(|a| a == "--version" || a == "-V") {
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
        "huge-line" => {
            let size = std::env::var("FAKE_CODEX_HUGE_BYTES")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(20 * 1024 * 1024);
            emit(&thread_started(&thread_id));
            emit(r#"{"type":"turn.started"}"#);
            let head =
                r#"{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":""#;
            let tail = r#""}}"#;
            let filler = size.saturating_sub(head.len() + tail.len());
            let mut line = String::with_capacity(size + 1);
            line.push_str(head);
            line.extend(std::iter::repeat_n('x', filler));
            line.push_str(tail);
            emit(&line);
            emit(turn_completed());
            ExitCode::SUCCESS
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

fn app_server(_args: &[String], mode: &str) -> ExitCode {
    eprintln!("fake-codex: app-server mode {mode:?} is not implemented yet");
    ExitCode::from(2)
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
