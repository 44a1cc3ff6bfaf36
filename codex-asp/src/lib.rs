//! # codex-asp
//!
//! JSON-RPC 2.0 client for `codex app-server` (stdio, WebSocket, unix socket), approvals,
//! tower integration and the resident broker.
//!
//! - [`transport`]: how frames travel — [`transport::stdio`] (launches `codex app-server`
//!   with [`codex_core::process::CodexCommand`]: own process group, killed on drop, bounded
//!   stderr tail), [`transport::ws`] (WebSocket over TCP or a unix socket, capability tokens,
//!   launching a listening server), [`transport::memory`] (in-memory, for tests).
//! - [`Connection`]: requests and responses, notifications routed to [`Subscription`]s by
//!   thread or turn, the `initialize` handshake, typed requests through [`protocol`].
//! - [`jsonrpc`]: the one JSON-RPC model: [`jsonrpc::RequestId`], [`jsonrpc::JsonRpcError`]
//!   (used by [`Error::Rpc`], approvals and the broker) and codex's error codes.
//! - [`approval`]: server-to-client requests (command / file-change / permission approvals,
//!   user input, MCP elicitations) answered by a pluggable [`approval::ApprovalHandler`].
//! - [`service`]: the connection as a [`tower::Service`], with retry-on-overload, timeout and
//!   concurrency-limit layers.
//! - [`protocol`]: the typed App Server Protocol of codex 0.171.0 (the pinned version).
//! - [`backend`]: [`AspBackend`], the codex-core `Backend` over an app-server.
//! - [`broker`]: one warm app-server shared by many clients (the client API, and the server
//!   that the `codex-broker` binary of the `codex-broker` package runs).
//!
//! Every failure is an [`Error`]; at the codex-core boundary it converts with
//! `From<Error> for codex_core::Error` (an exited app-server becomes
//! [`codex_core::Error::ProcessExited`], the rest [`codex_core::Error::Backend`]).
//!
//! What codex's app-server does on the wire (verified against the real binary) is written
//! where it is used: [`protocol`] (JSON-RPC dialect, error codes, ordering), [`transport`]
//! (`--listen` addresses, readiness, capability tokens), [`broker`].
//!
//! ```no_run
//! # async fn demo() -> codex_asp::Result<()> {
//! use codex_asp::protocol::{InitializeParams, ModelList, ModelListParams};
//! use codex_asp::transport::{stdio, TransportOptions};
//! use codex_asp::{Connection, ConnectionOptions};
//! use codex_core::process::CodexCommand;
//!
//! let command = CodexCommand::new("codex").arg("app-server");
//! let transport = stdio::spawn(command, &TransportOptions::default())?;
//! let (conn, _init) = Connection::connect(
//!     transport,
//!     ConnectionOptions::default(),
//!     &InitializeParams::new("my-app", "1.0.0"),
//! )
//! .await?;
//! let models = conn.request::<ModelList>(ModelListParams::default()).await?;
//! # let _ = models; Ok(()) }
//! ```
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

pub mod approval;
pub mod backend;
pub mod broker;
pub mod connection;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod jsonrpc;
pub mod protocol;
pub mod service;
pub mod transport;

pub use approval::{
    ApprovalHandler, Decision, PendingServerRequest, ServerReply, ServerRequestCtx,
};
pub use backend::AspBackend;
pub use connection::{
    Connection, ConnectionEvent, ConnectionOptions, ConnectionStats, Filter, Notification,
    Overflow, Subscription,
};
pub use error::{CloseReason, Error, Result};
pub use service::{AspService, OverloadRetry, RawRequest, TypedService};
pub use transport::{Transport, TransportOptions};
