//! [`AspBackend`]: the codex-core [`Backend`] over `codex app-server`.
//!
//! The same [`TaskSpec`] and [`Event`] model as the `codex exec` backend, over a long-lived
//! app-server: a private one launched on stdio ([`AspBackend::spawn`]), or any
//! [`Connection`] (WebSocket, unix socket, a broker: [`AspBackend::connect`],
//! [`AspBackend::from_connection`]). On top of the trait it offers what only the app-server
//! can do: approvals (through the [`ApprovalHandler`](crate::approval::ApprovalHandler) of the options), streamed deltas,
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
//! | `turn/plan/updated` | [`Event::ItemUpdated`] with a [`ItemDetails::TodoList`](codex_core::ItemDetails::TodoList) |
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

mod options;
mod run;
mod tracker;
mod wire;

pub use options::{AspBackendOptions, DEFAULT_OVERLOAD_RETRIES, DEFAULT_SUBSCRIPTION_CAPACITY};
pub(crate) use tracker::TurnTracker;

use run::Driver;
use wire::{absolute_dir, path_string, thread_overrides, turn_params};

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use codex_core::{
    AuthMode, Backend, BackendKind, CodexBinary, Event, Feature, Run, ServiceTier, TaskSpec,
    ThreadId, TurnId,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::connection::{Connection, Filter, Overflow, Subscription, decode_result, encode_params};
use crate::error::Error as AspError;
use crate::jsonrpc::error_codes;
use crate::protocol::{
    Account, AccountRateLimitsRead, AccountRead, ConfigRead, ConfigReadParams, GetAccountParams,
    GetAccountRateLimitsParams, GetAccountRateLimitsResponse, InitializeResponse, Request,
    ReviewStart, ReviewStartParams, ReviewTarget, ThreadFork, ThreadForkParams, ThreadList,
    ThreadListParams, ThreadResume, ThreadResumeParams, ThreadStart, ThreadStartParams,
    TurnInterrupt, TurnInterruptParams, TurnStart, TurnSteer, TurnSteerParams, UserInput,
};
use crate::service::{AspService, OverloadRetry, RawRequest, SubscribedRequest, Subscribing};
use crate::transport::{Transport, TransportOptions, stdio};
use tower::ServiceExt as _;

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
    /// [`ItemDetails::Unknown`](codex_core::ItemDetails::Unknown)). Bounded by [`AspBackendOptions::default_timeout`].
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
            deadline: timeout.map(|after| (codex_core::util::deadline_from(started, after), after)),
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

pub(super) async fn with_timeout<T>(
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

#[cfg(test)]
mod tests;
