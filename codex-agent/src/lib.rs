//! # codex-agent
//!
//! Delegate tasks to Codex as a sub-agent, with prompt shaping, background jobs and *proof of
//! execution*.
//!
//! Delegating to a sub-agent has a known failure mode: when the sub-agent is not allowed to
//! run Codex, it may read the files itself and report that "Codex executed it". This crate
//! makes that impossible by construction: a delegation returns either a [`Verified`] outcome,
//! which can only be built inside this crate from the events of a run it started (the
//! completed event of that very turn, on a thread that really started), or an [`Error`] that
//! says why Codex did not run. There is no third path.
//!
//! - [`prompt`]: [`PromptPlan`](prompt::PromptPlan)s of tagged blocks, picked per
//!   [`Intent`](prompt::Intent) by a [`Recipe`](prompt::Recipe); visible and overridable.
//! - [`DelegateRequest`]: the task, its context, write permission, target workspace, extra
//!   writable dirs, model and effort, foreground or background, [`Continuation`], timeout,
//!   prompt overrides. Writes outside every allowed root are refused before anything starts.
//! - [`Delegate`]: holds the backends (any `Arc<dyn codex_core::Backend>`), picks one with
//!   [`select::select_backends`], runs the turn and verifies it.
//! - [`jobs`]: every delegation is a job in its project's [`JobStore`](jobs::JobStore)
//!   (records on disk, shared by processes); background delegations return a [`JobHandle`]
//!   at once.
//!
//! ```no_run
//! # async fn demo(exec: std::sync::Arc<dyn codex_core::Backend>) -> Result<(), Box<dyn std::error::Error>> {
//! use codex_agent::{Delegate, DelegateRequest, prompt::Intent};
//! use codex_core::{BackendKind, CodexBinary};
//!
//! let codex = CodexBinary::discover().await?;
//! let delegate = Delegate::builder(codex).backend(BackendKind::Exec, exec).build();
//! let request = DelegateRequest::new("Find why `cargo test -p parser` fails")
//!     .intent(Intent::Diagnose)
//!     .cwd("/work/parser")
//!     .failing_command("cargo test -p parser", "test parse_big ... FAILED");
//! println!("{}", request.prompt()); // exactly what Codex will read
//! let verified = delegate.run(request).await?;
//! println!(
//!     "{} ran codex {} on thread {}: {}",
//!     verified.backend(),
//!     verified.codex_version(),
//!     verified.thread_id(),
//!     verified.final_message().unwrap_or("(no message)")
//! );
//! # Ok(()) }
//! ```
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

mod delegate;
mod error;
pub mod jobs;
pub mod prompt;
mod request;
pub mod select;
#[cfg(test)]
mod testing;
mod verify;

pub use delegate::{Delegate, DelegateBuilder, Delegation};
pub use error::{Error, Result, UnverifiedReason};
pub use jobs::JobHandle;
pub use request::{Continuation, DelegateRequest, Mode};
pub use verify::Verified;

#[cfg(test)]
mod tests;
