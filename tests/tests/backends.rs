//! One suite, both backends: every scenario runs against `codex_cli_backend::CliBackend`
//! (`codex exec --json`) and `codex_asp::AspBackend` (`codex app-server`), through
//! `&dyn Backend`, with the same `TaskSpec` and the same assertions. The real, pinned codex
//! runs against the mock Responses API on 127.0.0.1.
//!
//! Each scenario is one async function taking the [`Kind`] of backend; `both!` turns it into
//! a module with an `exec` and an `app_server` test.

use std::time::{Duration, Instant};

use codex_asp::AspBackend;
use codex_asp::backend::AspBackendOptions;
use codex_bridge_tests::home::ENV_TO_REMOVE;
use codex_bridge_tests::procs::wait_until_gone_async;
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace};
use codex_cli_backend::CliBackend;
use codex_core::event::{FileChangeKind, ItemStatus};
use codex_core::{
    Backend, BackendKind, CodexBinary, Error, Event, ItemDetails, Preset, Run, TaskSpec,
    TurnOutcome,
};
use serde_json::json;

/// Generous bound for one turn against the mock (a turn takes well under a second).
const TURN: Duration = Duration::from_secs(60);

/// The pinned codex, probed once per test binary.
async fn pinned() -> CodexBinary {
    codex_bridge_tests::pinned_binary().await
}

/// Which backend a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    AppServer,
}

impl Kind {
    fn backend_kind(self) -> BackendKind {
        match self {
            Kind::Exec => BackendKind::Exec,
            Kind::AppServer => BackendKind::AppServer,
        }
    }
}

/// A backend of `kind` running the pinned codex with `home` as its `CODEX_HOME`.
async fn make(kind: Kind, home: &CodexHome) -> Box<dyn Backend> {
    match kind {
        Kind::Exec => {
            let mut b = CliBackend::builder()
                .binary(pinned().await)
                .envs(home.env())
                .default_timeout(TURN);
            for key in ENV_TO_REMOVE {
                b = b.env_remove(*key);
            }
            Box::new(b.build().expect("build the exec backend"))
        }
        Kind::AppServer => {
            let mut options = AspBackendOptions::default()
                .envs(home.env())
                .default_timeout(TURN);
            for key in ENV_TO_REMOVE {
                options = options.env_remove(*key);
            }
            Box::new(
                AspBackend::spawn(pinned().await, options)
                    .await
                    .unwrap_or_else(|e| panic!("starting the app-server: {e}")),
            )
        }
    }
}

/// A mock, a home pointed at it, a workspace and a backend of `kind`.
struct Setup {
    mock: MockModel,
    home: CodexHome,
    ws: TempWorkspace,
    backend: Box<dyn Backend>,
}

impl Setup {
    async fn new(kind: Kind) -> Setup {
        let mock = MockModel::start().await;
        let home = CodexHome::new(&mock);
        let ws = TempWorkspace::new();
        let backend = make(kind, &home).await;
        assert_eq!(backend.kind(), kind.backend_kind());
        Setup {
            mock,
            home,
            ws,
            backend,
        }
    }

    fn task(&self, prompt: &str) -> TaskSpec {
        TaskSpec::new(prompt).cwd(self.ws.path())
    }

    /// Drops the backend (the app-server with it) and checks that no process that carries
    /// this test's `CODEX_HOME` is left.
    async fn assert_nothing_left(self) {
        let home = self.home.path().to_string_lossy().into_owned();
        drop(self.backend);
        if let Err(pids) = wait_until_gone_async("CODEX_HOME", &home, Duration::from_secs(5)).await
        {
            panic!("processes with CODEX_HOME={home} survived: {pids:?}");
        }
    }
}

async fn collect(mut run: Run) -> (Vec<Event>, codex_core::Result<TurnOutcome>) {
    let mut events = Vec::new();
    while let Some(e) = run.next_event().await {
        events.push(e);
    }
    (events, run.outcome().await)
}

async fn ok(run: Run) -> (Vec<Event>, TurnOutcome) {
    let (events, outcome) = collect(run).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));
    (events, outcome)
}

macro_rules! both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread")]
            async fn exec() {
                super::$scenario(super::Kind::Exec).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn app_server() {
                super::$scenario(super::Kind::AppServer).await
            }
        }
    )*};
}

both!(
    plain_turn,
    shell_command_item_with_output,
    apply_patch_creates_a_file,
    resume_keeps_the_thread_and_history,
    output_schema_reaches_the_model,
    http_500_is_a_failed_turn,
    timeout_stops_the_turn,
    cancel_stops_the_turn,
);

async fn plain_turn(kind: Kind) {
    let s = Setup::new(kind).await;
    s.mock.push(Reply::text("Hello from the mock"));
    let (events, outcome) = ok(s.backend.start(s.task("Say hello")).await.unwrap()).await;
    assert_eq!(outcome.backend, kind.backend_kind());
    assert_eq!(
        outcome.final_message.as_deref(),
        Some("Hello from the mock")
    );
    assert!(!outcome.thread_id.as_str().is_empty());
    assert!(
        matches!(&events[0], Event::ThreadStarted { thread_id } if *thread_id == outcome.thread_id)
    );
    assert!(
        matches!(events.last(), Some(Event::TurnCompleted { usage: Some(u), .. })
            if u.input_tokens == 10 && u.output_tokens == 5),
        "{events:#?}"
    );
    let requests = s.mock.responses_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].last_user_text().as_deref(), Some("Say hello"));
    s.assert_nothing_left().await;
}

async fn shell_command_item_with_output(kind: Kind) {
    let s = Setup::new(kind).await;
    s.mock
        .push(Reply::exec_command("call-1", "echo hi-from-shell"));
    s.mock.push(Reply::text("It printed hi-from-shell."));
    let (events, outcome) = ok(s.backend.start(s.task("Run echo")).await.unwrap()).await;
    assert_eq!(
        outcome.final_message.as_deref(),
        Some("It printed hi-from-shell.")
    );
    let (command, output, exit_code, status) = outcome
        .items
        .iter()
        .find_map(|i| match &i.details {
            ItemDetails::CommandExecution {
                command,
                aggregated_output,
                exit_code,
                status,
            } => Some((
                command.clone(),
                aggregated_output.clone(),
                *exit_code,
                *status,
            )),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no command item: {events:#?}"));
    assert!(command.contains("echo hi-from-shell"), "{command}");
    assert_eq!(output.trim(), "hi-from-shell");
    assert_eq!(exit_code, Some(0));
    assert_eq!(status, ItemStatus::Completed);
    // the command's output went back to the model
    let requests = s.mock.responses_requests();
    assert_eq!(requests.len(), 2);
    let outputs = requests[1].function_call_outputs();
    assert!(
        outputs
            .iter()
            .any(|(id, out)| id == "call-1" && out.contains("hi-from-shell")),
        "{outputs:?}"
    );
    s.assert_nothing_left().await;
}

async fn apply_patch_creates_a_file(kind: Kind) {
    let s = Setup::new(kind).await;
    s.mock.push(Reply::apply_patch(
        "call-p",
        "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n",
    ));
    s.mock.push(Reply::text("Created hello.txt."));
    let spec = s.task("Create hello.txt").preset(Preset::FullAuto);
    let (events, outcome) = ok(s.backend.start(spec).await.unwrap()).await;
    assert_eq!(s.ws.read("hello.txt").as_deref(), Some("hi\n"));
    let touched = outcome.touched_files();
    assert_eq!(touched.len(), 1, "{events:#?}");
    assert!(touched[0].ends_with("hello.txt"), "{touched:?}");
    assert!(outcome.items.iter().any(|i| matches!(&i.details,
        ItemDetails::FileChange { changes, status: ItemStatus::Completed }
            if changes[0].kind == FileChangeKind::Add)));
    assert_eq!(outcome.final_message.as_deref(), Some("Created hello.txt."));
    s.assert_nothing_left().await;
}

async fn resume_keeps_the_thread_and_history(kind: Kind) {
    let s = Setup::new(kind).await;
    s.mock.push(Reply::text("Noted: the colour is TEAL."));
    s.mock.push(Reply::text("It was TEAL."));
    let (_, first) = ok(s
        .backend
        .start(s.task("Remember the colour TEAL"))
        .await
        .unwrap())
    .await;
    let (events, second) = ok(s
        .backend
        .resume(&first.thread_id, s.task("Which colour?"))
        .await
        .unwrap())
    .await;
    assert_eq!(second.thread_id, first.thread_id);
    assert!(
        matches!(&events[0], Event::ThreadStarted { thread_id } if *thread_id == first.thread_id)
    );
    assert_eq!(second.final_message.as_deref(), Some("It was TEAL."));
    let requests = s.mock.responses_requests();
    assert_eq!(requests.len(), 2);
    let texts = requests[1].user_texts();
    assert!(
        texts.iter().any(|t| t.contains("Remember the colour TEAL")),
        "{texts:#?}"
    );
    assert_eq!(
        requests[1].last_user_text().as_deref(),
        Some("Which colour?")
    );
    s.assert_nothing_left().await;
}

async fn output_schema_reaches_the_model(kind: Kind) {
    let s = Setup::new(kind).await;
    let schema = json!({
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": false
    });
    s.mock.push(Reply::text(r#"{"answer":"yes"}"#));
    let spec = s.task("Answer in JSON").output_schema(schema.clone());
    let (_, outcome) = ok(s.backend.start(spec).await.unwrap()).await;
    assert_eq!(
        outcome.final_message.as_deref(),
        Some(r#"{"answer":"yes"}"#)
    );
    let requests = s.mock.responses_requests();
    let format = requests[0]
        .text_format()
        .unwrap_or_else(|| panic!("no text.format in {}", requests[0].body["text"]));
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["schema"], schema);
    s.assert_nothing_left().await;
}

async fn http_500_is_a_failed_turn(kind: Kind) {
    let s = Setup::new(kind).await;
    s.mock.push(Reply::http_status(500));
    let (events, outcome) = collect(s.backend.start(s.task("Fail please")).await.unwrap()).await;
    match outcome {
        Err(Error::TurnFailed {
            thread_id, message, ..
        }) => {
            assert!(thread_id.is_some());
            // both backends report codex's own message for a 500
            assert!(message.contains("high demand"), "{message}");
        }
        other => panic!("{other:?}\nevents: {events:#?}"),
    }
    assert!(
        matches!(events.last(), Some(Event::TurnFailed { .. })),
        "{events:#?}"
    );
    s.assert_nothing_left().await;
}

async fn timeout_stops_the_turn(kind: Kind) {
    let s = Setup::new(kind).await;
    s.mock.push(Reply::hang());
    let spec = s.task("Hang").timeout(Duration::from_secs(2));
    let started = Instant::now();
    let (events, outcome) = collect(s.backend.start(spec).await.unwrap()).await;
    let elapsed = started.elapsed();
    match outcome {
        Err(Error::Timeout { after, thread_id }) => {
            assert_eq!(after, Duration::from_secs(2));
            assert!(thread_id.is_some());
        }
        other => panic!("{other:?}\nevents: {events:#?}"),
    }
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    // the model's stream was given up: the turn really stopped
    s.mock
        .wait_for_streams_closed(Duration::from_secs(5))
        .await
        .unwrap_or_else(|open| panic!("{open} streams still open"));
    s.assert_nothing_left().await;
}

async fn cancel_stops_the_turn(kind: Kind) {
    let s = Setup::new(kind).await;
    s.mock.push(Reply::hang());
    let mut run = s.backend.start(s.task("Hang")).await.unwrap();
    s.mock
        .wait_for_requests(1, TURN)
        .await
        .expect("the model was asked");
    let cancelled = Instant::now();
    run.cancel();
    while run.next_event().await.is_some() {}
    let outcome = run.outcome().await;
    assert!(
        matches!(outcome, Err(Error::Cancelled { .. })),
        "{outcome:?}"
    );
    assert!(
        cancelled.elapsed() < Duration::from_secs(5),
        "{:?}",
        cancelled.elapsed()
    );
    s.mock
        .wait_for_streams_closed(Duration::from_secs(5))
        .await
        .unwrap_or_else(|open| panic!("{open} streams still open"));
    s.assert_nothing_left().await;
}
