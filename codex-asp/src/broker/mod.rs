//! The resident broker: one warm `codex app-server` shared by many clients at once.
//!
//! A broker is a daemon that keeps one `codex app-server` running (over stdio, launched with
//! [`CodexCommand`]) and serves any number of clients over a per-user unix socket. Clients
//! speak exactly the JSON-RPC of the app-server, one JSON message per line, so a client is
//! just a [`Connection`] over [`lines::transport`](crate::transport::lines::transport) — which
//! is what [`ensure`] and [`connect`] return, after the `initialize` handshake.
//!
//! # What the broker does
//!
//! - **Ids.** Every client's request gets a fresh upstream id (clients' ids overlap each
//!   other); the answer goes back to that client under its own id.
//! - **Handshake.** `initialize` and `initialized` are answered per client by the broker, with
//!   the app-server's own `initialize` result; a second `initialize` gets -32600 "Already
//!   initialized"; other requests before it get -32600 "Not initialized" (as codex does).
//!   `capabilities.optOutNotificationMethods` is honoured per client.
//! - **Threads have one owner.** The client whose `thread/start`, `thread/resume` or
//!   `thread/fork` opened a thread owns it (a sub-agent thread belongs to the owner of its
//!   parent). Notifications about a thread go to its owner only; notifications without a
//!   thread go to every client. A request of another connected client that would write that
//!   thread (`thread/resume`, `turn/start`, ...) is refused with -32600 and
//!   `data.reason == "threadOwned"` (see [`codes`]); reading it (`thread/read`,
//!   `thread/fork`, ...) and stopping its turn (`turn/interrupt`) are allowed. When the
//!   owner disconnects its threads are released (a running turn goes on; its approvals are
//!   declined, its notifications are dropped until another client resumes the thread).
//! - **Approvals.** Server-to-client requests go to the owner of their thread under a
//!   broker-assigned id, and the owner's answer goes back upstream under the server's id
//!   (`serverRequest/resolved` is rewritten too). With no owner, the broker declines.
//! - **Many turns at once.** Nothing is single-flight: clients run turns on different
//!   threads at the same time.
//! - **Failures.** If the app-server exits, every request in flight fails with
//!   [`codes::APP_SERVER_EXITED`] whose `data` carries the exit status and stderr tail (see
//!   [`AppServerExit`]); the owners of running turns get a
//!   [`APP_SERVER_EXITED_NOTIFICATION`] notification carrying `threadId` and `turnId`; the
//!   next request starts a new app-server. A thread its owner used before the restart is
//!   resumed transparently (with the settings it was opened with) before the next request
//!   that needs it loaded (`turn/start`, ...).
//! - **Lifecycle.** `broker/status` ([`BrokerStatus`]) and `broker/shutdown` are answered by
//!   the broker itself (also before `initialize`). The broker exits after
//!   [`BrokerOptions::idle_timeout`] with no client and no running turn.
//!
//! # Files and safety
//!
//! One broker runs per (codex binary, `CODEX_HOME`) pair. Its files are named by a short hash
//! of that pair, `broker-<key>.{sock,pid,lock,log}`, in `$XDG_RUNTIME_DIR/codex-bridge/broker/`
//! when `XDG_RUNTIME_DIR` is set, else in `<state root>/broker/`
//! ([`codex_core::paths::state_root`]), or in [`BrokerOptions::socket_dir`]. When the socket
//! path would exceed the 107 bytes a unix socket address holds, `/tmp/codex-bridge-<uid>/` is
//! used instead. The directory is created with mode 0700 (an existing one must belong to
//! this user), the socket is made 0600, and every connection's peer uid is checked
//! (`SO_PEERCRED`): other users are refused. The running broker holds an exclusive lock on
//! the lock file, so a second broker for the same pair refuses to start
//! ([`Error::AlreadyRunning`]), and a socket file nobody listens on is recognised as stale
//! and replaced.
//!
//! # Starting on demand
//!
//! [`ensure`] connects to the running broker, or starts the `codex-broker` binary detached
//! (its own process group, output appended to the log file) and waits until it answers.
//!
//! ```no_run
//! # async fn demo() -> codex_asp::broker::Result<()> {
//! use codex_asp::broker::{self, BrokerOptions};
//! use serde_json::json;
//!
//! let options = BrokerOptions::new()
//!     .codex("/usr/local/bin/codex")
//!     .codex_home("/home/me/.codex");
//! let conn = broker::ensure(&options).await?;
//! let thread = conn.request_raw("thread/start", json!({"cwd": "/tmp"})).await?;
//! let status = broker::status(&options).await?;
//! println!("broker pid {} serves {} client(s)", status.pid, status.clients.len());
//! # let _ = thread; Ok(()) }
//! ```
//!
//! # Running one in-process
//!
//! ```no_run
//! # async fn demo() -> codex_asp::broker::Result<()> {
//! use codex_asp::broker::{Broker, BrokerOptions};
//! let broker = Broker::bind(BrokerOptions::new().codex("codex")).await?;
//! let handle = broker.handle();
//! let task = tokio::spawn(broker.run());
//! // ... clients connect with broker::connect(&options) ...
//! handle.shutdown();
//! let reason = task.await.expect("broker task");
//! # let _ = reason; Ok(()) }
//! ```
//!
//! [`CodexCommand`]: codex_core::process::CodexCommand
//! [`Connection`]: crate::Connection

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::ConnectionOptions;
use crate::jsonrpc::JsonRpcError;
use crate::protocol::{InitializeCapabilities, InitializeParams};
use crate::transport::Transport;

mod client;
mod error;
mod hub;
mod outbox;
mod paths;
mod server;

pub use client::{
    attach_daemon, attach_daemon_with, connect, ensure, shutdown, socket_path, status, status_of,
};
pub use error::{Error, Result};
pub use paths::MAX_SOCKET_PATH;
pub use server::{Broker, BrokerHandle, ExitReason};

/// The method answered with a [`BrokerStatus`].
pub const STATUS_METHOD: &str = "broker/status";
/// The method that stops the broker (answered `{"ok": true}` first).
pub const SHUTDOWN_METHOD: &str = "broker/shutdown";
/// The notification sent when the app-server exits: to the owner of each running turn (with
/// `threadId` and `turnId`), and once without them to every other client. Its params decode
/// as [`AppServerExit`].
pub const APP_SERVER_EXITED_NOTIFICATION: &str = "broker/appServerExited";
/// The environment variable naming the `codex-broker` binary for [`ensure`].
pub const BROKER_BIN_ENV: &str = "CODEX_BROKER_BIN";
/// The default [`BrokerOptions::idle_timeout`]: 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// JSON-RPC error codes and reasons of the broker's own answers.
pub mod codes {
    /// A request that would write a thread owned by another connected client: code -32600
    /// (as codex's own "already has an active writer"), with `data.reason` =
    /// [`THREAD_OWNED_REASON`], `data.threadId` and `data.owner` (`{client, name, pid}`).
    pub const THREAD_OWNED: i64 = crate::jsonrpc::error_codes::INVALID_REQUEST;
    /// `data.reason` of a [`THREAD_OWNED`] error.
    pub const THREAD_OWNED_REASON: &str = "threadOwned";
    /// The app-server exited while the request was in flight; `data` decodes as
    /// [`AppServerExit`](super::AppServerExit). The next request starts a new app-server.
    pub const APP_SERVER_EXITED: i64 = -32010;
    /// The app-server could not be started (or failed its `initialize`); `data.message` says
    /// why. The next request tries again.
    pub const APP_SERVER_UNAVAILABLE: i64 = -32011;
    /// The broker is shutting down.
    pub const SHUTTING_DOWN: i64 = -32012;
}

/// Starts the app-server transport, for [`BrokerOptions::launcher`].
pub type Launcher = Arc<dyn Fn() -> crate::Result<Transport> + Send + Sync>;

/// How to run (server side) and reach (client side) a broker.
///
/// The codex binary and `CODEX_HOME` name the broker: [`ensure`] reaches the one broker of
/// that pair. `env` is applied to the app-server (and to a `codex-broker` that [`ensure`]
/// starts); `CODEX_HOME` is read from it, else from this process's environment, else
/// `~/.codex`.
#[derive(Clone)]
#[non_exhaustive]
pub struct BrokerOptions {
    /// The codex binary (default: `$CODEX_BIN`, else `codex` on `PATH`).
    pub codex: Option<PathBuf>,
    /// Environment changes for the app-server: `(key, Some(value))` sets, `(key, None)`
    /// removes.
    pub env: Vec<(OsString, Option<OsString>)>,
    /// Extra arguments after `codex app-server` (for example `-c key=value`).
    pub app_server_args: Vec<OsString>,
    /// Exit after this long with no client and no running turn (`None`: never). Default
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Option<Duration>,
    /// The directory of the socket, pid, lock and log files (default: see the module docs).
    pub socket_dir: Option<PathBuf>,
    /// The `codex-broker` binary [`ensure`] starts (default: `$CODEX_BROKER_BIN`, else next
    /// to the current executable or its parent directory, else `codex-broker` on `PATH`).
    pub broker_binary: Option<PathBuf>,
    /// How long [`ensure`] waits for a broker it started (default 30 s).
    pub start_timeout: Duration,
    /// The `initialize` params clients send through the broker (client side).
    pub client_info: InitializeParams,
    /// The options of client connections (client side): the approval handler answers the
    /// approvals of this client's threads.
    pub connection: ConnectionOptions,
    /// The `initialize` params the broker sends to the app-server (default: client
    /// `codex-bridge-broker` with `experimentalApi`).
    pub upstream_init: InitializeParams,
    /// How long the app-server gets to answer the broker's `initialize` (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::connection::DEFAULT_HANDSHAKE_TIMEOUT)); past it,
    /// the app-server is killed and the clients waiting for it get
    /// [`codes::APP_SERVER_UNAVAILABLE`]-style failures.
    pub upstream_init_timeout: Duration,
    /// How many messages may wait for one slow client before it is disconnected (default
    /// 8192).
    pub client_queue: usize,
    /// Starts the app-server instead of `codex app-server` over stdio (tests, custom
    /// launchers). [`ensure`] cannot pass it to a `codex-broker` it starts.
    pub launcher: Option<Launcher>,
}

impl fmt::Debug for BrokerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerOptions")
            .field("codex", &self.codex)
            .field("env", &self.env)
            .field("app_server_args", &self.app_server_args)
            .field("idle_timeout", &self.idle_timeout)
            .field("socket_dir", &self.socket_dir)
            .field("broker_binary", &self.broker_binary)
            .field("start_timeout", &self.start_timeout)
            .field("client_info", &self.client_info)
            .field("upstream_init", &self.upstream_init)
            .field("upstream_init_timeout", &self.upstream_init_timeout)
            .field("client_queue", &self.client_queue)
            .field("launcher", &self.launcher.as_ref().map(|_| "custom"))
            .finish_non_exhaustive()
    }
}

impl Default for BrokerOptions {
    fn default() -> Self {
        let mut upstream_init =
            InitializeParams::new("codex-bridge-broker", env!("CARGO_PKG_VERSION"));
        upstream_init.capabilities = Some(InitializeCapabilities {
            experimental_api: true,
            ..Default::default()
        });
        BrokerOptions {
            codex: None,
            env: Vec::new(),
            app_server_args: Vec::new(),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            socket_dir: None,
            broker_binary: None,
            start_timeout: Duration::from_secs(30),
            client_info: InitializeParams::new("codex-bridge", env!("CARGO_PKG_VERSION")),
            connection: ConnectionOptions::default(),
            upstream_init,
            upstream_init_timeout: crate::connection::DEFAULT_HANDSHAKE_TIMEOUT,
            client_queue: 8192,
            launcher: None,
        }
    }
}

impl BrokerOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the codex binary.
    pub fn codex(mut self, path: impl Into<PathBuf>) -> Self {
        self.codex = Some(path.into());
        self
    }

    /// Sets `CODEX_HOME` for the app-server.
    pub fn codex_home(self, path: impl AsRef<Path>) -> Self {
        self.env("CODEX_HOME", path.as_ref().as_os_str())
    }

    /// Sets an environment variable for the app-server.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable for the app-server.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Appends an argument after `codex app-server`.
    pub fn app_server_arg(mut self, arg: impl Into<OsString>) -> Self {
        self.app_server_args.push(arg.into());
        self
    }

    /// Sets the idle timeout (`None`: never exit when idle).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the directory of the broker's files.
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = Some(dir.into());
        self
    }

    /// Sets the `codex-broker` binary [`ensure`] starts.
    pub fn broker_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.broker_binary = Some(path.into());
        self
    }

    /// Sets how long [`ensure`] waits for a broker it started.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Sets the `initialize` params of client connections.
    pub fn client_info(mut self, params: InitializeParams) -> Self {
        self.client_info = params;
        self
    }

    /// Sets the options of client connections (approval handler, queues).
    pub fn connection_options(mut self, options: ConnectionOptions) -> Self {
        self.connection = options;
        self
    }

    /// Sets the `initialize` params the broker sends upstream.
    pub fn upstream_init(mut self, params: InitializeParams) -> Self {
        self.upstream_init = params;
        self
    }

    /// Sets how long the app-server gets to answer the broker's `initialize`.
    pub fn upstream_init_timeout(mut self, timeout: Duration) -> Self {
        self.upstream_init_timeout = timeout;
        self
    }

    /// Sets a custom app-server launcher (see [`BrokerOptions::launcher`]).
    pub fn launcher(
        mut self,
        launcher: impl Fn() -> crate::Result<Transport> + Send + Sync + 'static,
    ) -> Self {
        self.launcher = Some(Arc::new(launcher));
        self
    }

    /// The codex binary: the explicit one, else `$CODEX_BIN`, else `codex` on `PATH`.
    pub(crate) fn resolve_codex(&self) -> Result<PathBuf> {
        let path = match &self.codex {
            Some(path) => path.clone(),
            None => codex_core::binary::CodexBinary::locate(None)?,
        };
        Ok(paths::canonical_or_absolute(&path))
    }

    /// `CODEX_HOME` as the app-server will see it.
    pub(crate) fn resolve_codex_home(&self) -> PathBuf {
        let home = match paths::env_override(&self.env, "CODEX_HOME") {
            Some(Some(v)) if !v.is_empty() => Some(PathBuf::from(v)),
            Some(_) => None,
            None => std::env::var_os("CODEX_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        };
        let home = home.unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"))
                .join(".codex")
        });
        paths::canonical_or_absolute(&home)
    }
}

/// What `broker/status` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BrokerStatus {
    /// The broker's pid.
    pub pid: u32,
    /// How long it has been running, in milliseconds.
    pub uptime_ms: u64,
    /// Its socket.
    pub socket: PathBuf,
    /// The codex binary it runs.
    pub codex: PathBuf,
    /// The `CODEX_HOME` it serves.
    pub codex_home: PathBuf,
    /// The codex version (from the app-server's user agent), once it answered `initialize`.
    #[serde(default)]
    pub codex_version: Option<String>,
    /// `ready`, `starting` or `down` (exited; the next request restarts it).
    pub app_server: String,
    /// The app-server's pid (also its process group), while it runs.
    #[serde(default)]
    pub app_server_pid: Option<u32>,
    /// How many times the app-server was started again after the first time.
    pub restarts: u64,
    /// How the last app-server ended, if one did.
    #[serde(default)]
    pub last_exit: Option<String>,
    /// The connected clients.
    pub clients: Vec<ClientStatus>,
    /// The threads that have an owner.
    pub threads: Vec<OwnedThread>,
    /// The turns running now (from `turn/started` to `turn/completed`).
    pub running_turns: Vec<RunningTurn>,
    /// The idle timeout in milliseconds (`None`: never).
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
}

/// One client in a [`BrokerStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClientStatus {
    /// The broker's number for the connection.
    pub id: u64,
    /// `clientInfo.name` of its `initialize`.
    #[serde(default)]
    pub name: Option<String>,
    /// The peer's pid (`SO_PEERCRED`).
    #[serde(default)]
    pub pid: Option<i32>,
    /// Whether it completed `initialize`.
    pub initialized: bool,
    /// Connected for this long, in milliseconds.
    pub connected_ms: u64,
}

/// One owned thread in a [`BrokerStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OwnedThread {
    /// The thread.
    pub thread_id: String,
    /// The owning client's number.
    pub client: u64,
}

/// One running turn in a [`BrokerStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RunningTurn {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// The owning client's number, if the thread has an owner.
    #[serde(default)]
    pub client: Option<u64>,
}

/// How the app-server ended: the `data` of a [`codes::APP_SERVER_EXITED`] error and the
/// params of an [`APP_SERVER_EXITED_NOTIFICATION`].
///
/// ```
/// use codex_asp::broker::{AppServerExit, codes};
/// use serde_json::json;
/// use codex_asp::jsonrpc::JsonRpcError;
/// let err = codex_asp::Error::Rpc {
///     method: "turn/start".into(),
///     error: JsonRpcError::new(codes::APP_SERVER_EXITED, "codex app-server exited (signal 9)")
///         .with_data(json!({"reason": "appServerExited", "signal": 9, "stderrTail": "boom", "message": "codex app-server exited (signal 9)"})),
/// };
/// let exit = AppServerExit::from_error(&err).unwrap();
/// assert_eq!(exit.signal, Some(9));
/// assert_eq!(exit.stderr_tail, "boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AppServerExit {
    /// Always `"appServerExited"`.
    #[serde(default)]
    pub reason: String,
    /// The exit code, when it exited normally.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The last lines it wrote to stderr.
    #[serde(default)]
    pub stderr_tail: String,
    /// A readable summary.
    #[serde(default)]
    pub message: String,
    /// The thread whose running turn was lost (notifications only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The turn that was lost (notifications only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
}

impl AppServerExit {
    /// The exit carried by a [`codes::APP_SERVER_EXITED`] error, if `err` is one.
    pub fn from_error(err: &crate::Error) -> Option<AppServerExit> {
        match err.rpc_error()? {
            JsonRpcError {
                code: codes::APP_SERVER_EXITED,
                data: Some(data),
                ..
            } => serde_json::from_value(data.clone()).ok(),
            _ => None,
        }
    }

    /// The exit carried by an [`APP_SERVER_EXITED_NOTIFICATION`], if `notification` is one.
    pub fn from_notification(notification: &crate::Notification) -> Option<AppServerExit> {
        if notification.method() != APP_SERVER_EXITED_NOTIFICATION {
            return None;
        }
        serde_json::from_value(notification.params().clone()).ok()
    }
}

/// Whether `err` is the broker's refusal of a thread owned by another client.
pub fn is_thread_owned(err: &crate::Error) -> bool {
    match err.rpc_error() {
        Some(JsonRpcError {
            code: codes::THREAD_OWNED,
            data: Some(data),
            ..
        }) => data.get("reason").and_then(Value::as_str) == Some(codes::THREAD_OWNED_REASON),
        _ => false,
    }
}
