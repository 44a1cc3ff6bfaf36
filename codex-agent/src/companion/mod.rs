//! The testable logic of the `codex-companion` binary: drive Codex from another tool (an
//! editor, a coding agent, a script) with job tracking, background workers, reviews and
//! structured adversarial reviews.
//!
//! The binary is a thin command-line layer over this module and over [`Delegate`]
//! (which records every task in the workspace's [`JobStore`] and proves that Codex ran):
//!
//! - [`jobspec`]: what a background worker needs to run a queued job, stored next to the
//!   job's record in the store directory, and how the worker is started (detached, in a
//!   session of its own) and stopped (its process group).
//! - [`adversarial`]: the output schema of an adversarial review, a validator for the
//!   answer (required fields, types and enumerations, no general JSON-Schema engine), and
//!   the rendering sorted by severity.
//! - [`review`]: the scope of a review (working tree or branch against its merge base) read
//!   from git, and the rendering of codex's native review output.
//! - [`progress`]: a [`Backend`](codex_core::Backend) wrapper that reports each event of a
//!   run to a callback (progress lines on stderr) without changing the run.
//! - [`render`]: how jobs, results and their JSON documents look.
//! - [`connect`]: the broker (started on demand) or a private app-server, and the
//!   [`Delegate`] over it.
//!
//! Errors are typed ([`CompanionError`]); each knows the exit code the binary uses
//! ([`CompanionError::exit_code`]).
//!
//! [`Delegate`]: crate::Delegate
//! [`JobStore`]: codex_agent::jobs::JobStore

pub mod adversarial;
pub mod connect;
mod error;
pub mod jobspec;
pub mod progress;
pub mod render;
pub mod review;

pub use error::{CompanionError, ExitCode};
