//! Tests of the `fake-codex` fault-injection binary.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use codex_bridge_tests::procs::{processes_with_env, wait_until_gone};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-codex");

fn fake(mode: &str, args: &[&str]) -> Command {
    let mut command = Command::new(FAKE);
    command
        .args(args)
        .env("FAKE_CODEX_MODE", mode)
        .env_remove("FAKE_CODEX_VERSION")
        .stdin(Stdio::null());
    command
}

fn run(mode: &str, args: &[&str]) -> Output {
    fake(mode, args).output().expect("run fake-codex")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn version_is_the_pinned_one_unless_overridden() {
    let output = run("exit-now", &["--version"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), "codex-cli 0.169.0\n");

    let output = fake("", &["exec", "--version"])
        .env("FAKE_CODEX_VERSION", "0.120.0")
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "codex-cli 0.120.0\n");
}

#[test]
fn exec_help_matches_the_version() {
    let help = stdout(&run("", &["exec", "--help"]));
    assert!(help.contains("--output-schema <FILE>"));
    assert!(help.contains("--skip-git-repo-check"));
    assert!(!help.contains("--full-auto"));

    let old = fake("", &["exec", "--help"])
        .env("FAKE_CODEX_VERSION", "0.140.0")
        .output()
        .unwrap();
    assert!(stdout(&old).contains("--full-auto"));

    let resume = stdout(&run("", &["exec", "resume", "--help"]));
    assert!(resume.contains("--last"));
}

#[test]
fn unknown_flags_are_usage_errors_like_the_real_parser() {
    let output = run("", &["exec", "--full-auto", "hi"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument '--full-auto'"));

    let output = fake("", &["exec", "--full-auto", "--json", "hi"])
        .env("FAKE_CODEX_VERSION", "0.140.0")
        .output()
        .unwrap();
    assert!(output.status.success());

    // Flags of `exec` are not flags of `exec resume`.
    let output = run(
        "",
        &[
            "exec",
            "--json",
            "resume",
            "--sandbox",
            "read-only",
            "id",
            "hi",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let output = run(
        "",
        &[
            "exec",
            "--json",
            "--sandbox",
            "read-only",
            "resume",
            "t-9",
            "hi",
        ],
    );
    assert!(output.status.success());
    assert!(stdout(&output).contains(r#""thread_id":"t-9""#));
}

#[test]
fn ok_mode_echoes_the_prompt_from_argv_or_stdin() {
    let output = run("ok", &["exec", "--json", "-c", "x=1", "hello there"]);
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["type"], "thread.started");
    assert_eq!(lines[2]["item"]["text"], "fake: hello there");
    assert_eq!(lines[3]["type"], "turn.completed");

    let mut child = fake("", &["exec", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(stdout(&output).contains("fake: from stdin"));
}

#[test]
fn record_file_gets_the_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("calls.jsonl");
    let output = fake("ok", &["exec", "--json", "hi"])
        .env("FAKE_CODEX_RECORD", &record)
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = std::fs::read_to_string(&record).unwrap();
    let call: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(call["args"], serde_json::json!(["exec", "--json", "hi"]));
}

#[test]
fn exit_now_fails_at_once() {
    let output = run("exit-now", &["exec", "--json", "hi"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "fake: boom\n");
    assert!(output.stdout.is_empty());
}

#[test]
fn garbage_mode_mixes_noise_and_events() {
    let output = run("garbage", &["exec", "--json", "hi"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let json_events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("type").is_some())
        .collect();
    assert_eq!(json_events.len(), 2);
    assert_eq!(json_events[0]["thread_id"], "t-1");
    assert_eq!(json_events[1]["type"], "turn.completed");
    assert!(text.lines().count() > 4);
}

#[test]
fn huge_line_mode_prints_a_20_mib_line() {
    let output = run("huge-line", &["exec", "--json", "hi"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let longest = text.lines().map(str::len).max().unwrap();
    assert_eq!(longest, 20 * 1024 * 1024);
    let huge = text.lines().find(|l| l.len() == longest).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(huge).unwrap();
    assert_eq!(parsed["item"]["type"], "agent_message");
}

#[test]
fn die_mid_turn_is_killed_by_a_signal() {
    use std::os::unix::process::ExitStatusExt;
    let output = run("die-mid-turn", &["exec", "--json", "hi"]);
    assert_eq!(output.status.signal(), Some(9));
    assert_eq!(stdout(&output).lines().count(), 2);
    let output = run("abort-mid-turn", &["exec", "--json", "hi"]);
    assert_eq!(output.status.signal(), Some(6));
}

#[test]
fn hang_mode_keeps_a_child_in_its_process_group() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let marker = format!("fake-hang-{}", std::process::id());
    let mut child = fake("hang", &["exec", "--json", "hi"])
        .env("FAKE_TEST_MARKER", &marker)
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("thread.started"));
    assert!(lines.next().unwrap().unwrap().contains("turn.started"));
    // The fake and its sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processes_with_env("FAKE_TEST_MARKER", &marker).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sleep child never showed up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pgid = child.id();
    Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    let _ = child.wait();
    wait_until_gone("FAKE_TEST_MARKER", &marker, Duration::from_secs(10))
        .expect("killing the group ends the sleep child too");
}

/// Runs `fake-codex app-server` in `mode` with `input` (JSON-RPC lines) on stdin; returns
/// its output.
fn app_server(mode: &str, input: &[serde_json::Value]) -> Output {
    use std::io::Write;
    let mut child = fake(mode, &["app-server"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in input {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn one_turn() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"id": 0, "method": "initialize", "params": {"clientInfo": {"name": "t", "version": "0"}}}),
        serde_json::json!({"method": "initialized"}),
        serde_json::json!({"id": 1, "method": "thread/start", "params": {"cwd": "/tmp"}}),
        serde_json::json!({"id": 2, "method": "turn/start", "params": {"threadId": "thr-1", "input": [{"type": "text", "text": "hello"}]}}),
        serde_json::json!({"id": 3, "method": "no/such", "params": {}}),
    ]
}

#[test]
fn app_server_plays_a_turn() {
    let output = app_server("ok", &one_turn());
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["id"], 0);
    assert!(lines[0]["result"]["userAgent"].is_string());
    assert_eq!(lines[1]["result"]["thread"]["id"], "thr-1");
    assert_eq!(lines[2]["result"]["turn"]["id"], "turn-1");
    let methods: Vec<&str> = lines.iter().filter_map(|l| l["method"].as_str()).collect();
    assert_eq!(
        methods,
        ["turn/started", "item/completed", "turn/completed"]
    );
    assert_eq!(lines[4]["params"]["item"]["text"], "fake: hello");
    assert_eq!(lines[5]["params"]["turn"]["status"], "completed");
    assert_eq!(lines[6]["error"]["code"], -32600);
}

#[test]
fn app_server_fault_lines_come_mid_turn() {
    for (mode, bad) in [
        ("deep-json", "deep"),
        ("bad-utf8", "utf8"),
        ("huge-line", "huge"),
    ] {
        let output = app_server(mode, &one_turn());
        assert!(output.status.success(), "{mode}");
        let lines: Vec<&[u8]> = output.stdout.split(|b| *b == b'\n').collect();
        let parsed: Vec<Option<serde_json::Value>> = lines
            .iter()
            .map(|l| serde_json::from_slice(l).ok())
            .collect();
        // turn/started, then the fault, then the message that follows it and the end
        let started = parsed
            .iter()
            .position(|v| v.as_ref().is_some_and(|v| v["method"] == "turn/started"))
            .unwrap();
        let after = parsed
            .iter()
            .position(|v| {
                v.as_ref()
                    .is_some_and(|v| v["params"]["item"]["text"] == "fake: after the fault")
            })
            .unwrap();
        assert!(after > started + 1, "{mode}");
        match bad {
            "deep" => assert!(lines[started + 1].len() > 200_000, "{mode}"),
            "utf8" => assert!(std::str::from_utf8(lines[started + 1]).is_err(), "{mode}"),
            _ => assert_eq!(lines[started + 1].len(), 20 * 1024 * 1024, "{mode}"),
        }
        assert!(stdout(&output).contains("turn/completed"), "{mode}");
    }
}

#[test]
fn app_server_dies_mid_turn() {
    use std::os::unix::process::ExitStatusExt;
    let output = app_server("exit-mid-stream", &one_turn());
    assert_eq!(output.status.code(), Some(7));
    assert!(!output.stdout.ends_with(b"\n"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("fake: lost the stream"));
    let output = app_server("segv", &one_turn());
    assert_eq!(output.status.signal(), Some(11));
    let output = app_server("exit-now", &[]);
    assert_eq!(output.status.code(), Some(3));
}

#[test]
fn exec_faults() {
    use std::os::unix::process::ExitStatusExt;
    let output = run("exit-mid-stream", &["exec", "--json", "hi"]);
    assert_eq!(output.status.code(), Some(7));
    assert!(stdout(&output).ends_with("agent_mes"));
    let output = run("segv", &["exec", "--json", "hi"]);
    assert_eq!(output.status.signal(), Some(11));
    let output = run("deep-json", &["exec", "--json", "hi"]);
    assert!(output.status.success());
    assert!(stdout(&output).lines().any(|l| l.len() > 200_000));
    assert!(stdout(&output).contains("fake: after the fault"));
    let output = run("bad-utf8", &["exec", "--json", "hi"]);
    assert!(output.status.success());
    assert!(std::str::from_utf8(&output.stdout).is_err());
}

/// `close-stdout` ends its stdout but keeps running, with a detached child; `silent` and a
/// hanging probe print nothing and keep running.
#[test]
fn lingering_modes_keep_running_with_a_detached_child() {
    use std::io::Read;
    for (mode, probe, args) in [
        ("close-stdout", "", &["exec", "--json", "hi"][..]),
        ("silent", "", &["exec", "--json", "hi"][..]),
        ("ok", "hang-version", &["--version"][..]),
        ("ok", "hang-help", &["exec", "--help"][..]),
    ] {
        let marker = format!("fake-linger-{}-{mode}-{probe}", std::process::id());
        let mut child = fake(mode, args)
            .env("FAKE_CODEX_PROBE", probe)
            .env("FAKE_TEST_MARKER", &marker)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        if mode == "close-stdout" {
            // the end of stdout comes while the fake still runs (nothing else holds the pipe)
            let mut out = String::new();
            stdout.read_to_string(&mut out).unwrap();
            assert_eq!(out.lines().count(), 2, "{out}");
        }
        assert!(child.try_wait().unwrap().is_none(), "{mode} {probe} exited");
        // the fake and its detached child (in a group of its own)
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while processes_with_env("FAKE_TEST_MARKER", &marker).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{mode} {probe}: no child"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in processes_with_env("FAKE_TEST_MARKER", &marker) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait();
        drop(stdout);
        wait_until_gone("FAKE_TEST_MARKER", &marker, Duration::from_secs(10)).unwrap();
    }
}
