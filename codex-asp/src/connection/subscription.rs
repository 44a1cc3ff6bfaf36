//! Subscriptions: ordered, bounded streams of what the server sends, filtered by thread or
//! turn, with explicit lag reports.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use serde_json::Value;
use tokio::sync::mpsc;

use super::Shared;
use crate::approval::ServerRequestCtx;
use crate::error::{Error, Result};
use crate::protocol::ServerNotification;
use crate::transport::Garbage;

/// A server notification: its method and raw params, the typed form, and the thread and
/// turn it is about.
#[derive(Debug, Clone)]
pub struct Notification {
    method: String,
    params: Value,
    typed: ServerNotification,
    thread_id: Option<String>,
    turn_id: Option<String>,
}

impl Notification {
    /// Builds a notification (the connection does this for every one it receives).
    pub fn new(method: impl Into<String>, params: Value) -> Self {
        let method = method.into();
        let typed = ServerNotification::from_parts_ref(&method, &params);
        let thread_id = typed
            .thread_id()
            .map(str::to_owned)
            .or_else(|| raw_id(&params, "threadId", "thread"));
        let turn_id = typed
            .turn_id()
            .map(str::to_owned)
            .or_else(|| raw_id(&params, "turnId", "turn"));
        Notification {
            method,
            params,
            typed,
            thread_id,
            turn_id,
        }
    }

    /// The JSON-RPC method (`turn/completed`, `item/agentMessage/delta`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The params exactly as received (`Value::Null` when absent).
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// The typed notification ([`ServerNotification::Raw`] for methods without a type).
    pub fn typed(&self) -> &ServerNotification {
        &self.typed
    }

    /// The thread it is about: the typed notification's thread, else `params.threadId`, else
    /// `params.thread.id`.
    pub fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    /// The turn it is about: the typed notification's turn, else `params.turnId`, else
    /// `params.turn.id`.
    pub fn turn_id(&self) -> Option<&str> {
        self.turn_id.as_deref()
    }
}

fn raw_id(params: &Value, flat: &str, nested: &str) -> Option<String> {
    params
        .get(flat)
        .and_then(Value::as_str)
        .or_else(|| params.get(nested)?.get("id")?.as_str())
        .map(str::to_owned)
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A notification.
    Notification(Arc<Notification>),
    /// A server-to-client request, for information (the approval handler answers it; its
    /// [`ServerRequestCtx::is_resolved`] turns true once it no longer needs an answer).
    ServerRequest(Arc<ServerRequestCtx>),
    /// A frame that was skipped because it is not a JSON-RPC message (only on
    /// [`Filter::All`] subscriptions).
    Garbage(Arc<Garbage>),
    /// This subscriber fell behind: this many events were dropped for it here.
    Lagged(u64),
}

impl Event {
    /// The notification, if this is one.
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            Event::Notification(n) => Some(n),
            _ => None,
        }
    }

    /// The thread the event is about.
    pub fn thread_id(&self) -> Option<&str> {
        match self {
            Event::Notification(n) => n.thread_id(),
            Event::ServerRequest(r) => r.thread_id(),
            _ => None,
        }
    }

    /// The turn the event is about.
    pub fn turn_id(&self) -> Option<&str> {
        match self {
            Event::Notification(n) => n.turn_id(),
            Event::ServerRequest(r) => r.turn_id(),
            _ => None,
        }
    }
}

/// Which events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// Everything: every notification and server request, and garbage frames.
    All,
    /// Notifications and server requests about this thread.
    Thread(String),
    /// Notifications and server requests about this turn.
    Turn(String),
}

impl Filter {
    /// For [`Connection::request_raw_subscribed`](crate::Connection::request_raw_subscribed):
    /// the thread of a `thread/start` / `thread/resume` / `thread/fork` result
    /// (`result.thread.id`).
    pub fn result_thread(result: &Value) -> Option<Filter> {
        result
            .get("thread")?
            .get("id")?
            .as_str()
            .map(|id| Filter::Thread(id.to_owned()))
    }

    /// For [`Connection::request_raw_subscribed`](crate::Connection::request_raw_subscribed):
    /// the turn of a `turn/start` / `review/start` result (`result.turn.id`).
    pub fn result_turn(result: &Value) -> Option<Filter> {
        result
            .get("turn")?
            .get("id")?
            .as_str()
            .map(|id| Filter::Turn(id.to_owned()))
    }

    pub(crate) fn matches(&self, event: &Event) -> bool {
        match self {
            Filter::All => true,
            Filter::Thread(id) => event.thread_id() == Some(id),
            Filter::Turn(id) => event.turn_id() == Some(id),
        }
    }
}

/// One queued event, with the number of events dropped just before it.
pub(crate) struct Delivery {
    pub missed_before: u64,
    pub event: Event,
}

/// The connection's side of a subscription.
pub(crate) struct SubEntry {
    pub filter: Filter,
    pub tx: mpsc::Sender<Delivery>,
    pub missed: Arc<AtomicU64>,
}

impl SubEntry {
    /// Queues `event` without waiting; `false` when the subscriber is gone.
    pub fn deliver(&self, event: Event, lagged_total: &AtomicU64) -> bool {
        let missed = self.missed.swap(0, Ordering::AcqRel);
        match self.tx.try_send(Delivery {
            missed_before: missed,
            event,
        }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.missed.fetch_add(missed + 1, Ordering::AcqRel);
                lagged_total.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// An ordered, bounded stream of events from one connection.
///
/// Created by [`Connection::subscribe`](crate::Connection::subscribe). When the subscriber
/// falls behind, the connection does not wait for it: it drops events for it and the
/// subscriber receives [`Event::Lagged`] with their number, at the place they were dropped.
/// When the connection closes, the subscription yields the events still queued, then
/// [`Error::Closed`] (with the exit status and stderr tail when the app-server exited).
///
/// Also a [`futures::Stream`] of `Result<Event>` that ends after the error.
pub struct Subscription {
    pub(crate) id: u64,
    pub(crate) rx: mpsc::Receiver<Delivery>,
    pub(crate) missed: Arc<AtomicU64>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) held: Option<Event>,
    pub(crate) ended: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next event, or the connection's close error once everything queued was read.
    pub async fn recv(&mut self) -> Result<Event> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event (see [`Subscription::recv`]).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event>> {
        if let Some(event) = self.held.take() {
            return Poll::Ready(Ok(event));
        }
        let delivery = match self.rx.poll_recv(cx) {
            Poll::Ready(delivery) => delivery,
            Poll::Pending => {
                // Everything queued was read: report what was dropped since now, not with
                // the next event, which may never come (a dropped `turn/completed`).
                let missed = self.missed.swap(0, Ordering::AcqRel);
                return if missed > 0 {
                    Poll::Ready(Ok(Event::Lagged(missed)))
                } else {
                    Poll::Pending
                };
            }
        };
        match delivery {
            Some(Delivery {
                missed_before,
                event,
            }) => {
                if missed_before > 0 {
                    self.held = Some(event);
                    Poll::Ready(Ok(Event::Lagged(missed_before)))
                } else {
                    Poll::Ready(Ok(event))
                }
            }
            None => {
                let missed = self.missed.swap(0, Ordering::AcqRel);
                if missed > 0 {
                    Poll::Ready(Ok(Event::Lagged(missed)))
                } else {
                    Poll::Ready(Err(self.shared.closed_error()))
                }
            }
        }
    }

    /// Waits for the next notification, skipping other events (lag reports are skipped too;
    /// use [`Subscription::recv`] to see them).
    pub async fn next_notification(&mut self) -> Result<Arc<Notification>> {
        loop {
            if let Event::Notification(n) = self.recv().await? {
                return Ok(n);
            }
        }
    }
}

impl futures::Stream for Subscription {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let item = ready!(self.poll_recv(cx));
        if item.is_err() {
            self.ended = true;
        }
        Poll::Ready(Some(item))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.lock().subs.remove(&self.id);
    }
}
