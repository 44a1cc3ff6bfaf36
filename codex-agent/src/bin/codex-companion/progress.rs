//! Progress reporting: [`Tap`] wraps any [`Backend`] and shows each event of its runs to a
//! callback (the binary prints [`progress_line`]s on stderr), passing the run on unchanged —
//! same events, in order, same outcome, same cancellation — with one addition: when the
//! broker reports that its app-server exited under the run's turn (a
//! `broker/appServerExited` notification of the run's thread), the run ends at once with
//! [`Error::ProcessExited`] instead of waiting for a completion that cannot come.

use std::sync::Arc;

use codex_core::backend::DEFAULT_EVENT_CAPACITY;
use codex_core::{Backend, BackendKind, Error, Event, ItemDetails, Run, TaskSpec, ThreadId};

/// A callback told of every event of every run.
pub type EventCallback = Arc<dyn Fn(&Event) + Send + Sync>;

/// A [`Backend`] that reports the events of its inner backend's runs to a callback.
pub struct Tap {
    inner: Arc<dyn Backend>,
    callback: EventCallback,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("kind", &self.inner.kind())
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, callback: EventCallback) -> Self {
        Tap { inner, callback }
    }

    fn wrap(&self, mut run: Run) -> Run {
        let kind = run.backend();
        let (mut sink, out) = Run::channel(kind, DEFAULT_EVENT_CAPACITY);
        let callback = self.callback.clone();
        tokio::spawn(async move {
            let cancel = sink.cancel_handle();
            let mut cancelled = false;
            loop {
                tokio::select! {
                    biased;
                    () = cancel.cancelled(), if !cancelled => {
                        cancelled = true;
                        run.cancel();
                    }
                    event = run.next_event() => {
                        let Some(event) = event else { break };
                        callback(&event);
                        let lost = app_server_exit(&event);
                        sink.emit(event).await;
                        if let Some(error) = lost {
                            // the broker's app-server died under our turn: it will never
                            // complete; end the run now and let the inner one wind down
                            sink.fail(error);
                            run.cancel();
                            tokio::spawn(async move {
                                let _ = run.wait().await;
                            });
                            return;
                        }
                    }
                }
            }
            match run.outcome().await {
                Ok(outcome) => {
                    if let Some(message) = outcome.final_message {
                        sink.final_message_fallback(message);
                    }
                    sink.finish(|| Error::backend(kind, "the run ended without a terminal event"));
                }
                Err(e) => sink.fail(e),
            }
        });
        out
    }
}

/// The typed error of a run whose app-server exited under the broker: the broker tells the
/// owner of each running turn with a `broker/appServerExited` notification (an
/// [`Event::Unknown`] of the run), and that turn will never complete.
fn app_server_exit(event: &Event) -> Option<Error> {
    let Event::Unknown { kind, raw } = event else {
        return None;
    };
    if kind != codex_asp::broker::APP_SERVER_EXITED_NOTIFICATION {
        return None;
    }
    let exit: codex_asp::broker::AppServerExit = serde_json::from_value(raw.clone()).ok()?;
    let status = match (exit.exit_code, exit.signal) {
        (Some(code), _) => codex_core::ExitSummary::Code(code),
        (None, Some(signal)) => codex_core::ExitSummary::Signal(signal),
        _ => codex_core::ExitSummary::Unknown,
    };
    Some(Error::ProcessExited {
        status,
        context: "under the broker while the turn was running".into(),
        stderr_tail: exit.stderr_tail,
    })
}

#[async_trait::async_trait]
impl Backend for Tap {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    async fn start(&self, spec: TaskSpec) -> codex_core::Result<Run> {
        let run = self.inner.start(spec).await?;
        Ok(self.wrap(run))
    }

    async fn resume(&self, thread_id: &ThreadId, spec: TaskSpec) -> codex_core::Result<Run> {
        let run = self.inner.resume(thread_id, spec).await?;
        Ok(self.wrap(run))
    }
}

/// A one-line, human description of an event worth showing while a turn runs, if it is
/// one (deltas and item starts are not).
pub fn progress_line(event: &Event) -> Option<String> {
    let first_line = |text: &str| -> String {
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let mut out: String = line.trim().chars().take(160).collect();
        if line.trim().chars().count() > 160 {
            out.push('…');
        }
        out
    };
    let line = match event {
        Event::ThreadStarted { thread_id } => format!("thread {thread_id}"),
        Event::TurnStarted { turn_id } => match turn_id {
            Some(t) => format!("turn {t} started"),
            None => "turn started".to_owned(),
        },
        Event::ItemCompleted { item } => match &item.details {
            ItemDetails::CommandExecution {
                command, exit_code, ..
            } => match exit_code {
                Some(code) => format!("ran `{}` (exit {code})", first_line(command)),
                None => format!("ran `{}`", first_line(command)),
            },
            ItemDetails::FileChange { changes, .. } => {
                let paths: Vec<String> = changes
                    .iter()
                    .map(|c| c.path.display().to_string())
                    .collect();
                format!("changed {}", paths.join(", "))
            }
            ItemDetails::Reasoning { text } if !text.trim().is_empty() => {
                format!("thinking: {}", first_line(text))
            }
            ItemDetails::AgentMessage { text } => format!("message: {}", first_line(text)),
            ItemDetails::McpToolCall { server, tool, .. } => format!("called {server}/{tool}"),
            ItemDetails::WebSearch { query } => format!("searched the web: {query}"),
            ItemDetails::Error { message } => format!("error: {}", first_line(message)),
            _ => return None,
        },
        Event::TurnCompleted { .. } => "turn completed".to_owned(),
        Event::TurnFailed { message, .. } => format!("turn failed: {}", first_line(message)),
        Event::TurnInterrupted { .. } => "turn interrupted".to_owned(),
        Event::Error { message } => format!("codex error: {}", first_line(message)),
        _ => return None,
    };
    Some(codex_agent::jobs::redact(&line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_core::{Item, TurnId};
    use std::sync::Mutex;

    /// A backend that plays a fixed list of events.
    struct Scripted(Vec<Event>);

    #[async_trait::async_trait]
    impl Backend for Scripted {
        fn kind(&self) -> BackendKind {
            BackendKind::AppServer
        }
        async fn start(&self, _spec: TaskSpec) -> codex_core::Result<Run> {
            let (mut sink, run) = Run::channel(BackendKind::AppServer, 4);
            let events = self.0.clone();
            tokio::spawn(async move {
                for e in events {
                    sink.emit(e).await;
                }
                sink.finish(|| Error::backend(BackendKind::AppServer, "no end"));
            });
            Ok(run)
        }
        async fn resume(&self, _t: &ThreadId, spec: TaskSpec) -> codex_core::Result<Run> {
            self.start(spec).await
        }
    }

    #[tokio::test]
    async fn runs_pass_through_unchanged() {
        let events = vec![
            Event::ThreadStarted {
                thread_id: "t".into(),
            },
            Event::TurnStarted {
                turn_id: Some(TurnId::from("u")),
            },
            Event::ItemCompleted {
                item: Item::new(
                    "m",
                    ItemDetails::AgentMessage {
                        text: "hello sk-abcdefghijkl".into(),
                    },
                ),
            },
            Event::TurnCompleted {
                turn_id: Some(TurnId::from("u")),
                usage: None,
            },
        ];
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let tap = Tap::new(
            Arc::new(Scripted(events.clone())),
            Arc::new(move |e: &Event| {
                if let Some(l) = progress_line(e) {
                    s.lock().unwrap().push(l);
                }
            }),
        );
        let mut run = tap.start(TaskSpec::new("x")).await.unwrap();
        let mut got = Vec::new();
        while let Some(e) = run.next_event().await {
            got.push(e);
        }
        assert_eq!(got, events);
        let outcome = run.outcome().await.unwrap();
        assert_eq!(
            outcome.final_message.as_deref(),
            Some("hello sk-abcdefghijkl")
        );
        assert_eq!(outcome.thread_id.as_str(), "t");
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "thread t",
                "turn u started",
                "message: hello [REDACTED]",
                "turn completed"
            ]
        );
        // an unfinished script fails the same way through the tap
        let tap = Tap::new(
            Arc::new(Scripted(events[..2].to_vec())),
            Arc::new(|_: &Event| {}),
        );
        let err = tap.start(TaskSpec::new("x")).await.unwrap().wait().await;
        assert!(err.is_err());
    }
}

/// The examples that documented this module when it was public API of codex-agent.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn example_1() {
        use crate::progress::progress_line;
        use codex_core::Event;
        assert_eq!(
            progress_line(&Event::ThreadStarted {
                thread_id: "t-1".into()
            })
            .as_deref(),
            Some("thread t-1")
        );
        assert_eq!(
            progress_line(&Event::Delta {
                item_id: "i".into(),
                kind: codex_core::event::DeltaKind::AgentMessage,
                delta: "x".into()
            }),
            None
        );
    }
}
