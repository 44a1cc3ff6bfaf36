//! The error type of codex-asp.
//!
//! One enum, [`Error`], with structured fields: the JSON-RPC method and error code of a refused
//! request, the exit status and stderr tail of an app-server that went away, the URL of a
//! socket that refused us. At the codex-core [`Backend`](codex_core::Backend) boundary it
//! converts into a codex-core error through the one conversion,
//! `From<Error> for codex_core::Error`.

use std::fmt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use crate::jsonrpc::{JsonRpcError, error_codes};
use codex_core::{BackendKind, ExitSummary};

/// Shorthand for `Result<T, codex_asp::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while talking to `codex app-server`.
///
/// ```
/// use codex_asp::Error;
/// use codex_asp::jsonrpc::JsonRpcError;
/// let err = Error::Rpc {
///     method: "thread/start".into(),
///     error: JsonRpcError::new(-32001, "Server overloaded; retry later."),
/// };
/// assert!(err.is_overloaded());
/// assert_eq!(err.to_string(), "thread/start failed: Server overloaded; retry later. (JSON-RPC error -32001)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The app-server answered a request with a JSON-RPC error.
    #[error("{method} failed: {} (JSON-RPC error {})", error.message, error.code)]
    Rpc {
        /// The method that was called.
        method: String,
        /// The server's error object (code, message, data; see [`error_codes`]).
        error: JsonRpcError,
    },

    /// The connection is gone: the app-server exited, the socket closed, or this side closed it.
    /// Every pending request and every subscription ends with this error.
    #[error("the connection to codex app-server is closed: {reason}")]
    Closed {
        /// Why (exit status and stderr tail for a process that exited).
        reason: CloseReason,
    },

    /// The WebSocket upgrade was refused with HTTP 401.
    #[error(
        "the app-server refused the connection: missing or wrong capability token ({url}{})",
        body_suffix(body)
    )]
    Unauthorized {
        /// Where we tried to connect.
        url: String,
        /// The body of the 401 answer (codex says "missing websocket bearer token" when none
        /// was sent).
        body: String,
    },

    /// The WebSocket connection could not be established.
    #[error("could not open a WebSocket to {url}")]
    WebSocket {
        /// Where we tried to connect.
        url: String,
        /// The WebSocket library's error.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },

    /// The app-server did not become ready in time.
    #[error("codex app-server was not ready after {after:?}: {detail}")]
    NotReady {
        /// How long we waited.
        after: Duration,
        /// What we were waiting for, and what we saw.
        detail: String,
    },

    /// The server did not answer the `initialize` handshake in time
    /// ([`ConnectionOptions::handshake_timeout`](crate::ConnectionOptions::handshake_timeout)).
    /// The connection was closed and an app-server its transport launched was killed.
    #[error(
        "codex app-server did not answer initialize within {after:.1?} ({endpoint}{})",
        program.as_ref().map(|p| format!(", program {}", p.display())).unwrap_or_default()
    )]
    HandshakeTimeout {
        /// The transport's label: `stdio`, the URL or socket it connected to.
        endpoint: String,
        /// The launched program, when the transport launched one.
        program: Option<std::path::PathBuf>,
        /// The deadline that passed.
        after: Duration,
    },

    /// A message is larger than the configured bound.
    #[error("{what} message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// `outgoing` or `incoming`.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },

    /// The parameters of a request could not be serialized.
    #[error("could not encode the parameters of {method}")]
    Encode {
        /// The method.
        method: String,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },

    /// The server's answer did not have the expected shape.
    #[error("unexpected answer to {method}")]
    Decode {
        /// The method.
        method: String,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },

    /// The peer broke the protocol in a way that is not a JSON-RPC error.
    #[error("protocol error: {detail}")]
    Protocol {
        /// What happened.
        detail: String,
    },

    /// Launching codex failed (binary not found, not executable, ...).
    #[error(transparent)]
    Launch(#[from] codex_core::Error),

    /// A broker failure (see [`crate::broker::Error`]): no broker running, a broker that did
    /// not start, an unsafe socket directory, ...
    #[error(transparent)]
    Broker(Box<crate::broker::Error>),

    /// An I/O error while doing `context`.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The server's JSON-RPC error object, for [`Error::Rpc`].
    pub fn rpc_error(&self) -> Option<&JsonRpcError> {
        match self {
            Error::Rpc { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The JSON-RPC error code, for [`Error::Rpc`].
    pub fn code(&self) -> Option<i64> {
        self.rpc_error().map(|e| e.code)
    }

    /// Whether the server said it is overloaded (-32001): retry later, with backoff.
    pub fn is_overloaded(&self) -> bool {
        self.code() == Some(error_codes::SERVER_OVERLOADED)
    }

    /// Whether the server refused the request as invalid (-32600): unknown method, missing
    /// field, "Not initialized", "Already initialized", no active turn, ...
    pub fn is_invalid_request(&self) -> bool {
        self.code() == Some(error_codes::INVALID_REQUEST)
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed { .. })
    }

    /// Why the connection closed, for [`Error::Closed`].
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match self {
            Error::Closed { reason } => Some(reason),
            _ => None,
        }
    }

    /// The exit status of the app-server, when the connection closed because it exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self.close_reason()? {
            CloseReason::ProcessExited { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The last lines the app-server wrote to stderr, when the connection closed because it
    /// exited.
    pub fn stderr_tail(&self) -> Option<&str> {
        match self.close_reason()? {
            CloseReason::ProcessExited { stderr_tail, .. } => Some(stderr_tail),
            _ => None,
        }
    }

    /// The conversion to codex-core (see `From<Error> for codex_core::Error`), for a backend
    /// of kind `backend` that was doing `context` ("while running turn ...") when it failed.
    pub(crate) fn into_core(self, backend: BackendKind, context: &str) -> codex_core::Error {
        match self {
            Error::Launch(inner) => inner,
            Error::Closed {
                reason:
                    CloseReason::ProcessExited {
                        status,
                        stderr_tail,
                    },
            } => codex_core::Error::ProcessExited {
                status: ExitSummary::from_status(status),
                context: context.to_owned(),
                stderr_tail,
            },
            other => codex_core::Error::backend(backend, other),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn closed(reason: CloseReason) -> Self {
        Error::Closed { reason }
    }
}

impl From<Error> for codex_core::Error {
    /// The one conversion of this crate's errors to codex-core: an app-server that exited
    /// becomes [`codex_core::Error::ProcessExited`] (exit status and stderr tail), launch
    /// errors stay codex-core errors, everything else is a [`codex_core::Error::Backend`] of
    /// the app-server backend with the [`Error`] as source.
    fn from(err: Error) -> Self {
        err.into_core(BackendKind::AppServer, "while talking to codex app-server")
    }
}

/// Renders an exit status the way codex-core does: `exit code 1`, `signal 9, SIGKILL`.
pub(crate) fn render_status(status: &ExitStatus) -> String {
    match codex_core::ExitSummary::from_status(*status) {
        codex_core::ExitSummary::Unknown => status.to_string(),
        known => known.to_string(),
    }
}

fn body_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Why a connection closed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// The app-server process exited.
    ProcessExited {
        /// Exit code or signal (use `std::os::unix::process::ExitStatusExt::signal` for the
        /// signal).
        status: ExitStatus,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The peer closed the stream: end of file on stdout, or a WebSocket close frame.
    PeerClosed {
        /// The WebSocket close code, when there was one.
        code: Option<u16>,
        /// The WebSocket close reason, or a description of how the stream ended.
        reason: String,
    },
    /// Reading or writing failed.
    Failed {
        /// What failed.
        message: String,
        /// The underlying error, when there is one.
        source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// This side closed the connection (shutdown, or every handle dropped).
    ClientClosed,
}

impl CloseReason {
    pub(crate) fn failed(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        CloseReason::Failed {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ProcessExited {
                status,
                stderr_tail,
            } => {
                write!(f, "codex app-server exited ({})", render_status(status))?;
                let tail = stderr_tail.trim();
                if !tail.is_empty() {
                    write!(f, "; stderr: {tail}")?;
                }
                Ok(())
            }
            CloseReason::PeerClosed { code, reason } => {
                f.write_str("the app-server closed the connection")?;
                match (code, reason.is_empty()) {
                    (Some(code), false) => write!(f, " (code {code}: {reason})"),
                    (Some(code), true) => write!(f, " (code {code})"),
                    (None, false) => write!(f, " ({reason})"),
                    (None, true) => Ok(()),
                }
            }
            CloseReason::Failed { message, source } => match source {
                Some(source) => write!(f, "{message}: {}", codex_core::ErrorChain(&**source)),
                None => f.write_str(message),
            },
            CloseReason::ClientClosed => f.write_str("closed by this client"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_accessors() {
        let err = Error::closed(CloseReason::ProcessExited {
            status: std::os::unix::process::ExitStatusExt::from_raw(9),
            stderr_tail: "boom\n".into(),
        });
        assert_eq!(
            err.to_string(),
            "the connection to codex app-server is closed: codex app-server exited (signal 9, SIGKILL); stderr: boom"
        );
        let status = err.exit_status().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert_eq!(err.stderr_tail(), Some("boom\n"));
        assert!(err.is_closed() && !err.is_overloaded());

        let err = Error::Unauthorized {
            url: "ws://127.0.0.1:1".into(),
            body: "missing websocket bearer token".into(),
        };
        assert!(
            err.to_string().starts_with(
                "the app-server refused the connection: missing or wrong capability token"
            ),
            "{err}"
        );
        let core: codex_core::Error = err.into();
        assert!(matches!(core, codex_core::Error::Backend { .. }));
        assert!(std::error::Error::source(&core).is_some());
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod chain_tests;
