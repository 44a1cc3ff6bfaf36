//! The broker: routing mechanics against an in-memory app-server (the test plays codex and
//! can send anything), and the broker in this process against the real, pinned codex. (The
//! `codex-broker` binary's lifecycle is tested in `codex-broker/tests/cli.rs`.)
//!
//! Every test uses its own directory under `target/tmp/`, and stops what it started.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codex_asp::approval::{AlwaysDecide, Decision};
use codex_asp::broker::{
    self, APP_SERVER_EXITED_NOTIFICATION, AppServerExit, Broker, BrokerHandle, BrokerOptions,
    ExitReason, codes,
};
use codex_asp::protocol::{InitializeCapabilities, InitializeParams};
use codex_asp::transport::TransportOptions;
use codex_asp::transport::memory::{self, MemoryServer};
use codex_asp::{Connection, ConnectionEvent, ConnectionOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

fn test_dir() -> tempfile::TempDir {
    let parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&parent).expect("target tmp dir");
    tempfile::Builder::new()
        .prefix("brk-")
        .tempdir_in(parent)
        .expect("temp dir")
}

/// A broker whose app-servers are in-memory fakes the test drives.
struct Fake {
    dir: tempfile::TempDir,
    options: BrokerOptions,
    servers: mpsc::UnboundedReceiver<MemoryServer>,
}

impl Fake {
    fn new() -> Fake {
        let dir = test_dir();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let (tx, servers) = mpsc::unbounded_channel();
        let options = BrokerOptions::new()
            .codex("/nonexistent/fake-codex")
            .codex_home(dir.path().join("home"))
            .socket_dir(dir.path().join("run"))
            .idle_timeout(None)
            .launcher(move || {
                let (transport, server) = memory::pair(TransportOptions::default());
                let _ = tx.send(server);
                Ok(transport)
            });
        Fake {
            dir,
            options,
            servers,
        }
    }

    /// Binds and runs the broker in a task.
    async fn start(&self) -> Running {
        let broker = Broker::bind(self.options.clone()).await.expect("bind");
        let socket = broker.socket_path().to_owned();
        let handle = broker.handle();
        let task = tokio::spawn(broker.run());
        Running {
            socket,
            handle,
            task,
        }
    }

    /// The next app-server the broker starts, after answering its handshake.
    async fn upstream(&mut self) -> MemoryServer {
        let mut server = tokio::time::timeout(WAIT, self.servers.recv())
            .await
            .expect("the broker starts an app-server")
            .expect("launcher alive");
        let init = recv(&mut server).await;
        assert_eq!(init["method"], "initialize");
        assert_eq!(init["params"]["clientInfo"]["name"], "codex-bridge-broker");
        server
            .respond(
                &init["id"],
                json!({"userAgent": "fake/0.169.0 (test)", "codexHome": "/h", "platformFamily": "unix", "platformOs": "linux"}),
            )
            .await
            .unwrap();
        let initialized = recv(&mut server).await;
        assert_eq!(initialized, json!({"method": "initialized"}));
        server
    }

    fn client_options(&self, name: &str) -> BrokerOptions {
        self.options
            .clone()
            .client_info(InitializeParams::new(name, "1.0"))
    }

    async fn connect(&self, name: &str) -> Connection {
        tokio::time::timeout(WAIT, broker::connect(&self.client_options(name)))
            .await
            .expect("connect in time")
            .expect("connect")
    }
}

struct Running {
    socket: PathBuf,
    handle: BrokerHandle,
    task: JoinHandle<broker::Result<ExitReason>>,
}

impl Running {
    async fn stop(self) -> ExitReason {
        self.handle.shutdown();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the broker stops in time")
            .expect("broker task")
            .expect("broker result")
    }
}

async fn recv(server: &mut MemoryServer) -> Value {
    tokio::time::timeout(WAIT, server.recv_json())
        .await
        .expect("the broker sent something upstream in time")
        .expect("the broker's upstream side is open")
}

/// Receives upstream messages until one has `method`.
async fn recv_method(server: &mut MemoryServer, method: &str) -> Value {
    loop {
        let msg = recv(server).await;
        if msg["method"] == method {
            return msg;
        }
    }
}

/// A client speaking raw JSON lines.
struct Raw {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Raw {
    async fn connect(socket: &Path) -> Raw {
        let stream = UnixStream::connect(socket).await.expect("connect");
        let (read, write) = stream.into_split();
        Raw {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send_text(&mut self, text: &str) {
        self.write.write_all(text.as_bytes()).await.unwrap();
        self.write.write_all(b"\n").await.unwrap();
    }

    async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("the broker answered in time")
            .expect("read")
            .expect("the broker closed the connection");
        serde_json::from_str(&line).expect("JSON from the broker")
    }

    async fn initialize(&mut self, id: Value) -> Value {
        self.send(json!({"id": id, "method": "initialize", "params": {"clientInfo": {"name": "raw", "version": "1"}}}))
            .await;
        let answer = self.recv().await;
        self.send(json!({"method": "initialized"})).await;
        answer
    }
}

/// Starts a thread for `conn` through the fake upstream, which answers with `thread_id`.
async fn start_thread(conn: &Connection, upstream: &mut MemoryServer, thread_id: &str) {
    let call = conn.request_raw(
        "thread/start",
        json!({"cwd": "/w", "approvalPolicy": "untrusted"}),
    );
    let answer = async {
        let req = recv_method(upstream, "thread/start").await;
        upstream
            .respond(&req["id"], json!({"thread": {"id": thread_id}}))
            .await
            .unwrap();
    };
    let (result, ()) = tokio::join!(call, answer);
    assert_eq!(result.unwrap()["thread"]["id"], thread_id);
}

async fn next_notification(sub: &mut codex_asp::Subscription) -> (String, Value) {
    let n = tokio::time::timeout(WAIT, sub.next_notification())
        .await
        .expect("a notification in time")
        .expect("subscription open");
    (n.method().to_owned(), n.params().clone())
}

#[tokio::test]
async fn ids_are_rewritten_and_each_answer_goes_back_to_its_client() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let mut a = Raw::connect(&running.socket).await;
    let mut b = Raw::connect(&running.socket).await;
    assert_eq!(
        a.initialize(json!(1)).await["result"]["userAgent"],
        "fake/0.169.0 (test)"
    );
    assert_eq!(b.initialize(json!("one")).await["id"], "one");

    // both clients use the same request id
    a.send(json!({"id": 7, "method": "model/list", "params": {}}))
        .await;
    let first = recv(&mut up).await;
    b.send(json!({"id": 7, "method": "model/list", "params": {"limit": 1}}))
        .await;
    let second = recv(&mut up).await;
    assert_eq!(first["method"], "model/list");
    assert_eq!(second["params"], json!({"limit": 1}));
    assert_ne!(first["id"], second["id"], "upstream ids are unique");

    // answer in the other order
    up.respond(&second["id"], json!({"data": ["for b"]}))
        .await
        .unwrap();
    up.respond(&first["id"], json!({"data": ["for a"]}))
        .await
        .unwrap();
    assert_eq!(
        b.recv().await,
        json!({"id": 7, "result": {"data": ["for b"]}})
    );
    assert_eq!(
        a.recv().await,
        json!({"id": 7, "result": {"data": ["for a"]}})
    );

    // errors keep code, message and data
    a.send(json!({"id": "x", "method": "bogus/method", "params": {}}))
        .await;
    let req = recv(&mut up).await;
    up.send_json(&json!({"id": req["id"], "error": {"code": -32600, "message": "unknown variant", "data": {"k": 1}}}))
        .await
        .unwrap();
    assert_eq!(
        a.recv().await,
        json!({"id": "x", "error": {"code": -32600, "message": "unknown variant", "data": {"k": 1}}})
    );
    assert_eq!(running.stop().await, ExitReason::Stopped);
}

#[tokio::test]
async fn initialize_is_answered_by_the_broker_once_per_client() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let mut a = Raw::connect(&running.socket).await;
    a.send(json!({"id": 1, "method": "model/list", "params": {}}))
        .await;
    let early = a.recv().await;
    assert_eq!(early["error"]["code"], -32600);
    assert_eq!(early["error"]["message"], "Not initialized");
    a.initialize(json!(2)).await;
    a.send(json!({"id": 3, "method": "initialize", "params": {"clientInfo": {"name": "raw", "version": "1"}}}))
        .await;
    let again = a.recv().await;
    assert_eq!(again["error"]["message"], "Already initialized");
    let conn = fake.connect("second").await;
    drop(conn);
    // upstream saw neither initialize nor initialized from the clients: the next thing it
    // sees is this request
    a.send(json!({"id": 4, "method": "config/read", "params": {}}))
        .await;
    assert_eq!(recv(&mut up).await["method"], "config/read");
    running.stop().await;
}

#[tokio::test]
async fn notifications_go_to_the_thread_owner_and_threadless_ones_to_everyone() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let a = fake.connect("a").await;
    let b = fake.connect("b").await;
    let mut sub_a = a.subscribe_all();
    let mut sub_b = b.subscribe_all();
    start_thread(&a, &mut up, "thr-a").await;
    start_thread(&b, &mut up, "thr-b").await;

    up.notify("thread/started", json!({"thread": {"id": "thr-a"}}))
        .await
        .unwrap();
    up.notify(
        "turn/started",
        json!({"threadId": "thr-b", "turn": {"id": "u-b"}}),
    )
    .await
    .unwrap();
    up.notify(
        "item/agentMessage/delta",
        json!({"threadId": "thr-a", "turnId": "u-a", "itemId": "m", "delta": "hi a"}),
    )
    .await
    .unwrap();
    up.notify("account/updated", json!({"authMode": "apikey"}))
        .await
        .unwrap();
    up.notify(
        "item/agentMessage/delta",
        json!({"threadId": "nobody", "turnId": "u", "itemId": "m", "delta": "lost"}),
    )
    .await
    .unwrap();
    up.notify(
        "turn/completed",
        json!({"threadId": "thr-b", "turn": {"id": "u-b", "status": "completed"}}),
    )
    .await
    .unwrap();

    let got_a = [
        next_notification(&mut sub_a).await,
        next_notification(&mut sub_a).await,
        next_notification(&mut sub_a).await,
    ];
    assert_eq!(got_a[0].0, "thread/started");
    assert_eq!(got_a[1].1["delta"], "hi a");
    assert_eq!(got_a[2].0, "account/updated");
    let got_b = [
        next_notification(&mut sub_b).await,
        next_notification(&mut sub_b).await,
        next_notification(&mut sub_b).await,
    ];
    assert_eq!(got_b[0].0, "turn/started");
    assert_eq!(got_b[1].0, "account/updated");
    assert_eq!(got_b[2].0, "turn/completed");
    // nothing else arrived: not the other thread's, not the unowned thread's
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        futures::FutureExt::now_or_never(sub_a.recv()).is_none(),
        "a got something extra"
    );
    assert!(
        futures::FutureExt::now_or_never(sub_b.recv()).is_none(),
        "b got something extra"
    );
    let status = broker::status_of(&a).await.unwrap();
    assert_eq!(status.clients.len(), 2);
    assert_eq!(status.threads.len(), 2);
    assert!(status.running_turns.is_empty());
    running.stop().await;
}

#[tokio::test]
async fn notifications_before_the_thread_start_answer_are_held_for_the_owner() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let a = fake.connect("a").await;
    let mut sub = a.subscribe_all();
    let call = a.request_raw("thread/start", json!({}));
    let answer = async {
        let req = recv_method(&mut up, "thread/start").await;
        up.notify(
            "thread/status/changed",
            json!({"threadId": "early", "status": {"type": "idle"}}),
        )
        .await
        .unwrap();
        up.respond(&req["id"], json!({"thread": {"id": "early"}}))
            .await
            .unwrap();
    };
    let (result, ()) = tokio::join!(call, answer);
    result.unwrap();
    let (method, params) = next_notification(&mut sub).await;
    assert_eq!(method, "thread/status/changed");
    assert_eq!(params["threadId"], "early");
    running.stop().await;
}

#[tokio::test]
async fn writing_a_thread_owned_by_another_client_is_refused_until_the_owner_leaves() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let a = fake.connect("owner-a").await;
    let c = fake.connect("c").await;
    start_thread(&a, &mut up, "thr-a").await;

    let err = c
        .request_raw("thread/resume", json!({"threadId": "thr-a"}))
        .await
        .unwrap_err();
    assert!(broker::is_thread_owned(&err), "{err}");
    assert_eq!(err.code(), Some(codes::THREAD_OWNED));
    let text = err.to_string();
    assert!(
        text.contains("thr-a")
            && text.contains("owned by another client")
            && text.contains("owner-a"),
        "{text}"
    );
    let err = c
        .request_raw("turn/start", json!({"threadId": "thr-a", "input": []}))
        .await
        .unwrap_err();
    assert!(broker::is_thread_owned(&err), "{err}");

    // reading is fine
    let read = c.request_raw("thread/read", json!({"threadId": "thr-a"}));
    let answer = async {
        let req = recv_method(&mut up, "thread/read").await;
        up.respond(&req["id"], json!({"thread": {"id": "thr-a"}}))
            .await
            .unwrap();
    };
    let (read, ()) = tokio::join!(read, answer);
    read.unwrap();
    // and so is stopping its turn (a `cancel` from another process)
    let interrupt = c.request_raw(
        "turn/interrupt",
        json!({"threadId": "thr-a", "turnId": "u1"}),
    );
    let answer = async {
        let req = recv_method(&mut up, "turn/interrupt").await;
        up.respond(&req["id"], json!({})).await.unwrap();
    };
    let (interrupt, ()) = tokio::join!(interrupt, answer);
    interrupt.unwrap();
    let status = broker::status_of(&c).await.unwrap();
    assert_eq!(
        status.threads.len(),
        1,
        "interrupting does not take the thread"
    );

    // the owner leaves: the thread is free
    drop(a);
    let deadline = Instant::now() + WAIT;
    while broker::status_of(&c).await.unwrap().clients.len() != 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resume = c.request_raw("thread/resume", json!({"threadId": "thr-a"}));
    let answer = async {
        let req = recv_method(&mut up, "thread/resume").await;
        up.respond(&req["id"], json!({"thread": {"id": "thr-a"}}))
            .await
            .unwrap();
    };
    let (resume, ()) = tokio::join!(resume, answer);
    resume.unwrap();
    let status = broker::status_of(&c).await.unwrap();
    assert_eq!(status.threads.len(), 1);
    assert_eq!(status.threads[0].thread_id, "thr-a");
    running.stop().await;
}

#[tokio::test]
async fn approvals_go_to_the_owner_and_its_answer_goes_back_upstream() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let a = tokio::time::timeout(
        WAIT,
        broker::connect(&fake.client_options("a").connection_options(
            ConnectionOptions::default().approval_handler(AlwaysDecide(Decision::Accept)),
        )),
    )
    .await
    .unwrap()
    .unwrap();
    let b = fake.connect("b").await; // declines everything
    let mut sub_a = a.subscribe_all();
    let mut sub_b = b.subscribe_all();
    start_thread(&a, &mut up, "thr-a").await;
    start_thread(&b, &mut up, "thr-b").await;

    // the server's ids overlap the clients' ids (both count from 0)
    up.request(
        json!(0),
        "item/commandExecution/requestApproval",
        json!({"threadId": "thr-a", "turnId": "u", "itemId": "call-1", "command": "touch x"}),
    )
    .await
    .unwrap();
    let answer = recv(&mut up).await;
    assert_eq!(answer, json!({"id": 0, "result": {"decision": "accept"}}));
    up.request(
        json!(1),
        "item/commandExecution/requestApproval",
        json!({"threadId": "thr-b", "turnId": "u", "itemId": "call-2", "command": "rm -rf /"}),
    )
    .await
    .unwrap();
    let answer = recv(&mut up).await;
    assert_eq!(answer, json!({"id": 1, "result": {"decision": "decline"}}));

    // the resolved notification carries the id the owner saw
    let ConnectionEvent::ServerRequest(seen) = tokio::time::timeout(WAIT, sub_a.recv())
        .await
        .unwrap()
        .unwrap()
    else {
        panic!("a sees its approval request first");
    };
    up.notify(
        "serverRequest/resolved",
        json!({"threadId": "thr-a", "requestId": 0}),
    )
    .await
    .unwrap();
    let (method, params) = next_notification(&mut sub_a).await;
    assert_eq!(method, "serverRequest/resolved");
    assert_eq!(
        &serde_json::from_value::<codex_asp::jsonrpc::RequestId>(params["requestId"].clone())
            .unwrap(),
        seen.id()
    );
    let ConnectionEvent::ServerRequest(seen_b) = tokio::time::timeout(WAIT, sub_b.recv())
        .await
        .unwrap()
        .unwrap()
    else {
        panic!("b sees its own approval request");
    };
    assert_eq!(seen_b.params()["itemId"], "call-2");

    // no owner: declined by the broker
    up.request(
        json!(2),
        "item/fileChange/requestApproval",
        json!({"threadId": "nobody", "turnId": "u", "itemId": "p"}),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&mut up).await,
        json!({"id": 2, "result": {"decision": "decline"}})
    );
    running.stop().await;
}

#[tokio::test]
async fn an_owner_that_leaves_with_an_open_approval_gets_it_declined() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let (handler, mut approvals) = codex_asp::approval::ChannelHandler::new(4);
    let a = broker::connect(
        &fake
            .client_options("a")
            .connection_options(ConnectionOptions::default().approval_handler(handler)),
    )
    .await
    .unwrap();
    start_thread(&a, &mut up, "thr-a").await;
    up.request(
        json!(5),
        "item/commandExecution/requestApproval",
        json!({"threadId": "thr-a", "turnId": "u", "itemId": "c"}),
    )
    .await
    .unwrap();
    let pending = tokio::time::timeout(WAIT, approvals.recv())
        .await
        .unwrap()
        .unwrap();
    // the client goes away without answering (the pending request is kept alive)
    let _keep = pending;
    let _ = a.shutdown(Duration::from_millis(10)).await;
    drop(a);
    assert_eq!(
        recv(&mut up).await,
        json!({"id": 5, "result": {"decision": "decline"}})
    );
    running.stop().await;
}

#[tokio::test]
async fn garbage_gets_an_error_and_the_broker_goes_on() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let mut a = Raw::connect(&running.socket).await;
    a.send_text("this is not json").await;
    let err = a.recv().await;
    assert_eq!(err["id"], Value::Null);
    assert_eq!(err["error"]["code"], -32700);
    a.send_text("[1, 2]").await;
    assert_eq!(a.recv().await["error"]["code"], -32600);
    a.send_text(r#"{"id": 5}"#).await;
    let err = a.recv().await;
    assert_eq!(err["id"], 5);
    assert_eq!(err["error"]["code"], -32600);
    a.send_text("\u{0}\u{1}{{{").await;
    assert_eq!(a.recv().await["error"]["code"], -32700);
    a.send(json!({"id": 9, "result": {"stray": true}})).await; // an answer to nothing
    a.initialize(json!(1)).await;
    a.send(json!({"id": 2, "method": "config/read", "params": {}}))
        .await;
    let req = recv(&mut up).await;
    up.respond(&req["id"], json!({"config": {}})).await.unwrap();
    assert_eq!(a.recv().await, json!({"id": 2, "result": {"config": {}}}));
    // broker/status works before and after initialize, on any connection
    let mut b = Raw::connect(&running.socket).await;
    b.send(json!({"id": 1, "method": "broker/status"})).await;
    let status = b.recv().await;
    assert_eq!(status["result"]["pid"], std::process::id());
    assert_eq!(status["result"]["appServer"], "ready");
    running.stop().await;
}

#[tokio::test]
async fn an_app_server_exit_fails_what_is_in_flight_and_the_next_request_restarts_it() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let a = fake.connect("a").await;
    let b = fake.connect("b").await;
    let mut sub_a = a.subscribe_all();
    let mut sub_b = b.subscribe_all();
    start_thread(&a, &mut up, "thr-a").await;
    up.notify(
        "turn/started",
        json!({"threadId": "thr-a", "turn": {"id": "turn-1"}}),
    )
    .await
    .unwrap();
    assert_eq!(next_notification(&mut sub_a).await.0, "turn/started");
    let status = broker::status_of(&a).await.unwrap();
    assert_eq!(status.running_turns.len(), 1);

    // a request is in flight when the app-server dies
    let in_flight = tokio::spawn({
        let b = b.clone();
        async move { b.request_raw("model/list", json!({})).await }
    });
    recv_method(&mut up, "model/list").await;
    let started = Instant::now();
    up.exit(
        std::process::ExitStatus::from_raw(9),
        "boom: out of memory\n",
    )
    .await;
    let err = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
    assert_eq!(err.code(), Some(codes::APP_SERVER_EXITED), "{err}");
    let exit = AppServerExit::from_error(&err).expect("typed exit data");
    assert_eq!(exit.signal, Some(9));
    assert!(exit.stderr_tail.contains("boom"), "{exit:?}");

    // the owner of the running turn is told, with the thread and turn
    let (method, params) = next_notification(&mut sub_a).await;
    assert_eq!(method, APP_SERVER_EXITED_NOTIFICATION);
    assert_eq!(params["threadId"], "thr-a");
    assert_eq!(params["turnId"], "turn-1");
    assert_eq!(params["signal"], 9);
    // the other client hears about it too, without a thread
    let (method, params) = next_notification(&mut sub_b).await;
    assert_eq!(method, APP_SERVER_EXITED_NOTIFICATION);
    assert!(params.get("threadId").is_none());
    let status = broker::status_of(&a).await.unwrap();
    assert_eq!(status.app_server, "down");
    assert!(status.running_turns.is_empty());
    assert!(status.last_exit.unwrap().contains("signal 9"));

    // the next request starts a new app-server; the owned thread is resumed first, with the
    // settings it was started with
    let turn = tokio::spawn({
        let a = a.clone();
        async move {
            a.request_raw("turn/start", json!({"threadId": "thr-a", "input": []}))
                .await
        }
    });
    let mut up2 = fake.upstream().await;
    let resume = recv(&mut up2).await;
    assert_eq!(resume["method"], "thread/resume");
    assert_eq!(
        resume["params"],
        json!({"threadId": "thr-a", "excludeTurns": true, "cwd": "/w", "approvalPolicy": "untrusted"})
    );
    up2.respond(&resume["id"], json!({"thread": {"id": "thr-a"}}))
        .await
        .unwrap();
    let start = recv(&mut up2).await;
    assert_eq!(start["method"], "turn/start");
    up2.respond(&start["id"], json!({"turn": {"id": "turn-2"}}))
        .await
        .unwrap();
    assert_eq!(turn.await.unwrap().unwrap()["turn"]["id"], "turn-2");
    let status = broker::status_of(&a).await.unwrap();
    assert_eq!(status.restarts, 1);
    assert_eq!(status.app_server, "ready");
    running.stop().await;
}

#[tokio::test]
async fn handshakes_with_a_silent_app_server_are_bounded_on_both_sides() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = tokio::time::timeout(WAIT, fake.servers.recv())
        .await
        .expect("the broker starts an app-server")
        .expect("launcher alive");
    // the app-server reads initialize and never answers it
    assert_eq!(recv(&mut up).await["method"], "initialize");
    // a client's handshake through the broker has its own deadline
    let options = fake.client_options("impatient").connection_options(
        ConnectionOptions::default().handshake_timeout(Duration::from_millis(300)),
    );
    let err = tokio::time::timeout(WAIT, broker::connect(&options))
        .await
        .expect("the handshake is bounded")
        .unwrap_err();
    match &err {
        broker::Error::Asp(codex_asp::Error::HandshakeTimeout {
            endpoint, after, ..
        }) => {
            assert!(endpoint.starts_with("codex-broker unix://"), "{endpoint}");
            assert_eq!(*after, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    running.stop().await;

    // the broker's own handshake with the app-server is bounded too: the app-server is
    // dropped and the clients waiting for it fail
    let mut fake = Fake::new();
    fake.options = fake
        .options
        .clone()
        .upstream_init_timeout(Duration::from_millis(300));
    let running = fake.start().await;
    let mut up = tokio::time::timeout(WAIT, fake.servers.recv())
        .await
        .expect("the broker starts an app-server")
        .expect("launcher alive");
    assert_eq!(recv(&mut up).await["method"], "initialize");
    let started = Instant::now();
    let err = tokio::time::timeout(WAIT, broker::connect(&fake.client_options("patient")))
        .await
        .expect("the broker gives up on its app-server")
        .unwrap_err();
    assert!(started.elapsed() < WAIT);
    assert!(
        err.to_string()
            .contains("did not answer initialize within 300ms"),
        "{err}"
    );
    // the silent app-server's transport was closed
    let end = tokio::time::timeout(WAIT, up.recv_line()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    running.stop().await;
}

/// Opens thread `thread` for a raw client (request id 2).
async fn raw_thread(raw: &mut Raw, upstream: &mut MemoryServer, thread: &str) {
    raw.send(json!({"id": 2, "method": "thread/start", "params": {"cwd": "/w"}}))
        .await;
    let req = recv_method(upstream, "thread/start").await;
    upstream
        .respond(&req["id"], json!({"thread": {"id": thread}}))
        .await
        .unwrap();
    let answer = raw.recv().await;
    assert_eq!(answer["result"]["thread"]["id"], thread, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deltas_reaches_a_slow_owner_merged_and_a_stalled_client_is_dropped() {
    const BURST: usize = 50_000;
    const STALLED: usize = 40_000;
    let mut fake = Fake::new();
    // room for the hub's queue while the writer task that merges waits for a core (the
    // suite runs on a loaded 2-core machine)
    fake.options.client_queue = 4096;
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let mut slow = Raw::connect(&running.socket).await;
    slow.initialize(json!(1)).await;
    raw_thread(&mut slow, &mut up, "t").await;
    let mut stalled = Raw::connect(&running.socket).await;
    stalled.initialize(json!(1)).await;
    raw_thread(&mut stalled, &mut up, "s").await;
    // the stalled client never reads: lines it cannot merge overflow its backlog
    for i in 0..STALLED {
        up.notify(
            "item/started",
            json!({"threadId": "s", "turnId": "v", "item": {"type": "agentMessage", "id": format!("x{i}"), "text": ""}}),
        )
        .await
        .unwrap();
    }
    // the slow one reads nothing until the whole burst was sent, then catches up
    for i in 0..BURST {
        up.notify(
            "item/agentMessage/delta",
            json!({"threadId": "t", "turnId": "u", "itemId": "m", "delta": format!("{i},")}),
        )
        .await
        .unwrap();
    }
    up.notify(
        "turn/completed",
        json!({"threadId": "t", "turn": {"id": "u", "status": "completed", "items": []}}),
    )
    .await
    .unwrap();
    let mut text = String::new();
    let mut lines = 0;
    loop {
        let msg = slow.recv().await;
        lines += 1;
        match msg["method"].as_str() {
            Some("item/agentMessage/delta") => {
                assert_eq!(msg["params"]["itemId"], "m");
                text.push_str(msg["params"]["delta"].as_str().unwrap());
            }
            Some("turn/completed") => break,
            _ => panic!("{msg}"),
        }
    }
    let expected: String = (0..BURST).map(|i| format!("{i},")).collect();
    assert!(text == expected, "the merged text differs");
    assert!(lines < BURST, "nothing was merged ({lines} lines)");
    // the stalled client was disconnected after what its socket held
    let mut seen = 0;
    loop {
        match tokio::time::timeout(WAIT, stalled.lines.next_line()).await {
            Ok(Ok(Some(_))) => seen += 1,
            Ok(Ok(None) | Err(_)) => break,
            Err(_) => panic!("the stalled client is still connected after {seen} lines"),
        }
    }
    assert!(seen < STALLED, "{seen}");
    running.stop().await;
}

#[tokio::test]
async fn opted_out_notifications_are_not_delivered() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let mut params = InitializeParams::new("quiet", "1");
    let mut caps = InitializeCapabilities::default();
    caps.opt_out_notification_methods = Some(vec!["account/rateLimits/updated".into()]);
    params.capabilities = Some(caps);
    let quiet = broker::connect(&fake.options.clone().client_info(params))
        .await
        .unwrap();
    let mut sub = quiet.subscribe_all();
    up.notify("account/rateLimits/updated", json!({}))
        .await
        .unwrap();
    up.notify("account/updated", json!({})).await.unwrap();
    assert_eq!(next_notification(&mut sub).await.0, "account/updated");
    running.stop().await;
}

#[tokio::test]
async fn files_are_private_a_second_broker_is_refused_and_shutdown_cleans_up() {
    let mut fake = Fake::new();
    let running = fake.start().await;
    let _up = fake.upstream().await;
    let dir = running.socket.parent().unwrap().to_owned();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let socket_mode = std::fs::symlink_metadata(&running.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(socket_mode, 0o600);
    assert_eq!(running.socket, broker::socket_path(&fake.options).unwrap());

    let err = Broker::bind(fake.options.clone()).await.unwrap_err();
    assert!(
        matches!(err, broker::Error::AlreadyRunning { pid: Some(p), .. } if p == std::process::id()),
        "{err}"
    );

    // broker/shutdown from a client ends it and removes the socket and pid file
    let mut raw = Raw::connect(&running.socket).await;
    raw.send(json!({"id": 1, "method": "broker/shutdown"}))
        .await;
    assert_eq!(raw.recv().await, json!({"id": 1, "result": {"ok": true}}));
    let reason = tokio::time::timeout(WAIT, running.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reason, ExitReason::ShutdownRequested);
    assert!(!running.socket.exists());
    let pids: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .collect();
    assert!(pids.is_empty());
    assert!(matches!(
        broker::connect(&fake.options).await.unwrap_err(),
        broker::Error::NotRunning { .. }
    ));
    drop(fake.dir);
}

#[tokio::test]
async fn a_client_of_another_user_is_refused() {
    let mut fake = Fake::new();
    // a directory other users can reach (the default one is 0700, which alone keeps them out)
    let open_dir = tempfile::Builder::new()
        .prefix("brk-uid-")
        .tempdir_in("/tmp")
        .unwrap();
    fake.options = fake.options.clone().socket_dir(open_dir.path());
    let running = fake.start().await;
    let _up = fake.upstream().await;
    assert_eq!(
        std::fs::metadata(open_dir.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    if !nix::unistd::getuid().is_root() {
        eprintln!(
            "a_client_of_another_user_is_refused: not root, cannot connect as another user; only the 0700 directory was checked"
        );
        running.stop().await;
        return;
    }
    std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&running.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(s.makefile().readline().strip())";
    let out = tokio::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(&running.socket)
        .uid(65534)
        .gid(65534)
        .output()
        .await
        .expect("python3 as nobody");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("peer uid 65534"),
        "{answer}"
    );
    assert!(answer.get("result").is_none(), "no status for another user");
    running.stop().await;
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let mut fake = Fake::new();
    let socket = broker::socket_path(&fake.options).unwrap();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists(), "a socket file with no listener");
    assert!(matches!(
        broker::status(&fake.options).await.unwrap_err(),
        broker::Error::NotRunning { .. }
    ));
    let running = fake.start().await;
    let _up = fake.upstream().await;
    let status = broker::status(&fake.options).await.unwrap();
    assert_eq!(status.pid, std::process::id());
    running.stop().await;
    assert!(!socket.exists());
}

#[tokio::test]
async fn an_idle_broker_exits_but_not_while_a_turn_runs() {
    let mut fake = Fake::new();
    fake.options = fake
        .options
        .clone()
        .idle_timeout(Some(Duration::from_millis(300)));
    let running = fake.start().await;
    let mut up = fake.upstream().await;
    let a = fake.connect("a").await;
    start_thread(&a, &mut up, "thr-a").await;
    up.notify(
        "turn/started",
        json!({"threadId": "thr-a", "turn": {"id": "t1"}}),
    )
    .await
    .unwrap();
    let mut sub = a.subscribe_all();
    drop(sub.recv());
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a);
    // the turn still runs: no idle exit
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !running.task.is_finished(),
        "a running turn keeps the broker alive"
    );
    up.notify(
        "turn/completed",
        json!({"threadId": "thr-a", "turn": {"id": "t1", "status": "completed"}}),
    )
    .await
    .unwrap();
    let reason = tokio::time::timeout(WAIT, running.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reason, ExitReason::Idle);
    assert!(!running.socket.exists());
    // the app-server's input was closed
    assert!(
        tokio::time::timeout(WAIT, up.recv_line())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn attach_daemon_reports_a_missing_daemon() {
    let dir = test_dir();
    let err = broker::attach_daemon(dir.path()).await.unwrap_err();
    assert!(matches!(err, broker::Error::NoDaemon { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("no codex app-server daemon is running"),
        "{err}"
    );
}

// ----- the real binary ------------------------------------------------------------------
