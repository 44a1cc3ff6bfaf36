//! A scripted test double of [`Backend`] (unit tests only).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codex_core::{Backend, BackendKind, Event, Item, ItemDetails, Run, TaskSpec, ThreadId, TurnId};

/// How a scripted run ends after its events.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// `RunSink::finish`, with "connection closed" when no terminal event was emitted.
    Finish,
    /// `RunSink::fail` with a backend error carrying this message.
    Fail(String),
    /// Wait for cancellation, then fail as cancelled.
    Hang,
}

/// What one `start`/`resume` call does.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    events: Vec<Event>,
    end: End,
    run_kind: Option<BackendKind>,
    start_error: Option<String>,
    delay: Duration,
}

impl Script {
    pub(crate) fn events(events: Vec<Event>) -> Self {
        Script {
            events,
            end: End::Finish,
            run_kind: None,
            start_error: None,
            delay: Duration::ZERO,
        }
    }

    /// A start that fails at once (the backend is unreachable).
    pub(crate) fn start_error(message: &str) -> Self {
        let mut s = Script::events(Vec::new());
        s.start_error = Some(message.to_owned());
        s
    }

    /// A turn that completes with `message` on thread `thread_id`, turn `turn_id`.
    pub(crate) fn completes(thread_id: &str, turn_id: Option<&str>, message: &str) -> Self {
        Script::events(vec![
            thread(thread_id),
            turn(turn_id),
            completed(agent_message("m-1", message)),
            Event::TurnCompleted {
                turn_id: turn_id.map(TurnId::from),
                usage: None,
            },
        ])
    }

    pub(crate) fn outcome_error(mut self, message: &str) -> Self {
        self.end = End::Fail(message.to_owned());
        self
    }

    pub(crate) fn hang(mut self) -> Self {
        self.end = End::Hang;
        self
    }

    pub(crate) fn run_kind(mut self, kind: BackendKind) -> Self {
        self.run_kind = Some(kind);
        self
    }

    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A recorded call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) resume: Option<ThreadId>,
    pub(crate) spec: TaskSpec,
}

/// A backend that plays scripts, one per call, and records the calls.
#[derive(Debug, Clone)]
pub(crate) struct FakeBackend {
    kind: BackendKind,
    scripts: Arc<Mutex<VecDeque<Script>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeBackend {
    pub(crate) fn new(kind: BackendKind) -> Self {
        FakeBackend {
            kind,
            scripts: Arc::default(),
            calls: Arc::default(),
        }
    }

    pub(crate) fn script(self, script: Script) -> Self {
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(script);
        self
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn play(&self, resume: Option<ThreadId>, spec: TaskSpec) -> codex_core::Result<Run> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Call { resume, spec });
        let script = self
            .scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .ok_or_else(|| codex_core::Error::backend(self.kind, "no script left"))?;
        if let Some(message) = script.start_error {
            return Err(codex_core::Error::backend(self.kind, message));
        }
        let kind = self.kind;
        let (mut sink, run) = Run::channel(script.run_kind.unwrap_or(kind), 16);
        tokio::spawn(async move {
            for event in script.events {
                if !script.delay.is_zero() {
                    tokio::time::sleep(script.delay).await;
                }
                if sink.is_cancelled() {
                    let thread_id = sink.thread_id().cloned();
                    sink.fail(codex_core::Error::Cancelled { thread_id });
                    return;
                }
                sink.emit(event).await;
            }
            match script.end {
                End::Finish => {
                    sink.finish(|| codex_core::Error::backend(kind, "connection closed"));
                }
                End::Fail(message) => sink.fail(codex_core::Error::backend(kind, message)),
                End::Hang => {
                    sink.cancelled().await;
                    let thread_id = sink.thread_id().cloned();
                    sink.fail(codex_core::Error::Cancelled { thread_id });
                }
            }
        });
        Ok(run)
    }
}

#[async_trait::async_trait]
impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    async fn start(&self, spec: TaskSpec) -> codex_core::Result<Run> {
        self.play(None, spec)
    }

    async fn resume(&self, thread_id: &ThreadId, spec: TaskSpec) -> codex_core::Result<Run> {
        self.play(Some(thread_id.clone()), spec)
    }
}

pub(crate) fn thread(id: &str) -> Event {
    Event::ThreadStarted {
        thread_id: id.into(),
    }
}

pub(crate) fn turn(id: Option<&str>) -> Event {
    Event::TurnStarted {
        turn_id: id.map(TurnId::from),
    }
}

pub(crate) fn agent_message(id: &str, text: &str) -> Item {
    Item::new(id, ItemDetails::AgentMessage { text: text.into() })
}

pub(crate) fn started(item: Item) -> Event {
    Event::ItemStarted { item }
}

pub(crate) fn completed(item: Item) -> Event {
    Event::ItemCompleted { item }
}
