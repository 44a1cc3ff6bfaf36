//! The JSON-RPC connection to one app-server.
//!
//! [`Connection::new`] spawns a task that owns the reading half of a
//! [`Transport`] (and a second one that owns the writing half, fed by a bounded queue), so
//! that reading never waits for writing. That task:
//!
//! - matches responses to requests: request ids come from a counter, and each waits in a
//!   pending table until its answer arrives. Dropping a request future removes its entry (no
//!   leak under cancellation; a late answer is counted in
//!   [`ConnectionStats::unmatched_responses`]);
//! - hands server-to-client requests (approvals) to the
//!   [`ApprovalHandler`], keeping them in a table of their
//!   own (their ids come from the server's counter and overlap ours); each is answered
//!   exactly once, declined if the handler fails;
//! - delivers notifications, in order, to [`Subscription`]s: everything, one thread, or one
//!   turn. Queues are bounded; a subscriber that falls behind gets [`ConnectionEvent::Lagged`] instead
//!   of silently missing events, and never slows the connection down. A subscription with
//!   [`Overflow::CoalesceDeltas`] (the turn a client drives) merges text deltas instead, so
//!   that a burst does not cost a reader that keeps up on average anything;
//! - skips frames that are not JSON-RPC messages ([`ConnectionEvent::Garbage`] on [`Filter::All`]
//!   subscriptions, [`ConnectionStats::garbage_frames`], a tracing warning);
//! - when the app-server exits or the socket closes, fails every pending request and ends
//!   every subscription with [`Error::Closed`], carrying the exit status and stderr tail,
//!   within milliseconds.
//!
//! Requests sent before the `initialize` handshake are refused by codex with -32600
//! "Not initialized"; [`Connection::connect`] performs the handshake (`initialize`, then the
//! `initialized` notification) and returns the server's answer. The handshake is bounded by
//! [`ConnectionOptions::handshake_timeout`]: a server that never answers gives
//! [`Error::HandshakeTimeout`], and the connection is closed (a launched app-server killed).
//!
//! ```no_run
//! # async fn demo() -> codex_asp::Result<()> {
//! use codex_asp::protocol::InitializeParams;
//! use codex_asp::transport::{stdio, TransportOptions};
//! use codex_asp::{Connection, ConnectionOptions, Filter};
//! use codex_core::process::CodexCommand;
//! use serde_json::json;
//!
//! let transport = stdio::spawn(CodexCommand::new("codex").arg("app-server"), &TransportOptions::default())?;
//! let (conn, init) = Connection::connect(
//!     transport,
//!     ConnectionOptions::default(),
//!     &InitializeParams::new("my-app", "1.0.0"),
//! )
//! .await?;
//! println!("connected to {}", init.user_agent);
//!
//! // Start a thread and subscribe to it atomically (no notification can slip in between).
//! let (thread, sub) = conn
//!     .request_raw_subscribed("thread/start", json!({"cwd": "/tmp"}), Filter::result_thread)
//!     .await?;
//! let mut sub = sub.expect("thread/start answers a thread");
//! let thread_id = thread["thread"]["id"].as_str().unwrap_or_default().to_owned();
//! let turn = conn
//!     .request_raw(
//!         "turn/start",
//!         json!({"threadId": thread_id, "input": [{"type": "text", "text": "hi", "text_elements": []}]}),
//!     )
//!     .await?;
//! let turn_id = turn["turn"]["id"].as_str().unwrap_or_default();
//! loop {
//!     let n = sub.next_notification().await?;
//!     if n.method() == "turn/completed" && n.turn_id() == Some(turn_id) {
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::approval::{ApprovalHandler, DeclineAll};
use crate::error::{CloseReason, Error, Result};
use crate::jsonrpc::{JsonRpcError, Message, RequestId};
use crate::protocol::{Initialize, InitializeParams, InitializeResponse, Request};
use crate::transport::{DEFAULT_MAX_MESSAGE_BYTES, ProcessHandle, Transport};

mod driver;
pub(crate) mod subscription;

pub use subscription::{
    COALESCED_METHODS, ConnectionEvent, Filter, MAX_COALESCED_BYTES, Notification, Overflow,
    Subscription,
};

use subscription::{QueueSender, SubEntry};

/// The default [`ConnectionOptions::handshake_timeout`]: 30 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of a [`Connection`].
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectionOptions {
    /// How many outgoing messages may wait for the writer (default 64); a full queue makes
    /// requests wait, and is what the tower service's `poll_ready` reports.
    pub outbound_queue: usize,
    /// How many events a subscription buffers before it lags (default 1024).
    pub subscription_capacity: usize,
    /// The largest message this side sends (default 64 MiB).
    pub max_message_bytes: usize,
    /// Who answers approvals and other server requests (default [`DeclineAll`]).
    pub approval_handler: Arc<dyn ApprovalHandler>,
    /// How long [`Connection::initialize`] waits for the server's answer (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
}

impl fmt::Debug for ConnectionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionOptions")
            .field("outbound_queue", &self.outbound_queue)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            outbound_queue: 64,
            subscription_capacity: 1024,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            approval_handler: Arc::new(DeclineAll),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl ConnectionOptions {
    /// Sets the approval handler.
    pub fn approval_handler(mut self, handler: impl ApprovalHandler) -> Self {
        self.approval_handler = Arc::new(handler);
        self
    }

    /// Sets the outbound queue length (at least 1).
    pub fn outbound_queue(mut self, len: usize) -> Self {
        self.outbound_queue = len.max(1);
        self
    }

    /// Sets the per-subscription buffer (at least 1).
    pub fn subscription_capacity(mut self, len: usize) -> Self {
        self.subscription_capacity = len.max(1);
        self
    }

    /// Sets the bound on outgoing messages (at least 1 KiB).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.max(1024);
        self
    }

    /// Sets how long the `initialize` handshake may take.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

/// Counters of a connection, for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Requests waiting for their answer.
    pub pending_requests: usize,
    /// Server requests not answered yet.
    pub pending_server_requests: usize,
    /// Live subscriptions.
    pub subscriptions: usize,
    /// Notifications received.
    pub notifications: u64,
    /// Frames skipped as garbage.
    pub garbage_frames: u64,
    /// Responses that matched no pending request (their request was dropped).
    pub unmatched_responses: u64,
    /// Events dropped for subscribers that fell behind.
    pub lagged_events: u64,
    /// Text deltas merged into queued ones for [`Overflow::CoalesceDeltas`] subscribers that
    /// fell behind.
    pub coalesced_events: u64,
}

/// An outgoing frame; `id` is the request's, so a send failure can fail just that request.
pub(crate) struct Outbound {
    pub text: String,
    pub id: Option<i64>,
}

/// What a pending request receives.
pub(crate) enum Outcome {
    Ok { value: Value, subscribed: bool },
    Rpc(JsonRpcError),
    Failed(Error),
}

pub(crate) type FilterFn = Box<dyn FnOnce(&Value) -> Option<Filter> + Send>;

pub(crate) struct Pending {
    tx: oneshot::Sender<Outcome>,
    subscribe: Option<(FilterFn, SubEntryParts)>,
}

/// A subscription prepared before its request, registered when the answer arrives.
pub(crate) struct SubEntryParts {
    id: u64,
    tx: QueueSender,
}

#[derive(Default)]
pub(crate) struct Counters {
    notifications: AtomicU64,
    garbage: AtomicU64,
    unmatched: AtomicU64,
    lagged: AtomicU64,
    coalesced: AtomicU64,
}

pub(crate) struct State {
    closed: Option<CloseReason>,
    pending: HashMap<i64, Pending>,
    pub(crate) subs: HashMap<u64, SubEntry>,
    next_sub: u64,
    /// Unanswered server requests: id → (sequence number, resolved signal).
    server_requests: HashMap<RequestId, (u64, CancellationToken)>,
    next_server_seq: u64,
}

/// State shared by the connection's handles, its task, its subscriptions and responders.
pub(crate) struct Shared {
    state: Mutex<State>,
    next_id: AtomicI64,
    closed_tx: watch::Sender<Option<CloseReason>>,
    counters: Counters,
    sub_capacity: usize,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn closed_error(&self) -> Error {
        Error::closed(
            self.lock()
                .closed
                .clone()
                .unwrap_or(CloseReason::ClientClosed),
        )
    }
}

struct Inner {
    shared: Arc<Shared>,
    out_tx: mpsc::Sender<Outbound>,
    ctl_tx: mpsc::UnboundedSender<driver::Control>,
    _shutdown: oneshot::Sender<()>,
    process: Option<ProcessHandle>,
    label: String,
    max_message_bytes: usize,
    handshake_timeout: Duration,
}

/// A JSON-RPC connection to one `codex app-server`. Cheap to clone; the connection closes
/// when the last clone is dropped (killing an app-server launched by its transport).
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("label", &self.inner.label)
            .field("process", &self.inner.process)
            .field("closed", &self.close_reason())
            .finish_non_exhaustive()
    }
}

/// A request registered in the pending table; dropping it removes the entry.
pub(crate) struct PendingCall {
    rx: oneshot::Receiver<Outcome>,
    guard: PendingGuard,
    method: String,
    sub: Option<Subscription>,
    conn: Connection,
}

struct PendingGuard {
    shared: Arc<Shared>,
    id: i64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

impl PendingCall {
    /// Waits for the answer.
    pub(crate) async fn finish(self) -> Result<(Value, Option<Subscription>)> {
        let PendingCall {
            rx,
            guard,
            method,
            sub,
            conn,
        } = self;
        let outcome = rx.await;
        drop(guard);
        match outcome {
            Ok(Outcome::Ok { value, subscribed }) => {
                Ok((value, if subscribed { sub } else { None }))
            }
            Ok(Outcome::Rpc(error)) => Err(Error::Rpc { method, error }),
            Ok(Outcome::Failed(e)) => Err(e),
            Err(_) => Err(Error::closed(conn.closed().await)),
        }
    }
}

impl Connection {
    /// Starts a connection over `transport` (no handshake: see [`Connection::connect`]).
    ///
    /// Must be called within a Tokio runtime.
    pub fn new(transport: Transport, options: ConnectionOptions) -> Connection {
        let (reader, writer, label, process) = transport.into_parts();
        let (closed_tx, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                closed: None,
                pending: HashMap::new(),
                subs: HashMap::new(),
                next_sub: 0,
                server_requests: HashMap::new(),
                next_server_seq: 0,
            }),
            next_id: AtomicI64::new(0),
            closed_tx,
            counters: Counters::default(),
            sub_capacity: options.subscription_capacity.max(1),
        });
        let (out_tx, out_rx) = mpsc::channel(options.outbound_queue.max(1));
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        driver::start(driver::Parts {
            shared: shared.clone(),
            reader,
            writer,
            out_rx,
            ctl_tx: ctl_tx.clone(),
            ctl_rx,
            shutdown_rx,
            handler: options.approval_handler.clone(),
            label: label.clone(),
        });
        tracing::debug!(transport = %label, "codex app-server connection started");
        Connection {
            inner: Arc::new(Inner {
                shared,
                out_tx,
                ctl_tx,
                _shutdown: shutdown_tx,
                process,
                label,
                max_message_bytes: options.max_message_bytes.max(1024),
                handshake_timeout: options.handshake_timeout,
            }),
        }
    }

    /// Starts a connection and performs the handshake: `initialize` with `params`, then the
    /// `initialized` notification. Returns the server's `initialize` answer.
    pub async fn connect(
        transport: Transport,
        options: ConnectionOptions,
        params: &InitializeParams,
    ) -> Result<(Connection, InitializeResponse)> {
        let conn = Connection::new(transport, options);
        let response = conn.initialize(params).await?;
        Ok((conn, response))
    }

    /// Performs the handshake on a new connection (see [`Connection::connect`]), within the
    /// connection's [`ConnectionOptions::handshake_timeout`].
    ///
    /// A server that does not answer in time gives [`Error::HandshakeTimeout`]; the
    /// connection is then closed and an app-server its transport launched is killed.
    pub async fn initialize(&self, params: &InitializeParams) -> Result<InitializeResponse> {
        let after = self.inner.handshake_timeout;
        let handshake = async {
            let response = self.request::<Initialize>(params.clone()).await?;
            self.notify_raw("initialized", Value::Null).await?;
            Ok(response)
        };
        match tokio::time::timeout_at(codex_core::util::deadline(after), handshake).await {
            Ok(result) => result,
            Err(_) => {
                let error = Error::HandshakeTimeout {
                    endpoint: self.inner.label.clone(),
                    program: self
                        .inner
                        .process
                        .as_ref()
                        .and_then(|p| p.program().cloned()),
                    after,
                };
                tracing::warn!("{error}; closing the connection");
                self.abort();
                Err(error)
            }
        }
    }

    /// Closes the connection at once, killing an app-server its transport launched.
    fn abort(&self) {
        if let Some(process) = &self.inner.process {
            process.kill();
        }
        let _ = self.inner.ctl_tx.send(driver::Control::Close {
            grace: Duration::ZERO,
        });
    }

    /// The transport's label (`stdio`, the URL, ...).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The app-server process, when the transport launched it.
    pub fn process(&self) -> Option<&ProcessHandle> {
        self.inner.process.as_ref()
    }

    /// Sends a request and waits for its result.
    ///
    /// `params` is sent as given, except `null`, which is sent as `{}` (codex wants a params
    /// object). A JSON-RPC error answer becomes [`Error::Rpc`].
    ///
    /// Dropping the future forgets the request (its answer, if any, is discarded).
    pub async fn request_raw(&self, method: &str, params: Value) -> Result<Value> {
        let (outbound, call) = self.prepare(method, params, None, Overflow::Lag)?;
        self.enqueue(outbound).await?;
        call.finish().await.map(|(value, _)| value)
    }

    /// Sends a request and, when its result arrives, subscribes with the filter
    /// `filter_for(&result)` before any later message is processed: no notification can be
    /// missed between the answer and the subscription (use [`Filter::result_thread`] for
    /// `thread/start`, `thread/resume` and `thread/fork`).
    pub async fn request_raw_subscribed(
        &self,
        method: &str,
        params: Value,
        filter_for: impl FnOnce(&Value) -> Option<Filter> + Send + 'static,
    ) -> Result<(Value, Option<Subscription>)> {
        self.request_raw_subscribed_with(method, params, filter_for, Overflow::Lag)
            .await
    }

    /// [`Connection::request_raw_subscribed`] with the subscription's [`Overflow`] policy
    /// (e.g. [`Overflow::CoalesceDeltas`] for the events of a turn this client drives).
    pub async fn request_raw_subscribed_with(
        &self,
        method: &str,
        params: Value,
        filter_for: impl FnOnce(&Value) -> Option<Filter> + Send + 'static,
        overflow: Overflow,
    ) -> Result<(Value, Option<Subscription>)> {
        let (outbound, call) =
            self.prepare(method, params, Some(Box::new(filter_for)), overflow)?;
        self.enqueue(outbound).await?;
        call.finish().await
    }

    /// Sends a typed request and decodes its result.
    ///
    /// ```no_run
    /// # async fn demo(conn: &codex_asp::Connection) -> codex_asp::Result<()> {
    /// use codex_asp::protocol::{ModelList, ModelListParams};
    /// let models = conn.request::<ModelList>(ModelListParams::default()).await?;
    /// # let _ = models; Ok(()) }
    /// ```
    pub async fn request<R: Request>(&self, params: R::Params) -> Result<R::Response> {
        let params = encode_params::<R>(&params)?;
        let value = self.request_raw(R::METHOD, params).await?;
        decode_result::<R>(value)
    }

    /// [`Connection::request_raw_subscribed`] for a typed request.
    pub async fn request_subscribed<R: Request>(
        &self,
        params: R::Params,
        filter_for: impl FnOnce(&Value) -> Option<Filter> + Send + 'static,
    ) -> Result<(R::Response, Option<Subscription>)> {
        let params = encode_params::<R>(&params)?;
        let (value, sub) = self
            .request_raw_subscribed(R::METHOD, params, filter_for)
            .await?;
        Ok((decode_result::<R>(value)?, sub))
    }

    /// Sends a notification (`params` omitted when `null`).
    pub async fn notify_raw(&self, method: &str, params: Value) -> Result<()> {
        let message = Message::Notification {
            method: method.to_owned(),
            params,
        };
        let text = message.encode().map_err(|source| Error::Encode {
            method: method.to_owned(),
            source,
        })?;
        self.check_size(&text)?;
        if let Some(reason) = self.close_reason() {
            return Err(Error::closed(reason));
        }
        self.enqueue(Outbound { text, id: None }).await
    }

    /// Subscribes to events matching `filter`, from now on.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        self.subscribe_with(filter, Overflow::Lag)
    }

    /// Subscribes to events matching `filter`, from now on, with an [`Overflow`] policy.
    pub fn subscribe_with(&self, filter: Filter, overflow: Overflow) -> Subscription {
        let shared = &self.inner.shared;
        let mut st = shared.lock();
        let (parts, sub) = new_subscription(shared, &mut st, overflow);
        if st.closed.is_none() {
            st.subs.insert(
                parts.id,
                SubEntry {
                    filter,
                    tx: parts.tx,
                },
            );
        }
        sub
    }

    /// Subscribes to everything ([`Filter::All`]).
    pub fn subscribe_all(&self) -> Subscription {
        self.subscribe(Filter::All)
    }

    /// Subscribes to one thread.
    pub fn subscribe_thread(&self, thread_id: impl Into<String>) -> Subscription {
        self.subscribe(Filter::Thread(thread_id.into()))
    }

    /// Subscribes to one turn.
    pub fn subscribe_turn(&self, turn_id: impl Into<String>) -> Subscription {
        self.subscribe(Filter::Turn(turn_id.into()))
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    /// Why the connection closed, once it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.shared.lock().closed.clone()
    }

    /// Waits until the connection closes, and says why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.inner.shared.closed_tx.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(CloseReason::ClientClosed),
            Err(_) => CloseReason::ClientClosed,
        }
    }

    /// Closes gracefully: closes the writing direction (stdin end-of-file, WebSocket close),
    /// waits up to `grace` for the server to close its side, then closes the connection.
    /// Returns why it closed (for stdio, normally the app-server's exit with code 0).
    pub async fn shutdown(&self, grace: std::time::Duration) -> CloseReason {
        let _ = self.inner.ctl_tx.send(driver::Control::Close { grace });
        self.closed().await
    }

    /// Current counters.
    pub fn stats(&self) -> ConnectionStats {
        let shared = &self.inner.shared;
        let st = shared.lock();
        ConnectionStats {
            pending_requests: st.pending.len(),
            pending_server_requests: st.server_requests.len(),
            subscriptions: st.subs.len(),
            notifications: shared.counters.notifications.load(Ordering::Relaxed),
            garbage_frames: shared.counters.garbage.load(Ordering::Relaxed),
            unmatched_responses: shared.counters.unmatched.load(Ordering::Relaxed),
            lagged_events: shared.counters.lagged.load(Ordering::Relaxed),
            coalesced_events: shared.counters.coalesced.load(Ordering::Relaxed),
        }
    }

    /// Registers a request in the pending table and encodes it.
    pub(crate) fn prepare(
        &self,
        method: &str,
        params: Value,
        subscribe: Option<FilterFn>,
        overflow: Overflow,
    ) -> Result<(Outbound, PendingCall)> {
        let shared = &self.inner.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let message = Message::Request {
            id: RequestId::Integer(id),
            method: method.to_owned(),
            params,
        };
        let text = message.encode().map_err(|source| Error::Encode {
            method: method.to_owned(),
            source,
        })?;
        self.check_size(&text)?;
        let (tx, rx) = oneshot::channel();
        let mut st = shared.lock();
        if let Some(reason) = &st.closed {
            return Err(Error::closed(reason.clone()));
        }
        let (subscribe, sub) = match subscribe {
            Some(filter_for) => {
                let (parts, sub) = new_subscription(shared, &mut st, overflow);
                (Some((filter_for, parts)), Some(sub))
            }
            None => (None, None),
        };
        st.pending.insert(id, Pending { tx, subscribe });
        drop(st);
        tracing::trace!(id, method, "request");
        Ok((
            Outbound { text, id: Some(id) },
            PendingCall {
                rx,
                guard: PendingGuard {
                    shared: shared.clone(),
                    id,
                },
                method: method.to_owned(),
                sub,
                conn: self.clone(),
            },
        ))
    }

    /// Queues a frame for the writer, waiting while the queue is full.
    pub(crate) async fn enqueue(&self, outbound: Outbound) -> Result<()> {
        match self.inner.out_tx.send(outbound).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::closed(self.closed().await)),
        }
    }

    pub(crate) fn out_sender(&self) -> mpsc::Sender<Outbound> {
        self.inner.out_tx.clone()
    }

    fn check_size(&self, text: &str) -> Result<()> {
        let max = self.inner.max_message_bytes;
        if text.len() > max {
            return Err(Error::MessageTooLarge {
                what: "outgoing",
                len: text.len(),
                max,
            });
        }
        Ok(())
    }
}

fn new_subscription(
    shared: &Arc<Shared>,
    st: &mut State,
    overflow: Overflow,
) -> (SubEntryParts, Subscription) {
    let (tx, queue) = subscription::queue(shared.sub_capacity, overflow);
    let id = st.next_sub;
    st.next_sub += 1;
    (
        SubEntryParts { id, tx },
        Subscription {
            id,
            queue,
            shared: shared.clone(),
            held: None,
            ended: false,
        },
    )
}

pub(crate) fn encode_params<R: Request>(params: &R::Params) -> Result<Value> {
    serde_json::to_value(params).map_err(|source| Error::Encode {
        method: R::METHOD.to_owned(),
        source,
    })
}

pub(crate) fn decode_result<R: Request>(value: Value) -> Result<R::Response> {
    serde_json::from_value(value).map_err(|source| Error::Decode {
        method: R::METHOD.to_owned(),
        source,
    })
}
