use super::tracker::core_item;
use super::*;
use crate::connection::{ConnectionOptions, Notification};
use crate::protocol::ThreadItem;
use crate::transport::memory::{self, MemoryServer};
use codex_core::event::{DeltaKind, FileChangeKind, FileUpdate, ItemStatus};
use codex_core::{FailureKind, ItemDetails, ReasoningEffort};
use serde_json::json;

fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

/// Replays the server → client notifications of a transcript through a tracker of the
/// first turn answered.
fn replay(name: &str) -> (TurnTracker, Vec<Event>) {
    let lines = fixture(name);
    let thread = lines
        .iter()
        .find_map(|l| l["msg"]["result"]["thread"]["id"].as_str())
        .unwrap()
        .to_owned();
    let turn = lines
        .iter()
        .find_map(|l| l["msg"]["result"]["turn"]["id"].as_str())
        .unwrap()
        .to_owned();
    let mut tracker = TurnTracker::new(thread.clone(), turn);
    let mut events = Vec::new();
    for l in &lines {
        let msg = &l["msg"];
        if l["dir"] != "in" || msg.get("id").is_some() {
            continue;
        }
        let Some(method) = msg["method"].as_str() else {
            continue;
        };
        let n = Notification::new(method, msg["params"].clone());
        if n.thread_id() != Some(thread.as_str()) {
            continue;
        }
        events.extend(tracker.on_notification(&n));
        if tracker.done {
            break;
        }
    }
    (tracker, events)
}

#[test]
fn plain_transcript_maps_to_core_events() {
    let (tracker, events) = replay("transcript-plain.jsonl");
    assert!(tracker.done);
    let deltas: Vec<(DeltaKind, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Delta { kind, delta, .. } => Some((*kind, delta.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        deltas,
        [
            (DeltaKind::Reasoning, "Thinking "),
            (DeltaKind::Reasoning, "hard."),
            (DeltaKind::AgentMessage, "Hello"),
            (DeltaKind::AgentMessage, " world"),
        ]
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ItemCompleted { item }
        if item.details == ItemDetails::Reasoning { text: "Thinking hard.".into() }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ItemCompleted { item }
        if item.details == ItemDetails::UserMessage { text: "Say hello".into() }))
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::TurnStarted { .. }))
            .count(),
        1
    );
    match events.last() {
        Some(Event::TurnCompleted {
            usage: Some(u),
            turn_id: Some(_),
        }) => {
            assert_eq!((u.input_tokens, u.output_tokens), (10, 5));
        }
        other => panic!("{other:?}"),
    }
    // thread/started is not repeated; thread/status/changed is kept as Unknown
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Unknown { kind, .. } if kind == "thread/started"))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Unknown { kind, .. } if kind == "thread/status/changed"))
    );
}

#[test]
fn approval_transcript_sums_usage_and_reports_declines() {
    let (tracker, events) = replay("transcript-approval.jsonl");
    assert!(tracker.done);
    let Some(Event::TurnCompleted { usage: Some(u), .. }) = events.last() else {
        panic!("{events:?}")
    };
    // two model responses of 10/5 each in this turn
    assert_eq!((u.input_tokens, u.output_tokens), (20, 10));
    assert!(events.iter().any(|e| matches!(e, Event::ItemCompleted { item }
        if matches!(&item.details, ItemDetails::CommandExecution { command, status: ItemStatus::Completed, .. }
            if command.contains("touch x")))));
}

#[test]
fn review_sub_turns_do_not_end_the_run() {
    let root = "root-turn".to_owned();
    let mut tracker = TurnTracker::new("t".into(), root.clone());
    let turn = |id: &str, root: &str, status: &str| json!({"threadId": "t", "turn": {"id": id, "rootTurnId": root, "items": [], "status": status}});
    let events = tracker.on_notification(&Notification::new(
        "turn/started",
        turn("sub", &root, "inProgress"),
    ));
    assert!(matches!(&events[..], [Event::Unknown { kind, .. }] if kind == "turn/started"));
    let events = tracker.on_notification(&Notification::new(
        "item/completed",
        json!({"threadId": "t", "turnId": "sub", "item": {"type": "agentMessage", "id": "m", "text": "from the sub-turn"}}),
    ));
    assert!(matches!(&events[..], [Event::ItemCompleted { .. }]));
    let events = tracker.on_notification(&Notification::new(
        "turn/completed",
        turn("sub", &root, "completed"),
    ));
    assert!(matches!(&events[..], [Event::Unknown { .. }]));
    assert!(!tracker.done);
    // another turn of the thread is not ours
    let events = tracker.on_notification(&Notification::new(
        "item/completed",
        json!({"threadId": "t", "turnId": "other", "item": {"type": "agentMessage", "id": "m2", "text": "x"}}),
    ));
    assert!(matches!(&events[..], [Event::Unknown { kind, .. }] if kind == "item/completed"));
    let events = tracker.on_notification(&Notification::new(
        "turn/completed",
        turn(&root, &root, "failed"),
    ));
    assert!(tracker.done);
    assert!(
        matches!(&events[..], [Event::TurnFailed { message, .. }] if message == "the turn failed")
    );
}

#[test]
fn a_turn_failed_for_credentials_is_an_auth_failure() {
    let failed = |error: Value| {
        let mut tracker = TurnTracker::new("t".into(), "u".into());
        let events = tracker.on_notification(&Notification::new(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "items": [], "status": "failed", "error": error}}),
        ));
        match &events[..] {
            [Event::TurnFailed { kind, message, .. }] => (*kind, message.clone()),
            other => panic!("{other:?}"),
        }
    };
    // what codex 0.169.0 sends for a 401 from the provider
    let (kind, message) = failed(json!({
        "message": "unexpected status 401 Unauthorized: nope, url: http://127.0.0.1:1/v1/responses",
        "codexErrorInfo": {"httpConnectionFailed": {"httpStatusCode": 401}}
    }));
    assert_eq!(kind, FailureKind::Auth);
    assert!(message.starts_with("unexpected status 401"), "{message}");
    let (kind, _) =
        failed(json!({"message": "Please sign in again.", "codexErrorInfo": "unauthorized"}));
    assert_eq!(kind, FailureKind::Auth);
    // a missing env_key variable is "other" on the wire; codex's wording tells
    let (kind, _) =
        failed(json!({"message": "Missing environment variable: `K`.", "codexErrorInfo": "other"}));
    assert_eq!(kind, FailureKind::Auth);
    let (kind, _) = failed(json!({
        "message": "stream disconnected before completion",
        "codexErrorInfo": {"responseStreamDisconnected": {"httpStatusCode": null}}
    }));
    assert_eq!(kind, FailureKind::Other);
    let (kind, _) = failed(
        json!({"message": "x", "codexErrorInfo": {"httpConnectionFailed": {"httpStatusCode": 500}}}),
    );
    assert_eq!(kind, FailureKind::Other);
}

#[test]
fn unknown_items_keep_their_raw_json() {
    let raw = json!({"type": "exitedReviewMode", "id": "r", "review": "looks good", "extra": 1});
    let item: ThreadItem = serde_json::from_value(raw.clone()).unwrap();
    let core = core_item(&item, Some(&raw));
    assert_eq!(
        core.details,
        ItemDetails::Unknown {
            kind: "exitedReviewMode".into(),
            raw
        }
    );
    let raw = json!({"type": "fileChange", "id": "p", "status": "declined",
        "changes": [{"path": "/w/a", "kind": {"type": "add"}, "diff": ""}]});
    let item: ThreadItem = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(
        core_item(&item, Some(&raw)).details,
        ItemDetails::FileChange {
            changes: vec![FileUpdate::new("/w/a", FileChangeKind::Add)],
            status: ItemStatus::Declined
        }
    );
}

#[test]
fn specs_become_wire_params() {
    let dir = tempfile::tempdir().unwrap();
    let extra = tempfile::tempdir().unwrap();
    let spec = TaskSpec::new("do it")
        .input("context")
        .cwd(dir.path())
        .writable_dir(extra.path())
        .preset(codex_core::Preset::FullAuto)
        .effort(ReasoningEffort::High)
        .service_tier(ServiceTier::Fast)
        .output_schema(json!({"type": "object"}))
        .config("model_reasoning_summary", "detailed");
    let overrides = serde_json::to_value(thread_overrides(&spec, true).unwrap()).unwrap();
    let extra_dir = extra.path().canonicalize().unwrap();
    assert_eq!(overrides["sandbox"], "workspace-write");
    assert_eq!(overrides["approvalPolicy"], "on-request");
    assert_eq!(overrides["serviceTier"], "priority");
    assert_eq!(
        overrides["config"],
        json!({"sandbox_workspace_write.writable_roots": [extra_dir], "model_reasoning_summary": "detailed"})
    );
    let turn = serde_json::to_value(turn_params("t", &spec).unwrap()).unwrap();
    assert_eq!(
        turn["input"],
        json!([{"type": "text", "text": "do it\n\ncontext", "text_elements": []}])
    );
    assert_eq!(
        turn["sandboxPolicy"],
        json!({"type": "workspaceWrite", "writableRoots": [extra_dir], "networkAccess": false,
            "excludeTmpdirEnvVar": false, "excludeSlashTmp": false})
    );
    assert_eq!(turn["effort"], "high");
    assert_eq!(turn["outputSchema"], json!({"type": "object"}));
    // a resumed thread keeps its cwd unless the spec sets one
    let overrides = thread_overrides(&TaskSpec::new("x"), false).unwrap();
    assert_eq!(overrides.cwd, None);
}

async fn answer(server: &mut MemoryServer, method: &str, result: Value) {
    let msg = server.recv_json().await.unwrap();
    assert_eq!(msg["method"], method, "{msg}");
    server.respond(&msg["id"], result).await.unwrap();
}

fn memory_backend() -> (AspBackend, MemoryServer) {
    memory_backend_with(4)
}

fn memory_backend_with(subscription_capacity: usize) -> (AspBackend, MemoryServer) {
    let (transport, server) = memory::pair(TransportOptions::default());
    let conn = Connection::new(
        transport,
        ConnectionOptions::default().subscription_capacity(subscription_capacity),
    );
    (
        AspBackend::from_connection_with(conn, AspBackendOptions::default().event_capacity(1)),
        server,
    )
}

#[tokio::test]
async fn rate_limits_without_chatgpt_send_no_request() {
    let (backend, mut server) = memory_backend();
    let call = tokio::spawn({
        let backend = backend.clone();
        async move { backend.rate_limits().await }
    });
    answer(
        &mut server,
        "account/read",
        json!({"account": {"type": "apiKey"}, "requiresOpenaiAuth": true}),
    )
    .await;
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            codex_core::Error::FeatureUnavailable {
                feature: Feature::RateLimits,
                auth: AuthMode::ApiKey
            }
        ),
        "{err}"
    );
    let next = tokio::time::timeout(Duration::from_millis(100), server.recv_line()).await;
    assert!(next.is_err(), "unexpected request: {next:?}");
}

async fn start_turn(backend: &AspBackend, server: &mut MemoryServer) -> Run {
    let start = tokio::spawn({
        let backend = backend.clone();
        async move { backend.start(TaskSpec::new("hi").cwd("/")).await }
    });
    answer(server, "thread/start", json!({"thread": {"id": "t"}})).await;
    answer(
        server,
        "turn/start",
        json!({"turn": {"id": "u", "status": "inProgress", "items": []}}),
    )
    .await;
    start.await.unwrap().unwrap()
}

/// Answers the next request, of `method`, with -32001 "Server overloaded".
async fn overloaded(server: &mut MemoryServer, method: &str) {
    let msg = server.recv_json().await.unwrap();
    assert_eq!(msg["method"], method, "{msg}");
    server
        .respond_error(
            &msg["id"],
            error_codes::SERVER_OVERLOADED,
            "Server overloaded; retry later.",
        )
        .await
        .unwrap();
}

fn retrying_backend(retries: u32) -> (AspBackend, MemoryServer) {
    let (transport, server) = memory::pair(TransportOptions::default());
    let conn = Connection::new(transport, ConnectionOptions::default());
    let options = AspBackendOptions::default().overload_retry(
        OverloadRetry::new(retries)
            .base_delay(Duration::from_millis(5))
            .max_delay(Duration::from_millis(20)),
    );
    (AspBackend::from_connection_with(conn, options), server)
}

#[tokio::test]
async fn an_overloaded_server_is_retried_and_the_turn_starts() {
    let (backend, mut server) = retrying_backend(3);
    let start = tokio::spawn({
        let backend = backend.clone();
        async move { backend.start(TaskSpec::new("hi").cwd("/")).await }
    });
    // thread/start (which subscribes with its answer) refused twice, then answered
    overloaded(&mut server, "thread/start").await;
    overloaded(&mut server, "thread/start").await;
    answer(&mut server, "thread/start", json!({"thread": {"id": "t"}})).await;
    // turn/start refused once, then answered
    overloaded(&mut server, "turn/start").await;
    answer(
        &mut server,
        "turn/start",
        json!({"turn": {"id": "u", "status": "inProgress", "items": []}}),
    )
    .await;
    let mut run = tokio::time::timeout(Duration::from_secs(30), start)
        .await
        .expect("the start ends")
        .unwrap()
        .expect("the turn starts");
    // the subscription of the retried thread/start is live
    server
        .notify(
            "turn/started",
            json!({"threadId": "t", "turn": {"id": "u", "status": "inProgress", "items": []}}),
        )
        .await
        .unwrap();
    server
        .notify(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "status": "completed", "items": []}}),
        )
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(e) = run.next_event().await {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::TurnStarted { .. })),
        "{events:?}"
    );
    run.outcome().await.expect("the turn completes");
}

#[tokio::test]
async fn overload_retries_are_bounded() {
    let (backend, mut server) = retrying_backend(1);
    let call = tokio::spawn({
        let backend = backend.clone();
        async move {
            backend
                .call::<ConfigRead>(ConfigReadParams::default())
                .await
        }
    });
    overloaded(&mut server, "config/read").await;
    overloaded(&mut server, "config/read").await;
    let err = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call ends")
        .unwrap()
        .unwrap_err();
    assert!(
        asp_error(&err).is_some_and(AspError::is_overloaded),
        "{err}"
    );
}

#[tokio::test]
async fn a_lagging_run_fails_loudly_and_interrupts() {
    let (backend, mut server) = memory_backend();
    let mut run = start_turn(&backend, &mut server).await;
    // the run's queue holds 1 event, its subscription 4 (8 once deltas cannot merge):
    // flood it with events that cannot be merged while nobody reads
    for i in 0..40 {
        server
            .notify(
                "item/started",
                json!({"threadId": "t", "turnId": "u", "item": {"type": "agentMessage", "id": format!("m{i}"), "text": ""}}),
            )
            .await
            .unwrap();
    }
    // the lag shows where the next notification arrives
    server
        .notify(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "status": "completed", "items": []}}),
        )
        .await
        .unwrap();
    // once the run is read again, it sees the lag and interrupts its turn
    let reader = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = run.next_event().await {
            events.push(e);
        }
        (events, run.outcome().await)
    });
    let msg = server.recv_json().await.unwrap();
    assert_eq!(msg["method"], "turn/interrupt", "{msg}");
    server.respond(&msg["id"], json!({})).await.unwrap();
    server
        .notify(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "status": "interrupted", "items": []}}),
        )
        .await
        .unwrap();
    let (events, outcome) = reader.await.unwrap();
    let err = outcome.unwrap_err();
    match BackendError::from_core(&err) {
        Some(BackendError::Lagged { missed, .. }) => assert!(*missed > 0),
        other => panic!("{other:?} / {err}"),
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Error { message } if message.contains("fell behind"))),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_burst_of_deltas_is_merged_not_dropped() {
    let (backend, mut server) = memory_backend_with(16);
    let mut run = start_turn(&backend, &mut server).await;
    // the run's queue holds 1 event, its subscription 16: a burst of deltas of two items,
    // interleaved, with an item/started in the middle, while nobody reads
    let mut expected = (String::new(), String::new());
    for i in 0..3000u32 {
        let (item, text) = if i.is_multiple_of(3) {
            ("r", &mut expected.1)
        } else {
            ("m", &mut expected.0)
        };
        let piece = format!("{i} ");
        text.push_str(&piece);
        let method = if item == "r" {
            "item/reasoning/summaryTextDelta"
        } else {
            "item/agentMessage/delta"
        };
        server
            .notify(
                method,
                json!({"threadId": "t", "turnId": "u", "itemId": item, "summaryIndex": 0, "delta": piece}),
            )
            .await
            .unwrap();
        if i == 1500 {
            server
                .notify(
                    "item/started",
                    json!({"threadId": "t", "turnId": "u", "item": {"type": "agentMessage", "id": "x", "text": ""}}),
                )
                .await
                .unwrap();
        }
    }
    server
        .notify(
            "item/completed",
            json!({"threadId": "t", "turnId": "u", "item": {"type": "agentMessage", "id": "m", "text": expected.0}}),
        )
        .await
        .unwrap();
    server
        .notify(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "status": "completed", "items": []}}),
        )
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(e) = run.next_event().await {
        events.push(e);
    }
    let outcome = run.outcome().await.unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some(expected.0.as_str()));
    let mut text = (String::new(), String::new());
    let mut deltas = 0;
    let mut started_at = None;
    for (at, e) in events.iter().enumerate() {
        match e {
            Event::Delta { item_id, delta, .. } => {
                deltas += 1;
                if item_id == "r" {
                    text.1.push_str(delta);
                } else {
                    text.0.push_str(delta);
                }
            }
            Event::ItemStarted { item } if item.id == "x" => started_at = Some(at),
            _ => {}
        }
    }
    assert_eq!(text, expected);
    assert!(deltas < 3000, "nothing was merged ({deltas} deltas)");
    assert!(backend.connection().stats().coalesced_events > 0);
    assert_eq!(backend.connection().stats().lagged_events, 0);
    // the item/started kept its place: after the text sent before it, before the rest
    let started_at = started_at.expect("item/started was delivered");
    let before: String = events[..started_at]
        .iter()
        .filter_map(|e| match e {
            Event::Delta { item_id, delta, .. } if item_id == "m" => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    let sent_before: String = (0..=1500)
        .filter(|i: &u32| !i.is_multiple_of(3))
        .map(|i| format!("{i} "))
        .collect();
    assert_eq!(before, sent_before);
    assert!(matches!(events.last(), Some(Event::TurnCompleted { .. })));
}

#[tokio::test]
async fn a_closed_connection_ends_the_run_at_once() {
    let (backend, mut server) = memory_backend();
    let run = start_turn(&backend, &mut server).await;
    let status = std::os::unix::process::ExitStatusExt::from_raw(9);
    server.exit(status, "boom\n").await;
    let err = tokio::time::timeout(Duration::from_secs(2), run.wait())
        .await
        .expect("the run ends at once")
        .unwrap_err();
    match &err {
        codex_core::Error::ProcessExited {
            status,
            stderr_tail,
            ..
        } => {
            assert_eq!(*status, codex_core::ExitSummary::Signal(9));
            assert_eq!(stderr_tail.trim(), "boom");
        }
        other => panic!("{other}"),
    }
    // later calls fail typed too
    let err = backend.account().await.unwrap_err();
    assert!(
        matches!(err, codex_core::Error::ProcessExited { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_inside_a_turn_is_skipped() {
    let (backend, mut server) = memory_backend();
    let run = start_turn(&backend, &mut server).await;
    server.send_line("this is not JSON").await.unwrap();
    server
        .send_line(r#"{"neither": "JSON-RPC"}"#)
        .await
        .unwrap();
    server
        .notify(
            "item/completed",
            json!({"threadId": "t", "turnId": "u", "item": {"type": "agentMessage", "id": "m", "text": "still here"}}),
        )
        .await
        .unwrap();
    server
        .notify(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "status": "completed", "items": []}}),
        )
        .await
        .unwrap();
    let outcome = run.wait().await.unwrap();
    assert_eq!(outcome.final_message.as_deref(), Some("still here"));
    assert_eq!(backend.connection().stats().garbage_frames, 2);
}

#[tokio::test]
async fn steering_without_a_turn_is_typed() {
    let (backend, mut server) = memory_backend();
    let call = tokio::spawn({
        let backend = backend.clone();
        async move { backend.steer(&"t".into(), &"u".into(), "more").await }
    });
    let msg = server.recv_json().await.unwrap();
    assert_eq!(msg["method"], "turn/steer");
    server
        .respond_error(&msg["id"], -32600, "no active turn to steer")
        .await
        .unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(
            BackendError::from_core(&err),
            Some(BackendError::NoActiveTurn { .. })
        ),
        "{err}"
    );
}
