//! The one error type of codex-agent: why Codex did not run, or why its run is not proven.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::jobs::StoreError;
use codex_core::{BackendKind, ThreadId, TurnId};

/// Shorthand for `Result<T, codex_agent::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a delegation produced no [`Verified`](crate::Verified) outcome.
///
/// Every failure path of the crate ends here: there is no partial result and no text that did
/// not come from Codex. Variants that wrap a `codex_core::Error` keep it as their source.
///
/// ```
/// use codex_agent::Error;
/// let err = Error::NotLoggedIn;
/// assert!(err.to_string().contains("codex login"));
/// assert!(!err.is_refusal());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No codex binary could be found.
    #[error("Codex did not run")]
    BinaryMissing {
        /// The core error (says where we looked and how to install codex).
        #[source]
        source: Box<codex_core::Error>,
    },

    /// Codex has no credentials.
    #[error(
        "Codex did not run: not logged in; run `codex login` (or `codex login --with-api-key`)"
    )]
    NotLoggedIn,

    /// The codex process (or the app-server) could not be started.
    #[error("Codex did not run: the {} backend could not start codex", kind_or_any(*backend))]
    SpawnRefused {
        /// The backend that tried, when known.
        backend: Option<BackendKind>,
        /// The core error.
        #[source]
        source: Box<codex_core::Error>,
    },

    /// The process or connection ended before the turn started.
    #[error("Codex did not run: the {backend} backend lost its connection before the turn started")]
    ConnectionLost {
        /// The backend.
        backend: BackendKind,
        /// What ended it, when known.
        #[source]
        source: Option<Box<codex_core::Error>>,
    },

    /// Codex reported that the turn failed.
    #[error("Codex ran but the turn failed: {message}")]
    TurnFailed {
        /// The backend.
        backend: BackendKind,
        /// The thread, when it had started.
        thread_id: Option<ThreadId>,
        /// The turn, when reported.
        turn_id: Option<TurnId>,
        /// Codex's message.
        message: String,
    },

    /// Codex ran, but the model provider rejected (or never got) its credentials: an HTTP
    /// 401, a missing `env_key` variable, a session codex could not refresh. `message` is
    /// codex's own.
    #[error(
        "Codex ran but could not authenticate with the model provider: {message} (sign in with `codex login`, store an API key with `codex login --with-api-key`, or set the provider's `env_key` variable)"
    )]
    AuthRejected {
        /// The backend, when known.
        backend: Option<BackendKind>,
        /// The thread, when it had started.
        thread_id: Option<ThreadId>,
        /// The turn, when reported.
        turn_id: Option<TurnId>,
        /// Codex's message.
        message: String,
    },

    /// The turn started but the stream ended without its terminal event (the process died or
    /// the connection dropped mid-turn).
    #[error("Codex started the turn but it never finished on the {backend} backend")]
    TurnIncomplete {
        /// The backend.
        backend: BackendKind,
        /// The thread.
        thread_id: Option<ThreadId>,
        /// The turn, when reported.
        turn_id: Option<TurnId>,
        /// What ended it, when known.
        #[source]
        source: Option<Box<codex_core::Error>>,
    },

    /// The events seen do not prove that Codex ran the turn we started.
    #[error("Codex's run could not be verified on the {backend} backend: {reason}")]
    Unverified {
        /// The backend.
        backend: BackendKind,
        /// What was wrong with the evidence.
        reason: UnverifiedReason,
    },

    /// The turn did not end within its timeout; it was stopped.
    #[error("Codex's turn timed out after {after:?} and was stopped")]
    Timeout {
        /// The timeout.
        after: Duration,
        /// The thread, when it had started.
        thread_id: Option<ThreadId>,
    },

    /// The run was cancelled.
    #[error("Codex's turn was cancelled")]
    Cancelled {
        /// The thread, when it had started.
        thread_id: Option<ThreadId>,
    },

    /// The request was refused before anything started (invalid request, a write outside
    /// every allowed root, a feature the sign-in lacks). The message says how to allow it.
    #[error("{}", refused_message(reason, source.is_some()))]
    Refused {
        /// Why, and how to allow it; when `source` is set, the source says why and this only
        /// adds how to allow it (or nothing).
        reason: String,
        /// The core error behind it, when there is one.
        #[source]
        source: Option<Box<codex_core::Error>>,
    },

    /// None of the configured backends can run this request.
    #[error("no backend can run this request: {reason}")]
    NoBackend {
        /// Why each available backend was ruled out.
        reason: String,
    },

    /// "Resume last" found no finished task thread of this workspace.
    #[error("nothing to resume: no finished task of the workspace {} has a thread; start a fresh task first", workspace.display())]
    NothingToResume {
        /// The workspace root.
        workspace: PathBuf,
    },

    /// The job store failed.
    #[error(transparent)]
    JobStore(#[from] StoreError),

    /// A background job's task stopped without reporting (it panicked or was aborted).
    #[error("background job {job_id} stopped without reporting an outcome")]
    JobLost {
        /// The job.
        job_id: String,
    },

    /// Another error reported by a backend.
    #[error("Codex did not run")]
    Backend {
        /// The backend, when known.
        backend: Option<BackendKind>,
        /// The core error.
        #[source]
        source: Box<codex_core::Error>,
    },
}

fn refused_message(reason: &str, has_source: bool) -> String {
    match (reason.is_empty(), has_source) {
        (true, _) => "refused before starting Codex".to_owned(),
        (false, true) => format!("refused before starting Codex; {reason}"),
        (false, false) => format!("refused before starting Codex: {reason}"),
    }
}

fn kind_or_any(kind: Option<BackendKind>) -> String {
    kind.map_or_else(|| "selected".to_owned(), |k| k.to_string())
}

impl Error {
    /// Whether the request was refused before anything started (so retrying it unchanged is
    /// pointless): [`Error::Refused`], [`Error::NoBackend`], [`Error::NothingToResume`].
    ///
    /// ```
    /// let err = codex_agent::Error::NoBackend { reason: "none configured".into() };
    /// assert!(err.is_refusal());
    /// ```
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Refused { .. } | Error::NoBackend { .. } | Error::NothingToResume { .. }
        )
    }

    /// The thread the failed run belonged to, when one had started.
    ///
    /// ```
    /// let err = codex_agent::Error::Cancelled { thread_id: Some("t-1".into()) };
    /// assert_eq!(err.thread_id().map(|t| t.as_str()), Some("t-1"));
    /// ```
    pub fn thread_id(&self) -> Option<&ThreadId> {
        match self {
            Error::TurnFailed { thread_id, .. }
            | Error::AuthRejected { thread_id, .. }
            | Error::TurnIncomplete { thread_id, .. }
            | Error::Timeout { thread_id, .. }
            | Error::Cancelled { thread_id } => thread_id.as_ref(),
            _ => None,
        }
    }

    /// Maps a core error raised before any turn started (by `Backend::start`/`resume`, or a
    /// pre-flight check).
    pub(crate) fn before_turn(backend: Option<BackendKind>, err: codex_core::Error) -> Error {
        use codex_core::Error as E;
        match err {
            E::NotFound { .. } => Error::BinaryMissing {
                source: Box::new(err),
            },
            E::NotLoggedIn => Error::NotLoggedIn,
            E::Spawn { .. } | E::VersionProbe { .. } => Error::SpawnRefused {
                backend,
                source: Box::new(err),
            },
            E::InvalidSpec { .. }
            | E::OutsideWorkspace { .. }
            | E::FeatureUnavailable { .. }
            | E::Unsupported { .. } => Error::Refused {
                // the core error says why and how to allow it
                reason: String::new(),
                source: Some(Box::new(err)),
            },
            E::TurnFailed {
                thread_id,
                turn_id,
                message,
            } => match backend {
                Some(backend) => Error::TurnFailed {
                    backend,
                    thread_id,
                    turn_id,
                    message,
                },
                None => Error::Backend {
                    backend,
                    source: Box::new(E::TurnFailed {
                        thread_id,
                        turn_id,
                        message,
                    }),
                },
            },
            E::AuthRejected {
                thread_id,
                turn_id,
                message,
            } => Error::AuthRejected {
                backend,
                thread_id,
                turn_id,
                message,
            },
            E::Timeout { after, thread_id } => Error::Timeout { after, thread_id },
            E::Cancelled { thread_id } => Error::Cancelled { thread_id },
            E::ProcessExited { .. } | E::Backend { .. } | E::Io { .. } => match backend {
                Some(backend) => Error::ConnectionLost {
                    backend,
                    source: Some(Box::new(err)),
                },
                None => Error::Backend {
                    backend,
                    source: Box::new(err),
                },
            },
            other => Error::Backend {
                backend,
                source: Box::new(other),
            },
        }
    }

    /// Whether another backend may succeed where this start failed (the backend itself was
    /// unavailable: it could not be spawned or reached).
    pub(crate) fn backend_unavailable(&self) -> bool {
        matches!(
            self,
            Error::SpawnRefused { .. } | Error::ConnectionLost { .. }
        )
    }
}

impl From<codex_core::Error> for Error {
    /// Maps a core error raised before any turn started (probing codex, reading its sign-in,
    /// building a backend) to the reason Codex did not run.
    ///
    /// ```
    /// let err: codex_agent::Error = codex_core::Error::NotFound { looked_at: "PATH".into() }.into();
    /// assert!(matches!(err, codex_agent::Error::BinaryMissing { .. }));
    /// ```
    fn from(err: codex_core::Error) -> Self {
        Error::before_turn(None, err)
    }
}

/// What was wrong with the evidence of a run (see [`Error::Unverified`]).
///
/// ```
/// use codex_agent::UnverifiedReason;
/// assert!(UnverifiedReason::NoThread.to_string().contains("thread"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnverifiedReason {
    /// The turn ended without any thread having started.
    NoThread,
    /// A terminal event arrived before the turn started.
    TerminalBeforeTurnStarted,
    /// The backend reports turn ids but the turn start carried none.
    MissingTurnId,
    /// The terminal event belongs to another turn.
    ForeignTurn {
        /// Our turn.
        expected: Option<TurnId>,
        /// The terminal event's turn.
        got: Option<TurnId>,
    },
    /// A thread other than the one we started or resumed reported.
    ForeignThread {
        /// The thread we expected.
        expected: ThreadId,
        /// The thread that reported.
        got: ThreadId,
    },
    /// The run came from a backend other than the one we started.
    ForeignBackend {
        /// The backend we started.
        expected: BackendKind,
        /// The backend of the run.
        got: BackendKind,
    },
    /// The stream ended without the turn's terminal event although the backend reported
    /// success.
    NoTerminalEvent,
    /// The backend's own outcome disagrees with the events we observed.
    OutcomeDisagrees {
        /// What disagrees.
        detail: String,
    },
}

impl fmt::Display for UnverifiedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |t: &Option<TurnId>| t.as_ref().map_or("(none)".to_owned(), |t| t.to_string());
        match self {
            UnverifiedReason::NoThread => f.write_str("the turn ended but no thread was started"),
            UnverifiedReason::TerminalBeforeTurnStarted => {
                f.write_str("a turn ended before our turn started")
            }
            UnverifiedReason::MissingTurnId => {
                f.write_str("the backend reports turn ids but our turn start had none")
            }
            UnverifiedReason::ForeignTurn { expected, got } => write!(
                f,
                "the terminal event belongs to turn {} but we started turn {}",
                opt(got),
                opt(expected)
            ),
            UnverifiedReason::ForeignThread { expected, got } => write!(
                f,
                "thread {got} reported, but the run is on thread {expected}"
            ),
            UnverifiedReason::ForeignBackend { expected, got } => write!(
                f,
                "the run came from the {got} backend but the {expected} backend was started"
            ),
            UnverifiedReason::NoTerminalEvent => f.write_str(
                "the event stream ended without the turn's terminal event, yet the backend reported success",
            ),
            UnverifiedReason::OutcomeDisagrees { detail } => {
                write!(f, "the backend's outcome disagrees with its events: {detail}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_reasons() {
        let e = Error::before_turn(
            Some(BackendKind::Exec),
            codex_core::Error::NotFound {
                looked_at: "PATH".into(),
            },
        );
        assert!(matches!(e, Error::BinaryMissing { .. }));
        assert!(codex_core::error_chain(&e).contains("npm install"), "{e}");
        let e = Error::before_turn(Some(BackendKind::Exec), codex_core::Error::NotLoggedIn);
        assert!(matches!(e, Error::NotLoggedIn));
        let e = Error::before_turn(
            Some(BackendKind::Broker),
            codex_core::Error::backend(BackendKind::Broker, "connection refused"),
        );
        assert!(matches!(e, Error::ConnectionLost { .. }));
        assert!(e.backend_unavailable());
        let e = Error::before_turn(
            None,
            codex_core::Error::OutsideWorkspace {
                path: "/x".into(),
                roots: vec!["/w".into()],
            },
        );
        assert!(e.is_refusal());
        assert!(codex_core::error_chain(&e).contains("--add-dir"), "{e}");
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod chain_tests;
