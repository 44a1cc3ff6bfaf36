//! Delegation end to end on the real pinned codex (`codex exec`) against the mock Responses
//! API: verified outcomes, writes landing in a target workspace, resume-last, background jobs,
//! failures and timeouts.
//!
//! Every test fails (never skips) when the pinned codex is missing: `pinned_codex()` panics
//! with the instruction to install it (`cargo xtask codex`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codex_agent::jobs::JobStatus;
use codex_agent::prompt::Intent;
use codex_agent::{Delegate, DelegateRequest, Error};
use codex_bridge_tests::home::ENV_TO_REMOVE;
use codex_bridge_tests::procs::wait_until_gone_async;
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace};
use codex_cli_backend::CliBackend;
use codex_core::{Backend, BackendKind, CodexBinary};

/// Generous bound for one turn against the mock.
const TURN: Duration = Duration::from_secs(90);

/// The pinned codex, probed once per test binary.
async fn pinned() -> CodexBinary {
    codex_bridge_tests::pinned_binary().await
}

struct Setup {
    mock: MockModel,
    home: CodexHome,
    ws: TempWorkspace,
    state: tempfile::TempDir,
    delegate: Delegate,
}

async fn setup() -> Setup {
    let mock = MockModel::start().await;
    let home = CodexHome::new(&mock);
    let ws = TempWorkspace::new();
    let state = tempfile::tempdir().expect("state dir");
    let mut b = CliBackend::builder()
        .binary(pinned().await)
        .envs(home.env())
        .default_timeout(TURN);
    for key in ENV_TO_REMOVE {
        b = b.env_remove(*key);
    }
    let exec: Arc<dyn Backend> = Arc::new(b.build().expect("build the exec backend"));
    let delegate = Delegate::builder(pinned().await)
        .backend(BackendKind::Exec, exec)
        .state_root(state.path())
        .build();
    Setup {
        mock,
        home,
        ws,
        state,
        delegate,
    }
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delegation_is_verified_from_the_real_codex_run() {
    let s = setup().await;
    s.mock
        .push(Reply::text("## Root cause\nNothing is broken."));
    let request = DelegateRequest::new("Why does the build fail?")
        .intent(Intent::Diagnose)
        .cwd(s.ws.path())
        .timeout(TURN);
    let prompt = request.prompt();
    let v = s.delegate.run(request).await.unwrap();

    assert_eq!(v.backend(), BackendKind::Exec);
    assert_eq!(v.codex_version(), pinned().await.version());
    assert!(!v.thread_id().as_str().is_empty());
    assert_eq!(v.turn_id(), None, "codex exec reports no turn ids");
    assert_eq!(v.final_message(), Some("## Root cause\nNothing is broken."));
    assert!(v.usage().is_some());
    // Codex received exactly the rendered prompt
    let requests = s.mock.responses_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].last_user_text().as_deref(),
        Some(prompt.as_str())
    );
    // and the job says so
    let store = s.delegate.job_store(s.ws.path()).unwrap();
    let job = store.get(v.job_id().unwrap()).unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.thread_id.as_ref(), Some(v.thread_id()));
    assert_eq!(job.backend, Some(BackendKind::Exec));
    drop(s.home);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_land_in_a_target_workspace_other_than_ours() {
    let s = setup().await;
    s.mock.push(Reply::apply_patch(
        "call-p",
        "*** Begin Patch\n*** Add File: notes/fixed.txt\n+fixed\n*** End Patch\n",
    ));
    s.mock.push(Reply::text("Created notes/fixed.txt."));
    // the target workspace is not the caller's
    let cwd = std::env::current_dir().unwrap();
    assert!(!canonical(s.ws.path()).starts_with(canonical(&cwd)));
    let v = s
        .delegate
        .run(
            DelegateRequest::new("Create notes/fixed.txt")
                .write(true)
                .cwd(s.ws.path())
                .expected_write("notes/fixed.txt")
                .timeout(TURN),
        )
        .await
        .unwrap();
    assert_eq!(s.ws.read("notes/fixed.txt").as_deref(), Some("fixed\n"));
    let touched: Vec<PathBuf> = v.touched_files().iter().map(|p| canonical(p)).collect();
    assert_eq!(
        touched,
        vec![canonical(&s.ws.path().join("notes/fixed.txt"))]
    );
    assert_eq!(v.final_message(), Some("Created notes/fixed.txt."));
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_last_continues_the_thread_with_only_the_new_instruction() {
    let s = setup().await;
    s.mock.push(Reply::text("The word is pineapple."));
    s.mock
        .push(Reply::text("You asked me to remember pineapple."));
    let first = s
        .delegate
        .run(
            DelegateRequest::new("Remember the word pineapple")
                .intent(Intent::Free)
                .cwd(s.ws.path())
                .timeout(TURN),
        )
        .await
        .unwrap();
    let second = s
        .delegate
        .run(
            DelegateRequest::new("Which word?")
                .cwd(s.ws.path())
                .resume_last()
                .timeout(TURN),
        )
        .await
        .unwrap();
    assert!(second.resumed());
    assert_eq!(second.thread_id(), first.thread_id());
    assert_eq!(
        second.final_message(),
        Some("You asked me to remember pineapple.")
    );
    let requests = s.mock.responses_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].last_user_text().as_deref(), Some("Which word?"));
}

#[tokio::test(flavor = "multi_thread")]
async fn background_job_runs_to_completion() {
    let s = setup().await;
    s.mock
        .push(Reply::text("Done in the background.").delayed(Duration::from_millis(300)));
    let handle = s
        .delegate
        .spawn(
            DelegateRequest::new("Tidy up")
                .cwd(s.ws.path())
                .timeout(TURN),
        )
        .await
        .unwrap();
    let id = handle.id().to_owned();
    assert!(!handle.record().unwrap().status.is_finished());
    let v = handle.wait().await.unwrap();
    assert_eq!(v.final_message(), Some("Done in the background."));
    let store = s.delegate.job_store(s.ws.path()).unwrap();
    let job = store.get(&id).unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(
        job.result.unwrap().final_message.as_deref(),
        Some("Done in the background.")
    );
    assert!(s.state.path().exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_turn_is_an_error_not_a_result() {
    let s = setup().await;
    s.mock.push(Reply::failed("the model is overloaded"));
    let err = s
        .delegate
        .run(DelegateRequest::new("Do it").cwd(s.ws.path()).timeout(TURN))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TurnFailed { .. }),
        "expected TurnFailed, got {err:?}"
    );
    let jobs = s
        .delegate
        .job_store(s.ws.path())
        .unwrap()
        .list()
        .unwrap()
        .jobs;
    assert_eq!(jobs[0].status, JobStatus::Failed);
    assert!(jobs[0].result.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_stops_codex() {
    let s = setup().await;
    s.mock.push(Reply::hang());
    let err = s
        .delegate
        .run(
            DelegateRequest::new("Hang")
                .cwd(s.ws.path())
                .timeout(Duration::from_secs(4)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let home = s.home.path().to_string_lossy().into_owned();
    if let Err(pids) = wait_until_gone_async("CODEX_HOME", &home, Duration::from_secs(10)).await {
        panic!("codex processes survived the timeout: {pids:?}");
    }
}
