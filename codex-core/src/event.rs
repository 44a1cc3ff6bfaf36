//! The unified event model: what a running turn reports, whichever backend runs it.
//!
//! Both backends decode into these types: `codex exec --json` lines (`thread.started`,
//! `item.completed`, ...) and app-server notifications (`thread/started`, `item/completed`,
//! ...). Shapes this version does not know are kept whole in `Unknown` variants, so a newer
//! codex never breaks a caller.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }
    };
}

id_type!(
    /// A conversation (thread) id. Threads persist and can be resumed unless ephemeral.
    ThreadId
);
id_type!(
    /// A turn id, as reported by the app-server. `codex exec` reports none.
    TurnId
);

/// Token usage of a turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Of which served from cache.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Of which reasoning.
    pub reasoning_output_tokens: u64,
}

impl Usage {
    /// Builds a usage record.
    pub fn new(input: u64, cached_input: u64, output: u64, reasoning_output: u64) -> Self {
        Usage {
            input_tokens: input,
            cached_input_tokens: cached_input,
            output_tokens: output,
            reasoning_output_tokens: reasoning_output,
        }
    }
}

/// Progress of an item that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ItemStatus {
    /// Still running.
    InProgress,
    /// Done.
    Completed,
    /// Failed.
    Failed,
    /// Refused by the approval policy or by a human.
    Declined,
}

/// How a file was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileChangeKind {
    /// Created.
    Add,
    /// Removed.
    Delete,
    /// Modified (or moved).
    Update,
}

/// One changed file of a [`ItemDetails::FileChange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileUpdate {
    /// The file.
    pub path: PathBuf,
    /// What happened to it.
    pub kind: FileChangeKind,
}

impl FileUpdate {
    /// Builds a file update.
    pub fn new(path: impl Into<PathBuf>, kind: FileChangeKind) -> Self {
        FileUpdate {
            path: path.into(),
            kind,
        }
    }
}

/// One entry of a to-do list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TodoEntry {
    /// The step.
    pub text: String,
    /// Whether it is done.
    pub completed: bool,
}

impl TodoEntry {
    /// Builds an entry.
    pub fn new(text: impl Into<String>, completed: bool) -> Self {
        TodoEntry {
            text: text.into(),
            completed,
        }
    }
}

/// A unit of work inside a turn: a message, a command, a file change...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Item {
    /// The item id (unique within its thread).
    pub id: String,
    /// What the item is.
    #[serde(flatten)]
    pub details: ItemDetails,
}

impl Item {
    /// Builds an item.
    pub fn new(id: impl Into<String>, details: ItemDetails) -> Self {
        Item {
            id: id.into(),
            details,
        }
    }
}

/// The kinds of [`Item`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ItemDetails {
    /// The user's input, as recorded in the thread.
    UserMessage {
        /// The text.
        text: String,
    },
    /// A message from the agent. The last one of a turn is its final answer.
    AgentMessage {
        /// The text (complete on `ItemCompleted`; may be partial before).
        text: String,
    },
    /// Reasoning summary.
    Reasoning {
        /// The text.
        text: String,
    },
    /// A shell command.
    CommandExecution {
        /// The command line.
        command: String,
        /// Combined stdout and stderr.
        aggregated_output: String,
        /// Exit code, once finished.
        exit_code: Option<i32>,
        /// Progress.
        status: ItemStatus,
    },
    /// Files changed by a patch.
    FileChange {
        /// The files.
        changes: Vec<FileUpdate>,
        /// Progress.
        status: ItemStatus,
    },
    /// A call to an MCP tool.
    McpToolCall {
        /// The MCP server.
        server: String,
        /// The tool.
        tool: String,
        /// Arguments, when reported.
        arguments: Option<serde_json::Value>,
        /// Result, when reported.
        result: Option<serde_json::Value>,
        /// Error message, when it failed.
        error: Option<String>,
        /// Progress.
        status: ItemStatus,
    },
    /// A web search.
    WebSearch {
        /// The query.
        query: String,
    },
    /// The agent's plan.
    TodoList {
        /// The steps.
        items: Vec<TodoEntry>,
    },
    /// A non-fatal error reported as an item.
    Error {
        /// The message.
        message: String,
    },
    /// An item type this version does not model; `raw` is the item as codex sent it.
    Unknown {
        /// Codex's item type name.
        kind: String,
        /// The whole item.
        raw: serde_json::Value,
    },
}

impl ItemDetails {
    /// A short name of the kind, for logs (`agent_message`, `command_execution`...).
    pub fn kind_name(&self) -> &str {
        match self {
            ItemDetails::UserMessage { .. } => "user_message",
            ItemDetails::AgentMessage { .. } => "agent_message",
            ItemDetails::Reasoning { .. } => "reasoning",
            ItemDetails::CommandExecution { .. } => "command_execution",
            ItemDetails::FileChange { .. } => "file_change",
            ItemDetails::McpToolCall { .. } => "mcp_tool_call",
            ItemDetails::WebSearch { .. } => "web_search",
            ItemDetails::TodoList { .. } => "todo_list",
            ItemDetails::Error { .. } => "error",
            ItemDetails::Unknown { kind, .. } => kind,
        }
    }
}

/// Which stream a delta belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeltaKind {
    /// Agent message text.
    AgentMessage,
    /// Reasoning summary text.
    Reasoning,
    /// Command output.
    CommandOutput,
    /// Patch output.
    FileChangeOutput,
}

/// What kind of failure ended a turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    /// Nothing more is known than codex's message.
    #[default]
    Other,
    /// The model provider rejected (or never got) the credentials: the outcome is
    /// [`crate::Error::AuthRejected`].
    Auth,
}

impl FailureKind {
    /// The kind told by codex's message alone ([`crate::auth::is_auth_rejection`]).
    pub fn of_message(message: &str) -> FailureKind {
        if crate::auth::is_auth_rejection(message) {
            FailureKind::Auth
        } else {
            FailureKind::Other
        }
    }

    /// Whether this is [`FailureKind::Other`].
    pub fn is_other(&self) -> bool {
        *self == FailureKind::Other
    }
}

/// Something that happened during a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The thread exists (first event of a run). On resume, the resumed thread's id.
    ThreadStarted {
        /// The thread.
        thread_id: ThreadId,
    },
    /// The turn began.
    TurnStarted {
        /// The turn id (app-server only).
        turn_id: Option<TurnId>,
    },
    /// An item began.
    ItemStarted {
        /// The item so far.
        item: Item,
    },
    /// An item changed (e.g. a to-do list was updated).
    ItemUpdated {
        /// The item so far.
        item: Item,
    },
    /// An item finished; this is the authoritative content.
    ItemCompleted {
        /// The item.
        item: Item,
    },
    /// Streaming text for an item (app-server only; `codex exec` sends no deltas).
    Delta {
        /// The item the text belongs to.
        item_id: String,
        /// Which stream.
        kind: DeltaKind,
        /// The new text.
        delta: String,
    },
    /// The turn ended successfully.
    TurnCompleted {
        /// The turn id (app-server only).
        turn_id: Option<TurnId>,
        /// Token usage, when reported.
        usage: Option<Usage>,
    },
    /// The turn ended in failure.
    TurnFailed {
        /// The turn id (app-server only).
        turn_id: Option<TurnId>,
        /// Codex's message.
        message: String,
        /// What kind of failure it was, as far as the backend can tell.
        #[serde(default, skip_serializing_if = "FailureKind::is_other")]
        kind: FailureKind,
    },
    /// The turn was interrupted (app-server `turn/interrupt`).
    TurnInterrupted {
        /// The turn id.
        turn_id: Option<TurnId>,
    },
    /// A non-terminal error (codex may retry and still succeed, e.g. "Reconnecting... 1/5").
    Error {
        /// The message.
        message: String,
    },
    /// Codex printed something that could not be decoded. The line is kept (truncated to a
    /// bounded length) with the reason; the turn goes on.
    Undecodable {
        /// The offending text (at most a few KiB).
        text: String,
        /// Why it could not be decoded.
        reason: String,
    },
    /// An event this version does not model; `raw` is the event as codex sent it.
    Unknown {
        /// Codex's event type or method name.
        kind: String,
        /// The whole event.
        raw: serde_json::Value,
    },
}

impl Event {
    /// Whether this event ends the turn.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Event::TurnCompleted { .. } | Event::TurnFailed { .. } | Event::TurnInterrupted { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_kind_round_trips_and_defaults_to_other() {
        let auth = Event::TurnFailed {
            turn_id: None,
            message: "unexpected status 401 Unauthorized".into(),
            kind: FailureKind::Auth,
        };
        let json = serde_json::to_value(&auth).unwrap();
        assert_eq!(json["kind"], "auth");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), auth);
        // an event written before the field existed reads as Other, and Other is not written
        let old = serde_json::json!({"event": "turn_failed", "turn_id": null, "message": "boom"});
        let event: Event = serde_json::from_value(old.clone()).unwrap();
        assert!(matches!(
            &event,
            Event::TurnFailed {
                kind: FailureKind::Other,
                ..
            }
        ));
        assert_eq!(serde_json::to_value(&event).unwrap(), old);
        assert_eq!(FailureKind::of_message("Not logged in"), FailureKind::Auth);
        assert_eq!(FailureKind::of_message("boom"), FailureKind::Other);
    }
}
