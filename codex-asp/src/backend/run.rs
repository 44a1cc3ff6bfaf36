//! The run driver: reads a turn's thread subscription, emits core events, ends the run
//! (completion, failure, cancel, timeout, lag, a closed connection).

use super::{BackendError, TurnTracker};
use std::time::Duration;

use codex_core::{BackendKind, Event, RunSink, ThreadId};
use serde_json::{Value, json};
use tokio::time::Instant;

use codex_core::util::sleep_until as sleep_until_opt;

use crate::connection::{Connection, ConnectionEvent, Subscription};
use crate::protocol::{TurnInterrupt, TurnInterruptParams};

/// How long a stopping run (cancel, timeout, lag) waits for `turn/interrupt` to be answered,
/// and then for the interrupted turn's `turn/completed`.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why a run stops early.
enum Stop {
    Cancelled,
    Timeout(Duration),
}

/// Drives one run: reads the thread's subscription, maps, emits, ends.
pub(super) struct Driver {
    pub(super) conn: Connection,
    pub(super) sub: Subscription,
    pub(super) tracker: TurnTracker,
    pub(super) deadline: Option<(Instant, Duration)>,
    pub(super) kind: BackendKind,
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

    pub(super) async fn run(mut self, mut sink: RunSink, first: Event) {
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
