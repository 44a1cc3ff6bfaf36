//! The error type of the companion module, with the exit code of each failure.

use std::path::PathBuf;

use crate::jobs::StoreError;

/// The exit codes of `codex-companion`.
///
/// ```
/// use codex_agent::companion::ExitCode;
/// assert_eq!(ExitCode::Usage.code(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitCode {
    /// The command did what was asked (for a turn: the turn completed).
    Success,
    /// The turn or the job failed, was cancelled or timed out; or an operation failed.
    Failure,
    /// Bad flags, a bad combination of flags, or bad input (an empty prompt).
    Usage,
    /// The job is not finished yet (`result` of a running job, `status --wait` that timed out).
    Pending,
}

impl ExitCode {
    /// The process exit status: 0, 1, 2 or 3.
    ///
    /// ```
    /// assert_eq!(codex_agent::companion::ExitCode::Pending.code(), 3);
    /// ```
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::Usage => 2,
            ExitCode::Pending => 3,
        }
    }
}

/// Everything that can go wrong in the companion's own logic.
///
/// ```
/// use codex_agent::companion::{CompanionError, ExitCode};
/// let err = CompanionError::usage("--resume-last and --fresh cannot be used together");
/// assert_eq!(err.exit_code(), ExitCode::Usage);
/// assert!(err.to_string().contains("--fresh"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompanionError {
    /// Bad input from the command line (exit code 2).
    #[error("{0}")]
    Usage(String),

    /// A job store error (not found, ambiguous prefix, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A delegation failed or was refused.
    #[error(transparent)]
    Delegate(#[from] crate::Error),

    /// Reaching, starting or asking the resident broker failed.
    #[error(transparent)]
    Broker(#[from] codex_asp::broker::Error),

    /// A git command failed or its answer was unusable.
    #[error("git {command}: {detail}")]
    Git {
        /// The git command line (without `git`).
        command: String,
        /// What went wrong (git's message).
        detail: String,
    },

    /// A background job's stored spec is missing or unreadable.
    #[error("job {job_id}: its stored spec {} cannot be used: {reason}", path.display())]
    Spec {
        /// The job.
        job_id: String,
        /// The spec file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// Starting or signalling a worker process failed.
    #[error("job {job_id}: {what}")]
    Worker {
        /// The job.
        job_id: String,
        /// What was being done.
        what: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// Codex did not start within the job's timeout (finding it, reaching an app-server or
    /// the broker, the handshake); nothing of the job ran.
    #[error("codex did not start within the job's timeout of {after:?} (still {waiting_for})")]
    StartTimeout {
        /// The job's timeout.
        after: std::time::Duration,
        /// What start-up was doing when the time ran out.
        waiting_for: &'static str,
    },

    /// An I/O error while doing `context`.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl CompanionError {
    /// A usage error (exit code 2).
    ///
    /// ```
    /// let e = codex_agent::companion::CompanionError::usage("the prompt is empty");
    /// assert_eq!(e.to_string(), "the prompt is empty");
    /// ```
    pub fn usage(message: impl Into<String>) -> Self {
        CompanionError::Usage(message.into())
    }

    /// An I/O error with what was being done.
    ///
    /// ```
    /// let e = codex_agent::companion::CompanionError::io("reading the prompt file", std::io::Error::other("gone"));
    /// assert!(e.to_string().starts_with("reading the prompt file"));
    /// ```
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CompanionError::Io {
            context: context.into(),
            source,
        }
    }

    /// The exit code the binary ends with for this error: 2 for usage errors and
    /// refusals of the request itself (an empty prompt, a missing `--cwd`), 1 otherwise.
    ///
    /// ```
    /// use codex_agent::companion::{CompanionError, ExitCode};
    /// let e = CompanionError::from(codex_agent::Error::NothingToResume { workspace: "/w".into() });
    /// assert_eq!(e.exit_code(), ExitCode::Failure);
    /// ```
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CompanionError::Usage(_) => ExitCode::Usage,
            CompanionError::Store(
                StoreError::NotFound { .. }
                | StoreError::Ambiguous { .. }
                | StoreError::InvalidId { .. },
            ) => ExitCode::Usage,
            _ => ExitCode::Failure,
        }
    }
}
