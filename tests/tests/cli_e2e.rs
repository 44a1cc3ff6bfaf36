//! End-to-end tests of `codex-cli-backend`: real turns of the pinned codex binary against the
//! mock Responses API, and fault injection with `fake-codex`.
//!
//! Every test fails (never skips) when the pinned codex is missing: `pinned_codex()` panics
//! with the instruction to install it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codex_bridge_tests::home::ENV_TO_REMOVE;
use codex_bridge_tests::procs::{
    kill_all_of, processes_with_env, wait_until_gone_async, wait_until_home_is_quiet,
};
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace};
use codex_cli_backend::CliBackend;
use codex_core::ExitSummary;
use codex_core::event::{FileChangeKind, ItemStatus};
use codex_core::{
    AuthContext, AuthMode, Backend, CodexBinary, Error, Event, Feature, ItemDetails, Preset,
    ReasoningEffort, SandboxMode, ServiceTier, TaskSpec,
};
use serde_json::json;

/// Generous bound for one turn against the mock (a turn takes well under a second).
const TURN: Duration = Duration::from_secs(60);

/// The pinned codex, probed once per test binary.
async fn pinned() -> CodexBinary {
    codex_bridge_tests::pinned_binary().await
}

/// A backend running the pinned codex with `home` as its `CODEX_HOME`.
async fn backend(home: &CodexHome) -> CliBackend {
    let mut b = CliBackend::builder()
        .binary(pinned().await)
        .envs(home.env())
        .default_timeout(TURN);
    for key in ENV_TO_REMOVE {
        b = b.env_remove(*key);
    }
    b.build().expect("build the backend")
}

/// A task running in `ws`.
fn task(ws: &TempWorkspace, prompt: &str) -> TaskSpec {
    TaskSpec::new(prompt).cwd(ws.path())
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

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_owned())
}

async fn assert_no_process_left(home: &Path) {
    let home = home.to_string_lossy().into_owned();
    if let Err(pids) = wait_until_gone_async("CODEX_HOME", &home, Duration::from_secs(5)).await {
        panic!("processes with CODEX_HOME={home} survived: {pids:?}");
    }
}

// ---------------------------------------------------------------------------------------
// the real codex against the mock

#[tokio::test(flavor = "multi_thread")]
async fn plain_turn_gives_the_final_message_and_thread_id() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("Hello from the mock"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let run = backend.start(task(&ws, "Say hello")).await.unwrap();
    let (events, outcome) = collect(run).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));

    assert_eq!(
        outcome.final_message.as_deref(),
        Some("Hello from the mock")
    );
    assert!(!outcome.thread_id.as_str().is_empty());
    assert_eq!(outcome.backend, codex_core::BackendKind::Exec);
    assert!(
        matches!(&events[0], Event::ThreadStarted { thread_id } if *thread_id == outcome.thread_id)
    );
    assert!(
        matches!(events.last(), Some(Event::TurnCompleted { usage: Some(u), .. }) if u.input_tokens == 10 && u.output_tokens == 5)
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Undecodable { .. })),
        "{events:#?}"
    );
    let requests = mock.responses_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].last_user_text().as_deref(), Some("Say hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_command_item_carries_its_output() {
    let mock = MockModel::start().await;
    mock.push(Reply::exec_command("call-1", "echo hi-from-shell"));
    mock.push(Reply::text("The command printed hi-from-shell."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let (events, outcome) = collect(backend.start(task(&ws, "Run echo")).await.unwrap()).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nevents: {events:#?}"));

    // started in progress, then completed with the output
    assert!(events.iter().any(|e| matches!(e, Event::ItemStarted { item }
        if matches!(item.details, ItemDetails::CommandExecution { status: ItemStatus::InProgress, .. }))));
    let command = outcome
        .items
        .iter()
        .find_map(|i| match &i.details {
            ItemDetails::CommandExecution {
                command,
                aggregated_output,
                exit_code,
                status,
            } => Some((command, aggregated_output, exit_code, status)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no command item in {:#?}", outcome.items));
    assert!(command.0.contains("echo hi-from-shell"), "{command:?}");
    assert!(command.1.contains("hi-from-shell"), "{command:?}");
    assert_eq!(*command.2, Some(0));
    assert_eq!(*command.3, ItemStatus::Completed);
    assert_eq!(
        outcome.final_message.as_deref(),
        Some("The command printed hi-from-shell.")
    );

    let requests = mock.responses_requests();
    assert_eq!(requests.len(), 2);
    let outputs = requests[1].function_call_outputs();
    assert_eq!(outputs.len(), 1, "{:?}", requests[1].input());
    assert_eq!(outputs[0].0, "call-1");
    assert!(outputs[0].1.contains("hi-from-shell"), "{outputs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_patch_creates_a_file_in_the_workspace() {
    let mock = MockModel::start().await;
    mock.push(Reply::apply_patch(
        "call-p",
        "*** Begin Patch\n*** Add File: notes/hello.txt\n+hi from the patch\n*** End Patch\n",
    ));
    mock.push(Reply::text("Created notes/hello.txt."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let spec = task(&ws, "Create the file").preset(Preset::FullAuto);
    let outcome = backend.run(spec).await.unwrap();

    assert_eq!(
        ws.read("notes/hello.txt").as_deref(),
        Some("hi from the patch\n")
    );
    let touched: Vec<PathBuf> = outcome
        .touched_files()
        .iter()
        .map(|p| canonical(p))
        .collect();
    assert_eq!(touched, vec![canonical(&ws.path().join("notes/hello.txt"))]);
    assert!(outcome.items.iter().any(|i| matches!(&i.details,
        ItemDetails::FileChange { changes, status: ItemStatus::Completed }
            if changes[0].kind == FileChangeKind::Add)));
    let outputs = mock.responses_requests()[1].custom_tool_call_outputs();
    assert_eq!(outputs[0].0, "call-p");
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_keeps_the_thread_and_resends_the_history() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("The word is pineapple."));
    mock.push(Reply::text("You asked me to remember pineapple."));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let other = TempWorkspace::new();
    let backend = backend(&home).await;

    let first = backend
        .run(task(&ws, "Remember the word pineapple"))
        .await
        .unwrap();
    // exec resume of 0.169.0 takes no --sandbox / --cd / --add-dir: they go as -c overrides
    // and the process cwd; codex must accept the result
    let spec = task(&ws, "Which word?")
        .preset(Preset::FullAuto)
        .writable_dir(other.path());
    let second = backend.resume(&first.thread_id, spec).await.unwrap();
    let second = second.wait().await.unwrap();

    assert_eq!(second.thread_id, first.thread_id);
    assert_eq!(
        second.final_message.as_deref(),
        Some("You asked me to remember pineapple.")
    );
    let requests = mock.responses_requests();
    assert_eq!(requests.len(), 2);
    let texts = requests[1].user_texts();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Remember the word pineapple")),
        "{texts:?}"
    );
    assert_eq!(texts.last().map(String::as_str), Some("Which word?"));
    let resent = requests[1].body["input"].to_string();
    assert!(resent.contains("The word is pineapple."), "{resent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_schema_reaches_the_model_and_its_temp_file_is_removed() {
    let mock = MockModel::start().await;
    mock.push(Reply::text(r#"{"answer":"42"}"#));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let tmp = tempfile::tempdir().unwrap();
    let backend = CliBackend::builder()
        .binary(pinned().await)
        .envs(home.env())
        .temp_dir(tmp.path())
        .default_timeout(TURN)
        .build()
        .unwrap();
    let schema = json!({
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": false,
    });

    let outcome = backend
        .run(task(&ws, "Answer in JSON").output_schema(schema.clone()))
        .await
        .unwrap();

    assert_eq!(outcome.final_message.as_deref(), Some(r#"{"answer":"42"}"#));
    let format = mock.responses_requests()[0]
        .text_format()
        .cloned()
        .expect("text.format in the request");
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["schema"], schema);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn model_effort_and_overrides_reach_the_request() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("ok"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let spec = task(&ws, "hi")
        .model("gpt-5.4")
        .effort(ReasoningEffort::High)
        .config("model_reasoning_summary", "detailed")
        .input("extra context block");
    backend.run(spec).await.unwrap();

    let req = &mock.responses_requests()[0];
    assert_eq!(req.model(), Some("gpt-5.4"));
    assert_eq!(
        req.body["reasoning"]["effort"], "high",
        "{}",
        req.body["reasoning"]
    );
    assert_eq!(
        req.body["reasoning"]["summary"], "detailed",
        "{}",
        req.body["reasoning"]
    );
    assert_eq!(
        req.last_user_text().as_deref(),
        Some("hi\n\nextra context block")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn full_auto_preset_uses_the_flags_this_codex_accepts() {
    let mock = MockModel::start().await;
    mock.push(Reply::exec_command("call-w", "echo written > out.txt"));
    mock.push(Reply::text("done"));
    let home = CodexHome::new(&mock).sandbox_mode("read-only");
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let spec = task(&ws, "write a file").preset(Preset::FullAuto);
    let args = backend.args_for(&spec).unwrap();
    // `--full-auto` where this codex has it (up to 0.125.0); 0.169.0 rejects it.
    if pinned().await.capabilities().exec_accepts("--full-auto") {
        assert!(args.iter().any(|a| a == "--full-auto"), "{args:?}");
    } else {
        assert!(!args.iter().any(|a| a == "--full-auto"), "{args:?}");
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--sandbox" && w[1] == "workspace-write")
        );
        assert!(args.iter().any(|a| a == "approval_policy=\"on-request\""));
    }

    let outcome = backend.run(spec).await.unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some("done"));
    // The permissions instructions name the sandbox in every version (the turn-metadata
    // header carries `sandbox_mode` only in newer ones).
    let body = String::from_utf8_lossy(&mock.responses_requests()[0].raw_body).into_owned();
    assert!(
        body.contains("`sandbox_mode` is `workspace-write`"),
        "sandbox not in the permissions instructions"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_500_is_a_failed_turn() {
    let mock = MockModel::start().await;
    mock.push(Reply::http_status(500));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let (events, outcome) = collect(backend.start(task(&ws, "fail please")).await.unwrap()).await;
    match outcome {
        Err(Error::TurnFailed {
            thread_id: Some(_),
            message,
            ..
        }) => assert!(!message.is_empty()),
        other => panic!("expected TurnFailed, got {other:?}"),
    }
    // codex reports the error first, which is not terminal
    assert!(
        events.iter().any(|e| matches!(e, Event::Error { .. })),
        "{events:#?}"
    );
    assert!(matches!(events.last(), Some(Event::TurnFailed { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_model_times_out_and_leaves_no_process() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let started = Instant::now();
    let spec = task(&ws, "hang").timeout(Duration::from_secs(2));
    let err = backend.run(spec).await.unwrap_err();
    let elapsed = started.elapsed();

    match err {
        Error::Timeout { after, thread_id } => {
            assert_eq!(after, Duration::from_secs(2));
            assert!(thread_id.is_some(), "thread.started came before the hang");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_no_process_left(home.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_mid_turn_kills_codex() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let mut run = backend
        .start(task(&ws, "hang until cancelled"))
        .await
        .unwrap();
    let cancel = run.cancel_handle();
    // wait until the turn is under way
    loop {
        match tokio::time::timeout(TURN, run.next_event()).await {
            Ok(Some(Event::TurnStarted { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("no turn.started: {other:?}"),
        }
    }
    mock.wait_for_requests(1, TURN).await.ok();
    cancel.cancel();
    let err = run.wait().await.unwrap_err();
    assert!(
        matches!(err, Error::Cancelled { thread_id: Some(_) }),
        "{err:?}"
    );
    assert_no_process_left(home.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_run_kills_codex() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let run = backend
        .start(task(&ws, "hang until dropped"))
        .await
        .unwrap();
    mock.wait_for_requests(1, TURN).await.ok();
    drop(run);
    assert_no_process_left(home.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_binary_says_how_to_install() {
    let err = CliBackend::from_path("/no/such/dir/codex")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("npm install -g @openai/codex"),
        "{err}"
    );

    // a binary that disappeared after probing
    let gone = CodexBinary::from_parts(
        "/no/such/dir/codex".into(),
        codex_core::CodexVersion::new(0, 169, 0),
        pinned().await.capabilities().clone(),
    );
    let backend = CliBackend::new(gone);
    let err = backend.start(TaskSpec::new("hi")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("npm install -g @openai/codex"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_mode_follows_the_provider_then_the_stored_credentials() {
    let mock = MockModel::start().await;
    // the mock provider needs no OpenAI login: `codex login status` says "Not logged in"
    // and does not matter
    let fresh = CodexHome::new(&mock);
    assert!(!fresh.path().join("auth.json").exists());
    assert_eq!(
        backend(&fresh).await.auth_mode().await.unwrap(),
        AuthMode::OtherProvider {
            name: "mock".into()
        }
    );

    // a provider that needs an OpenAI login: `codex login status` decides
    let gated = CodexHome::new(&mock).requires_openai_auth(true);
    assert_eq!(
        backend(&gated).await.auth_mode().await.unwrap(),
        AuthMode::None
    );
    let stored = CodexHome::new(&mock).requires_openai_auth(true);
    stored.store_api_key("sk-test-stored-123456789").unwrap();
    assert_eq!(
        backend(&stored).await.auth_mode().await.unwrap(),
        AuthMode::ApiKey
    );

    // our own login: the key goes on stdin
    let ours = CodexHome::new(&mock).requires_openai_auth(true);
    let b = backend(&ours).await;
    b.login_with_api_key("sk-test-ours-123456789")
        .await
        .unwrap();
    assert_eq!(b.auth_mode().await.unwrap(), AuthMode::ApiKey);
    let auth = std::fs::read_to_string(ours.path().join("auth.json")).unwrap();
    assert!(auth.contains("sk-test-ours-123456789"));

    let err = b.login_with_api_key("  ").await.unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidSpec {
            field: "api_key",
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_mode_is_refused_before_codex_runs_without_chatgpt() {
    let mock = MockModel::start().await;
    let ws = TempWorkspace::new();
    // an API key, and a provider without OpenAI login: both certainly lack Fast Mode
    let keyed = CodexHome::new(&mock).requires_openai_auth(true);
    keyed.store_api_key("sk-test-fast-123456789").unwrap();
    let other = CodexHome::new(&mock);
    for (home, auth) in [
        (&keyed, AuthMode::ApiKey),
        (
            &other,
            AuthMode::OtherProvider {
                name: "mock".into(),
            },
        ),
    ] {
        let err = backend(home)
            .await
            .start(task(&ws, "fast").service_tier(ServiceTier::Fast))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::FeatureUnavailable {
                    feature: Feature::FastMode,
                    auth: a,
                } if *a == auth
            ),
            "{err:?}"
        );
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_out_is_no_refusal_when_codex_can_run() {
    // `codex login status` says "Not logged in", the provider wants an OpenAI login, and yet
    // codex runs the turn (here: the mock asks for no key; in life: a key in the environment
    // or a session codex refreshes). Even Fast Mode is left to codex.
    let mock = MockModel::start().await;
    mock.push(Reply::text("ran anyway"));
    mock.push(Reply::text("fast anyway"));
    let home = CodexHome::new(&mock).requires_openai_auth(true);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;
    assert_eq!(backend.auth_mode().await.unwrap(), AuthMode::None);
    let outcome = backend.run(task(&ws, "go")).await.unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some("ran anyway"));
    let outcome = backend
        .run(task(&ws, "go fast").service_tier(ServiceTier::Fast))
        .await
        .unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some("fast anyway"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_login_is_auth_rejected_with_codex_text() {
    let mock = MockModel::start().await;
    let ws = TempWorkspace::new();
    // the provider answers 401
    mock.push(Reply::http_status(401));
    let home = CodexHome::new(&mock);
    let err = backend(&home)
        .await
        .run(task(&ws, "who am I"))
        .await
        .unwrap_err();
    match &err {
        Error::AuthRejected {
            thread_id: Some(_),
            message,
            ..
        } => assert!(
            message.starts_with("unexpected status 401 Unauthorized"),
            "{message}"
        ),
        other => panic!("expected AuthRejected, got {other:?}"),
    }
    assert!(err.to_string().contains("codex login"), "{err}");

    // the provider's env_key variable is not set: codex refuses before any request
    let requests = mock.request_count();
    let keyed = CodexHome::new(&mock).env_key("CODEX_BRIDGE_TEST_MISSING_KEY");
    let err = backend(&keyed)
        .await
        .run(task(&ws, "no key"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::AuthRejected { message, .. }
            if message.contains("Missing environment variable: `CODEX_BRIDGE_TEST_MISSING_KEY`")),
        "{err:?}"
    );
    assert_eq!(mock.request_count(), requests);
}

#[tokio::test(flavor = "multi_thread")]
async fn task_overrides_choose_the_provider_for_auth() {
    // a home whose provider needs an OpenAI login, and a task that switches to one that
    // does not (`-c model_provider=...`): Fast Mode is refused for the task's provider
    let mock = MockModel::start().await;
    let base = mock.base_url();
    let home = CodexHome::new(&mock)
        .requires_openai_auth(true)
        .extra_toml(&format!(
            "[model_providers.local]\nname = \"local\"\nbase_url = \"{base}\"\nwire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\nsupports_websockets = false\n"
        ));
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;
    assert_eq!(backend.auth_mode().await.unwrap(), AuthMode::None);
    let err = backend
        .start(
            task(&ws, "fast")
                .config("model_provider", "local")
                .service_tier(ServiceTier::Fast),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::FeatureUnavailable { auth: AuthMode::OtherProvider { name }, .. } if name == "local"),
        "{err:?}"
    );
    assert_eq!(mock.request_count(), 0);
    // and the override really is what codex uses: the turn runs on "local"
    mock.push(Reply::text("via local"));
    let outcome = backend
        .run(task(&ws, "hi").config("model_provider", "local"))
        .await
        .unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some("via local"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_codex_with_an_unknown_version_runs_turns() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    for output in ["codex-cli test", "codex-cli 0.0.0-dev", ""] {
        let wrapper = codex_bridge_tests::VersionWrapper::new(output);
        let binary = CodexBinary::probe(wrapper.path()).await.unwrap();
        assert!(!binary.version().is_known(), "{output:?}");
        // the flags still come from its --help
        assert_eq!(binary.capabilities(), pinned().await.capabilities());
        let mut b = CliBackend::builder()
            .binary(binary)
            .envs(home.env())
            .default_timeout(TURN);
        for key in ENV_TO_REMOVE {
            b = b.env_remove(*key);
        }
        let backend = b.build().unwrap();
        mock.push(Reply::text("unknown but fine"));
        let outcome = backend
            .run(task(&ws, "hi").preset(Preset::FullAuto))
            .await
            .unwrap();
        assert_eq!(
            outcome.final_message.as_deref(),
            Some("unknown but fine"),
            "{output:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_are_refused_before_codex_runs() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let backend = backend(&home).await;
    let err = backend.start(TaskSpec::new(" ")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidSpec {
                field: "prompt",
                ..
            }
        ),
        "{err:?}"
    );
    let err = backend
        .start(TaskSpec::new("x").config("features.x", serde_json::Value::Null))
        .await
        .unwrap_err();
    let ours = codex_cli_backend::Error::from_core(&err);
    assert!(
        matches!(ours, Some(codex_cli_backend::Error::NullConfigValue { key, .. }) if key == "features.x"),
        "{err:?}"
    );
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_git_repo_check_allows_a_folder_outside_git() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("outside"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::outside_git();
    let backend = backend(&home).await;

    let err = backend.run(task(&ws, "no git")).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ProcessExited {
                status: ExitSummary::Code(1),
                ..
            }
        ),
        "{err:?}"
    );
    let outcome = backend
        .run(
            task(&ws, "no git")
                .skip_git_repo_check(true)
                .sandbox(SandboxMode::ReadOnly),
        )
        .await
        .unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some("outside"));
}

// ---------------------------------------------------------------------------------------
// fault injection with fake-codex

/// A script that runs fake-codex with `FAKE_CODEX_VERSION=version` (the probe inherits no
/// per-call environment, so the variable goes into a wrapper).
fn fake_with_version(dir: &Path, version: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let script = dir.join(format!("codex-{version}"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nFAKE_CODEX_VERSION={version} exec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_fake-codex")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// A backend over fake-codex in `mode`; `marker` is a private `CODEX_HOME` value that tags
/// every process it starts.
async fn fake(program: &Path, mode: &str, marker: &Path) -> CliBackend {
    let binary = CodexBinary::probe(program).await.unwrap();
    CliBackend::builder()
        .binary(binary)
        .env("FAKE_CODEX_MODE", mode)
        .env("CODEX_HOME", marker.to_string_lossy())
        .default_timeout(TURN)
        .build()
        .unwrap()
}

fn recorded_args(record: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// The real `exec --full-auto` exists up to 0.125.0 and is gone from 0.128.0 on (checked on
/// the published releases); fake-codex models an older help text by its version.
#[tokio::test(flavor = "multi_thread")]
async fn full_auto_flag_is_used_only_where_codex_has_it() {
    let dir = tempfile::tempdir().unwrap();
    for (version, want_full_auto) in [("0.125.0", true), ("0.169.0", false)] {
        let program = fake_with_version(dir.path(), version);
        let record = dir.path().join(format!("record-{version}.jsonl"));
        let backend = CliBackend::builder()
            .binary(CodexBinary::probe(&program).await.unwrap())
            .env("FAKE_CODEX_RECORD", record.to_string_lossy())
            .env("CODEX_HOME", dir.path().to_string_lossy())
            .build()
            .unwrap();
        let spec = TaskSpec::new("full auto please")
            .cwd(dir.path())
            .preset(Preset::FullAuto);
        let outcome = backend.run(spec).await.unwrap();
        assert_eq!(
            outcome.final_message.as_deref(),
            Some("fake: full auto please")
        );

        let runs = recorded_args(&record);
        let exec = runs
            .iter()
            .find(|a| {
                a.first().map(String::as_str) == Some("exec") && a.iter().any(|x| x == "--json")
            })
            .unwrap_or_else(|| panic!("no exec run recorded: {runs:?}"));
        assert_eq!(
            exec.iter().any(|a| a == "--full-auto"),
            want_full_auto,
            "{version}: {exec:?}"
        );
        assert_eq!(
            exec.iter().any(|a| a == "approval_policy=\"on-request\""),
            !want_full_auto,
            "{version}: {exec:?}"
        );
        assert_eq!(&exec[exec.len() - 2..], ["--", "-"], "{exec:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_without_a_turn_is_process_exited_with_the_stderr_tail() {
    let marker = tempfile::tempdir().unwrap();
    let backend = fake(
        Path::new(env!("CARGO_BIN_EXE_fake-codex")),
        "exit-now",
        marker.path(),
    )
    .await;
    let err = backend.run(TaskSpec::new("boom")).await.unwrap_err();
    match &err {
        Error::ProcessExited {
            status,
            stderr_tail,
            ..
        } => {
            assert_eq!(status.code(), Some(3), "{err}");
            assert!(stderr_tail.contains("fake: boom"), "{err}");
        }
        other => panic!("expected ProcessExited, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn death_by_signal_is_process_exited() {
    let marker = tempfile::tempdir().unwrap();
    let backend = fake(
        Path::new(env!("CARGO_BIN_EXE_fake-codex")),
        "die-mid-turn",
        marker.path(),
    )
    .await;
    let (events, outcome) = collect(backend.start(TaskSpec::new("die")).await.unwrap()).await;
    assert!(
        matches!(events.last(), Some(Event::TurnStarted { .. })),
        "{events:?}"
    );
    let err = outcome.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ProcessExited {
                status: ExitSummary::Signal(9),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_lines_are_undecodable_and_the_turn_completes() {
    let marker = tempfile::tempdir().unwrap();
    let backend = fake(
        Path::new(env!("CARGO_BIN_EXE_fake-codex")),
        "garbage",
        marker.path(),
    )
    .await;
    let (events, outcome) = collect(backend.start(TaskSpec::new("x")).await.unwrap()).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    let undecodable = events
        .iter()
        .filter(|e| matches!(e, Event::Undecodable { .. }))
        .count();
    assert!(undecodable >= 1, "{events:#?}");
    let first_good = events
        .iter()
        .position(|e| matches!(e, Event::ThreadStarted { .. }))
        .unwrap();
    assert!(
        events[..first_good]
            .iter()
            .all(|e| matches!(e, Event::Undecodable { .. })),
        "{events:#?}"
    );
    assert_eq!(outcome.thread_id.as_str(), "t-1");
    assert!(matches!(events.last(), Some(Event::TurnCompleted { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_line_is_skipped_not_buffered() {
    let marker = tempfile::tempdir().unwrap();
    let backend = fake(
        Path::new(env!("CARGO_BIN_EXE_fake-codex")),
        "huge-line",
        marker.path(),
    )
    .await;
    let (events, outcome) = collect(backend.start(TaskSpec::new("x")).await.unwrap()).await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}"));
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Undecodable { reason, text } => {
                assert!(text.len() <= 8 * 1024, "kept {} bytes", text.len());
                Some(reason.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("exceeds 16777216 bytes"), "{reasons:?}");
    assert_eq!(outcome.thread_id.as_str(), "t-1");
    assert!(matches!(events.last(), Some(Event::TurnCompleted { .. })));

    // a smaller bound applies too
    let small = CliBackend::builder()
        .binary(backend.binary().clone())
        .env("FAKE_CODEX_MODE", "huge-line")
        .env("FAKE_CODEX_HUGE_BYTES", "5000")
        .env("CODEX_HOME", marker.path().to_string_lossy())
        .max_line_bytes(1024)
        .build()
        .unwrap();
    let (events, outcome) = collect(small.start(TaskSpec::new("x")).await.unwrap()).await;
    outcome.unwrap();
    assert!(events.iter().any(
        |e| matches!(e, Event::Undecodable { reason, .. } if reason.contains("exceeds 1024 bytes"))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_fake_and_its_child_are_killed_on_timeout() {
    let marker = tempfile::tempdir().unwrap();
    let backend = fake(
        Path::new(env!("CARGO_BIN_EXE_fake-codex")),
        "hang",
        marker.path(),
    )
    .await;
    let started = Instant::now();
    let err = backend
        .run(TaskSpec::new("x").timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { thread_id: Some(t), .. } if t.as_str() == "t-1"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_no_process_left(marker.path()).await;
}

/// A valid 1×1 PNG.
const PNG_1X1: [u8; 69] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0xc9, 0xfe, 0x92, 0xef, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

#[tokio::test(flavor = "multi_thread")]
async fn images_reach_the_model_and_do_not_swallow_the_prompt() {
    let mock = MockModel::start().await;
    mock.push(Reply::text("a green pixel"));
    mock.push(Reply::text("still a green pixel"));
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let image = ws.path().join("pixel.png");
    std::fs::write(&image, PNG_1X1).unwrap();
    let backend = backend(&home).await;

    // `-i` takes several values: the prompt `-` must not be read as a second image
    let first = backend
        .run(task(&ws, "What is in the image?").image(&image))
        .await
        .unwrap();
    assert_eq!(first.final_message.as_deref(), Some("a green pixel"));
    let resumed = backend
        .resume(
            &first.thread_id,
            task(&ws, "And now?").image("pixel.png").cwd(ws.path()),
        )
        .await;
    // a relative image path is taken from the caller's directory, which is not the
    // workspace: validation refuses it before codex runs
    assert!(
        matches!(
            resumed,
            Err(Error::InvalidSpec {
                field: "images",
                ..
            })
        ),
        "{resumed:?}"
    );
    let second = backend
        .resume(&first.thread_id, task(&ws, "And now?").image(&image))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(second.final_message.as_deref(), Some("still a green pixel"));

    let requests = mock.responses_requests();
    for (n, req) in requests.iter().enumerate() {
        let input = req.body["input"].to_string();
        assert!(input.contains("input_image"), "request {n} has no image");
    }
    assert_eq!(
        requests[0].last_user_text().as_deref(),
        Some("What is in the image?")
    );
    assert_eq!(requests[1].last_user_text().as_deref(), Some("And now?"));
}

#[tokio::test(flavor = "multi_thread")]
async fn resuming_an_unknown_thread_is_process_exited() {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let unknown = codex_core::ThreadId::from("01a211dd-0000-7000-8000-000000000000");
    let err = backend
        .resume(&unknown, task(&ws, "hello again"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    match &err {
        Error::ProcessExited {
            status,
            stderr_tail,
            ..
        } => {
            assert_eq!(status.code(), Some(1), "{err}");
            // 0.169.0: "thread/resume failed: no rollout found for thread id ..."
            assert!(stderr_tail.contains("no rollout found"), "{err}");
        }
        other => panic!("expected ProcessExited, got {other:?}"),
    }
    assert_eq!(mock.request_count(), 0);
}

// ---------------------------------------------------------------------------------------
// the realistic home: shell snapshot on, a slow login profile that leaves a child behind

/// Waits until codex's shell snapshot ran the slow profile of `home` (its looping child is
/// up), so that a test stops codex while the login shell and its child are alive.
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
async fn realistic_home_timeout_leaves_no_process() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::realistic(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let run = backend
        .start(task(&ws, "hang").timeout(Duration::from_secs(8)))
        .await
        .unwrap();
    wait_for_profile_child(&home).await;
    let err = run.wait().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_home_is_quiet(&home, "a timed-out codex exec").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_home_cancel_leaves_no_process() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::realistic(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let run = backend.start(task(&ws, "hang")).await.unwrap();
    mock.wait_for_requests(1, TURN).await.ok();
    wait_for_profile_child(&home).await;
    run.cancel();
    let err = run.wait().await.unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
    assert_home_is_quiet(&home, "a cancelled codex exec").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_home_dropping_the_run_leaves_no_process() {
    let mock = MockModel::start().await;
    mock.push(Reply::hang());
    let home = CodexHome::realistic(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let run = backend.start(task(&ws, "hang")).await.unwrap();
    wait_for_profile_child(&home).await;
    drop(run);
    assert_home_is_quiet(&home, "a dropped codex exec run").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_home_completed_turn_leaves_no_process() {
    let mock = MockModel::start().await;
    // answer only once the profile ran, so the login shell is alive during the turn
    mock.push(Reply::text("done").delayed(Duration::from_secs(3)));
    let home = CodexHome::realistic(&mock);
    let ws = TempWorkspace::new();
    let backend = backend(&home).await;

    let run = backend.start(task(&ws, "say done")).await.unwrap();
    wait_for_profile_child(&home).await;
    let outcome = run.wait().await.unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some("done"));
    assert_home_is_quiet(&home, "a completed codex exec turn").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_home_auth_mode_without_and_with_a_stored_key() {
    let mock = MockModel::start().await;
    let binary = pinned().await;
    let login_status = |home: &CodexHome| {
        let mut ctx = AuthContext::new().envs(home.env());
        for key in ENV_TO_REMOVE {
            ctx = ctx.env_remove(*key);
        }
        let binary = binary.clone();
        async move { binary.login_status(&ctx).await.unwrap() }
    };
    let fresh = CodexHome::realistic(&mock);
    // the realistic home's provider needs no OpenAI login: the provider decides ...
    assert_eq!(
        backend(&fresh).await.auth_mode().await.unwrap(),
        AuthMode::OtherProvider {
            name: "mock".into()
        }
    );
    // ... and `codex login status` (run under the slow login profile) reports the store
    assert_eq!(login_status(&fresh).await, AuthMode::None);
    let stored = CodexHome::realistic(&mock);
    stored.store_api_key("sk-test-realistic-123456789").unwrap();
    assert_eq!(login_status(&stored).await, AuthMode::ApiKey);
    assert_home_is_quiet(&fresh, "codex login status").await;
    assert_home_is_quiet(&stored, "codex login status").await;
}
