//! [`AspBackendOptions`]: the options builder of [`AspBackend`](super::AspBackend).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use codex_core::BackendKind;
use codex_core::backend::DEFAULT_EVENT_CAPACITY;

use crate::approval::{ApprovalHandler, DeclineAll};
use crate::connection::ConnectionOptions;
use crate::protocol::{ClientInfo, InitializeCapabilities, InitializeParams};
use crate::service::OverloadRetry;

/// The default per-run subscription buffer of a backend's own connection: large, because a
/// run that is read slowly must not lose notifications (a lost notification fails the run).
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 16 * 1024;

/// Options of an [`AspBackend`](super::AspBackend).
///
/// Build with [`AspBackendOptions::default`] and the builder methods. The process options
/// (`env`, `args`) only apply to [`AspBackend::spawn`](super::AspBackend::spawn); the handshake options
/// (`approval_handler`, `client_info`, `experimental_api`, `opt_out_notification_methods`,
/// `subscription_capacity`, `handshake_timeout`) to [`AspBackend::spawn`](super::AspBackend::spawn) and
/// [`AspBackend::connect`](super::AspBackend::connect).
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
    /// Timeout of turns whose [`TaskSpec::timeout`](codex_core::TaskSpec::timeout) is unset (default none).
    pub default_timeout: Option<Duration>,
    /// How many notifications a run's subscription buffers before it lags (default
    /// [`DEFAULT_SUBSCRIPTION_CAPACITY`]).
    pub subscription_capacity: usize,
    /// The kind reported by [`Backend::kind`](codex_core::Backend::kind) and in outcomes (default
    /// [`BackendKind::AppServer`]; a broker client reports [`BackendKind::Broker`]).
    pub kind: BackendKind,
    /// How long the `initialize` handshake may take (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::connection::DEFAULT_HANDSHAKE_TIMEOUT)); past it,
    /// [`AspBackend::spawn`](super::AspBackend::spawn) and [`AspBackend::connect`](super::AspBackend::connect) fail with
    /// [`crate::Error::HandshakeTimeout`] and a launched app-server is killed.
    pub handshake_timeout: Duration,
    /// How requests refused as overloaded (-32001) are retried (default
    /// [`DEFAULT_OVERLOAD_RETRIES`] retries with [`OverloadRetry`]'s backoff). Every request
    /// of the backend runs through this [`tower`] retry layer over [`AspService`](crate::service::AspService).
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

    pub(super) fn connection_options(&self) -> ConnectionOptions {
        let mut options = ConnectionOptions::default()
            .subscription_capacity(self.subscription_capacity)
            .outbound_queue(64)
            .handshake_timeout(self.handshake_timeout);
        options.approval_handler = self.approval_handler.clone();
        options
    }
}
