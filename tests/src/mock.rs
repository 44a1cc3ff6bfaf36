//! A scriptable mock of the OpenAI Responses API, for driving the real codex binary offline.
//!
//! [`MockModel::start`] binds `127.0.0.1:0` (never any other address) and answers
//! `POST /v1/responses` with a `text/event-stream` body, one `event: TYPE\ndata: JSON\n\n`
//! block per event. Point a private `CODEX_HOME` at it with [`crate::home::CodexHome`].
//!
//! # Choosing the reply
//! For every `POST /v1/responses` the mock picks, in this order:
//! 1. the first reply queued with [`MockModel::push_for`] whose predicate matches the request
//!    (consumed once; useful when several threads share one mock);
//! 2. the front of the FIFO filled by [`MockModel::push`];
//! 3. the responder set with [`MockModel::set_responder`];
//! 4. else `Reply::text(format!("echo: {last user text}"))`, so concurrent clients each get an
//!    answer of their own.
//!
//! Every request is recorded, including those to other paths (answered 404) and those whose
//! body is not JSON (answered 400): see [`MockModel::requests`] and [`RecordedRequest`].
//! Each answered request gets a number `N` (1, 2, ... per mock) used in the ids of its events
//! (`resp-N`, `msg-N`, `rs-N`, `fc-N`, `ctc-N`).
//!
//! The server runs on a thread and runtime of its own, so it keeps answering while a test
//! blocks (for instance in `std::process::Command::output`) and it works from any runtime
//! flavour. Dropping the [`MockModel`] stops it at once: the listener closes and every open
//! connection, hanging streams included, is dropped.
//!
//! # What the real codex 0.169.0 does against it (checked on the binary)
//! Requests:
//! - `codex exec` and `codex app-server` only ever send `POST {base_url}/responses`: no
//!   `GET /models` (not even for the app-server's `model/list`, answered from the bundled
//!   catalog), no WebSocket upgrade (with `supports_websockets = false`), no other path.
//!   Bodies are plain JSON (no `content-encoding`), about 40 KB for a first turn.
//! - Body keys: `model, stream (true), input, tools, tool_choice ("auto"),
//!   parallel_tool_calls, reasoning ({"effort":"medium"}), store (false), include
//!   (["reasoning.encrypted_content"]), prompt_cache_key (the thread id), text, client_metadata`.
//!   `text` is `{"verbosity":"low"}`; with `--output-schema FILE` it also carries
//!   `format: {"type":"json_schema","name":..,"strict":true,"schema":<the file's schema>}`.
//! - `input` starts with two `developer` messages (instructions, skills) and a `user` message
//!   holding `<environment_context>` (cwd, shell, date, ...), then the prompt as the last `user`
//!   message. A prompt read from stdin keeps its trailing newline (`echo hi |` gives `"hi\n"`).
//!   A resumed thread (`exec resume ID`) sends the earlier turns again, then the new prompt.
//! - Tools offered to gpt-5.5: `exec_command, write_stdin, request_user_input, apply_patch`
//!   (a `custom` freeform tool), `view_image, get_goal, create_goal, update_goal, tool_search,
//!   web_search` (the last two have no name; [`RecordedRequest::tools`] reports their type).
//! - Headers include `originator` (`codex_exec` for exec; the app-server sends the client's
//!   `clientInfo.name`), `session-id`, `thread-id`, `x-client-request-id`,
//!   `x-codex-turn-metadata` (JSON: turn id, sandbox, the git state of the cwd's repository)
//!   and `accept: text/event-stream`; with `requires_openai_auth = false` and no `env_key`
//!   there is no `authorization` header.
//! - After a tool call the next request repeats the history and adds the model's
//!   `function_call` / `custom_tool_call` item and a `function_call_output` /
//!   `custom_tool_call_output` whose `output` is a string. For `exec_command` it reads
//!   `"Chunk ID: ..\nWall time: .. seconds\nProcess exited with code 0\nOriginal token count:
//!   N\nOutput:\n<output>"`. The follow-up may come on a new connection.
//!
//! What `codex exec --json` makes of the replies (recorded in `tests/fixtures/exec/`):
//! - `exec_command` runs as `/bin/bash -c '<cmd>'` (with `login: false`), under a PTY in a
//!   session of its own; the item is `command_execution` with `aggregated_output` (stdout and
//!   stderr together), `exit_code`, and status `completed`, or `failed` for a non-zero exit.
//! - `apply_patch` gives a `file_change` item with absolute paths and `kind` add/update/delete.
//! - A reasoning item's summary becomes `{"type":"reasoning","text":..}`; streamed deltas are
//!   not shown, only the final `agent_message`. An item is printed as soon as its
//!   `output_item.done` arrives, before `response.completed`.
//! - `turn.completed.usage` adds up every request of the turn (20/10 after one tool call).
//! - Errors are an `error` event then `turn.failed` with the same message, exit code 1, and
//!   one request only (retries are 0):
//!   500 gives the canned "We’re currently experiencing high demand, which may cause
//!   temporary errors."; 429 gives "exceeded retry limit, last status: 429 Too Many Requests";
//!   400 gives the raw response body; 401 / 503 give "unexpected status 401 Unauthorized:
//!   `<error.message>`, url: `<url>`"; `response.failed` gives "stream disconnected before
//!   completion: `<error.message>`"; a stream that ends without `response.completed` is
//!   "stream disconnected before completion".
//! - An unreachable provider (connection refused) is retried forever, printing `error`
//!   events "Reconnecting... waiting for network (..)", whatever the retry settings.
//! - With the prompt in argv and stdin not a terminal, codex still reads stdin to the end
//!   (printing "Reading additional input from stdin..." on stderr) and appends it to the
//!   prompt: give it `Stdio::null()` or the prompt on stdin with `-`.
//!
//! And the app-server (`codex app-server` over stdio):
//! - An `exec_command` with `sandbox_permissions: "require_escalated"`
//!   ([`Reply::exec_command_escalated`]) under `approval_policy = "on-request"` and
//!   `sandbox_mode = "workspace-write"` raises `item/commandExecution/requestApproval` with
//!   `itemId` = the call id and `reason` = the justification; after `accept` the command runs.
//! - Item ids come from the wire: the `agentMessage` id is the mock's `msg-N`, the
//!   `commandExecution` id is the call id.
//! - With a workspace-write sandbox and no `bwrap` on PATH it sends a `configWarning`
//!   notification ("Codex could not find bubblewrap on PATH ... will use the bundled
//!   bubblewrap").
//! - A 401 ends the turn `failed` with the same "unexpected status 401 Unauthorized: .."
//!   message as exec and `codexErrorInfo: {"httpConnectionFailed":{"httpStatusCode":401}}`
//!   (an `error` notification with `willRetry: false` comes first); a missing `env_key`
//!   variable fails the turn with "Missing environment variable: `NAME`." and
//!   `codexErrorInfo: "other"`, before any request.
//! - `requires_openai_auth = true` with nothing stored: `account/read` answers
//!   `{account: null, requiresOpenaiAuth: true}`, `codex login status` says "Not logged in",
//!   and turns still run (exec too), with no `authorization` header.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// The one path the mock answers with a model reply.
pub const RESPONSES_PATH: &str = "/v1/responses";

/// Request bodies larger than this are refused (400) and recorded without a body.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// One scripted answer to a `POST /v1/responses`.
///
/// Build replies with the associated functions ([`Reply::text`], [`Reply::exec_command`], ...);
/// the ids inside the events are filled in when the reply is served.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A complete assistant message in one `response.output_item.done`.
    Text {
        /// The assistant text.
        text: String,
    },
    /// An assistant message streamed as `response.output_text.delta` events.
    Streamed {
        /// The deltas, in order; the final item carries their concatenation.
        pieces: Vec<String>,
    },
    /// A reasoning item (with a streamed summary) followed by an assistant message.
    Reasoning {
        /// The reasoning summary text.
        summary: String,
        /// The assistant message after the reasoning.
        answer: String,
    },
    /// A `function_call` output item (for instance `exec_command`).
    FunctionCall {
        /// The call id that codex echoes in its `function_call_output`.
        call_id: String,
        /// The tool name.
        name: String,
        /// The arguments, a JSON document serialized as a string (as the API sends them).
        arguments: String,
    },
    /// A `custom_tool_call` output item (for instance the freeform `apply_patch`).
    CustomToolCall {
        /// The call id that codex echoes in its `custom_tool_call_output`.
        call_id: String,
        /// The tool name.
        name: String,
        /// The raw tool input.
        input: String,
    },
    /// A plain HTTP error, no stream.
    HttpStatus {
        /// The status code.
        status: u16,
        /// The JSON body; `None` sends `{"error":{"type":..,"message":..}}`.
        body: Option<Value>,
    },
    /// `response.created` then `response.failed` with this error message.
    Failed {
        /// The error message inside `response.failed`.
        message: String,
    },
    /// `response.created`, then the stream stays open until the client disconnects or the
    /// mock is dropped.
    Hang,
    /// Raw events, sent as they are (each must carry a `type`).
    Events {
        /// The events; the SSE `event:` name is taken from each `type` field.
        events: Vec<Value>,
    },
    /// The events of the inner reply without its final `response.completed`, then the stream
    /// stays open like [`Reply::Hang`].
    ThenHang(Box<Reply>),
    /// The inner reply, served after a pause (before the status line is sent).
    Delayed {
        /// How long to wait.
        delay: Duration,
        /// What to send afterwards.
        reply: Box<Reply>,
    },
}

impl Reply {
    /// A plain assistant message.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Text { text: text.into() }
    }

    /// An assistant message streamed piece by piece (`output_item.added` with empty text, one
    /// `response.output_text.delta` per piece, `output_item.done` with the whole text).
    pub fn streamed(pieces: &[&str]) -> Reply {
        Reply::Streamed {
            pieces: pieces.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// A reasoning item whose summary is streamed, then an assistant message.
    pub fn reasoning(summary: impl Into<String>, answer: impl Into<String>) -> Reply {
        Reply::Reasoning {
            summary: summary.into(),
            answer: answer.into(),
        }
    }

    /// A call of the `exec_command` tool with `{"cmd": cmd, "login": false}`.
    ///
    /// `login: false` keeps codex from running the command through a login shell, whose
    /// profile scripts may block on a developer machine.
    pub fn exec_command(call_id: impl Into<String>, cmd: impl Into<String>) -> Reply {
        let args = json!({ "cmd": cmd.into(), "login": false });
        Reply::function_call(call_id, "exec_command", &args)
    }

    /// Like [`Reply::exec_command`], with `"sandbox_permissions": "require_escalated"` and a
    /// justification: under `approval_policy = "on-request"` the app-server asks the client
    /// for approval.
    pub fn exec_command_escalated(call_id: impl Into<String>, cmd: impl Into<String>) -> Reply {
        let args = json!({
            "cmd": cmd.into(),
            "login": false,
            "sandbox_permissions": "require_escalated",
            "justification": "test",
        });
        Reply::function_call(call_id, "exec_command", &args)
    }

    /// A call of any function tool; `arguments` is serialized to a string.
    pub fn function_call(
        call_id: impl Into<String>,
        name: impl Into<String>,
        arguments: &Value,
    ) -> Reply {
        Reply::FunctionCall {
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.to_string(),
        }
    }

    /// A call of the freeform `apply_patch` tool, `patch` being the whole
    /// `*** Begin Patch ... *** End Patch` text.
    pub fn apply_patch(call_id: impl Into<String>, patch: impl Into<String>) -> Reply {
        Reply::custom_tool_call(call_id, "apply_patch", patch)
    }

    /// A call of any custom (freeform) tool.
    pub fn custom_tool_call(
        call_id: impl Into<String>,
        name: impl Into<String>,
        input: impl Into<String>,
    ) -> Reply {
        Reply::CustomToolCall {
            call_id: call_id.into(),
            name: name.into(),
            input: input.into(),
        }
    }

    /// An HTTP error status with a default JSON error body.
    pub fn http_status(status: u16) -> Reply {
        Reply::HttpStatus { status, body: None }
    }

    /// An HTTP error status with the given JSON body.
    pub fn http_error(status: u16, body: Value) -> Reply {
        Reply::HttpStatus {
            status,
            body: Some(body),
        }
    }

    /// `response.created` then `response.failed` carrying `message`.
    pub fn failed(message: impl Into<String>) -> Reply {
        Reply::Failed {
            message: message.into(),
        }
    }

    /// `response.created`, then the stream stays open until the client goes away.
    pub fn hang() -> Reply {
        Reply::Hang
    }

    /// Raw events, sent as given.
    pub fn events(events: Vec<Value>) -> Reply {
        Reply::Events { events }
    }

    /// This reply without its `response.completed`, then the stream stays open (for
    /// interrupting a turn after some items or deltas were seen).
    pub fn then_hang(self) -> Reply {
        Reply::ThenHang(Box::new(self))
    }

    /// This reply, served after `delay`.
    pub fn delayed(self, delay: Duration) -> Reply {
        Reply::Delayed {
            delay,
            reply: Box::new(self),
        }
    }

    /// The events this reply sends when served as answer number `n` (the HTTP status, the SSE
    /// events, and whether the stream then stays open).
    pub fn render(&self, n: u64) -> Rendered {
        match self {
            Reply::Text { text } => Rendered::sse(vec![
                created(n),
                item_done(message_item(n, text)),
                completed(n),
            ]),
            Reply::Streamed { pieces } => {
                let mut events = vec![created(n), item_added(message_item(n, ""))];
                for piece in pieces {
                    events.push(json!({
                        "type": "response.output_text.delta",
                        "item_id": format!("msg-{n}"),
                        "output_index": 0,
                        "content_index": 0,
                        "delta": piece,
                    }));
                }
                events.push(item_done(message_item(n, &pieces.concat())));
                events.push(completed(n));
                Rendered::sse(events)
            }
            Reply::Reasoning { summary, answer } => {
                let id = format!("rs-{n}");
                Rendered::sse(vec![
                    created(n),
                    item_added(json!({"type": "reasoning", "id": id, "summary": []})),
                    json!({
                        "type": "response.reasoning_summary_text.delta",
                        "item_id": id,
                        "output_index": 0,
                        "summary_index": 0,
                        "delta": summary,
                    }),
                    item_done(json!({
                        "type": "reasoning",
                        "id": id,
                        "summary": [{"type": "summary_text", "text": summary}],
                    })),
                    item_done(message_item(n, answer)),
                    completed(n),
                ])
            }
            Reply::FunctionCall {
                call_id,
                name,
                arguments,
            } => Rendered::sse(vec![
                created(n),
                item_done(json!({
                    "type": "function_call",
                    "id": format!("fc-{n}"),
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments,
                })),
                completed(n),
            ]),
            Reply::CustomToolCall {
                call_id,
                name,
                input,
            } => Rendered::sse(vec![
                created(n),
                item_done(json!({
                    "type": "custom_tool_call",
                    "id": format!("ctc-{n}"),
                    "call_id": call_id,
                    "name": name,
                    "input": input,
                })),
                completed(n),
            ]),
            Reply::HttpStatus { status, body } => {
                let body = body.clone().unwrap_or_else(|| {
                    let kind = if *status == 429 {
                        "rate_limit_exceeded"
                    } else {
                        "server_error"
                    };
                    json!({"error": {
                        "type": kind,
                        "code": kind,
                        "message": format!("mock HTTP status {status}"),
                    }})
                });
                Rendered {
                    status: *status,
                    json_body: Some(body),
                    events: Vec::new(),
                    hang: false,
                    delay: Duration::ZERO,
                }
            }
            Reply::Failed { message } => Rendered::sse(vec![
                created(n),
                json!({
                    "type": "response.failed",
                    "response": {
                        "id": format!("resp-{n}"),
                        "status": "failed",
                        "error": {"code": "server_error", "message": message},
                    },
                }),
            ]),
            Reply::Hang => Rendered {
                hang: true,
                ..Rendered::sse(vec![created(n)])
            },
            Reply::Events { events } => Rendered::sse(events.clone()),
            Reply::ThenHang(inner) => {
                let mut rendered = inner.render(n);
                if rendered
                    .events
                    .last()
                    .is_some_and(|e| e["type"] == "response.completed")
                {
                    rendered.events.pop();
                }
                rendered.hang = true;
                rendered
            }
            Reply::Delayed { delay, reply } => {
                let mut rendered = reply.render(n);
                rendered.delay += *delay;
                rendered
            }
        }
    }
}

/// A [`Reply`] made concrete: what the mock sends.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The HTTP status.
    pub status: u16,
    /// For error statuses: the JSON body sent instead of a stream.
    pub json_body: Option<Value>,
    /// The SSE events (when `json_body` is `None`).
    pub events: Vec<Value>,
    /// Whether the stream stays open after the events.
    pub hang: bool,
    /// Pause before answering.
    pub delay: Duration,
}

impl Rendered {
    fn sse(events: Vec<Value>) -> Rendered {
        Rendered {
            status: 200,
            json_body: None,
            events,
            hang: false,
            delay: Duration::ZERO,
        }
    }
}

/// The token usage every completed mock response reports.
pub fn mock_usage() -> Value {
    json!({
        "input_tokens": 10,
        "input_tokens_details": null,
        "output_tokens": 5,
        "output_tokens_details": null,
        "total_tokens": 15,
    })
}

fn created(n: u64) -> Value {
    json!({"type": "response.created", "response": {"id": format!("resp-{n}")}})
}

fn completed(n: u64) -> Value {
    json!({
        "type": "response.completed",
        "response": {"id": format!("resp-{n}"), "usage": mock_usage()},
    })
}

fn message_item(n: u64, text: &str) -> Value {
    json!({
        "type": "message",
        "role": "assistant",
        "id": format!("msg-{n}"),
        "content": [{"type": "output_text", "text": text}],
    })
}

fn item_added(item: Value) -> Value {
    json!({"type": "response.output_item.added", "output_index": 0, "item": item})
}

fn item_done(item: Value) -> Value {
    json!({"type": "response.output_item.done", "output_index": 0, "item": item})
}

/// Formats one event as an SSE block (`event: TYPE\ndata: JSON\n\n`).
pub fn sse_block(event: &Value) -> String {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    format!("event: {kind}\ndata: {event}\n\n")
}

/// One HTTP request the mock received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The path, e.g. `/v1/responses`.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The JSON body; `Value::Null` when there was none or it was not JSON.
    pub body: Value,
    /// The body as received.
    pub raw_body: Bytes,
    /// Why the body could not be read or parsed as JSON, if it could not (empty bodies of
    /// non-POST requests are not an error).
    pub body_error: Option<String>,
    /// The status the mock answered.
    pub status: u16,
}

impl RecordedRequest {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is a `POST /v1/responses`.
    pub fn is_responses(&self) -> bool {
        self.method == "POST" && self.path == RESPONSES_PATH
    }

    /// The items of the body's `input` array (empty when absent).
    pub fn input(&self) -> &[Value] {
        self.body
            .get("input")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every `input_text` of every `role = "user"` message in `input`, in order. Codex's
    /// `<environment_context>` message is one of them; the prompt is the last.
    pub fn user_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for item in self.input() {
            let is_message = item.get("type").is_none_or(|t| t == "message");
            if !is_message || item.get("role") != Some(&json!("user")) {
                continue;
            }
            match item.get("content") {
                Some(Value::String(s)) => out.push(s.clone()),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if part.get("type") == Some(&json!("input_text"))
                            && let Some(text) = part.get("text").and_then(Value::as_str)
                        {
                            out.push(text.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The last user text (the prompt of the current turn), if any.
    pub fn last_user_text(&self) -> Option<String> {
        self.user_texts().pop()
    }

    /// `(call_id, output)` of every `function_call_output` item in `input`. A non-string
    /// output is given as its JSON text.
    pub fn function_call_outputs(&self) -> Vec<(String, String)> {
        self.outputs_of("function_call_output")
    }

    /// `(call_id, output)` of every `custom_tool_call_output` item in `input` (the answers to
    /// freeform tools such as `apply_patch`).
    pub fn custom_tool_call_outputs(&self) -> Vec<(String, String)> {
        self.outputs_of("custom_tool_call_output")
    }

    fn outputs_of(&self, kind: &str) -> Vec<(String, String)> {
        self.input()
            .iter()
            .filter(|item| item.get("type").and_then(Value::as_str) == Some(kind))
            .map(|item| {
                let call_id = item
                    .get("call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                (call_id, output)
            })
            .collect()
    }

    /// The `text.format` object: with `codex exec --output-schema FILE` it is
    /// `{"type":"json_schema","name":..,"strict":true,"schema":{..}}`.
    pub fn text_format(&self) -> Option<&Value> {
        self.body.get("text").and_then(|t| t.get("format"))
    }

    /// The names of the offered tools (the `type` for tools without a name, such as
    /// `web_search`).
    pub fn tools(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| {
                        t.get("name")
                            .or_else(|| t.get("type"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `model` field of the body.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }
}

type Predicate = Box<dyn Fn(&RecordedRequest) -> bool + Send + Sync>;
type Responder = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

#[derive(Default)]
struct Script {
    routed: Vec<(Predicate, Reply)>,
    queue: VecDeque<Reply>,
    responder: Option<Responder>,
    requests: Vec<RecordedRequest>,
}

struct Shared {
    script: Mutex<Script>,
    count: watch::Sender<usize>,
    served: AtomicU64,
    open_streams: AtomicUsize,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, request: RecordedRequest) {
        let len = {
            let mut script = self.script();
            script.requests.push(request);
            script.requests.len()
        };
        self.count.send_replace(len);
    }

    fn choose(&self, request: &RecordedRequest) -> Reply {
        let responder = {
            let mut script = self.script();
            if let Some(pos) = script.routed.iter().position(|(p, _)| p(request)) {
                return script.routed.remove(pos).1;
            }
            if let Some(reply) = script.queue.pop_front() {
                return reply;
            }
            script.responder.clone()
        };
        match responder {
            Some(responder) => responder(request),
            None => Reply::text(format!(
                "echo: {}",
                request.last_user_text().unwrap_or_default()
            )),
        }
    }
}

/// Counts a live SSE body; dropped with the body (when the stream ends or the client leaves).
struct StreamGuard(Arc<Shared>);

impl StreamGuard {
    fn new(shared: Arc<Shared>) -> StreamGuard {
        shared.open_streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard(shared)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The mock Responses API server. Stops when dropped.
pub struct MockModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for MockModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockModel")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockModel {
    /// Starts a mock on `127.0.0.1` and an ephemeral port.
    ///
    /// # Panics
    /// If the port cannot be bound or the server thread cannot be started.
    pub async fn start() -> MockModel {
        MockModel::start_blocking()
    }

    /// [`MockModel::start`] for code outside an async context.
    ///
    /// # Panics
    /// If the port cannot be bound or the server thread cannot be started.
    pub fn start_blocking() -> MockModel {
        let listener = std::net::TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .expect("mock model: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("mock model: set_nonblocking");
        let addr = listener.local_addr().expect("mock model: local_addr");
        let shared = Arc::new(Shared {
            script: Mutex::new(Script::default()),
            count: watch::Sender::new(0),
            served: AtomicU64::new(0),
            open_streams: AtomicUsize::new(0),
        });
        let (shutdown, on_shutdown) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("mock-model-{}", addr.port()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("mock model: cannot build a runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("mock model: cannot register the listener: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("mock model: server stopped: {e}");
                            }
                        }
                        _ = on_shutdown => {}
                    }
                });
                // Dropping the runtime drops every connection task, hanging streams included.
                drop(runtime);
            })
            .expect("mock model: spawn the server thread");
        MockModel {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the provider `base_url` (codex appends `/responses`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address (always on 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for the next request that no routed reply takes (FIFO).
    pub fn push(&self, reply: Reply) {
        self.shared.script().queue.push_back(reply);
    }

    /// Queues a reply for the first request matching `predicate`; routed replies are tried
    /// before the FIFO, in the order they were pushed, and each is used once.
    pub fn push_for<P>(&self, predicate: P, reply: Reply)
    where
        P: Fn(&RecordedRequest) -> bool + Send + Sync + 'static,
    {
        self.shared
            .script()
            .routed
            .push((Box::new(predicate), reply));
    }

    /// Routes `reply` to the first request whose last user text contains `marker`.
    pub fn push_for_prompt(&self, marker: impl Into<String>, reply: Reply) {
        let marker = marker.into();
        self.push_for(
            move |req| req.last_user_text().is_some_and(|t| t.contains(&marker)),
            reply,
        );
    }

    /// Sets the function that answers when no queued reply applies (instead of the echo).
    pub fn set_responder<F>(&self, responder: F)
    where
        F: Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    {
        self.shared.script().responder = Some(Arc::new(responder));
    }

    /// How many queued replies (routed and FIFO) are still unused.
    pub fn pending_replies(&self) -> usize {
        let script = self.shared.script();
        script.routed.len() + script.queue.len()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.script().requests.clone()
    }

    /// Only the `POST /v1/responses` requests.
    pub fn responses_requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .script()
            .requests
            .iter()
            .filter(|r| r.is_responses())
            .cloned()
            .collect()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared.script().requests.len()
    }

    /// How many SSE replies are still being served, counted from before their request is
    /// recorded (a delayed reply counts during its delay, a hanging stream until the client
    /// disconnects).
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were recorded. `Err` holds the requests seen when
    /// `timeout` ran out.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedRequest>, Vec<RecordedRequest>> {
        let mut rx = self.shared.count.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await;
        match reached {
            Ok(Ok(_)) => Ok(self.requests()),
            _ => Err(self.requests()),
        }
    }

    /// Waits until no SSE body is open any more (for instance after a client cancelled a
    /// hanging turn). `Err` holds the number still open at the timeout.
    pub async fn wait_for_streams_closed(&self, timeout: Duration) -> Result<(), usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open = self.open_streams();
            if open == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(open);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Value::Null,
        raw_body: Bytes::new(),
        body_error: None,
        status: 0,
    };
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => {
            if !bytes.is_empty() || parts.method == Method::POST {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) => recorded.body = v,
                    Err(e) => recorded.body_error = Some(format!("invalid JSON body: {e}")),
                }
            }
            recorded.raw_body = bytes;
        }
        Err(e) => recorded.body_error = Some(format!("cannot read the body: {e}")),
    }

    if !recorded.is_responses() {
        recorded.status = 404;
        let message = format!(
            "mock model: no route for {} {}",
            recorded.method, recorded.path
        );
        shared.record(recorded);
        return error_response(StatusCode::NOT_FOUND, &message);
    }
    if let Some(problem) = recorded.body_error.clone() {
        recorded.status = 400;
        shared.record(recorded);
        return error_response(StatusCode::BAD_REQUEST, &problem);
    }

    let reply = shared.choose(&recorded);
    let n = shared.served.fetch_add(1, Ordering::SeqCst) + 1;
    let rendered = reply.render(n);
    recorded.status = rendered.status;
    // Count the stream before the request becomes visible, so that a test that saw the
    // request also sees the stream open.
    let guard = rendered
        .json_body
        .is_none()
        .then(|| StreamGuard::new(shared.clone()));
    shared.record(recorded);

    if !rendered.delay.is_zero() {
        tokio::time::sleep(rendered.delay).await;
    }
    let status = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(body) = rendered.json_body {
        return (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }

    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let events = rendered.events;
    let hang = rendered.hang;
    tokio::spawn(async move {
        for event in &events {
            if tx.send(Bytes::from(sse_block(event))).await.is_err() {
                return;
            }
        }
        if hang {
            // Until the body (and so the receiver) is dropped: the client went away, or the
            // mock's runtime is shutting down.
            tx.closed().await;
        }
    });
    let stream = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, Infallible>(chunk), (rx, guard)))
    });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"type": "invalid_request_error", "message": message}}).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> RecordedRequest {
        RecordedRequest {
            method: "POST".into(),
            path: RESPONSES_PATH.into(),
            query: None,
            headers: vec![("Originator".into(), "x".into())],
            raw_body: Bytes::from(body.to_string()),
            body,
            body_error: None,
            status: 200,
        }
    }

    #[test]
    fn sse_blocks_name_the_event_after_its_type() {
        let block = sse_block(&json!({"type": "response.created", "response": {"id": "r"}}));
        assert_eq!(
            block,
            "event: response.created\ndata: {\"response\":{\"id\":\"r\"},\"type\":\"response.created\"}\n\n"
        );
    }

    #[test]
    fn replies_use_the_answer_number_in_their_ids() {
        let rendered = Reply::text("hi").render(7);
        assert_eq!(rendered.status, 200);
        assert_eq!(rendered.events[0]["response"]["id"], "resp-7");
        assert_eq!(rendered.events[1]["item"]["id"], "msg-7");
        assert_eq!(rendered.events[2]["type"], "response.completed");
        assert_eq!(rendered.events[2]["response"]["usage"], mock_usage());
        assert!(!rendered.hang);
    }

    #[test]
    fn exec_command_arguments_carry_login_false() {
        let rendered = Reply::exec_command("c1", "ls").render(1);
        let args: Value =
            serde_json::from_str(rendered.events[1]["item"]["arguments"].as_str().unwrap())
                .unwrap();
        assert_eq!(args, json!({"cmd": "ls", "login": false}));
        let rendered = Reply::exec_command_escalated("c2", "ls").render(2);
        let args: Value =
            serde_json::from_str(rendered.events[1]["item"]["arguments"].as_str().unwrap())
                .unwrap();
        assert_eq!(args["sandbox_permissions"], "require_escalated");
        assert_eq!(args["justification"], "test");
        assert_eq!(args["login"], false);
    }

    #[test]
    fn streamed_and_then_hang() {
        let rendered = Reply::streamed(&["a", "b"]).render(1);
        let types: Vec<_> = rendered.events.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(
            types,
            vec![
                "response.created",
                "response.output_item.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(rendered.events[4]["item"]["content"][0]["text"], "ab");
        let hanging = Reply::streamed(&["a"])
            .then_hang()
            .delayed(Duration::from_millis(5))
            .render(1);
        assert!(hanging.hang);
        assert_eq!(hanging.delay, Duration::from_millis(5));
        assert_ne!(hanging.events.last().unwrap()["type"], "response.completed");
    }

    #[test]
    fn http_status_has_a_json_body() {
        let rendered = Reply::http_status(429).render(1);
        assert_eq!(rendered.status, 429);
        assert_eq!(
            rendered.json_body.unwrap()["error"]["type"],
            "rate_limit_exceeded"
        );
    }

    #[test]
    fn request_helpers_read_the_body() {
        let req = request(json!({
            "model": "gpt-5.5",
            "text": {"verbosity": "low", "format": {"type": "json_schema"}},
            "tools": [{"type": "function", "name": "exec_command"}, {"type": "web_search"}],
            "input": [
                {"type": "message", "role": "developer",
                 "content": [{"type": "input_text", "text": "dev"}]},
                {"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "<environment_context/>"}]},
                {"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "the prompt"}]},
                {"type": "function_call_output", "call_id": "c1", "output": "out"},
                {"type": "function_call_output", "call_id": "c2",
                 "output": [{"type": "input_text", "text": "x"}]},
                {"type": "custom_tool_call_output", "call_id": "p1", "output": "done"},
            ],
        }));
        assert_eq!(
            req.user_texts(),
            vec!["<environment_context/>", "the prompt"]
        );
        assert_eq!(req.last_user_text().as_deref(), Some("the prompt"));
        assert_eq!(req.function_call_outputs()[0], ("c1".into(), "out".into()));
        assert!(req.function_call_outputs()[1].1.contains("input_text"));
        assert_eq!(
            req.custom_tool_call_outputs(),
            vec![("p1".into(), "done".into())]
        );
        assert_eq!(req.text_format().unwrap()["type"], "json_schema");
        assert_eq!(req.tools(), vec!["exec_command", "web_search"]);
        assert_eq!(req.header("originator"), Some("x"));
        assert_eq!(req.model(), Some("gpt-5.5"));
        assert!(req.is_responses());
        let empty = request(Value::Null);
        assert!(empty.user_texts().is_empty());
        assert!(empty.tools().is_empty());
    }

    #[tokio::test]
    async fn routed_then_fifo_then_responder_then_echo() {
        let mock = MockModel::start().await;
        let req = request(json!({"input": [{"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hello marker"}]}]}));
        assert_eq!(mock.shared.choose(&req), Reply::text("echo: hello marker"));
        mock.set_responder(|_| Reply::text("responder"));
        mock.push(Reply::text("fifo"));
        mock.push_for_prompt("marker", Reply::text("routed"));
        mock.push_for_prompt("absent", Reply::text("never"));
        assert_eq!(mock.pending_replies(), 3);
        assert_eq!(mock.shared.choose(&req), Reply::text("routed"));
        assert_eq!(mock.shared.choose(&req), Reply::text("fifo"));
        assert_eq!(mock.shared.choose(&req), Reply::text("responder"));
        assert_eq!(mock.pending_replies(), 1);
        assert!(
            mock.wait_for_requests(1, Duration::from_millis(50))
                .await
                .is_err()
        );
        assert!(mock.base_url().starts_with("http://127.0.0.1:"));
    }
}
