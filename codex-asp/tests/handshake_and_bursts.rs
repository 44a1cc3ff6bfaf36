//! Two ways a codex app-server can defeat a client that waits on it: never answering the
//! `initialize` handshake (bounded by `ConnectionOptions::handshake_timeout`, a typed error,
//! the transport closed and a launched process killed), and a burst of text deltas for the
//! turn a client drives (merged for an `Overflow::CoalesceDeltas` subscription, so a reader
//! that keeps up on average loses nothing; other subscribers are not held up, and one that
//! never reads still lags).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codex_asp::backend::{AspBackendOptions, asp_error};
use codex_asp::protocol::InitializeParams;
use codex_asp::transport::memory::{self, MemoryServer};
use codex_asp::transport::{TransportOptions, stdio};
use codex_asp::{
    AspBackend, Connection, ConnectionEvent, ConnectionOptions, Error, Filter, Overflow,
};
use codex_core::process::CodexCommand;
use codex_core::{Backend, Capabilities, CodexBinary, CodexVersion, TaskSpec};
use serde_json::{Value, json};

/// A generous bound for things that should take milliseconds.
const WAIT: Duration = Duration::from_secs(20);
/// The handshake deadline the tests set.
const DEADLINE: Duration = Duration::from_millis(500);
/// The burst of the issue: 200,000 deltas of our own turn.
const BURST: usize = 200_000;

fn params() -> InitializeParams {
    InitializeParams::new("codex-asp-tests", "0.0.0")
}

#[tokio::test]
async fn a_server_that_never_answers_initialize_times_out_typed() {
    let (transport, mut server) = memory::pair(TransportOptions::default());
    let started = Instant::now();
    let connect = tokio::spawn(async move {
        Connection::connect(
            transport,
            ConnectionOptions::default().handshake_timeout(DEADLINE),
            &params(),
        )
        .await
    });
    // the server reads the request and never answers it
    let init = tokio::time::timeout(WAIT, server.recv_json())
        .await
        .expect("initialize was sent")
        .expect("the client's side is open");
    assert_eq!(init["method"], "initialize");
    let err = tokio::time::timeout(WAIT, connect)
        .await
        .expect("the handshake is bounded")
        .unwrap()
        .unwrap_err();
    assert!(started.elapsed() >= DEADLINE);
    match &err {
        Error::HandshakeTimeout {
            endpoint,
            program,
            after,
        } => {
            assert_eq!(endpoint, "memory");
            assert_eq!(*program, None);
            assert_eq!(*after, DEADLINE);
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("did not answer initialize within 500.0ms") && text.contains("memory"),
        "{text}"
    );
    // the connection is closed: the server sees the end of its input
    let end = tokio::time::timeout(WAIT, server.recv_line()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

/// A stand-in for codex whose `app-server` reads its input and never answers; it writes its
/// pid to `$FAKE_PID_FILE` first. `--version` and `exec --help` answer, for a probe.
fn silent_codex(dir: &Path) -> PathBuf {
    let path = dir.join("silent-codex");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         case \"$1\" in\n\
           --version) echo 'codex-cli 0.169.0' ;;\n\
           app-server) echo $$ > \"$FAKE_PID_FILE\"; exec cat 3>&1 > /dev/null ;;\n\
           *) echo 'Options:' ;;\n\
         esac\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

/// The pid the fake wrote, once it did.
async fn fake_pid(file: &Path) -> u32 {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(start.elapsed() < WAIT, "the fake app-server did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // a zombie is dead
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_gone(pid: u32) {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < WAIT,
            "the silent app-server {pid} is still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_silent_app_server_on_stdio_is_killed_after_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let program = silent_codex(dir.path());
    let pid_file = dir.path().join("pid");
    let command = CodexCommand::new(&program)
        .arg("app-server")
        .env("FAKE_PID_FILE", &pid_file);
    let transport = stdio::spawn(command, &TransportOptions::default()).unwrap();
    let connect = tokio::spawn(async move {
        Connection::connect(
            transport,
            ConnectionOptions::default().handshake_timeout(DEADLINE),
            &params(),
        )
        .await
    });
    let pid = fake_pid(&pid_file).await;
    let err = tokio::time::timeout(WAIT, connect)
        .await
        .expect("the handshake is bounded")
        .unwrap()
        .unwrap_err();
    match &err {
        Error::HandshakeTimeout {
            endpoint,
            program: Some(p),
            after,
        } => {
            assert_eq!(endpoint, "stdio");
            assert_eq!(p, &program);
            assert_eq!(*after, DEADLINE);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("silent-codex"), "{err}");
    wait_gone(pid).await;
}

#[tokio::test]
async fn an_app_server_backend_bounds_its_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let program = silent_codex(dir.path());
    let pid_file = dir.path().join("pid");
    let codex = CodexBinary::from_parts(
        program.clone(),
        CodexVersion::new(0, 169, 0),
        Capabilities::default(),
    );
    let options = AspBackendOptions::default()
        .env("FAKE_PID_FILE", pid_file.to_string_lossy())
        .handshake_timeout(DEADLINE);
    let spawn = tokio::spawn(AspBackend::spawn(codex, options));
    let pid = fake_pid(&pid_file).await;
    let err = tokio::time::timeout(WAIT, spawn)
        .await
        .expect("the start-up is bounded")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            asp_error(&err),
            Some(Error::HandshakeTimeout { program: Some(p), .. }) if p == &program
        ),
        "{err:?}"
    );
    wait_gone(pid).await;
}

fn delta(thread: &str, turn: &str, item: &str, text: &str) -> Value {
    json!({"threadId": thread, "turnId": turn, "itemId": item, "delta": text})
}

/// The piece of text of delta number `i`.
fn piece(i: usize) -> String {
    format!("{i},")
}

/// Sends `count` deltas of our turn (`t`/`u`, item `m`), interleaved with a notification of
/// another thread every 1000, then `item/completed` and `turn/completed`.
async fn burst(server: &mut MemoryServer, count: usize) {
    for i in 0..count {
        server
            .notify("item/agentMessage/delta", delta("t", "u", "m", &piece(i)))
            .await
            .unwrap();
        if i.is_multiple_of(1000) {
            server
                .notify(
                    "item/agentMessage/delta",
                    delta("other", "o", "x", &piece(i)),
                )
                .await
                .unwrap();
        }
    }
    let text: String = (0..count).map(piece).collect();
    server
        .notify(
            "item/completed",
            json!({"threadId": "t", "turnId": "u", "item": {"type": "agentMessage", "id": "m", "text": text}}),
        )
        .await
        .unwrap();
    server
        .notify(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "status": "completed", "items": []}}),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deltas_reaches_a_slow_coalescing_subscriber_whole() {
    let (transport, mut server) = memory::pair(TransportOptions::default());
    let conn = Connection::new(
        transport,
        ConnectionOptions::default().subscription_capacity(1024),
    );
    let mut ours = conn.subscribe_with(Filter::Thread("t".into()), Overflow::CoalesceDeltas);
    assert_eq!(ours.overflow(), Overflow::CoalesceDeltas);
    let mut other = conn.subscribe(Filter::Thread("other".into()));
    // a subscriber that never reads
    let mut idle = conn.subscribe_all();
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        burst(&mut server, BURST).await;
        server
    });
    // another thread's subscriber is not held up by ours
    let other_reader = tokio::spawn(async move {
        let mut n = 0;
        while n < BURST.div_ceil(1000) {
            match other.recv().await.unwrap() {
                ConnectionEvent::Notification(_) => n += 1,
                e => panic!("{e:?}"),
            }
        }
        n
    });
    // ours is slower than the burst: it reads nothing until the burst was sent, then
    // catches up (with a pause every 50 events)
    let server = sender.await.unwrap();
    let mut text = String::new();
    let mut methods = Vec::new();
    let mut events = 0usize;
    loop {
        let event = tokio::time::timeout(WAIT * 6, ours.recv())
            .await
            .expect("the burst keeps coming")
            .unwrap();
        events += 1;
        if events.is_multiple_of(50) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ConnectionEvent::Notification(n) = event else {
            panic!("our subscriber got {event:?}");
        };
        match n.method() {
            "item/agentMessage/delta" => text.push_str(n.params()["delta"].as_str().unwrap()),
            method => {
                methods.push(method.to_owned());
                if method == "turn/completed" {
                    break;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let expected: String = (0..BURST).map(piece).collect();
    assert_eq!(text.len(), expected.len());
    assert!(text == expected, "the merged text differs");
    assert_eq!(methods, ["item/completed", "turn/completed"]);
    assert_eq!(other_reader.await.unwrap(), BURST.div_ceil(1000));
    let stats = conn.stats();
    assert!(stats.coalesced_events > 0, "{stats:?}");
    assert!(events < BURST, "{events} events for {BURST} deltas");
    // the subscriber that never read lags, explicitly
    let mut lagged = 0;
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(200), idle.recv()).await {
        if let ConnectionEvent::Lagged(n) = event {
            lagged += n;
        }
    }
    assert!(lagged > 0);
    assert_eq!(stats.lagged_events, lagged);
    eprintln!(
        "{BURST} deltas in {elapsed:?}: {events} events read, {} merged",
        stats.coalesced_events
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_read_slower_than_a_burst_of_deltas_succeeds_with_the_full_text() {
    let (transport, mut server) = memory::pair(TransportOptions::default());
    let conn = Connection::new(
        transport,
        ConnectionOptions::default()
            .subscription_capacity(codex_asp::backend::DEFAULT_SUBSCRIPTION_CAPACITY),
    );
    let backend = AspBackend::from_connection(conn);
    let start = tokio::spawn({
        let backend = backend.clone();
        async move { backend.start(TaskSpec::new("talk a lot").cwd("/")).await }
    });
    let msg = server.recv_json().await.unwrap();
    assert_eq!(msg["method"], "thread/start");
    server
        .respond(&msg["id"], json!({"thread": {"id": "t"}}))
        .await
        .unwrap();
    let msg = server.recv_json().await.unwrap();
    assert_eq!(msg["method"], "turn/start");
    server
        .respond(
            &msg["id"],
            json!({"turn": {"id": "u", "status": "inProgress", "items": []}}),
        )
        .await
        .unwrap();
    let mut run = start.await.unwrap().unwrap();
    // the run is read slower than the burst: not at all until the burst was sent, then with
    // a pause every 50 events
    burst(&mut server, BURST).await;
    let mut text = String::new();
    let mut events = 0usize;
    while let Some(event) = tokio::time::timeout(WAIT * 6, run.next_event())
        .await
        .expect("the run goes on")
    {
        events += 1;
        if events.is_multiple_of(50) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let codex_core::Event::Delta { delta, .. } = &event {
            text.push_str(delta);
        }
    }
    let outcome = run.outcome().await.unwrap();
    let expected: String = (0..BURST).map(piece).collect();
    assert!(text == expected, "the streamed text differs");
    assert_eq!(outcome.final_message.as_deref(), Some(expected.as_str()));
    let stats = backend.connection().stats();
    assert_eq!(stats.lagged_events, 0);
    assert!(stats.coalesced_events > 0, "{stats:?}");
    assert!(events < BURST, "{events} events for {BURST} deltas");
    drop(server);
}
