//! The broker's state machine: clients, the upstream app-server, id maps, thread ownership,
//! running turns. Everything happens on one task (the server loop calls into the hub for
//! every event), so routing decisions see messages in the order they arrived.
//!
//! The hub never waits: messages to clients go into bounded per-client queues (a client whose
//! queue is full is disconnected rather than allowed to stall everyone), messages to the
//! app-server into an unbounded queue drained by a writer task.

mod clients;
mod routing;
mod upstream;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::outbox::Outgoing;
use super::{AppServerExit, BrokerStatus, ClientStatus, Launcher, OwnedThread, RunningTurn, codes};
use crate::error::CloseReason;
use crate::jsonrpc::{JsonRpcError, Message, RequestId};
use crate::transport::{Frame, ProcessHandle};

/// The broker's number for a client connection.
pub(crate) type ClientId = u64;

/// How many notifications about a not-yet-owned thread are kept while a `thread/start` or
/// `thread/fork` is in flight.
const MAX_HELD: usize = 4096;

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

/// A running turn: its thread and its id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TurnRef {
    thread: String,
    turn: String,
}

impl TurnRef {
    fn new(thread: &str, turn: &str) -> TurnRef {
        TurnRef {
            thread: thread.to_owned(),
            turn: turn.to_owned(),
        }
    }
}

/// A notification of a thread that has no owner yet, held (as its encoded line) while a
/// `thread/start`, `thread/resume` or `thread/fork` is in flight.
#[derive(Debug)]
struct HeldLine {
    thread: String,
    line: String,
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
    running: BTreeSet<TurnRef>,
    server_reqs: HashMap<i64, ServerReq>,
    answered: HashMap<RequestId, (ClientId, i64)>,
    next_server_id: i64,
    creating: usize,
    held: VecDeque<HeldLine>,
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
            init_deadline: Some(codex_core::util::deadline(self.cfg.init_timeout)),
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

    pub(super) fn next_id(&mut self) -> i64 {
        let id = self.next_up_id;
        self.next_up_id += 1;
        id
    }

    pub(super) fn up_send(&mut self, text: impl Into<Option<String>>) {
        if let (Some(up), Some(text)) = (&self.upstream, text.into()) {
            let _ = up.tx.send(text);
        }
    }

    pub(super) fn upstream_ready(&self) -> bool {
        self.upstream.as_ref().is_some_and(|u| u.ready)
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
                .map(|r| RunningTurn {
                    thread_id: r.thread.clone(),
                    turn_id: r.turn.clone(),
                    client: self.owners.get(&r.thread).map(|o| o.client),
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
