//! The error type of the companion module, with the exit code of each failure.

use std::path::PathBuf;

use codex_agent::jobs::StoreError;

/// The exit codes of `codex-companion`.
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
    Delegate(#[from] codex_agent::Error),

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
    pub fn usage(message: impl Into<String>) -> Self {
        CompanionError::Usage(message.into())
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CompanionError::Io {
            context: context.into(),
            source,
        }
    }

    /// The exit code the binary ends with for this error: 2 for usage errors and
    /// refusals of the request itself (an empty prompt, a missing `--cwd`), 1 otherwise.
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

/// The examples that documented this module when it was public API of codex-agent.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn example_1() {
        use crate::error::ExitCode;
        assert_eq!(ExitCode::Usage.code(), 2);
    }

    #[test]
    fn example_2() {
        assert_eq!(crate::error::ExitCode::Pending.code(), 3);
    }

    #[test]
    fn example_3() {
        use crate::error::{CompanionError, ExitCode};
        let err = CompanionError::usage("--resume-last and --fresh cannot be used together");
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert!(err.to_string().contains("--fresh"));
    }

    #[test]
    fn example_4() {
        let e = crate::error::CompanionError::usage("the prompt is empty");
        assert_eq!(e.to_string(), "the prompt is empty");
    }

    #[test]
    fn example_5() {
        let e = crate::error::CompanionError::io(
            "reading the prompt file",
            std::io::Error::other("gone"),
        );
        assert!(e.to_string().starts_with("reading the prompt file"));
    }

    #[test]
    fn example_6() {
        use crate::error::{CompanionError, ExitCode};
        let e = CompanionError::from(codex_agent::Error::NothingToResume {
            workspace: "/w".into(),
        });
        assert_eq!(e.exit_code(), ExitCode::Failure);
    }
}

/// Every error of the companion tells each cause once.
#[cfg(test)]
mod chain_tests {
    use std::error::Error as StdError;

    use codex_agent::jobs::StoreError;
    use codex_core::error_chain;

    use super::*;

    fn io(text: &str) -> std::io::Error {
        std::io::Error::other(text.to_owned())
    }

    /// `cause` appears exactly once whether the chain is printed naively (each level's message
    /// joined, as anyhow's `{:#}` does) or with [`codex_core::ErrorChain`].
    fn assert_told_once(err: &(dyn StdError + 'static), cause: &str) {
        let mut parts = vec![err.to_string()];
        let mut next = err.source();
        while let Some(c) = next {
            parts.push(c.to_string());
            next = c.source();
        }
        let naive = parts.join(": ");
        assert_eq!(naive.matches(cause).count(), 1, "naive chain: {naive}");
        let chain = error_chain(err);
        assert_eq!(chain.matches(cause).count(), 1, "chain: {chain}");
    }

    #[test]
    fn companion_errors_tell_each_cause_once() {
        let cases = [
            (
                CompanionError::Worker {
                    job_id: "job-1".into(),
                    what: "starting /x/codex-companion".into(),
                    source: io("CAUSE-worker"),
                },
                "CAUSE-worker",
            ),
            (
                CompanionError::io("reading the prompt file", io("CAUSE-io")),
                "CAUSE-io",
            ),
            (
                CompanionError::from(codex_asp::broker::Error::Spawn {
                    program: "/x/codex-broker".into(),
                    source: io("CAUSE-broker"),
                }),
                "CAUSE-broker",
            ),
            (
                CompanionError::from(StoreError::InvalidId {
                    id: "../../x".into(),
                }),
                "../../x",
            ),
        ];
        for (err, cause) in cases {
            assert_told_once(&err, cause);
            let any = anyhow::Error::from(err).context("connecting to codex");
            assert_told_once(any.as_ref(), cause);
        }
    }
}
