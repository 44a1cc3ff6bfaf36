//! Reaching an app-server for the companion: the resident broker (started on demand) or a
//! private app-server, and the [`Delegate`] over it.
//!
//! Start-up comes out of the job's time ([`JobClock`]): the broker, its handshake, a
//! fallback private app-server and its handshake all end by the job's deadline (a handshake
//! gets at most [`DEFAULT_HANDSHAKE_TIMEOUT`] of it). An app-server that never answers
//! `initialize` fails the job with codex-asp's typed
//! [`HandshakeTimeout`](codex_asp::Error::HandshakeTimeout) (a private one is killed), and
//! the turn gets what is left of the job's time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codex_asp::connection::DEFAULT_HANDSHAKE_TIMEOUT;
use tokio::time::Instant;

use codex_asp::AspBackend;
use codex_asp::backend::AspBackendOptions;
use codex_asp::broker::{self, BROKER_BIN_ENV, BrokerOptions, BrokerStatus};
use codex_core::{Backend, BackendKind, CodexBinary, ThreadId, TurnId};

use crate::error::CompanionError;
use crate::progress::{EventCallback, Tap};
use crate::worker::BackendChoice;
use codex_agent::Delegate;

/// The name of the broker binary.
pub const BROKER_BIN: &str = "codex-broker";

/// The environment variable that turns the broker off (`1`, `true`, `yes`): every command
/// then uses a private app-server.
pub const NO_BROKER_ENV: &str = "CODEX_COMPANION_NO_BROKER";

/// Finds the `codex-broker` binary the way `codex_asp::broker::ensure` does, for `setup`'s
/// report: `$CODEX_BROKER_BIN` when set (and only it), else next to this executable (a
/// `cargo xtask dist` folder, or `target/<profile>/`; also one folder up, for test
/// executables in `deps/`), else on `PATH`.
pub fn broker_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BROKER_BIN_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let exe = std::env::current_exe().ok();
    let next_to_exe = exe.iter().flat_map(|e| e.ancestors().skip(1).take(2));
    let path = std::env::var_os("PATH");
    let on_path = path.iter().flat_map(std::env::split_paths);
    next_to_exe
        .map(Path::to_path_buf)
        .chain(on_path)
        .map(|dir| dir.join(BROKER_BIN))
        .find(|candidate| candidate.is_file())
}

/// The broker options for the codex at `codex`: that binary and this process's
/// `CODEX_HOME`. The broker binary is left to `codex_asp::broker::ensure`'s lookup (explicit,
/// then `$CODEX_BROKER_BIN`, then next to this executable, then `PATH`; [`broker_binary`]
/// reports the same choice).
pub fn broker_options(codex: &Path) -> BrokerOptions {
    BrokerOptions::new()
        .codex(codex)
        .client_info(codex_asp::protocol::InitializeParams::new(
            "codex-companion",
            env!("CARGO_PKG_VERSION"),
        ))
}

/// The state of the broker of `codex`: `Ok(None)` when none runs.
pub async fn broker_status(codex: &CodexBinary) -> Result<Option<BrokerStatus>, CompanionError> {
    match broker::status(&broker_options(codex.path())).await {
        Ok(status) => Ok(Some(status)),
        Err(broker::Error::NotRunning { .. }) => Ok(None),
        Err(e) => Err(CompanionError::Broker(e)),
    }
}

/// How long the backstop around a broker start-up waits past the job's deadline, so that the
/// typed error of the bounded step that hung arrives first.
const BACKSTOP_GRACE: Duration = Duration::from_secs(1);

/// A job's time: its timeout, counted from its start. Start-up (finding codex, reaching an
/// app-server, the handshake) comes out of it; the turn gets the rest.
#[derive(Debug, Clone, Copy)]
pub struct JobClock {
    started: Instant,
    timeout: Duration,
}

impl JobClock {
    /// A clock of `timeout` starting now.
    pub fn start(timeout: Duration) -> JobClock {
        JobClock {
            started: Instant::now(),
            timeout,
        }
    }

    /// The job's whole timeout.
    #[cfg(test)]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When the job's time is up.
    pub fn deadline(&self) -> Instant {
        codex_core::util::deadline_from(self.started, self.timeout)
    }

    /// What is left of the job's time (zero once it is up).
    pub fn remaining(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }

    /// What is left for a turn; [`CompanionError::StartTimeout`] when start-up used it all.
    pub fn turn_time(&self, waiting_for: &'static str) -> Result<Duration, CompanionError> {
        // whole milliseconds keep timeout messages readable
        let left =
            Duration::from_millis(self.remaining().as_millis().try_into().unwrap_or(u64::MAX));
        if left.is_zero() {
            return Err(self.expired(waiting_for));
        }
        Ok(left)
    }

    /// The error of a start-up that outlived the job's time.
    pub fn expired(&self, waiting_for: &'static str) -> CompanionError {
        CompanionError::StartTimeout {
            after: self.timeout,
            waiting_for,
        }
    }

    /// `fut`, ended with [`JobClock::expired`] at the deadline.
    pub async fn bound<T>(
        &self,
        waiting_for: &'static str,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, CompanionError> {
        tokio::time::timeout_at(self.deadline(), fut)
            .await
            .map_err(|_| self.expired(waiting_for))
    }

    /// The handshake deadline within what is left.
    fn handshake_timeout(&self) -> Duration {
        self.remaining().min(DEFAULT_HANDSHAKE_TIMEOUT)
    }
}

/// An app-server ready to run turns.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Connected {
    /// The backend (a broker client reports [`BackendKind::Broker`]).
    pub backend: AspBackend,
    /// Why the broker was not used although it was asked for, if it was not.
    pub fallback: Option<String>,
}

impl Connected {
    /// Which kind of backend this is.
    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// A [`Delegate`] for `codex` over this backend, with `progress` told of every event.
    pub fn delegate(&self, codex: &CodexBinary, progress: Option<EventCallback>) -> Delegate {
        let backend: Arc<dyn Backend> = Arc::new(self.backend.clone());
        let backend: Arc<dyn Backend> = match progress {
            Some(callback) => Arc::new(Tap::new(backend, callback)),
            None => Arc::new(Tap::new(backend, Arc::new(|_: &codex_core::Event| {}))),
        };
        Delegate::builder(codex.clone())
            .backend(self.kind(), backend)
            .build()
    }
}

/// Connects as `choice` asks: through the broker (started when none runs; if that fails and
/// time is left, a private app-server is used and [`Connected::fallback`] says why), or a
/// private app-server, by the deadline of `clock`. Runs that set no timeout of their own
/// (reviews) get what is left of the job's time once connected.
pub async fn connect(
    codex: &CodexBinary,
    choice: BackendChoice,
    clock: JobClock,
) -> Result<Connected, CompanionError> {
    let mut fallback = None;
    if choice == BackendChoice::Broker {
        let mut options = broker_options(codex.path());
        options.connection = options
            .connection
            .clone()
            .handshake_timeout(clock.handshake_timeout());
        options.start_timeout = options.start_timeout.min(clock.remaining());
        let ensure =
            tokio::time::timeout_at(clock.deadline() + BACKSTOP_GRACE, broker::ensure(&options));
        match ensure.await {
            Ok(Ok(conn)) => {
                let options = AspBackendOptions::default()
                    .kind(BackendKind::Broker)
                    .default_timeout(clock.turn_time("reaching the broker")?);
                return Ok(Connected {
                    backend: AspBackend::from_connection_with(conn, options),
                    fallback: None,
                });
            }
            // no time is left for a private app-server: this is why the job failed
            Ok(Err(e)) if clock.remaining().is_zero() => return Err(CompanionError::Broker(e)),
            Ok(Err(e)) => fallback = Some(codex_core::error_chain(&e)),
            Err(_) => return Err(clock.expired("reaching the broker")),
        }
    }
    let mut connected = connect_private(codex, clock, &[]).await?;
    connected.fallback = fallback;
    Ok(connected)
}

/// Starts a private app-server (`codex app-server ARGS...`, killed with the backend) and
/// performs its handshake by the deadline of `clock`.
pub async fn connect_private(
    codex: &CodexBinary,
    clock: JobClock,
    args: &[String],
) -> Result<Connected, CompanionError> {
    let options = AspBackendOptions::default()
        .client_info("codex-companion", env!("CARGO_PKG_VERSION"))
        .args(args.iter().cloned())
        .handshake_timeout(clock.handshake_timeout());
    let backend = AspBackend::spawn(codex.clone(), options)
        .await
        .map_err(|e| CompanionError::Delegate(codex_agent::Error::from(e)))?;
    // runs without a timeout of their own (reviews) get what is left after the handshake
    let default_timeout = clock.turn_time("starting codex app-server")?;
    let backend = AspBackend::from_connection_with(
        backend.connection().clone(),
        AspBackendOptions::default().default_timeout(default_timeout),
    );
    Ok(Connected {
        backend,
        fallback: None,
    })
}

/// What [`interrupt_through_broker`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interrupt {
    /// The turn was interrupted.
    Sent,
    /// No broker runs for this codex and `CODEX_HOME`.
    NoBroker,
    /// The broker runs no such turn (it already ended).
    NotRunning,
    /// Another client (the job's worker) owns the thread; only it may interrupt the turn.
    Owned,
    /// The broker refused or failed; the reason.
    Failed(String),
}

/// Interrupts `turn` of `thread` through the running broker of the codex at `codex` (never
/// starts one): `turn/interrupt` when the broker lists the turn as running.
pub async fn interrupt_through_broker(codex: &Path, thread: &ThreadId, turn: &TurnId) -> Interrupt {
    let options = broker_options(codex);
    let conn = match broker::connect(&options).await {
        Ok(conn) => conn,
        Err(broker::Error::NotRunning { .. }) => return Interrupt::NoBroker,
        Err(e) => return Interrupt::Failed(codex_core::error_chain(&e)),
    };
    match broker::status_of(&conn).await {
        Ok(status)
            if !status
                .running_turns
                .iter()
                .any(|t| t.thread_id == thread.as_str() && t.turn_id == turn.as_str()) =>
        {
            return Interrupt::NotRunning;
        }
        Ok(_) => {}
        Err(e) => return Interrupt::Failed(codex_core::error_chain(&e)),
    }
    let params = codex_asp::protocol::TurnInterruptParams::new(thread.as_str(), turn.as_str());
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        conn.request::<codex_asp::protocol::TurnInterrupt>(params),
    )
    .await;
    let _ = conn.shutdown(Duration::from_millis(200)).await;
    match answer {
        Ok(Ok(_)) => Interrupt::Sent,
        Ok(Err(e)) if broker::is_thread_owned(&e) => Interrupt::Owned,
        Ok(Err(e)) => Interrupt::Failed(codex_core::error_chain(&e)),
        Err(_) => Interrupt::Failed("the broker did not answer turn/interrupt within 10 s".into()),
    }
}

/// The examples that documented this module when it was public API of codex-agent.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn example_1() {
        use crate::connect::JobClock;
        let clock = JobClock::start(std::time::Duration::from_secs(60));
        assert!(clock.remaining() <= clock.timeout());
    }
}
