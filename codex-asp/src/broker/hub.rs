//! The broker's state machine: clients, the upstream app-server, id maps, thread ownership,
//! running turns. Everything happens on one task (the server loop calls into the hub for
//! every event), so routing decisions see messages in the order they arrived.
//!
//! The hub never waits: messages to clients go into bounded per-client queues (a client whose
//! queue is full is disconnected rather than allowed to stall everyone), messages to the
//! app-server into an unbounded queue drained by a writer task.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::outbox::Outgoing;
use super::{
    APP_SERVER_EXITED_NOTIFICATION, AppServerExit, BrokerStatus, ClientStatus, Launcher,
    OwnedThread, RunningTurn, SHUTDOWN_METHOD, STATUS_METHOD, codes,
};
use crate::approval::{Decision, ServerReply, ServerRequestCtx};
use crate::error::CloseReason;
use crate::jsonrpc::{
    ALREADY_INITIALIZED_MESSAGE, JsonRpcError, Message, NOT_INITIALIZED_MESSAGE, RequestId,
    error_codes,
};
use crate::protocol::{ServerNotification, ServerRequest};
use crate::transport::{Frame, Garbage, GarbageReason, ProcessHandle};

/// The broker's number for a client connection.
pub(crate) type ClientId = u64;

/// How many notifications about a not-yet-owned thread are kept while a `thread/start` or
/// `thread/fork` is in flight.
const MAX_HELD: usize = 4096;

/// Methods any client may call on any thread, owned or not, without taking it: reads, and
/// `turn/interrupt` (stopping a turn is allowed to every client of the same user, so that a
/// `cancel` command in another process can stop a background turn).
const READ_ONLY: &[&str] = &[
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
const NEEDS_LOADED: &[&str] = &[
    "turn/start",
    "turn/steer",
    "review/start",
    "thread/compact/start",
    "thread/shellCommand",
    "thread/inject_items",
];

/// Methods after whose success the thread is loaded in the current app-server.
const LOADS: &[&str] = &["thread/start", "thread/resume", "thread/fork"];

/// Methods after whose success the owner lets the thread go.
const RELEASES: &[&str] = &["thread/unsubscribe", "thread/archive", "thread/delete"];

/// The settings of `thread/start` / `thread/fork` / `thread/resume` that a transparent
/// `thread/resume` after a restart repeats.
const RESUME_KEYS: &[&str] = &[
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

/// Fixed facts the hub reports and needs.
pub(crate) struct HubConfig {
    pub launcher: Launcher,
    pub upstream_init: Value,
    pub client_queue: usize,
    pub idle_timeout: Option<Duration>,
    /// How long the app-server gets to answer the broker's `initialize`.
    pub init_timeout: Duration,
    pub socket: PathBuf,
    pub codex: PathBuf,
    pub codex_home: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    New,
    Initializing,
    Ready,
}

struct ClientConn {
    tx: mpsc::Sender<Outgoing>,
    pid: Option<i32>,
    connected: Instant,
    name: Option<String>,
    state: ClientState,
    opt_out: HashSet<String>,
}

struct Upstream {
    generation: u64,
    tx: mpsc::UnboundedSender<String>,
    process: Option<ProcessHandle>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    ready: bool,
    init_deadline: Option<tokio::time::Instant>,
}

impl Upstream {
    fn abort(self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Who is waiting for an upstream answer.
enum Origin {
    /// A client's request.
    Client {
        client: ClientId,
        id: RequestId,
        method: String,
        params: Value,
        thread: Option<String>,
        creating: bool,
    },
    /// The broker's own `initialize`.
    Init,
    /// A transparent `thread/resume` after a restart.
    AutoResume { thread: String },
}

struct Owner {
    client: ClientId,
    /// The upstream id of the request that claimed the thread, until it succeeds.
    claim_req: Option<i64>,
    /// The app-server generation the thread was last loaded in.
    generation: Option<u64>,
    /// The settings it was opened with (for a transparent resume).
    open_params: Value,
}

struct ServerReq {
    upstream_id: RequestId,
    generation: u64,
    client: ClientId,
    method: String,
    params: Value,
    thread: Option<String>,
}

enum Waiting {
    Request {
        client: ClientId,
        id: RequestId,
        method: String,
        params: Value,
    },
    Notification {
        client: ClientId,
        method: String,
        params: Value,
    },
}

impl Waiting {
    fn client(&self) -> ClientId {
        match self {
            Waiting::Request { client, .. } | Waiting::Notification { client, .. } => *client,
        }
    }
}

struct Deferred {
    client: ClientId,
    id: RequestId,
    method: String,
    params: Value,
}

/// The broker's state.
pub(crate) struct Hub {
    cfg: HubConfig,
    up_tx: mpsc::UnboundedSender<(u64, Frame)>,
    clients: BTreeMap<ClientId, ClientConn>,
    upstream: Option<Upstream>,
    generation: u64,
    starts: u64,
    init_result: Option<Value>,
    init_waiters: Vec<(ClientId, RequestId)>,
    waiting: VecDeque<Waiting>,
    pending: HashMap<i64, Origin>,
    next_up_id: i64,
    owners: HashMap<String, Owner>,
    running: BTreeSet<(String, String)>,
    server_reqs: HashMap<i64, ServerReq>,
    answered: HashMap<RequestId, (ClientId, i64)>,
    next_server_id: i64,
    creating: usize,
    held: VecDeque<(String, String)>,
    deferred: HashMap<String, Vec<Deferred>>,
    last_exit: Option<String>,
    started: Instant,
    overflowed: Vec<ClientId>,
    shutdown_requested: bool,
}

/// The exit of an app-server, as sent to clients.
fn exit_info(reason: &CloseReason) -> AppServerExit {
    let (exit_code, signal, stderr_tail) = match reason {
        CloseReason::ProcessExited {
            status,
            stderr_tail,
        } => (status.code(), status.signal(), stderr_tail.clone()),
        _ => (None, None, String::new()),
    };
    AppServerExit {
        reason: "appServerExited".into(),
        exit_code,
        signal,
        stderr_tail,
        message: reason.to_string(),
        thread_id: None,
        turn_id: None,
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `params.threadId` of a request.
fn param_thread(params: &Value) -> Option<String> {
    params
        .get("threadId")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The thread a notification is about.
fn notification_thread(method: &str, params: &Value) -> Option<String> {
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
fn server_request_thread(method: &str, params: &Value) -> Option<String> {
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
fn parent_thread(params: &Value) -> Option<String> {
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
fn resume_params(thread: &str, open: &Value) -> Value {
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

/// `message` as a line for a peer ([`Message::encode`]); JSON values always serialize, but
/// should one not, nothing is sent and the log says why.
fn line(message: &Message) -> Option<String> {
    match message.encode() {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::warn!("could not encode a JSON-RPC message: {e}");
            None
        }
    }
}

/// The error answer to `id` (`null` when the request's id is unknown).
fn encode_error(id: Option<&RequestId>, error: JsonRpcError) -> Option<String> {
    line(&Message::Response {
        id: id.map_or(Value::Null, Value::from),
        outcome: Err(error),
    })
}

fn encode_result(id: &RequestId, result: &Value) -> Option<String> {
    line(&Message::response(id, Ok(result.clone())))
}

fn encode_notification(method: &str, params: &Value) -> Option<String> {
    line(&Message::Notification {
        method: method.to_owned(),
        params: params.clone(),
    })
}

fn encode_request(id: i64, method: &str, params: &Value) -> Option<String> {
    line(&Message::Request {
        id: RequestId::Integer(id),
        method: method.to_owned(),
        params: params.clone(),
    })
}

/// The id of a message that is JSON but not a valid JSON-RPC message, if it has a usable one.
fn salvage_id(text: &str) -> Option<RequestId> {
    let value: Value = serde_json::from_str(text).ok()?;
    serde_json::from_value(value.get("id")?.clone()).ok()
}

impl Hub {
    pub(crate) fn new(cfg: HubConfig, up_tx: mpsc::UnboundedSender<(u64, Frame)>) -> Hub {
        Hub {
            cfg,
            up_tx,
            clients: BTreeMap::new(),
            upstream: None,
            generation: 0,
            starts: 0,
            init_result: None,
            init_waiters: Vec::new(),
            waiting: VecDeque::new(),
            pending: HashMap::new(),
            next_up_id: 0,
            owners: HashMap::new(),
            running: BTreeSet::new(),
            server_reqs: HashMap::new(),
            answered: HashMap::new(),
            next_server_id: 0,
            creating: 0,
            held: VecDeque::new(),
            deferred: HashMap::new(),
            last_exit: None,
            started: Instant::now(),
            overflowed: Vec::new(),
            shutdown_requested: false,
        }
    }

    // ----- lifecycle -------------------------------------------------------------------

    /// Whether no client is connected and no turn runs.
    pub(crate) fn is_idle(&self) -> bool {
        self.clients.is_empty() && self.running.is_empty()
    }

    /// Whether a client asked the broker to stop.
    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shutdown_requested
    }

    /// When the app-server's `initialize` times out, if one is awaited.
    pub(crate) fn init_deadline(&self) -> Option<tokio::time::Instant> {
        self.upstream.as_ref().and_then(|u| u.init_deadline)
    }

    /// Starts the app-server if none runs. `Err` carries why it could not be launched.
    pub(crate) fn start_upstream(&mut self) -> Result<(), String> {
        if self.upstream.is_some() {
            return Ok(());
        }
        let transport = match (self.cfg.launcher)() {
            Ok(t) => t,
            Err(e) => {
                let msg = format!(
                    "could not start codex app-server: {}",
                    codex_core::ErrorChain(&e)
                );
                tracing::warn!("{msg}");
                self.last_exit = Some(msg.clone());
                return Err(msg);
            }
        };
        self.generation += 1;
        self.starts += 1;
        let generation = self.generation;
        let (mut reader, mut writer, label, process) = transport.into_parts();
        tracing::info!(
            generation,
            pid = ?process.as_ref().and_then(ProcessHandle::pid),
            transport = %label,
            "started codex app-server"
        );
        let up_tx = self.up_tx.clone();
        let reader_task = tokio::spawn(async move {
            loop {
                let frame = reader.recv().await;
                let closed = matches!(frame, Frame::Closed(_));
                if up_tx.send((generation, frame)).is_err() || closed {
                    break;
                }
            }
            // dropping the reader kills an app-server the transport launched
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let writer_task = tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if let Err(e) = writer.send(text).await {
                    tracing::debug!(
                        "writing to codex app-server failed: {}",
                        codex_core::ErrorChain(&e)
                    );
                    return;
                }
            }
            let _ = writer.close().await;
        });
        let id = self.next_id();
        self.pending.insert(id, Origin::Init);
        if let Some(text) = encode_request(id, "initialize", &self.cfg.upstream_init) {
            let _ = tx.send(text);
        }
        self.upstream = Some(Upstream {
            generation,
            tx,
            process,
            reader: reader_task,
            writer: writer_task,
            ready: false,
            init_deadline: Some(crate::transport::deadline(self.cfg.init_timeout)),
        });
        Ok(())
    }

    /// Closes the app-server's input (it exits on end of file) and returns its process
    /// handle and reader task, for the caller to wait on (and kill).
    pub(crate) fn stop_upstream(&mut self) -> Option<(Option<ProcessHandle>, JoinHandle<()>)> {
        let up = self.upstream.take()?;
        drop(up.tx);
        Some((up.process, up.reader))
    }

    /// The app-server did not answer `initialize` in time.
    pub(crate) fn init_timed_out(&mut self) {
        if let Some(up) = self.upstream.take() {
            tracing::warn!("codex app-server did not answer initialize in time; killing it");
            if let Some(p) = &up.process {
                p.kill();
            }
            up.abort();
            self.on_upstream_closed(CloseReason::Failed {
                message: format!(
                    "codex app-server did not answer initialize within {:?}",
                    self.cfg.init_timeout
                ),
                source: None,
            });
        }
    }

    fn next_id(&mut self) -> i64 {
        let id = self.next_up_id;
        self.next_up_id += 1;
        id
    }

    fn up_send(&mut self, text: impl Into<Option<String>>) {
        if let (Some(up), Some(text)) = (&self.upstream, text.into()) {
            let _ = up.tx.send(text);
        }
    }

    fn upstream_ready(&self) -> bool {
        self.upstream.as_ref().is_some_and(|u| u.ready)
    }

    // ----- clients -----------------------------------------------------------------------

    /// A new client connection.
    pub(crate) fn add_client(
        &mut self,
        id: ClientId,
        tx: mpsc::Sender<Outgoing>,
        pid: Option<i32>,
    ) {
        tracing::debug!(client = id, ?pid, "client connected");
        self.clients.insert(
            id,
            ClientConn {
                tx,
                pid,
                connected: Instant::now(),
                name: None,
                state: ClientState::New,
                opt_out: HashSet::new(),
            },
        );
    }

    /// Clients whose queue overflowed since the last call (the caller drops them).
    pub(crate) fn take_overflowed(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.overflowed)
    }

    /// Queues `text` for `client`.
    fn send(&mut self, client: ClientId, text: impl Into<Option<String>>) {
        if let Some(text) = text.into() {
            self.send_out(client, Outgoing::Line(text));
        }
    }

    /// Queues `out` for `client`.
    fn send_out(&mut self, client: ClientId, out: Outgoing) {
        let Some(conn) = self.clients.get(&client) else {
            return;
        };
        match conn.tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    client,
                    queue = self.cfg.client_queue,
                    "client does not read fast enough; disconnecting it"
                );
                self.overflowed.push(client);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn send_error(
        &mut self,
        client: ClientId,
        id: &RequestId,
        code: i64,
        msg: &str,
        data: Option<&Value>,
    ) {
        let mut error = JsonRpcError::new(code, msg);
        error.data = data.cloned();
        self.send(client, encode_error(Some(id), error));
    }

    /// A client went away: release its threads, decline its approvals, forget its requests.
    pub(crate) fn remove_client(&mut self, client: ClientId) {
        if self.clients.remove(&client).is_none() {
            return;
        }
        tracing::debug!(client, "client disconnected");
        let released: Vec<String> = self
            .owners
            .iter()
            .filter(|(_, o)| o.client == client)
            .map(|(t, _)| t.clone())
            .collect();
        for thread in &released {
            self.owners.remove(thread);
        }
        if !released.is_empty() {
            tracing::debug!(client, threads = released.len(), "released threads");
        }
        let mine: Vec<i64> = self
            .server_reqs
            .iter()
            .filter(|(_, r)| r.client == client)
            .map(|(id, _)| *id)
            .collect();
        for id in mine {
            if let Some(req) = self.server_reqs.remove(&id) {
                self.decline_upstream(req);
            }
        }
        self.answered.retain(|_, (c, _)| *c != client);
        self.init_waiters.retain(|(c, _)| *c != client);
        self.waiting.retain(|w| w.client() != client);
        for list in self.deferred.values_mut() {
            list.retain(|d| d.client != client);
        }
    }

    /// One frame from a client.
    pub(crate) fn on_client_frame(&mut self, client: ClientId, frame: Frame) {
        match frame {
            Frame::Closed(_) => self.remove_client(client),
            Frame::Garbage(garbage) => self.reply_garbage(client, &garbage),
            Frame::Text(text) => match Message::parse(&text) {
                Err(reason) => {
                    let garbage = Garbage::new(reason, &text);
                    match &garbage.reason {
                        GarbageReason::NotJsonRpc => {
                            let id = salvage_id(&text);
                            let msg = format!("Invalid request: {garbage}");
                            self.send(
                                client,
                                encode_error(
                                    id.as_ref(),
                                    JsonRpcError::new(error_codes::INVALID_REQUEST, msg),
                                ),
                            );
                        }
                        _ => self.reply_garbage(client, &garbage),
                    }
                }
                Ok(Message::Request { id, method, params }) => {
                    self.on_client_request(client, id, method, params)
                }
                Ok(Message::Notification { method, params }) => {
                    self.on_client_notification(client, method, params)
                }
                Ok(Message::Response { id, outcome }) => {
                    self.on_client_response(client, id, outcome)
                }
            },
        }
    }

    fn reply_garbage(&mut self, client: ClientId, garbage: &Garbage) {
        tracing::debug!(client, "garbage from a client: {garbage}");
        let msg = format!("Parse error: {garbage}");
        self.send(
            client,
            encode_error(None, JsonRpcError::new(error_codes::PARSE_ERROR, msg)),
        );
    }

    fn on_client_request(
        &mut self,
        client: ClientId,
        id: RequestId,
        method: String,
        params: Value,
    ) {
        match method.as_str() {
            STATUS_METHOD => {
                let status = to_value(&self.status());
                self.send(client, encode_result(&id, &status));
                return;
            }
            SHUTDOWN_METHOD => {
                tracing::info!(client, "broker/shutdown requested");
                self.send(client, encode_result(&id, &json!({"ok": true})));
                self.shutdown_requested = true;
                return;
            }
            _ => {}
        }
        if self.shutdown_requested {
            self.send_error(
                client,
                &id,
                codes::SHUTTING_DOWN,
                "the codex-broker is shutting down",
                None,
            );
            return;
        }
        let state = match self.clients.get(&client) {
            Some(c) => c.state,
            None => return,
        };
        if method == "initialize" {
            if state != ClientState::New {
                self.send_error(
                    client,
                    &id,
                    error_codes::INVALID_REQUEST,
                    ALREADY_INITIALIZED_MESSAGE,
                    None,
                );
                return;
            }
            self.on_client_initialize(client, id, &params);
            return;
        }
        if state != ClientState::Ready {
            self.send_error(
                client,
                &id,
                error_codes::INVALID_REQUEST,
                NOT_INITIALIZED_MESSAGE,
                None,
            );
            return;
        }
        if !self.upstream_ready() {
            self.waiting.push_back(Waiting::Request {
                client,
                id,
                method,
                params,
            });
            self.ensure_starting();
            return;
        }
        self.dispatch_request(client, id, method, params);
    }

    fn on_client_initialize(&mut self, client: ClientId, id: RequestId, params: &Value) {
        if let Some(conn) = self.clients.get_mut(&client) {
            conn.name = params
                .pointer("/clientInfo/name")
                .and_then(Value::as_str)
                .map(str::to_owned);
            conn.opt_out = params
                .pointer("/capabilities/optOutNotificationMethods")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            conn.state = ClientState::Initializing;
        }
        if let Some(result) = self.init_result.clone() {
            self.finish_client_init(client, &id, &result);
        } else {
            self.init_waiters.push((client, id));
            self.ensure_starting();
        }
    }

    fn finish_client_init(&mut self, client: ClientId, id: &RequestId, result: &Value) {
        if let Some(conn) = self.clients.get_mut(&client) {
            conn.state = ClientState::Ready;
        }
        self.send(client, encode_result(id, result));
    }

    /// Starts the app-server if needed; if it cannot start, fails whoever waits for it.
    fn ensure_starting(&mut self) {
        if self.upstream.is_some() {
            return;
        }
        if let Err(msg) = self.start_upstream() {
            let data = json!({"reason": "appServerUnavailable", "message": msg});
            for (client, id) in std::mem::take(&mut self.init_waiters) {
                if let Some(conn) = self.clients.get_mut(&client) {
                    conn.state = ClientState::New;
                }
                self.send_error(
                    client,
                    &id,
                    codes::APP_SERVER_UNAVAILABLE,
                    &msg,
                    Some(&data),
                );
            }
            for w in std::mem::take(&mut self.waiting) {
                if let Waiting::Request { client, id, .. } = w {
                    self.send_error(
                        client,
                        &id,
                        codes::APP_SERVER_UNAVAILABLE,
                        &msg,
                        Some(&data),
                    );
                }
            }
        }
    }

    fn on_client_notification(&mut self, client: ClientId, method: String, params: Value) {
        let Some(conn) = self.clients.get(&client) else {
            return;
        };
        if method == "initialized" || conn.state != ClientState::Ready {
            return;
        }
        if self.upstream_ready() {
            self.up_send(encode_notification(&method, &params));
        } else {
            self.waiting.push_back(Waiting::Notification {
                client,
                method,
                params,
            });
            self.ensure_starting();
        }
    }

    fn on_client_response(
        &mut self,
        client: ClientId,
        id: Value,
        outcome: Result<Value, JsonRpcError>,
    ) {
        let Some(broker_id) = id.as_i64() else {
            tracing::debug!(client, %id, "answer with an id the broker never sent");
            return;
        };
        let belongs = self
            .server_reqs
            .get(&broker_id)
            .is_some_and(|r| r.client == client);
        if !belongs {
            tracing::debug!(
                client,
                broker_id,
                "answer to an unknown or resolved server request"
            );
            return;
        }
        let Some(req) = self.server_reqs.remove(&broker_id) else {
            return;
        };
        if req.generation != self.generation {
            return;
        }
        let text = match outcome {
            Ok(result) => encode_result(&req.upstream_id, &result),
            Err(e) => encode_error(Some(&req.upstream_id), e),
        };
        self.answered
            .insert(req.upstream_id.clone(), (client, broker_id));
        self.up_send(text);
    }

    /// Routes a client's request to the app-server (which is ready).
    fn dispatch_request(&mut self, client: ClientId, id: RequestId, method: String, params: Value) {
        let thread = param_thread(&params);
        if let Some(thread) = &thread {
            if let Some(list) = self.deferred.get_mut(thread) {
                // a transparent resume of this thread is in flight: keep the order
                list.push(Deferred {
                    client,
                    id,
                    method,
                    params,
                });
                return;
            }
            if !READ_ONLY.contains(&method.as_str()) {
                if let Some(owner) = self.owners.get(thread)
                    && owner.client != client
                {
                    let (msg, data) = self.owned_error(thread, owner.client);
                    self.send_error(client, &id, codes::THREAD_OWNED, &msg, Some(&data));
                    return;
                }
                let stale = self.owners.get(thread).is_some_and(|o| {
                    o.generation.is_some_and(|g| g != self.generation) && o.claim_req.is_none()
                });
                if stale && NEEDS_LOADED.contains(&method.as_str()) {
                    self.auto_resume(
                        thread.clone(),
                        Deferred {
                            client,
                            id,
                            method,
                            params,
                        },
                    );
                    return;
                }
            }
        }
        self.forward(client, id, method, params, thread);
    }

    fn forward(
        &mut self,
        client: ClientId,
        id: RequestId,
        method: String,
        params: Value,
        thread: Option<String>,
    ) {
        let up_id = self.next_id();
        let Some(text) = encode_request(up_id, &method, &params) else {
            self.send_error(
                client,
                &id,
                error_codes::INTERNAL_ERROR,
                "could not encode the request",
                None,
            );
            return;
        };
        let creating = matches!(method.as_str(), "thread/start" | "thread/fork");
        if creating {
            self.creating += 1;
        }
        if let Some(thread) = &thread
            && !READ_ONLY.contains(&method.as_str())
            && !self.owners.contains_key(thread)
        {
            // claim it now, so that its notifications reach this client at once
            self.owners.insert(
                thread.clone(),
                Owner {
                    client,
                    claim_req: Some(up_id),
                    generation: None,
                    open_params: if method == "thread/resume" {
                        params.clone()
                    } else {
                        Value::Null
                    },
                },
            );
        }
        self.pending.insert(
            up_id,
            Origin::Client {
                client,
                id,
                method,
                params,
                thread,
                creating,
            },
        );
        self.up_send(text);
    }

    fn auto_resume(&mut self, thread: String, first: Deferred) {
        let open = self
            .owners
            .get(&thread)
            .map(|o| o.open_params.clone())
            .unwrap_or(Value::Null);
        let params = resume_params(&thread, &open);
        let up_id = self.next_id();
        let Some(text) = encode_request(up_id, "thread/resume", &params) else {
            self.forward(
                first.client,
                first.id,
                first.method,
                first.params,
                Some(thread),
            );
            return;
        };
        tracing::debug!(%thread, "resuming a thread after an app-server restart");
        self.deferred.insert(thread.clone(), vec![first]);
        self.pending.insert(up_id, Origin::AutoResume { thread });
        self.up_send(text);
    }

    fn owned_error(&self, thread: &str, owner: ClientId) -> (String, Value) {
        let conn = self.clients.get(&owner);
        let name = conn.and_then(|c| c.name.clone());
        let pid = conn.and_then(|c| c.pid);
        let who = match (&name, pid) {
            (Some(n), Some(p)) => format!("client #{owner} \"{n}\", pid {p}"),
            (Some(n), None) => format!("client #{owner} \"{n}\""),
            (None, Some(p)) => format!("client #{owner}, pid {p}"),
            (None, None) => format!("client #{owner}"),
        };
        let msg = format!(
            "thread {thread} is owned by another client of this codex-broker ({who}): only one \
             client may write a thread at a time; wait until that client disconnects, or fork \
             the thread (thread/fork)"
        );
        let data = json!({
            "reason": codes::THREAD_OWNED_REASON,
            "threadId": thread,
            "owner": {"client": owner, "name": name, "pid": pid},
        });
        (msg, data)
    }

    // ----- upstream ----------------------------------------------------------------------

    /// One frame from the app-server of generation `generation`.
    pub(crate) fn on_upstream_frame(&mut self, generation: u64, frame: Frame) {
        if self.upstream.as_ref().map(|u| u.generation) != Some(generation) {
            return;
        }
        match frame {
            Frame::Closed(reason) => {
                if let Some(up) = self.upstream.take() {
                    up.abort();
                }
                self.on_upstream_closed(reason);
            }
            Frame::Garbage(g) => tracing::warn!("skipping a frame from codex app-server: {g}"),
            Frame::Text(text) => match Message::parse(&text) {
                Err(reason) => {
                    tracing::warn!(
                        "skipping a frame from codex app-server: {}",
                        Garbage::new(reason, &text)
                    )
                }
                Ok(Message::Response { id, outcome }) => self.on_upstream_response(id, outcome),
                Ok(Message::Notification { method, params }) => {
                    self.on_upstream_notification(text, method, params)
                }
                Ok(Message::Request { id, method, params }) => {
                    self.on_server_request(id, method, params)
                }
            },
        }
    }

    fn on_upstream_response(&mut self, id: Value, outcome: Result<Value, JsonRpcError>) {
        let Some(origin) = id.as_i64().and_then(|id| self.pending.remove(&id)) else {
            tracing::debug!(%id, "codex app-server answered an unknown request");
            return;
        };
        let up_id = id.as_i64().unwrap_or_default();
        match origin {
            Origin::Init => self.on_upstream_init(outcome),
            Origin::AutoResume { thread } => {
                match &outcome {
                    Ok(_) => {
                        if let Some(o) = self.owners.get_mut(&thread) {
                            o.generation = Some(self.generation);
                        }
                    }
                    Err(e) => tracing::debug!(%thread, "transparent resume failed: {}", e.message),
                }
                for d in self.deferred.remove(&thread).unwrap_or_default() {
                    if self.clients.contains_key(&d.client) {
                        self.dispatch_request(d.client, d.id, d.method, d.params);
                    }
                }
            }
            Origin::Client {
                client,
                id,
                method,
                params,
                thread,
                creating,
            } => {
                self.on_client_answer(up_id, client, id, &method, params, thread, outcome);
                if creating {
                    self.creating = self.creating.saturating_sub(1);
                    if self.creating == 0 && !self.held.is_empty() {
                        tracing::trace!(
                            count = self.held.len(),
                            "dropping notifications of unowned threads"
                        );
                        self.held.clear();
                    }
                }
            }
        }
    }

    fn on_upstream_init(&mut self, outcome: Result<Value, JsonRpcError>) {
        match outcome {
            Ok(result) => {
                self.up_send(encode_notification("initialized", &Value::Null));
                if let Some(up) = &mut self.upstream {
                    up.ready = true;
                    up.init_deadline = None;
                }
                let user_agent = result
                    .get("userAgent")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned();
                tracing::info!(%user_agent, "codex app-server is ready");
                self.init_result = Some(result.clone());
                for (client, id) in std::mem::take(&mut self.init_waiters) {
                    self.finish_client_init(client, &id, &result);
                }
                for w in std::mem::take(&mut self.waiting) {
                    match w {
                        Waiting::Request {
                            client,
                            id,
                            method,
                            params,
                        } => self.dispatch_request(client, id, method, params),
                        Waiting::Notification { method, params, .. } => {
                            self.up_send(encode_notification(&method, &params))
                        }
                    }
                }
            }
            Err(e) => {
                let msg = format!(
                    "codex app-server refused initialize: {} ({})",
                    e.message, e.code
                );
                tracing::warn!("{msg}");
                if let Some(up) = self.upstream.take() {
                    if let Some(p) = &up.process {
                        p.kill();
                    }
                    up.abort();
                }
                self.on_upstream_closed(CloseReason::Failed {
                    message: msg,
                    source: None,
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_client_answer(
        &mut self,
        up_id: i64,
        client: ClientId,
        id: RequestId,
        method: &str,
        params: Value,
        thread: Option<String>,
        outcome: Result<Value, JsonRpcError>,
    ) {
        let connected = self.clients.contains_key(&client);
        match outcome {
            Ok(result) => {
                if let Some(thread) = &thread
                    && let Some(o) = self.owners.get_mut(thread)
                    && o.client == client
                {
                    if o.claim_req == Some(up_id) {
                        o.claim_req = None;
                    }
                    if LOADS.contains(&method) || NEEDS_LOADED.contains(&method) {
                        o.generation = Some(self.generation);
                    }
                    if method == "thread/resume" {
                        o.open_params = params.clone();
                    }
                    if RELEASES.contains(&method) {
                        self.owners.remove(thread);
                    }
                }
                if LOADS.contains(&method)
                    && let Some(opened) = result
                        .pointer("/thread/id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                {
                    if let Some(o) = self.owners.get(&opened)
                        && o.client != client
                    {
                        let owner = o.client;
                        let (msg, data) = self.owned_error(&opened, owner);
                        self.send_error(client, &id, codes::THREAD_OWNED, &msg, Some(&data));
                        return;
                    }
                    if connected {
                        let open_params = if method == "thread/fork"
                            || method == "thread/start"
                            || method == "thread/resume"
                        {
                            params
                        } else {
                            Value::Null
                        };
                        self.owners.insert(
                            opened.clone(),
                            Owner {
                                client,
                                claim_req: None,
                                generation: Some(self.generation),
                                open_params,
                            },
                        );
                        self.flush_held(&opened, client);
                    }
                }
                self.send(client, encode_result(&id, &result));
            }
            Err(e) => {
                if let Some(thread) = &thread
                    && self
                        .owners
                        .get(thread)
                        .is_some_and(|o| o.client == client && o.claim_req == Some(up_id))
                {
                    self.owners.remove(thread);
                }
                self.send(client, encode_error(Some(&id), e));
            }
        }
    }

    /// Delivers the held notifications of a thread that just got its owner, in order.
    fn flush_held(&mut self, thread: &str, client: ClientId) {
        if self.held.is_empty() {
            return;
        }
        let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(t, _)| t == thread);
        self.held = rest;
        for (_, text) in mine {
            self.send(client, text);
        }
    }

    fn on_upstream_notification(&mut self, text: String, method: String, mut params: Value) {
        let thread = notification_thread(&method, &params);
        match method.as_str() {
            "turn/started" => {
                if let (Some(thread), Some(turn)) =
                    (&thread, params.pointer("/turn/id").and_then(Value::as_str))
                {
                    self.running.insert((thread.clone(), turn.to_owned()));
                }
            }
            "turn/completed" => {
                if let (Some(thread), Some(turn)) =
                    (&thread, params.pointer("/turn/id").and_then(Value::as_str))
                {
                    self.running.remove(&(thread.clone(), turn.to_owned()));
                }
            }
            "thread/started" => {
                if let Some(thread) = &thread
                    && !self.owners.contains_key(thread)
                    && let Some(parent) = parent_thread(&params)
                    && let Some(owner) = self.owners.get(&parent).map(|o| o.client)
                {
                    self.owners.insert(
                        thread.clone(),
                        Owner {
                            client: owner,
                            claim_req: None,
                            generation: Some(self.generation),
                            open_params: Value::Null,
                        },
                    );
                }
            }
            "serverRequest/resolved" => {
                let upstream_id = params
                    .get("requestId")
                    .and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
                if let Some(upstream_id) = upstream_id {
                    let target = self.answered.remove(&upstream_id).or_else(|| {
                        let found = self
                            .server_reqs
                            .iter()
                            .find(|(_, r)| r.upstream_id == upstream_id)
                            .map(|(b, r)| (r.client, *b));
                        if let Some((_, b)) = found {
                            self.server_reqs.remove(&b);
                        }
                        found
                    });
                    match target {
                        Some((client, broker_id)) => {
                            params["requestId"] = Value::from(broker_id);
                            if self.wants(client, &method) {
                                self.send(client, encode_notification(&method, &params));
                            }
                        }
                        None => tracing::trace!(%upstream_id, "resolved a request no client saw"),
                    }
                    return;
                }
            }
            _ => {}
        }
        match thread {
            Some(thread) => match self.owners.get(&thread).map(|o| o.client) {
                Some(owner) => {
                    if self.wants(owner, &method) {
                        self.send_out(owner, Outgoing::notification(text, &method, params));
                    }
                }
                None if self.creating > 0 => {
                    if self.held.len() >= MAX_HELD {
                        self.held.pop_front();
                    }
                    self.held.push_back((thread, text));
                }
                None => tracing::trace!(%thread, %method, "notification of an unowned thread"),
            },
            None => {
                let targets: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.state == ClientState::Ready && !c.opt_out.contains(&method))
                    .map(|(id, _)| *id)
                    .collect();
                for client in targets {
                    self.send(client, text.clone());
                }
            }
        }
    }

    /// Whether `client` is ready and did not opt out of `method`.
    fn wants(&self, client: ClientId, method: &str) -> bool {
        self.clients
            .get(&client)
            .is_some_and(|c| c.state == ClientState::Ready && !c.opt_out.contains(method))
    }

    fn on_server_request(&mut self, id: RequestId, method: String, params: Value) {
        let thread = server_request_thread(&method, &params);
        let owner = thread
            .as_ref()
            .and_then(|t| self.owners.get(t))
            .map(|o| o.client)
            .filter(|c| self.wants(*c, &method));
        let req = ServerReq {
            upstream_id: id,
            generation: self.generation,
            client: owner.unwrap_or_default(),
            method,
            params,
            thread,
        };
        let Some(client) = owner else {
            tracing::debug!(method = %req.method, thread = ?req.thread, "server request without a connected owner; declining");
            self.decline_upstream(req);
            return;
        };
        let broker_id = self.next_server_id;
        self.next_server_id += 1;
        let text = json!({"id": broker_id, "method": req.method, "params": req.params}).to_string();
        self.server_reqs.insert(broker_id, req);
        self.send(client, text);
    }

    /// Answers a server request with a decline (encoded for its method).
    fn decline_upstream(&mut self, req: ServerReq) {
        if req.generation != self.generation {
            return;
        }
        let ctx = ServerRequestCtx::new(req.upstream_id.clone(), req.method, req.params);
        let outcome = ctx.encode_reply(ServerReply::Decision(Decision::Decline));
        let text = line(&Message::response(&req.upstream_id, outcome));
        self.up_send(text);
    }

    /// The app-server is gone: fail what waits for it, tell the owners of running turns.
    pub(crate) fn on_upstream_closed(&mut self, reason: CloseReason) {
        let exit = exit_info(&reason);
        tracing::warn!("codex app-server is gone: {}", exit.message);
        self.last_exit = Some(exit.message.clone());
        let data = to_value(&exit);
        let msg_for = |method: &str| {
            format!(
                "{} before answering {method}; the next request starts a new app-server",
                exit.message
            )
        };
        for (_, origin) in std::mem::take(&mut self.pending) {
            match origin {
                Origin::Client {
                    client, id, method, ..
                } => {
                    self.send_error(
                        client,
                        &id,
                        codes::APP_SERVER_EXITED,
                        &msg_for(&method),
                        Some(&data),
                    );
                }
                Origin::Init => {}
                Origin::AutoResume { thread } => {
                    for d in self.deferred.remove(&thread).unwrap_or_default() {
                        self.send_error(
                            d.client,
                            &d.id,
                            codes::APP_SERVER_EXITED,
                            &msg_for(&d.method),
                            Some(&data),
                        );
                    }
                }
            }
        }
        for (_, list) in std::mem::take(&mut self.deferred) {
            for d in list {
                self.send_error(
                    d.client,
                    &d.id,
                    codes::APP_SERVER_EXITED,
                    &msg_for(&d.method),
                    Some(&data),
                );
            }
        }
        for (client, id) in std::mem::take(&mut self.init_waiters) {
            if let Some(conn) = self.clients.get_mut(&client) {
                conn.state = ClientState::New;
            }
            self.send_error(
                client,
                &id,
                codes::APP_SERVER_EXITED,
                &msg_for("initialize"),
                Some(&data),
            );
        }
        for w in std::mem::take(&mut self.waiting) {
            if let Waiting::Request {
                client, id, method, ..
            } = w
            {
                self.send_error(
                    client,
                    &id,
                    codes::APP_SERVER_EXITED,
                    &msg_for(&method),
                    Some(&data),
                );
            }
        }
        self.owners.retain(|_, o| o.claim_req.is_none());
        self.creating = 0;
        self.held.clear();
        self.answered.clear();
        for (broker_id, req) in std::mem::take(&mut self.server_reqs) {
            let mut params = json!({"requestId": broker_id});
            if let Some(t) = &req.thread {
                params["threadId"] = Value::String(t.clone());
            }
            if self.wants(req.client, "serverRequest/resolved") {
                self.send(
                    req.client,
                    encode_notification("serverRequest/resolved", &params),
                );
            }
        }
        let mut told: HashSet<ClientId> = HashSet::new();
        for (thread, turn) in std::mem::take(&mut self.running) {
            let Some(owner) = self.owners.get(&thread).map(|o| o.client) else {
                continue;
            };
            let mut note = exit.clone();
            note.thread_id = Some(thread);
            note.turn_id = Some(turn);
            if self.wants(owner, APP_SERVER_EXITED_NOTIFICATION) {
                told.insert(owner);
                self.send(
                    owner,
                    encode_notification(APP_SERVER_EXITED_NOTIFICATION, &to_value(&note)),
                );
            }
        }
        let others: Vec<ClientId> = self
            .clients
            .keys()
            .copied()
            .filter(|c| !told.contains(c) && self.wants(*c, APP_SERVER_EXITED_NOTIFICATION))
            .collect();
        for client in others {
            self.send(
                client,
                encode_notification(APP_SERVER_EXITED_NOTIFICATION, &data),
            );
        }
    }

    // ----- status ------------------------------------------------------------------------

    /// What `broker/status` answers.
    pub(crate) fn status(&self) -> BrokerStatus {
        let app_server = match &self.upstream {
            Some(u) if u.ready => "ready",
            Some(_) => "starting",
            None => "down",
        };
        BrokerStatus {
            pid: std::process::id(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            socket: self.cfg.socket.clone(),
            codex: self.cfg.codex.clone(),
            codex_home: self.cfg.codex_home.clone(),
            codex_version: self.init_result.as_ref().and_then(|r| {
                let ua = r.get("userAgent")?.as_str()?;
                let rest = ua.split_once('/')?.1;
                rest.split_whitespace().next().map(str::to_owned)
            }),
            app_server: app_server.into(),
            app_server_pid: self
                .upstream
                .as_ref()
                .and_then(|u| u.process.as_ref())
                .and_then(ProcessHandle::pid),
            restarts: self.starts.saturating_sub(1),
            last_exit: self.last_exit.clone(),
            clients: self
                .clients
                .iter()
                .map(|(id, c)| ClientStatus {
                    id: *id,
                    name: c.name.clone(),
                    pid: c.pid,
                    initialized: c.state == ClientState::Ready,
                    connected_ms: u64::try_from(c.connected.elapsed().as_millis())
                        .unwrap_or(u64::MAX),
                })
                .collect(),
            threads: {
                let mut threads: Vec<OwnedThread> = self
                    .owners
                    .iter()
                    .map(|(t, o)| OwnedThread {
                        thread_id: t.clone(),
                        client: o.client,
                    })
                    .collect();
                threads.sort_by(|a, b| a.thread_id.cmp(&b.thread_id));
                threads
            },
            running_turns: self
                .running
                .iter()
                .map(|(t, turn)| RunningTurn {
                    thread_id: t.clone(),
                    turn_id: turn.clone(),
                    client: self.owners.get(t).map(|o| o.client),
                })
                .collect(),
            idle_timeout_ms: self
                .cfg
                .idle_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Tells every client the broker stops (answers what waits with an error).
    pub(crate) fn fail_all_for_shutdown(&mut self) {
        let msg = "the codex-broker is shutting down";
        for (_, origin) in std::mem::take(&mut self.pending) {
            if let Origin::Client { client, id, .. } = origin {
                self.send_error(client, &id, codes::SHUTTING_DOWN, msg, None);
            }
        }
        for (client, id) in std::mem::take(&mut self.init_waiters) {
            self.send_error(client, &id, codes::SHUTTING_DOWN, msg, None);
        }
        for w in std::mem::take(&mut self.waiting) {
            if let Waiting::Request { client, id, .. } = w {
                self.send_error(client, &id, codes::SHUTTING_DOWN, msg, None);
            }
        }
        for (_, list) in std::mem::take(&mut self.deferred) {
            for d in list {
                self.send_error(d.client, &d.id, codes::SHUTTING_DOWN, msg, None);
            }
        }
    }

    /// Drops every client's queue (their writer tasks flush and close).
    pub(crate) fn disconnect_all(&mut self) {
        self.clients.clear();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // the reader task owns the transport: aborting it kills the app-server
        if let Some(up) = self.upstream.take() {
            up.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
