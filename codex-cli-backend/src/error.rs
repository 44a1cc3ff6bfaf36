//! The error type of this crate.
//!
//! Errors that belong to the exec backend itself (building arguments, temp files, decoding)
//! are [`Error`]s; at the [`codex_core::Backend`] boundary they become
//! [`codex_core::Error::Backend`] with `backend: BackendKind::Exec`, from which
//! [`Error::from_core`] recovers them.

use std::path::PathBuf;

use codex_core::BackendKind;

/// Shorthand for `Result<T, codex_cli_backend::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which codex sub-command an argument is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// `codex exec`.
    Exec,
    /// `codex exec resume`.
    ExecResume,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Exec => "codex exec",
            Command::ExecResume => "codex exec resume",
        })
    }
}

/// What can go wrong inside the exec backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration override has a `null` value (TOML has no null).
    #[error(
        "config override `{key}`: null has no TOML form (at {path}); remove the override or give it a value"
    )]
    NullConfigValue {
        /// The override's key.
        key: String,
        /// Where in the value the null is (`$` is the value itself, `$.a[0]` a nested part).
        path: String,
    },

    /// A configuration override cannot be written as a `-c key=value` argument.
    #[error("config override `{key}`: {reason}")]
    BadConfigOverride {
        /// The override's key.
        key: String,
        /// Why.
        reason: String,
    },

    /// The installed codex lacks a flag the task needs, and there is no other way to say it.
    #[error("`{command}` of this codex does not accept {flag}, which is needed for {needed_for}")]
    UnsupportedFlag {
        /// The sub-command.
        command: Command,
        /// The missing flag.
        flag: &'static str,
        /// What the task asked for.
        needed_for: &'static str,
    },

    /// A temporary file (output schema, last message) could not be written or read.
    #[error("{what} temp file {}", path.display())]
    TempFile {
        /// Which file.
        what: &'static str,
        /// Its path (empty when the temp directory itself failed).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// [`CliBackend::builder`](crate::CliBackend::builder) was built without a codex binary.
    #[error(
        "no codex binary was given: call CliBackendBuilder::binary(..) or use CliBackend::discover()"
    )]
    NoBinary,

    /// A path of the task could not be made absolute.
    #[error("cannot resolve the path {}", path.display())]
    Path {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Recovers this crate's error from a [`codex_core::Error::Backend`] made by this backend.
    pub fn from_core(error: &codex_core::Error) -> Option<&Error> {
        match error {
            codex_core::Error::Backend {
                backend: BackendKind::Exec,
                source,
            } => source.downcast_ref::<Error>(),
            _ => None,
        }
    }
}

impl From<Error> for codex_core::Error {
    fn from(error: Error) -> Self {
        codex_core::Error::backend(BackendKind::Exec, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_into_a_backend_error_and_back() {
        let err: codex_core::Error = Error::NullConfigValue {
            key: "a.b".into(),
            path: "$".into(),
        }
        .into();
        assert!(matches!(
            err,
            codex_core::Error::Backend {
                backend: BackendKind::Exec,
                ..
            }
        ));
        let msg = codex_core::error_chain(&err);
        assert!(msg.contains("a.b") && msg.contains("null"), "{msg}");
        assert!(matches!(
            Error::from_core(&err),
            Some(Error::NullConfigValue { key, .. }) if key == "a.b"
        ));
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod chain_tests;
