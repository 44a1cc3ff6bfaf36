//! The broker's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Shorthand for `Result<T, broker::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while running, finding or starting a broker.
///
/// JSON-RPC errors the broker answers to a client's request (a thread owned by another
/// client, an app-server that exited) arrive as [`crate::Error::Rpc`] inside
/// [`Error::Asp`]; see [`super::codes`] and [`super::AppServerExit`] to tell them apart.
///
/// ```
/// use codex_asp::broker::Error;
/// let err = Error::NotRunning { socket: "/run/user/1000/codex-bridge/broker/broker-0a1b.sock".into() };
/// assert!(err.to_string().starts_with("no codex-broker is running"));
/// let asp: codex_asp::Error = err.into();
/// assert!(asp.to_string().contains("no codex-broker is running"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Talking JSON-RPC to the broker (or to the app-server it runs) failed.
    #[error(transparent)]
    Asp(#[from] crate::Error),

    /// No broker listens on the socket (and this call does not start one).
    #[error("no codex-broker is running for this codex and CODEX_HOME (socket {})", socket.display())]
    NotRunning {
        /// The socket that was tried.
        socket: PathBuf,
    },

    /// Another broker already serves this (codex binary, CODEX_HOME) pair.
    #[error(
        "a codex-broker is already running for this codex and CODEX_HOME ({}; socket {})",
        pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}")),
        socket.display()
    )]
    AlreadyRunning {
        /// Its pid, from the pid file.
        pid: Option<u32>,
        /// Its socket.
        socket: PathBuf,
    },

    /// codex's own daemon is not running (its control socket is missing).
    #[error(
        "no codex app-server daemon is running: {} does not exist (start one with `codex app-server daemon start`)",
        socket.display()
    )]
    NoDaemon {
        /// The control socket that was looked for.
        socket: PathBuf,
    },

    /// The broker's directory is not private to this user.
    #[error("refusing to use {}: {detail}", path.display())]
    InsecureDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it (owner, mode, symlink).
        detail: String,
    },

    /// The `codex-broker` binary could not be found.
    #[error(
        "the codex-broker binary was not found (looked at {looked_at}); set CODEX_BROKER_BIN or BrokerOptions::broker_binary"
    )]
    BrokerBinaryNotFound {
        /// Where it was looked for.
        looked_at: String,
    },

    /// Starting the `codex-broker` binary failed.
    #[error("could not start {}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// A broker was started but did not answer in time, or exited.
    #[error("the codex-broker did not start: {detail} (after {after:?}; log {}){}", log.display(), tail_suffix(log_tail))]
    NotReady {
        /// How long we waited.
        after: Duration,
        /// What happened.
        detail: String,
        /// The broker's log file.
        log: PathBuf,
        /// The end of that log.
        log_tail: String,
    },

    /// The app-server could not be started when the broker started.
    #[error("{detail}")]
    AppServerStart {
        /// Why (the launch error).
        detail: String,
    },

    /// An I/O error while doing `context`.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The options cannot work (no codex binary, no state directory, ...).
    #[error("invalid broker options: {detail}")]
    Config {
        /// What is wrong, and how to fix it.
        detail: String,
    },
}

fn tail_suffix(tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n{tail}")
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The codex-asp error inside, for [`Error::Asp`].
    pub fn as_asp(&self) -> Option<&crate::Error> {
        match self {
            Error::Asp(e) => Some(e),
            _ => None,
        }
    }
}

impl From<codex_core::Error> for Error {
    fn from(err: codex_core::Error) -> Self {
        Error::Asp(crate::Error::Launch(err))
    }
}

impl From<Error> for crate::Error {
    /// [`Error::Asp`] unwraps; anything else becomes [`crate::Error::Broker`].
    fn from(err: Error) -> Self {
        match err {
            Error::Asp(inner) => inner,
            other => crate::Error::Broker(Box::new(other)),
        }
    }
}

impl From<Error> for codex_core::Error {
    /// Through [`crate::Error`]: a backend error of the app-server backend.
    fn from(err: Error) -> Self {
        crate::Error::from(err).into()
    }
}
