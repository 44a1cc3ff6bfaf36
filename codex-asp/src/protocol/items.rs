//! Thread items: the units of a turn's history (`item/started` → deltas → `item/completed`).
//!
//! [`ThreadItem`] is tagged on `type`. Items whose type this crate does not know become
//! [`ThreadItem::Unknown`] with the raw JSON kept. On the wire every item also carries
//! `startedAtMs` / `completedAtMs`; the item payload structs below do not model them (the
//! `item/started` and `item/completed` notifications repeat them at their top level).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{ReasoningEffort, UserInput};

string_enum! {
    /// Status of a `commandExecution` item (also used for `fileChange`: `PatchApplyStatus`
    /// has the same values).
    pub enum CommandExecutionStatus {
        /// `"inProgress"`.
        InProgress = "inProgress",
        /// `"completed"`.
        Completed = "completed",
        /// `"failed"`.
        Failed = "failed",
        /// `"declined"`: the approval was declined.
        Declined = "declined",
    }
}

#[allow(clippy::derivable_impls)] // the enum comes from `string_enum!`
impl Default for CommandExecutionStatus {
    fn default() -> Self {
        Self::InProgress
    }
}

/// Status of a `fileChange` item: same values as [`CommandExecutionStatus`].
pub type PatchApplyStatus = CommandExecutionStatus;

string_enum! {
    /// Status of tool-call items (`mcpToolCall`, `dynamicToolCall`, `collabAgentToolCall`).
    pub enum ToolCallStatus {
        /// `"inProgress"`.
        InProgress = "inProgress",
        /// `"completed"`.
        Completed = "completed",
        /// `"failed"`.
        Failed = "failed",
        /// `"interrupted"` (collab agent calls).
        Interrupted = "interrupted",
    }
}

#[allow(clippy::derivable_impls)] // the enum comes from `string_enum!`
impl Default for ToolCallStatus {
    fn default() -> Self {
        Self::InProgress
    }
}

/// A `userMessage` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserMessageItem {
    /// Item id.
    pub id: String,
    /// Client-supplied message id (`clientUserMessageId` of `turn/start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The inputs of the message.
    #[serde(default)]
    pub content: Vec<UserInput>,
}

/// An `agentMessage` item: assistant text. `text` is complete only in `item/completed`;
/// `item/agentMessage/delta` streams it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AgentMessageItem {
    /// Item id (the model's message id).
    pub id: String,
    /// Message text.
    #[serde(default)]
    pub text: String,
    /// `"commentary"`, `"partial_answer"` or `"final_answer"` when the model says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A `reasoning` item: summary parts (streamed by `item/reasoning/summaryTextDelta`) and
/// raw reasoning content (`item/reasoning/textDelta`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReasoningItem {
    /// Item id.
    pub id: String,
    /// Summary parts.
    #[serde(default)]
    pub summary: Vec<String>,
    /// Raw reasoning text parts.
    #[serde(default)]
    pub content: Vec<String>,
}

/// A `plan` item (plan-mode text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PlanItem {
    /// Item id.
    pub id: String,
    /// Plan text.
    #[serde(default)]
    pub text: String,
}

/// Payload of [`CommandAction::Read`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReadCommandAction {
    /// The command text.
    pub command: String,
    /// File name.
    #[serde(default)]
    pub name: String,
    /// File path.
    #[serde(default)]
    pub path: String,
}

/// Payload of [`CommandAction::ListFiles`], [`CommandAction::Search`] and
/// [`CommandAction::Unparsed`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GenericCommandAction {
    /// The command text.
    pub command: String,
    /// Path, when the action has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Search query (`search` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

tagged_enum! {
    /// Best-effort parse of what a shell command does.
    pub enum CommandAction (tag = "type") {
        unit {}
        data {
            /// `{"type":"read",...}`.
            Read(ReadCommandAction) = "read",
            /// `{"type":"listFiles",...}`.
            ListFiles(GenericCommandAction) = "listFiles",
            /// `{"type":"search",...}`.
            Search(GenericCommandAction) = "search",
            /// `{"type":"unknown","command":..}`: codex could not classify the command.
            Unparsed(GenericCommandAction) = "unknown",
        }
    }
}

/// A `commandExecution` item (a shell command run by the agent or the user).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CommandExecutionItem {
    /// Item id (the model's call id, e.g. `call-1`).
    pub id: String,
    /// The command line as run (codex wraps it: `/bin/bash -c 'touch x'`).
    #[serde(default)]
    pub command: String,
    /// Working directory.
    #[serde(default)]
    pub cwd: String,
    /// Status (`inProgress` in `item/started`).
    #[serde(default)]
    pub status: CommandExecutionStatus,
    /// Parsed actions of the command.
    #[serde(default)]
    pub command_actions: Vec<CommandAction>,
    /// Aggregated stdout+stderr (may stay `null`; `item/commandExecution/outputDelta`
    /// streams the output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregated_output: Option<String>,
    /// Exit code once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Duration in milliseconds once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// PTY process id, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_id: Option<String>,
    /// Who ran it: `"agent"`, `"userShell"`, `"unifiedExecStartup"`,
    /// `"unifiedExecInteraction"` (it can change between started and completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Payload of [`PatchChangeKind::Update`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpdateChangeKind {
    /// New path when the file is moved (snake_case on the wire: `move_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_path: Option<String>,
}

tagged_enum! {
    /// Kind of one file change.
    pub enum PatchChangeKind (tag = "type") {
        unit {
            /// `{"type":"add"}`.
            Add = "add",
            /// `{"type":"delete"}`.
            Delete = "delete",
        }
        data {
            /// `{"type":"update","move_path":..}`.
            Update(UpdateChangeKind) = "update",
        }
    }
}

/// One file of a `fileChange` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FileUpdateChange {
    /// Absolute path.
    pub path: String,
    /// Add / delete / update.
    pub kind: PatchChangeKind,
    /// The diff (for an added file: its content).
    #[serde(default)]
    pub diff: String,
}

/// A `fileChange` item (an `apply_patch`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FileChangeItem {
    /// Item id (the model's call id).
    pub id: String,
    /// The changes.
    #[serde(default)]
    pub changes: Vec<FileUpdateChange>,
    /// Status (`declined` when the approval was declined).
    #[serde(default)]
    pub status: PatchApplyStatus,
}

/// Error of an MCP tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct McpToolCallError {
    /// Error message.
    pub message: String,
}

/// An `mcpToolCall` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpToolCallItem {
    /// Item id.
    pub id: String,
    /// MCP server name.
    #[serde(default)]
    pub server: String,
    /// Tool name.
    #[serde(default)]
    pub tool: String,
    /// Status.
    #[serde(default)]
    pub status: ToolCallStatus,
    /// Tool arguments (any JSON).
    #[serde(default)]
    pub arguments: Value,
    /// MCP result (`{content:[..], structuredContent?, _meta?}`), kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Error, when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<McpToolCallError>,
    /// Duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The environment whose registration of the MCP server was called (codex 0.171.0 and
    /// later; `None` for a thread-wide server and from older codex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
}

/// A `dynamicToolCall` item (a client-provided tool; the call itself arrives as the server
/// request `item/tool/call`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DynamicToolCallItem {
    /// Item id.
    pub id: String,
    /// Tool name.
    #[serde(default)]
    pub tool: String,
    /// Tool namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Arguments.
    #[serde(default)]
    pub arguments: Value,
    /// Status.
    #[serde(default)]
    pub status: ToolCallStatus,
    /// Output content items, kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_items: Option<Vec<Value>>,
    /// Whether the tool succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// Duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

/// A `collabAgentToolCall` item (multi-agent tools: spawn, send, wait, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CollabAgentToolCallItem {
    /// Item id.
    pub id: String,
    /// The collab tool (`spawnAgent`, `sendInput`, `wait`, ...).
    #[serde(default)]
    pub tool: String,
    /// Status.
    #[serde(default)]
    pub status: ToolCallStatus,
    /// Thread that made the call.
    #[serde(default)]
    pub sender_thread_id: String,
    /// Threads that received it.
    #[serde(default)]
    pub receiver_thread_ids: Vec<String>,
    /// Prompt sent to the agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Model of spawned agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Reasoning effort of spawned agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Per-agent states, kept raw.
    #[serde(default)]
    pub agents_states: Value,
}

/// A `subAgentActivity` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SubAgentActivityItem {
    /// Item id.
    pub id: String,
    /// `"started"`, `"interacted"`, `"interrupted"` or `"completed"`.
    #[serde(default)]
    pub kind: String,
    /// Agent path.
    #[serde(default)]
    pub agent_path: String,
    /// The sub-agent's thread.
    #[serde(default)]
    pub agent_thread_id: String,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Reasoning effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
}

/// A `webSearch` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WebSearchItem {
    /// Item id.
    pub id: String,
    /// The query.
    #[serde(default)]
    pub query: String,
    /// The action (`{type:"search"|"openPage"|"findInPage"|"other",...}`), kept raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Value>,
}

/// An `imageView` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageViewItem {
    /// Item id.
    pub id: String,
    /// Viewed image path.
    #[serde(default)]
    pub path: String,
}

/// An `imageGeneration` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageGenerationItem {
    /// Item id.
    pub id: String,
    /// Status string.
    #[serde(default)]
    pub status: String,
    /// Prompt as revised by the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
    /// Where the image was saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_path: Option<String>,
}

/// A `sleep` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SleepItem {
    /// Item id.
    pub id: String,
    /// Sleep duration in milliseconds.
    #[serde(default)]
    pub duration_ms: i64,
}

/// An `enteredReviewMode` / `exitedReviewMode` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReviewModeItem {
    /// Item id.
    pub id: String,
    /// Review label (entered) or the review text (exited).
    #[serde(default)]
    pub review: String,
}

/// A `contextCompaction` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ContextCompactionItem {
    /// Item id.
    pub id: String,
}

/// A `hookPrompt` item (text injected by hooks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HookPromptItem {
    /// Item id.
    pub id: String,
    /// Fragments (`{hookRunId, text}`), kept raw.
    #[serde(default)]
    pub fragments: Vec<Value>,
}

/// A `functionCallOutput` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FunctionCallOutputItem {
    /// Item id.
    pub id: String,
    /// Function name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Output body: a string or a list of content items, kept raw.
    #[serde(default)]
    pub output: Value,
}

tagged_enum! {
    /// One item of a thread, tagged on `type` (the variants of codex 0.171.0's schema, the
    /// same as 0.169.0's).
    ///
    /// There is no `todoList` item in the app-server protocol: plans arrive as
    /// `turn/plan/updated` notifications (and `plan` items in plan mode).
    pub enum ThreadItem (tag = "type") {
        unit {}
        data {
            /// `userMessage`.
            UserMessage(UserMessageItem) = "userMessage",
            /// `hookPrompt`.
            HookPrompt(HookPromptItem) = "hookPrompt",
            /// `agentMessage`.
            AgentMessage(AgentMessageItem) = "agentMessage",
            /// `functionCallOutput`.
            FunctionCallOutput(FunctionCallOutputItem) = "functionCallOutput",
            /// `plan`.
            Plan(PlanItem) = "plan",
            /// `reasoning`.
            Reasoning(ReasoningItem) = "reasoning",
            /// `commandExecution`.
            CommandExecution(CommandExecutionItem) = "commandExecution",
            /// `fileChange`.
            FileChange(FileChangeItem) = "fileChange",
            /// `mcpToolCall`.
            McpToolCall(McpToolCallItem) = "mcpToolCall",
            /// `dynamicToolCall`.
            DynamicToolCall(DynamicToolCallItem) = "dynamicToolCall",
            /// `collabAgentToolCall`.
            CollabAgentToolCall(CollabAgentToolCallItem) = "collabAgentToolCall",
            /// `subAgentActivity`.
            SubAgentActivity(SubAgentActivityItem) = "subAgentActivity",
            /// `webSearch`.
            WebSearch(WebSearchItem) = "webSearch",
            /// `imageView`.
            ImageView(ImageViewItem) = "imageView",
            /// `sleep`.
            Sleep(SleepItem) = "sleep",
            /// `imageGeneration`.
            ImageGeneration(ImageGenerationItem) = "imageGeneration",
            /// `enteredReviewMode`.
            EnteredReviewMode(ReviewModeItem) = "enteredReviewMode",
            /// `exitedReviewMode`.
            ExitedReviewMode(ReviewModeItem) = "exitedReviewMode",
            /// `contextCompaction`.
            ContextCompaction(ContextCompactionItem) = "contextCompaction",
        }
    }
}

/// The tags of every typed [`ThreadItem`] variant.
pub const THREAD_ITEM_TYPES: &[&str] = &[
    "userMessage",
    "hookPrompt",
    "agentMessage",
    "functionCallOutput",
    "plan",
    "reasoning",
    "commandExecution",
    "fileChange",
    "mcpToolCall",
    "dynamicToolCall",
    "collabAgentToolCall",
    "subAgentActivity",
    "webSearch",
    "imageView",
    "sleep",
    "imageGeneration",
    "enteredReviewMode",
    "exitedReviewMode",
    "contextCompaction",
];

impl ThreadItem {
    /// The item id (every item has one; `None` only for an `Unknown` item without `id`).
    pub fn id(&self) -> Option<&str> {
        Some(match self {
            Self::UserMessage(i) => &i.id,
            Self::HookPrompt(i) => &i.id,
            Self::AgentMessage(i) => &i.id,
            Self::FunctionCallOutput(i) => &i.id,
            Self::Plan(i) => &i.id,
            Self::Reasoning(i) => &i.id,
            Self::CommandExecution(i) => &i.id,
            Self::FileChange(i) => &i.id,
            Self::McpToolCall(i) => &i.id,
            Self::DynamicToolCall(i) => &i.id,
            Self::CollabAgentToolCall(i) => &i.id,
            Self::SubAgentActivity(i) => &i.id,
            Self::WebSearch(i) => &i.id,
            Self::ImageView(i) => &i.id,
            Self::Sleep(i) => &i.id,
            Self::ImageGeneration(i) => &i.id,
            Self::EnteredReviewMode(i) => &i.id,
            Self::ExitedReviewMode(i) => &i.id,
            Self::ContextCompaction(i) => &i.id,
            Self::Unknown(v) => return v.get("id").and_then(Value::as_str),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_and_unknown_items() {
        let raw = json!({"type": "agentMessage", "id": "msg-1", "text": "Hi", "phase": null,
            "startedAtMs": 1, "completedAtMs": 2});
        let item: ThreadItem = serde_json::from_value(raw).unwrap();
        match &item {
            ThreadItem::AgentMessage(m) => assert_eq!(m.text, "Hi"),
            other => panic!("{other:?}"),
        }
        assert_eq!(item.id(), Some("msg-1"));
        assert_eq!(item.tag(), Some("agentMessage"));
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"type": "agentMessage", "id": "msg-1", "text": "Hi"})
        );

        let raw = json!({"type": "hologram", "id": "h-1", "depth": 3});
        let item: ThreadItem = serde_json::from_value(raw.clone()).unwrap();
        assert!(matches!(item, ThreadItem::Unknown(_)));
        assert_eq!(item.id(), Some("h-1"));
        assert_eq!(item.tag(), Some("hologram"));
        assert_eq!(serde_json::to_value(&item).unwrap(), raw);

        // A known type with a broken payload is an error, not Unknown.
        assert!(serde_json::from_value::<ThreadItem>(json!({"type": "reasoning"})).is_err());
    }

    #[test]
    fn mcp_tool_call_environment() {
        // `environmentId` arrived in codex 0.171.0; older codex leaves it out.
        let raw = json!({"type": "mcpToolCall", "id": "mcp-1", "server": "docs", "tool": "search",
            "status": "completed", "arguments": {"q": "x"}, "environmentId": "local"});
        let item: ThreadItem = serde_json::from_value(raw.clone()).unwrap();
        let ThreadItem::McpToolCall(call) = &item else {
            panic!("{item:?}")
        };
        assert_eq!(call.environment_id.as_deref(), Some("local"));
        assert_eq!(serde_json::to_value(&item).unwrap(), raw);
        let mut older = raw;
        older.as_object_mut().unwrap().remove("environmentId");
        let item: ThreadItem = serde_json::from_value(older).unwrap();
        assert!(matches!(item, ThreadItem::McpToolCall(ref c) if c.environment_id.is_none()));
    }

    #[test]
    fn file_change_kinds() {
        let raw = json!({"type": "fileChange", "id": "call-p", "status": "declined", "changes": [
            {"path": "/w/a", "kind": {"type": "add"}, "diff": "hi\n"},
            {"path": "/w/b", "kind": {"type": "update", "move_path": "/w/c"}, "diff": "@@"}]});
        let item: ThreadItem = serde_json::from_value(raw.clone()).unwrap();
        let ThreadItem::FileChange(fc) = &item else {
            panic!("{item:?}")
        };
        assert_eq!(fc.status, CommandExecutionStatus::Declined);
        assert_eq!(fc.changes[0].kind, PatchChangeKind::Add);
        assert_eq!(serde_json::to_value(&item).unwrap(), raw);
    }
}
