//! End-to-end tests of `codex_asp::AspBackend` and the app-server client on the real, pinned
//! codex binary against the mock Responses API on 127.0.0.1.
//!
//! Every test fails (never skips) when the pinned codex is missing.
//!
//! The garbage-line case (a frame that is not JSON-RPC is reported and skipped) is covered
//! at the connection level by `codex-asp/tests/connection.rs`
//! (`garbage_is_reported_and_skipped`) and inside a running turn by the unit test
//! `backend::tests::garbage_inside_a_turn_is_skipped` of codex-asp.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codex_asp::approval::{ChannelHandler, Decision};
use codex_asp::backend::{AspBackendOptions, BackendError};
use codex_asp::protocol::{
    CommandExec, CommandExecParams, ModelList, ModelListParams, ReviewTarget,
};
use codex_asp::transport::TransportOptions;
use codex_asp::transport::ws::{WsAuth, WsServer, WsServerOptions};
use codex_asp::{AspBackend, Error as AspError};
use codex_bridge_tests::home::ENV_TO_REMOVE;
use codex_bridge_tests::procs::{
    kill_all_of, processes_with_env, wait_until_gone_async, wait_until_home_is_quiet,
};
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace, pinned_codex};
use codex_core::event::{DeltaKind, FileChangeKind, ItemStatus};
use codex_core::process::CodexCommand;
use codex_core::{
    ApprovalPolicy, AuthMode, Backend, CodexBinary, Error, Event, ExitSummary, Feature,
    ItemDetails, SandboxMode, TaskSpec, ThreadId, TurnId,
};
use serde_json::{Value, json};

/// Generous bound for one turn against the mock (a turn takes well under a second).
const TURN: Duration = Duration::from_secs(60);

/// The pinned codex, probed once per test binary.
async fn pinned() -> CodexBinary {
    codex_bridge_tests::pinned_binary().await
}

/// Options running the app-server with `home` as its `CODEX_HOME` and a clean environment.
fn options(home: &CodexHome) -> AspBackendOptions {
    let mut options = AspBackendOptions::default()
        .envs(home.env())
        .default_timeout(TURN)
        .client_info("codex-bridge-tests", "0.1.0");
    for key in ENV_TO_REMOVE {
        options = options.env_remove(*key);
    }
    options
}

async fn spawn(options: AspBackendOptions) -> AspBackend {
    AspBackend::spawn(pinned().await, options)
        .await
        .unwrap_or_else(|e| panic!("starting the app-server: {e}"))
}

/// Reads every event of a run, then its outcome.
async fn collect(
    mut run: codex_core::Run,
) -> (Vec<Event>, codex_core::Result<codex_core::TurnOutcome>) {
    let mut events = Vec::new();
    while let Some(e) = run.next_event().await {
        events.push(e);
    }
    (events, run.outcome().await)
}

fn task(ws: &TempWorkspace, prompt: &str) -> TaskSpec {
    TaskSpec::new(prompt).cwd(ws.path())
}

fn home_str(home: &CodexHome) -> String {
    home.path().to_string_lossy().into_owned()
}

async fn assert_no_process_left(home: &CodexHome) {
    let home = home_str(home);
    if let Err(pids) = wait_until_gone_async("CODEX_HOME", &home, Duration::from_secs(5)).await {
        panic!("processes with CODEX_HOME={home} survived: {pids:?}");
    }
}

/// Answers every server request with one decision and records what was asked.
#[derive(Clone)]
struct Recorder {
    handler: ChannelHandler,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Recorder {
    fn new(decision: Decision) -> Recorder {
        let (handler, mut requests) = ChannelHandler::new(16);
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Some(pending) = requests.recv().await {
                let request = pending.request();
                record
                    .lock()
                    .unwrap()
                    .push((request.method().to_owned(), request.params().clone()));
                pending.respond(decision.clone());
            }
        });
        Recorder { handler, seen }
    }

    fn seen(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

fn completed_items(events: &[Event]) -> Vec<&ItemDetails> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ItemCompleted { item } => Some(&item.details),
            _ => None,
        })
        .collect()
}

fn command_item(events: &[Event]) -> (String, String, ItemStatus) {
    completed_items(events)
        .into_iter()
        .find_map(|d| match d {
            ItemDetails::CommandExecution {
                command,
                aggregated_output,
                status,
                ..
            } => Some((command.clone(), aggregated_output.clone(), *status)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no command item in {events:#?}"))
}

// ---------------------------------------------------------------------------------------
// handshake and plain turns

#[tokio::test(flavor = "multi_thread")]
async fn handshake_reports_the_server() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let backend = spawn(options(&home)).await;
    let info = backend.server_info().expect("spawn performs the handshake");
    // the version of the codex under test (CODEX_BIN may name another than the pinned one)
    let version = pinned().await.version().to_string();
    assert!(
        info.user_agent
            .starts_with(&format!("codex-bridge-tests/{version}")),
        "{}",
        info.user_agent
    );
    assert_eq!(info.codex_version(), Some(version.as_str()));
    assert_eq!(info.codex_home.as_deref(), Some(home_str(&home).as_str()));
    assert_eq!(backend.kind(), codex_core::BackendKind::AppServer);
    assert!(
        backend
            .connection()
            .process()
            .and_then(|p| p.pid())
            .is_some()
    );
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_deltas_arrive_in_order() {
    let mock = MockModel::start().await;
    mock.push(Reply::streamed(&["Hel", "lo", " world"]));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;

    let (events, outcome) = collect(backend.start(task(&ws, "Say hello")).await.unwrap()).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));

    assert_eq!(outcome.final_message.as_deref(), Some("Hello world"));
    assert_eq!(outcome.backend, codex_core::BackendKind::AppServer);
    let deltas: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Delta {
                item_id,
                kind: DeltaKind::AgentMessage,
                delta,
            } => Some((item_id.as_str(), delta.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        deltas,
        [("msg-1", "Hel"), ("msg-1", "lo"), ("msg-1", " world")]
    );
    // the order of the stream: thread, turn, deltas before the completed message, end
    assert!(
        matches!(&events[0], Event::ThreadStarted { thread_id } if *thread_id == outcome.thread_id)
    );
    let turn_started = events
        .iter()
        .position(|e| matches!(e, Event::TurnStarted { turn_id } if *turn_id == outcome.turn_id))
        .expect("turn started");
    let first_delta = events
        .iter()
        .position(|e| matches!(e, Event::Delta { .. }))
        .unwrap();
    let message_done = events
        .iter()
        .position(|e| matches!(e, Event::ItemCompleted { item } if matches!(item.details, ItemDetails::AgentMessage { .. })))
        .unwrap();
    assert!(turn_started < first_delta && first_delta < message_done);
    assert!(matches!(
        events.last(),
        Some(Event::TurnCompleted { usage: Some(u), .. }) if u.input_tokens == 10 && u.output_tokens == 5
    ));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::ThreadStarted { .. }))
            .count(),
        1
    );
    // the user message is an item of the turn
    assert!(
        completed_items(&events).contains(&&ItemDetails::UserMessage {
            text: "Say hello".into()
        })
    );
    let requests = mock.responses_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].last_user_text().as_deref(), Some("Say hello"));
    assert_eq!(requests[0].header("originator"), Some("codex-bridge-tests"));
}

/// How many text deltas the burst tests stream: far beyond a run's subscription queue
/// (`DEFAULT_SUBSCRIPTION_CAPACITY`, 16 Ki) and event queue.
const BURST: usize = 200_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_deltas_reaches_a_run_read_slower_than_codex_sends() {
    let mock = MockModel::start().await;
    let pieces: Vec<String> = (0..BURST).map(|i| format!("{i},")).collect();
    let expected = pieces.concat();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    mock.push(Reply::streamed(&refs));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home).default_timeout(Duration::from_secs(600))).await;
    let started = Instant::now();
    let mut run = backend.start(task(&ws, "Talk a lot")).await.unwrap();
    // slower than codex: nothing is read until the mock has sent the whole burst, then a
    // pause every 50 events
    mock.wait_for_requests(1, TURN).await.unwrap();
    while mock.open_streams() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the mock is still sending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut text = String::new();
    let mut events = 0usize;
    while let Some(event) = run.next_event().await {
        events += 1;
        if events.is_multiple_of(50) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Event::Delta {
            kind: DeltaKind::AgentMessage,
            delta,
            ..
        } = &event
        {
            text.push_str(delta);
        }
    }
    let outcome = run.outcome().await.unwrap_or_else(|e| panic!("{e}"));
    let stats = backend.connection().stats();
    eprintln!(
        "{BURST} deltas through codex in {:?}: {events} events read, {} merged, {} lagged",
        started.elapsed(),
        stats.coalesced_events,
        stats.lagged_events
    );
    assert!(
        text == expected,
        "the streamed text differs ({} bytes of {})",
        text.len(),
        expected.len()
    );
    assert_eq!(outcome.final_message.as_deref(), Some(expected.as_str()));
    assert_eq!(stats.lagged_events, 0);
}

/// The `turn` example of codex-asp, built once from this checkout.
fn turn_example() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/<profile>/deps/asp_e2e-<hash> -> target/<profile>/examples/turn
        let target = exe
            .ancestors()
            .nth(2)
            .ok_or("no target directory")?
            .join("examples")
            .join("turn");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let out = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "codex-asp", "--example", "turn"])
            .arg("--manifest-path")
            .arg(&manifest)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !out.status.success() || !target.is_file() {
            return Err(format!(
                "cargo build -p codex-asp --example turn failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(target)
    });
    match built {
        Ok(path) => path.clone(),
        Err(e) => panic!("the turn example is needed: {e}"),
    }
}

/// The `turn` example with `home`'s environment and `codex` as `CODEX_BIN`.
fn turn_command(codex: &std::path::Path, env: &[(String, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(turn_example());
    for key in ENV_TO_REMOVE {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().cloned())
        .env("CODEX_BIN", codex)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn the_turn_example_survives_a_burst_of_deltas() {
    let mock = MockModel::start().await;
    let pieces: Vec<String> = (0..BURST).map(|i| format!("{i},")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    mock.push(Reply::streamed(&refs));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let out = turn_command(&pinned_codex(), &home.env())
        .arg("--cd")
        .arg(ws.path())
        .args(["--timeout", "300", "talk a lot"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), out)
        .await
        .expect("the example ends")
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    assert!(
        stdout.ends_with(&format!("final message:\n{}\n", pieces.concat())),
        "{stderr}"
    );
    assert_no_process_left(&home).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_turn_example_bounds_a_silent_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let codex = codex_bridge_tests::silent::silent_codex(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let home = home.to_string_lossy().into_owned();
    let started = Instant::now();
    let out = turn_command(&codex, &[("CODEX_HOME".to_owned(), home.clone())])
        .args(["--timeout", "3", "hello"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the example ends")
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not answer initialize within") && stderr.contains("codex"),
        "{stderr}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2), "{stderr}");
    if let Err(pids) = wait_until_gone_async("CODEX_HOME", &home, Duration::from_secs(10)).await {
        panic!("the silent app-server survived: {pids:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reasoning_item_and_deltas() {
    let mock = MockModel::start().await;
    mock.push(Reply::reasoning("Weighing the options.", "Forty-two."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;

    let (events, outcome) = collect(backend.start(task(&ws, "Think")).await.unwrap()).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    assert_eq!(outcome.final_message.as_deref(), Some("Forty-two."));
    assert_eq!(
        outcome.reasoning_summary().as_deref(),
        Some("Weighing the options.")
    );
    let reasoning: String = events
        .iter()
        .filter_map(|e| match e {
            Event::Delta {
                kind: DeltaKind::Reasoning,
                item_id,
                delta,
            } if item_id == "rs-1" => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasoning, "Weighing the options.");
}

// ---------------------------------------------------------------------------------------
// approvals

/// A turn whose model runs `touch created.txt`, under approvalPolicy "untrusted".
async fn touch_turn(
    decision: Option<Decision>,
) -> (
    Vec<Event>,
    codex_core::Result<codex_core::TurnOutcome>,
    TempWorkspace,
    Vec<(String, Value)>,
    MockModel,
) {
    let mock = MockModel::start().await;
    mock.push(Reply::exec_command("call-1", "touch created.txt"));
    mock.push(Reply::text("Done."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let recorder = decision.map(Recorder::new);
    let mut opts = options(&home);
    if let Some(r) = &recorder {
        opts = opts.approval_handler(r.handler.clone());
    }
    let backend = spawn(opts).await;
    let spec = task(&ws, "Create the file")
        .approval(ApprovalPolicy::Untrusted)
        .sandbox(SandboxMode::WorkspaceWrite);
    let (events, outcome) = collect(backend.start(spec).await.unwrap()).await;
    let seen = recorder.map(|r| r.seen()).unwrap_or_default();
    (events, outcome, ws, seen, mock)
}

#[tokio::test(flavor = "multi_thread")]
async fn command_approval_accepted_runs_the_command() {
    let (events, outcome, ws, seen, _mock) = touch_turn(Some(Decision::Accept)).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    assert_eq!(outcome.final_message.as_deref(), Some("Done."));
    assert!(ws.path().join("created.txt").exists(), "the command ran");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let (method, params) = &seen[0];
    assert_eq!(method, "item/commandExecution/requestApproval");
    assert_eq!(params["itemId"], "call-1");
    assert!(
        params["command"]
            .as_str()
            .unwrap_or_default()
            .contains("touch created.txt"),
        "{params}"
    );
    let (command, _, status) = command_item(&events);
    assert!(command.contains("touch created.txt"), "{command}");
    assert_eq!(status, ItemStatus::Completed);
    // the request is visible in the event stream too
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Unknown { kind, raw }
        if kind == "item/commandExecution/requestApproval" && raw["params"]["itemId"] == "call-1"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn command_approval_declined_lets_the_turn_go_on() {
    let (events, outcome, ws, seen, mock) = touch_turn(Some(Decision::Decline)).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    assert_eq!(outcome.final_message.as_deref(), Some("Done."));
    assert!(
        !ws.path().join("created.txt").exists(),
        "the command did not run"
    );
    assert_eq!(seen.len(), 1);
    let (_, _, status) = command_item(&events);
    assert_eq!(status, ItemStatus::Declined);
    // the model was told and answered in a second request
    let requests = mock.responses_requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]
            .function_call_outputs()
            .iter()
            .any(|(id, _)| id == "call-1"),
        "{:?}",
        requests[1].function_call_outputs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn command_approval_cancelled_interrupts_the_turn() {
    let (events, outcome, ws, seen, _mock) = touch_turn(Some(Decision::Cancel)).await;
    let err = outcome.expect_err("a cancelled approval interrupts the turn");
    assert!(
        matches!(err, Error::Cancelled { thread_id: Some(_) }),
        "{err}"
    );
    assert!(!ws.path().join("created.txt").exists());
    assert_eq!(seen.len(), 1);
    assert!(
        matches!(
            events.last(),
            Some(Event::TurnInterrupted { turn_id: Some(_) })
        ),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_handler_declines() {
    let (events, outcome, ws, seen, _mock) = touch_turn(None).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    assert!(seen.is_empty());
    assert!(!ws.path().join("created.txt").exists());
    assert_eq!(command_item(&events).2, ItemStatus::Declined);
    assert_eq!(outcome.final_message.as_deref(), Some("Done."));
}

#[tokio::test(flavor = "multi_thread")]
async fn file_change_approval_accepted_writes_the_file() {
    let mock = MockModel::start().await;
    mock.push(Reply::apply_patch(
        "call-p",
        "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n",
    ));
    mock.push(Reply::text("Patched."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let recorder = Recorder::new(Decision::Accept);
    let backend = spawn(options(&home).approval_handler(recorder.handler.clone())).await;
    // a read-only sandbox makes codex ask before applying a patch
    let spec = task(&ws, "Add hello.txt")
        .approval(ApprovalPolicy::Untrusted)
        .sandbox(SandboxMode::ReadOnly);
    let (events, outcome) = collect(backend.start(spec).await.unwrap()).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    assert_eq!(ws.read("hello.txt").as_deref(), Some("hi\n"));
    let seen = recorder.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].0, "item/fileChange/requestApproval");
    assert_eq!(seen[0].1["itemId"], "call-p");
    let touched = outcome.touched_files();
    assert_eq!(touched.len(), 1, "{touched:?}");
    assert!(touched[0].ends_with("hello.txt"));
    assert!(completed_items(&events).iter().any(|d| matches!(d,
        ItemDetails::FileChange { changes, status: ItemStatus::Completed }
            if changes.len() == 1 && changes[0].kind == FileChangeKind::Add)));
}

// ---------------------------------------------------------------------------------------
// interrupt, steer

/// Reads events until the turn started; returns its id and the events read.
async fn until_turn_started(run: &mut codex_core::Run) -> (ThreadId, TurnId, Vec<Event>) {
    let mut events = Vec::new();
    let mut thread = None;
    while let Some(e) = run.next_event().await {
        if let Event::ThreadStarted { thread_id } = &e {
            thread = Some(thread_id.clone());
        }
        if let Event::TurnStarted {
            turn_id: Some(turn),
        } = &e
        {
            let turn = turn.clone();
            events.push(e);
            return (thread.expect("thread before turn"), turn, events);
        }
        events.push(e);
    }
    panic!("the run ended before its turn started: {events:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn steer_then_interrupt_a_hanging_turn() {
    let mock = MockModel::start().await;
    // a slow command gives time to steer; codex takes steered input at the next request
    mock.push(Reply::exec_command("call-1", "sleep 2"));
    mock.push(Reply::hang());
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let mut run = backend.start(task(&ws, "Wait forever")).await.unwrap();
    let (thread, turn, _) = until_turn_started(&mut run).await;
    mock.wait_for_requests(1, TURN)
        .await
        .expect("the model was asked");

    // steering a running turn adds a user message to it
    let steered = backend.steer(&thread, &turn, "also this").await.unwrap();
    assert_eq!(steered, turn);
    let requests = mock
        .wait_for_requests(2, TURN)
        .await
        .expect("the model was asked again");
    assert_eq!(requests[1].last_user_text().as_deref(), Some("also this"));

    // the second request hangs: interrupt it
    let asked = Instant::now();
    backend.interrupt(&thread, &turn).await.unwrap();
    let (events, outcome) = collect(run).await;
    let elapsed = asked.elapsed();
    let err = outcome.expect_err("an interrupted turn is not a success");
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(
        matches!(events.last(), Some(Event::TurnInterrupted { turn_id: Some(t) }) if *t == turn),
        "{events:#?}"
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(
        completed_items(&events).contains(&&ItemDetails::UserMessage {
            text: "also this".into()
        }),
        "{events:#?}"
    );
    mock.wait_for_streams_closed(Duration::from_secs(5))
        .await
        .expect("the interrupted turn gave up its model stream");
}

#[tokio::test(flavor = "multi_thread")]
async fn steer_without_an_active_turn_is_a_typed_error() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("ok"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let outcome = backend.run(task(&ws, "hi")).await.unwrap();
    let turn = outcome
        .turn_id
        .clone()
        .expect("the app-server reports turn ids");
    let err = backend
        .steer(&outcome.thread_id, &turn, "too late")
        .await
        .unwrap_err();
    match BackendError::from_core(&err) {
        Some(BackendError::NoActiveTurn {
            thread_id,
            turn_id,
            message,
        }) => {
            assert_eq!(*thread_id, outcome.thread_id);
            assert_eq!(*turn_id, turn);
            assert!(message.contains("no active turn"), "{message}");
        }
        other => panic!("{other:?}: {err}"),
    }
}

// ---------------------------------------------------------------------------------------
// threads: resume across restarts, fork, latest, review

#[tokio::test(flavor = "multi_thread")]
async fn resume_after_restarting_the_app_server() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("I will remember PINEAPPLE."));
    mock.push(Reply::text("The word was PINEAPPLE."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();

    let first = spawn(options(&home)).await;
    let outcome = first
        .run(task(&ws, "Remember the word PINEAPPLE"))
        .await
        .unwrap();
    let thread = outcome.thread_id.clone();
    // the thread is the newest of its workspace
    assert_eq!(
        first.latest_thread_for(ws.path()).await.unwrap(),
        Some(thread.clone())
    );
    drop(first);
    assert_no_process_left(&home).await;

    let second = spawn(options(&home)).await;
    let (events, outcome) = collect(
        second
            .resume(&thread, task(&ws, "Which word?"))
            .await
            .unwrap(),
    )
    .await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    assert_eq!(outcome.thread_id, thread);
    assert_eq!(
        outcome.final_message.as_deref(),
        Some("The word was PINEAPPLE.")
    );
    assert!(matches!(&events[0], Event::ThreadStarted { thread_id } if *thread_id == thread));
    let requests = mock.responses_requests();
    assert_eq!(requests.len(), 2);
    let texts = requests[1].user_texts();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Remember the word PINEAPPLE")),
        "{texts:#?}"
    );
    assert_eq!(requests[1].last_user_text().as_deref(), Some("Which word?"));
    // no deprecation notice: the thread was resumed without its turns
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Unknown { kind, .. } if kind == "deprecationNotice"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fork_carries_the_history_into_a_new_thread() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("Noted ALPHA."));
    mock.push(Reply::text("Forked answer."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let original = backend.run(task(&ws, "The code is ALPHA")).await.unwrap();
    let fork = backend.fork(&original.thread_id).await.unwrap();
    assert_ne!(fork, original.thread_id);

    let outcome = backend
        .resume(&fork, task(&ws, "What is the code?"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(outcome.thread_id, fork);
    assert_eq!(outcome.final_message.as_deref(), Some("Forked answer."));
    let requests = mock.responses_requests();
    let texts = requests[1].user_texts();
    assert!(
        texts.iter().any(|t| t.contains("The code is ALPHA")),
        "{texts:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn review_of_a_dirty_repository() {
    let mock = MockModel::start().await;
    let ws = TempWorkspace::new().git_repo();
    let readme = ws.write(
        "README.md",
        "# test workspace\nTODO: remove the debug flag\n",
    );
    let verdict = json!({
        "findings": [{
            "title": "Debug flag left in README",
            "body": "The README mentions a debug flag that should be removed.",
            "confidence_score": 0.9,
            "priority": 2,
            "code_location": {
                "absolute_file_path": readme,
                "line_range": {"start": 2, "end": 2}
            }
        }],
        "overall_correctness": "patch is incorrect",
        "overall_explanation": "A leftover TODO.",
        "overall_confidence_score": 0.8
    });
    mock.set_responder(move |_| Reply::text(verdict.to_string()));
    let home = CodexHome::new(&mock);
    let backend = spawn(options(&home)).await;
    let run = backend
        .review(ws.path(), ReviewTarget::UncommittedChanges)
        .await
        .unwrap();
    let (events, outcome) = collect(run).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    let exited = completed_items(&events)
        .into_iter()
        .find_map(|d| match d {
            ItemDetails::Unknown { kind, raw } if kind == "exitedReviewMode" => {
                raw["review"].as_str().map(str::to_owned)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exitedReviewMode item: {events:#?}"));
    assert!(exited.contains("Debug flag left in README"), "{exited}");
    let last = outcome.final_message.unwrap_or_default();
    assert!(last.contains("Debug flag left in README"), "{last}");
    // the review's model request saw the diff
    let requests = mock.responses_requests();
    assert!(!requests.is_empty());
}

// ---------------------------------------------------------------------------------------
// account, rate limits, model list, command/exec

#[tokio::test(flavor = "multi_thread")]
async fn account_with_and_without_a_stored_key() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);

    // no credentials, a provider that needs no OpenAI auth
    let backend = spawn(options(&home)).await;
    assert_eq!(
        backend.account().await.unwrap(),
        AuthMode::OtherProvider {
            name: "mock".into()
        }
    );
    // with the built-in OpenAI provider (no network: account/read is local)
    let openai = spawn(options(&home).args(["-c", "model_provider=\"openai\""])).await;
    assert_eq!(openai.account().await.unwrap(), AuthMode::None);
    drop((backend, openai));

    home.store_api_key("sk-test-0123456789").unwrap();
    // codex 0.169.0 reports no account for a provider with requires_openai_auth = false,
    // even with a stored key
    let backend = spawn(options(&home)).await;
    assert_eq!(
        backend.account().await.unwrap(),
        AuthMode::OtherProvider {
            name: "mock".into()
        }
    );
    let openai = spawn(options(&home).args(["-c", "model_provider=\"openai\""])).await;
    assert_eq!(openai.account().await.unwrap(), AuthMode::ApiKey);

    // rate limits need ChatGPT: a typed capability error, before any rate-limit request
    let err = openai.rate_limits().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::FeatureUnavailable {
                feature: Feature::RateLimits,
                auth: AuthMode::ApiKey
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("codex login"), "{err}");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn core_auth_detection_agrees_with_account_read() {
    // CodexBinary::auth reads the provider from config.toml and -c overrides; the
    // app-server's account/read knows it from the inside: they must agree
    let mock = MockModel::start().await;
    let codex = pinned().await;
    let plain = CodexHome::new(&mock);
    let gated = CodexHome::new(&mock).requires_openai_auth(true);
    let keyed = CodexHome::new(&mock).requires_openai_auth(true);
    keyed.store_api_key("sk-test-0123456789").unwrap();
    let openai = ("model_provider", "openai");
    let cases: [(&CodexHome, Option<(&str, &str)>); 5] = [
        (&plain, None),
        (&plain, Some(openai)),
        (&gated, None),
        (&keyed, None),
        (&keyed, Some(("model_provider", "ollama"))),
    ];
    for (home, over) in cases {
        let mut ctx = codex_core::AuthContext::new().envs(home.env());
        for key in ENV_TO_REMOVE {
            ctx = ctx.env_remove(*key);
        }
        let mut opts = options(home);
        if let Some((key, value)) = over {
            ctx = ctx.config(key, value);
            opts = opts.args(["-c".to_owned(), format!("{key}=\"{value}\"")]);
        }
        let ours = codex.auth(&ctx).await.unwrap();
        let backend = spawn(opts).await;
        let theirs = backend.account().await.unwrap();
        assert_eq!(ours, theirs, "{over:?} in {}", home.config_toml());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_login_is_auth_rejected_with_codex_text() {
    let mock = MockModel::start().await;
    let ws = TempWorkspace::new();
    mock.push(Reply::http_status(401));
    let home = CodexHome::new(&mock);
    let backend = spawn(options(&home)).await;
    let err = backend.run(task(&ws, "who am I")).await.unwrap_err();
    match &err {
        Error::AuthRejected {
            thread_id: Some(_),
            turn_id: Some(_),
            message,
        } => assert!(
            message.starts_with("unexpected status 401 Unauthorized"),
            "{message}"
        ),
        other => panic!("expected AuthRejected, got {other:?}"),
    }
    drop(backend);

    let keyed = CodexHome::new(&mock).env_key("CODEX_BRIDGE_TEST_MISSING_KEY");
    let backend = spawn(options(&keyed)).await;
    let err = backend.run(task(&ws, "no key")).await.unwrap_err();
    assert!(
        matches!(&err, Error::AuthRejected { message, .. }
            if message.contains("Missing environment variable: `CODEX_BRIDGE_TEST_MISSING_KEY`")),
        "{err:?}"
    );
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_server_with_an_unknown_version_runs_turns() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    for output in ["codex-cli test", "codex-cli 0.0.0-dev", ""] {
        let wrapper = codex_bridge_tests::VersionWrapper::new(output);
        let binary = CodexBinary::probe(wrapper.path()).await.unwrap();
        assert!(!binary.version().is_known(), "{output:?}");
        let backend = AspBackend::spawn(binary, options(&home)).await.unwrap();
        mock.push(Reply::text("unknown but fine"));
        let outcome = backend.run(task(&ws, "hi")).await.unwrap();
        assert_eq!(
            outcome.final_message.as_deref(),
            Some("unknown but fine"),
            "{output:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_without_chatgpt_are_refused_before_asking() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let backend = spawn(options(&home)).await;
    let before = backend.connection().stats();
    let err = backend.rate_limits().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::FeatureUnavailable {
                feature: Feature::RateLimits,
                ..
            }
        ),
        "{err}"
    );
    // the real server would have answered -32600 "chatgpt authentication required"
    assert!(codex_asp::backend::asp_error(&err).is_none());
    assert_eq!(
        backend.connection().stats().pending_requests,
        before.pending_requests
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn model_list_and_command_exec_offline() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let models = backend
        .call::<ModelList>(ModelListParams::default())
        .await
        .unwrap();
    assert!(!models.data.is_empty());
    assert!(
        models.data.iter().any(|m| m.id == "gpt-5.5"),
        "{:?}",
        models.data.iter().map(|m| &m.id).collect::<Vec<_>>()
    );

    let mut params = CommandExecParams::new(["echo", "hi"]);
    params.cwd = Some(ws.path().to_string_lossy().into_owned());
    let out = backend.call::<CommandExec>(params).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(mock.request_count(), 0, "both are answered offline");
}

// ---------------------------------------------------------------------------------------
// failures: the app-server dies, WebSocket auth

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_app_server_mid_turn_fails_everything_fast() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let process = backend
        .connection()
        .process()
        .cloned()
        .expect("a spawned backend has a process");
    let pgid = process.pid().expect("pid");
    let mut run = backend.start(task(&ws, "Hang")).await.unwrap();
    until_turn_started(&mut run).await;
    mock.wait_for_requests(1, TURN).await.unwrap();

    // freeze the app-server so that these calls stay pending, then kill it
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let pending: Vec<_> = (0..3)
        .map(|_| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.account().await })
        })
        .collect();
    while backend.connection().stats().pending_requests < 3 {
        tokio::task::yield_now().await;
    }
    let killed = Instant::now();
    process.kill();

    let (_, outcome) = collect(run).await;
    let run_elapsed = killed.elapsed();
    let err = outcome.unwrap_err();
    match &err {
        Error::ProcessExited { status, .. } => assert_eq!(*status, ExitSummary::Signal(9)),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("signal 9"), "{err}");
    for call in pending {
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::ProcessExited {
                    status: ExitSummary::Signal(9),
                    ..
                }
            ),
            "{err}"
        );
    }
    let elapsed = killed.elapsed();
    assert!(
        run_elapsed < Duration::from_secs(1),
        "the run took {run_elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "the calls took {elapsed:?}"
    );
    // later calls fail at once too
    let err = backend.account().await.unwrap_err();
    assert!(matches!(err, Error::ProcessExited { .. }), "{err}");
    drop(backend);
    assert_no_process_left(&home).await;
}

fn app_server_command(home: &CodexHome) -> CodexCommand {
    let mut command = CodexCommand::new(pinned_codex()).arg("app-server");
    for key in ENV_TO_REMOVE {
        command = command.env_remove(*key);
    }
    for (k, v) in home.env() {
        command = command.env(k, v);
    }
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_turn_with_a_token_and_401_without() {
    let mock = MockModel::start().await;
    mock.push(Reply::streamed(&["over ", "the ", "socket"]));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let auth = WsAuth::generate_token_file(home.path().join("ws-token")).unwrap();
    let server = WsServer::spawn(app_server_command(&home), WsServerOptions::new(auth))
        .await
        .unwrap();

    let transport = server.connect(&TransportOptions::default()).await.unwrap();
    let backend = AspBackend::connect(
        transport,
        AspBackendOptions::default().default_timeout(TURN),
    )
    .await
    .unwrap();
    assert_eq!(backend.connection().label(), server.url());
    let (events, outcome) = collect(backend.start(task(&ws, "Talk")).await.unwrap()).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    assert_eq!(outcome.final_message.as_deref(), Some("over the socket"));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Delta { .. }))
            .count(),
        3
    );

    let err = server
        .connect_with_token(None, &TransportOptions::default())
        .await
        .unwrap_err();
    match &err {
        AspError::Unauthorized { body, .. } => {
            assert!(body.contains("missing websocket bearer token"), "{body}")
        }
        other => panic!("{other}"),
    }
    let core = codex_core::Error::from(err);
    assert!(
        codex_core::error_chain(&core).contains("missing or wrong capability token"),
        "{core}"
    );
}

// ---------------------------------------------------------------------------------------
// the decoded transcript of a plain turn

/// Replaces what changes between runs: UUIDs, the private paths, timestamps.
fn normalize(value: &mut Value, home: &str, ws: &str) {
    const TIMES: &[&str] = &[
        "emittedAtMs",
        "startedAtMs",
        "completedAtMs",
        "startedAt",
        "completedAt",
        "durationMs",
        "createdAt",
        "updatedAt",
        "recencyAt",
    ];
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if TIMES.contains(&k.as_str()) && !v.is_null() {
                    *v = json!("[time]");
                } else {
                    normalize(v, home, ws);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| normalize(v, home, ws)),
        Value::String(s) => {
            let mut out = s.replace(home, "[home]").replace(ws, "[workspace]");
            // UUIDv7 ids: 8-4-4-4-12 hex
            let re_like = |w: &str| {
                let parts: Vec<&str> = w.split('-').collect();
                parts.len() == 5
                    && [8, 4, 4, 4, 12]
                        .iter()
                        .zip(&parts)
                        .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
            };
            if re_like(&out) {
                out = "[id]".into();
            }
            *s = out;
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_turn_transcript_snapshot() {
    let mock = MockModel::start().await;
    mock.push(Reply::streamed(&["Hello", " world"]));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let spec = task(&ws, "Say hello")
        .approval(ApprovalPolicy::Never)
        .sandbox(SandboxMode::DangerFullAccess);
    let (events, outcome) = collect(backend.start(spec).await.unwrap()).await;
    outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    let mut value = serde_json::to_value(&events).unwrap();
    let ws_path = ws.path().canonicalize().unwrap();
    normalize(&mut value, &home_str(&home), &ws_path.to_string_lossy());
    insta::assert_json_snapshot!("asp_plain_turn_events", value);
}

// ---------------------------------------------------------------------------------------
// the realistic home: shell snapshot on, a slow login profile that leaves a child behind

/// Waits until the app-server's shell snapshot ran the slow profile of `home` (its looping
/// child is up).
async fn wait_for_profile_child(home: &CodexHome) {
    let user_home = home
        .user_home()
        .expect("a realistic home")
        .to_string_lossy()
        .into_owned();
    let deadline = Instant::now() + TURN;
    while processes_with_env("HOME", &user_home).is_empty() {
        assert!(
            Instant::now() < deadline,
            "codex never ran the login profile of {user_home} (is the shell snapshot on?)"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fails (after killing them) when processes of `home` survive.
async fn assert_home_is_quiet(home: &CodexHome, after: &str) {
    if let Err(left) = wait_until_home_is_quiet(home, Duration::from_secs(10)).await {
        kill_all_of(home);
        panic!("processes survived {after}:\n{left}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_home_dropping_the_backend_mid_turn_leaves_no_process() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::realistic(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let mut run = backend.start(task(&ws, "Hang")).await.unwrap();
    until_turn_started(&mut run).await;
    wait_for_profile_child(&home).await;
    drop(run);
    drop(backend);
    assert_home_is_quiet(&home, "dropping the app-server backend").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_home_timeout_and_cancel_then_drop_leave_no_process() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    mock.push(Reply::hang());
    let home = CodexHome::realistic(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;

    let run = backend
        .start(task(&ws, "Hang").timeout(Duration::from_secs(8)))
        .await
        .unwrap();
    wait_for_profile_child(&home).await;
    let err = run.wait().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");

    let mut run = backend.start(task(&ws, "Hang again")).await.unwrap();
    until_turn_started(&mut run).await;
    run.cancel();
    let err = run.wait().await.unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");

    drop(backend);
    assert_home_is_quiet(&home, "a timed-out and a cancelled app-server turn").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_home_killing_the_app_server_kills_its_tree() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::realistic(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let process = backend
        .connection()
        .process()
        .cloned()
        .expect("a spawned backend has a process");
    let mut run = backend.start(task(&ws, "Hang")).await.unwrap();
    until_turn_started(&mut run).await;
    wait_for_profile_child(&home).await;
    process.kill();
    let (_, outcome) = collect(run).await;
    assert!(
        matches!(outcome, Err(Error::ProcessExited { .. })),
        "{outcome:?}"
    );
    // the backend is still alive: the kill alone took the whole tree
    assert_home_is_quiet(&home, "killing the app-server").await;
    drop(backend);
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_home_completed_turn_then_drop_leaves_no_process() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("done").delayed(Duration::from_secs(3)));
    let home = CodexHome::realistic(&mock);
    let ws = TempWorkspace::new();
    let backend = spawn(options(&home)).await;
    let run = backend.start(task(&ws, "say done")).await.unwrap();
    wait_for_profile_child(&home).await;
    let outcome = run.wait().await.unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some("done"));
    drop(backend);
    assert_home_is_quiet(&home, "dropping the backend after a completed turn").await;
}
