//! Fuzz target `connection`: the connection driver, played against by a hostile app-server
//! over the in-memory transport while the client has calls pending.
//!
//! One case: the client starts 1 to 5 calls; the server reads them, then sends a random
//! mix of answers (with the right id, an unknown one, one of the wrong JSON type; a second
//! answer to the same call; error objects with mistyped codes, messages and data), floods
//! of notifications (with a subscriber that never reads), server requests with ids of every
//! type, mutated recorded messages, invalid UTF-8 and over-long lines; then it either stays
//! open (answers what is left and serves one more call), closes its stream, or "exits".
//!
//! With `CODEX_BRIDGE_FUZZ_CASES=N` it runs N/10 cases (each one a batch, see
//! [`fuzz_connection_driver`]).
//!
//! Properties: no panic and no hang (every case runs under a timeout); each call gets the
//! first answer that carried its id (as the frame classification says) or, if none came,
//! the late answer (open), or a typed "closed" error (closed / exited); the connection is
//! still usable when the server stayed open, and refuses new calls with a typed error when
//! it did not.

use std::os::unix::process::ExitStatusExt as _;
use std::sync::OnceLock;
use std::time::Duration;

use codex_core::fuzzing::{self, Input};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::error::{CloseReason, Error};
use crate::jsonrpc::Message as Incoming;
use crate::transport::TransportOptions;
use crate::transport::memory::{self, MemoryServer};
use crate::{Connection, ConnectionOptions};

/// The line bound of the case's transport (small, so that over-long lines are cheap).
const MAX_LINE: usize = 4096;
/// How long one case may take before it counts as a hang.
const CASE_LIMIT: Duration = Duration::from_secs(20);
const SENTINEL_THREAD: &str = "fuzz-sentinel-thread";

/// How an answer names the call it answers.
#[derive(Debug, Clone)]
enum IdForm {
    Exact,
    /// The id plus this (non-zero) offset: an unknown id.
    Offset(i64),
    String,
    Float,
    Null,
    Object,
    Array,
    Bool,
    Huge,
}

#[derive(Debug, Clone)]
enum Body {
    Result(Value),
    Error {
        code: Value,
        message: Value,
        data: Option<Value>,
    },
    /// `"error"` that is not an object.
    ErrorNotObject(Value),
    /// Neither `result` nor `error`.
    Neither,
}

#[derive(Debug, Clone)]
enum Step {
    Answer { call: usize, id: IdForm, body: Body },
    Frame(Input),
    Flood(u16),
    ServerRequest { id: Value, method: String },
    OverLong(usize),
    NotUtf8,
}

#[derive(Debug, Clone, Copy)]
enum End {
    Open,
    Close,
    Exit,
}

#[derive(Debug, Clone)]
struct Plan {
    calls: usize,
    subscriber: bool,
    steps: Vec<Step>,
    end: End,
}

fn id_form() -> BoxedStrategy<IdForm> {
    prop_oneof![
        6 => Just(IdForm::Exact),
        2 => prop_oneof![Just(1i64), Just(-1), Just(1_000_000), Just(i64::MIN / 2)].prop_map(IdForm::Offset),
        1 => Just(IdForm::String),
        1 => Just(IdForm::Float),
        1 => Just(IdForm::Null),
        1 => Just(IdForm::Object),
        1 => Just(IdForm::Array),
        1 => Just(IdForm::Bool),
        1 => Just(IdForm::Huge),
    ]
    .boxed()
}

fn body() -> BoxedStrategy<Body> {
    prop_oneof![
        4 => fuzzing::any_json(2).prop_map(Body::Result),
        3 => (fuzzing::odd_scalar(), fuzzing::odd_scalar(), prop::option::of(fuzzing::any_json(2)))
            .prop_map(|(code, message, data)| Body::Error { code, message, data }),
        1 => fuzzing::any_json(1).prop_map(Body::ErrorNotObject),
        1 => Just(Body::Neither),
    ]
    .boxed()
}

fn step() -> BoxedStrategy<Step> {
    prop_oneof![
        6 => (0usize..5, id_form(), body()).prop_map(|(call, id, body)| Step::Answer { call, id, body }),
        4 => fuzzing::mutated(super::corpus()).prop_map(Step::Frame),
        1 => prop_oneof![1u16..50, 500u16..3000].prop_map(Step::Flood),
        2 => (fuzzing::odd_scalar(), prop::sample::select(&[
                "item/commandExecution/requestApproval",
                "item/fileChange/requestApproval",
                "item/tool/requestUserInput",
                "mcpServer/elicitation/request",
                "fuzz/unknown",
                "",
            ][..]))
            .prop_map(|(id, method)| Step::ServerRequest { id, method: method.to_owned() }),
        1 => prop_oneof![Just(MAX_LINE + 1), Just(MAX_LINE * 3)].prop_map(Step::OverLong),
        1 => Just(Step::NotUtf8),
    ]
    .boxed()
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        1usize..6,
        any::<bool>(),
        prop::collection::vec(step(), 0..16),
        prop_oneof![4 => Just(End::Open), 1 => Just(End::Close), 1 => Just(End::Exit)],
    )
        .prop_map(|(calls, subscriber, steps, end)| Plan {
            calls,
            subscriber,
            steps,
            end,
        })
}

fn id_value(form: &IdForm, id: i64) -> Value {
    match form {
        IdForm::Exact => json!(id),
        IdForm::Offset(d) => json!(id.wrapping_add(*d)),
        IdForm::String => json!(id.to_string()),
        IdForm::Float => json!(id as f64 + 0.5),
        IdForm::Null => Value::Null,
        IdForm::Object => json!({ "id": id }),
        IdForm::Array => json!([id]),
        IdForm::Bool => json!(true),
        IdForm::Huge => json!(u64::MAX),
    }
}

fn answer_text(id: Value, body: &Body) -> String {
    let mut msg = serde_json::Map::new();
    msg.insert("id".into(), id);
    match body {
        Body::Result(v) => {
            msg.insert("result".into(), v.clone());
        }
        Body::Error {
            code,
            message,
            data,
        } => {
            let mut e = serde_json::Map::new();
            e.insert("code".into(), code.clone());
            e.insert("message".into(), message.clone());
            if let Some(d) = data {
                e.insert("data".into(), d.clone());
            }
            msg.insert("error".into(), Value::Object(e));
        }
        Body::ErrorNotObject(v) => {
            msg.insert("error".into(), v.clone());
        }
        Body::Neither => {}
    }
    Value::Object(msg).to_string()
}

/// What a call must end with.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Ok(Value),
    Rpc {
        code: i64,
        message: String,
        data: Option<Value>,
    },
}

/// Books the answers a frame gives: the lines the transport cuts it into, classified as the
/// driver classifies them; the first answer to carry a pending call's id wins.
fn book(bytes: &[u8], ids: &[i64], expect: &mut [Option<Expect>]) {
    for line in bytes.split(|b| *b == b'\n') {
        // the bound counts the line as sent, `\r` included
        if line.len() > MAX_LINE {
            continue;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let Ok(Incoming::Response { id, outcome }) = Incoming::parse(text) else {
            continue;
        };
        let Some(i) = id.as_i64().and_then(|id| ids.iter().position(|x| *x == id)) else {
            continue;
        };
        if expect[i].is_none() {
            expect[i] = Some(match outcome {
                Ok(v) => Expect::Ok(v),
                Err(e) => Expect::Rpc {
                    code: e.code,
                    message: e.message,
                    data: e.data,
                },
            });
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

async fn send(server: &mut MemoryServer, bytes: &[u8]) -> Result<(), TestCaseError> {
    server
        .send_raw(bytes)
        .await
        .map_err(|e| TestCaseError::fail(format!("the pipe broke: {e}")))
}

async fn run_case(plan: Plan) -> Result<(), TestCaseError> {
    let (transport, mut server) =
        memory::pair(TransportOptions::default().max_message_bytes(MAX_LINE));
    let conn = Connection::new(
        transport,
        ConnectionOptions::default().subscription_capacity(16),
    );
    let idle = plan.subscriber.then(|| conn.subscribe_all());
    let mut sentinel = conn.subscribe_thread(SENTINEL_THREAD);
    let calls: Vec<_> = (0..plan.calls)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.request_raw("fuzz/call", json!({ "i": i })).await })
        })
        .collect();
    // the calls' ids, by call
    let mut ids = vec![i64::MIN; plan.calls];
    for _ in 0..plan.calls {
        let Some(line) = server.recv_line().await else {
            return Err(TestCaseError::fail(
                "the client closed before sending its calls",
            ));
        };
        let req: Value =
            serde_json::from_str(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let i = req["params"]["i"].as_u64().unwrap_or(u64::MAX) as usize;
        prop_assert!(i < plan.calls, "unexpected request {line}");
        ids[i] = req["id"].as_i64().unwrap_or(i64::MIN);
    }
    // the client writes little more (answers to server requests, one small line each), far
    // less than the pipe holds: nothing needs to read it until the end
    let mut expect: Vec<Option<Expect>> = vec![None; plan.calls];
    for step in &plan.steps {
        let bytes: Vec<u8> = match step {
            Step::Answer { call, id, body } => {
                let call = call % plan.calls;
                let mut text = answer_text(id_value(id, ids[call]), body).into_bytes();
                text.push(b'\n');
                text
            }
            Step::Frame(input) => {
                let mut bytes = input.0.clone();
                bytes.push(b'\n');
                bytes
            }
            Step::Flood(n) => {
                let mut bytes = Vec::new();
                for k in 0..*n {
                    bytes.extend_from_slice(
                        json!({"method": "item/agentMessage/delta", "params": {"threadId": "t", "turnId": "u", "itemId": "i", "delta": k.to_string()}})
                            .to_string()
                            .as_bytes(),
                    );
                    bytes.push(b'\n');
                }
                bytes
            }
            Step::ServerRequest { id, method } => {
                let mut text = json!({"id": id, "method": method, "params": {"threadId": "t", "turnId": "u", "itemId": "i"}})
                    .to_string()
                    .into_bytes();
                text.push(b'\n');
                text
            }
            Step::OverLong(n) => {
                // an answer to call 0, too long to be read: it must not count
                let mut text =
                    answer_text(json!(ids[0]), &Body::Result(json!("x".repeat(*n)))).into_bytes();
                text.push(b'\n');
                text
            }
            Step::NotUtf8 => {
                let mut text = answer_text(json!(ids[0]), &Body::Result(json!("ok"))).into_bytes();
                let at = text.len() - 3;
                text.insert(at, 0xff);
                text.push(b'\n');
                text
            }
        };
        book(&bytes, &ids, &mut expect);
        send(&mut server, &bytes).await?;
    }

    match plan.end {
        End::Open => {
            // once the driver has read everything above, answer what is left
            let marker =
                json!({"method": "fuzz/sentinel", "params": {"threadId": SENTINEL_THREAD}});
            send(&mut server, format!("{marker}\n").as_bytes()).await?;
            loop {
                let event = sentinel.recv().await.map_err(|e| {
                    TestCaseError::fail(format!("the sentinel subscription ended: {e}"))
                })?;
                if event
                    .notification()
                    .is_some_and(|n| n.method() == "fuzz/sentinel")
                {
                    break;
                }
            }
            for (i, slot) in expect.iter_mut().enumerate() {
                if slot.is_none() {
                    let late = json!({"late": i});
                    send(
                        &mut server,
                        format!("{}\n", json!({"id": ids[i], "result": late})).as_bytes(),
                    )
                    .await?;
                    *slot = Some(Expect::Ok(late));
                }
            }
            for (i, call) in calls.into_iter().enumerate() {
                let got = call
                    .await
                    .map_err(|e| TestCaseError::fail(format!("call task: {e}")))?;
                check_call(i, got, expect[i].as_ref())?;
            }
            // still usable: one more call, answered
            let conn2 = conn.clone();
            let last =
                tokio::spawn(async move { conn2.request_raw("fuzz/after", json!({})).await });
            let id = loop {
                let Some(line) = server.recv_line().await else {
                    return Err(TestCaseError::fail("the client's side closed"));
                };
                let msg: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if msg["method"] == "fuzz/after" {
                    break msg["id"].clone();
                }
            };
            send(
                &mut server,
                format!("{}\n", json!({"id": id, "result": {"after": true}})).as_bytes(),
            )
            .await?;
            let got = last
                .await
                .map_err(|e| TestCaseError::fail(format!("call task: {e}")))?;
            prop_assert_eq!(
                got.ok(),
                Some(json!({"after": true})),
                "the connection is not usable any more"
            );
            prop_assert!(!conn.is_closed());
            prop_assert_eq!(conn.stats().pending_requests, 0);
        }
        End::Close | End::Exit => {
            let exited = matches!(plan.end, End::Exit);
            if exited {
                server
                    .exit(std::process::ExitStatus::from_raw(9), "fuzz tail")
                    .await;
            } else {
                server.close().await;
            }
            for (i, call) in calls.into_iter().enumerate() {
                let got = call
                    .await
                    .map_err(|e| TestCaseError::fail(format!("call task: {e}")))?;
                match (&expect[i], got) {
                    (Some(want), got) => check_call(i, got, Some(want))?,
                    (None, Err(Error::Closed { .. })) => {}
                    (None, other) => {
                        prop_assert!(false, "call {i}: {other:?} instead of a closed error")
                    }
                }
            }
            let reason = conn.closed().await;
            if exited {
                prop_assert!(
                    matches!(reason, CloseReason::ProcessExited { .. }),
                    "{reason:?}"
                );
            }
            let after = conn.request_raw("fuzz/after", json!({})).await;
            prop_assert!(matches!(after, Err(Error::Closed { .. })), "{after:?}");
        }
    }
    // the subscriber that never read: it sees what fit, then (maybe) a lag, then the end
    server.close().await;
    conn.closed().await;
    if let Some(mut sub) = idle {
        while sub.recv().await.is_ok() {}
    }
    Ok(())
}

fn check_call(
    i: usize,
    got: crate::error::Result<Value>,
    want: Option<&Expect>,
) -> Result<(), TestCaseError> {
    match (want, got) {
        (Some(Expect::Ok(v)), Ok(got)) => prop_assert_eq!(&got, v, "call {}", i),
        (
            Some(Expect::Rpc {
                code,
                message,
                data,
            }),
            Err(Error::Rpc { error, .. }),
        ) => {
            prop_assert_eq!(
                (error.code, &error.message, &error.data),
                (*code, message, data),
                "call {}",
                i
            );
        }
        (want, got) => prop_assert!(false, "call {i}: expected {want:?}, got {got:?}"),
    }
    Ok(())
}

#[test]
fn fuzz_connection_driver() {
    // one case is a batch: up to 16 frames and floods of up to 3,000 notifications, with
    // a connection set up and torn down around them (about 450 cases/s optimised)
    fuzzing::run("connection/driver", 10, plan(), |plan| {
        runtime().block_on(async move {
            match tokio::time::timeout(CASE_LIMIT, run_case(plan)).await {
                Ok(result) => result,
                Err(_) => Err(TestCaseError::fail(format!(
                    "HANG: the case did not finish within {CASE_LIMIT:?}"
                ))),
            }
        })
    });
}
