//! Delegation end to end over scripted backends.

use std::sync::Arc;
use std::time::Duration;

use crate::jobs::{JobKind, JobPhase, JobStatus, NewJob};
use codex_core::event::{FileChangeKind, FileUpdate, ItemStatus};
use codex_core::{
    ApprovalPolicy, BackendKind, Capabilities, CodexBinary, CodexVersion, Event, FailureKind, Item,
    ItemDetails,
};

use crate::testing::{FakeBackend, Script, agent_message, completed, started, thread, turn};
use crate::{Continuation, Delegate, DelegateRequest, Delegation, Error, UnverifiedReason};

struct Env {
    state: tempfile::TempDir,
    ws: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            state: tempfile::tempdir().unwrap(),
            ws: tempfile::tempdir().unwrap(),
        }
    }

    fn delegate(&self, backends: &[&FakeBackend]) -> Delegate {
        let codex = CodexBinary::from_parts(
            "codex".into(),
            CodexVersion::new(0, 169, 0),
            Capabilities::default(),
        );
        let mut b = Delegate::builder(codex).state_root(self.state.path());
        for fake in backends {
            b = b.backend(
                codex_core::Backend::kind(*fake),
                Arc::new((*fake).clone()) as Arc<dyn codex_core::Backend>,
            );
        }
        b.build()
    }

    fn request(&self, task: &str) -> DelegateRequest {
        DelegateRequest::new(task).cwd(self.ws.path())
    }
}

fn file_change(path: &str) -> Item {
    Item::new(
        "f-1",
        ItemDetails::FileChange {
            changes: vec![FileUpdate::new(path, FileChangeKind::Update)],
            status: ItemStatus::Completed,
        },
    )
}

fn command(cmd: &str) -> Item {
    Item::new(
        "c-1",
        ItemDetails::CommandExecution {
            command: cmd.into(),
            aggregated_output: "ok".into(),
            exit_code: Some(0),
            status: ItemStatus::Completed,
        },
    )
}

fn working_turn(thread_id: &str, turn_id: Option<&str>) -> Script {
    Script::events(vec![
        thread(thread_id),
        turn(turn_id),
        started(file_change("src/lib.rs")),
        completed(file_change("src/lib.rs")),
        started(command("cargo test")),
        completed(command("cargo test")),
        completed(agent_message("m-1", "## Summary\nFixed the overflow.")),
        Event::TurnCompleted {
            turn_id: turn_id.map(Into::into),
            usage: None,
        },
    ])
}

#[tokio::test]
async fn foreground_run_is_verified_recorded_and_lands_in_the_target_workspace() {
    let env = Env::new();
    let asp = FakeBackend::new(BackendKind::AppServer).script(working_turn("t-1", Some("u-1")));
    let exec = FakeBackend::new(BackendKind::Exec);
    let delegate = env.delegate(&[&exec, &asp]);
    let extra = tempfile::tempdir().unwrap();
    let request = env
        .request("fix the overflow")
        .write(true)
        .writable_dir(extra.path())
        .expected_write(extra.path().join("report.txt"));
    let prompt = request.prompt();
    let v = delegate.run(request).await.unwrap();
    assert_eq!(v.backend(), BackendKind::AppServer);
    assert_eq!(v.thread_id().as_str(), "t-1");
    assert_eq!(v.turn_id().map(|t| t.as_str()), Some("u-1"));
    assert_eq!(v.final_message(), Some("## Summary\nFixed the overflow."));
    assert_eq!(v.touched_files(), [std::path::PathBuf::from("src/lib.rs")]);
    assert_eq!(v.commands(), [("cargo test", Some(0))]);
    assert_eq!(v.codex_version().to_string(), "0.169.0");

    // the turn ran in the target workspace, with the rendered prompt
    let calls = asp.calls();
    assert_eq!(calls.len(), 1);
    assert!(exec.calls().is_empty());
    let spec = &calls[0].spec;
    assert_eq!(spec.cwd.as_deref(), Some(env.ws.path()));
    assert_eq!(spec.writable_dirs, vec![extra.path().to_owned()]);
    assert_eq!(spec.prompt, prompt);
    assert_eq!(spec.approval, Some(ApprovalPolicy::Never));

    // and it is a completed task job of that workspace
    let store = delegate.job_store(env.ws.path()).unwrap();
    let job = store.get(v.job_id().unwrap()).unwrap();
    assert_eq!(job.kind, JobKind::Task);
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.phase, JobPhase::Done);
    assert_eq!(job.backend, Some(BackendKind::AppServer));
    assert_eq!(job.thread_id.as_ref().map(|t| t.as_str()), Some("t-1"));
    assert_eq!(job.turn_id.as_ref().map(|t| t.as_str()), Some("u-1"));
    assert!(job.write);
    let result = job.result.unwrap();
    assert_eq!(
        result.touched_files,
        [std::path::PathBuf::from("src/lib.rs")]
    );
    assert_eq!(job.summary.as_deref(), Some("Summary"));
    let log = std::fs::read_to_string(&job.log_file).unwrap();
    assert!(log.contains("ran `cargo test` (exit 0)"), "{log}");
    assert!(log.contains("changed src/lib.rs"), "{log}");
}

#[tokio::test]
async fn exec_is_used_only_when_no_approvals_are_needed() {
    let env = Env::new();
    let exec = FakeBackend::new(BackendKind::Exec).script(Script::completes("t-e", None, "ok"));
    let delegate = env.delegate(&[&exec]);
    let v = delegate.run(env.request("x")).await.unwrap();
    assert_eq!(v.backend(), BackendKind::Exec);
    assert_eq!(v.turn_id(), None);

    let err = delegate
        .run(env.request("x").approval(ApprovalPolicy::OnRequest))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoBackend { .. }), "{err}");
    assert_eq!(exec.calls().len(), 1);
}

#[tokio::test]
async fn an_unreachable_backend_falls_back_and_says_which_ran() {
    let env = Env::new();
    let broker = FakeBackend::new(BackendKind::Broker).script(Script::start_error("no broker"));
    let asp =
        FakeBackend::new(BackendKind::AppServer).script(Script::completes("t", Some("u"), "hi"));
    let delegate = env.delegate(&[&asp, &broker]);
    let v = delegate.run(env.request("x")).await.unwrap();
    assert_eq!(v.backend(), BackendKind::AppServer);
    assert_eq!(broker.calls().len(), 1);
    let job = delegate
        .job_store(env.ws.path())
        .unwrap()
        .get(v.job_id().unwrap())
        .unwrap();
    assert_eq!(job.backend, Some(BackendKind::AppServer));
}

#[tokio::test]
async fn writes_outside_the_roots_are_refused_before_anything_starts() {
    let env = Env::new();
    let asp = FakeBackend::new(BackendKind::AppServer);
    let delegate = env.delegate(&[&asp]);
    let elsewhere = tempfile::tempdir().unwrap();
    let err = delegate
        .run(
            env.request("x")
                .write(true)
                .expected_write(elsewhere.path().join("a.txt")),
        )
        .await
        .unwrap_err();
    assert!(err.is_refusal());
    assert!(codex_core::error_chain(&err).contains("--add-dir"), "{err}");
    let err = delegate
        .spawn(
            env.request("x")
                .write(true)
                .writable_dir(env.ws.path().join("not-there")),
        )
        .await
        .unwrap_err();
    assert!(
        codex_core::error_chain(&err).contains("create it first"),
        "{err}"
    );
    assert!(asp.calls().is_empty());
    let store = delegate.job_store(env.ws.path()).unwrap();
    assert!(store.list().unwrap().jobs.is_empty());
}

#[tokio::test]
async fn not_logged_in_is_no_refusal_and_a_rejection_is_typed() {
    let env = Env::new();
    // `codex login status` says "Not logged in", yet codex may run (a provider without
    // OpenAI login, a key in its environment, a session it refreshes)
    let asp = FakeBackend::new(BackendKind::AppServer)
        .script(Script::events(vec![
            thread("t-ok"),
            turn(Some("u")),
            completed(agent_message("m", "done")),
            Event::TurnCompleted {
                turn_id: Some("u".into()),
                usage: None,
            },
        ]))
        .script(Script::events(vec![
            thread("t-401"),
            turn(Some("u")),
            Event::TurnFailed {
                turn_id: Some("u".into()),
                message: "unexpected status 401 Unauthorized: no key".into(),
                kind: FailureKind::Auth,
            },
        ]));
    let codex = CodexBinary::from_parts(
        "codex".into(),
        CodexVersion::new(0, 169, 0),
        Capabilities::default(),
    );
    let delegate = Delegate::builder(codex)
        .state_root(env.state.path())
        .backend(BackendKind::AppServer, Arc::new(asp.clone()))
        .auth(codex_core::AuthMode::None)
        .build();
    let v = delegate.run(env.request("x")).await.unwrap();
    assert_eq!(v.final_message(), Some("done"));
    let err = delegate.run(env.request("y")).await.unwrap_err();
    assert!(
        matches!(&err, Error::AuthRejected { message, .. } if message == "unexpected status 401 Unauthorized: no key"),
        "{err}"
    );
}

#[tokio::test]
async fn failures_are_errors_and_recorded() {
    let env = Env::new();
    let asp = FakeBackend::new(BackendKind::AppServer)
        .script(Script::events(vec![
            thread("t-f"),
            turn(Some("u")),
            completed(agent_message("m", "half done")),
            Event::TurnFailed {
                turn_id: Some("u".into()),
                message: "usage limit reached".into(),
                kind: FailureKind::Other,
            },
        ]))
        // a backend that returns text without ever starting a thread
        .script(Script::events(vec![
            turn(Some("u")),
            completed(agent_message("m", "Codex executed it")),
            Event::TurnCompleted {
                turn_id: Some("u".into()),
                usage: None,
            },
        ]));
    let delegate = env.delegate(&[&asp]);
    let err = delegate.run(env.request("x")).await.unwrap_err();
    assert!(matches!(err, Error::TurnFailed { .. }), "{err}");
    let err = delegate.run(env.request("y")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unverified {
                reason: UnverifiedReason::NoThread,
                ..
            }
        ),
        "{err}"
    );
    let jobs = delegate
        .job_store(env.ws.path())
        .unwrap()
        .list()
        .unwrap()
        .jobs;
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Failed);
        assert!(job.result.is_none());
        assert!(job.error.is_some());
    }
    let failed = jobs.iter().find(|j| j.title == "x").unwrap();
    assert!(failed.error.as_deref().unwrap().contains("usage limit"));
    assert_eq!(failed.thread_id.as_ref().map(|t| t.as_str()), Some("t-f"));
}

#[tokio::test]
async fn background_returns_at_once_and_can_be_awaited_or_polled() {
    let env = Env::new();
    let asp = FakeBackend::new(BackendKind::AppServer)
        .script(working_turn("t-b", Some("u-b")).delay(Duration::from_millis(40)));
    let delegate = env.delegate(&[&asp]);
    let request = env.request("long task").write(true).background(true);
    let Delegation::Background(handle) = delegate.delegate(request).await.unwrap() else {
        panic!("expected a background job")
    };
    let record = handle.record().unwrap();
    assert!(!record.status.is_finished(), "{:?}", record.status);
    assert!(!handle.is_finished());
    let id = handle.id().to_owned();
    let v = handle.wait().await.unwrap();
    assert_eq!(v.job_id(), Some(id.as_str()));
    let store = delegate.job_store(env.ws.path()).unwrap();
    let record = store.get(&id).unwrap();
    assert_eq!(record.status, JobStatus::Completed);
    assert_eq!(
        record.result.unwrap().final_message.as_deref(),
        Some("## Summary\nFixed the overflow.")
    );
    assert_eq!(record.pid, None);
}

#[tokio::test]
async fn background_jobs_can_be_cancelled() {
    let env = Env::new();
    let asp = FakeBackend::new(BackendKind::AppServer)
        .script(Script::events(vec![thread("t-c"), turn(Some("u"))]).hang());
    let delegate = env.delegate(&[&asp]);
    let handle = delegate.spawn(env.request("forever")).await.unwrap();
    let id = handle.id().to_owned();
    // wait until the turn runs
    let store = delegate.job_store(env.ws.path()).unwrap();
    for _ in 0..200 {
        if store.get(&id).unwrap().phase == JobPhase::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.cancel();
    let err = handle.wait().await.unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    let record = store.get(&id).unwrap();
    assert_eq!(record.status, JobStatus::Cancelled);
    assert_eq!(record.thread_id.as_ref().map(|t| t.as_str()), Some("t-c"));
}

#[tokio::test]
async fn timeouts_stop_the_turn() {
    let env = Env::new();
    let exec = FakeBackend::new(BackendKind::Exec)
        .script(Script::events(vec![thread("t"), turn(None)]).hang());
    let delegate = env.delegate(&[&exec]);
    let err = delegate
        .run(env.request("x").timeout(Duration::from_millis(60)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let jobs = delegate
        .job_store(env.ws.path())
        .unwrap()
        .list()
        .unwrap()
        .jobs;
    assert_eq!(jobs[0].status, JobStatus::Failed);
    assert!(jobs[0].error.as_deref().unwrap().contains("timed out"));
}

/// Found by `cargo xtask fuzz` (companion arguments): `task --timeout 18446744073709551615`
/// parses, and adding that many seconds to an `Instant` panicked.
#[tokio::test]
async fn a_huge_timeout_is_no_panic() {
    let env = Env::new();
    let exec = FakeBackend::new(BackendKind::Exec).script(working_turn("t-1", None));
    let delegate = env.delegate(&[&exec]);
    let verified = delegate
        .run(env.request("x").timeout(Duration::from_secs(u64::MAX)))
        .await
        .unwrap();
    assert_eq!(verified.thread_id().as_str(), "t-1");
}

#[tokio::test]
async fn resume_last_continues_this_workspaces_latest_task_thread_only() {
    let env = Env::new();
    let other_ws = tempfile::tempdir().unwrap();
    let asp = FakeBackend::new(BackendKind::AppServer)
        .script(Script::completes("t-task", Some("u-1"), "first"))
        .script(Script::completes("t-other", Some("u-x"), "elsewhere"))
        .script(Script::events(vec![
            thread("t-task"),
            // history of the resumed thread, replayed before our turn
            completed(agent_message("old", "first")),
            turn(Some("u-2")),
            completed(agent_message("new", "second")),
            Event::TurnCompleted {
                turn_id: Some("u-2".into()),
                usage: None,
            },
        ]));
    let delegate = env.delegate(&[&asp]);

    // nothing to resume yet
    let err = delegate
        .run(env.request("go on").resume_last())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NothingToResume { .. }), "{err}");
    assert!(asp.calls().is_empty());

    delegate.run(env.request("first task")).await.unwrap();
    // a newer task in another workspace
    delegate
        .run(DelegateRequest::new("other").cwd(other_ws.path()))
        .await
        .unwrap();
    // a newer review thread in this workspace
    let store = delegate.job_store(env.ws.path()).unwrap();
    let review = store
        .create(NewJob::new(JobKind::Review, "review", false))
        .unwrap();
    store
        .update(&review.id, |r| {
            r.thread_id = Some("t-review".into());
            r.set_status(JobStatus::Completed)
        })
        .unwrap();

    let v = delegate
        .run(env.request("now add a regression test").resume_last())
        .await
        .unwrap();
    assert!(v.resumed());
    assert_eq!(v.thread_id().as_str(), "t-task");
    assert_eq!(v.final_message(), Some("second"));
    let calls = asp.calls();
    let last = calls.last().unwrap();
    assert_eq!(last.resume.as_ref().map(|t| t.as_str()), Some("t-task"));
    // only the new instruction is sent
    assert_eq!(last.spec.prompt, "now add a regression test");
}

#[tokio::test]
async fn explicit_resume_uses_that_thread() {
    let env = Env::new();
    let exec = FakeBackend::new(BackendKind::Exec).script(Script::completes("t-7", None, "ok"));
    let delegate = env.delegate(&[&exec]);
    let v = delegate
        .run(
            env.request("continue")
                .continue_with(Continuation::Resume("t-7".into())),
        )
        .await
        .unwrap();
    assert!(v.resumed());
    assert_eq!(
        exec.calls()[0].resume.as_ref().map(|t| t.as_str()),
        Some("t-7")
    );
}

#[tokio::test]
async fn running_delegations_can_be_cancelled_by_job_id() {
    let env = Env::new();
    let asp = FakeBackend::new(BackendKind::AppServer)
        .script(Script::events(vec![thread("t-1"), turn(Some("u"))]).hang());
    let delegate = env.delegate(&[&asp]);
    let d = delegate.clone();
    let request = env.request("forever");
    let foreground = tokio::spawn(async move { d.run(request).await });
    let mut id = None;
    for _ in 0..400 {
        if let Some(first) = delegate.running_jobs().first() {
            id = Some(first.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let id = id.expect("the delegation registered its job");
    assert!(!delegate.cancel("job-does-not-exist"));
    assert!(delegate.cancel(&id[..id.len() - 3]));
    let err = foreground.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(delegate.running_jobs().is_empty());
    let record = delegate.job_store(env.ws.path()).unwrap().get(&id).unwrap();
    assert_eq!(record.status, JobStatus::Cancelled);
}

#[tokio::test]
async fn a_dropped_delegation_leaves_a_cancelled_record() {
    let env = Env::new();
    let asp = FakeBackend::new(BackendKind::AppServer)
        .script(Script::events(vec![thread("t-1"), turn(Some("u"))]).hang());
    let delegate = env.delegate(&[&asp]);
    let run = delegate.run(env.request("dropped"));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), run)
            .await
            .is_err()
    );
    // the delegation winds down on its own and ends its record
    let store = delegate.job_store(env.ws.path()).unwrap();
    let mut jobs = Vec::new();
    for _ in 0..400 {
        jobs = store.list().unwrap().jobs;
        if jobs.len() == 1 && jobs[0].status.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Cancelled);
    for _ in 0..400 {
        if delegate.running_jobs().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(delegate.running_jobs().is_empty());
}
