//! Threads and turns: the objects, and the params/responses of the `thread/*`, `turn/*`
//! and `review/start` requests.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{
    ApprovalsReviewer, AskForApproval, ReasoningEffort, ReasoningSummary, SandboxPolicy, UserInput,
    WireSandboxMode,
};
use super::items::ThreadItem;

string_enum! {
    /// Flags of an active thread.
    pub enum ThreadActiveFlag {
        /// `"waitingOnApproval"`: a server request for approval is pending.
        WaitingOnApproval = "waitingOnApproval",
        /// `"waitingOnUserInput"`: a `item/tool/requestUserInput` is pending.
        WaitingOnUserInput = "waitingOnUserInput",
    }
}

/// Payload of [`ThreadStatus::Active`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ActiveThreadStatus {
    /// What the active thread waits for, if anything.
    #[serde(default)]
    pub active_flags: Vec<ThreadActiveFlag>,
}

tagged_enum! {
    /// Runtime status of a thread (`{"type": "idle"}`, `{"type":"active","activeFlags":[..]}`,
    /// ...), reported by `thread/status/changed`.
    pub enum ThreadStatus (tag = "type") {
        unit {
            /// `notLoaded`: not loaded in this app-server.
            NotLoaded = "notLoaded",
            /// `idle`: loaded, no turn running.
            Idle = "idle",
            /// `systemError`.
            SystemError = "systemError",
        }
        data {
            /// `active`: a turn is running.
            Active(ActiveThreadStatus) = "active",
        }
    }
}

string_enum! {
    /// Status of a turn. A turn ends with `turn/completed` whose `turn.status` is
    /// `completed`, `interrupted` or `failed`.
    pub enum TurnStatus {
        /// `"completed"`.
        Completed = "completed",
        /// `"interrupted"` (after `turn/interrupt`, or a `cancel` approval decision).
        Interrupted = "interrupted",
        /// `"failed"` (see `turn.error`).
        Failed = "failed",
        /// `"inProgress"`.
        InProgress = "inProgress",
    }
}

impl TurnStatus {
    /// `true` for the three terminal statuses.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Interrupted | Self::Failed)
    }
}

/// Error of a failed (or interrupted) turn; also the `error` of the `error` notification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TurnError {
    /// Message.
    #[serde(default)]
    pub message: String,
    /// Machine-readable category: a string such as `"usageLimitExceeded"`,
    /// `"contextWindowExceeded"`, `"unauthorized"`, or an object such as
    /// `{"responseStreamDisconnected":{"httpStatusCode":null}}`. Kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codex_error_info: Option<Value>,
    /// Extra details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_details: Option<String>,
}

impl TurnError {
    /// Whether codex says the model provider rejected the credentials: `codexErrorInfo`
    /// `"unauthorized"` (e.g. a session that could not be refreshed), or an HTTP status 401 in
    /// any of its `{"<kind>":{"httpStatusCode":401}}` forms (as codex's own TUI reads it).
    /// Errors without that information (a missing `env_key` variable is `"other"`) fall
    /// back to codex's wording ([`codex_core::auth::is_auth_rejection`]).
    pub fn is_auth_rejection(&self) -> bool {
        let structured = match &self.codex_error_info {
            Some(Value::String(kind)) => kind == "unauthorized",
            Some(Value::Object(map)) => map
                .values()
                .any(|detail| detail.get("httpStatusCode").and_then(Value::as_u64) == Some(401)),
            _ => false,
        };
        structured || codex_core::auth::is_auth_rejection(&self.message)
    }
}

/// A turn: one user request and the agent's work on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Turn {
    /// Turn id (UUIDv7).
    pub id: String,
    /// Status.
    pub status: TurnStatus,
    /// Items included in this payload. **Often empty**: `turn/started`, the `turn/start`
    /// response and interrupted turns carry none; `turn/completed` may carry only some
    /// (see `itemsView`). Collect items from `item/*` notifications instead.
    #[serde(default)]
    pub items: Vec<ThreadItem>,
    /// How much of `items` is loaded: `"notLoaded"`, `"summary"` or `"full"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_view: Option<String>,
    /// Error of a failed or interrupted turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TurnError>,
    /// Root of the chain of work that led to this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_turn_id: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    /// Duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

/// Git metadata captured when a thread was created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GitInfo {
    /// Commit sha.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Origin remote URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_url: Option<String>,
}

/// A thread (a conversation), as returned by `thread/start`, `thread/read`, `thread/list`,
/// `thread/started`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Thread {
    /// Thread id (UUIDv7). Also the id to pass to `thread/resume` and `codex exec resume`.
    pub id: String,
    /// Session id shared by the threads of a session tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Source thread of a fork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from_id: Option<String>,
    /// Parent thread of a sub-agent thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_thread_id: Option<String>,
    /// Usually the first user message.
    #[serde(default)]
    pub preview: String,
    /// Whether the thread is kept in memory only.
    #[serde(default)]
    pub ephemeral: bool,
    /// Model provider id.
    #[serde(default)]
    pub model_provider: String,
    /// Current model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Current reasoning effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: i64,
    /// Unix seconds.
    #[serde(default)]
    pub updated_at: i64,
    /// Runtime status.
    #[serde(default = "not_loaded")]
    pub status: ThreadStatus,
    /// Rollout file on disk (`null` for ephemeral threads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: String,
    /// Version of the CLI that created the thread.
    #[serde(default)]
    pub cli_version: String,
    /// Origin (`"cli"`, `"vscode"`, `"exec"`, `"appServer"`, `{"subAgent":..}`, ...), raw.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub source: Value,
    /// Git metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_info: Option<GitInfo>,
    /// User-facing title (`thread/name/set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Turns: only filled by `thread/resume`, `thread/fork` and `thread/read` with
    /// `includeTurns` (deprecated for paginated threads); empty elsewhere.
    #[serde(default)]
    pub turns: Vec<Turn>,
}

fn not_loaded() -> ThreadStatus {
    ThreadStatus::NotLoaded
}

/// Overrides shared by `thread/start`, `thread/resume` and `thread/fork`.
///
/// Every field is optional; unset fields come from `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadOverrides {
    /// Model slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Model provider id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_provider: Option<String>,
    /// Service tier id (as in `model/list` `serviceTiers`: Fast Mode is `"priority"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Approval policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<AskForApproval>,
    /// Who reviews approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_reviewer: Option<ApprovalsReviewer>,
    /// Sandbox mode: the **kebab-case string** form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<WireSandboxMode>,
    /// `config.toml` overrides (dotted keys to JSON values, e.g.
    /// `{"model_reasoning_effort": "high"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Map<String, Value>>,
    /// Replaces the built-in instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_instructions: Option<String>,
    /// Extra developer instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer_instructions: Option<String>,
}

/// Params of `thread/start` (all optional: `ThreadStartParams::default()` is valid).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadStartParams {
    /// Overrides of the configuration.
    #[serde(flatten)]
    pub overrides: ThreadOverrides,
    /// Keep the thread in memory only (no rollout file, cannot be resumed later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<bool>,
    /// Service name for analytics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Additional fields sent verbatim (for fields this crate does not type).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Response of `thread/start` (and of `thread/fork`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadStartResponse {
    /// The thread.
    pub thread: Thread,
    /// Effective model.
    #[serde(default)]
    pub model: String,
    /// Effective model provider.
    #[serde(default)]
    pub model_provider: String,
    /// Effective service tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Effective working directory.
    #[serde(default)]
    pub cwd: String,
    /// Effective approval policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<AskForApproval>,
    /// Effective approvals reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_reviewer: Option<ApprovalsReviewer>,
    /// Effective sandbox, as the **tagged object** form (even though the request took the
    /// kebab-case string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxPolicy>,
    /// Effective reasoning effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Instruction files loaded for the thread (AGENTS.md, ...).
    #[serde(default)]
    pub instruction_sources: Vec<String>,
}

/// Response of `thread/fork`: same shape as [`ThreadStartResponse`].
pub type ThreadForkResponse = ThreadStartResponse;

/// Params of `thread/resume`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadResumeParams {
    /// Thread to resume.
    pub thread_id: String,
    /// Overrides of the configuration.
    #[serde(flatten)]
    pub overrides: ThreadOverrides,
    /// Return the thread without its turns. Without it, resuming a paginated thread also
    /// emits a `deprecationNotice` ("Full-history hydration is deprecated").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_turns: Option<bool>,
    /// Additional fields sent verbatim (for fields this crate does not type).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ThreadResumeParams {
    /// Resume `thread_id` with the configured defaults.
    pub fn new(thread_id: impl Into<String>) -> Self {
        Self {
            thread_id: thread_id.into(),
            ..Self::default()
        }
    }
}

/// Response of `thread/resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadResumeResponse {
    /// Same fields as a `thread/start` response.
    #[serde(flatten)]
    pub session: ThreadStartResponse,
    /// Cursor for `thread/turns/list` (`sortDirection: "desc"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns_backwards_cursor: Option<String>,
    /// Cursor for `thread/items/list` (`sortDirection: "desc"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_backwards_cursor: Option<String>,
}

/// Params of `thread/fork`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadForkParams {
    /// Thread to fork.
    pub thread_id: String,
    /// Fork through this turn (inclusive); later turns are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_turn_id: Option<String>,
    /// Overrides of the configuration.
    #[serde(flatten)]
    pub overrides: ThreadOverrides,
    /// Make the fork ephemeral.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<bool>,
    /// Return the fork without its turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_turns: Option<bool>,
    /// Additional fields sent verbatim (for fields this crate does not type).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ThreadForkParams {
    /// Fork `thread_id` whole.
    pub fn new(thread_id: impl Into<String>) -> Self {
        Self {
            thread_id: thread_id.into(),
            ..Self::default()
        }
    }
}

/// Params of `thread/list` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadListParams {
    /// Page cursor (`nextCursor` of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `"created_at"`, `"updated_at"`, `"recency_at"` or `"section_position"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<String>,
    /// `"asc"` or `"desc"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_direction: Option<String>,
    /// Only threads of these providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_providers: Option<Vec<String>>,
    /// Only threads of these source kinds (`"cli"`, `"exec"`, `"appServer"`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kinds: Option<Vec<String>>,
    /// List archived threads instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
    /// Only threads of this cwd: a string or an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Value>,
    /// Full-text filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_term: Option<String>,
    /// Only these threads (at most 100 ids, repeated on every page; an empty list matches
    /// nothing; an id that is not a UUID is answered with -32602). Codex 0.171.0 and later;
    /// older codex accepts and ignores unknown fields, so there it filters nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_thread_ids: Option<Vec<String>>,
    /// Additional fields sent verbatim (for fields this crate does not type).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Response of `thread/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadListResponse {
    /// Threads of this page (their `turns` are empty).
    #[serde(default)]
    pub data: Vec<Thread>,
    /// Cursor of the next page, `None` at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Cursor for paging backwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backwards_cursor: Option<String>,
}

/// Params of `thread/read`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadReadParams {
    /// Thread to read.
    pub thread_id: String,
    /// Include the turns (deprecated for paginated threads: emits a `deprecationNotice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_turns: Option<bool>,
}

impl ThreadReadParams {
    /// Read `thread_id` without its turns.
    pub fn new(thread_id: impl Into<String>) -> Self {
        Self {
            thread_id: thread_id.into(),
            include_turns: None,
        }
    }
}

/// Response of `thread/read` and `thread/unarchive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadReadResponse {
    /// The thread.
    pub thread: Thread,
}

/// Response of `thread/unarchive`: `{thread}`.
pub type ThreadUnarchiveResponse = ThreadReadResponse;

macro_rules! thread_id_params {
    ($( $(#[$meta:meta])* $name:ident, )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct $name {
            /// The thread.
            pub thread_id: String,
        }

        impl $name {
            /// Params for `thread_id`.
            pub fn new(thread_id: impl Into<String>) -> Self {
                Self { thread_id: thread_id.into() }
            }
        }
    )*};
}

thread_id_params! {
    /// Params of `thread/archive` (answers `{}`, then notifies `thread/archived`).
    ThreadArchiveParams,
    /// Params of `thread/unarchive` (answers `{thread}`, notifies `thread/unarchived`).
    ThreadUnarchiveParams,
    /// Params of `thread/compact/start` (answers `{}` at once; the compaction runs as a turn
    /// with a `contextCompaction` item, ending with `turn/completed`).
    ThreadCompactStartParams,
}

/// Params of `thread/name/set` (answers `{}`, then notifies `thread/name/updated`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadSetNameParams {
    /// The thread.
    pub thread_id: String,
    /// New name.
    pub name: String,
}

impl ThreadSetNameParams {
    /// Name `thread_id`.
    pub fn new(thread_id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            thread_id: thread_id.into(),
            name: name.into(),
        }
    }
}

/// Params of `turn/start`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TurnStartParams {
    /// The thread.
    pub thread_id: String,
    /// The user's input.
    pub input: Vec<UserInput>,
    /// Working directory for this and later turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Approval policy for this and later turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<AskForApproval>,
    /// Approvals reviewer for this and later turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_reviewer: Option<ApprovalsReviewer>,
    /// Sandbox for this and later turns: the **tagged object** form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_policy: Option<SandboxPolicy>,
    /// Model for this and later turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Service tier for this and later turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Reasoning effort for this and later turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<ReasoningEffort>,
    /// Reasoning summary mode for this and later turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ReasoningSummary>,
    /// JSON Schema constraining the final assistant message of this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Client-side id of the user message (echoed as the item's `clientId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_user_message_id: Option<String>,
    /// Additional fields sent verbatim (for fields this crate does not type).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TurnStartParams {
    /// A turn on `thread_id` with `input` and no overrides.
    pub fn new(thread_id: impl Into<String>, input: Vec<UserInput>) -> Self {
        Self {
            thread_id: thread_id.into(),
            input,
            ..Self::default()
        }
    }

    /// A turn on `thread_id` with one text input.
    pub fn text(thread_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self::new(thread_id, vec![UserInput::text(text)])
    }
}

/// Response of `turn/start` (the turn is `inProgress`; it may arrive after `turn/started`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TurnStartResponse {
    /// The new turn.
    pub turn: Turn,
}

/// Params of `turn/steer`: add input to the running turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TurnSteerParams {
    /// The thread.
    pub thread_id: String,
    /// Additional input.
    pub input: Vec<UserInput>,
    /// The turn expected to be running (the request fails otherwise, with -32600 "no
    /// active turn to steer" when none runs).
    pub expected_turn_id: String,
    /// Client-side id of the user message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_user_message_id: Option<String>,
}

impl TurnSteerParams {
    /// Steer `expected_turn_id` of `thread_id` with `input`.
    pub fn new(
        thread_id: impl Into<String>,
        expected_turn_id: impl Into<String>,
        input: Vec<UserInput>,
    ) -> Self {
        Self {
            thread_id: thread_id.into(),
            input,
            expected_turn_id: expected_turn_id.into(),
            client_user_message_id: None,
        }
    }
}

/// Response of `turn/steer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TurnSteerResponse {
    /// The steered turn.
    pub turn_id: String,
}

/// Params of `turn/interrupt` (answers `{}`; `turn/completed` with status `interrupted`
/// follows within milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TurnInterruptParams {
    /// The thread.
    pub thread_id: String,
    /// The turn to interrupt.
    pub turn_id: String,
}

impl TurnInterruptParams {
    /// Interrupt `turn_id` of `thread_id`.
    pub fn new(thread_id: impl Into<String>, turn_id: impl Into<String>) -> Self {
        Self {
            thread_id: thread_id.into(),
            turn_id: turn_id.into(),
        }
    }
}

/// Payload of [`ReviewTarget::BaseBranch`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BaseBranchTarget {
    /// Branch to diff against.
    pub branch: String,
}

/// Payload of [`ReviewTarget::Commit`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommitTarget {
    /// Commit sha.
    pub sha: String,
    /// Label for UIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Payload of [`ReviewTarget::Custom`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CustomTarget {
    /// Free-form review instructions.
    pub instructions: String,
}

tagged_enum! {
    /// What `review/start` reviews.
    pub enum ReviewTarget (tag = "type") {
        unit {
            /// `{"type":"uncommittedChanges"}`: staged, unstaged and untracked changes.
            UncommittedChanges = "uncommittedChanges",
        }
        data {
            /// `{"type":"baseBranch","branch":..}`.
            BaseBranch(BaseBranchTarget) = "baseBranch",
            /// `{"type":"commit","sha":..,"title":..}`.
            Commit(CommitTarget) = "commit",
            /// `{"type":"custom","instructions":..}`.
            Custom(CustomTarget) = "custom",
        }
    }
}

/// Params of `review/start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReviewStartParams {
    /// Thread the review runs on (inline).
    pub thread_id: String,
    /// What to review.
    pub target: ReviewTarget,
    /// Only `"inline"` in 0.169.0 and 0.171.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

impl ReviewStartParams {
    /// Review `target` inline on `thread_id`.
    pub fn new(thread_id: impl Into<String>, target: ReviewTarget) -> Self {
        Self {
            thread_id: thread_id.into(),
            target,
            delivery: None,
        }
    }
}

/// Response of `review/start`.
///
/// Caution (seen with 0.169.0): the `turn.id` returned here is the id that `turn/completed`
/// later reports, but the `turn/started` notification of the review carries a *different*
/// id whose `rootTurnId` is this one. Route review turns by thread id or by `rootTurnId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReviewStartResponse {
    /// The review turn.
    pub turn: Turn,
    /// The thread the review runs on (the one given).
    pub review_thread_id: String,
}

/// Token counts of one breakdown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TokenUsageBreakdown {
    /// Total tokens.
    #[serde(default)]
    pub total_tokens: i64,
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: i64,
    /// Cached input tokens.
    #[serde(default)]
    pub cached_input_tokens: i64,
    /// Input tokens written to the cache.
    #[serde(default)]
    pub cache_write_input_tokens: i64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: i64,
    /// Reasoning output tokens.
    #[serde(default)]
    pub reasoning_output_tokens: i64,
}

/// Token usage of a thread (`thread/tokenUsage/updated`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreadTokenUsage {
    /// Cumulative usage of the thread.
    #[serde(default)]
    pub total: TokenUsageBreakdown,
    /// Usage of the last model response.
    #[serde(default)]
    pub last: TokenUsageBreakdown,
    /// Context window of the model, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_context_window: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thread_list_params_wire() {
        assert_eq!(
            serde_json::to_value(ThreadListParams::default()).unwrap(),
            json!({})
        );
        let params = ThreadListParams {
            limit: Some(5),
            included_thread_ids: Some(vec!["01a211d9-2b5a-7842-bdb1-21e6224ea1cf".into()]),
            ..ThreadListParams::default()
        };
        assert_eq!(
            serde_json::to_value(params).unwrap(),
            json!({"limit": 5, "includedThreadIds": ["01a211d9-2b5a-7842-bdb1-21e6224ea1cf"]})
        );
    }
}
