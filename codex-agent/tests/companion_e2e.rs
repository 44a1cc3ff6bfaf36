//! `codex-companion` end to end: the built binary, the real pinned codex (through the
//! resident `codex-broker` or a private app-server) and the mock Responses API on 127.0.0.1.
//!
//! Every test has its own `CODEX_HOME`, job store (`CODEX_BRIDGE_STATE_DIR`) and broker
//! directory (under the state directory: `XDG_RUNTIME_DIR` is removed), and cleans up what it
//! started: the broker is shut down and every process carrying the test's `CODEX_HOME`
//! (broker, app-server, workers, commands codex ran) is killed when the test ends.
//!
//! The `codex-broker` binary must sit next to `codex-companion` (that is where the companion
//! looks first): the suite builds it once with `cargo build -p codex-broker`
//! unless `CODEX_BROKER_BIN` names one (then it is copied there).
//!
//! Every test fails (never skips) when the pinned codex is missing: `pinned_codex()` panics
//! with the instruction to install it (`cargo xtask codex`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use codex_bridge_tests::procs::{
    GroupGuard, kill_all_of, kill_group, processes_with_env, wait_until_gone,
    wait_until_home_is_quiet_blocking,
};
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace, pinned_codex};
use serde_json::{Value, json};

/// Generous bound for one companion command against the mock.
const COMMAND: Duration = Duration::from_secs(120);

fn companion_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_codex-companion"))
}

/// Makes sure `codex-broker` sits next to `codex-companion`, built from this checkout.
fn ensure_broker_binary() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let dir = companion_bin()
            .parent()
            .map(Path::to_path_buf)
            .ok_or("no parent folder")?;
        let target = dir.join("codex-broker");
        if let Some(bin) = std::env::var_os("CODEX_BROKER_BIN").filter(|v| !v.is_empty()) {
            if Path::new(&bin) != target {
                std::fs::copy(&bin, &target).map_err(|e| format!("copying {bin:?}: {e}"))?;
            }
            return Ok(());
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "codex-broker",
                "--bin",
                "codex-broker",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !out.status.success() || !target.is_file() {
            return Err(format!(
                "cargo build -p codex-broker failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = ready {
        panic!("the codex-broker binary is needed next to codex-companion: {e}");
    }
}

/// One test's world: mock, home, workspace, state dir.
struct World {
    mock: MockModel,
    home: CodexHome,
    ws: TempWorkspace,
    state: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World::with_workspace(TempWorkspace::new())
    }

    fn with_workspace(ws: TempWorkspace) -> World {
        World::with_home(ws, CodexHome::new)
    }

    /// A world in the realistic home: shell snapshot on, a private `HOME` whose slow login
    /// profile leaves a child looping in the background.
    fn realistic() -> World {
        World::with_home(TempWorkspace::new(), CodexHome::realistic)
    }

    fn with_home(ws: TempWorkspace, home: fn(&MockModel) -> CodexHome) -> World {
        ensure_broker_binary();
        let mock = MockModel::start_blocking();
        // CodexHome::new turns codex's shell snapshot off (a login shell that can block on
        // pyenv's rehash lock); the realistic home keeps it, with a private HOME
        let home = home(&mock);
        let state = tempfile::tempdir().expect("state dir");
        World {
            mock,
            home,
            ws,
            state,
        }
    }

    fn home_str(&self) -> String {
        self.home.path().to_string_lossy().into_owned()
    }

    /// A `codex-companion` command in the workspace, with this world's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(companion_bin());
        self.home.apply_env_std(&mut cmd);
        cmd.args(args)
            .current_dir(self.ws.path())
            .env("CODEX_BIN", pinned_codex())
            .env("CODEX_BRIDGE_STATE_DIR", self.state.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("CODEX_COMPANION_NO_BROKER")
            .env_remove("CODEX_BROKER_BIN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().expect("start codex-companion")
    }

    /// Runs a command to its end (killed after [`COMMAND`]).
    fn run(&self, args: &[&str]) -> Out {
        finish(self.spawn(args), args)
    }

    /// Runs a command with `--json` and parses its stdout.
    fn run_json(&self, args: &[&str]) -> (Out, Value) {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        let doc = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}):\n{out}"));
        (out, doc)
    }

    /// The broker's status as `setup --json` reports it.
    fn broker(&self) -> Value {
        let (_, doc) = self.run_json(&["setup"]);
        doc["broker"].clone()
    }

    /// Waits until `status JOB` reports a finished job; returns the job document.
    fn wait_job(&self, id: &str) -> Value {
        let (out, doc) = self.run_json(&["status", id, "--wait", "--timeout-ms", "90000"]);
        assert_eq!(out.code, Some(0), "{out}");
        doc["job"].clone()
    }

    fn job(&self, id: &str) -> Value {
        let (out, doc) = self.run_json(&["status", id]);
        assert_eq!(out.code, Some(0), "{out}");
        doc["job"].clone()
    }

    /// The last user texts of the mock's requests.
    fn prompts(&self) -> Vec<String> {
        self.mock
            .responses_requests()
            .iter()
            .filter_map(|r| r.last_user_text())
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // stop the broker politely, then make sure nothing of this test survives
        shutdown_broker(self);
        let home = self.home_str();
        for pid in processes_with_env("CODEX_HOME", &home) {
            kill_pid_and_group(pid);
        }
        kill_all_of(&self.home);
        let _ = wait_until_gone("CODEX_HOME", &home, Duration::from_secs(10));
    }
}

fn shutdown_broker(world: &World) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = broker_options(world);
    let _ = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(15),
            codex_asp::broker::shutdown(&options),
        )
        .await
    });
}

/// The options that name this world's broker, as the companion computes them.
fn broker_options(world: &World) -> codex_asp::broker::BrokerOptions {
    codex_asp::broker::BrokerOptions::new()
        .codex(pinned_codex())
        .codex_home(world.home.path())
        .socket_dir(world.state.path().join("broker"))
}

fn kill_pid_and_group(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let target = nix::unistd::Pid::from_raw(raw);
    if nix::unistd::getpgid(Some(target)).is_ok_and(|g| g == target) {
        kill_group(pid);
    }
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
}

/// A finished command.
struct Out {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "codex-companion {} exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

fn finish(child: Child, args: &[&str]) -> Out {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output: Output = match rx.recv_timeout(COMMAND) {
        Ok(out) => out.expect("wait for codex-companion"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("codex-companion {args:?} did not finish within {COMMAND:?}");
        }
    };
    Out {
        args: args.join(" "),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `pid: command line` of each process, for failure messages.
fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            format!("{pid}: {cmdline}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn a_foreground_task_prints_the_answer() {
    let w = World::new();
    w.mock.push(Reply::text("The answer is 42."));
    let out = w.run(&["task", "What is the answer?"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, "The answer is 42.\n", "{out}");
    assert!(out.stderr.contains("[codex] turn completed"), "{out}");
    // the prompt reached the model as it was given
    assert_eq!(
        w.prompts().last().map(String::as_str),
        Some("What is the answer?")
    );
    // it went through the broker and is recorded as a completed task
    let (_, doc) = w.run_json(&["status"]);
    let job = &doc["jobs"][0];
    assert_eq!(job["status"], "completed", "{doc}");
    assert_eq!(job["kind"], "task");
    assert_eq!(job["backend"], "broker");
    assert_eq!(w.broker()["running"], true);
}

#[test]
fn a_write_task_changes_files_in_the_cwd_workspace() {
    // two repositories: the caller's and the target
    let w = World::with_workspace(TempWorkspace::new().git_repo());
    let target = TempWorkspace::new().git_repo();
    w.mock.push(Reply::apply_patch(
        "call-p",
        "*** Begin Patch\n*** Add File: notes/hello.txt\n+hello from codex\n*** End Patch\n",
    ));
    w.mock.push(Reply::text("Created notes/hello.txt."));
    let cwd = target.path().to_string_lossy().into_owned();
    let (out, doc) = w.run_json(&["task", "--write", "--cwd", &cwd, "create the note"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["final_message"], "Created notes/hello.txt.", "{doc}");
    // the file landed in the --cwd workspace, not in the caller's
    assert_eq!(
        target.read("notes/hello.txt").as_deref(),
        Some("hello from codex\n")
    );
    assert!(w.ws.read("notes/hello.txt").is_none());
    let touched = doc["touched_files"].as_array().cloned().unwrap_or_default();
    assert!(
        touched
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.ends_with("notes/hello.txt"))),
        "{doc}"
    );
    // the job belongs to the target workspace's store
    let (_, listed) = w.run_json(&["status", "--cwd", &cwd]);
    assert_eq!(listed["jobs"][0]["write"], true, "{listed}");
    let (_, here) = w.run_json(&["status"]);
    assert_eq!(here["jobs"].as_array().map(Vec::len), Some(0), "{here}");
}

#[test]
fn a_background_task_runs_in_a_detached_worker() {
    let w = World::new();
    w.mock
        .push(Reply::text("Background answer.").delayed(Duration::from_millis(500)));
    let out = w.run(&["task", "--background", "work in the background"]);
    assert_eq!(out.code, Some(0), "{out}");
    let id = out.stdout.trim().to_owned();
    assert!(id.starts_with("job-"), "{out}");
    let job = w.wait_job(&id);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["backend"], "broker", "{job}");
    assert!(job["pid"].is_null(), "{job}");
    // result by a unique prefix
    let prefix = &id[..id.len() - 3];
    let result = w.run(&["result", prefix]);
    assert_eq!(result.code, Some(0), "{result}");
    assert_eq!(result.stdout, "Background answer.\n");
    // the worker wrote its log
    let log =
        std::fs::read_to_string(job["log_file"].as_str().unwrap_or_default()).unwrap_or_default();
    assert!(log.contains("completed"), "{log}");
}

#[test]
fn resume_last_and_resume_by_id_reach_the_same_thread() {
    let w = World::new();
    w.mock.push(Reply::text("first answer"));
    let (out, first) = w.run_json(&["task", "remember the word PAPAYA"]);
    assert_eq!(out.code, Some(0), "{out}");
    let thread = first["thread_id"].as_str().unwrap_or_default().to_owned();
    assert!(!thread.is_empty(), "{first}");

    w.mock.push(Reply::text("second answer"));
    let (out, second) = w.run_json(&["task", "--resume-last", "what was the word?"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(second["thread_id"], thread.as_str(), "{second}");
    let request = w.mock.responses_requests().pop().expect("a request");
    let texts = request.user_texts();
    assert!(texts.iter().any(|t| t.contains("PAPAYA")), "{texts:?}");
    assert_eq!(texts.last().map(String::as_str), Some("what was the word?"));

    w.mock.push(Reply::text("third answer"));
    let (out, third) = w.run_json(&["task", "--resume", &thread, "and again?"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(third["thread_id"], thread.as_str(), "{third}");
    let texts = w
        .mock
        .responses_requests()
        .pop()
        .expect("a request")
        .user_texts();
    assert!(texts.iter().any(|t| t.contains("PAPAYA")), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("what was the word?")),
        "{texts:?}"
    );

    // a fresh task starts a new thread
    let (out, fresh) = w.run_json(&["task", "--fresh", "new topic"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_ne!(fresh["thread_id"], thread.as_str(), "{fresh}");
}

/// Starts a background task on a hanging reply; returns its id once its turn runs.
fn start_hanging_job(w: &World, extra: &[&str]) -> String {
    w.mock.push(Reply::hang());
    let mut args = vec!["task", "--background"];
    args.extend_from_slice(extra);
    args.push("hang for a while");
    let out = w.run(&args);
    assert_eq!(out.code, Some(0), "{out}");
    let id = out.stdout.trim().to_owned();
    wait_for("the hanging turn to reach the model", COMMAND, || {
        w.mock.open_streams() > 0
    });
    wait_for("the job to record its turn", COMMAND, || {
        let job = w.job(&id);
        job["status"] == "running" && job["turn_id"].is_string()
    });
    id
}

#[test]
fn cancelling_a_hanging_background_job_leaves_nothing_running() {
    let w = World::new();
    let id = start_hanging_job(&w, &[]);
    let job = w.job(&id);
    let worker = job["pid"].as_u64().expect("the worker's pid") as u32;
    let mut guard = GroupGuard::new(Some(worker));
    // a running job has no result yet, and says so
    let pending = w.run(&["result", &id]);
    assert_eq!(pending.code, Some(3), "{pending}");
    assert!(pending.stderr.contains("still running"), "{pending}");

    let (out, doc) = w.run_json(&["cancel", &id]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["status"], "cancelled", "{doc}");
    // the turn was interrupted through the broker, then the worker stopped
    assert_eq!(doc["interrupt"], "turn interrupted", "{doc}");
    let job = w.job(&id);
    assert_eq!(job["status"], "cancelled", "{job}");
    // the worker is gone, and the turn was interrupted (codex closed the model stream)
    wait_for("the worker to exit", Duration::from_secs(10), || {
        !codex_agent::jobs::Worker::of(worker).is_alive()
    });
    guard.disarm();
    wait_for("the model stream to close", Duration::from_secs(30), || {
        w.mock.open_streams() == 0
    });
    // with the broker stopped, no codex process of this test is left
    shutdown_broker(&w);
    let home = w.home_str();
    if let Err(left) = wait_until_gone("CODEX_HOME", &home, Duration::from_secs(15)) {
        panic!(
            "processes left after cancel and broker shutdown:\n{}",
            describe(&left)
        );
    }
}

#[test]
fn cancelling_a_job_on_a_private_app_server_stops_codex_too() {
    let w = World::new();
    let id = start_hanging_job(&w, &["--no-broker"]);
    let job = w.job(&id);
    assert_eq!(job["backend"], "app-server", "{job}");
    let worker = job["pid"].as_u64().expect("the worker's pid") as u32;
    let _guard = GroupGuard::new(Some(worker));
    let out = w.run(&["cancel", &id, "--json"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(w.job(&id)["status"], "cancelled");
    let home = w.home_str();
    if let Err(left) = wait_until_gone("CODEX_HOME", &home, Duration::from_secs(15)) {
        panic!("processes left after cancel ({out}):\n{}", describe(&left));
    }
    assert_eq!(w.mock.open_streams(), 0);
}

#[test]
fn a_killed_worker_is_reported_failed() {
    let w = World::new();
    let id = start_hanging_job(&w, &[]);
    let worker = w.job(&id)["pid"].as_u64().expect("the worker's pid") as u32;
    let _guard = GroupGuard::new(Some(worker));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the worker");
    wait_for("the worker to die", Duration::from_secs(10), || {
        !codex_agent::jobs::Worker::of(worker).is_alive()
    });
    let job = w.job(&id);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap_or_default()
            .contains("worker exited"),
        "{job}"
    );
    let result = w.run(&["result", &id]);
    assert_eq!(result.code, Some(1), "{result}");
    assert!(result.stderr.contains("worker exited"), "{result}");
}

#[test]
fn two_companions_share_one_broker_at_the_same_time() {
    let w = World::new();
    w.mock.push_for_prompt(
        "alpha",
        Reply::text("answer for alpha").delayed(Duration::from_secs(2)),
    );
    w.mock.push_for_prompt(
        "beta",
        Reply::text("answer for beta").delayed(Duration::from_secs(2)),
    );
    // start the broker first so that both clients find it
    assert_eq!(w.run(&["task", "warm up"]).code, Some(0));
    let broker_pid = w.broker()["pid"].clone();
    let a = w.spawn(&["task", "alpha question", "--json"]);
    let b = w.spawn(&["task", "beta question", "--json"]);
    let (a, b) = (finish(a, &["alpha"]), finish(b, &["beta"]));
    assert_eq!(a.code, Some(0), "{a}");
    assert_eq!(b.code, Some(0), "{b}");
    let a: Value = serde_json::from_str(&a.stdout).expect("json");
    let b: Value = serde_json::from_str(&b.stdout).expect("json");
    assert_eq!(a["final_message"], "answer for alpha");
    assert_eq!(b["final_message"], "answer for beta");
    assert_eq!(a["backend"], "broker");
    assert_eq!(b["backend"], "broker");
    assert_ne!(a["thread_id"], b["thread_id"]);
    // one broker served both, without a restart
    let broker = w.broker();
    assert_eq!(broker["pid"], broker_pid, "{broker}");
    assert_eq!(broker["restarts"], 0, "{broker}");
}

#[test]
fn an_app_server_killed_under_the_broker_fails_the_turn_then_the_next_task_works() {
    let w = World::new();
    assert_eq!(w.run(&["task", "warm up"]).code, Some(0));
    w.mock.push(Reply::hang());
    let child = w.spawn(&["task", "this turn will lose its app-server", "--json"]);
    wait_for("the turn to reach the model", COMMAND, || {
        w.mock.open_streams() > 0
    });
    let broker = w.broker();
    let app_server = broker["app_server_pid"].as_u64().expect("app-server pid") as u32;
    kill_group(app_server);
    let out = finish(child, &["task (app-server killed)"]);
    assert_eq!(out.code, Some(1), "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["error_kind"], "turn_incomplete", "{doc}");
    assert!(
        doc["error"].as_str().unwrap_or_default().contains("exited"),
        "{doc}"
    );
    let job_id = doc["job_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(w.job(&job_id)["status"], "failed");
    // the broker starts a new app-server for the next task
    w.mock.push(Reply::text("back to work"));
    let out = w.run(&["task", "after the crash"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, "back to work\n");
    let broker = w.broker();
    assert_eq!(broker["restarts"], 1, "{broker}");
    assert_ne!(broker["app_server_pid"], json!(app_server), "{broker}");
}

#[test]
fn eight_concurrent_background_jobs_lose_no_record() {
    let w = World::new();
    assert_eq!(w.run(&["task", "warm up"]).code, Some(0));
    let children: Vec<Child> = (0..8)
        .map(|i| w.spawn(&["task", "--background", &format!("job number {i}")]))
        .collect();
    let mut ids = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = finish(child, &["task --background"]);
        assert_eq!(out.code, Some(0), "job {i}: {out}");
        ids.push(out.stdout.trim().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "{ids:?}");
    let (out, _) = w.run_json(&["status", "--wait", "--timeout-ms", "110000"]);
    assert_eq!(out.code, Some(0), "{out}");
    let (_, doc) = w.run_json(&["status", "--all"]);
    let jobs = doc["jobs"].as_array().cloned().unwrap_or_default();
    // 8 background jobs and the warm-up task
    assert_eq!(jobs.len(), 9, "{doc}");
    for id in &ids {
        let job = jobs
            .iter()
            .find(|j| j["id"] == id.as_str())
            .expect("listed");
        assert_eq!(job["status"], "completed", "{job}");
        let n = job["title"]
            .as_str()
            .unwrap_or_default()
            .replace("job number ", "");
        let (_, result) = w.run_json(&["result", id]);
        assert_eq!(
            result["final_message"],
            format!("echo: job number {n}"),
            "{result}"
        );
    }
}

fn dirty_repo() -> TempWorkspace {
    let ws = TempWorkspace::new().git_repo();
    ws.write("README.md", "# test workspace\n\nA new paragraph.\n");
    ws.write(
        "src/lib.rs",
        "pub fn add(a: i32, b: i32) -> i32 { a - b }\n",
    );
    ws
}

#[test]
fn a_native_review_of_a_dirty_repo_is_rendered() {
    let w = World::with_workspace(dirty_repo());
    let lib =
        w.ws.path()
            .join("src/lib.rs")
            .to_string_lossy()
            .into_owned();
    let review = json!({
        "findings": [
            {"title": "Minor wording", "body": "The paragraph is vague.", "confidence_score": 0.4,
             "priority": 3, "code_location": {"absolute_file_path": w.ws.path().join("README.md"),
             "line_range": {"start": 3, "end": 3}}},
            {"title": "add subtracts", "body": "`add` returns a - b.", "confidence_score": 0.95,
             "priority": 0, "code_location": {"absolute_file_path": lib, "line_range": {"start": 1, "end": 1}}}
        ],
        "overall_correctness": "patch is incorrect",
        "overall_explanation": "add is wrong.",
        "overall_confidence_score": 0.9
    });
    w.mock
        .set_responder(move |_| Reply::text(review.to_string()));
    let (out, doc) = w.run_json(&["review"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["scope"]["scope"], "working-tree", "{doc}");
    let text = doc["rendered"].as_str().unwrap_or_default();
    assert!(text.starts_with("add is wrong.\n"), "{doc}");
    assert!(text.contains("add subtracts"), "{doc}");
    assert!(text.contains("src/lib.rs:1"), "{doc}");
    let out = w.run(&["review", "--scope", "working-tree"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("add subtracts"), "{out}");
    // the job is a review
    let (_, status) = w.run_json(&["status"]);
    assert_eq!(status["jobs"][0]["kind"], "review", "{status}");
    assert_eq!(status["jobs"][0]["status"], "completed", "{status}");
}

fn adversarial_answer() -> Value {
    let finding = |severity: &str, title: &str, confidence: f64| {
        json!({"severity": severity, "title": title, "body": format!("{title} explained"),
               "file": "src/lib.rs", "line_start": 1, "line_end": 1,
               "confidence": confidence, "recommendation": format!("fix {title}")})
    };
    json!({
        "verdict": "needs-attention",
        "summary": "The change breaks addition.",
        "findings": [finding("low", "naming", 0.3), finding("critical", "wrong sign", 0.9),
                     finding("medium", "no test", 0.6)],
        "next_steps": ["fix add", "add a unit test"]
    })
}

#[test]
fn an_adversarial_review_is_rendered_sorted_by_severity() {
    let w = World::with_workspace(dirty_repo());
    w.mock.push(Reply::text(adversarial_answer().to_string()));
    let out = w.run(&["adversarial-review", "look", "at", "arithmetic"]);
    assert_eq!(out.code, Some(0), "{out}");
    let text = &out.stdout;
    assert!(text.starts_with("Verdict: needs-attention\n"), "{out}");
    let (c, m, l) = (
        text.find("[critical] wrong sign").expect("critical"),
        text.find("[medium] no test").expect("medium"),
        text.find("[low] naming").expect("low"),
    );
    assert!(c < m && m < l, "{text}");
    assert!(
        text.contains("Next steps:\n- fix add\n- add a unit test"),
        "{text}"
    );
    // the request carried the schema, the focus and the diff
    let request = w.mock.responses_requests().pop().expect("a request");
    let format = request.text_format().cloned().unwrap_or_default();
    assert_eq!(format["type"], "json_schema", "{format}");
    assert!(
        format["schema"]["properties"]["verdict"].is_object(),
        "{format}"
    );
    let prompt = request.last_user_text().unwrap_or_default();
    assert!(prompt.contains("Focus: look at arithmetic"), "{prompt}");
    assert!(prompt.contains("a - b"), "{prompt}");

    w.mock.push(Reply::text(adversarial_answer().to_string()));
    let (out, doc) = w.run_json(&["adversarial-review"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["valid"], true, "{doc}");
    assert_eq!(doc["review"]["verdict"], "needs-attention");
    let (_, status) = w.run_json(&["status"]);
    assert_eq!(status["jobs"][0]["kind"], "adversarial-review", "{status}");
}

#[test]
fn an_adversarial_answer_off_the_schema_is_shown_raw_with_the_reason() {
    let w = World::with_workspace(dirty_repo());
    let mut bad = adversarial_answer();
    bad["findings"][1]["severity"] = json!("urgent");
    w.mock.push(Reply::text(bad.to_string()));
    let out = w.run(&["adversarial-review"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .contains("findings[1].severity: \"urgent\" is not one of critical, high, medium, low"),
        "{out}"
    );
    assert!(out.stdout.contains("\"urgent\""), "{out}");
    w.mock.push(Reply::text("I think it is fine."));
    let (out, doc) = w.run_json(&["adversarial-review"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["valid"], false, "{doc}");
    assert!(
        doc["schema_error"]
            .as_str()
            .unwrap_or_default()
            .contains("not JSON"),
        "{doc}"
    );
    assert!(
        doc["rendered"]
            .as_str()
            .unwrap_or_default()
            .ends_with("I think it is fine.\n"),
        "{doc}"
    );
}

#[test]
fn setup_reports_codex_auth_and_broker() {
    let w = World::new();
    // the mock provider needs no OpenAI login: nothing to do although nothing is stored
    let (out, doc) = w.run_json(&["setup"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["codex"]["found"], true, "{doc}");
    assert_eq!(
        doc["codex"]["version"],
        codex_bridge_tests::PINNED_CODEX_VERSION,
        "{doc}"
    );
    assert_eq!(doc["codex"]["version_known"], true, "{doc}");
    assert_eq!(doc["auth"]["mode"], "other-provider", "{doc}");
    assert_eq!(doc["next"], "ok", "{doc}");
    assert_eq!(doc["broker"]["running"], false, "{doc}");

    // a provider that needs an OpenAI login, and none stored: advice to log in
    let config = w.home.config_toml().replace(
        "requires_openai_auth = false",
        "requires_openai_auth = true",
    );
    std::fs::write(w.home.config_path(), config).expect("rewrite config.toml");
    let (out, doc) = w.run_json(&["setup"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(doc["auth"]["mode"], "none", "{doc}");
    assert_eq!(doc["next"], "login", "{doc}");

    w.home
        .store_api_key("sk-test-0123456789")
        .expect("store an API key");
    let out = w.run(&["setup"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("signed in with an API key"), "{out}");
    assert!(out.stdout.contains("next:    ok"), "{out}");
    assert!(!out.stdout.contains("0123456789"), "{out}");
    // once a task ran, the broker is running
    assert_eq!(w.run(&["task", "hi"]).code, Some(0));
    let (_, doc) = w.run_json(&["setup"]);
    assert_eq!(doc["broker"]["running"], true, "{doc}");
    assert_eq!(doc["broker"]["app_server"], "ready", "{doc}");
}

#[test]
fn a_task_the_provider_rejects_reports_codex_auth_error() {
    let w = World::new();
    w.mock.push(Reply::http_status(401));
    let (out, doc) = w.run_json(&["task", "who am I"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(doc["error_kind"], "auth_rejected", "{doc}");
    let error = doc["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("unexpected status 401 Unauthorized"),
        "{doc}"
    );
    let job = w.job(doc["job_id"].as_str().unwrap_or_default());
    assert_eq!(job["status"], "failed", "{job}");
}

#[test]
fn a_codex_with_an_unknown_version_runs_a_task() {
    let w = World::new();
    let wrapper = codex_bridge_tests::VersionWrapper::new("codex-cli test");
    let run = |args: &[&str]| {
        let child = w
            .command(args)
            .env("CODEX_BIN", wrapper.path())
            .spawn()
            .expect("start codex-companion");
        finish(child, args)
    };
    let out = run(&["setup", "--json"]);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(doc["codex"]["version_known"], false, "{doc}");
    assert_eq!(doc["codex"]["version"], "unknown (codex-cli test)", "{doc}");
    assert_eq!(doc["next"], "ok", "{doc}");
    // through the broker, then through a private app-server
    for extra in [&[][..], &["--no-broker"][..]] {
        w.mock.push(Reply::text("unknown version, fine"));
        let mut args = vec!["task"];
        args.extend_from_slice(extra);
        args.push("hi");
        let out = run(&args);
        assert_eq!(out.code, Some(0), "{out}");
        assert_eq!(out.stdout, "unknown version, fine\n", "{out}");
    }
    let options = codex_asp::broker::BrokerOptions::new()
        .codex(wrapper.path())
        .codex_home(w.home.path())
        .socket_dir(w.state.path().join("broker"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(15),
            codex_asp::broker::shutdown(&options),
        )
        .await
    });
}

#[test]
fn a_turn_that_outlives_its_timeout_fails() {
    let w = World::new();
    w.mock.push(Reply::hang());
    let started = Instant::now();
    let (out, doc) = w.run_json(&["task", "--timeout", "3", "hang"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(doc["error_kind"], "timeout", "{doc}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let job = w.job(doc["job_id"].as_str().unwrap_or_default());
    assert_eq!(job["status"], "failed", "{job}");
}

#[test]
fn a_silent_app_server_fails_the_job_within_its_timeout_and_leaves_nothing() {
    let w = World::new();
    let bin = tempfile::tempdir().expect("a folder for the silent codex");
    let silent = codex_bridge_tests::silent::silent_codex(bin.path());
    let home = w.home_str();
    for (extra, background) in [
        (&[][..], false),
        (&["--no-broker"][..], false),
        (&["--no-broker"][..], true),
        (&[][..], true),
    ] {
        let mut args = vec!["task", "--timeout", "4", "--json"];
        args.extend_from_slice(extra);
        if background {
            args.push("--background");
        }
        args.push("hello");
        let started = Instant::now();
        let out = finish(
            w.command(&args)
                .env("CODEX_BIN", &silent)
                .spawn()
                .expect("start"),
            &args,
        );
        let (job, error) = if background {
            assert_eq!(out.code, Some(0), "{out}");
            let doc: Value = serde_json::from_str(&out.stdout).expect("JSON");
            let id = doc["job_id"].as_str().expect("a job id").to_owned();
            let job = w.wait_job(&id);
            let error = job["error"].as_str().unwrap_or_default().to_owned();
            (job, error)
        } else {
            assert_eq!(out.code, Some(1), "{out}");
            let doc: Value = serde_json::from_str(&out.stdout).expect("JSON");
            let id = doc["job_id"].as_str().map(str::to_owned);
            let id = id.unwrap_or_else(|| {
                // a start-up failure is reported before the job's outcome
                let (_, list) = w.run_json(&["status"]);
                list["jobs"][0]["id"].as_str().expect("a job").to_owned()
            });
            (
                w.job(&id),
                doc["error"].as_str().unwrap_or_default().to_owned(),
            )
        };
        let elapsed = started.elapsed();
        eprintln!("{args:?}: {elapsed:?}: {error}");
        assert_eq!(job["status"], "failed", "{args:?}: {job}");
        assert!(
            error.contains("did not answer initialize within"),
            "{args:?}: {error}\n{out}"
        );
        // the job's timeout bounded its start-up (generously: 4 s plus process start-up)
        assert!(elapsed < Duration::from_secs(60), "{args:?}: {elapsed:?}");
        // nothing of the job is left; a broker keeps its app-server until its own handshake
        // deadline, so stop it first
        if !extra.contains(&"--no-broker") {
            stop_broker_of(&w, &silent);
        }
        if let Err(left) = wait_until_gone("CODEX_HOME", &home, Duration::from_secs(15)) {
            panic!("{args:?}: processes left:\n{}", describe(&left));
        }
    }
}

/// Stops the broker of the codex at `codex` for this world.
fn stop_broker_of(world: &World, codex: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = codex_asp::broker::BrokerOptions::new()
        .codex(codex)
        .codex_home(world.home.path())
        .socket_dir(world.state.path().join("broker"));
    let stopped = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(15),
            codex_asp::broker::shutdown(&options),
        )
        .await
    });
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "stopping the broker: {stopped:?}"
    );
}

/// A reply of `n` text deltas, and the text they make.
fn chatty(n: usize) -> (Reply, String) {
    let pieces: Vec<String> = (0..n).map(|i| format!("{i},")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    (Reply::streamed(&refs), pieces.concat())
}

#[test]
fn a_chatty_turn_completes_through_the_broker_and_on_a_private_app_server() {
    let w = World::new();
    // through the broker: 200,000 deltas, far beyond the run's queues and the broker's client
    // queue; privately 50,000 (the same run logic, which the app-server tests drive with
    // 200,000)
    for (extra, n) in [(&[][..], 200_000), (&["--no-broker"][..], 50_000)] {
        let (reply, text) = chatty(n);
        w.mock.push(reply);
        let mut args = vec!["task"];
        args.extend_from_slice(extra);
        args.push("talk a lot");
        let started = Instant::now();
        let (out, doc) = w.run_json(&args);
        eprintln!("{extra:?}: {:?}", started.elapsed());
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_eq!(doc["status"], "completed", "{}", out.stderr);
        assert!(doc["final_message"] == text.as_str(), "{}", out.stderr);
    }
}

#[test]
fn bad_flags_and_bad_input_exit_2() {
    let w = World::new();
    for args in [
        &["task", "--resume-last", "--fresh", "x"][..],
        &["task", "--effort", "turbo", "x"],
        &["task", "--timeout", "0", "x"],
        &["task", ""],
        &["task"],
        &["task", "--prompt-file", "/definitely/missing"],
        &["task", "--cwd", "/definitely/missing", "x"],
        &["review", "--scope", "everything"],
        &["status", "job-does-not-exist"],
        &["frobnicate"],
    ] {
        let out = w.run(args);
        assert_eq!(out.code, Some(2), "{out}");
        assert!(!out.stderr.trim().is_empty(), "{out}");
    }
    // a review needs a git repository
    let outside = TempWorkspace::outside_git();
    let cwd = outside.path().to_string_lossy().into_owned();
    let out = w.run(&["review", "--cwd", &cwd]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("not inside a git repository"), "{out}");
    // nothing ran
    assert_eq!(w.mock.request_count(), 0);
    let (_, doc) = w.run_json(&["status", "--all"]);
    assert_eq!(doc["jobs"].as_array().map(Vec::len), Some(0), "{doc}");
    // --json errors are JSON too
    let (out, doc) = w.run_json(&["result", "job-nope"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(doc["ok"], false, "{doc}");
}

#[test]
fn the_prompt_can_come_from_a_file_or_stdin() {
    use std::io::Write as _;
    let w = World::new();
    let file = w.ws.write("prompt.txt", "prompt from a file\n");
    let out = w.run(&["task", "--prompt-file", &file.to_string_lossy()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(w.prompts().iter().any(|p| p.contains("prompt from a file")));
    let mut child = w
        .command(&["task"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start codex-companion");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"prompt from stdin\n")
        .expect("write the prompt");
    let out = finish(child, &["task < stdin"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, "echo: prompt from stdin\n", "{out}");
}

#[test]
fn cancelling_a_foreground_task_from_another_process() {
    let w = World::new();
    w.mock.push(Reply::hang());
    let child = w.spawn(&["task", "--json", "wait forever"]);
    wait_for("the turn to reach the model", COMMAND, || {
        w.mock.open_streams() > 0
    });
    wait_for("the job to record its turn", COMMAND, || {
        let (_, doc) = w.run_json(&["status"]);
        doc["jobs"][0]["turn_id"].is_string()
    });
    // no id: the newest running job
    let out = w.run(&["cancel"]);
    assert_eq!(out.code, Some(0), "{out}");
    let task = finish(child, &["task (cancelled)"]);
    assert_eq!(task.code, Some(1), "{task}");
    let doc: Value = serde_json::from_str(&task.stdout).expect("json");
    assert_eq!(doc["status"], "cancelled", "{doc}");
    assert_eq!(
        w.job(doc["job_id"].as_str().unwrap_or_default())["status"],
        "cancelled"
    );
    wait_for("the model stream to close", Duration::from_secs(30), || {
        w.mock.open_streams() == 0
    });
    // nothing left to cancel
    let out = w.run(&["cancel"]);
    assert_eq!(out.code, Some(1), "{out}");
}

#[test]
fn a_branch_review_against_a_base_with_a_model() {
    let w = World::with_workspace(TempWorkspace::new().git_repo());
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(w.ws.path())
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["checkout", "--quiet", "-b", "feature"]);
    w.ws.write("feature.txt", "a feature\n");
    git(&["add", "feature.txt"]);
    git(&["commit", "--quiet", "-m", "add a feature"]);
    let review = json!({"findings": [], "overall_correctness": "patch is correct",
        "overall_explanation": "Fine.", "overall_confidence_score": 0.8});
    w.mock
        .set_responder(move |_| Reply::text(review.to_string()));
    let (out, doc) = w.run_json(&["review", "--base", "main", "--model", "gpt-5.4"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        doc["scope"],
        json!({"scope": "branch", "base": "main"}),
        "{doc}"
    );
    // codex renders the review itself (the `exitedReviewMode` item): the explanation, then
    // the findings
    assert_eq!(doc["rendered"], "Fine.\n", "{doc}");
    let models: Vec<String> = w
        .mock
        .responses_requests()
        .iter()
        .filter_map(|r| r.model().map(str::to_owned))
        .collect();
    assert!(models.iter().any(|m| m == "gpt-5.4"), "{models:?}");
    // a clean tree: auto reviews the branch
    let (out, doc) = w.run_json(&["review"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["scope"]["scope"], "branch", "{doc}");
    let out = w.run(&["review", "--base", "no-such-branch"]);
    assert_eq!(out.code, Some(2), "{out}");
}

#[test]
fn without_the_broker_a_private_app_server_runs_the_task() {
    let w = World::new();
    w.mock.push(Reply::text("private answer"));
    let child = w
        .command(&["task", "--json", "no broker please"])
        .env("CODEX_COMPANION_NO_BROKER", "1")
        .spawn()
        .expect("start codex-companion");
    let out = finish(child, &["task (CODEX_COMPANION_NO_BROKER=1)"]);
    assert_eq!(out.code, Some(0), "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(doc["backend"], "app-server", "{doc}");
    assert_eq!(doc["final_message"], "private answer", "{doc}");
    assert_eq!(w.broker()["running"], false);
    // the private app-server went away with the companion
    let home = w.home_str();
    if let Err(left) = wait_until_gone("CODEX_HOME", &home, Duration::from_secs(15)) {
        panic!("processes left:\n{}", describe(&left));
    }
}

/// Runs a command with `CODEX_BIN` naming a codex that does not exist.
fn without_codex(w: &World, args: &[&str]) -> Out {
    let child = w
        .command(args)
        .env("CODEX_BIN", "/no/such/codex")
        .spawn()
        .expect("start codex-companion");
    finish(child, args)
}

#[test]
fn a_missing_codex_is_reported_once_and_stored_once() {
    let w = World::new();
    let missing = |args: &[&str]| without_codex(&w, args);
    let out = missing(&["task", "hi"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stderr.matches("not found").count(), 1, "{out}");
    assert!(out.stderr.contains("/no/such/codex"), "{out}");
    let (out, doc) = {
        let args = ["task", "again", "--json"];
        let out = missing(&args);
        let doc: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{out}"));
        (out, doc)
    };
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stderr.matches("not found").count(), 1, "{out}");
    let error = doc["error"].as_str().unwrap_or_default();
    assert_eq!(error.matches("not found").count(), 1, "{doc}");
    // both job records (and their logs) hold the chain once
    let (_, doc) = w.run_json(&["status", "--all"]);
    let jobs = doc["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(jobs.len(), 2, "{doc}");
    for job in &jobs {
        assert_eq!(job["status"], "failed", "{job}");
        let error = job["error"].as_str().unwrap_or_default();
        assert_eq!(error.matches("not found").count(), 1, "{job}");
        let log = std::fs::read_to_string(job["log_file"].as_str().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(log.matches("not found").count(), 1, "{log}");
    }
    assert_eq!(w.mock.request_count(), 0);
}

#[test]
fn hand_edited_job_records_stay_inside_the_store() {
    let w = World::new();
    // a (failed) job record, without running codex
    let out = without_codex(&w, &["task", "--json", "x"]);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let id = doc["job_id"].as_str().unwrap_or_default().to_owned();
    let id = if id.is_empty() {
        let (_, doc) = w.run_json(&["status", "--all"]);
        doc["jobs"][0]["id"].as_str().unwrap_or_default().to_owned()
    } else {
        id
    };
    assert!(id.starts_with("job-"), "{out}");
    let record_path = std::fs::read_dir(w.state.path().join("workspaces"))
        .expect("workspaces")
        .flatten()
        .map(|e| e.path().join("jobs").join(format!("{id}.json")))
        .find(|p| p.is_file())
        .expect("the job record");
    let mut record: Value =
        serde_json::from_str(&std::fs::read_to_string(&record_path).expect("read")).expect("json");
    record["id"] = json!("../../x");
    record["status"] = json!("running");
    record["pid"] = json!(u32::MAX - 1);
    std::fs::write(&record_path, record.to_string()).expect("write");
    let listing = |root: &Path| -> Vec<PathBuf> {
        let mut all = Vec::new();
        let mut todo = vec![root.to_owned()];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path.clone());
                }
                all.push(path);
            }
        }
        all.sort();
        all
    };
    let store_dir = record_path
        .parent()
        .and_then(Path::parent)
        .expect("store dir")
        .to_owned();
    let outside = |all: Vec<PathBuf>| -> Vec<PathBuf> {
        all.into_iter()
            .filter(|p| !p.starts_with(&store_dir))
            .collect()
    };
    let before = outside(listing(w.state.path()));
    let out = w.run(&["status", "--all"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("is not its file name"), "{out}");
    let out = w.run(&["status", &id]);
    assert_eq!(out.code, Some(2), "{out}");
    let out = w.run(&["status", "../../x"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("is not a job id"), "{out}");
    assert_eq!(outside(listing(w.state.path())), before);
    assert!(!w.state.path().join("workspaces/x.json").exists());
}

#[test]
fn a_reader_that_goes_away_is_no_panic_and_the_job_is_kept() {
    let w = World::new();
    w.mock.push(Reply::text("Nobody reads this."));
    let mut child = w.spawn(&["task", "Say something", "--json"]);
    // the reader closes the pipe before the answer is printed (`codex-companion ... | head -c0`)
    drop(child.stdout.take());
    let out = finish(child, &["task"]);
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert_eq!(out.code, Some(0), "{out}");
    let (_, doc) = w.run_json(&["status"]);
    assert_eq!(doc["jobs"][0]["status"], "completed", "{doc}");
}

// ---------------------------------------------------------------------------------------
// the realistic home: shell snapshot on, a slow login profile that leaves a child behind

/// Waits until codex's shell snapshot ran the slow profile of the world's home.
fn wait_for_profile_child(w: &World) {
    let user_home = w
        .home
        .user_home()
        .expect("a realistic home")
        .to_string_lossy()
        .into_owned();
    wait_for("codex to run the slow login profile", COMMAND, || {
        !processes_with_env("HOME", &user_home).is_empty()
    });
}

/// Fails (after killing them) when processes of the world's home survive.
fn assert_home_is_quiet(w: &World, after: &str) {
    if let Err(left) = wait_until_home_is_quiet_blocking(&w.home, Duration::from_secs(15)) {
        kill_all_of(&w.home);
        panic!("processes survived {after}:\n{left}");
    }
}

#[test]
fn realistic_home_cancelling_a_background_job_on_the_broker_leaves_nothing_running() {
    let w = World::realistic();
    let id = start_hanging_job(&w, &[]);
    wait_for_profile_child(&w);
    let worker = w.job(&id)["pid"].as_u64().expect("the worker's pid") as u32;
    let _guard = GroupGuard::new(Some(worker));
    let (out, doc) = w.run_json(&["cancel", &id]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["status"], "cancelled", "{doc}");
    wait_for("the worker to exit", Duration::from_secs(15), || {
        !codex_agent::jobs::Worker::of(worker).is_alive()
    });
    // the broker's app-server (and what its snapshot shell left) lives until the broker stops
    shutdown_broker(&w);
    assert_home_is_quiet(&w, "cancel and broker shutdown");
}

#[test]
fn realistic_home_cancelling_a_private_background_job_leaves_nothing_running() {
    let w = World::realistic();
    let id = start_hanging_job(&w, &["--no-broker"]);
    wait_for_profile_child(&w);
    let worker = w.job(&id)["pid"].as_u64().expect("the worker's pid") as u32;
    let _guard = GroupGuard::new(Some(worker));
    let (out, doc) = w.run_json(&["cancel", &id]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(doc["status"], "cancelled", "{doc}");
    assert_home_is_quiet(&w, "cancelling a background job on a private app-server");
}

#[test]
fn realistic_home_a_foreground_timeout_leaves_nothing_running() {
    let w = World::realistic();
    w.mock.push(Reply::hang());
    let (out, doc) = w.run_json(&["task", "--no-broker", "--timeout", "8", "hang"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(doc["error_kind"], "timeout", "{doc}");
    assert_home_is_quiet(&w, "a foreground task that timed out");
}

#[test]
fn realistic_home_cancelling_a_foreground_task_leaves_nothing_running() {
    let w = World::realistic();
    w.mock.push(Reply::hang());
    let child = w.spawn(&["task", "--no-broker", "--json", "wait forever"]);
    wait_for("the turn to reach the model", COMMAND, || {
        w.mock.open_streams() > 0
    });
    wait_for_profile_child(&w);
    let out = w.run(&["cancel"]);
    assert_eq!(out.code, Some(0), "{out}");
    let task = finish(child, &["task (cancelled)"]);
    assert_eq!(task.code, Some(1), "{task}");
    assert_home_is_quiet(&w, "cancelling a foreground task");
}
