//! Which thread a message is about, which methods read or load a thread, and how a thread
//! is resumed for a client that did not open it.

use serde_json::{Map, Value};

use crate::protocol::{ServerNotification, ServerRequest};

/// Methods any client may call on any thread, owned or not, without taking it: reads, and
/// `turn/interrupt` (stopping a turn is allowed to every client of the same user, so that a
/// `cancel` command in another process can stop a background turn).
pub(super) const READ_ONLY: &[&str] = &[
    "turn/interrupt",
    "thread/read",
    "thread/turns/list",
    "thread/items/list",
    "thread/goal/get",
    "thread/attachment/list",
    "thread/fork",
    "thread/loaded/list",
    "thread/list",
    "hooks/list",
    "app/read",
    "app/list",
    "app/installed",
    "experimentalFeature/list",
    "mcpServerStatus/list",
    "mcpServer/resource/read",
    "feedback/upload",
    "feedback/save",
];

/// Methods that need the thread loaded in the app-server: after a restart the broker resumes
/// the thread first.
pub(super) const NEEDS_LOADED: &[&str] = &[
    "turn/start",
    "turn/steer",
    "review/start",
    "thread/compact/start",
    "thread/shellCommand",
    "thread/inject_items",
];

/// Methods after whose success the thread is loaded in the current app-server.
pub(super) const LOADS: &[&str] = &["thread/start", "thread/resume", "thread/fork"];

/// Methods after whose success the owner lets the thread go.
pub(super) const RELEASES: &[&str] = &["thread/unsubscribe", "thread/archive", "thread/delete"];

/// The settings of `thread/start` / `thread/fork` / `thread/resume` that a transparent
/// `thread/resume` after a restart repeats.
pub(super) const RESUME_KEYS: &[&str] = &[
    "approvalPolicy",
    "approvalsReviewer",
    "baseInstructions",
    "config",
    "cwd",
    "developerInstructions",
    "model",
    "modelProvider",
    "personality",
    "sandbox",
    "serviceTier",
];

/// `params.threadId` of a request.
pub(super) fn param_thread(params: &Value) -> Option<String> {
    params
        .get("threadId")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The thread a notification is about.
pub(super) fn notification_thread(method: &str, params: &Value) -> Option<String> {
    if let Some(id) = params.get("threadId").and_then(Value::as_str) {
        return Some(id.to_owned());
    }
    if let Some(id) = params
        .get("thread")
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
    {
        return Some(id.to_owned());
    }
    ServerNotification::from_parts(method, params.clone())
        .thread_id()
        .map(str::to_owned)
}

/// The thread a server request is about.
pub(super) fn server_request_thread(method: &str, params: &Value) -> Option<String> {
    ServerRequest::from_parts(method, params.clone())
        .thread_id()
        .map(str::to_owned)
        .or_else(|| {
            params
                .get("conversationId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
}

/// The parent of a sub-agent thread announced by `thread/started`.
pub(super) fn parent_thread(params: &Value) -> Option<String> {
    let thread = params.get("thread")?;
    if let Some(parent) = thread.get("parentThreadId").and_then(Value::as_str) {
        return Some(parent.to_owned());
    }
    thread
        .pointer("/source/subAgent/thread_spawn/parent_thread_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The params of a transparent resume of `thread`, from the settings it was opened with.
pub(super) fn resume_params(thread: &str, open: &Value) -> Value {
    let mut params = Map::new();
    if let Value::Object(open) = open {
        for key in RESUME_KEYS {
            if let Some(v) = open.get(*key).filter(|v| !v.is_null()) {
                params.insert((*key).to_owned(), v.clone());
            }
        }
    }
    params.insert("threadId".into(), Value::String(thread.to_owned()));
    params.insert("excludeTurns".into(), Value::Bool(true));
    Value::Object(params)
}

#[cfg(test)]
mod tests {
    use super::super::salvage_id;
    use super::*;
    use crate::jsonrpc::RequestId;
    use serde_json::json;

    #[test]
    fn resume_params_keep_the_opening_settings() {
        let open =
            json!({"cwd": "/w", "approvalPolicy": "untrusted", "ephemeral": false, "model": null});
        let p = resume_params("t1", &open);
        assert_eq!(
            p,
            json!({"cwd": "/w", "approvalPolicy": "untrusted", "threadId": "t1", "excludeTurns": true})
        );
    }

    #[test]
    fn threads_of_messages() {
        assert_eq!(
            notification_thread(
                "turn/started",
                &json!({"threadId": "a", "turn": {"id": "u"}})
            ),
            Some("a".into())
        );
        assert_eq!(
            notification_thread("thread/started", &json!({"thread": {"id": "b"}})),
            Some("b".into())
        );
        assert_eq!(notification_thread("account/updated", &json!({})), None);
        assert_eq!(
            parent_thread(
                &json!({"thread": {"id": "c", "source": {"subAgent": {"thread_spawn": {"parent_thread_id": "p", "depth": 1}}}}})
            ),
            Some("p".into())
        );
        assert_eq!(
            server_request_thread("execCommandApproval", &json!({"conversationId": "x"})),
            Some("x".into())
        );
        assert_eq!(salvage_id(r#"{"id": 4}"#), Some(RequestId::Integer(4)));
        assert_eq!(salvage_id("[1]"), None);
    }
}
