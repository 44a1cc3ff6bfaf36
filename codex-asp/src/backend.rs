//! [`AspBackend`]: the codex-core [`Backend`] over `codex app-server`.
//!
//! The same [`TaskSpec`] and [`Event`] model as the `codex exec` backend, over a long-lived
//! app-server: a private one launched on stdio ([`AspBackend::spawn`]), or any
//! [`Connection`] (WebSocket, unix socket, a broker: [`AspBackend::connect`],
//! [`AspBackend::from_connection`]). On top of the trait it offers what only the app-server
//! can do: approvals (through the [`ApprovalHandler`] of the options), streamed deltas,
//! [`fork`](AspBackend::fork), [`steer`](AspBackend::steer),
//! [`interrupt`](AspBackend::interrupt), [`review`](AspBackend::review), the account and
//! its rate limits, and the raw client ([`AspBackend::connection`]).
//!
//! ## One turn
//!
//! [`Backend::start`] sends `thread/start` (`cwd`, `model`, `sandbox` as the kebab-case
//! string, `approvalPolicy`, `config` overrides, `ephemeral`) and subscribes to the new
//! thread atomically with the answer, so that nothing of the thread is missed; then it
//! sends `turn/start` (the prompt and extra inputs as one text input, images as
//! `localImage` inputs, `effort`, `outputSchema`, `serviceTier`, and `sandboxPolicy` as the
//! tagged object, which is where extra writable roots go: `{"type":"workspaceWrite",
//! "writableRoots":[..]}`). [`Backend::resume`] does the same with `thread/resume`
//! (`excludeTurns: true`, which avoids codex's deprecation notice); threads persist under
//! `$CODEX_HOME/sessions`, so this works across app-server restarts.
//!
//! Notifications of the thread become core events:
//!
//! | notification | event |
//! | --- | --- |
//! | `thread/start` / `thread/resume` answer | [`Event::ThreadStarted`] (first; the later `thread/started` is not repeated) |
//! | `turn/started` (our turn) | [`Event::TurnStarted`] with the turn id |
//! | `item/started`, `item/completed` | [`Event::ItemStarted`], [`Event::ItemCompleted`] |
//! | `item/agentMessage/delta`, `item/reasoning/summaryTextDelta`, `item/commandExecution/outputDelta`, `item/fileChange/outputDelta` | [`Event::Delta`] |
//! | `turn/plan/updated` | [`Event::ItemUpdated`] with a [`ItemDetails::TodoList`] |
//! | `thread/tokenUsage/updated` (our turn) | summed into the usage of [`Event::TurnCompleted`] |
//! | `error` | [`Event::Error`] (not terminal: the turn still ends with `turn/completed`) |
//! | `turn/completed` (our turn) | [`Event::TurnCompleted`] / [`Event::TurnFailed`] / [`Event::TurnInterrupted`] by `turn.status` |
//! | a server request (approval, ...) of the thread | [`Event::Unknown`] `{kind: method, raw: {id, params}}` (the handler answers it) |
//! | anything else about the thread | [`Event::Unknown`] `{kind: method, raw: params}` |
//!
//! Only the `turn/completed` of *our* turn ends a run: a review runs a sub-turn whose
//! `turn/started` carries another id (with `rootTurnId` = ours), reported as
//! [`Event::Unknown`].
//!
//! ## How a run ends
//!
//! | what happened | outcome |
//! | --- | --- |
//! | `turn/completed`, status `completed` | `Ok(TurnOutcome)` |
//! | status `failed` | [`codex_core::Error::TurnFailed`] with codex's message |
//! | status `interrupted` (an approval answered `cancel`, [`AspBackend::interrupt`], another client) | [`codex_core::Error::Cancelled`] |
//! | the timeout ([`TaskSpec::timeout`] or [`AspBackendOptions::default_timeout`]) fired | `turn/interrupt` is sent, then [`codex_core::Error::Timeout`] |
//! | [`Run::cancel`], a cancel handle, or dropping the run | `turn/interrupt` is sent, then [`codex_core::Error::Cancelled`] |
//! | the app-server exited | at once, [`codex_core::Error::ProcessExited`] (exit status and stderr tail) |
//! | the connection closed otherwise | at once, [`codex_core::Error::Backend`] wrapping [`crate::Error::Closed`] |
//! | the run fell behind and the connection dropped notifications for it | an [`Event::Error`], `turn/interrupt`, then [`BackendError::Lagged`] |
//!
//! A run's subscription merges text deltas once its queue is full
//! ([`Overflow::CoalesceDeltas`]): a burst of deltas reaches the run as fewer, longer
//! [`Event::Delta`]s with the same text, and other notifications keep their place; only a
//! run that stops reading for good loses notifications.
//!
//! Errors of this crate reach callers as [`codex_core::Error::Backend`] with the
//! [`crate::Error`] as source (see [`asp_error`]), except an app-server that exited, which is
//! [`codex_core::Error::ProcessExited`]; errors specific to this backend are
//! [`BackendError`]s (see [`BackendError::from_core`]).
//!
//! ## Not supported per task
//!
//! [`TaskSpec::env`] is refused ([`codex_core::Error::InvalidSpec`]): the app-server is one
//! long-lived process; set its environment with [`AspBackendOptions::env`].
//! [`TaskSpec::skip_git_repo_check`] has no effect: the app-server does not check for a git
//! repository.
//!
//! ```no_run
//! # async fn demo() -> codex_core::Result<()> {
//! use codex_asp::AspBackend;
//! use codex_asp::backend::AspBackendOptions;
//! use codex_core::{Backend, CodexBinary, Event, TaskSpec};
//!
//! let codex = CodexBinary::discover().await?;
//! let backend = AspBackend::spawn(codex, AspBackendOptions::default().env("CODEX_HOME", "/srv/codex-home")).await?;
//! let mut run = backend.start(TaskSpec::new("say hello").cwd("/srv/project")).await?;
//! while let Some(event) = run.next_event().await {
//!     if let Event::Delta { delta, .. } = &event {
//!         print!("{delta}");
//!     }
//! }
//! let outcome = run.outcome().await?;
//! println!("\n{}", outcome.final_message.unwrap_or_default());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codex_core::backend::DEFAULT_EVENT_CAPACITY;
use codex_core::event::{DeltaKind, FileChangeKind, FileUpdate, ItemStatus, TodoEntry};
use codex_core::{
    ApprovalPolicy, AuthMode, Backend, BackendKind, CodexBinary, Event, FailureKind, Feature, Item,
    ItemDetails, ReasoningEffort, Run, RunSink, SandboxMode, ServiceTier, TaskSpec, ThreadId,
    TurnId, Usage,
};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::approval::{ApprovalHandler, DeclineAll};
use crate::connection::{
    Connection, ConnectionEvent, ConnectionOptions, Filter, Notification, Overflow, Subscription,
    decode_result, encode_params,
};
use crate::error::Error as AspError;
use crate::jsonrpc::error_codes;
use crate::protocol::{
    self, Account, AccountRateLimitsRead, AccountRead, AskForApproval, ClientInfo, ConfigRead,
    ConfigReadParams, GetAccountParams, GetAccountRateLimitsParams, GetAccountRateLimitsResponse,
    InitializeCapabilities, InitializeParams, InitializeResponse, Request, ReviewStart,
    ReviewStartParams, ReviewTarget, SandboxPolicy, ServerNotification, ThreadFork,
    ThreadForkParams, ThreadItem, ThreadList, ThreadListParams, ThreadOverrides, ThreadResume,
    ThreadResumeParams, ThreadStart, ThreadStartParams, TurnError, TurnInterrupt,
    TurnInterruptParams, TurnStart, TurnStartParams, TurnStatus, TurnSteer, TurnSteerParams,
    UserInput, WireSandboxMode,
};
use crate::service::{AspService, OverloadRetry, RawRequest, SubscribedRequest, Subscribing};
use crate::transport::{Transport, TransportOptions, stdio};
use tower::ServiceExt as _;

/// How long a stopping run (cancel, timeout, lag) waits for `turn/interrupt` to be answered,
/// and then for the interrupted turn's `turn/completed`.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The default per-run subscription buffer of a backend's own connection: large, because a
/// run that is read slowly must not lose notifications (a lost notification fails the run).
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 16 * 1024;

/// Errors specific to [`AspBackend`], carried as the source of a
/// [`codex_core::Error::Backend`] (get them back with [`BackendError::from_core`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// `turn/steer` found no running turn (the turn ended, or never ran).
    #[error("no active turn to steer on thread {thread_id} (expected turn {turn_id}): {message}")]
    NoActiveTurn {
        /// The thread.
        thread_id: ThreadId,
        /// The turn the caller expected to be running.
        turn_id: TurnId,
        /// The app-server's message.
        message: String,
    },
    /// The connection dropped notifications of a running turn because the run fell behind
    /// (the turn was interrupted: its outcome would have been incomplete).
    #[error(
        "{missed} notifications of thread {thread_id} were dropped because the run fell behind; the turn was interrupted (read the run's events faster, or raise AspBackendOptions::subscription_capacity)"
    )]
    Lagged {
        /// The thread.
        thread_id: ThreadId,
        /// How many notifications were dropped.
        missed: u64,
    },
    /// The app-server answered in a way this backend cannot use.
    #[error("unexpected answer to {method}: {detail}")]
    UnexpectedAnswer {
        /// The method.
        method: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl BackendError {
    /// The [`BackendError`] inside a [`codex_core::Error::Backend`], if there is one.
    pub fn from_core(error: &codex_core::Error) -> Option<&BackendError> {
        match error {
            codex_core::Error::Backend { source, .. } => source.downcast_ref::<BackendError>(),
            _ => None,
        }
    }
}

/// The [`crate::Error`] inside a [`codex_core::Error::Backend`], if there is one (the
/// JSON-RPC error of a refused request, a closed connection, ...).
pub fn asp_error(error: &codex_core::Error) -> Option<&AspError> {
    match error {
        codex_core::Error::Backend { source, .. } => source.downcast_ref::<AspError>(),
        _ => None,
    }
}

/// Options of an [`AspBackend`].
///
/// Build with [`AspBackendOptions::default`] and the builder methods. The process options
/// (`env`, `args`) only apply to [`AspBackend::spawn`]; the handshake options
/// (`approval_handler`, `client_info`, `experimental_api`, `opt_out_notification_methods`,
/// `subscription_capacity`, `handshake_timeout`) to [`AspBackend::spawn`] and
/// [`AspBackend::connect`].
#[derive(Clone)]
#[non_exhaustive]
pub struct AspBackendOptions {
    /// Environment variables of the launched app-server (`None` removes the variable).
    pub env: BTreeMap<String, Option<String>>,
    /// Extra arguments after `codex app-server` (e.g. `["-c", "model=\"gpt-5.5\""]`).
    pub args: Vec<String>,
    /// Who answers approvals and other server requests (default [`DeclineAll`]).
    pub approval_handler: Arc<dyn ApprovalHandler>,
    /// Who this client is (`initialize` `clientInfo`; default `codex-bridge` and this
    /// crate's version).
    pub client_info: ClientInfo,
    /// Declare `capabilities.experimentalApi` (needed for experimental methods and fields,
    /// e.g. the granular approval policy).
    pub experimental_api: bool,
    /// Notification methods the server should not send on this connection.
    pub opt_out_notification_methods: Vec<String>,
    /// Capacity of each run's event queue (default [`DEFAULT_EVENT_CAPACITY`]).
    pub event_capacity: usize,
    /// Timeout of turns whose [`TaskSpec::timeout`] is unset (default none).
    pub default_timeout: Option<Duration>,
    /// How many notifications a run's subscription buffers before it lags (default
    /// [`DEFAULT_SUBSCRIPTION_CAPACITY`]).
    pub subscription_capacity: usize,
    /// The kind reported by [`Backend::kind`] and in outcomes (default
    /// [`BackendKind::AppServer`]; a broker client reports [`BackendKind::Broker`]).
    pub kind: BackendKind,
    /// How long the `initialize` handshake may take (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::connection::DEFAULT_HANDSHAKE_TIMEOUT)); past it,
    /// [`AspBackend::spawn`] and [`AspBackend::connect`] fail with
    /// [`crate::Error::HandshakeTimeout`] and a launched app-server is killed.
    pub handshake_timeout: Duration,
    /// How requests refused as overloaded (-32001) are retried (default
    /// [`DEFAULT_OVERLOAD_RETRIES`] retries with [`OverloadRetry`]'s backoff). Every request
    /// of the backend runs through this [`tower`] retry layer over [`AspService`].
    pub overload_retry: OverloadRetry,
}

/// How often a backend retries a request the app-server refused as overloaded, by default.
pub const DEFAULT_OVERLOAD_RETRIES: u32 = 5;

impl fmt::Debug for AspBackendOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AspBackendOptions")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("args", &self.args)
            .field("client_info", &self.client_info)
            .field("experimental_api", &self.experimental_api)
            .field(
                "opt_out_notification_methods",
                &self.opt_out_notification_methods,
            )
            .field("event_capacity", &self.event_capacity)
            .field("default_timeout", &self.default_timeout)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("kind", &self.kind)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("overload_retry", &self.overload_retry)
            .finish_non_exhaustive()
    }
}

impl Default for AspBackendOptions {
    fn default() -> Self {
        AspBackendOptions {
            env: BTreeMap::new(),
            args: Vec::new(),
            approval_handler: Arc::new(DeclineAll),
            client_info: ClientInfo::new("codex-bridge", env!("CARGO_PKG_VERSION")),
            experimental_api: false,
            opt_out_notification_methods: Vec::new(),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            default_timeout: None,
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            kind: BackendKind::AppServer,
            handshake_timeout: crate::connection::DEFAULT_HANDSHAKE_TIMEOUT,
            overload_retry: OverloadRetry::new(DEFAULT_OVERLOAD_RETRIES),
        }
    }
}

impl AspBackendOptions {
    /// Sets an environment variable of the launched app-server.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), Some(value.into()));
        self
    }

    /// Sets several environment variables of the launched app-server.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        for (k, v) in vars {
            self.env.insert(k.into(), Some(v.into()));
        }
        self
    }

    /// Removes a variable from the launched app-server's environment.
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env.insert(key.into(), None);
        self
    }

    /// Appends an argument after `codex app-server`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments after `codex app-server`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the approval handler.
    pub fn approval_handler(mut self, handler: impl ApprovalHandler) -> Self {
        self.approval_handler = Arc::new(handler);
        self
    }

    /// Sets a shared approval handler.
    pub fn approval_handler_arc(mut self, handler: Arc<dyn ApprovalHandler>) -> Self {
        self.approval_handler = handler;
        self
    }

    /// Sets the client name and version sent in `initialize`.
    pub fn client_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.client_info = ClientInfo::new(name, version);
        self
    }

    /// Declares (or not) `capabilities.experimentalApi`.
    pub fn experimental_api(mut self, yes: bool) -> Self {
        self.experimental_api = yes;
        self
    }

    /// Asks the server not to send these notification methods.
    pub fn opt_out_notification_methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.opt_out_notification_methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the capacity of each run's event queue (at least 1).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Sets the timeout of turns whose spec has none.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Sets how many notifications a run's subscription buffers (at least 1).
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }

    /// Sets the kind this backend reports.
    pub fn kind(mut self, kind: BackendKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets how long the `initialize` handshake may take.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how overloaded requests are retried (`OverloadRetry::new(0)`: never).
    pub fn overload_retry(mut self, policy: OverloadRetry) -> Self {
        self.overload_retry = policy;
        self
    }

    /// The `initialize` params these options describe.
    pub fn initialize_params(&self) -> InitializeParams {
        let mut params = InitializeParams::new("", "");
        params.client_info = self.client_info.clone();
        if self.experimental_api || !self.opt_out_notification_methods.is_empty() {
            params.capabilities = Some(InitializeCapabilities {
                experimental_api: self.experimental_api,
                opt_out_notification_methods: (!self.opt_out_notification_methods.is_empty())
                    .then(|| self.opt_out_notification_methods.clone()),
            });
        }
        params
    }

    fn connection_options(&self) -> ConnectionOptions {
        let mut options = ConnectionOptions::default()
            .subscription_capacity(self.subscription_capacity)
            .outbound_queue(64)
            .handshake_timeout(self.handshake_timeout);
        options.approval_handler = self.approval_handler.clone();
        options
    }
}

/// The codex-core [`Backend`] over `codex app-server`. Cheap to clone (clones share the
/// connection). See the [module docs](self).
///
/// A backend launched with [`AspBackend::spawn`] owns its app-server: the process (group)
/// is killed when the last clone of the backend and every run it started are gone.
#[derive(Clone)]
pub struct AspBackend {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    retry: OverloadRetry,
    kind: BackendKind,
    event_capacity: usize,
    default_timeout: Option<Duration>,
    server: Option<InitializeResponse>,
}

impl fmt::Debug for AspBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AspBackend")
            .field("kind", &self.inner.kind)
            .field("connection", &self.inner.conn)
            .field("default_timeout", &self.inner.default_timeout)
            .finish_non_exhaustive()
    }
}

impl AspBackend {
    /// Launches a private `codex app-server` on stdio (own process group, killed with the
    /// backend; see [`stdio::spawn`]) with the options' environment and arguments, and
    /// performs the handshake.
    ///
    /// An app-server that exits during start-up (a bad `config.toml`, ...) gives
    /// [`codex_core::Error::ProcessExited`] with its stderr tail.
    pub async fn spawn(
        binary: CodexBinary,
        options: AspBackendOptions,
    ) -> codex_core::Result<AspBackend> {
        let mut command = binary
            .command(["app-server"])
            .args(options.args.iter().map(String::as_str));
        for (key, value) in &options.env {
            command = match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let transport = stdio::spawn(command, &TransportOptions::default())
            .map_err(|e| e.into_core(options.kind, "while starting"))?;
        Self::connect(transport, options).await
    }

    /// Opens a connection over `transport` (a WebSocket, a unix socket, ...) with the options'
    /// approval handler and performs the handshake.
    pub async fn connect(
        transport: Transport,
        options: AspBackendOptions,
    ) -> codex_core::Result<AspBackend> {
        let (conn, server) = Connection::connect(
            transport,
            options.connection_options(),
            &options.initialize_params(),
        )
        .await
        .map_err(|e| e.into_core(options.kind, "during the initialize handshake"))?;
        Ok(Self::build(conn, Some(server), &options))
    }

    /// A backend over a connection whose handshake is done (its approval handler and
    /// subscription capacity are the connection's), with default options.
    pub fn from_connection(connection: Connection) -> AspBackend {
        Self::from_connection_with(connection, AspBackendOptions::default())
    }

    /// A backend over a connection whose handshake is done, with `options` for the runs
    /// (`event_capacity`, `default_timeout`, `kind`; the connection options are the
    /// connection's own).
    pub fn from_connection_with(connection: Connection, options: AspBackendOptions) -> AspBackend {
        Self::build(connection, None, &options)
    }

    fn build(
        conn: Connection,
        server: Option<InitializeResponse>,
        options: &AspBackendOptions,
    ) -> AspBackend {
        AspBackend {
            inner: Arc::new(Inner {
                conn,
                retry: options.overload_retry.clone(),
                kind: options.kind,
                event_capacity: options.event_capacity.max(1),
                default_timeout: options.default_timeout,
                server,
            }),
        }
    }

    /// The raw JSON-RPC client, for every method this backend does not wrap.
    pub fn connection(&self) -> &Connection {
        &self.inner.conn
    }

    /// The server's `initialize` answer (user agent, `CODEX_HOME`, platform), when this
    /// backend performed the handshake.
    pub fn server_info(&self) -> Option<&InitializeResponse> {
        self.inner.server.as_ref()
    }

    /// The default timeout of runs.
    pub fn default_timeout(&self) -> Option<Duration> {
        self.inner.default_timeout
    }

    /// Sends a typed request (retrying overloads, see
    /// [`AspBackendOptions::overload_retry`]), mapping errors to codex-core errors.
    pub async fn call<R: Request>(&self, params: R::Params) -> codex_core::Result<R::Response> {
        self.send::<R>(params)
            .await
            .map_err(|e| self.core(e, &format!("while waiting for the answer to {}", R::METHOD)))
    }

    /// The request path of the backend: `R` through [`AspService`] and the
    /// [`OverloadRetry`] layer.
    async fn send<R: Request>(&self, params: R::Params) -> Result<R::Response, AspError> {
        let request = RawRequest::new(R::METHOD, encode_params::<R>(&params)?);
        let service = AspService::new(self.inner.conn.clone());
        let value = tower::ServiceBuilder::new()
            .retry(self.inner.retry.clone())
            .service(service)
            .oneshot(request)
            .await?;
        decode_result::<R>(value)
    }

    fn core(&self, err: AspError, context: &str) -> codex_core::Error {
        err.into_core(self.inner.kind, context)
    }

    /// Copies a stored thread into a new one (`thread/fork`); the fork carries the history.
    pub async fn fork(&self, thread_id: &ThreadId) -> codex_core::Result<ThreadId> {
        let mut params = ThreadForkParams::new(thread_id.as_str());
        params.exclude_turns = Some(true);
        let response = self.call::<ThreadFork>(params).await?;
        Ok(ThreadId(response.thread.id))
    }

    /// The most recently updated stored thread whose working directory is `cwd`
    /// (`thread/list` filtered by cwd, newest first), if any.
    pub async fn latest_thread_for(&self, cwd: &Path) -> codex_core::Result<Option<ThreadId>> {
        let cwd = absolute_dir(cwd, "cwd")?;
        let params = ThreadListParams {
            cwd: Some(Value::String(path_string(&cwd))),
            limit: Some(1),
            sort_key: Some("updated_at".into()),
            sort_direction: Some("desc".into()),
            ..ThreadListParams::default()
        };
        let response = self.call::<ThreadList>(params).await?;
        Ok(response.data.into_iter().next().map(|t| ThreadId(t.id)))
    }

    /// Interrupts a running turn (`turn/interrupt`); its run ends with
    /// [`codex_core::Error::Cancelled`] once `turn/completed` (status `interrupted`) arrives.
    pub async fn interrupt(
        &self,
        thread_id: &ThreadId,
        turn_id: &TurnId,
    ) -> codex_core::Result<()> {
        self.call::<TurnInterrupt>(TurnInterruptParams::new(
            thread_id.as_str(),
            turn_id.as_str(),
        ))
        .await
        .map(|_| ())
    }

    /// Adds input to the running turn `turn_id` (`turn/steer`); the text appears as a new
    /// `userMessage` item of that turn. When no turn runs, the error is a
    /// [`BackendError::NoActiveTurn`].
    pub async fn steer(
        &self,
        thread_id: &ThreadId,
        turn_id: &TurnId,
        text: impl Into<String>,
    ) -> codex_core::Result<TurnId> {
        let params = TurnSteerParams::new(
            thread_id.as_str(),
            turn_id.as_str(),
            vec![UserInput::text(text)],
        );
        match self.send::<TurnSteer>(params).await {
            Ok(response) => Ok(TurnId(response.turn_id)),
            Err(AspError::Rpc { error, .. })
                if error.code == error_codes::INVALID_REQUEST
                    && error.message.contains("no active turn") =>
            {
                Err(codex_core::Error::backend(
                    self.inner.kind,
                    BackendError::NoActiveTurn {
                        thread_id: thread_id.clone(),
                        turn_id: turn_id.clone(),
                        message: error.message,
                    },
                ))
            }
            Err(e) => Err(self.core(e, "while steering a turn")),
        }
    }

    /// Starts a code review of `target` in `cwd` (a new thread, then `review/start`) and
    /// returns its run, whose events and outcome follow the same rules as a turn's. The
    /// review's verdict is the final message (and the `exitedReviewMode` item, an
    /// [`ItemDetails::Unknown`]). Bounded by [`AspBackendOptions::default_timeout`].
    pub async fn review(&self, cwd: &Path, target: ReviewTarget) -> codex_core::Result<Run> {
        let started = Instant::now();
        let timeout = self.inner.default_timeout;
        let cwd = absolute_dir(cwd, "cwd")?;
        let setup = async {
            let mut params = ThreadStartParams::default();
            params.overrides.cwd = Some(path_string(&cwd));
            let (thread_id, sub) = self.open_thread::<ThreadStart>(params).await?;
            let response = self
                .call::<ReviewStart>(ReviewStartParams::new(thread_id.as_str(), target))
                .await?;
            Ok((thread_id, sub, response.turn.id))
        };
        let (thread_id, sub, turn_id) = with_timeout(timeout, setup).await?;
        Ok(self.launch(thread_id, sub, turn_id, started, timeout))
    }

    /// How codex is signed in (`account/read`): `{type:"apiKey"}` is
    /// [`AuthMode::ApiKey`], `{type:"chatgpt"}` is [`AuthMode::ChatGpt`]; no account is
    /// [`AuthMode::None`] when the configured provider needs OpenAI auth, else
    /// [`AuthMode::OtherProvider`] named after `model_provider` (codex 0.169.0 reports no
    /// account at all for such a provider, even with a stored API key).
    pub async fn account(&self) -> codex_core::Result<AuthMode> {
        let response = self
            .call::<AccountRead>(GetAccountParams::default())
            .await?;
        Ok(match response.account {
            Some(Account::ApiKey) => AuthMode::ApiKey,
            Some(Account::Chatgpt(account)) => AuthMode::ChatGpt {
                plan: Some(account.plan_type).filter(|p| !p.is_empty()),
                email: account.email,
            },
            Some(other) => AuthMode::OtherProvider {
                name: other.tag().unwrap_or("unknown").to_owned(),
            },
            None if !response.requires_openai_auth => AuthMode::OtherProvider {
                name: self.provider_name().await?,
            },
            None => AuthMode::None,
        })
    }

    async fn provider_name(&self) -> codex_core::Result<String> {
        let config = self.call::<ConfigRead>(ConfigReadParams::default()).await?;
        Ok(config
            .get("model_provider")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned())
    }

    /// The account's rate limits (`account/rateLimits/read`). Only ChatGPT sign-in has them:
    /// otherwise the answer is [`codex_core::Error::FeatureUnavailable`], and no rate-limit
    /// request is sent.
    pub async fn rate_limits(&self) -> codex_core::Result<GetAccountRateLimitsResponse> {
        self.account().await?.require(Feature::RateLimits)?;
        self.call::<AccountRateLimitsRead>(GetAccountRateLimitsParams::default())
            .await
    }

    /// Opens a thread with `thread/start`, `thread/resume` or `thread/fork` and subscribes to
    /// it atomically with the answer. The subscription coalesces text deltas when the run
    /// falls behind ([`Overflow::CoalesceDeltas`]): a burst of deltas does not fail a run
    /// whose reader keeps up on average.
    async fn open_thread<R>(&self, params: R::Params) -> codex_core::Result<(String, Subscription)>
    where
        R: Request,
    {
        let request = SubscribedRequest {
            method: R::METHOD,
            params: encode_params::<R>(&params).map_err(|e| self.core(e, "while encoding"))?,
            filter_for: Filter::result_thread,
            overflow: Overflow::CoalesceDeltas,
        };
        let (value, sub) = tower::ServiceBuilder::new()
            .retry(self.inner.retry.clone())
            .service(Subscribing(AspService::new(self.inner.conn.clone())))
            .oneshot(request)
            .await
            .map_err(|e| self.core(e, &format!("while waiting for the answer to {}", R::METHOD)))?;
        let thread_id = value
            .get("thread")
            .and_then(|t| t.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match (thread_id, sub) {
            (Some(id), Some(sub)) => Ok((id, sub)),
            _ => Err(codex_core::Error::backend(
                self.inner.kind,
                BackendError::UnexpectedAnswer {
                    method: R::METHOD,
                    detail: "the answer has no thread.id".into(),
                },
            )),
        }
    }

    /// Starts the turn of `spec` on the open thread.
    async fn start_turn(&self, thread_id: &str, spec: &TaskSpec) -> codex_core::Result<String> {
        let params = turn_params(thread_id, spec)?;
        let response = self.call::<TurnStart>(params).await?;
        Ok(response.turn.id)
    }

    async fn check_spec(&self, spec: &TaskSpec) -> codex_core::Result<()> {
        spec.validate()?;
        if !spec.env.is_empty() {
            return Err(codex_core::Error::InvalidSpec {
                field: "env",
                reason: "the app-server backend runs one long-lived codex process, whose environment cannot change per task; set it with AspBackendOptions::env".into(),
            });
        }
        if spec.service_tier == Some(ServiceTier::Fast) {
            spec.check_auth(&self.account().await?)?;
        }
        Ok(())
    }

    fn launch(
        &self,
        thread_id: String,
        sub: Subscription,
        turn_id: String,
        started: Instant,
        timeout: Option<Duration>,
    ) -> Run {
        let (sink, run) = Run::channel(self.inner.kind, self.inner.event_capacity);
        let driver = Driver {
            conn: self.inner.conn.clone(),
            sub,
            tracker: TurnTracker::new(thread_id.clone(), turn_id),
            deadline: timeout.map(|after| (transport_deadline(started, after), after)),
            kind: self.inner.kind,
        };
        let first = Event::ThreadStarted {
            thread_id: ThreadId(thread_id),
        };
        tokio::spawn(driver.run(sink, first));
        run
    }
}

#[async_trait::async_trait]
impl Backend for AspBackend {
    fn kind(&self) -> BackendKind {
        self.inner.kind
    }

    async fn start(&self, spec: TaskSpec) -> codex_core::Result<Run> {
        let started = Instant::now();
        spec.validate()?;
        let timeout = spec.timeout.or(self.inner.default_timeout);
        // the checks may ask the server (account/read): they count against the timeout
        let setup = async {
            self.check_spec(&spec).await?;
            let params = ThreadStartParams {
                overrides: thread_overrides(&spec, true)?,
                ephemeral: spec.ephemeral.then_some(true),
                ..ThreadStartParams::default()
            };
            let (thread_id, sub) = self.open_thread::<ThreadStart>(params).await?;
            let turn_id = self.start_turn(&thread_id, &spec).await?;
            Ok((thread_id, sub, turn_id))
        };
        let (thread_id, sub, turn_id) = with_timeout(timeout, setup).await?;
        Ok(self.launch(thread_id, sub, turn_id, started, timeout))
    }

    async fn resume(&self, thread_id: &ThreadId, spec: TaskSpec) -> codex_core::Result<Run> {
        let started = Instant::now();
        spec.validate()?;
        let timeout = spec.timeout.or(self.inner.default_timeout);
        // the checks may ask the server (account/read): they count against the timeout
        let setup = async {
            self.check_spec(&spec).await?;
            let mut params = ThreadResumeParams::new(thread_id.as_str());
            params.overrides = thread_overrides(&spec, false)?;
            params.exclude_turns = Some(true);
            let (thread_id, sub) = self.open_thread::<ThreadResume>(params).await?;
            let turn_id = self.start_turn(&thread_id, &spec).await?;
            Ok((thread_id, sub, turn_id))
        };
        let (thread_id, sub, turn_id) = with_timeout(timeout, setup).await?;
        Ok(self.launch(thread_id, sub, turn_id, started, timeout))
    }
}

/// `started + after`, saturating far in the future.
fn transport_deadline(started: Instant, after: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    started + after.min(YEAR)
}

async fn with_timeout<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = codex_core::Result<T>>,
) -> codex_core::Result<T> {
    match timeout {
        None => fut.await,
        Some(after) => match tokio::time::timeout(after, fut).await {
            Ok(result) => result,
            Err(_) => Err(codex_core::Error::Timeout {
                after,
                thread_id: None,
            }),
        },
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> codex_core::Error {
    codex_core::Error::InvalidSpec {
        field,
        reason: reason.into(),
    }
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The absolute form of `path` (relative paths are taken from the current directory).
fn absolute(path: &Path, field: &'static str) -> codex_core::Result<PathBuf> {
    std::path::absolute(path).map_err(|e| invalid(field, format!("{}: {e}", path.display())))
}

/// The absolute, canonical form of an existing directory (codex stores canonical cwds).
fn absolute_dir(path: &Path, field: &'static str) -> codex_core::Result<PathBuf> {
    let abs = absolute(path, field)?;
    Ok(abs.canonicalize().unwrap_or(abs))
}

fn wire_sandbox(mode: SandboxMode) -> WireSandboxMode {
    match mode {
        SandboxMode::ReadOnly => WireSandboxMode::ReadOnly,
        SandboxMode::WorkspaceWrite => WireSandboxMode::WorkspaceWrite,
        SandboxMode::DangerFullAccess => WireSandboxMode::DangerFullAccess,
        other => WireSandboxMode::Other(other.as_str().to_owned()),
    }
}

fn wire_approval(policy: ApprovalPolicy) -> AskForApproval {
    match policy {
        ApprovalPolicy::Untrusted => AskForApproval::Untrusted,
        ApprovalPolicy::OnRequest => AskForApproval::OnRequest,
        ApprovalPolicy::Never => AskForApproval::Never,
        other => AskForApproval::Other(Value::String(other.as_str().to_owned())),
    }
}

fn wire_effort(effort: ReasoningEffort) -> protocol::ReasoningEffort {
    use protocol::ReasoningEffort as W;
    match effort {
        ReasoningEffort::None => W::None,
        ReasoningEffort::Minimal => W::Minimal,
        ReasoningEffort::Low => W::Low,
        ReasoningEffort::Medium => W::Medium,
        ReasoningEffort::High => W::High,
        ReasoningEffort::Xhigh => W::XHigh,
        other => W::Other(other.as_str().to_owned()),
    }
}

/// The service tier id on the wire (Fast Mode is the `priority` tier of `model/list`).
fn wire_service_tier(tier: ServiceTier) -> String {
    match tier {
        ServiceTier::Fast => "priority".to_owned(),
        other => other.as_str().to_owned(),
    }
}

fn writable_dirs(spec: &TaskSpec) -> codex_core::Result<Vec<String>> {
    spec.writable_dirs
        .iter()
        .map(|d| absolute_dir(d, "writable_dirs").map(|p| path_string(&p)))
        .collect()
}

/// The `thread/start` / `thread/resume` overrides of `spec`. `default_cwd`: send the current
/// directory when the spec has no cwd (new threads); a resumed thread keeps its own.
fn thread_overrides(spec: &TaskSpec, default_cwd: bool) -> codex_core::Result<ThreadOverrides> {
    let mut overrides = ThreadOverrides::default();
    let cwd = match &spec.cwd {
        Some(cwd) => Some(absolute_dir(cwd, "cwd")?),
        None if default_cwd => Some(
            std::env::current_dir()
                .map_err(|e| codex_core::Error::io("reading the current directory", e))?,
        ),
        None => None,
    };
    overrides.cwd = cwd.as_deref().map(path_string);
    overrides.model = spec.model.clone();
    overrides.sandbox = spec.sandbox.map(wire_sandbox);
    overrides.approval_policy = spec.approval.map(wire_approval);
    overrides.service_tier = spec.service_tier.map(wire_service_tier);
    let mut config = Map::new();
    let dirs = writable_dirs(spec)?;
    if !dirs.is_empty() {
        config.insert("sandbox_workspace_write.writable_roots".into(), json!(dirs));
    }
    for o in &spec.config {
        config.insert(o.key.clone(), o.value.clone());
    }
    overrides.config = (!config.is_empty()).then_some(config);
    Ok(overrides)
}

/// The `turn/start` params of `spec` on `thread_id`.
fn turn_params(thread_id: &str, spec: &TaskSpec) -> codex_core::Result<TurnStartParams> {
    let mut input = Vec::new();
    let text = spec.full_prompt();
    if !text.is_empty() {
        input.push(UserInput::text(text));
    }
    for image in &spec.images {
        input.push(UserInput::local_image(path_string(&absolute(
            image, "images",
        )?)));
    }
    let mut params = TurnStartParams::new(thread_id, input);
    params.approval_policy = spec.approval.map(wire_approval);
    params.sandbox_policy = match spec.sandbox {
        Some(SandboxMode::ReadOnly) => Some(SandboxPolicy::read_only()),
        Some(SandboxMode::WorkspaceWrite) => {
            Some(SandboxPolicy::workspace_write(writable_dirs(spec)?, false))
        }
        Some(SandboxMode::DangerFullAccess) => Some(SandboxPolicy::DangerFullAccess),
        _ => None,
    };
    params.model = spec.model.clone();
    params.effort = spec.effort.map(wire_effort);
    params.output_schema = spec.output_schema.clone();
    params.service_tier = spec.service_tier.map(wire_service_tier);
    Ok(params)
}

/// Why a run stops early.
enum Stop {
    Cancelled,
    Timeout(Duration),
}

/// Drives one run: reads the thread's subscription, maps, emits, ends.
struct Driver {
    conn: Connection,
    sub: Subscription,
    tracker: TurnTracker,
    deadline: Option<(Instant, Duration)>,
    kind: BackendKind,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn thread_id(&self) -> Option<ThreadId> {
        Some(ThreadId(self.tracker.thread_id.clone()))
    }

    /// Emits `event` unless the run is cancelled or times out first.
    async fn emit(&self, sink: &mut RunSink, event: Event) -> Option<Stop> {
        let cancel = sink.cancel_handle();
        let at = self.deadline.map(|(at, _)| at);
        tokio::select! {
            biased;
            () = cancel.cancelled() => Some(Stop::Cancelled),
            () = sleep_until_opt(at) => self.deadline.map(|(_, after)| Stop::Timeout(after)),
            () = sink.emit(event) => None,
        }
    }

    async fn run(mut self, mut sink: RunSink, first: Event) {
        if let Some(stop) = self.emit(&mut sink, first).await {
            return self.stop(sink, stop).await;
        }
        let cancel = sink.cancel_handle();
        loop {
            let at = self.deadline.map(|(at, _)| at);
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => Err(Stop::Cancelled),
                () = sleep_until_opt(at) => match self.deadline {
                    Some((_, after)) => Err(Stop::Timeout(after)),
                    None => continue,
                },
                event = self.sub.recv() => Ok(event),
            };
            let event = match next {
                Err(stop) => return self.stop(sink, stop).await,
                Ok(Err(err)) => {
                    let context = format!(
                        "while running turn {} of thread {}",
                        self.tracker.root, self.tracker.thread_id
                    );
                    tracing::debug!(
                        "app-server run ended early: {}",
                        codex_core::ErrorChain(&err)
                    );
                    sink.fail(err.into_core(self.kind, &context));
                    return;
                }
                Ok(Ok(event)) => event,
            };
            let events = match event {
                ConnectionEvent::Notification(n) => self.tracker.on_notification(&n),
                ConnectionEvent::ServerRequest(request) => vec![Event::Unknown {
                    kind: request.method().to_owned(),
                    raw: json!({
                        "id": serde_json::to_value(request.id()).unwrap_or(Value::Null),
                        "params": request.params(),
                    }),
                }],
                ConnectionEvent::Garbage(garbage) => vec![Event::Undecodable {
                    text: garbage.excerpt.clone(),
                    reason: garbage.reason.to_string(),
                }],
                ConnectionEvent::Lagged(missed) => {
                    return self.lagged(sink, missed).await;
                }
            };
            for event in events {
                if let Some(stop) = self.emit(&mut sink, event).await {
                    return self.stop(sink, stop).await;
                }
            }
            if self.tracker.done {
                let kind = self.kind;
                sink.finish(move || {
                    codex_core::Error::backend(kind, "the turn ended without a terminal event")
                });
                return;
            }
        }
    }

    /// Interrupts the turn (bounded) and waits (bounded) for its `turn/completed`, emitting
    /// what arrives meanwhile.
    async fn interrupt_and_settle(&mut self, sink: &mut RunSink) {
        if self.tracker.done {
            return;
        }
        let params = TurnInterruptParams::new(&self.tracker.thread_id, &self.tracker.root);
        match tokio::time::timeout(STOP_GRACE, self.conn.request::<TurnInterrupt>(params)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!("turn/interrupt failed: {}", codex_core::ErrorChain(&e)),
            Err(_) => tracing::debug!("turn/interrupt was not answered in {STOP_GRACE:?}"),
        }
        let until = Instant::now() + STOP_GRACE;
        while !self.tracker.done {
            match tokio::time::timeout_at(until, self.sub.recv()).await {
                Ok(Ok(ConnectionEvent::Notification(n))) => {
                    for event in self.tracker.on_notification(&n) {
                        if tokio::time::timeout_at(until, sink.emit(event))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    async fn stop(mut self, mut sink: RunSink, stop: Stop) {
        self.interrupt_and_settle(&mut sink).await;
        let thread_id = self.thread_id();
        sink.fail(match stop {
            Stop::Cancelled => codex_core::Error::Cancelled { thread_id },
            Stop::Timeout(after) => codex_core::Error::Timeout { after, thread_id },
        });
    }

    async fn lagged(mut self, mut sink: RunSink, missed: u64) {
        let error = BackendError::Lagged {
            thread_id: ThreadId(self.tracker.thread_id.clone()),
            missed,
        };
        tracing::warn!("{error}");
        let message = error.to_string();
        let _ = tokio::time::timeout(STOP_GRACE, sink.emit(Event::Error { message })).await;
        self.interrupt_and_settle(&mut sink).await;
        sink.fail(codex_core::Error::backend(self.kind, error));
    }
}

/// Maps the notifications of one thread to the core events of one turn (and its
/// sub-turns), and knows when that turn ended.
#[derive(Debug)]
struct TurnTracker {
    thread_id: String,
    /// Our turn (the id `turn/start` or `review/start` answered).
    root: String,
    /// Our turn and its sub-turns (`turn/started` with `rootTurnId` = ours).
    turns: HashSet<String>,
    usage: Option<Usage>,
    started: bool,
    done: bool,
}

impl TurnTracker {
    fn new(thread_id: String, root: String) -> Self {
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

    fn ours(&self, turn_id: &str) -> bool {
        self.turns.contains(turn_id)
    }

    fn root_id(&self) -> Option<TurnId> {
        Some(TurnId(self.root.clone()))
    }

    fn on_notification(&mut self, n: &Notification) -> Vec<Event> {
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

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn delta(item_id: &str, kind: DeltaKind, text: &str) -> Event {
    Event::Delta {
        item_id: item_id.to_owned(),
        kind,
        delta: text.to_owned(),
    }
}

fn item_status(status: &protocol::CommandExecutionStatus) -> ItemStatus {
    use protocol::CommandExecutionStatus as S;
    match status {
        S::Completed => ItemStatus::Completed,
        S::Failed => ItemStatus::Failed,
        S::Declined => ItemStatus::Declined,
        _ => ItemStatus::InProgress,
    }
}

fn tool_status(status: &protocol::ToolCallStatus) -> ItemStatus {
    use protocol::ToolCallStatus as S;
    match status {
        S::Completed => ItemStatus::Completed,
        S::Failed | S::Interrupted => ItemStatus::Failed,
        _ => ItemStatus::InProgress,
    }
}

/// The core item of a thread item; `raw` is the item as received (kept for unknown kinds).
fn core_item(item: &ThreadItem, raw: Option<&Value>) -> Item {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory::{self, MemoryServer};

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
            events.iter().any(
                |e| matches!(e, Event::Unknown { kind, .. } if kind == "thread/status/changed")
            )
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
        let (kind, _) = failed(
            json!({"message": "Missing environment variable: `K`.", "codexErrorInfo": "other"}),
        );
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
        let raw =
            json!({"type": "exitedReviewMode", "id": "r", "review": "looks good", "extra": 1});
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
}
