//! Connection mechanics, driven through the in-memory transport: the test plays the
//! app-server and can send anything, including garbage.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use codex_asp::approval::{
    AlwaysDecide, ApprovalHandler, ChannelHandler, Decision, ServerReply, ServerRequestCtx,
    ServiceHandler,
};
use codex_asp::protocol::{InitializeCapabilities, InitializeParams, ModelList, ModelListParams};
use codex_asp::service::{AspService, OverloadRetry, RawRequest, TypedService, standard_stack};
use codex_asp::transport::memory::{self, MemoryServer};
use codex_asp::transport::{Frame, FrameRead, FrameWrite, Transport, TransportOptions};
use codex_asp::{CloseReason, Connection, ConnectionEvent, ConnectionOptions, Error, Filter};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};

const WAIT: Duration = Duration::from_secs(5);

fn pair() -> (Connection, MemoryServer) {
    pair_with(ConnectionOptions::default(), TransportOptions::default())
}

fn pair_with(
    options: ConnectionOptions,
    transport: TransportOptions,
) -> (Connection, MemoryServer) {
    let (transport, server) = memory::pair(transport);
    (Connection::new(transport, options), server)
}

async fn recv(server: &mut MemoryServer) -> Value {
    tokio::time::timeout(WAIT, server.recv_json())
        .await
        .expect("the client sent something in time")
        .expect("the client's side is open")
}

async fn eventually(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn handshake_sends_client_info_and_capabilities() {
    let (transport, mut server) = memory::pair(TransportOptions::default());
    let fake = tokio::spawn(async move {
        let init = recv(&mut server).await;
        server
            .respond(
                &init["id"],
                json!({"userAgent": "codex-bridge/0.169.0", "codexHome": "/h", "platformFamily": "unix", "platformOs": "linux"}),
            )
            .await
            .unwrap();
        let initialized = recv(&mut server).await;
        (init, initialized, server)
    });
    let mut params = InitializeParams::new("codex-bridge", "0.1.0");
    params.client_info.title = Some("codex-bridge tests".into());
    let mut caps = InitializeCapabilities::default();
    caps.experimental_api = true;
    caps.opt_out_notification_methods = Some(vec!["account/rateLimits/updated".into()]);
    params.capabilities = Some(caps);
    let (conn, response) = Connection::connect(transport, ConnectionOptions::default(), &params)
        .await
        .unwrap();
    assert_eq!(response.user_agent, "codex-bridge/0.169.0");
    let (init, initialized, _server) = fake.await.unwrap();
    assert_eq!(
        init,
        json!({
            "id": 0,
            "method": "initialize",
            "params": {
                "clientInfo": {"name": "codex-bridge", "title": "codex-bridge tests", "version": "0.1.0"},
                "capabilities": {"experimentalApi": true, "optOutNotificationMethods": ["account/rateLimits/updated"]}
            }
        })
    );
    assert!(
        init.get("jsonrpc").is_none(),
        "codex omits jsonrpc; so do we"
    );
    assert_eq!(initialized, json!({"method": "initialized"}));
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn errors_are_typed_and_null_params_become_an_object() {
    let (conn, mut server) = pair();
    let fake = tokio::spawn(async move {
        let req = recv(&mut server).await;
        assert_eq!(req["params"], json!({}));
        server
            .send_line(&format!(
                r#"{{"jsonrpc":"2.0","error":{{"code":-32600,"message":"Not initialized"}},"id":{}}}"#,
                req["id"]
            ))
            .await
            .unwrap();
        let req = recv(&mut server).await;
        server
            .send_json(&json!({"id": req["id"], "error": {"code": -32001, "message": "Server overloaded; retry later.", "data": {"x": 1}}}))
            .await
            .unwrap();
        server
    });
    let err = conn
        .request_raw("model/list", Value::Null)
        .await
        .unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
    match &err {
        Error::Rpc { method, error } => {
            assert_eq!(method, "model/list");
            assert_eq!(error.code, -32600);
            assert_eq!(error.message, "Not initialized");
            assert_eq!(error.data, None);
            assert!(error.is_not_initialized());
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = conn
        .request_raw("thread/start", json!({}))
        .await
        .unwrap_err();
    assert!(err.is_overloaded(), "{err}");
    assert!(
        matches!(&err, Error::Rpc { error, .. } if error.data.as_ref().is_some_and(|d| d["x"] == 1))
    );
    fake.await.unwrap();
}

#[tokio::test]
async fn answers_out_of_order_reach_their_callers() {
    let (conn, mut server) = pair();
    let fake = tokio::spawn(async move {
        let mut reqs = Vec::new();
        for _ in 0..3 {
            reqs.push(recv(&mut server).await);
        }
        for req in reqs.iter().rev() {
            server
                .respond(&req["id"], json!({"echo": req["params"]["n"]}))
                .await
                .unwrap();
        }
        server
    });
    let (a, b, c) = tokio::join!(
        conn.request_raw("echo", json!({"n": 1})),
        conn.request_raw("echo", json!({"n": 2})),
        conn.request_raw("echo", json!({"n": 3})),
    );
    assert_eq!(a.unwrap(), json!({"echo": 1}));
    assert_eq!(b.unwrap(), json!({"echo": 2}));
    assert_eq!(c.unwrap(), json!({"echo": 3}));
    fake.await.unwrap();
    assert_eq!(conn.stats().pending_requests, 0);
}

#[tokio::test]
async fn typed_requests_decode_their_result() {
    let (conn, mut server) = pair();
    let fake = tokio::spawn(async move {
        let req = recv(&mut server).await;
        assert_eq!(req["method"], "model/list");
        server
            .respond(&req["id"], json!({"data": [], "nextCursor": null}))
            .await
            .unwrap();
        let req = recv(&mut server).await;
        server
            .respond(&req["id"], json!("not an object"))
            .await
            .unwrap();
        server
    });
    let models = conn
        .request::<ModelList>(ModelListParams::default())
        .await
        .unwrap();
    assert!(models.data.is_empty());
    let err = conn
        .request::<ModelList>(ModelListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref method, .. } if method == "model/list"),
        "{err}"
    );
    fake.await.unwrap();
}

#[tokio::test]
async fn dropped_requests_leave_no_pending_entry() {
    let (conn, mut server) = pair();
    // cancelled by a timeout while waiting for the answer
    let res = tokio::time::timeout(
        Duration::from_millis(50),
        conn.request_raw("thread/start", json!({})),
    )
    .await;
    assert!(res.is_err());
    assert_eq!(conn.stats().pending_requests, 0);
    let first = recv(&mut server).await;

    // dropped from another task, many at once
    let mut tasks = Vec::new();
    for i in 0..20 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            conn.request_raw("x", json!({ "i": i })).await
        }));
    }
    eventually(|| conn.stats().pending_requests == 20).await;
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        assert!(t.await.unwrap_err().is_cancelled());
    }
    assert_eq!(conn.stats().pending_requests, 0);

    // a late answer to a forgotten request is counted and ignored
    server.respond(&first["id"], json!({})).await.unwrap();
    eventually(|| conn.stats().unmatched_responses == 1).await;

    // the connection still works
    let fake = tokio::spawn(async move {
        loop {
            let req = recv(&mut server).await;
            if req["method"] == "ping" {
                server.respond(&req["id"], json!("pong")).await.unwrap();
                return server;
            }
        }
    });
    assert_eq!(
        conn.request_raw("ping", json!({})).await.unwrap(),
        json!("pong")
    );
    fake.await.unwrap();
}

#[tokio::test]
async fn notifications_are_ordered_and_routed_by_thread_and_turn() {
    let (conn, mut server) = pair();
    let mut all = conn.subscribe_all();
    let mut t1 = conn.subscribe_thread("t1");
    let mut u1 = conn.subscribe_turn("u1");
    server
        .notify("thread/started", json!({"thread": {"id": "t1"}}))
        .await
        .unwrap();
    server
        .notify(
            "turn/started",
            json!({"threadId": "t1", "turn": {"id": "u1"}}),
        )
        .await
        .unwrap();
    server
        .notify(
            "item/agentMessage/delta",
            json!({"threadId": "t2", "turnId": "u2", "itemId": "m", "delta": "x"}),
        )
        .await
        .unwrap();
    server
        .notify(
            "item/agentMessage/delta",
            json!({"threadId": "t1", "turnId": "u1", "itemId": "m", "delta": "y"}),
        )
        .await
        .unwrap();
    server.notify("account/updated", json!({})).await.unwrap();

    let mut methods = Vec::new();
    for _ in 0..5 {
        let n = all.next_notification().await.unwrap();
        methods.push(n.method().to_owned());
    }
    assert_eq!(
        methods,
        [
            "thread/started",
            "turn/started",
            "item/agentMessage/delta",
            "item/agentMessage/delta",
            "account/updated"
        ]
    );
    let n = t1.next_notification().await.unwrap();
    assert_eq!((n.method(), n.thread_id()), ("thread/started", Some("t1")));
    let n = t1.next_notification().await.unwrap();
    assert_eq!((n.method(), n.turn_id()), ("turn/started", Some("u1")));
    let n = t1.next_notification().await.unwrap();
    assert_eq!(n.params()["delta"], "y");
    let n = u1.next_notification().await.unwrap();
    assert_eq!(n.method(), "turn/started");
    let n = u1.next_notification().await.unwrap();
    assert_eq!(n.params()["delta"], "y");
    assert!(matches!(
        n.typed(),
        codex_asp::protocol::ServerNotification::AgentMessageDelta(_)
    ));
    assert_eq!(conn.stats().notifications, 5);
    assert_eq!(conn.stats().subscriptions, 3);
    drop(u1);
    assert_eq!(conn.stats().subscriptions, 2);
}

#[tokio::test]
async fn slow_subscribers_lag_explicitly_and_requests_keep_flowing() {
    let (conn, mut server) = pair_with(
        ConnectionOptions::default().subscription_capacity(4),
        TransportOptions::default(),
    );
    let mut slow = conn.subscribe_all();
    for i in 0..20 {
        server
            .notify("n", json!({"i": i, "threadId": "t"}))
            .await
            .unwrap();
    }
    eventually(|| conn.stats().notifications == 20).await;
    assert_eq!(conn.stats().lagged_events, 16);

    // the reader is not blocked: requests still work
    let fake = tokio::spawn(async move {
        let req = recv(&mut server).await;
        server.respond(&req["id"], json!("ok")).await.unwrap();
        server
    });
    assert_eq!(
        conn.request_raw("ping", json!({})).await.unwrap(),
        json!("ok")
    );
    let mut server = fake.await.unwrap();

    for i in 0..4 {
        let n = slow.next_notification().await.unwrap();
        assert_eq!(n.params()["i"], i);
    }
    server.notify("n", json!({"i": 20})).await.unwrap();
    assert!(matches!(
        slow.recv().await.unwrap(),
        ConnectionEvent::Lagged(16)
    ));
    let n = slow.next_notification().await.unwrap();
    assert_eq!(n.params()["i"], 20);

    // lag just before the end is reported before the close
    for i in 21..30 {
        server.notify("n", json!({"i": i})).await.unwrap();
    }
    eventually(|| conn.stats().notifications == 30).await;
    server.close().await;
    for i in 21..25 {
        assert_eq!(slow.next_notification().await.unwrap().params()["i"], i);
    }
    assert!(matches!(
        slow.recv().await.unwrap(),
        ConnectionEvent::Lagged(5)
    ));
    let err = slow.recv().await.unwrap_err();
    assert!(err.is_closed(), "{err}");
}

#[tokio::test]
async fn garbage_is_reported_and_skipped() {
    let (conn, mut server) = pair_with(
        ConnectionOptions::default(),
        TransportOptions::default().max_message_bytes(1024),
    );
    let mut all = conn.subscribe_all();
    let fake = tokio::spawn(async move {
        let req = recv(&mut server).await;
        server.send_line("this is not json").await.unwrap();
        server.send_line(r#"{"hello":"world"}"#).await.unwrap();
        server.send_line("[1,2,3]").await.unwrap();
        server.send_line(&"x".repeat(5000)).await.unwrap();
        server.send_raw(b"\xff\xfe\xfd\n").await.unwrap();
        server.send_line("").await.unwrap();
        server
            .respond(&req["id"], json!("still alive"))
            .await
            .unwrap();
        server
    });
    assert_eq!(
        conn.request_raw("ping", json!({})).await.unwrap(),
        json!("still alive")
    );
    let _server = fake.await.unwrap();
    assert_eq!(conn.stats().garbage_frames, 5);
    let mut reasons = Vec::new();
    for _ in 0..5 {
        match all.recv().await.unwrap() {
            ConnectionEvent::Garbage(g) => reasons.push(g.reason.to_string()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(reasons[0].starts_with("not JSON"), "{reasons:?}");
    assert_eq!(reasons[1], "not a JSON-RPC message");
    assert_eq!(reasons[2], "not a JSON-RPC message");
    assert_eq!(reasons[3], "line longer than 1024 bytes");
    assert_eq!(reasons[4], "not UTF-8");
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn process_exit_fails_everything_fast_with_status_and_stderr() {
    let (conn, mut server) = pair();
    let mut sub = conn.subscribe_thread("t");
    let mut tasks = Vec::new();
    for i in 0..3 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            conn.request_raw("thread/start", json!({ "i": i })).await
        }));
    }
    for _ in 0..3 {
        recv(&mut server).await;
    }
    let start = Instant::now();
    server
        .exit(
            std::process::ExitStatus::from_raw(3 << 8),
            "fatal: config broken\n",
        )
        .await;
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(err.exit_status().and_then(|s| s.code()), Some(3), "{err}");
        assert_eq!(err.stderr_tail(), Some("fatal: config broken\n"));
        assert!(err.to_string().contains("exit code 3"), "{err}");
        assert!(err.to_string().contains("fatal: config broken"), "{err}");
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let err = sub.recv().await.unwrap_err();
    assert_eq!(err.exit_status().and_then(|s| s.code()), Some(3));
    assert!(matches!(
        conn.close_reason(),
        Some(CloseReason::ProcessExited { .. })
    ));
    // later calls fail at once, with the same reason
    let err = conn.request_raw("x", json!({})).await.unwrap_err();
    assert_eq!(err.exit_status().and_then(|s| s.code()), Some(3));
    let err = conn.notify_raw("x", json!({})).await.unwrap_err();
    assert!(err.is_closed());
    let mut late = conn.subscribe_all();
    assert!(late.recv().await.unwrap_err().is_closed());
}

#[tokio::test]
async fn end_of_stream_closes_as_peer_closed() {
    let (conn, mut server) = pair();
    let pending = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.request_raw("x", json!({})).await })
    };
    recv(&mut server).await;
    server.close().await;
    let err = pending.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err.close_reason(),
            Some(CloseReason::PeerClosed { code: None, .. })
        ),
        "{err}"
    );
    assert!(matches!(
        conn.closed().await,
        CloseReason::PeerClosed { .. }
    ));
}

#[tokio::test]
async fn dropping_the_connection_closes_the_transport() {
    let (conn, mut server) = pair();
    let sub = conn.subscribe_all();
    drop(conn);
    assert_eq!(
        tokio::time::timeout(WAIT, server.recv_line())
            .await
            .unwrap(),
        None
    );
    let mut sub = sub;
    let err = sub.recv().await.unwrap_err();
    assert!(matches!(
        err.close_reason(),
        Some(CloseReason::ClientClosed)
    ));
}

#[tokio::test]
async fn oversized_outgoing_messages_are_refused_without_harm() {
    let (conn, mut server) = pair_with(
        ConnectionOptions::default().max_message_bytes(2048),
        TransportOptions::default(),
    );
    let err = conn
        .request_raw("big", json!({"blob": "x".repeat(4096)}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { max: 2048, .. }),
        "{err}"
    );
    let fake = tokio::spawn(async move {
        let req = recv(&mut server).await;
        server.respond(&req["id"], json!(1)).await.unwrap();
        server
    });
    assert_eq!(
        conn.request_raw("small", json!({})).await.unwrap(),
        json!(1)
    );
    fake.await.unwrap();
}

#[tokio::test]
async fn subscribing_from_a_result_misses_nothing() {
    let (conn, mut server) = pair();
    let fake = tokio::spawn(async move {
        let req = recv(&mut server).await;
        // the answer and the first notification arrive back to back
        let both = format!(
            "{}\n{}\n",
            json!({"id": req["id"], "result": {"thread": {"id": "th-9"}}}),
            json!({"method": "thread/started", "params": {"thread": {"id": "th-9"}}}),
        );
        server.send_raw(both.as_bytes()).await.unwrap();
        server
    });
    let (result, sub) = conn
        .request_raw_subscribed("thread/start", json!({}), Filter::result_thread)
        .await
        .unwrap();
    assert_eq!(result["thread"]["id"], "th-9");
    let mut sub = sub.expect("subscribed");
    let n = sub.next_notification().await.unwrap();
    assert_eq!(
        (n.method(), n.thread_id()),
        ("thread/started", Some("th-9"))
    );
    fake.await.unwrap();
}

// ---------------------------------------------------------------------------------------
// server-to-client requests

#[tokio::test]
async fn default_handler_declines_and_ids_do_not_collide() {
    let (conn, mut server) = pair();
    let mut all = conn.subscribe_all();
    let pending = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.request_raw("turn/start", json!({})).await })
    };
    let req = recv(&mut server).await;
    assert_eq!(req["id"], 0);
    // the server's own request also has id 0
    server
        .request(
            json!(0),
            "item/commandExecution/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "call-1", "command": "touch x"}),
        )
        .await
        .unwrap();
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 0, "result": {"decision": "decline"}})
    );
    server
        .request(
            json!(1),
            "item/fileChange/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "p"}),
        )
        .await
        .unwrap();
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 1, "result": {"decision": "decline"}})
    );
    server
        .request(json!("s-2"), "attestation/generate", json!({}))
        .await
        .unwrap();
    let answer = recv(&mut server).await;
    assert_eq!(answer["id"], "s-2");
    assert_eq!(answer["error"]["code"], -32601);
    // the client's request 0 is still waiting, and gets its own answer
    server
        .respond(&json!(0), json!({"turn": {"id": "u"}}))
        .await
        .unwrap();
    assert_eq!(
        pending.await.unwrap().unwrap(),
        json!({"turn": {"id": "u"}})
    );
    // observers saw the requests
    match all.recv().await.unwrap() {
        ConnectionEvent::ServerRequest(r) => {
            assert_eq!(r.method(), "item/commandExecution/requestApproval");
            assert_eq!(r.turn_id(), Some("u"));
        }
        other => panic!("unexpected {other:?}"),
    }
    eventually(|| conn.stats().pending_server_requests == 0).await;
}

#[tokio::test]
async fn channel_handles_answer_or_decline_on_drop() {
    let (handler, mut requests) = ChannelHandler::new(4);
    let (conn, mut server) = pair_with(
        ConnectionOptions::default().approval_handler(handler),
        TransportOptions::default(),
    );
    server
        .request(
            json!(0),
            "item/commandExecution/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "c", "proposedExecpolicyAmendment": ["touch", "x"]}),
        )
        .await
        .unwrap();
    let pending = requests.recv().await.unwrap();
    assert_eq!(pending.request().item_id(), Some("c"));
    assert_eq!(conn.stats().pending_server_requests, 1);
    pending.respond(Decision::AcceptWithExecpolicyAmendment(vec![
        "touch".into(),
        "x".into(),
    ]));
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 0, "result": {"decision": {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["touch", "x"]}}}})
    );

    server
        .request(
            json!(1),
            "mcpServer/elicitation/request",
            json!({"threadId": "t", "serverName": "s"}),
        )
        .await
        .unwrap();
    let pending = requests.recv().await.unwrap();
    drop(pending); // nobody answers
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 1, "result": {"action": "decline"}})
    );

    server
        .request(json!(2), "item/tool/requestUserInput", json!({"threadId": "t", "turnId": "u", "itemId": "q", "questions": [], "isBlocking": true}))
        .await
        .unwrap();
    let pending = requests.recv().await.unwrap();
    pending.respond(ServerReply::Result(
        json!({"answers": {"q1": {"answers": ["yes"]}}}),
    ));
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 2, "result": {"answers": {"q1": {"answers": ["yes"]}}}})
    );
    eventually(|| conn.stats().pending_server_requests == 0).await;
}

#[tokio::test]
async fn a_request_resolved_by_the_server_is_not_answered() {
    let (handler, mut requests) = ChannelHandler::new(4);
    let (conn, mut server) = pair_with(
        ConnectionOptions::default().approval_handler(handler),
        TransportOptions::default(),
    );
    server
        .request(
            json!(5),
            "item/fileChange/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "p"}),
        )
        .await
        .unwrap();
    let pending = requests.recv().await.unwrap();
    server
        .notify(
            "serverRequest/resolved",
            json!({"threadId": "t", "requestId": 5}),
        )
        .await
        .unwrap();
    tokio::time::timeout(WAIT, pending.request().resolved())
        .await
        .unwrap();
    assert!(pending.request().is_resolved());
    pending.accept();
    // the next message the server sees is the answer to a later request, not to 5
    server
        .request(
            json!(6),
            "item/fileChange/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "p2"}),
        )
        .await
        .unwrap();
    requests.recv().await.unwrap().decline();
    assert_eq!(recv(&mut server).await["id"], 6);
    assert_eq!(conn.stats().pending_server_requests, 0);
}

struct Panics;

#[async_trait]
impl ApprovalHandler for Panics {
    async fn handle(&self, _request: ServerRequestCtx) -> ServerReply {
        panic!("handler bug")
    }
}

#[tokio::test]
async fn a_panicking_handler_declines() {
    let (_conn, mut server) = pair_with(
        ConnectionOptions::default().approval_handler(Panics),
        TransportOptions::default(),
    );
    server
        .request(
            json!(0),
            "item/fileChange/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "p"}),
        )
        .await
        .unwrap();
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 0, "result": {"decision": "decline"}})
    );
}

#[tokio::test]
async fn tower_services_and_fixed_decisions_are_handlers() {
    let handler = ServiceHandler::new(tower::service_fn(|req: ServerRequestCtx| async move {
        let reply = if req.method() == "item/permissions/requestApproval" {
            Decision::AcceptForSession
        } else {
            Decision::Cancel
        };
        Ok::<_, std::convert::Infallible>(ServerReply::from(reply))
    }));
    let (_conn, mut server) = pair_with(
        ConnectionOptions::default().approval_handler(handler),
        TransportOptions::default(),
    );
    server
        .request(
            json!(0),
            "item/permissions/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "i", "permissions": {"fileSystem": {"write": ["/w"]}}}),
        )
        .await
        .unwrap();
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 0, "result": {"permissions": {"fileSystem": {"write": ["/w"]}}, "scope": "session"}})
    );
    server
        .request(
            json!(1),
            "item/fileChange/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "p"}),
        )
        .await
        .unwrap();
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 1, "result": {"decision": "cancel"}})
    );

    let (_conn, mut server) = pair_with(
        ConnectionOptions::default().approval_handler(AlwaysDecide(Decision::Accept)),
        TransportOptions::default(),
    );
    server
        .request(
            json!(0),
            "execCommandApproval",
            json!({"conversationId": "c", "callId": "x", "command": ["ls"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        recv(&mut server).await,
        json!({"id": 0, "result": {"decision": "approved"}})
    );
}

// ---------------------------------------------------------------------------------------
// tower

/// A fake server that answers `model/list` with -32001 `overloads` times, then succeeds.
fn overloaded_server(mut server: MemoryServer, overloads: usize) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut seen = 0;
        while let Some(req) = server.recv_json().await {
            seen += 1;
            if seen <= overloads {
                server
                    .respond_error(&req["id"], -32001, "Server overloaded; retry later.")
                    .await
                    .unwrap();
            } else {
                server
                    .respond(&req["id"], json!({"data": []}))
                    .await
                    .unwrap();
            }
        }
        seen
    })
}

#[tokio::test]
async fn retry_policy_retries_overloads_with_backoff() {
    let (conn, server) = pair();
    let fake = overloaded_server(server, 2);
    let mut svc = ServiceBuilder::new()
        .retry(OverloadRetry::new(3).base_delay(Duration::from_millis(10)))
        .service(AspService::new(conn.clone()));
    let start = Instant::now();
    let answer = svc
        .ready()
        .await
        .unwrap()
        .call(RawRequest::new("model/list", json!({})))
        .await
        .unwrap();
    assert_eq!(answer, json!({"data": []}));
    // two retries: at least 5 + 10 ms of backoff
    assert!(start.elapsed() >= Duration::from_millis(15));
    drop(svc);
    drop(conn);
    assert_eq!(fake.await.unwrap(), 3);
}

#[tokio::test]
async fn retry_policy_gives_up_and_typed_calls_work_through_it() {
    let (conn, server) = pair();
    let fake = overloaded_server(server, 2);
    let mut svc = ServiceBuilder::new()
        .retry(OverloadRetry::new(1).base_delay(Duration::from_millis(1)))
        .service(AspService::new(conn.clone()));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(RawRequest::new("model/list", json!({})))
        .await
        .unwrap_err();
    assert!(err.is_overloaded(), "{err}");
    // the third attempt succeeds, typed
    let mut typed = ServiceBuilder::new()
        .retry(OverloadRetry::new(1).base_delay(Duration::from_millis(1)))
        .service(TypedService::<ModelList>::new(conn.clone()));
    let models = typed
        .ready()
        .await
        .unwrap()
        .call(ModelListParams::default())
        .await
        .unwrap();
    drop(typed);
    assert!(models.data.is_empty());
    drop(svc);
    drop(conn);
    assert_eq!(fake.await.unwrap(), 3);
}

#[tokio::test]
async fn standard_stack_times_out_and_forgets_the_request() {
    let (conn, mut server) = pair();
    let svc = standard_stack(conn.clone(), 4, Duration::from_millis(50), 2);
    let err = svc
        .oneshot(RawRequest::new("thread/start", json!({})))
        .await
        .unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(conn.stats().pending_requests, 0);
    recv(&mut server).await;

    // overloads are retried through the boxed stack too
    let fake = overloaded_server(server, 2);
    let svc = standard_stack(conn.clone(), 4, WAIT, 5);
    let answer = svc
        .oneshot(RawRequest::new("model/list", json!({})))
        .await
        .unwrap();
    assert_eq!(answer, json!({"data": []}));
    drop(conn);
    assert_eq!(fake.await.unwrap(), 3);
}

#[tokio::test]
async fn concurrency_limit_bounds_requests_in_flight() {
    let (conn, mut server) = pair();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let fake = {
        let (in_flight, max_seen) = (in_flight.clone(), max_seen.clone());
        tokio::spawn(async move {
            let mut waiting = Vec::new();
            let mut answered = 0;
            while answered < 6 {
                // collect what arrives within a short window, then answer it all
                while let Ok(Some(req)) =
                    tokio::time::timeout(Duration::from_millis(30), server.recv_json()).await
                {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    waiting.push(req);
                }
                for req in waiting.drain(..) {
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    server.respond(&req["id"], json!(null)).await.unwrap();
                    answered += 1;
                }
            }
            server
        })
    };
    let svc = ServiceBuilder::new()
        .concurrency_limit(2)
        .service(AspService::new(conn.clone()));
    let calls = (0..6).map(|i| svc.clone().oneshot(RawRequest::new("x", json!({ "i": i }))));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let max = max_seen.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&max),
        "{max} requests were in flight at once"
    );
    fake.await.unwrap();
}

/// A transport whose writer never finishes a write (it counts the writes it started), and
/// whose reader never reads anything.
#[derive(Clone, Default)]
struct Stuck {
    writes: Arc<AtomicUsize>,
}

#[async_trait]
impl FrameRead for Stuck {
    async fn recv(&mut self) -> Frame {
        std::future::pending().await
    }
}

#[async_trait]
impl FrameWrite for Stuck {
    async fn send(&mut self, _text: String) -> codex_asp::Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
    async fn close(&mut self) -> codex_asp::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn poll_ready_reflects_the_bounded_outbound_queue() {
    let stuck = Stuck::default();
    let conn = Connection::new(
        Transport::new(stuck.clone(), stuck.clone(), "stuck"),
        ConnectionOptions::default().outbound_queue(2),
    );
    let mut svc = AspService::new(conn.clone());
    let mut fired = Vec::new();
    // one message is taken by the stuck writer, two wait in the queue
    for i in 0..3 {
        futures::future::poll_fn(|cx| {
            <AspService as Service<RawRequest>>::poll_ready(&mut svc, cx)
        })
        .await
        .unwrap();
        fired.push(tokio::spawn(
            svc.call(RawRequest::new("x", json!({ "i": i }))),
        ));
        if i == 0 {
            eventually(|| stuck.writes.load(Ordering::SeqCst) == 1).await;
        }
    }
    let ready = futures::future::poll_fn(|cx| {
        Poll::Ready(<AspService as Service<RawRequest>>::poll_ready(
            &mut svc, cx,
        ))
    })
    .await;
    assert!(ready.is_pending(), "the queue is full");
    assert_eq!(conn.stats().pending_requests, 3);
    for f in fired {
        f.abort();
    }
}

#[tokio::test]
async fn a_panicking_subscription_filter_does_not_break_the_connection() {
    let (conn, mut server) = pair();
    let fake = tokio::spawn(async move {
        for _ in 0..2 {
            let req = recv(&mut server).await;
            server
                .respond(&req["id"], json!({"ok": true}))
                .await
                .unwrap();
        }
        server
    });
    let (value, sub) = conn
        .request_raw_subscribed("x", json!({}), |_| panic!("filter bug"))
        .await
        .unwrap();
    assert_eq!(value, json!({"ok": true}));
    assert!(sub.is_none());
    assert_eq!(
        conn.request_raw("y", json!({})).await.unwrap(),
        json!({"ok": true})
    );
    fake.await.unwrap();
}
