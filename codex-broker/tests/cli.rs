//! The `codex-broker` binary's lifecycle against the real, pinned codex (no model is needed:
//! these tests only handshake and read the status): `broker::ensure` starts it once and
//! reuses it, the `status` and `stop` commands, the idle exit, a stale socket, a broker that
//! cannot start.
//!
//! Every test uses its own directory under `target/tmp/`, and stops what it started.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codex_asp::broker::{self, BrokerOptions};
use serde_json::{Value, json};

/// codex-asp's real-binary test helpers (the pinned codex, an offline `CODEX_HOME`).
#[path = "../../codex-asp/tests/common/mod.rs"]
mod common;
use common::{codex_bin, write_offline_config};

fn test_dir() -> tempfile::TempDir {
    let parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&parent).expect("target tmp dir");
    tempfile::Builder::new()
        .prefix("brk-")
        .tempdir_in(parent)
        .expect("temp dir")
}

/// A private CODEX_HOME (provider on a closed port: no turn runs in these tests) and broker
/// options for the real binary.
fn real_options(dir: &Path) -> BrokerOptions {
    let home = dir.join("home");
    write_offline_config(&home);
    BrokerOptions::new()
        .codex(codex_bin())
        .codex_home(&home)
        .env("CODEX_APP_SERVER_DISABLE_MANAGED_CONFIG", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .socket_dir(dir.join("run"))
        .broker_binary(env!("CARGO_BIN_EXE_codex-broker"))
        .idle_timeout(Some(Duration::from_secs(60)))
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z")
}

async fn wait_dead(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Kills a broker process (and its app-server group) if a test fails half-way.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[tokio::test]
async fn ensure_starts_the_binary_once_and_reuses_it_then_stop_ends_it() {
    let dir = test_dir();
    let options = real_options(dir.path());
    let first = tokio::time::timeout(Duration::from_secs(60), broker::ensure(&options))
        .await
        .expect("ensure in time")
        .expect("ensure");
    let status = broker::status_of(&first).await.unwrap();
    let mut guard = KillOnDrop(vec![status.pid]);
    assert_ne!(status.pid, std::process::id(), "a separate process");
    assert_eq!(status.app_server, "ready");
    // the version of the codex under test (CODEX_BIN may name another than the pinned one)
    let printed = std::process::Command::new(codex_bin())
        .arg("--version")
        .output()
        .expect("codex --version");
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert_eq!(
        status.codex_version.as_deref(),
        printed.split_whitespace().last()
    );
    let app_server = status.app_server_pid.expect("app-server pid");
    guard.0.push(app_server);
    // the broker leads its own process group
    assert_eq!(
        nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(status.pid as i32)))
            .unwrap()
            .as_raw(),
        status.pid as i32
    );

    let second = broker::ensure(&options).await.expect("second ensure");
    let again = broker::status_of(&second).await.unwrap();
    assert_eq!(again.pid, status.pid, "the running broker is reused");
    assert_eq!(again.clients.len(), 2);
    // the same JSON-RPC as app-server, through the broker
    let models = second.request_raw("model/list", json!({})).await.unwrap();
    assert!(
        models["data"].as_array().is_some_and(|m| !m.is_empty()),
        "{models}"
    );

    // the CLI
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-broker"))
        .args(["status", "--json", "--socket-dir"])
        .arg(dir.path().join("run"))
        .arg("--codex")
        .arg(codex_bin())
        .env("CODEX_HOME", dir.path().join("home"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["pid"], status.pid);

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-broker"))
        .args(["stop", "--socket-dir"])
        .arg(dir.path().join("run"))
        .arg("--codex")
        .arg(codex_bin())
        .env("CODEX_HOME", dir.path().join("home"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_dead(status.pid, Duration::from_secs(10)).await,
        "broker gone"
    );
    assert!(
        wait_dead(app_server, Duration::from_secs(10)).await,
        "app-server gone"
    );
    assert!(
        !broker::socket_path(&options).unwrap().exists(),
        "socket removed"
    );
    assert!(first.closed().await.to_string().contains("closed"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-broker"))
        .args(["status", "--socket-dir"])
        .arg(dir.path().join("run"))
        .arg("--codex")
        .arg(codex_bin())
        .env("CODEX_HOME", dir.path().join("home"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not running"));
    drop(guard);
}

#[tokio::test]
async fn the_binary_exits_when_idle_and_ensure_replaces_a_stale_socket() {
    let dir = test_dir();
    let options = real_options(dir.path()).idle_timeout(Some(Duration::from_secs(1)));
    let socket = broker::socket_path(&options).unwrap();
    // a stale socket: the file exists, nobody listens
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let conn = tokio::time::timeout(Duration::from_secs(60), broker::ensure(&options))
        .await
        .expect("ensure in time")
        .expect("ensure over a stale socket");
    let status = broker::status_of(&conn).await.unwrap();
    let app_server = status.app_server_pid.expect("app-server pid");
    let guard = KillOnDrop(vec![status.pid, app_server]);
    assert_eq!(status.idle_timeout_ms, Some(1000));
    // connected: not idle
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        alive(status.pid),
        "a connected client keeps the broker alive"
    );
    drop(conn);
    assert!(
        wait_dead(status.pid, Duration::from_secs(10)).await,
        "idle broker exits"
    );
    assert!(
        wait_dead(app_server, Duration::from_secs(10)).await,
        "its app-server too"
    );
    assert!(!socket.exists(), "socket removed");
    let log = std::fs::read_to_string(socket.with_extension("log")).unwrap();
    assert!(log.contains("idle"), "{log}");
    drop(guard);
}

#[tokio::test]
async fn ensure_reports_a_broker_that_cannot_start_with_its_log() {
    let dir = test_dir();
    let options = real_options(dir.path()).codex(dir.path().join("no-such-codex"));
    let err = tokio::time::timeout(Duration::from_secs(30), broker::ensure(&options))
        .await
        .expect("ensure gives up in time")
        .unwrap_err();
    let broker::Error::NotReady {
        detail, log_tail, ..
    } = &err
    else {
        panic!("expected NotReady, got {err}");
    };
    assert!(detail.contains("codex-broker exited"), "{detail}");
    assert!(log_tail.contains("no-such-codex"), "{log_tail}");
    assert!(!broker::socket_path(&options).unwrap().exists());
}
