//! The client side: reach the broker of a (codex, `CODEX_HOME`) pair, starting it when needed.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::error::{Error, Result};
use super::paths::BrokerPaths;
use super::{BROKER_BIN_ENV, BrokerOptions, BrokerStatus, SHUTDOWN_METHOD, STATUS_METHOD, codes};
use crate::connection::{Connection, ConnectionOptions};
use crate::protocol::InitializeParams;
use crate::transport::{TransportOptions, lines, ws};

/// The broker log is moved aside (`.log.old`) when it grows beyond this at start-up.
const MAX_LOG_BYTES: u64 = 1 << 20;
/// How long [`shutdown`] waits for the broker to exit.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The socket of the broker `options` name (it may not exist yet).
///
/// ```no_run
/// use codex_asp::broker::{self, BrokerOptions};
/// let path = broker::socket_path(&BrokerOptions::new().codex("/usr/bin/codex").codex_home("/home/me/.codex"))?;
/// assert!(path.as_os_str().len() <= broker::MAX_SOCKET_PATH);
/// # Ok::<(), broker::Error>(())
/// ```
pub fn socket_path(options: &BrokerOptions) -> Result<PathBuf> {
    Ok(BrokerPaths::resolve(options)?.socket)
}

/// Connects to the socket; `None` when nobody listens (no file, or a stale one).
async fn open(socket: &Path) -> Result<Option<UnixStream>> {
    match UnixStream::connect(socket).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::io(format!("connecting to {}", socket.display()), e)),
    }
}

fn connection(stream: UnixStream, socket: &Path, options: ConnectionOptions) -> Connection {
    let (read, write) = stream.into_split();
    let transport = lines::transport(
        read,
        write,
        &TransportOptions::default(),
        format!("codex-broker unix://{}", socket.display()),
    );
    Connection::new(transport, options)
}

async fn handshake(
    stream: UnixStream,
    paths: &BrokerPaths,
    options: &BrokerOptions,
) -> Result<Connection> {
    let conn = connection(stream, &paths.socket, options.connection.clone());
    conn.initialize(&options.client_info).await?;
    Ok(conn)
}

/// Whether a failed handshake means "that broker is going away" (try another one).
fn broker_went_away(err: &Error) -> bool {
    match err {
        Error::Asp(e) => e.is_closed() || e.code() == Some(codes::SHUTTING_DOWN),
        _ => false,
    }
}

/// Connects to the running broker and performs the `initialize` handshake through it; fails
/// with [`Error::NotRunning`] when none runs (see [`ensure`] to start one).
pub async fn connect(options: &BrokerOptions) -> Result<Connection> {
    let paths = BrokerPaths::resolve(options)?;
    match open(&paths.socket).await? {
        Some(stream) => handshake(stream, &paths, options).await,
        None => Err(Error::NotRunning {
            socket: paths.socket,
        }),
    }
}

/// Connects to the broker of `options`, starting the `codex-broker` binary when none runs
/// (or only a stale socket is left), then performs the `initialize` handshake through it
/// with [`BrokerOptions::client_info`].
///
/// The started broker runs detached (its own process group, output appended to
/// `broker-<key>.log` next to the socket) and outlives this process; it exits after its idle
/// timeout. Two clients racing to start one end up on the same broker.
pub async fn ensure(options: &BrokerOptions) -> Result<Connection> {
    let paths = BrokerPaths::resolve(options)?;
    for _ in 0..3 {
        if let Some(stream) = open(&paths.socket).await? {
            match handshake(stream, &paths, options).await {
                Ok(conn) => return Ok(conn),
                Err(e) if broker_went_away(&e) => {
                    tracing::debug!(
                        "the broker went away during the handshake: {}",
                        codex_core::ErrorChain(&e)
                    );
                    wait_lock_free(&paths, Duration::from_secs(5)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        if options.launcher.is_some() {
            return Err(Error::Config {
                detail: "a custom launcher cannot be handed to a codex-broker process; run \
                         Broker::serve in this process instead"
                    .into(),
            });
        }
        paths.prepare_dir()?;
        let child = spawn_broker(&paths, options)?;
        return wait_ready(&paths, options, child).await;
    }
    Err(Error::NotReady {
        after: Duration::ZERO,
        detail: "the broker kept going away while connecting".into(),
        log: paths.log.clone(),
        log_tail: log_tail(&paths.log),
    })
}

async fn wait_lock_free(paths: &BrokerPaths, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while paths.lock_held() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// The `codex-broker` program: the explicit one, `$CODEX_BROKER_BIN`, next to the current
/// executable or in its parent directory (test binaries live in `target/debug/deps`), or on
/// `PATH`.
fn locate_broker_binary(options: &BrokerOptions) -> Result<PathBuf> {
    if let Some(path) = &options.broker_binary {
        return if path.is_file() {
            Ok(path.clone())
        } else {
            Err(Error::BrokerBinaryNotFound {
                looked_at: path.display().to_string(),
            })
        };
    }
    if let Some(path) = std::env::var_os(BROKER_BIN_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::BrokerBinaryNotFound {
                looked_at: format!("{BROKER_BIN_ENV}={}", path.display()),
            })
        };
    }
    let mut looked = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("codex-broker");
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(candidate.display().to_string());
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("codex-broker");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    looked.push("PATH".into());
    Err(Error::BrokerBinaryNotFound {
        looked_at: looked.join(", "),
    })
}

fn spawn_broker(paths: &BrokerPaths, options: &BrokerOptions) -> Result<Child> {
    let program = locate_broker_binary(options)?;
    if std::fs::metadata(&paths.log).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        let _ = std::fs::rename(&paths.log, paths.log.with_extension("log.old"));
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&paths.log)
        .map_err(|e| Error::io(format!("opening {}", paths.log.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io(format!("opening {}", paths.log.display()), e))?;
    let codex = options.codex.clone().unwrap_or_else(|| paths.codex.clone());
    let idle = options
        .idle_timeout
        .map_or_else(|| "0".to_owned(), |d| format!("{}", d.as_secs_f64()));
    let mut command = Command::new(&program);
    command
        .arg("serve")
        .arg("--detached")
        .arg("--codex")
        .arg(&codex)
        .arg("--socket-dir")
        .arg(&paths.dir)
        .arg("--idle-timeout")
        .arg(idle);
    if options.upstream_init_timeout != crate::connection::DEFAULT_HANDSHAKE_TIMEOUT {
        command
            .arg("--init-timeout")
            .arg(format!("{}", options.upstream_init_timeout.as_secs_f64()));
    }
    for arg in &options.app_server_args {
        let mut flag = OsString::from("--app-server-arg=");
        flag.push(arg);
        command.arg(flag);
    }
    for (key, value) in &options.env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    // the broker must compute the same key, whatever its environment says
    command.env("CODEX_HOME", &paths.codex_home);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0);
    tracing::debug!(program = %program.display(), socket = %paths.socket.display(), "starting codex-broker");
    command
        .spawn()
        .map_err(|source| Error::Spawn { program, source })
}

/// Reaps a started broker whenever it exits (without waiting for it here).
fn reap_later(mut child: Child) {
    let spawned = std::thread::Builder::new()
        .name("codex-broker-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        });
    if let Err(e) = spawned {
        tracing::debug!("could not start a thread to reap the broker: {e}");
    }
}

async fn wait_ready(
    paths: &BrokerPaths,
    options: &BrokerOptions,
    mut child: Child,
) -> Result<Connection> {
    let started = Instant::now();
    let deadline = started + options.start_timeout;
    let mut exited = None;
    loop {
        if let Some(stream) = open(&paths.socket).await? {
            match handshake(stream, paths, options).await {
                Err(e) if broker_went_away(&e) => {
                    // that broker is stopping (ours failed, or another one is going idle):
                    // look again
                    tracing::debug!(
                        "the broker went away during the handshake: {}",
                        codex_core::ErrorChain(&e)
                    );
                }
                conn => {
                    match exited {
                        None => reap_later(child),
                        Some(_) => drop(child),
                    }
                    return conn;
                }
            }
        }
        if exited.is_none() {
            exited = child
                .try_wait()
                .map_err(|e| Error::io("checking the codex-broker process", e))?;
        }
        if let Some(status) = exited
            && !paths.lock_held()
        {
            // ours exited and no other broker is coming up
            return Err(Error::NotReady {
                after: started.elapsed(),
                detail: format!("codex-broker exited ({status})"),
                log: paths.log.clone(),
                log_tail: log_tail(&paths.log),
            });
        }
        if Instant::now() >= deadline {
            if exited.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(Error::NotReady {
                after: started.elapsed(),
                detail: format!("nothing answered on {}", paths.socket.display()),
                log: paths.log.clone(),
                log_tail: log_tail(&paths.log),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The last 2 KiB of the log.
fn log_tail(log: &Path) -> String {
    let Ok(bytes) = std::fs::read(log) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(2048);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The status of the running broker (no handshake needed); [`Error::NotRunning`] when none
/// runs.
pub async fn status(options: &BrokerOptions) -> Result<BrokerStatus> {
    let paths = BrokerPaths::resolve(options)?;
    let Some(stream) = open(&paths.socket).await? else {
        return Err(Error::NotRunning {
            socket: paths.socket,
        });
    };
    let conn = connection(stream, &paths.socket, ConnectionOptions::default());
    status_of(&conn).await
}

/// The status of the broker behind `conn` (a connection from [`ensure`] or [`connect`]).
pub async fn status_of(conn: &Connection) -> Result<BrokerStatus> {
    let value = conn.request_raw(STATUS_METHOD, json!({})).await?;
    serde_json::from_value(value).map_err(|source| {
        Error::Asp(crate::Error::Decode {
            method: STATUS_METHOD.into(),
            source,
        })
    })
}

/// Asks the running broker to stop and waits until it exited (its lock is released).
/// [`Error::NotRunning`] when none runs.
pub async fn shutdown(options: &BrokerOptions) -> Result<()> {
    let paths = BrokerPaths::resolve(options)?;
    let Some(stream) = open(&paths.socket).await? else {
        return Err(Error::NotRunning {
            socket: paths.socket,
        });
    };
    let conn = connection(stream, &paths.socket, ConnectionOptions::default());
    let answer: Value = conn.request_raw(SHUTDOWN_METHOD, json!({})).await?;
    tracing::debug!(%answer, "broker/shutdown answered");
    drop(conn);
    if !wait_lock_free(&paths, SHUTDOWN_WAIT).await {
        return Err(Error::NotReady {
            after: SHUTDOWN_WAIT,
            detail: "the codex-broker accepted broker/shutdown but is still running".into(),
            log: paths.log.clone(),
            log_tail: log_tail(&paths.log),
        });
    }
    Ok(())
}

/// Attaches to codex's own daemon (`codex app-server daemon start`) of `codex_home`, over its
/// control socket (WebSocket over unix), and performs the handshake as client `codex-bridge`.
/// [`Error::NoDaemon`] when its socket does not exist. This never starts the daemon.
pub async fn attach_daemon(codex_home: impl AsRef<Path>) -> Result<Connection> {
    attach_daemon_with(
        codex_home,
        ConnectionOptions::default(),
        &InitializeParams::new("codex-bridge", env!("CARGO_PKG_VERSION")),
    )
    .await
}

/// [`attach_daemon`] with connection options (approval handler) and `initialize` params.
pub async fn attach_daemon_with(
    codex_home: impl AsRef<Path>,
    options: ConnectionOptions,
    params: &InitializeParams,
) -> Result<Connection> {
    let socket = ws::daemon_socket(codex_home);
    if std::fs::symlink_metadata(&socket).is_err() {
        return Err(Error::NoDaemon { socket });
    }
    let transport = match ws::connect_unix(&socket, None, &TransportOptions::default()).await {
        Ok(t) => t,
        Err(crate::Error::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(Error::NoDaemon { socket });
        }
        Err(e) => return Err(e.into()),
    };
    let (conn, _) = Connection::connect(transport, options, params).await?;
    Ok(conn)
}
