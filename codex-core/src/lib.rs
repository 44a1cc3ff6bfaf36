//! # codex-core
//!
//! The protocol-neutral vocabulary of codex-bridge, and the one place that launches `codex`.
//!
//! Every other crate of the workspace speaks these types:
//!
//! - [`TaskSpec`] describes one turn: the prompt, where it runs, the sandbox and approval
//!   policies ([`SandboxMode`], [`ApprovalPolicy`], [`Preset`]), model and effort, output schema,
//!   images, config overrides and a timeout.
//! - [`Event`] and [`Item`] are the unified event model both backends decode into; unknown
//!   shapes are kept as raw JSON so a newer codex never breaks a caller.
//! - [`Backend`] is the object-safe trait every method of running codex implements; a started
//!   turn is a [`Run`] (a stream of events, a final [`TurnOutcome`], and cancellation).
//! - [`CodexBinary`] finds codex, reads its version and probes which flags it accepts;
//!   [`process`] launches it in its own process group, killed on drop, with a bounded stderr
//!   tail.
//! - [`auth`] models how codex is signed in and which features that allows.
//! - [`writable_roots`] states where Codex may write, and how to allow more.
//! - [`paths`] names the state directory every crate keeps its files under.
//!
//! This crate opens no socket and knows no wire format: JSONL decoding lives in
//! `codex-cli-backend`, JSON-RPC in `codex-asp`.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

pub mod auth;
pub mod backend;
pub mod binary;
mod error;
pub mod event;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod paths;
pub mod process;
pub mod spec;
pub mod util;
pub mod writable_roots;

pub use auth::{AuthContext, AuthMode, Feature};
pub use backend::{Backend, BackendKind, CancelHandle, Run, RunSink, TurnOutcome};
pub use binary::{Capabilities, CodexBinary, CodexVersion, ProbeOptions};
pub use error::{Error, ErrorChain, ExitSummary, Result, error_chain};
pub use event::{Event, FailureKind, Item, ItemDetails, ThreadId, TurnId, Usage};
pub use spec::{
    ApprovalPolicy, ConfigOverride, Preset, ReasoningEffort, SandboxMode, ServiceTier, TaskSpec,
};
