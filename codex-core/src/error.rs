//! The error type of codex-core.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{AuthMode, Feature};
use crate::backend::BackendKind;
use crate::event::{ThreadId, TurnId};

/// Shorthand for `Result<T, codex_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while preparing, launching or running a codex turn.
///
/// Messages name the fix where there is one. Variants carry structured fields so callers can
/// react without parsing text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No codex binary could be found.
    #[error(
        "codex not found: install it with `npm install -g @openai/codex` or set CODEX_BIN (looked at: {looked_at})"
    )]
    NotFound {
        /// Where we looked, for the message.
        looked_at: String,
    },

    /// The codex binary exists but could not be started (permission denied, not an executable...).
    #[error("could not start codex at {}", program.display())]
    Spawn {
        /// The program we tried to run.
        program: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// `codex --version` did not print a version we understand.
    #[error("could not read the codex version from `{} --version`: {detail}", program.display())]
    VersionProbe {
        /// The program that was asked.
        program: PathBuf,
        /// What went wrong (the output, or the exit status).
        detail: String,
    },

    /// The codex process ended before the turn did.
    #[error("codex exited ({status}) {context}{}", tail_suffix(stderr_tail))]
    ProcessExited {
        /// Exit code or signal, rendered (`exit code 1`, `signal 9, SIGKILL`).
        status: ExitSummary,
        /// What we were waiting for when it exited.
        context: String,
        /// The last lines codex wrote to stderr.
        stderr_tail: String,
    },

    /// Codex reported that the turn failed (`turn.failed`, or `turn/completed` with status failed).
    #[error("codex turn failed: {message}")]
    TurnFailed {
        /// The thread the turn belonged to, when known.
        thread_id: Option<ThreadId>,
        /// The failed turn, when the backend reports turn ids.
        turn_id: Option<TurnId>,
        /// Codex's message.
        message: String,
    },

    /// Codex ran, but the model provider rejected (or never got) its credentials: an HTTP
    /// 401, a missing `env_key` variable, a session codex could not refresh. `message` is
    /// codex's own (see [`crate::auth::is_auth_rejection`]).
    #[error(
        "codex could not authenticate with the model provider: {message} (sign in with `codex login`, store an API key with `codex login --with-api-key`, or set the provider's `env_key` variable)"
    )]
    AuthRejected {
        /// The thread the turn belonged to, when known.
        thread_id: Option<ThreadId>,
        /// The failed turn, when the backend reports turn ids.
        turn_id: Option<TurnId>,
        /// Codex's message.
        message: String,
    },

    /// The turn did not end within its timeout; the codex process group was killed.
    #[error("codex turn timed out after {after:?}; the codex process was stopped")]
    Timeout {
        /// The timeout that fired.
        after: Duration,
        /// The thread, when it had started.
        thread_id: Option<ThreadId>,
    },

    /// A short codex command (a `--version` or `--help` probe, `login status`) did not finish
    /// in time; its process tree was killed.
    #[error(
        "`{} {what}` did not finish within {after:?} and was killed; check that this is a working codex (run the same command by hand) or allow it more time",
        program.display()
    )]
    CommandTimeout {
        /// The program that hung.
        program: PathBuf,
        /// What it was asked (its arguments, e.g. `--version`).
        what: String,
        /// The limit that ran out.
        after: Duration,
    },

    /// The run was cancelled by the caller.
    #[error("codex turn cancelled")]
    Cancelled {
        /// The thread, when it had started.
        thread_id: Option<ThreadId>,
    },

    /// `codex login status` printed something we do not understand.
    #[error("could not read `{} login status`: {detail}", program.display())]
    LoginStatus {
        /// The program that was asked.
        program: PathBuf,
        /// What it printed, and its exit status.
        detail: String,
    },

    /// Codex has no credentials.
    #[error(
        "not logged in: run `codex login` (or `codex login --with-api-key` with the key on stdin)"
    )]
    NotLoggedIn,

    /// The requested feature is not available with the current sign-in.
    #[error("{feature} is not available when {auth}; {}", feature.how_to_enable())]
    FeatureUnavailable {
        /// What was asked for.
        feature: Feature,
        /// How codex is signed in.
        auth: AuthMode,
    },

    /// A [`TaskSpec`](crate::TaskSpec) field is invalid.
    #[error("invalid task: {field}: {reason}")]
    InvalidSpec {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },

    /// A write was requested outside every root Codex may write to.
    #[error(
        "Codex cannot write to {} because it is outside its workspace (writable roots: {}); run the task with that directory as its working directory, or add it as an extra writable directory (`--add-dir`, TaskSpec::writable_dir)",
        path.display(), render_roots(roots)
    )]
    OutsideWorkspace {
        /// The path that would be written.
        path: PathBuf,
        /// The roots that are writable.
        roots: Vec<PathBuf>,
    },

    /// The installed codex cannot do what was asked.
    #[error("codex {version} does not support {what}")]
    Unsupported {
        /// The codex version.
        version: String,
        /// What it lacks.
        what: String,
    },

    /// An error from a specific backend (decoding, protocol, transport).
    #[error("{backend} backend")]
    Backend {
        /// Which backend.
        backend: BackendKind,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// No directory for codex-bridge's state could be determined (see
    /// [`paths::state_root`](crate::paths::state_root)).
    #[error("no state directory: set {}", crate::paths::STATE_DIR_ENV)]
    NoStateDir,

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
    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps a backend-specific error.
    pub fn backend(
        backend: BackendKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// The thread this error belongs to, when it is known.
    pub fn thread_id(&self) -> Option<&ThreadId> {
        match self {
            Error::TurnFailed { thread_id, .. }
            | Error::AuthRejected { thread_id, .. }
            | Error::Timeout { thread_id, .. }
            | Error::Cancelled { thread_id } => thread_id.as_ref(),
            _ => None,
        }
    }
}

/// How a process ended, for messages and matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ExitSummary {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Unknown (the status could not be read).
    Unknown,
}

impl ExitSummary {
    /// Summarises a standard exit status.
    pub fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        if let Some(code) = status.code() {
            ExitSummary::Code(code)
        } else if let Some(sig) = status.signal() {
            ExitSummary::Signal(sig)
        } else {
            ExitSummary::Unknown
        }
    }

    /// The exit code, if the process exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitSummary::Code(c) => Some(*c),
            _ => None,
        }
    }
}

impl std::fmt::Display for ExitSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitSummary::Code(c) => write!(f, "exit code {c}"),
            ExitSummary::Signal(s) => match nix::sys::signal::Signal::try_from(*s) {
                Ok(signal) => write!(f, "signal {s}, {}", signal.as_str()),
                Err(_) => write!(f, "signal {s}"),
            },
            ExitSummary::Unknown => f.write_str("unknown status"),
        }
    }
}

fn tail_suffix(tail: &str) -> String {
    let t = tail.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("; stderr: {t}")
    }
}

fn render_roots(roots: &[PathBuf]) -> String {
    if roots.is_empty() {
        return "none".to_owned();
    }
    roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Displays an error followed by each of its causes ([`std::error::Error::source`]), joined
/// by `": "`, each text once: this is how binaries print errors and how job records store
/// them.
///
/// Our errors never repeat their source's text in their own message, so the chain is the
/// whole story told once. For errors of other crates that do embed their source in their
/// message, a cause whose text the rendering already ends with (after `": "`) is not
/// repeated.
///
/// ```
/// use codex_core::{Error, ErrorChain};
/// let err = Error::io("reading the prompt", std::io::Error::other("disk on fire"));
/// assert_eq!(err.to_string(), "reading the prompt");
/// assert_eq!(ErrorChain(&err).to_string(), "reading the prompt: disk on fire");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            let told = out
                .strip_suffix(text.as_str())
                .is_some_and(|head| head.is_empty() || head.ends_with(": "));
            if out.is_empty() {
                out = text;
            } else if !text.is_empty() && !told {
                out.push_str(": ");
                out.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&out)
    }
}

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// [`ErrorChain`] as a `String`: the error and each of its causes, once, joined by `": "`.
///
/// ```
/// let err = codex_core::Error::io("saving", std::io::Error::other("full"));
/// assert_eq!(codex_core::error_chain(&err), "saving: full");
/// ```
pub fn error_chain(err: &(dyn std::error::Error + '_)) -> String {
    ErrorChain(err).to_string()
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
