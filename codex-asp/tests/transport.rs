//! The transports against the real, pinned codex binary (no model is needed: these tests only
//! handshake, list models and start threads; the provider points at a closed port).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codex_asp::protocol::{InitializeParams, ModelList, ModelListParams};
use codex_asp::transport::ws::{self, UnixServer, WsAuth, WsServer, WsServerOptions};
use codex_asp::transport::{Transport, TransportOptions, stdio};
use codex_asp::{CloseReason, Connection, ConnectionOptions, Error};
use codex_core::process::CodexCommand;
use serde_json::json;

mod common;
use common::{codex_bin, write_offline_config};

/// The version `codex --version` prints (`codex-cli 0.169.0` -> `0.169.0`), so that the
/// tests hold for whichever codex `CODEX_BIN` names.
fn codex_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let out = std::process::Command::new(codex_bin())
            .arg("--version")
            .output()
            .expect("run codex --version");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .last()
            .expect("codex --version prints a version")
            .to_owned()
    })
}

/// A private CODEX_HOME whose provider points at a closed port (no turn runs here).
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("asp-")
            .tempdir()
            .expect("temp dir");
        write_offline_config(&dir.path().join("home"));
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn app_server(&self) -> CodexCommand {
        CodexCommand::new(codex_bin())
            .arg("app-server")
            .env("CODEX_HOME", self.dir.path().join("home"))
            .env_remove("OPENAI_API_KEY")
            .env_remove("CODEX_API_KEY")
    }
}

fn client() -> InitializeParams {
    let mut params = InitializeParams::new("codex-bridge", "0.1.0");
    params.client_info.title = Some("codex-asp tests".into());
    params
}

async fn connect(transport: Transport) -> Connection {
    let (conn, init) = Connection::connect(transport, ConnectionOptions::default(), &client())
        .await
        .expect("handshake");
    assert!(
        init.user_agent.contains(codex_version()),
        "{}",
        init.user_agent
    );
    conn
}

async fn list_models(conn: &Connection) {
    let models = conn
        .request::<ModelList>(ModelListParams::default())
        .await
        .expect("model/list");
    assert!(!models.data.is_empty(), "the bundled catalog lists models");
}

#[tokio::test]
async fn stdio_handshake_and_model_list() {
    let home = Home::new();
    let transport = stdio::spawn(home.app_server(), &TransportOptions::default()).unwrap();
    let conn = Connection::new(transport, ConnectionOptions::default());
    // before the handshake, codex refuses requests
    let err = conn.request_raw("model/list", json!({})).await.unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
    assert!(err.to_string().contains("Not initialized"), "{err}");
    let init = conn.initialize(&client()).await.unwrap();
    assert!(
        init.user_agent.contains(codex_version()),
        "{}",
        init.user_agent
    );
    list_models(&conn).await;
    // a second initialize is refused
    let err = conn.initialize(&client()).await.unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
    // unknown methods are -32600 too
    let err = conn
        .request_raw("no/such/method", json!({}))
        .await
        .unwrap_err();
    assert!(err.is_invalid_request(), "{err}");

    // closing stdin makes codex exit cleanly
    let reason = conn.shutdown(Duration::from_secs(10)).await;
    match reason {
        CloseReason::ProcessExited { status, .. } => assert_eq!(status.code(), Some(0)),
        other => panic!("unexpected close: {other}"),
    }
}

#[tokio::test]
async fn killing_the_app_server_fails_pending_calls_within_milliseconds() {
    let home = Home::new();
    let transport = stdio::spawn(home.app_server(), &TransportOptions::default()).unwrap();
    let process = transport.process().cloned().expect("stdio has a process");
    let conn = connect(transport).await;
    let mut sub = conn.subscribe_all();

    let pending: Vec<_> = (0..3)
        .map(|_| {
            let conn = conn.clone();
            let cwd = home.work();
            tokio::spawn(async move {
                conn.request_raw("thread/start", json!({"cwd": cwd, "ephemeral": true}))
                    .await
            })
        })
        .collect();
    let start = Instant::now();
    while conn.stats().pending_requests < 3 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::task::yield_now().await;
    }
    let killed_at = Instant::now();
    process.kill();
    let mut failed = 0;
    for task in pending {
        match task.await.unwrap() {
            Ok(_) => {} // answered before the kill
            Err(err) => {
                failed += 1;
                assert_eq!(err.exit_status().and_then(|s| s.signal()), Some(9), "{err}");
                assert!(err.to_string().contains("signal 9"), "{err}");
                assert!(err.stderr_tail().is_some());
            }
        }
    }
    let elapsed = killed_at.elapsed();
    eprintln!("{failed} of 3 pending calls failed {elapsed:?} after the kill");
    assert!(
        failed > 0,
        "every thread/start was answered before the kill"
    );
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
    // subscriptions end with the same reason
    let err = loop {
        match sub.recv().await {
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    assert_eq!(err.exit_status().and_then(|s| s.signal()), Some(9));
    assert!(process.exit().is_some());
    // and so does everything after
    let err = conn.request_raw("model/list", json!({})).await.unwrap_err();
    assert!(matches!(
        err.close_reason(),
        Some(CloseReason::ProcessExited { .. })
    ));
}

#[tokio::test]
async fn dropping_the_connection_kills_the_app_server() {
    let home = Home::new();
    let transport = stdio::spawn(home.app_server(), &TransportOptions::default()).unwrap();
    let process = transport.process().cloned().unwrap();
    let conn = connect(transport).await;
    drop(conn);
    let exit = tokio::time::timeout(Duration::from_secs(5), process.wait())
        .await
        .expect("the app-server went away")
        .expect("exit status");
    assert_eq!(exit.status.signal(), Some(9));
}

#[tokio::test]
async fn websocket_with_capability_token() {
    let home = Home::new();
    let auth = WsAuth::generate_token_file(home.path().join("ws-token")).unwrap();
    let server = WsServer::spawn(home.app_server(), WsServerOptions::new(auth))
        .await
        .unwrap();
    assert!(server.addr().ip().is_loopback());
    assert_ne!(server.addr().port(), 0);
    assert_eq!(ws::readyz(server.addr()).await.unwrap(), 200);

    // the right token works
    let conn = connect(server.connect(&TransportOptions::default()).await.unwrap()).await;
    list_models(&conn).await;

    // no token, or a wrong one: 401, as a typed error
    let opts = TransportOptions::default();
    for token in [None, Some("wrong-token")] {
        let err = server.connect_with_token(token, &opts).await.unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
        assert!(
            err.to_string().starts_with(
                "the app-server refused the connection: missing or wrong capability token"
            ),
            "{err}"
        );
    }

    // the server going away closes the connection
    let mut server = server;
    server.process().kill_tree();
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("closed in time");
    assert!(matches!(reason, CloseReason::PeerClosed { .. }), "{reason}");
}

#[tokio::test]
async fn websocket_without_auth_on_a_free_port() {
    let home = Home::new();
    let server = WsServer::spawn(home.app_server(), WsServerOptions::default())
        .await
        .unwrap();
    let conn = connect(server.connect(&TransportOptions::default()).await.unwrap()).await;
    list_models(&conn).await;
    // two clients on one server
    let conn2 = connect(server.connect(&TransportOptions::default()).await.unwrap()).await;
    list_models(&conn2).await;
    assert_eq!(conn.label(), server.url());
}

#[tokio::test]
async fn unix_socket_transport() {
    let home = Home::new();
    let path = home.path().join("app.sock");
    let server = UnixServer::spawn(home.app_server(), &path, Duration::from_secs(30))
        .await
        .unwrap();
    let conn = connect(server.connect(&TransportOptions::default()).await.unwrap()).await;
    list_models(&conn).await;
    let thread = conn
        .request_raw(
            "thread/start",
            json!({"cwd": home.work(), "ephemeral": true}),
        )
        .await
        .unwrap();
    assert!(thread["thread"]["id"].is_string(), "{thread}");
    drop(conn);
    drop(server);
    assert!(!path.exists(), "the socket is removed");
}

#[tokio::test]
async fn a_server_that_cannot_start_reports_its_exit() {
    let home = Home::new();
    // a non-loopback address without auth is refused at start-up
    let mut options = WsServerOptions::default().ready_timeout(Duration::from_secs(30));
    options.listen = "0.0.0.0:0".parse().unwrap();
    let err = WsServer::spawn(home.app_server(), options)
        .await
        .unwrap_err();
    let tail = err.stderr_tail().unwrap_or_default().to_owned();
    assert!(err.exit_status().is_some(), "{err}");
    assert!(tail.contains("refusing to start non-loopback"), "{err}");
}
