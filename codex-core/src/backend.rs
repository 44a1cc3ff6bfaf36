//! The [`Backend`] trait and the handle of a running turn, [`Run`].
//!
//! A backend turns a [`TaskSpec`] into a [`Run`]: a bounded, ordered stream of [`Event`]s, a
//! final [`TurnOutcome`] and a [`CancelHandle`]. Backends produce through a [`RunSink`], which
//! folds every event into the outcome as it passes, so all backends agree on what a turn's
//! thread id, final message, items and usage are.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::event::{Event, FailureKind, Item, ItemDetails, ThreadId, TurnId, Usage};
use crate::spec::TaskSpec;

/// Which way of running codex produced a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BackendKind {
    /// One-shot `codex exec --json` processes.
    Exec,
    /// A private `codex app-server`.
    AppServer,
    /// An app-server shared through the resident broker.
    Broker,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Exec => "exec",
            BackendKind::AppServer => "app-server",
            BackendKind::Broker => "broker",
        })
    }
}

/// A way of running codex turns.
///
/// Object safe: pick the method at run time with `Box<dyn Backend>` or `Arc<dyn Backend>`.
///
/// ```no_run
/// # async fn demo(backend: &dyn codex_core::Backend) -> codex_core::Result<()> {
/// use codex_core::{Event, TaskSpec};
/// let mut run = backend.start(TaskSpec::new("say hello")).await?;
/// while let Some(event) = run.next_event().await {
///     if let Event::ItemCompleted { item } = &event {
///         println!("{}", item.details.kind_name());
///     }
/// }
/// let outcome = run.outcome().await?;
/// println!("{}", outcome.final_message.unwrap_or_default());
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Which method this is.
    fn kind(&self) -> BackendKind;

    /// Starts a new thread and runs one turn on it.
    async fn start(&self, spec: TaskSpec) -> Result<Run>;

    /// Runs one more turn on an existing thread; `spec.prompt` is the new instruction.
    async fn resume(&self, thread_id: &ThreadId, spec: TaskSpec) -> Result<Run>;

    /// Starts and waits: the outcome of one turn on a new thread.
    async fn run(&self, spec: TaskSpec) -> Result<TurnOutcome> {
        self.start(spec).await?.wait().await
    }
}

#[async_trait::async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn kind(&self) -> BackendKind {
        (**self).kind()
    }
    async fn start(&self, spec: TaskSpec) -> Result<Run> {
        (**self).start(spec).await
    }
    async fn resume(&self, thread_id: &ThreadId, spec: TaskSpec) -> Result<Run> {
        (**self).resume(thread_id, spec).await
    }
}

#[async_trait::async_trait]
impl<B: Backend + ?Sized> Backend for Box<B> {
    fn kind(&self) -> BackendKind {
        (**self).kind()
    }
    async fn start(&self, spec: TaskSpec) -> Result<Run> {
        (**self).start(spec).await
    }
    async fn resume(&self, thread_id: &ThreadId, spec: TaskSpec) -> Result<Run> {
        (**self).resume(thread_id, spec).await
    }
}

/// The result of a completed turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TurnOutcome {
    /// Which backend ran it.
    pub backend: BackendKind,
    /// The thread (use it to resume).
    pub thread_id: ThreadId,
    /// The turn id, when the backend reports one (the app-server does, `codex exec` does not).
    pub turn_id: Option<TurnId>,
    /// The last agent message of the turn.
    pub final_message: Option<String>,
    /// Every completed item, in order.
    pub items: Vec<Item>,
    /// Token usage, when reported.
    pub usage: Option<Usage>,
}

impl TurnOutcome {
    /// Files created, changed or removed by the turn's completed file changes, deduplicated,
    /// in first-touched order.
    pub fn touched_files(&self) -> Vec<std::path::PathBuf> {
        let mut out: Vec<std::path::PathBuf> = Vec::new();
        for item in &self.items {
            if let ItemDetails::FileChange { changes, .. } = &item.details {
                for c in changes {
                    if !out.contains(&c.path) {
                        out.push(c.path.clone());
                    }
                }
            }
        }
        out
    }

    /// The turn's reasoning summaries, joined.
    pub fn reasoning_summary(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .items
            .iter()
            .filter_map(|i| match &i.details {
                ItemDetails::Reasoning { text } if !text.trim().is_empty() => Some(text.as_str()),
                _ => None,
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }
}

/// Cancels a run from anywhere (cloneable, cheap).
#[derive(Debug, Clone)]
pub struct CancelHandle(CancellationToken);

impl CancelHandle {
    /// Asks the backend to stop the turn. For process backends this kills the codex process
    /// group; the run then ends with [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once cancellation was requested (or the run was dropped).
    pub async fn cancelled(&self) {
        self.0.cancelled().await;
    }
}

/// A running turn: its events, in order, then its outcome.
///
/// Events go through a bounded queue: a caller that does not read them slows the backend
/// down rather than losing events. [`Run::wait`] drains the events for callers who only want
/// the outcome. Dropping a `Run` cancels the turn.
#[derive(Debug)]
pub struct Run {
    backend: BackendKind,
    events: mpsc::Receiver<Event>,
    outcome: Option<oneshot::Receiver<Result<TurnOutcome>>>,
    cancel: CancellationToken,
}

/// The default capacity of a run's event queue.
pub const DEFAULT_EVENT_CAPACITY: usize = 256;

impl Run {
    /// Creates a run and the sink its backend feeds.
    pub fn channel(backend: BackendKind, capacity: usize) -> (RunSink, Run) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (otx, orx) = oneshot::channel();
        let cancel = CancellationToken::new();
        let sink = RunSink {
            backend,
            events: Some(tx),
            outcome: Some(otx),
            cancel: cancel.clone(),
            acc: Accumulator::default(),
        };
        (
            sink,
            Run {
                backend,
                events: rx,
                outcome: Some(orx),
                cancel,
            },
        )
    }

    /// Which backend runs this turn.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The next event, or `None` once the turn is over and every event was read.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// A handle that cancels this run.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.cancel.clone())
    }

    /// Cancels the run.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Drains the remaining events and returns the outcome.
    pub async fn wait(mut self) -> Result<TurnOutcome> {
        while self.events.recv().await.is_some() {}
        self.outcome().await
    }

    /// The outcome. Call after [`Run::next_event`] returned `None` (or use [`Run::wait`]);
    /// unread events are discarded.
    pub async fn outcome(&mut self) -> Result<TurnOutcome> {
        self.events.close();
        while self.events.recv().await.is_some() {}
        let Some(rx) = self.outcome.take() else {
            return Err(Error::InvalidSpec {
                field: "run",
                reason: "the outcome was already taken".into(),
            });
        };
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(Error::backend(
                self.backend,
                "the backend task ended without reporting an outcome",
            )),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.outcome.is_some() {
            self.cancel.cancel();
        }
    }
}

impl futures::Stream for Run {
    type Item = Event;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

/// The producing side of a [`Run`], held by a backend.
///
/// Every event passes through [`RunSink::emit`], which records what the outcome needs; the
/// backend ends the run with [`RunSink::finish`] (or [`RunSink::fail`]).
#[derive(Debug)]
pub struct RunSink {
    backend: BackendKind,
    events: Option<mpsc::Sender<Event>>,
    outcome: Option<oneshot::Sender<Result<TurnOutcome>>>,
    cancel: CancellationToken,
    acc: Accumulator,
}

impl RunSink {
    /// Records and forwards an event. Waits while the caller's queue is full (backpressure).
    /// If the caller stopped reading events, the event is still recorded for the outcome.
    pub async fn emit(&mut self, event: Event) {
        self.acc.observe(&event);
        if let Some(tx) = &self.events
            && tx.send(event).await.is_err()
        {
            self.events = None;
        }
    }

    /// Resolves when the caller cancelled (or dropped) the run.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Whether the caller cancelled (or dropped) the run.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A handle on this run's cancellation, for waiting on it while the sink is borrowed
    /// (e.g. in a `select!` next to [`RunSink::emit`]).
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.cancel.clone())
    }

    /// Sets the outcome's final message when no agent message was emitted (for backends
    /// that can read the last message from elsewhere, such as `codex exec -o FILE`).
    pub fn final_message_fallback(&mut self, text: impl Into<String>) {
        if self.acc.final_message.is_none() {
            self.acc.final_message = Some(text.into());
        }
    }

    /// The thread id seen so far.
    pub fn thread_id(&self) -> Option<&ThreadId> {
        self.acc.thread_id.as_ref()
    }

    /// The turn id seen so far.
    pub fn turn_id(&self) -> Option<&TurnId> {
        self.acc.turn_id.as_ref()
    }

    /// Whether a terminal event (completed, failed, interrupted) was emitted.
    pub fn saw_terminal(&self) -> bool {
        self.acc.terminal.is_some()
    }

    /// Ends the run from what was emitted: `Ok` when the turn completed, the turn's failure
    /// when it failed or was interrupted, else `otherwise` (why the stream ended early).
    pub fn finish(mut self, otherwise: impl FnOnce() -> Error) {
        let result = self.acc.take_result(self.backend, otherwise);
        self.send(result);
    }

    /// Ends the run with an error, whatever was emitted.
    pub fn fail(mut self, error: Error) {
        self.send(Err(error));
    }

    fn send(&mut self, result: Result<TurnOutcome>) {
        self.events = None;
        if let Some(tx) = self.outcome.take() {
            let _ = tx.send(result);
        }
    }
}

impl Drop for RunSink {
    fn drop(&mut self) {
        if self.outcome.is_some() {
            let err = Error::backend(
                self.backend,
                "the backend stopped without finishing the run",
            );
            self.send(Err(err));
        }
    }
}

#[derive(Debug, Clone)]
enum Terminal {
    Completed(Option<Usage>),
    Failed(String, FailureKind),
    Interrupted,
}

/// Folds events into a [`TurnOutcome`]; shared by every backend through [`RunSink`].
#[derive(Debug, Default)]
struct Accumulator {
    thread_id: Option<ThreadId>,
    turn_id: Option<TurnId>,
    items: Vec<Item>,
    final_message: Option<String>,
    terminal: Option<Terminal>,
}

impl Accumulator {
    fn observe(&mut self, event: &Event) {
        match event {
            Event::ThreadStarted { thread_id } => self.thread_id = Some(thread_id.clone()),
            Event::TurnStarted { turn_id } if turn_id.is_some() => {
                self.turn_id = turn_id.clone();
            }
            Event::ItemCompleted { item } => {
                if let ItemDetails::AgentMessage { text } = &item.details {
                    self.final_message = Some(text.clone());
                }
                self.items.push(item.clone());
            }
            Event::TurnCompleted { usage, turn_id } => {
                self.set_turn(turn_id);
                self.terminal = Some(Terminal::Completed(*usage));
            }
            Event::TurnFailed {
                message,
                turn_id,
                kind,
            } => {
                self.set_turn(turn_id);
                self.terminal = Some(Terminal::Failed(message.clone(), *kind));
            }
            Event::TurnInterrupted { turn_id } => {
                self.set_turn(turn_id);
                self.terminal = Some(Terminal::Interrupted);
            }
            _ => {}
        }
    }

    fn set_turn(&mut self, turn_id: &Option<TurnId>) {
        if self.turn_id.is_none() {
            self.turn_id = turn_id.clone();
        }
    }

    fn take_result(
        &mut self,
        backend: BackendKind,
        otherwise: impl FnOnce() -> Error,
    ) -> Result<TurnOutcome> {
        match self.terminal.take() {
            Some(Terminal::Completed(usage)) => match self.thread_id.take() {
                Some(thread_id) => Ok(TurnOutcome {
                    backend,
                    thread_id,
                    turn_id: self.turn_id.take(),
                    final_message: self.final_message.take(),
                    items: std::mem::take(&mut self.items),
                    usage,
                }),
                None => Err(Error::backend(
                    backend,
                    "the turn completed but no thread id was seen",
                )),
            },
            Some(Terminal::Failed(message, FailureKind::Auth)) => Err(Error::AuthRejected {
                thread_id: self.thread_id.take(),
                turn_id: self.turn_id.take(),
                message,
            }),
            Some(Terminal::Failed(message, _)) => Err(Error::TurnFailed {
                thread_id: self.thread_id.take(),
                turn_id: self.turn_id.take(),
                message,
            }),
            Some(Terminal::Interrupted) => Err(Error::Cancelled {
                thread_id: self.thread_id.take(),
            }),
            None => Err(otherwise()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, text: &str) -> Event {
        Event::ItemCompleted {
            item: Item::new(id, ItemDetails::AgentMessage { text: text.into() }),
        }
    }

    #[tokio::test]
    async fn outcome_is_folded_from_events() {
        let (mut sink, run) = Run::channel(BackendKind::Exec, 4);
        tokio::spawn(async move {
            sink.emit(Event::ThreadStarted {
                thread_id: "t-1".into(),
            })
            .await;
            sink.emit(Event::TurnStarted { turn_id: None }).await;
            sink.emit(msg("i0", "first")).await;
            sink.emit(msg("i1", "second")).await;
            for _ in 0..10 {
                sink.emit(Event::Error {
                    message: "Reconnecting...".into(),
                })
                .await;
            }
            sink.emit(Event::TurnCompleted {
                turn_id: None,
                usage: Some(Usage::default()),
            })
            .await;
            sink.finish(|| Error::Cancelled { thread_id: None });
        });
        let out = run.wait().await.unwrap();
        assert_eq!(out.thread_id.as_str(), "t-1");
        assert_eq!(out.final_message.as_deref(), Some("second"));
        assert_eq!(out.items.len(), 2);
    }

    #[tokio::test]
    async fn failure_and_early_end() {
        let (mut sink, run) = Run::channel(BackendKind::AppServer, 4);
        sink.emit(Event::ThreadStarted {
            thread_id: "t".into(),
        })
        .await;
        sink.emit(Event::TurnFailed {
            turn_id: Some("u".into()),
            message: "boom".into(),
            kind: FailureKind::Other,
        })
        .await;
        sink.finish(|| Error::NotLoggedIn);
        match run.wait().await {
            Err(Error::TurnFailed {
                message,
                thread_id,
                turn_id,
            }) => {
                assert_eq!(message, "boom");
                assert_eq!(thread_id.unwrap().as_str(), "t");
                assert_eq!(turn_id.unwrap().as_str(), "u");
            }
            other => panic!("{other:?}"),
        }
        let (sink, run) = Run::channel(BackendKind::Exec, 4);
        drop(sink);
        assert!(matches!(run.wait().await, Err(Error::Backend { .. })));
    }

    #[tokio::test]
    async fn an_auth_failure_is_its_own_error_with_codex_text() {
        let (mut sink, run) = Run::channel(BackendKind::Exec, 4);
        sink.emit(Event::ThreadStarted {
            thread_id: "t".into(),
        })
        .await;
        sink.emit(Event::TurnFailed {
            turn_id: None,
            message: "unexpected status 401 Unauthorized: nope".into(),
            kind: FailureKind::Auth,
        })
        .await;
        sink.finish(|| Error::NotLoggedIn);
        match run.wait().await {
            Err(err @ Error::AuthRejected { .. }) => {
                assert_eq!(err.thread_id().map(ThreadId::as_str), Some("t"));
                let text = err.to_string();
                assert!(
                    text.contains("unexpected status 401 Unauthorized: nope"),
                    "{text}"
                );
                assert!(text.contains("codex login"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn dropping_the_run_cancels() {
        let (sink, run) = Run::channel(BackendKind::Exec, 1);
        let handle = run.cancel_handle();
        drop(run);
        assert!(handle.is_cancelled());
        assert!(sink.is_cancelled());
    }
}
