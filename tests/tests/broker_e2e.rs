//! The broker end to end: the real, pinned codex app-server behind an in-process
//! `codex_asp::broker::Broker`, several clients over its unix socket, the mock model on
//! 127.0.0.1. (The `codex-broker` binary itself is tested in `codex-asp/tests/broker.rs`.)
//!
//! Every test uses its own `CODEX_HOME` and socket directory under `target/`, stops its broker
//! and checks that no process carrying its `CODEX_HOME` is left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codex_asp::approval::{ChannelHandler, ServerRequestKind};
use codex_asp::broker::{
    self, APP_SERVER_EXITED_NOTIFICATION, AppServerExit, Broker, BrokerHandle, BrokerOptions,
    ExitReason,
};
use codex_asp::protocol::InitializeParams;
use codex_asp::{Connection, ConnectionEvent, ConnectionOptions, Notification, Subscription};
use codex_bridge_tests::home::ENV_TO_REMOVE;
use codex_bridge_tests::pinned::target_dir;
use codex_bridge_tests::{CodexHome, MockModel, Reply, TempWorkspace, pinned_codex, procs};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const TURN_WAIT: Duration = Duration::from_secs(60);

/// One broker over the real codex, for one test.
struct Setup {
    mock: MockModel,
    home: CodexHome,
    ws: TempWorkspace,
    _run_dir: tempfile::TempDir,
    options: BrokerOptions,
    handle: BrokerHandle,
    task: Option<JoinHandle<broker::Result<ExitReason>>>,
}

impl Setup {
    async fn start() -> Setup {
        let mock = MockModel::start().await;
        let home = CodexHome::new(&mock);
        let ws = TempWorkspace::new();
        let parent = target_dir().join("broker-e2e");
        std::fs::create_dir_all(&parent).unwrap();
        let run_dir = tempfile::Builder::new()
            .prefix("b-")
            .tempdir_in(&parent)
            .unwrap();
        let mut options = BrokerOptions::new()
            .codex(pinned_codex())
            .socket_dir(run_dir.path())
            .idle_timeout(None);
        for (key, value) in home.env() {
            options = options.env(key, value);
        }
        for key in ENV_TO_REMOVE {
            options = options.env_remove(*key);
        }
        let broker = Broker::bind(options.clone()).await.expect("broker binds");
        let handle = broker.handle();
        let task = tokio::spawn(broker.run());
        Setup {
            mock,
            home,
            ws,
            _run_dir: run_dir,
            options,
            handle,
            task: Some(task),
        }
    }

    async fn client(&self, name: &str) -> Client {
        self.client_with(name, ConnectionOptions::default()).await
    }

    async fn client_with(&self, name: &str, connection: ConnectionOptions) -> Client {
        let options = self
            .options
            .clone()
            .client_info(InitializeParams::new(name, "1.0"))
            .connection_options(connection);
        let conn = tokio::time::timeout(TURN_WAIT, broker::connect(&options))
            .await
            .expect("connected in time")
            .expect("connected");
        let events = conn.subscribe_all();
        Client { conn, events }
    }

    /// Stops the broker and checks that nothing of this test's codex is left running.
    async fn stop(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let reason = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the broker stops in time")
                .expect("broker task")
                .expect("broker result");
            assert_eq!(reason, ExitReason::Stopped);
        }
        let home = self.home.path().to_string_lossy().into_owned();
        procs::wait_until_gone_async("CODEX_HOME", &home, Duration::from_secs(15))
            .await
            .unwrap_or_else(|left| {
                let described: Vec<String> = left
                    .iter()
                    .map(|pid| {
                        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                        format!(
                            "{pid}: {}",
                            String::from_utf8_lossy(&cmd).replace('\0', " ")
                        )
                    })
                    .collect();
                panic!("processes left behind: {described:#?}")
            });
        assert!(!broker::socket_path(&self.options).unwrap().exists());
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // a failed test: stop the broker task (its app-server is killed with it)
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Client {
    conn: Connection,
    events: Subscription,
}

/// What one turn produced, as seen by its client.
struct TurnSeen {
    status: String,
    texts: Vec<String>,
    notifications: Vec<Arc<Notification>>,
    started_at: Instant,
    completed_at: Instant,
}

impl Client {
    async fn start_thread(&self, params: Value) -> String {
        let answer = self
            .conn
            .request_raw("thread/start", params)
            .await
            .expect("thread/start");
        answer["thread"]["id"]
            .as_str()
            .expect("a thread id")
            .to_owned()
    }

    async fn start_turn(&self, thread: &str, prompt: &str) -> String {
        let answer = self
            .conn
            .request_raw(
                "turn/start",
                json!({"threadId": thread, "input": [{"type": "text", "text": prompt, "text_elements": []}]}),
            )
            .await
            .expect("turn/start");
        answer["turn"]["id"].as_str().expect("a turn id").to_owned()
    }

    /// Reads this client's notifications until `turn` of `thread` completes.
    async fn finish_turn(&mut self, thread: &str, turn: &str) -> TurnSeen {
        let mut seen = TurnSeen {
            status: String::new(),
            texts: Vec::new(),
            notifications: Vec::new(),
            started_at: Instant::now(),
            completed_at: Instant::now(),
        };
        let deadline = tokio::time::Instant::now() + TURN_WAIT;
        loop {
            let n = tokio::time::timeout_at(deadline, self.events.next_notification())
                .await
                .expect("the turn completes in time")
                .expect("the connection stays open");
            seen.notifications.push(n.clone());
            match n.method() {
                "turn/started" if n.turn_id() == Some(turn) => seen.started_at = Instant::now(),
                "item/completed" if n.params()["item"]["type"] == "agentMessage" => {
                    seen.texts.push(
                        n.params()["item"]["text"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                "turn/completed" if n.thread_id() == Some(thread) && n.turn_id() == Some(turn) => {
                    seen.status = n.params()["turn"]["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    seen.completed_at = Instant::now();
                    return seen;
                }
                _ => {}
            }
        }
    }
}

fn prompt_input(text: &str) -> Value {
    json!([{"type": "text", "text": text, "text_elements": []}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_run_turns_at_the_same_time_through_one_broker() {
    let setup = Setup::start().await;
    // both answers take a while, so that the turns overlap
    setup.mock.set_responder(|req| {
        let text = req.last_user_text().unwrap_or_default();
        Reply::text(format!("answer to {text}")).delayed(Duration::from_millis(1500))
    });
    let mut alpha = setup.client("alpha").await;
    let mut beta = setup.client("beta").await;
    let cwd = setup.ws.path().to_string_lossy().into_owned();
    let (ta, tb) = tokio::join!(
        alpha.start_thread(json!({"cwd": cwd})),
        beta.start_thread(json!({"cwd": cwd}))
    );
    assert_ne!(ta, tb);
    let (ua, ub) = tokio::join!(
        alpha.start_turn(&ta, "prompt alpha"),
        beta.start_turn(&tb, "prompt beta")
    );
    let (sa, sb) = tokio::join!(alpha.finish_turn(&ta, &ua), beta.finish_turn(&tb, &ub));

    assert_eq!(sa.status, "completed");
    assert_eq!(sb.status, "completed");
    assert_eq!(sa.texts, vec!["answer to prompt alpha".to_owned()]);
    assert_eq!(sb.texts, vec!["answer to prompt beta".to_owned()]);
    // the turns ran at the same time: each started before the other completed
    assert!(sa.started_at < sb.completed_at && sb.started_at < sa.completed_at);
    // each client saw only its own thread's notifications (and thread-less ones)
    for (seen, own) in [(&sa, &ta), (&sb, &tb)] {
        for n in &seen.notifications {
            if let Some(thread) = n.thread_id() {
                assert_eq!(
                    thread,
                    own.as_str(),
                    "{} leaked to the wrong client",
                    n.method()
                );
            }
        }
    }
    let status = broker::status_of(&alpha.conn).await.unwrap();
    assert_eq!(status.clients.len(), 2);
    assert_eq!(status.restarts, 0);
    assert_eq!(setup.mock.responses_requests().len(), 2);
    drop((alpha, beta));
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_thread_another_client_owns_is_refused_with_a_typed_error() {
    let setup = Setup::start().await;
    let mut owner = setup.client("owner").await;
    let third = setup.client("third").await;
    let cwd = setup.ws.path().to_string_lossy().into_owned();
    let thread = owner.start_thread(json!({"cwd": cwd})).await;
    let turn = owner.start_turn(&thread, "hello").await;
    assert_eq!(owner.finish_turn(&thread, &turn).await.status, "completed");

    let err = third
        .conn
        .request_raw("thread/resume", json!({"threadId": thread}))
        .await
        .unwrap_err();
    assert!(broker::is_thread_owned(&err), "{err}");
    assert!(err.is_invalid_request());
    assert!(err.to_string().contains("owned by another client"), "{err}");
    let err = third
        .conn
        .request_raw(
            "turn/start",
            json!({"threadId": thread, "input": prompt_input("sneaky")}),
        )
        .await
        .unwrap_err();
    assert!(broker::is_thread_owned(&err), "{err}");

    // the owner disconnects: its thread is released and the third client may take it
    drop(owner);
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker::status_of(&third.conn).await.unwrap().clients.len() != 1 {
        assert!(Instant::now() < deadline, "the owner's disconnect is seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = third
        .conn
        .request_raw("thread/resume", json!({"threadId": thread}))
        .await
        .expect("resume after the owner left");
    assert_eq!(resumed["thread"]["id"], thread.as_str());
    drop(third);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_goes_to_the_owning_client_and_its_accept_runs_the_command() {
    let setup = Setup::start().await;
    let target = setup.ws.path().join("approved.txt");
    setup.mock.push_for_prompt(
        "please touch",
        Reply::exec_command("call-1", format!("touch {}", target.display())),
    );
    let (handler, mut approvals) = ChannelHandler::new(4);
    let mut owner = setup
        .client_with(
            "owner",
            ConnectionOptions::default().approval_handler(handler),
        )
        .await;
    let mut bystander = setup.client("bystander").await;
    let cwd = setup.ws.path().to_string_lossy().into_owned();
    let thread = owner
        .start_thread(json!({"cwd": cwd, "approvalPolicy": "untrusted"}))
        .await;
    let turn = owner.start_turn(&thread, "please touch the file").await;
    let pending = tokio::time::timeout(TURN_WAIT, approvals.recv())
        .await
        .expect("the approval reaches the owner")
        .expect("handler alive");
    assert_eq!(
        pending.request().kind(),
        ServerRequestKind::CommandExecution
    );
    assert_eq!(pending.request().thread_id(), Some(thread.as_str()));
    assert!(!target.exists(), "nothing runs before the approval");
    pending.accept();
    let seen = owner.finish_turn(&thread, &turn).await;
    assert_eq!(seen.status, "completed");
    assert!(target.exists(), "the accepted command ran");
    let command = seen
        .notifications
        .iter()
        .find(|n| {
            n.method() == "item/completed" && n.params()["item"]["type"] == "commandExecution"
        })
        .expect("a command item");
    assert_eq!(command.params()["item"]["status"], "completed");
    assert!(
        seen.notifications
            .iter()
            .any(|n| n.method() == "serverRequest/resolved"),
        "the owner sees the request resolved"
    );
    // the bystander saw no approval and nothing of that thread
    while let Some(event) = futures::FutureExt::now_or_never(bystander.events.recv()) {
        match event.expect("open") {
            ConnectionEvent::ServerRequest(r) => panic!("the bystander got an approval: {r:?}"),
            ConnectionEvent::Notification(n) => assert_ne!(n.thread_id(), Some(thread.as_str())),
            _ => {}
        }
    }
    drop((owner, bystander));
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_app_server_fails_the_running_turn_fast_and_the_next_turn_restarts_it() {
    let setup = Setup::start().await;
    setup.mock.push_for_prompt("hang here", Reply::hang());
    let mut client = setup.client("survivor").await;
    let cwd = setup.ws.path().to_string_lossy().into_owned();
    let thread = client.start_thread(json!({"cwd": cwd})).await;
    let turn = client.start_turn(&thread, "hang here please").await;
    // wait until codex is waiting on the model
    setup
        .mock
        .wait_for_requests(1, TURN_WAIT)
        .await
        .expect("the model was asked");
    let status = broker::status_of(&client.conn).await.unwrap();
    assert_eq!(status.running_turns.len(), 1, "{status:?}");
    let pid = status.app_server_pid.expect("app-server pid");

    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), client.events.next_notification())
            .await
            .expect("told in time")
            .expect("the broker connection stays open");
        if let Some(exit) = AppServerExit::from_notification(&n) {
            break exit;
        }
    };
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "fast: {:?}",
        killed_at.elapsed()
    );
    assert_eq!(exit.thread_id.as_deref(), Some(thread.as_str()));
    assert_eq!(exit.turn_id.as_deref(), Some(turn.as_str()));
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert_eq!(APP_SERVER_EXITED_NOTIFICATION, "broker/appServerExited");

    // the next turn on the same thread restarts the app-server (the broker resumes the
    // thread first) and completes
    let next = client.start_turn(&thread, "after the crash").await;
    let seen = client.finish_turn(&thread, &next).await;
    assert_eq!(seen.status, "completed");
    assert_eq!(seen.texts, vec!["echo: after the crash".to_owned()]);
    let status = broker::status_of(&client.conn).await.unwrap();
    assert_eq!(status.restarts, 1);
    assert_ne!(status.app_server_pid, Some(pid));
    assert!(status.last_exit.unwrap_or_default().contains("signal 9"));
    drop(client);
    setup.stop().await;
}
