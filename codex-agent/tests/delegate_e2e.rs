//! Delegation end to end on the real pinned codex, through the app-server (`AspBackend`) and
//! through `codex exec`, against the mock Responses API on 127.0.0.1: the rendered prompt of
//! every recipe reaches the model, verified outcomes name the backend that ran, writes land
//! in a workspace other than ours, background jobs and resume keep the thread, and every
//! failure is an error with no result (and no job record claiming one).
//!
//! Every test fails (never skips) when the pinned codex is missing: `pinned_codex()` panics
//! with the instruction to install it (`cargo xtask codex`). Fault injection uses small shell
//! scripts written to temp files, standing in for codex where the real one cannot misbehave.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codex_agent::jobs::JobStatus;
use codex_agent::prompt::Intent;
use codex_agent::{Delegate, DelegateRequest, Error};
use codex_asp::AspBackend;
use codex_asp::backend::AspBackendOptions;
use codex_bridge_tests::home::ENV_TO_REMOVE;
use codex_bridge_tests::procs::{kill_group, wait_until_gone_async};
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace, pinned_codex};
use codex_cli_backend::CliBackend;
use codex_core::{Backend, BackendKind, CodexBinary};
use tokio::sync::OnceCell;

/// Generous bound for one turn against the mock.
const TURN: Duration = Duration::from_secs(90);

static PINNED: OnceCell<CodexBinary> = OnceCell::const_new();

async fn pinned() -> CodexBinary {
    PINNED
        .get_or_init(|| async {
            CodexBinary::probe(pinned_codex())
                .await
                .unwrap_or_else(|e| panic!("probing the pinned codex: {e}"))
        })
        .await
        .clone()
}

/// A private app-server of the pinned codex, on `home`.
async fn app_server(home: &CodexHome) -> AspBackend {
    let mut options = AspBackendOptions::default()
        .envs(home.env())
        .default_timeout(TURN)
        .client_info("delegate-e2e", "0");
    for key in ENV_TO_REMOVE {
        options = options.env_remove(*key);
    }
    AspBackend::spawn(pinned().await, options)
        .await
        .unwrap_or_else(|e| panic!("starting the app-server: {e}"))
}

/// An exec backend of `codex`, on `home`.
fn exec_backend(codex: CodexBinary, home: &CodexHome) -> Arc<dyn Backend> {
    let mut b = CliBackend::builder()
        .binary(codex)
        .envs(home.env())
        .default_timeout(TURN);
    for key in ENV_TO_REMOVE {
        b = b.env_remove(*key);
    }
    Arc::new(b.build().expect("build the exec backend"))
}

struct Setup {
    mock: MockModel,
    home: CodexHome,
    ws: TempWorkspace,
    state: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let mock = MockModel::start().await;
        let home = CodexHome::new(&mock);
        Setup {
            mock,
            home,
            ws: TempWorkspace::new(),
            state: tempfile::tempdir().expect("state dir"),
        }
    }

    /// A delegate over exactly `backends`, recording jobs under this setup's state root.
    fn delegate(
        &self,
        codex: CodexBinary,
        backends: Vec<(BackendKind, Arc<dyn Backend>)>,
    ) -> Delegate {
        let mut b = Delegate::builder(codex).state_root(self.state.path());
        for (kind, backend) in backends {
            b = b.backend(kind, backend);
        }
        b.build()
    }

    /// A delegate over a fresh private app-server and exec (the app-server is preferred).
    async fn asp_delegate(&self) -> (Delegate, AspBackend) {
        let asp = app_server(&self.home).await;
        let delegate = self.delegate(
            pinned().await,
            vec![
                (BackendKind::Exec, exec_backend(pinned().await, &self.home)),
                (BackendKind::AppServer, Arc::new(asp.clone())),
            ],
        );
        (delegate, asp)
    }

    /// Asserts that every job recorded for this setup's workspace failed with an error and
    /// claims no result, and that there is at least one.
    fn assert_jobs_failed_without_result(&self, delegate: &Delegate) {
        assert_jobs_failed_without_result(delegate, self.ws.path());
    }
}

fn assert_jobs_failed_without_result(delegate: &Delegate, ws: &Path) {
    let jobs = delegate.job_store(ws).unwrap().list().unwrap().jobs;
    assert!(!jobs.is_empty(), "the delegation recorded no job");
    for job in jobs {
        assert_eq!(job.status, JobStatus::Failed, "{job:?}");
        assert!(job.error.is_some(), "a failed job names its error: {job:?}");
        assert!(
            job.result.is_none(),
            "a failed job claims a result: {job:?}"
        );
    }
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_owned())
}

/// Writes an executable shell script standing in for codex (`--version` answers like codex
/// 0.169.0; anything else runs `body`), with the given mode.
fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --version ] && {{ echo 'codex-cli 0.169.0'; exit 0; }}; done\n{body}\n"
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A codex at `path` that claims the pinned codex's version and flags (so that the exec
/// backend builds the same arguments it would for the real one).
async fn fake_binary(path: PathBuf) -> CodexBinary {
    let real = pinned().await;
    CodexBinary::from_parts(path, real.version().clone(), real.capabilities().clone())
}

/// The whole chain of an error's messages.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(" / ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_recipe_reaches_the_model_as_rendered_through_the_app_server() {
    let s = Setup::new().await;
    let (delegate, _asp) = s.asp_delegate().await;
    for (n, intent) in Intent::ALL.into_iter().enumerate() {
        let answer = format!("answer for {intent:?}");
        s.mock.push(Reply::text(answer.clone()));
        let request = DelegateRequest::new(format!("Task number {n}: look at src/lib.rs"))
            .intent(intent)
            .file("src/lib.rs")
            .branch("main")
            .failing_command("cargo test", "test a ... FAILED")
            .cwd(s.ws.path())
            .timeout(TURN);
        let prompt = request.prompt();
        let v = delegate.run(request).await.unwrap();
        assert_eq!(v.backend(), BackendKind::AppServer, "{intent:?}");
        assert_eq!(v.final_message(), Some(answer.as_str()), "{intent:?}");
        let requests = s.mock.responses_requests();
        assert_eq!(requests.len(), n + 1, "{intent:?}");
        let seen = requests[n].last_user_text().expect("a user message");
        // codex may end the text with a newline of its own
        assert!(
            seen == prompt || seen.strip_suffix('\n') == Some(prompt.as_str()),
            "{intent:?}: the model saw\n{seen}\n--- instead of ---\n{prompt}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outcome_names_the_backend_app_server_with_turn_id_exec_without() {
    let s = Setup::new().await;
    let (delegate, _asp) = s.asp_delegate().await;
    s.mock.push(Reply::text("from the app-server"));
    let v = delegate
        .run(
            DelegateRequest::new("Say hi")
                .intent(Intent::Free)
                .cwd(s.ws.path())
                .timeout(TURN),
        )
        .await
        .unwrap();
    assert_eq!(v.backend(), BackendKind::AppServer);
    assert_eq!(v.codex_version(), pinned().await.version());
    assert!(!v.thread_id().as_str().is_empty());
    let turn = v.turn_id().expect("the app-server reports the turn id");
    assert!(!turn.as_str().is_empty());
    assert_eq!(v.final_message(), Some("from the app-server"));
    let job = delegate
        .job_store(s.ws.path())
        .unwrap()
        .get(v.job_id().unwrap())
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.backend, Some(BackendKind::AppServer));

    // the same request on a delegate that only has exec
    let exec = s.delegate(
        pinned().await,
        vec![(BackendKind::Exec, exec_backend(pinned().await, &s.home))],
    );
    s.mock.push(Reply::text("from exec"));
    let v = exec
        .run(
            DelegateRequest::new("Say hi")
                .intent(Intent::Free)
                .cwd(s.ws.path())
                .timeout(TURN),
        )
        .await
        .unwrap();
    assert_eq!(v.backend(), BackendKind::Exec);
    assert_eq!(v.turn_id(), None, "codex exec reports no turn ids");
    assert_eq!(v.final_message(), Some("from exec"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_task_creates_a_file_in_another_workspace_through_the_app_server() {
    let s = Setup::new().await;
    let (delegate, _asp) = s.asp_delegate().await;
    let cwd = std::env::current_dir().unwrap();
    assert!(!canonical(s.ws.path()).starts_with(canonical(&cwd)));
    s.mock.push(Reply::apply_patch(
        "call-w",
        "*** Begin Patch\n*** Add File: out/made.txt\n+made by codex\n*** End Patch\n",
    ));
    s.mock.push(Reply::text("Created out/made.txt."));
    let request = DelegateRequest::new("Create out/made.txt")
        .write(true)
        .cwd(s.ws.path())
        .expected_write("out/made.txt")
        .timeout(TURN);
    assert_eq!(
        delegate.candidates(&request).unwrap()[0],
        BackendKind::AppServer
    );
    let v = delegate.run(request).await.unwrap();
    assert_eq!(v.backend(), BackendKind::AppServer);
    assert_eq!(
        s.ws.read("out/made.txt").as_deref(),
        Some("made by codex\n")
    );
    assert!(!cwd.join("out/made.txt").exists());
    let touched: Vec<PathBuf> = v.touched_files().iter().map(|p| canonical(p)).collect();
    assert_eq!(touched, vec![canonical(&s.ws.path().join("out/made.txt"))]);
    assert_eq!(v.final_message(), Some("Created out/made.txt."));
}

#[tokio::test(flavor = "multi_thread")]
async fn background_then_resume_keeps_the_thread_through_the_app_server() {
    let s = Setup::new().await;
    let (delegate, _asp) = s.asp_delegate().await;
    s.mock
        .push(Reply::text("The word is pineapple.").delayed(Duration::from_millis(300)));
    s.mock
        .push(Reply::text("You asked me to remember pineapple."));
    let job = delegate
        .spawn(
            DelegateRequest::new("Remember the word pineapple")
                .intent(Intent::Free)
                .background(true)
                .cwd(s.ws.path())
                .timeout(TURN),
        )
        .await
        .unwrap();
    let id = job.id().to_owned();
    let first = job.wait().await.unwrap();
    assert_eq!(first.backend(), BackendKind::AppServer);
    assert!(first.turn_id().is_some());
    assert_eq!(first.job_id(), Some(id.as_str()));
    assert_eq!(first.final_message(), Some("The word is pineapple."));
    let record = delegate.job_store(s.ws.path()).unwrap().get(&id).unwrap();
    assert_eq!(record.status, JobStatus::Completed);
    assert_eq!(
        record.result.unwrap().final_message.as_deref(),
        Some("The word is pineapple.")
    );

    let second = delegate
        .run(
            DelegateRequest::new("Which word?")
                .cwd(s.ws.path())
                .resume_last()
                .timeout(TURN),
        )
        .await
        .unwrap();
    assert_eq!(second.backend(), BackendKind::AppServer);
    assert!(second.resumed());
    assert_eq!(second.thread_id(), first.thread_id());
    assert_ne!(second.turn_id(), first.turn_id());
    assert_eq!(
        second.final_message(),
        Some("You asked me to remember pineapple.")
    );
    let requests = s.mock.responses_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].last_user_text().as_deref(), Some("Which word?"));
    // the model sees the history of the thread
    let history = requests[1].user_texts();
    assert!(
        history
            .iter()
            .any(|t| t.contains("Remember the word pineapple")),
        "{history:?}"
    );
    assert!(
        requests[1]
            .input()
            .iter()
            .any(|item| item.to_string().contains("The word is pineapple.")),
        "the earlier answer is part of the resumed input"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_binary_is_binary_missing() {
    let err: Error = CodexBinary::probe("/no/such/codex")
        .await
        .unwrap_err()
        .into();
    assert!(matches!(err, Error::BinaryMissing { .. }), "{err:?}");

    // a binary that disappears after the delegate was built
    let s = Setup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "codex", "exit 0", 0o755);
    let delegate = s.delegate(
        fake_binary(path.clone()).await,
        vec![(
            BackendKind::Exec,
            exec_backend(fake_binary(path.clone()).await, &s.home),
        )],
    );
    std::fs::remove_file(&path).unwrap();
    let err = delegate
        .run(DelegateRequest::new("Do it").cwd(s.ws.path()).timeout(TURN))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BinaryMissing { .. }), "{err:?}");
    s.assert_jobs_failed_without_result(&delegate);
    assert_eq!(s.mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_codex_that_exits_at_once_is_an_error_naming_the_exit() {
    let s = Setup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "codex", "echo 'fake: boom' >&2\nexit 3", 0o755);
    let delegate = s.delegate(
        fake_binary(path.clone()).await,
        vec![(
            BackendKind::Exec,
            exec_backend(fake_binary(path).await, &s.home),
        )],
    );
    let err = delegate
        .run(DelegateRequest::new("Do it").cwd(s.ws.path()).timeout(TURN))
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains("codex exited (exit code 3)") && text.contains("fake: boom"),
        "the error names the exit and codex's last words: {text}"
    );
    assert!(
        matches!(
            err,
            Error::ConnectionLost { .. } | Error::TurnIncomplete { .. }
        ),
        "{err:?}"
    );
    s.assert_jobs_failed_without_result(&delegate);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_without_execute_permission_is_refused() {
    let s = Setup::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "codex", "exit 0", 0o644);
    // the app-server cannot be started
    let err: Error = AspBackend::spawn(
        fake_binary(path.clone()).await,
        AspBackendOptions::default(),
    )
    .await
    .unwrap_err()
    .into();
    assert!(matches!(err, Error::SpawnRefused { .. }), "{err:?}");
    // nor can exec
    let delegate = s.delegate(
        fake_binary(path.clone()).await,
        vec![(
            BackendKind::Exec,
            exec_backend(fake_binary(path).await, &s.home),
        )],
    );
    let err = delegate
        .run(DelegateRequest::new("Do it").cwd(s.ws.path()).timeout(TURN))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SpawnRefused {
                backend: Some(BackendKind::Exec),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(chain(&err).to_lowercase().contains("permission"), "{err}");
    s.assert_jobs_failed_without_result(&delegate);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_server_killed_mid_turn_is_an_error_without_result() {
    let s = Setup::new().await;
    let asp = app_server(&s.home).await;
    let delegate = s.delegate(
        pinned().await,
        vec![(BackendKind::AppServer, Arc::new(asp.clone()))],
    );
    s.mock.push(Reply::hang());
    let running = {
        let delegate = delegate.clone();
        let ws = s.ws.path().to_owned();
        tokio::spawn(async move {
            delegate
                .run(DelegateRequest::new("Hang").cwd(ws).timeout(TURN))
                .await
        })
    };
    s.mock
        .wait_for_requests(1, Duration::from_secs(30))
        .await
        .expect("the turn reached the model");
    let pid = asp
        .connection()
        .process()
        .and_then(|p| p.pid())
        .expect("the app-server's pid");
    kill_group(pid);
    let result = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the delegation ends quickly after the app-server died")
        .unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConnectionLost {
                backend: BackendKind::AppServer,
                ..
            } | Error::TurnIncomplete {
                backend: BackendKind::AppServer,
                ..
            }
        ),
        "{err:?}"
    );
    s.assert_jobs_failed_without_result(&delegate);
    let home = s.home.path().to_string_lossy().into_owned();
    if let Err(pids) = wait_until_gone_async("CODEX_HOME", &home, Duration::from_secs(10)).await {
        panic!("codex processes survived: {pids:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_turn_through_the_app_server_is_an_error_without_result() {
    let s = Setup::new().await;
    let (delegate, _asp) = s.asp_delegate().await;
    s.mock.push(Reply::http_status(500));
    let err = delegate
        .run(DelegateRequest::new("Do it").cwd(s.ws.path()).timeout(TURN))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TurnFailed {
                backend: BackendKind::AppServer,
                ..
            }
        ),
        "{err:?}"
    );
    s.assert_jobs_failed_without_result(&delegate);
    // the app-server was reached, so exec was not tried behind its back
    assert_eq!(s.mock.responses_requests().len(), 1);
}

/// How the `delegate` example (and any caller) learns the sign-in: the one detection of
/// codex-core, with the codex process's environment.
async fn detected_auth(codex: &CodexBinary, home: &CodexHome) -> codex_core::AuthMode {
    let mut ctx = codex_core::AuthContext::new().envs(home.env());
    for key in ENV_TO_REMOVE {
        ctx = ctx.env_remove(*key);
    }
    codex.auth(&ctx).await.expect("detect the sign-in")
}

fn say_hi(ws: &TempWorkspace) -> DelegateRequest {
    DelegateRequest::new("Say hi")
        .intent(Intent::Free)
        .cwd(ws.path())
        .timeout(TURN)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_without_openai_login_runs_on_both_backends() {
    // a model provider with requires_openai_auth = false and no stored key at all:
    // `codex login status` says "Not logged in", the provider needs nothing
    let s = Setup::new().await;
    assert!(!s.home.path().join("auth.json").exists());
    let codex = pinned().await;
    let auth = detected_auth(&codex, &s.home).await;
    assert_eq!(
        auth,
        codex_core::AuthMode::OtherProvider {
            name: "mock".into()
        }
    );
    let asp = app_server(&s.home).await;
    for (kind, backend) in [
        (
            BackendKind::AppServer,
            Arc::new(asp.clone()) as Arc<dyn Backend>,
        ),
        (BackendKind::Exec, exec_backend(codex.clone(), &s.home)),
    ] {
        let delegate = Delegate::builder(codex.clone())
            .state_root(s.state.path())
            .auth(auth.clone())
            .backend(kind, backend)
            .build();
        s.mock.push(Reply::text("no login needed"));
        let v = delegate.run(say_hi(&s.ws)).await.unwrap();
        assert_eq!(v.backend(), kind);
        assert_eq!(v.final_message(), Some("no login needed"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_out_is_no_refusal_and_a_rejection_is_auth_rejected() {
    let s = Setup::new().await;
    let codex = pinned().await;
    // the provider wants an OpenAI login and none is stored, yet codex runs
    let gated = CodexHome::new(&s.mock).requires_openai_auth(true);
    let auth = detected_auth(&codex, &gated).await;
    assert_eq!(auth, codex_core::AuthMode::None);
    let delegate = Delegate::builder(codex.clone())
        .state_root(s.state.path())
        .auth(auth)
        .backend(BackendKind::Exec, exec_backend(codex.clone(), &gated))
        .build();
    s.mock.push(Reply::text("ran signed out"));
    let v = delegate.run(say_hi(&s.ws)).await.unwrap();
    assert_eq!(v.final_message(), Some("ran signed out"));

    // the provider rejects the credentials: codex's own message, typed, on both backends
    let asp = app_server(&s.home).await;
    let auth = detected_auth(&codex, &s.home).await;
    for (kind, backend) in [
        (
            BackendKind::AppServer,
            Arc::new(asp.clone()) as Arc<dyn Backend>,
        ),
        (BackendKind::Exec, exec_backend(codex.clone(), &s.home)),
    ] {
        // a state root of its own: only this run's job is in its store
        let state = tempfile::tempdir().expect("state dir");
        let ws = TempWorkspace::new();
        let delegate = Delegate::builder(codex.clone())
            .state_root(state.path())
            .auth(auth.clone())
            .backend(kind, backend)
            .build();
        s.mock.push(Reply::http_status(401));
        let err = delegate.run(say_hi(&ws)).await.unwrap_err();
        match &err {
            Error::AuthRejected {
                backend, message, ..
            } => {
                assert_eq!(*backend, Some(kind));
                assert!(
                    message.starts_with("unexpected status 401 Unauthorized"),
                    "{message}"
                );
            }
            other => panic!("{kind}: expected AuthRejected, got {other:?}"),
        }
        assert!(err.thread_id().is_some(), "{err}");
        assert_jobs_failed_without_result(&delegate, ws.path());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_codex_with_an_unknown_version_delegates() {
    let s = Setup::new().await;
    let wrapper = codex_bridge_tests::VersionWrapper::new("codex-cli 0.0.0-dev");
    let codex = CodexBinary::probe(wrapper.path()).await.unwrap();
    assert!(!codex.version().is_known());
    let delegate = s.delegate(
        codex.clone(),
        vec![(BackendKind::Exec, exec_backend(codex.clone(), &s.home))],
    );
    s.mock.push(Reply::text("dev build"));
    let v = delegate.run(say_hi(&s.ws)).await.unwrap();
    assert_eq!(v.final_message(), Some("dev build"));
    assert_eq!(
        v.codex_version().to_string(),
        "unknown (codex-cli 0.0.0-dev)"
    );
}
