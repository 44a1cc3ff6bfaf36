//! Fuzz target `jsonrpc`: one incoming frame at a time, and a turn's notifications.

use codex_core::Event;
use codex_core::fuzzing::{self, Input};
use proptest::prelude::*;
use serde_json::Value;

use crate::approval::{Decision, ServerReply, ServerRequestCtx};
use crate::backend::TurnTracker;
use crate::connection::Notification;
use crate::jsonrpc::{JsonRpcError, Message as Incoming, RequestId};
use crate::protocol::{ServerNotification, ServerRequest};
use crate::transport::GarbageReason;

fn frame() -> BoxedStrategy<Input> {
    prop_oneof![
        8 => fuzzing::mutated(super::corpus()),
        1 => fuzzing::random_bytes(300),
    ]
    .boxed()
}

/// What `Message::parse` must make of `text`, from the JSON-RPC rules as this crate reads
/// them: an object with a string `method` is a notification (no id, or a null one) or a
/// request (an integer or string id; any other id makes it garbage); else an object with an
/// `id` and an `error` (whatever its shape) or a `result` is a response; anything else is
/// garbage. Error codes that are not integers read as 0, messages that are not strings as
/// their JSON text.
fn expected(text: &str) -> Result<Incoming, GarbageReason> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(GarbageReason::NotJson(e.to_string())),
    };
    let Value::Object(obj) = value else {
        return Err(GarbageReason::NotJsonRpc);
    };
    let params = || obj.get("params").cloned().unwrap_or(Value::Null);
    if let Some(Value::String(method)) = obj.get("method") {
        let method = method.clone();
        return match obj.get("id") {
            None | Some(Value::Null) => Ok(Incoming::Notification {
                method,
                params: params(),
            }),
            Some(Value::Number(n)) if n.is_i64() => Ok(Incoming::Request {
                id: RequestId::Integer(n.as_i64().unwrap_or_default()),
                method,
                params: params(),
            }),
            Some(Value::String(s)) => Ok(Incoming::Request {
                id: RequestId::String(s.clone()),
                method,
                params: params(),
            }),
            Some(_) => Err(GarbageReason::NotJsonRpc),
        };
    }
    let Some(id) = obj.get("id").cloned() else {
        return Err(GarbageReason::NotJsonRpc);
    };
    if let Some(error) = obj.get("error") {
        let error = match error {
            Value::Object(e) => JsonRpcError {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: match e.get("message") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                },
                data: e.get("data").filter(|d| !d.is_null()).cloned(),
            },
            other => JsonRpcError {
                code: 0,
                message: other.to_string(),
                data: None,
            },
        };
        return Ok(Incoming::Response {
            id,
            outcome: Err(error),
        });
    }
    match obj.get("result") {
        Some(result) => Ok(Incoming::Response {
            id,
            outcome: Ok(result.clone()),
        }),
        None => Err(GarbageReason::NotJsonRpc),
    }
}

fn check_notification(method: &str, params: &Value) -> Result<(), TestCaseError> {
    let n = Notification::new(method, params.clone());
    prop_assert_eq!(n.method(), method);
    prop_assert_eq!(n.typed().method(), method);
    prop_assert_eq!(
        &ServerNotification::from_parts_ref(method, params),
        &ServerNotification::from_parts(method, params.clone())
    );
    if !matches!(n.typed(), ServerNotification::Raw { .. }) {
        prop_assert_eq!(n.thread_id(), n.typed().thread_id());
        // a typed notification serializes back to params it parses from
        let again = ServerNotification::from_parts(method, n.typed().params());
        prop_assert_eq!(again.method(), method);
    }
    Ok(())
}

/// The one-pass decoder agrees with the Value path (on any text, notification or not).
fn check_from_json(text: &str) -> Result<(), TestCaseError> {
    let fast = ServerNotification::from_json(text);
    let slow = serde_json::from_str::<ServerNotification>(text);
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        // documented: an unread member of typed params is skipped, not checked
        (Ok(_), Err(_)) if serde_json::from_str::<Value>(text).is_err() => {}
        _ => prop_assert!(false, "from_json {fast:?} but the Value path {slow:?}"),
    }
    Ok(())
}

fn check_request(id: &RequestId, method: &str, params: &Value) -> Result<(), TestCaseError> {
    let request = ServerRequest::from_parts(method, params.clone());
    prop_assert_eq!(request.method(), method);
    let _ = (
        request.params(),
        request.thread_id(),
        request.turn_id(),
        request.item_id(),
        request.denial_result(),
        request.parse_error(),
    );
    let ctx = ServerRequestCtx::new(id.clone(), method, params.clone());
    let _ = (ctx.kind(), ctx.thread_id(), ctx.turn_id(), ctx.item_id());
    for reply in [
        ServerReply::Decision(Decision::Accept),
        ServerReply::Decision(Decision::AcceptForSession),
        ServerReply::Decision(Decision::Decline),
        ServerReply::Decision(Decision::Cancel),
        ServerReply::Decision(Decision::AcceptWithExecpolicyAmendment(vec!["ls".into()])),
    ] {
        // every answer encodes, and reads back as an answer to that very id
        let text = Incoming::response(id, ctx.encode_reply(reply)).encode();
        let text = text.map_err(|e| TestCaseError::fail(format!("encoding: {e}")))?;
        match Incoming::parse(&text) {
            Ok(Incoming::Response { id: back, .. }) => {
                prop_assert_eq!(Some(back), serde_json::to_value(id).ok());
            }
            other => prop_assert!(false, "our answer {text} reads back as {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn fuzz_jsonrpc_messages() {
    fuzzing::run("jsonrpc/messages", 1, frame(), |input| {
        let text = input.lossy();
        check_from_json(&text)?;
        let got = Incoming::parse(&text);
        let want = expected(&text);
        match (&got, &want) {
            (Err(GarbageReason::NotJson(_)), Err(GarbageReason::NotJson(_))) => {}
            _ => prop_assert_eq!(&got, &want),
        }
        match got {
            Ok(Incoming::Notification { method, params }) => {
                check_notification(&method, &params)?;
            }
            Ok(Incoming::Request { id, method, params }) => check_request(&id, &method, &params)?,
            Ok(Incoming::Response { .. }) | Err(_) => {}
        }
        Ok(())
    });
}

/// The notifications of one recorded turn, some replaced, some added (mutated recorded
/// messages), run through the tracker that maps them to core events.
#[derive(Debug, Clone)]
struct Turn {
    transcript: usize,
    changes: Vec<(u32, bool, Input)>,
}

const TRANSCRIPTS: &[&str] = &[
    "transcript-plain.jsonl",
    "transcript-approval.jsonl",
    "transcript-interrupt.jsonl",
    "transcript-lifecycle.jsonl",
];

/// (thread id, turn id, the incoming notifications) of a transcript's first turn.
fn recorded_turn(name: &str) -> (String, String, Vec<Value>) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let lines: Vec<Value> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let thread = lines
        .iter()
        .find_map(|l| l["msg"]["result"]["thread"]["id"].as_str())
        .unwrap_or("t")
        .to_owned();
    let turn = lines
        .iter()
        .find_map(|l| l["msg"]["result"]["turn"]["id"].as_str())
        .unwrap_or("u")
        .to_owned();
    let notifications = lines
        .iter()
        .filter(|l| l["dir"] == "in" && l["msg"].get("id").is_none())
        .map(|l| l["msg"].clone())
        .collect();
    (thread, turn, notifications)
}

#[test]
fn fuzz_jsonrpc_turn_tracker() {
    let turns: Vec<_> = TRANSCRIPTS.iter().map(|n| recorded_turn(n)).collect();
    let strategy = (
        0..TRANSCRIPTS.len(),
        prop::collection::vec((any::<u32>(), any::<bool>(), frame()), 0..8),
    )
        .prop_map(|(transcript, changes)| Turn {
            transcript,
            changes,
        });
    fuzzing::run("jsonrpc/turn-tracker", 1, strategy, |case| {
        let (thread, turn, recorded) = &turns[case.transcript];
        let mut texts: Vec<String> = recorded.iter().map(Value::to_string).collect();
        for (at, replace, input) in &case.changes {
            let at = *at as usize % (texts.len() + 1);
            if *replace && at < texts.len() {
                texts[at] = input.lossy();
            } else {
                texts.insert(at, input.lossy());
            }
        }
        let mut tracker = TurnTracker::new(thread.clone(), turn.clone());
        let mut terminal = 0;
        for text in &texts {
            // what the connection would hand the backend: notifications of this thread
            let Ok(Incoming::Notification { method, params }) = Incoming::parse(text) else {
                continue;
            };
            let n = Notification::new(method, params);
            if n.thread_id() != Some(thread.as_str()) {
                continue;
            }
            let was_done = tracker.done;
            let events = tracker.on_notification(&n);
            if was_done {
                prop_assert!(
                    events.iter().all(|e| matches!(e, Event::Unknown { .. })),
                    "after the end of the turn: {events:?}"
                );
            }
            terminal += events.iter().filter(|e| e.is_terminal()).count();
            prop_assert!(terminal <= 1, "more than one terminal event");
            prop_assert_eq!(terminal == 1, tracker.done);
        }
        Ok(())
    });
}
