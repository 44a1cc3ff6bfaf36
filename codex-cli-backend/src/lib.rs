//! # codex-cli-backend
//!
//! The codex-bridge backend over one-shot `codex exec --json` processes: every turn is one
//! codex process, its prompt on stdin, its events read from stdout as JSON lines.
//!
//! - [`CliBackend`] implements [`codex_core::Backend`]: [`start`](codex_core::Backend::start)
//!   runs `codex exec`, [`resume`](codex_core::Backend::resume) runs
//!   `codex exec resume ID` (same thread id; codex re-sends the thread's history itself).
//!   Build it with [`CliBackend::builder`] or [`CliBackend::discover`].
//!   The command line is built from the probed [`codex_core::Capabilities`]: each flag is
//!   used only where this codex accepts it ([`CliBackend::args_for`] shows it).
//! - [`decode_stream`] and [`decode_line`] turn codex's output into [`codex_core::Event`]s
//!   without ever failing on bad input.
//! - [`Error`] is this crate's error; it reaches callers as
//!   [`codex_core::Error::Backend`] and [`Error::from_core`] gets it back.
//!
//! ## How a run ends
//!
//! | what happened                                     | outcome                                   |
//! |---------------------------------------------------|-------------------------------------------|
//! | `turn.completed`                                  | `Ok(TurnOutcome)`                         |
//! | `turn.failed{error{message}}`                     | [`codex_core::Error::TurnFailed`]         |
//! | codex exited without either                       | [`codex_core::Error::ProcessExited`] (exit code, stderr tail) |
//! | the timeout ([`TaskSpec::timeout`](codex_core::TaskSpec::timeout) or the backend default) fired | [`codex_core::Error::Timeout`] |
//! | [`Run::cancel`](codex_core::Run::cancel), a [`CancelHandle`](codex_core::CancelHandle), or dropping the run | [`codex_core::Error::Cancelled`] |
//!
//! On timeout and cancellation the whole process group is killed (codex, its Node.js
//! launcher, and every command it started), and the run's temporary directory (output
//! schema, last-message file) is removed. `error` events (`Reconnecting... 1/5`) are not
//! terminal: codex may still succeed.
//!
//! The flags each codex version accepts, and the verified facts about `codex exec` this
//! crate relies on, are in the README ("The exec backend across codex versions").
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

mod args;
mod backend;
mod decode;
mod error;
#[cfg(test)]
mod fuzz;

pub use backend::{CliBackend, CliBackendBuilder};
/// Decodes a whole buffer of `codex exec --json` output at once. For the benchmark
/// (`codex-bridge-bench`) only; not part of the supported API.
#[doc(hidden)]
pub use decode::decode_all;
pub use decode::{DEFAULT_MAX_LINE_BYTES, decode_line, decode_stream};
pub use error::{Command, Error, Result};
