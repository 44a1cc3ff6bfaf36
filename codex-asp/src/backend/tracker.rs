//! [`TurnTracker`]: maps the notifications of one thread to the core events of one turn.

use std::collections::HashSet;

use codex_core::event::{DeltaKind, FileChangeKind, FileUpdate, ItemStatus, TodoEntry};
use codex_core::{Event, FailureKind, Item, ItemDetails, TurnId, Usage};
use serde_json::Value;

use crate::connection::Notification;
use crate::protocol::{self, ServerNotification, ThreadItem, TurnError, TurnStatus, UserInput};

/// Maps the notifications of one thread to the core events of one turn (and its
/// sub-turns), and knows when that turn ended.
#[derive(Debug)]
pub(crate) struct TurnTracker {
    pub(super) thread_id: String,
    /// Our turn (the id `turn/start` or `review/start` answered).
    pub(super) root: String,
    /// Our turn and its sub-turns (`turn/started` with `rootTurnId` = ours).
    turns: HashSet<String>,
    usage: Option<Usage>,
    started: bool,
    pub(crate) done: bool,
}

impl TurnTracker {
    pub(crate) fn new(thread_id: String, root: String) -> Self {
        let mut turns = HashSet::new();
        turns.insert(root.clone());
        TurnTracker {
            thread_id,
            root,
            turns,
            usage: None,
            started: false,
            done: false,
        }
    }

    pub(crate) fn ours(&self, turn_id: &str) -> bool {
        self.turns.contains(turn_id)
    }

    pub(crate) fn root_id(&self) -> Option<TurnId> {
        Some(TurnId(self.root.clone()))
    }

    pub(crate) fn on_notification(&mut self, n: &Notification) -> Vec<Event> {
        let unknown = || Event::Unknown {
            kind: n.method().to_owned(),
            raw: n.params().clone(),
        };
        if self.done {
            return vec![unknown()];
        }
        match n.typed() {
            ServerNotification::ThreadStarted(t) if t.thread.id == self.thread_id => Vec::new(),
            ServerNotification::TurnStarted(t) => {
                if t.turn.id == self.root {
                    if self.started {
                        return Vec::new();
                    }
                    self.started = true;
                    vec![Event::TurnStarted {
                        turn_id: self.root_id(),
                    }]
                } else {
                    if t.turn.root_turn_id.as_deref() == Some(self.root.as_str()) {
                        self.turns.insert(t.turn.id.clone());
                    }
                    vec![unknown()]
                }
            }
            ServerNotification::TurnCompleted(t) if t.turn.id == self.root => {
                let turn_id = self.root_id();
                match &t.turn.status {
                    TurnStatus::Completed => {
                        self.done = true;
                        vec![Event::TurnCompleted {
                            turn_id,
                            usage: self.usage,
                        }]
                    }
                    TurnStatus::Failed => {
                        self.done = true;
                        let error = t.turn.error.as_ref();
                        let message = error
                            .map(|e| e.message.trim().to_owned())
                            .filter(|m| !m.is_empty())
                            .unwrap_or_else(|| "the turn failed".to_owned());
                        let kind = if error.is_some_and(TurnError::is_auth_rejection) {
                            FailureKind::Auth
                        } else {
                            FailureKind::Other
                        };
                        vec![Event::TurnFailed {
                            turn_id,
                            message,
                            kind,
                        }]
                    }
                    TurnStatus::Interrupted => {
                        self.done = true;
                        vec![Event::TurnInterrupted { turn_id }]
                    }
                    _ => vec![unknown()],
                }
            }
            ServerNotification::ItemStarted(i) if self.ours(&i.turn_id) => {
                vec![Event::ItemStarted {
                    item: core_item(&i.item, n.params().get("item")),
                }]
            }
            ServerNotification::ItemCompleted(i) if self.ours(&i.turn_id) => {
                vec![Event::ItemCompleted {
                    item: core_item(&i.item, n.params().get("item")),
                }]
            }
            ServerNotification::AgentMessageDelta(d) if self.ours(&d.turn_id) => {
                vec![delta(&d.item_id, DeltaKind::AgentMessage, &d.delta)]
            }
            ServerNotification::ReasoningSummaryTextDelta(d) if self.ours(&d.turn_id) => {
                vec![delta(&d.item_id, DeltaKind::Reasoning, &d.delta)]
            }
            ServerNotification::CommandExecutionOutputDelta(d) if self.ours(&d.turn_id) => {
                vec![delta(&d.item_id, DeltaKind::CommandOutput, &d.delta)]
            }
            ServerNotification::FileChangeOutputDelta(d) if self.ours(&d.turn_id) => {
                vec![delta(&d.item_id, DeltaKind::FileChangeOutput, &d.delta)]
            }
            ServerNotification::ThreadTokenUsageUpdated(u) if self.ours(&u.turn_id) => {
                let last = &u.token_usage.last;
                let add = Usage::new(
                    non_negative(last.input_tokens),
                    non_negative(last.cached_input_tokens),
                    non_negative(last.output_tokens),
                    non_negative(last.reasoning_output_tokens),
                );
                let sum = match self.usage {
                    None => add,
                    Some(u) => Usage::new(
                        u.input_tokens + add.input_tokens,
                        u.cached_input_tokens + add.cached_input_tokens,
                        u.output_tokens + add.output_tokens,
                        u.reasoning_output_tokens + add.reasoning_output_tokens,
                    ),
                };
                self.usage = Some(sum);
                Vec::new()
            }
            ServerNotification::Error(e) if self.ours(&e.turn_id) => {
                let mut message = e.error.message.clone();
                if let Some(details) = e.error.additional_details.as_deref()
                    && !details.trim().is_empty()
                {
                    message.push_str(": ");
                    message.push_str(details.trim());
                }
                vec![Event::Error { message }]
            }
            ServerNotification::TurnPlanUpdated(p) if self.ours(&p.turn_id) => {
                let items = p
                    .plan
                    .iter()
                    .map(|step| {
                        TodoEntry::new(
                            step.step.clone(),
                            step.status == protocol::TurnPlanStepStatus::Completed,
                        )
                    })
                    .collect();
                vec![Event::ItemUpdated {
                    item: Item::new(
                        format!("{}-plan", p.turn_id),
                        ItemDetails::TodoList { items },
                    ),
                }]
            }
            _ => vec![unknown()],
        }
    }
}

pub(super) fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(super) fn delta(item_id: &str, kind: DeltaKind, text: &str) -> Event {
    Event::Delta {
        item_id: item_id.to_owned(),
        kind,
        delta: text.to_owned(),
    }
}

pub(super) fn item_status(status: &protocol::CommandExecutionStatus) -> ItemStatus {
    use protocol::CommandExecutionStatus as S;
    match status {
        S::Completed => ItemStatus::Completed,
        S::Failed => ItemStatus::Failed,
        S::Declined => ItemStatus::Declined,
        _ => ItemStatus::InProgress,
    }
}

pub(super) fn tool_status(status: &protocol::ToolCallStatus) -> ItemStatus {
    use protocol::ToolCallStatus as S;
    match status {
        S::Completed => ItemStatus::Completed,
        S::Failed | S::Interrupted => ItemStatus::Failed,
        _ => ItemStatus::InProgress,
    }
}

/// The core item of a thread item; `raw` is the item as received (kept for unknown kinds).
pub(super) fn core_item(item: &ThreadItem, raw: Option<&Value>) -> Item {
    let raw_value = || {
        raw.cloned()
            .unwrap_or_else(|| serde_json::to_value(item).unwrap_or(Value::Null))
    };
    let id = item.id().unwrap_or_default().to_owned();
    let details = match item {
        ThreadItem::UserMessage(m) => ItemDetails::UserMessage {
            text: m
                .content
                .iter()
                .filter_map(UserInput::as_text)
                .collect::<Vec<_>>()
                .join("\n"),
        },
        ThreadItem::AgentMessage(m) => ItemDetails::AgentMessage {
            text: m.text.clone(),
        },
        ThreadItem::Reasoning(r) => ItemDetails::Reasoning {
            text: r.summary.join("\n"),
        },
        ThreadItem::CommandExecution(c) => ItemDetails::CommandExecution {
            command: c.command.clone(),
            aggregated_output: c.aggregated_output.clone().unwrap_or_default(),
            exit_code: c.exit_code,
            status: item_status(&c.status),
        },
        ThreadItem::FileChange(f) => ItemDetails::FileChange {
            changes: f
                .changes
                .iter()
                .map(|c| {
                    let kind = match &c.kind {
                        protocol::PatchChangeKind::Add => FileChangeKind::Add,
                        protocol::PatchChangeKind::Delete => FileChangeKind::Delete,
                        _ => FileChangeKind::Update,
                    };
                    FileUpdate::new(&c.path, kind)
                })
                .collect(),
            status: item_status(&f.status),
        },
        ThreadItem::McpToolCall(m) => ItemDetails::McpToolCall {
            server: m.server.clone(),
            tool: m.tool.clone(),
            arguments: (!m.arguments.is_null()).then(|| m.arguments.clone()),
            result: m.result.clone(),
            error: m.error.as_ref().map(|e| e.message.clone()),
            status: tool_status(&m.status),
        },
        ThreadItem::WebSearch(w) => ItemDetails::WebSearch {
            query: w.query.clone(),
        },
        ThreadItem::Unknown(v) if item.tag() == Some("error") => ItemDetails::Error {
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        other => ItemDetails::Unknown {
            kind: other.tag().unwrap_or("unknown").to_owned(),
            raw: raw_value(),
        },
    };
    Item::new(id, details)
}
