//! Typed App Server Protocol of `codex app-server`, as spoken by **codex-cli 0.171.0** (the
//! pinned version; the typed surface also reads 0.154.0 to 0.169.1, see README's "Supported
//! codex versions").
//!
//! The vendored JSON Schema of that build lives in `codex-asp/schema/0.171.0/` and
//! `tests/schema.rs` checks this module against it; real transcripts captured from the binary
//! are in `codex-asp/tests/fixtures/`.
//!
//! # Layout
//!
//! - [`Request`]: one zero-sized marker type per method (e.g. [`ThreadStart`]) binds the
//!   method name to its params and response types. Client requests are declared here;
//!   server-to-client requests ([`CommandExecutionRequestApproval`], ...) implement the
//!   same trait in [`server_requests`].
//! - [`common`]: wire enums shared by many requests ([`WireSandboxMode`], [`SandboxPolicy`],
//!   [`AskForApproval`], [`UserInput`], ...).
//! - [`session`]: `initialize`, account, model, config and `command/exec` shapes.
//! - [`thread`]: [`Thread`], [`Turn`] and the `thread/*`, `turn/*`, `review/start` shapes.
//! - [`items`]: [`ThreadItem`] (tagged on `type`, with an `Unknown` fallback).
//! - [`notifications`]: [`ServerNotification`] (typed variants plus `Raw`).
//! - [`server_requests`]: [`ServerRequest`] and the approval decisions / responses.
//!
//! Everything on the wire is camelCase, with a few exceptions noted on the types (the
//! kebab-case `sandbox` and `approvalPolicy` strings, `text_elements`, `move_path`, the
//! snake_case insides of `{"granular":..}` and of the amendment decisions). Structs ignore
//! unknown fields and are `#[non_exhaustive]`; build params with their `new`/`Default`
//! constructors and set the public fields. Tagged enums keep unknown tags as raw JSON.
//!
//! # Protocol facts (verified against the real 0.169.0 binary)
//!
//! - JSON-RPC 2.0 without the `"jsonrpc"` member; stdio carries one JSON object per line.
//! - The connection must start with `initialize` then the `initialized` notification
//!   ([`INITIALIZED_NOTIFICATION`]). Requests before it get -32600 "Not initialized"; a
//!   second `initialize` gets -32600 "Already initialized".
//! - Unknown methods, missing or malformed params, and many business errors all use -32600
//!   ([`error_codes::INVALID_REQUEST`](crate::jsonrpc::error_codes::INVALID_REQUEST)), never -32601 (0.171.0 answers one case with -32602,
//!   see [`error_codes::INVALID_PARAMS`](crate::jsonrpc::error_codes::INVALID_PARAMS)); overload is -32001.
//! - Methods without params (`account/logout`) accept `params` absent, `null` or `{}`;
//!   [`EmptyParams`] sends `{}`. Optional params (`account/rateLimits/read`) likewise.
//! - `thread/start`/`resume`/`fork` take `sandbox` as a kebab-case string
//!   ([`WireSandboxMode`]) but every response reports it as the tagged object
//!   [`SandboxPolicy`], which is also what `turn/start` (`sandboxPolicy`) and `command/exec`
//!   take.
//! - `approval_policy = "untrusted"` in `config.toml` is a fatal config error in 0.169.0
//!   ("no longer supported"), while `approvalPolicy: "untrusted"` on the wire works and makes
//!   `touch x` ask for approval. `{"granular":..}` needs `capabilities.experimentalApi`.
//! - The server sends fields that only the *experimental* schema lists even when the client
//!   did not opt in: `thread.environments`, `thread.extra`, `account/read`'s
//!   `workspaceRouting`, `thread/list`'s `readStates`, and the approval request's
//!   `availableDecisions` (seen as `["accept", {"acceptWithExecpolicyAmendment":..},
//!   "cancel"]` — no "decline", yet "decline" is accepted).
//! - Ordering: the `thread/start` response comes before `thread/started`; `turn/started` can
//!   come before the `turn/start` response. `item/started` for a command or file change
//!   comes before its approval request; `serverRequest/resolved` follows the client's
//!   answer; the item's `item/completed` follows (status `declined` after a decline).
//! - A `commandExecution` item's `command` is the wrapped shell line (`/bin/bash -c 'touch
//!   x'`) and its `source` changes from `agent` (started) to `unifiedExecStartup`
//!   (completed).
//! - `turn/completed` is the only terminal event of a turn; its `turn.items` may be partial
//!   or empty (`itemsView`), so collect items from `item/completed`. An interrupted turn
//!   reports status `interrupted` with no error.
//! - `turn/steer` on an ended turn answers -32600 "no active turn to steer"; the steered
//!   input appears as a new `userMessage` item of the running turn.
//! - `review/start` answers a turn id that `turn/completed` reports, while the review's
//!   `turn/started` carries another id (with `rootTurnId` = the answered one).
//! - `thread/read` with `includeTurns` and `thread/resume` without `excludeTurns` emit a
//!   `deprecationNotice` for paginated threads (the default history mode).
//! - `account/rateLimits/updated` follows every model response, even with a mock provider;
//!   `capabilities.optOutNotificationMethods` suppresses it (and any other method).
//! - `account/login/start {type:"apiKey"}` answers `{"type":"apiKey"}`, then notifies
//!   `account/login/completed` and `account/updated {authMode:"apikey"}` (lowercase k).
//! - A `configWarning` about bubblewrap appears on machines without `bwrap` on PATH when a
//!   sandboxed mode is used.

#[macro_use]
mod macros;

pub mod common;
pub mod items;
pub mod notifications;
pub mod server_requests;
pub mod session;
pub mod thread;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use common::*;
pub use items::*;
pub use notifications::*;
pub use server_requests::*;
pub use session::*;
pub use thread::*;

/// A JSON-RPC method with typed params and result.
///
/// Implemented by zero-sized marker types (uninhabited enums), one per method: the client
/// requests below and the server-to-client requests of [`server_requests`].
pub trait Request {
    /// The method name on the wire.
    const METHOD: &'static str;
    /// The `params` object.
    type Params: Serialize + DeserializeOwned + Send;
    /// The `result` object.
    type Response: DeserializeOwned + Serialize + Send;
}

macro_rules! client_requests {
    ($( $(#[$meta:meta])* $marker:ident = $method:literal, $params:ty => $response:ty; )*) => {
        $(
            $(#[$meta])*
            #[derive(Debug)]
            pub enum $marker {}

            impl Request for $marker {
                const METHOD: &'static str = $method;
                type Params = $params;
                type Response = $response;
            }
        )*

        /// The methods of every typed client request.
        pub const CLIENT_REQUEST_METHODS: &[&str] = &[ $( $method, )* ];
    };
}

client_requests! {
    /// `initialize`: must be the first request.
    Initialize = "initialize", InitializeParams => InitializeResponse;
    /// `thread/start`: create a thread.
    ThreadStart = "thread/start", ThreadStartParams => ThreadStartResponse;
    /// `thread/resume`: load a stored thread (works across app-server restarts).
    ThreadResume = "thread/resume", ThreadResumeParams => ThreadResumeResponse;
    /// `thread/fork`: copy a thread into a new one.
    ThreadFork = "thread/fork", ThreadForkParams => ThreadForkResponse;
    /// `thread/list`: page through stored threads.
    ThreadList = "thread/list", ThreadListParams => ThreadListResponse;
    /// `thread/read`: read a thread without resuming it.
    ThreadRead = "thread/read", ThreadReadParams => ThreadReadResponse;
    /// `thread/archive`.
    ThreadArchive = "thread/archive", ThreadArchiveParams => EmptyResponse;
    /// `thread/unarchive`.
    ThreadUnarchive = "thread/unarchive", ThreadUnarchiveParams => ThreadUnarchiveResponse;
    /// `thread/name/set`.
    ThreadSetName = "thread/name/set", ThreadSetNameParams => EmptyResponse;
    /// `thread/compact/start`: compact the context (runs as a turn).
    ThreadCompactStart = "thread/compact/start", ThreadCompactStartParams => EmptyResponse;
    /// `turn/start`: send user input and start a turn.
    TurnStart = "turn/start", TurnStartParams => TurnStartResponse;
    /// `turn/steer`: add input to the running turn.
    TurnSteer = "turn/steer", TurnSteerParams => TurnSteerResponse;
    /// `turn/interrupt`: stop the running turn.
    TurnInterrupt = "turn/interrupt", TurnInterruptParams => EmptyResponse;
    /// `review/start`: run a code review as a turn.
    ReviewStart = "review/start", ReviewStartParams => ReviewStartResponse;
    /// `model/list`: the model catalog (offline).
    ModelList = "model/list", ModelListParams => ModelListResponse;
    /// `account/read`.
    AccountRead = "account/read", GetAccountParams => GetAccountResponse;
    /// `account/login/start`.
    AccountLoginStart = "account/login/start", LoginAccountParams => LoginAccountResponse;
    /// `account/logout`.
    AccountLogout = "account/logout", EmptyParams => EmptyResponse;
    /// `account/rateLimits/read` (ChatGPT auth only).
    AccountRateLimitsRead = "account/rateLimits/read", GetAccountRateLimitsParams => GetAccountRateLimitsResponse;
    /// `config/read`: the effective configuration.
    ConfigRead = "config/read", ConfigReadParams => ConfigReadResponse;
    /// `command/exec`: run a command in codex's sandbox, without a thread.
    CommandExec = "command/exec", CommandExecParams => CommandExecResponse;
}
