//! Server-to-client notifications.
//!
//! [`ServerNotification::from_parts`] turns a `(method, params)` pair into a typed variant,
//! or into [`ServerNotification::Raw`] (for the ~55 methods this crate does not type, and for
//! a typed method whose params did not parse, with the reason in `parse_error`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::items::ThreadItem;
use super::session::RateLimitSnapshot;
use super::thread::{Thread, ThreadStatus, ThreadTokenUsage, Turn, TurnError};
use crate::jsonrpc::RequestId;

/// A notification params type, with its method name.
pub trait Notification: Serialize + serde::de::DeserializeOwned + Send {
    /// The JSON-RPC method.
    const METHOD: &'static str;

    /// The thread this notification is about, if any.
    fn thread_id(&self) -> Option<&str> {
        None
    }

    /// The turn this notification is about, if any.
    fn turn_id(&self) -> Option<&str> {
        None
    }
}

/// Declares a notification params struct.
macro_rules! notification_struct {
    (
        $(#[$meta:meta])*
        $name:ident = $method:literal,
        thread: $thread:tt, turn: $turn:tt,
        { $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[non_exhaustive]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Notification for $name {
            const METHOD: &'static str = $method;
            notification_struct!(@thread $thread);
            notification_struct!(@turn $turn);
        }
    };
    (@thread none) => {};
    (@thread thread_id) => {
        fn thread_id(&self) -> Option<&str> { Some(&self.thread_id) }
    };
    (@thread opt_thread_id) => {
        fn thread_id(&self) -> Option<&str> { self.thread_id.as_deref() }
    };
    (@thread thread) => {
        fn thread_id(&self) -> Option<&str> { Some(&self.thread.id) }
    };
    (@turn none) => {};
    (@turn turn_id) => {
        fn turn_id(&self) -> Option<&str> { Some(&self.turn_id) }
    };
    (@turn turn) => {
        fn turn_id(&self) -> Option<&str> { Some(&self.turn.id) }
    };
}

notification_struct! {
    /// `error`: an error during a turn. **Not terminal by itself** when `willRetry` is true
    /// (codex retries; "Reconnecting... 1/5"); a failed turn still ends with
    /// `turn/completed` (status `failed`).
    ErrorNotification = "error", thread: thread_id, turn: turn_id, {
        /// The error.
        error: TurnError,
        /// Whether codex retries by itself.
        #[serde(default)]
        will_retry: bool,
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
    }
}

notification_struct! {
    /// `thread/started`: a thread was created (also for forks and sub-agents). Sent *after*
    /// the `thread/start` response.
    ThreadStartedNotification = "thread/started", thread: thread, turn: none, {
        /// The thread.
        thread: Thread,
    }
}

notification_struct! {
    /// `thread/status/changed`.
    ThreadStatusChangedNotification = "thread/status/changed", thread: thread_id, turn: none, {
        /// Thread.
        thread_id: String,
        /// New status.
        status: ThreadStatus,
    }
}

notification_struct! {
    /// `thread/tokenUsage/updated`: after each model response.
    ThreadTokenUsageUpdatedNotification = "thread/tokenUsage/updated", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn (after `thread/fork`: a turn of the source thread).
        turn_id: String,
        /// Usage.
        token_usage: ThreadTokenUsage,
    }
}

notification_struct! {
    /// `thread/name/updated`: after `thread/name/set`.
    ThreadNameUpdatedNotification = "thread/name/updated", thread: thread_id, turn: none, {
        /// Thread.
        thread_id: String,
        /// New name (`None` when cleared).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_name: Option<String>,
    }
}

notification_struct! {
    /// `thread/archived`.
    ThreadArchivedNotification = "thread/archived", thread: thread_id, turn: none, {
        /// Thread.
        thread_id: String,
    }
}

notification_struct! {
    /// `thread/unarchived`.
    ThreadUnarchivedNotification = "thread/unarchived", thread: thread_id, turn: none, {
        /// Thread.
        thread_id: String,
    }
}

notification_struct! {
    /// `thread/closed`: the thread was unloaded.
    ThreadClosedNotification = "thread/closed", thread: thread_id, turn: none, {
        /// Thread.
        thread_id: String,
    }
}

notification_struct! {
    /// `thread/compacted`: the context was compacted.
    ContextCompactedNotification = "thread/compacted", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
    }
}

notification_struct! {
    /// `turn/started`. It can arrive before the `turn/start` response.
    TurnStartedNotification = "turn/started", thread: thread_id, turn: turn, {
        /// Thread.
        thread_id: String,
        /// The turn (`inProgress`, no items).
        turn: Turn,
    }
}

notification_struct! {
    /// `turn/completed`: the end of every turn, whatever its status
    /// (`completed` | `interrupted` | `failed`, with `turn.error`).
    TurnCompletedNotification = "turn/completed", thread: thread_id, turn: turn, {
        /// Thread.
        thread_id: String,
        /// The finished turn.
        turn: Turn,
    }
}

notification_struct! {
    /// `turn/diff/updated`: the aggregated unified diff of the turn so far.
    TurnDiffUpdatedNotification = "turn/diff/updated", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
        /// Unified diff.
        diff: String,
    }
}

string_enum! {
    /// Status of a plan step.
    pub enum TurnPlanStepStatus {
        /// `"pending"`.
        Pending = "pending",
        /// `"inProgress"`.
        InProgress = "inProgress",
        /// `"completed"`.
        Completed = "completed",
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TurnPlanStep {
    /// Step text.
    pub step: String,
    /// Status.
    pub status: TurnPlanStepStatus,
}

notification_struct! {
    /// `turn/plan/updated`: the agent's to-do list (the app-server's counterpart of
    /// `codex exec`'s `todo_list` item).
    TurnPlanUpdatedNotification = "turn/plan/updated", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
        /// Explanation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explanation: Option<String>,
        /// The whole plan.
        #[serde(default)]
        plan: Vec<TurnPlanStep>,
    }
}

notification_struct! {
    /// `item/started`: an item begins (its content is partial).
    ItemStartedNotification = "item/started", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
        /// The item.
        item: ThreadItem,
        /// Unix milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at_ms: Option<i64>,
    }
}

notification_struct! {
    /// `item/completed`: an item ends; this version of the item is authoritative.
    ItemCompletedNotification = "item/completed", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
        /// The item.
        item: ThreadItem,
        /// Unix milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        completed_at_ms: Option<i64>,
    }
}

/// Declares an item delta notification (`threadId`, `turnId`, `itemId`, `delta`, extras).
macro_rules! delta_notification {
    ($(#[$meta:meta])* $name:ident = $method:literal { $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )* }) => {
        notification_struct! {
            $(#[$meta])*
            $name = $method, thread: thread_id, turn: turn_id, {
                /// Thread.
                thread_id: String,
                /// Turn.
                turn_id: String,
                /// Item.
                item_id: String,
                /// Appended text.
                delta: String,
                $( $(#[$fmeta])* $field: $ty, )*
            }
        }
    };
}

delta_notification! {
    /// `item/agentMessage/delta`: streamed assistant text.
    AgentMessageDeltaNotification = "item/agentMessage/delta" {}
}

delta_notification! {
    /// `item/plan/delta`: streamed plan text.
    PlanDeltaNotification = "item/plan/delta" {}
}

delta_notification! {
    /// `item/reasoning/summaryTextDelta`: streamed reasoning summary.
    ReasoningSummaryTextDeltaNotification = "item/reasoning/summaryTextDelta" {
        /// Index of the summary part.
        #[serde(default)]
        summary_index: i64,
    }
}

delta_notification! {
    /// `item/reasoning/textDelta`: streamed raw reasoning.
    ReasoningTextDeltaNotification = "item/reasoning/textDelta" {
        /// Index of the content part.
        #[serde(default)]
        content_index: i64,
    }
}

delta_notification! {
    /// `item/commandExecution/outputDelta`: streamed command output.
    CommandExecutionOutputDeltaNotification = "item/commandExecution/outputDelta" {}
}

delta_notification! {
    /// `item/fileChange/outputDelta`: streamed patch tool output.
    FileChangeOutputDeltaNotification = "item/fileChange/outputDelta" {}
}

notification_struct! {
    /// `item/reasoning/summaryPartAdded`: a new summary part begins.
    ReasoningSummaryPartAddedNotification = "item/reasoning/summaryPartAdded", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
        /// Item.
        item_id: String,
        /// Index of the new part.
        #[serde(default)]
        summary_index: i64,
    }
}

notification_struct! {
    /// `item/mcpToolCall/progress`.
    McpToolCallProgressNotification = "item/mcpToolCall/progress", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
        /// Item.
        item_id: String,
        /// Progress message.
        message: String,
    }
}

notification_struct! {
    /// `serverRequest/resolved`: a server-to-client request was answered (by this client,
    /// another client, or because the turn ended).
    ServerRequestResolvedNotification = "serverRequest/resolved", thread: thread_id, turn: none, {
        /// Thread.
        thread_id: String,
        /// Id of the server request.
        request_id: RequestId,
    }
}

notification_struct! {
    /// `warning`.
    WarningNotification = "warning", thread: opt_thread_id, turn: none, {
        /// Message.
        message: String,
        /// Thread, when thread-specific.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
    }
}

notification_struct! {
    /// `configWarning`: a problem with the configuration or the environment (seen: "Codex
    /// could not find bubblewrap on PATH ...").
    ConfigWarningNotification = "configWarning", thread: none, turn: none, {
        /// Summary.
        summary: String,
        /// Details.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<String>,
        /// Config file concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// Text range in that file, raw.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<Value>,
    }
}

notification_struct! {
    /// `deprecationNotice` (seen after `thread/read` with `includeTurns` and `thread/resume`
    /// without `excludeTurns`).
    DeprecationNoticeNotification = "deprecationNotice", thread: none, turn: none, {
        /// Summary.
        summary: String,
        /// Details.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<String>,
    }
}

string_enum! {
    /// Why `account/updated` was sent, when codex says (codex 0.171.0 and later).
    pub enum AccountUpdateReason {
        /// `"workspaceRoutingReady"`: the initial routing discovery completed for the same
        /// signed-in owner.
        WorkspaceRoutingReady = "workspaceRoutingReady",
        /// `"unknown"`.
        Unknown = "unknown",
    }
}

notification_struct! {
    /// `account/updated`: the auth mode changed (login, logout).
    AccountUpdatedNotification = "account/updated", thread: none, turn: none, {
        /// `"apikey"` (lowercase k!), `"chatgpt"`, ... or `None` when signed out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth_mode: Option<String>,
        /// Plan type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan_type: Option<String>,
        /// Why the update was sent (0.171.0 and later; `None` from older codex and for a
        /// plain login or logout).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<AccountUpdateReason>,
    }
}

notification_struct! {
    /// `account/rateLimits/updated`: sent after every model response, even offline.
    AccountRateLimitsUpdatedNotification = "account/rateLimits/updated", thread: none, turn: none, {
        /// The snapshot.
        rate_limits: RateLimitSnapshot,
    }
}

notification_struct! {
    /// `account/login/completed`.
    AccountLoginCompletedNotification = "account/login/completed", thread: none, turn: none, {
        /// Login id (`None` for API-key logins).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login_id: Option<String>,
        /// Whether the login succeeded.
        success: bool,
        /// Error message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
}

notification_struct! {
    /// `model/rerouted`: codex switched model mid-turn.
    ModelReroutedNotification = "model/rerouted", thread: thread_id, turn: turn_id, {
        /// Thread.
        thread_id: String,
        /// Turn.
        turn_id: String,
        /// Previous model.
        from_model: String,
        /// New model.
        to_model: String,
        /// Reason (raw).
        #[serde(default)]
        reason: Value,
    }
}

macro_rules! server_notifications {
    ($( $(#[$vmeta:meta])* $variant:ident($ty:ty), )*) => {
        /// A server-to-client notification.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum ServerNotification {
            $( $(#[$vmeta])* $variant($ty), )*
            /// Any other notification, or a typed one whose params did not parse.
            Raw {
                /// The method.
                method: String,
                /// The params as received (`Value::Null` when absent).
                params: Value,
                /// Why a typed method fell back to `Raw` (`None` for untyped methods).
                parse_error: Option<String>,
            },
        }

        impl ServerNotification {
            /// The methods that have a typed variant.
            pub const TYPED_METHODS: &'static [&'static str] = &[ $( <$ty as Notification>::METHOD, )* ];

            /// Builds the notification from its method and params. Never fails: unknown
            /// methods and unparsable params give [`ServerNotification::Raw`].
            pub fn from_parts(method: &str, params: Value) -> Self {
                $(
                    if method == <$ty as Notification>::METHOD {
                        return match <$ty as Deserialize>::deserialize(&params) {
                            Ok(p) => Self::$variant(p),
                            Err(e) => Self::Raw {
                                method: method.to_owned(),
                                params,
                                parse_error: Some(e.to_string()),
                            },
                        };
                    }
                )*
                Self::Raw { method: method.to_owned(), params, parse_error: None }
            }

            /// [`ServerNotification::from_parts`] without taking the params: typed params are
            /// deserialized from the borrowed [`Value`]; only a `Raw` result clones it.
            pub fn from_parts_ref(method: &str, params: &Value) -> Self {
                $(
                    if method == <$ty as Notification>::METHOD {
                        return match <$ty as Deserialize>::deserialize(params) {
                            Ok(p) => Self::$variant(p),
                            Err(e) => Self::Raw {
                                method: method.to_owned(),
                                params: params.clone(),
                                parse_error: Some(e.to_string()),
                            },
                        };
                    }
                )*
                Self::Raw { method: method.to_owned(), params: params.clone(), parse_error: None }
            }

            /// Decodes one notification message, `{"method": .., "params": ..}`, from its JSON
            /// text: the same result as `serde_json::from_str::<ServerNotification>(text)`
            /// (which goes through a [`Value`] and [`ServerNotification::from_parts`]), faster.
            ///
            /// One pass: the method is read (borrowed), then the params of a typed method are
            /// deserialized straight from the text into their type, without building a
            /// [`Value`] (those of an untyped method into the `Raw` variant's [`Value`]). A
            /// message this pass does not take whole (params before the method, a duplicate
            /// member, params that do not parse, anything malformed) is decoded again by the
            /// [`Value`] path, so `Raw` variants and errors are exactly those of the
            /// [`Deserialize`] implementation. One exception: a member of typed params that
            /// the type does not read is skipped, not checked, so text that is not strictly
            /// valid JSON only there (a number out of range such as `1e400`) still decodes
            /// here, where the [`Value`] path refuses it.
            ///
            /// ```
            /// use codex_asp::protocol::ServerNotification;
            /// let text = r#"{"method":"item/agentMessage/delta","params":{"threadId":"t","turnId":"u","itemId":"i","delta":"Hel"}}"#;
            /// let n = ServerNotification::from_json(text)?;
            /// assert!(matches!(n, ServerNotification::AgentMessageDelta(ref d) if d.delta == "Hel"));
            /// assert_eq!(n, serde_json::from_str::<ServerNotification>(text)?);
            /// # Ok::<(), serde_json::Error>(())
            /// ```
            ///
            /// # Errors
            /// When the text is not a JSON object with a string `method` (as the
            /// [`Deserialize`] implementation).
            pub fn from_json(text: &str) -> serde_json::Result<Self> {
                // members the single pass skips are not depth-checked; the Value path
                // refuses 128 levels: leave deep text to it
                if fast::nests_deeper_than(text, 100) {
                    return serde_json::from_str(text);
                }
                match serde_json::from_str::<fast::Envelope>(text) {
                    Ok(fast::Envelope(n)) => Ok(n),
                    Err(_) => serde_json::from_str(text),
                }
            }

            /// The notification of `method` whose params `deserializer` holds: the typed
            /// variant, or `Raw` with the params as a [`Value`] for untyped methods. Fails
            /// when typed params do not parse.
            fn params_from<'de, D: serde::Deserializer<'de>>(
                method: &str,
                deserializer: D,
            ) -> Result<Self, D::Error> {
                $(
                    if method == <$ty as Notification>::METHOD {
                        return <$ty as Deserialize>::deserialize(deserializer).map(Self::$variant);
                    }
                )*
                Value::deserialize(deserializer).map(|params| Self::Raw {
                    method: method.to_owned(),
                    params,
                    parse_error: None,
                })
            }

            /// The JSON-RPC method.
            pub fn method(&self) -> &str {
                match self {
                    $( Self::$variant(_) => <$ty as Notification>::METHOD, )*
                    Self::Raw { method, .. } => method,
                }
            }

            /// The params as JSON.
            pub fn params(&self) -> Value {
                match self {
                    $( Self::$variant(p) => serde_json::to_value(p).unwrap_or(Value::Null), )*
                    Self::Raw { params, .. } => params.clone(),
                }
            }

            /// The thread this notification is about (typed variants: from their fields;
            /// `Raw`: `params.threadId`).
            pub fn thread_id(&self) -> Option<&str> {
                match self {
                    $( Self::$variant(p) => Notification::thread_id(p), )*
                    Self::Raw { params, .. } => params.get("threadId").and_then(Value::as_str),
                }
            }

            /// The turn this notification is about (typed variants: from their fields;
            /// `Raw`: `params.turnId`).
            pub fn turn_id(&self) -> Option<&str> {
                match self {
                    $( Self::$variant(p) => Notification::turn_id(p), )*
                    Self::Raw { params, .. } => params.get("turnId").and_then(Value::as_str),
                }
            }
        }
    };
}

server_notifications! {
    /// `error`.
    Error(ErrorNotification),
    /// `thread/started`.
    ThreadStarted(ThreadStartedNotification),
    /// `thread/status/changed`.
    ThreadStatusChanged(ThreadStatusChangedNotification),
    /// `thread/tokenUsage/updated`.
    ThreadTokenUsageUpdated(ThreadTokenUsageUpdatedNotification),
    /// `thread/name/updated`.
    ThreadNameUpdated(ThreadNameUpdatedNotification),
    /// `thread/archived`.
    ThreadArchived(ThreadArchivedNotification),
    /// `thread/unarchived`.
    ThreadUnarchived(ThreadUnarchivedNotification),
    /// `thread/closed`.
    ThreadClosed(ThreadClosedNotification),
    /// `thread/compacted`.
    ThreadCompacted(ContextCompactedNotification),
    /// `turn/started`.
    TurnStarted(TurnStartedNotification),
    /// `turn/completed`.
    TurnCompleted(TurnCompletedNotification),
    /// `turn/diff/updated`.
    TurnDiffUpdated(TurnDiffUpdatedNotification),
    /// `turn/plan/updated`.
    TurnPlanUpdated(TurnPlanUpdatedNotification),
    /// `item/started`.
    ItemStarted(ItemStartedNotification),
    /// `item/completed`.
    ItemCompleted(ItemCompletedNotification),
    /// `item/agentMessage/delta`.
    AgentMessageDelta(AgentMessageDeltaNotification),
    /// `item/plan/delta`.
    PlanDelta(PlanDeltaNotification),
    /// `item/reasoning/summaryTextDelta`.
    ReasoningSummaryTextDelta(ReasoningSummaryTextDeltaNotification),
    /// `item/reasoning/summaryPartAdded`.
    ReasoningSummaryPartAdded(ReasoningSummaryPartAddedNotification),
    /// `item/reasoning/textDelta`.
    ReasoningTextDelta(ReasoningTextDeltaNotification),
    /// `item/commandExecution/outputDelta`.
    CommandExecutionOutputDelta(CommandExecutionOutputDeltaNotification),
    /// `item/fileChange/outputDelta`.
    FileChangeOutputDelta(FileChangeOutputDeltaNotification),
    /// `item/mcpToolCall/progress`.
    McpToolCallProgress(McpToolCallProgressNotification),
    /// `serverRequest/resolved`.
    ServerRequestResolved(ServerRequestResolvedNotification),
    /// `warning`.
    Warning(WarningNotification),
    /// `configWarning`.
    ConfigWarning(ConfigWarningNotification),
    /// `deprecationNotice`.
    DeprecationNotice(DeprecationNoticeNotification),
    /// `account/updated`.
    AccountUpdated(AccountUpdatedNotification),
    /// `account/rateLimits/updated`.
    AccountRateLimitsUpdated(AccountRateLimitsUpdatedNotification),
    /// `account/login/completed`.
    AccountLoginCompleted(AccountLoginCompletedNotification),
    /// `model/rerouted`.
    ModelRerouted(ModelReroutedNotification),
}

impl ServerNotification {
    /// Whether this is a typed method whose params failed to parse.
    pub fn parse_error(&self) -> Option<&str> {
        match self {
            Self::Raw { parse_error, .. } => parse_error.as_deref(),
            _ => None,
        }
    }
}

/// The single pass of [`ServerNotification::from_json`].
mod fast {
    use std::borrow::Cow;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, DeserializeSeed, Deserializer, Error as _, MapAccess, Visitor};

    use super::ServerNotification;

    /// Whether arrays and objects nest more than `max` levels deep in `text` (brackets inside
    /// strings do not count).
    pub(super) fn nests_deeper_than(text: &str, max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for b in text.bytes() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }

    /// A member the envelope does not use, read as strictly as the `Value` path reads it
    /// (number ranges, escapes, nesting limit) and dropped; `IgnoredAny` would accept `1e400`.
    struct Strict;

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct StrictVisitor;
            impl<'de> Visitor<'de> for StrictVisitor {
                type Value = Strict;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
                    Ok(Strict)
                }
                fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
                    Ok(Strict)
                }
                fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
                    Ok(Strict)
                }
                fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
                    Ok(Strict)
                }
                fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
                    Ok(Strict)
                }
                fn visit_unit<E>(self) -> Result<Strict, E> {
                    Ok(Strict)
                }
                fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                    while seq.next_element::<Strict>()?.is_some() {}
                    Ok(Strict)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                    while map.next_entry::<Strict, Strict>()?.is_some() {}
                    Ok(Strict)
                }
            }
            deserializer.deserialize_any(StrictVisitor)
        }
    }

    /// A notification read in one pass; fails (for the caller to take the `Value` path) on
    /// anything unusual.
    pub(super) struct Envelope(pub(super) ServerNotification);

    enum Key {
        Method,
        Params,
        Other,
    }

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl Visitor<'_> for KeyVisitor {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                    Ok(match v {
                        "method" => Key::Method,
                        "params" => Key::Params,
                        _ => Key::Other,
                    })
                }
            }
            deserializer.deserialize_identifier(KeyVisitor)
        }
    }

    /// A string, borrowed from the input when it has no escapes.
    struct Text<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Text<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct TextVisitor;
            impl<'de> Visitor<'de> for TextVisitor {
                type Value = Text<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v)))
                }
            }
            deserializer.deserialize_str(TextVisitor)
        }
    }

    struct Params<'m>(&'m str);

    impl<'de> DeserializeSeed<'de> for Params<'_> {
        type Value = ServerNotification;
        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            ServerNotification::params_from(self.0, deserializer)
        }
    }

    impl<'de> Deserialize<'de> for Envelope {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct EnvelopeVisitor;
            impl<'de> Visitor<'de> for EnvelopeVisitor {
                type Value = Envelope;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a notification object, method first")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
                    let mut method: Option<Cow<'de, str>> = None;
                    let mut out = None;
                    while let Some(key) = map.next_key::<Key>()? {
                        match key {
                            Key::Method if method.is_none() => {
                                method = Some(map.next_value::<Text<'de>>()?.0);
                            }
                            Key::Params if out.is_none() => {
                                let Some(m) = method.as_deref() else {
                                    return Err(A::Error::custom("params before the method"));
                                };
                                out = Some(map.next_value_seed(Params(m))?);
                            }
                            Key::Method | Key::Params => {
                                return Err(A::Error::custom("a duplicate member"));
                            }
                            Key::Other => {
                                map.next_value::<Strict>()?;
                            }
                        }
                    }
                    out.map(Envelope)
                        .ok_or_else(|| A::Error::custom("no params"))
                }
            }
            deserializer.deserialize_map(EnvelopeVisitor)
        }
    }
}

/// Serializes as the JSON-RPC notification object `{"method": .., "params": ..}`.
impl Serialize for ServerNotification {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let params = self.params();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("method", self.method())?;
        if !params.is_null() {
            map.serialize_entry("params", &params)?;
        }
        map.end()
    }
}

/// Deserializes from a JSON-RPC notification object `{"method": .., "params": ..}` (other
/// members such as `jsonrpc` are ignored) through [`ServerNotification::from_parts`].
impl<'de> Deserialize<'de> for ServerNotification {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Envelope {
            method: String,
            #[serde(default)]
            params: Value,
        }
        let env = Envelope::deserialize(deserializer)?;
        Ok(Self::from_parts(&env.method, env.params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The notifications of the recorded transcripts (`tests/fixtures/*.jsonl`).
    fn recorded_notifications() -> Vec<Value> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().extension().is_none_or(|e| e != "jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let msg = &v["msg"];
                if v["dir"] == "in" && msg.get("method").is_some() && msg.get("id").is_none() {
                    out.push(msg.clone());
                }
            }
        }
        out
    }

    fn assert_same(text: &str) {
        let fast = ServerNotification::from_json(text);
        let slow = serde_json::from_str::<ServerNotification>(text);
        if let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text)
            && let Some(Value::String(method)) = msg.get("method")
        {
            let params = msg.get("params").cloned().unwrap_or(Value::Null);
            assert_eq!(
                ServerNotification::from_parts_ref(method, &params),
                ServerNotification::from_parts(method, params.clone()),
                "{text}"
            );
        }
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(_), Err(_)) => {}
            _ => panic!("from_json {fast:?} but the Value path {slow:?} for {text}"),
        }
    }

    #[test]
    fn from_json_agrees_with_the_value_path() {
        let recorded = recorded_notifications();
        assert!(recorded.len() > 50, "{}", recorded.len());
        let typed = recorded
            .iter()
            .filter(|m| {
                ServerNotification::TYPED_METHODS.contains(&m["method"].as_str().unwrap_or(""))
            })
            .count();
        assert!(typed > 30, "{typed}");
        let replacements = [
            json!(null),
            json!([]),
            json!({}),
            json!(1),
            json!(-1),
            json!(1.5),
            json!("x"),
            json!(true),
        ];
        let mut checked = 0;
        for msg in &recorded {
            assert_same(&msg.to_string());
            let Value::Object(top) = msg else { continue };
            for key in top.keys() {
                for r in &replacements {
                    let mut m = top.clone();
                    m.insert(key.clone(), r.clone());
                    assert_same(&Value::Object(m).to_string());
                    checked += 1;
                }
            }
            let mut no_params = top.clone();
            no_params.remove("params");
            assert_same(&Value::Object(no_params).to_string());
            if let Some(Value::Object(params)) = top.get("params") {
                for key in params.keys() {
                    for r in &replacements {
                        let mut p = params.clone();
                        p.insert(key.clone(), r.clone());
                        let mut m = top.clone();
                        m.insert("params".into(), Value::Object(p));
                        assert_same(&Value::Object(m).to_string());
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
        for text in [
            "",
            "[]",
            r#"["turn/completed", {}]"#,
            r#"{"method": 1}"#,
            r#"{"params": {}}"#,
            r#"{"method":"error","method":"error","params":{}}"#,
            r#"{"method":"turn/started","params":{"threadId":"t","turn":{"id":"u","items":[],"status":"inProgress"}},"params":{}}"#,
            r#"{"method":"item/agentMessage/delta","params":{"threadId":"t","turnId":"u","itemId":"i","delta":"\u0048i"}} x"#,
            r#"{"method":"item/agentMessage/d\u0065lta","params":{"threadId":"t","turnId":"u","itemId":"i","delta":"x"}}"#,
            r#"{"jsonrpc":"2.0","params":{"threadId":"t","turnId":"u","itemId":"i","delta":"x"},"method":"item/agentMessage/delta"}"#,
        ] {
            assert_same(text);
        }
    }

    /// Found by `cargo xtask fuzz`: the single pass skipped an unknown member nested past
    /// serde_json's recursion limit and decoded what the Value path refuses.
    #[test]
    fn deeply_nested_unknown_members_decode_as_on_the_value_path() {
        for depth in [99, 100, 101, 127, 128, 200, 100_000] {
            let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            for text in [
                format!(
                    r#"{{"method":"item/agentMessage/delta","params":{{"threadId":"t","turnId":"u","itemId":"i","delta":"x","extra":{deep}}}}}"#
                ),
                format!(
                    r#"{{"method":"item/agentMessage/delta","params":{{"threadId":"t","turnId":"u","itemId":"i","delta":"x"}},"extra":{deep}}}"#
                ),
                format!(r#"{{"method":"thread/realtime/x","params":{{"a":{deep}}}}}"#),
            ] {
                assert_same(&text);
            }
        }
        // brackets inside strings are not nesting
        let text = format!(
            r#"{{"method":"item/agentMessage/delta","params":{{"threadId":"t","turnId":"u","itemId":"i","delta":"{}\"{}"}}}}"#,
            "[".repeat(200),
            "{".repeat(200)
        );
        assert!(ServerNotification::from_json(&text).is_ok());
        assert_same(&text);
    }

    #[test]
    fn typed_raw_and_broken() {
        let n = ServerNotification::from_parts(
            "item/agentMessage/delta",
            json!({"threadId": "t", "turnId": "u", "itemId": "i", "delta": "He"}),
        );
        assert!(matches!(n, ServerNotification::AgentMessageDelta(ref d) if d.delta == "He"));
        assert_eq!(n.method(), "item/agentMessage/delta");
        assert_eq!((n.thread_id(), n.turn_id()), (Some("t"), Some("u")));

        let n = ServerNotification::from_parts(
            "thread/realtime/sdp",
            json!({"threadId": "t", "turnId": "x"}),
        );
        assert!(matches!(
            n,
            ServerNotification::Raw {
                parse_error: None,
                ..
            }
        ));
        assert_eq!((n.thread_id(), n.turn_id()), (Some("t"), Some("x")));

        let n = ServerNotification::from_parts("turn/completed", json!({"threadId": "t"}));
        assert_eq!(n.method(), "turn/completed");
        assert!(n.parse_error().unwrap().contains("turn"));
        assert_eq!(n.thread_id(), Some("t"));
    }

    #[test]
    fn account_updated_reason() {
        // codex 0.171.0 adds `reason`; older codex sends none; a later value is kept.
        for (params, reason) in [
            (
                json!({"authMode": "chatgpt", "planType": "plus", "reason": "workspaceRoutingReady"}),
                Some(AccountUpdateReason::WorkspaceRoutingReady),
            ),
            (json!({"authMode": null, "planType": null}), None),
            (
                json!({"authMode": "apikey", "reason": "somethingNew"}),
                Some(AccountUpdateReason::Other("somethingNew".into())),
            ),
        ] {
            let n = ServerNotification::from_parts("account/updated", params.clone());
            let ServerNotification::AccountUpdated(u) = &n else {
                panic!("{n:?}")
            };
            assert_eq!(u.reason, reason, "{params}");
        }
        assert_eq!(
            serde_json::to_value(AccountUpdateReason::Unknown).unwrap(),
            json!("unknown")
        );
    }

    #[test]
    fn turn_routing() {
        let n = ServerNotification::from_parts(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "status": "interrupted", "items": [], "error": null}}),
        );
        let ServerNotification::TurnCompleted(c) = &n else {
            panic!("{n:?}")
        };
        assert!(c.turn.status.is_terminal());
        assert_eq!(n.turn_id(), Some("u"));
        let back: ServerNotification =
            serde_json::from_value(serde_json::to_value(&n).unwrap()).unwrap();
        assert_eq!(back, n);
    }
}
