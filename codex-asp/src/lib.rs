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
//! - [`approval`]: server-to-client requests (command / file-change / permission approvals,
//!   user input, MCP elicitations) answered by a pluggable [`approval::ApprovalHandler`].
//! - [`service`]: the connection as a [`tower::Service`], with retry-on-overload, timeout and
//!   concurrency-limit layers.
//! - [`protocol`]: the typed App Server Protocol of codex 0.171.0 (the pinned version).
//!
//! Every failure is an [`Error`]; at the codex-core boundary it becomes
//! [`codex_core::Error::Backend`].
//!
//! ## Facts verified on codex-cli 0.169.0
//!
//! - JSON-RPC 2.0 without the `"jsonrpc"` member (this client accepts both and does not send
//!   it). Messages may carry extra members (`emittedAtMs`), which are ignored.
//! - Requests before `initialize` get -32600 "Not initialized"; unknown methods and bad
//!   params are -32600 too (not -32601); overload is -32001.
//! - Server-to-client requests use ids counting from 0, overlapping the client's ids; an
//!   answered approval is followed by `serverRequest/resolved {threadId, requestId}`.
//! - stdio: one JSON per line; killing the process group ends stdout at once.
//! - `--listen ws://127.0.0.1:0` binds a free port and prints
//!   `listening on: ws://127.0.0.1:PORT` on stderr; `GET /readyz` answers 200; with
//!   `--ws-auth capability-token --ws-token-file ABS` a missing or wrong
//!   `Authorization: Bearer` token is answered 401 (body "missing websocket bearer token"
//!   when absent).
//! - `--listen unix://PATH` makes `PATH` a symlink to a socket under `/tmp/codex-daemon-UID/`
//!   and speaks WebSocket over it.
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
