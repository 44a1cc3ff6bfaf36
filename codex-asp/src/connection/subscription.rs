//! Subscriptions: ordered, bounded streams of what the server sends, filtered by thread or
//! turn, with explicit lag reports, and (on request) text deltas merged instead of dropped.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use serde_json::{Map, Value};

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
pub enum ConnectionEvent {
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

impl ConnectionEvent {
    /// The notification, if this is one.
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            ConnectionEvent::Notification(n) => Some(n),
            _ => None,
        }
    }

    /// The thread the event is about.
    pub fn thread_id(&self) -> Option<&str> {
        match self {
            ConnectionEvent::Notification(n) => n.thread_id(),
            ConnectionEvent::ServerRequest(r) => r.thread_id(),
            _ => None,
        }
    }

    /// The turn the event is about.
    pub fn turn_id(&self) -> Option<&str> {
        match self {
            ConnectionEvent::Notification(n) => n.turn_id(),
            ConnectionEvent::ServerRequest(r) => r.turn_id(),
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

    pub(crate) fn matches(&self, event: &ConnectionEvent) -> bool {
        match self {
            Filter::All => true,
            Filter::Thread(id) => event.thread_id() == Some(id),
            Filter::Turn(id) => event.turn_id() == Some(id),
        }
    }
}

/// How a [`Subscription`] copes with a burst it cannot queue (its queue holds
/// [`ConnectionOptions::subscription_capacity`](crate::ConnectionOptions::subscription_capacity)
/// events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop what does not fit and report [`ConnectionEvent::Lagged`] (the default).
    #[default]
    Lag,
    /// Lossless for a subscriber that keeps up on average. Once the queue is full, a text
    /// delta (one of [`COALESCED_METHODS`]) is appended to a recently queued delta of the
    /// same stream (same method, same params but `delta`) when nothing but other deltas was
    /// queued after it: the subscriber receives all the text, in order, in fewer
    /// notifications.
    /// Any other event still gets a place, up to a second queue's worth. Only past that, or
    /// past [`MAX_COALESCED_BYTES`] of merged text, are events dropped and reported as
    /// [`ConnectionEvent::Lagged`].
    CoalesceDeltas,
}

/// The notifications [`Overflow::CoalesceDeltas`] merges: text deltas whose `delta` strings
/// concatenate.
pub const COALESCED_METHODS: &[&str] = &[
    "item/agentMessage/delta",
    "item/reasoning/summaryTextDelta",
    "item/reasoning/textDelta",
    "item/commandExecution/outputDelta",
    "item/fileChange/outputDelta",
    "item/plan/delta",
];

/// The most merged delta text an [`Overflow::CoalesceDeltas`] subscription holds: 64 MiB.
pub const MAX_COALESCED_BYTES: usize = 64 * 1024 * 1024;

/// How many queued slots a delta looks back over for one of its stream (deltas of other
/// streams in between), so that merging costs O(1).
pub(crate) const MERGE_LOOKBACK: usize = 8;

/// What a queue slot holds.
enum Slot {
    /// An event as it arrived.
    Event(ConnectionEvent),
    /// Deltas of one stream merged: the first one's params (with an empty `delta`) and the
    /// concatenated text.
    Merged {
        method: String,
        params: Map<String, Value>,
        text: String,
    },
}

impl Slot {
    fn into_event(self) -> ConnectionEvent {
        match self {
            Slot::Event(event) => event,
            Slot::Merged {
                method,
                mut params,
                text,
            } => {
                params.insert("delta".into(), Value::String(text));
                ConnectionEvent::Notification(Arc::new(Notification::new(
                    method,
                    Value::Object(params),
                )))
            }
        }
    }
}

/// One queued slot, with the number of events dropped just before it.
struct Queued {
    missed_before: u64,
    slot: Slot,
}

struct QueueState {
    items: VecDeque<Queued>,
    /// Events dropped after the last queued slot, not reported yet.
    missed: u64,
    /// Text bytes held in merged slots.
    merged_bytes: usize,
    sender_gone: bool,
    receiver_gone: bool,
    waker: Option<Waker>,
}

/// The queue between the connection's task and one subscriber.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    capacity: usize,
    overflow: Overflow,
}

/// What the subscriber takes from its queue.
enum Popped {
    Item(Queued),
    Lagged(u64),
    Closed,
}

/// The text delta of a notification [`Overflow::CoalesceDeltas`] may merge.
fn mergeable(event: &ConnectionEvent) -> Option<(&Notification, &Map<String, Value>, &str)> {
    let ConnectionEvent::Notification(n) = event else {
        return None;
    };
    if !COALESCED_METHODS.contains(&n.method()) {
        return None;
    }
    let params = n.params().as_object()?;
    let delta = params.get("delta")?.as_str()?;
    Some((n, params, delta))
}

/// Whether two delta params belong to the same stream: equal but for `delta`.
pub(crate) fn same_stream(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| k == "delta" || b.get(k) == Some(v))
}

impl Queue {
    pub(crate) fn new(capacity: usize, overflow: Overflow) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                missed: 0,
                merged_bytes: 0,
                sender_gone: false,
                receiver_gone: false,
                waker: None,
            }),
            capacity: capacity.max(1),
            overflow,
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `event` without waiting (merging or dropping it when the queue is full);
    /// `false` when the subscriber is gone.
    fn push(&self, event: ConnectionEvent, lagged: &AtomicU64, coalesced: &AtomicU64) -> bool {
        let mut st = self.lock();
        if st.receiver_gone {
            return false;
        }
        let len = st.items.len();
        let room = match self.overflow {
            Overflow::Lag => len < self.capacity,
            _ if len < self.capacity => true,
            _ => {
                if let Some((_, params, delta)) = mergeable(&event)
                    && Self::merge(&mut st, params, delta)
                {
                    coalesced.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                len < self.capacity.saturating_mul(2)
            }
        };
        if !room {
            st.missed += 1;
            lagged.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let missed_before = std::mem::take(&mut st.missed);
        st.items.push_back(Queued {
            missed_before,
            slot: Slot::Event(event),
        });
        let waker = st.waker.take();
        drop(st);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Appends `delta` to a queued delta of the same stream with only deltas after it.
    fn merge(st: &mut QueueState, params: &Map<String, Value>, delta: &str) -> bool {
        if st.missed > 0 || st.merged_bytes.saturating_add(delta.len()) > MAX_COALESCED_BYTES {
            // text must not jump over dropped events
            return false;
        }
        let QueueState {
            items,
            merged_bytes,
            ..
        } = st;
        for queued in items.iter_mut().rev().take(MERGE_LOOKBACK) {
            let target = match &queued.slot {
                Slot::Merged { params: p, .. } => same_stream(p, params),
                Slot::Event(event) => match mergeable(event) {
                    Some((_, p, _)) => same_stream(p, params),
                    // never move text over another kind of event
                    None => return false,
                },
            };
            if !target {
                continue;
            }
            if let Slot::Event(event) = &queued.slot
                && let Some((n, p, first)) = mergeable(event)
            {
                if merged_bytes.saturating_add(first.len() + delta.len()) > MAX_COALESCED_BYTES {
                    return false;
                }
                let mut p = p.clone();
                let text = first.to_owned();
                p.insert("delta".into(), Value::String(String::new()));
                *merged_bytes += text.len();
                queued.slot = Slot::Merged {
                    method: n.method().to_owned(),
                    params: p,
                    text,
                };
            }
            if let Slot::Merged { text, .. } = &mut queued.slot {
                text.push_str(delta);
                *merged_bytes += delta.len();
                return true;
            }
            return false;
        }
        false
    }

    fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Popped> {
        let mut st = self.lock();
        if let Some(queued) = st.items.pop_front() {
            if let Slot::Merged { text, .. } = &queued.slot {
                st.merged_bytes = st.merged_bytes.saturating_sub(text.len());
            }
            return Poll::Ready(Popped::Item(queued));
        }
        if st.missed > 0 {
            // everything queued was read: report what was dropped since now, not with the
            // next event, which may never come (a dropped `turn/completed`)
            return Poll::Ready(Popped::Lagged(std::mem::take(&mut st.missed)));
        }
        if st.sender_gone {
            return Poll::Ready(Popped::Closed);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn receiver_gone(&self) -> bool {
        self.lock().receiver_gone
    }
}

/// The connection's end of a queue; dropping it ends the subscription (after what is
/// queued).
pub(crate) struct QueueSender {
    queue: Arc<Queue>,
}

impl QueueSender {
    /// Whether the subscriber is gone.
    pub fn is_closed(&self) -> bool {
        self.queue.receiver_gone()
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.queue.lock();
            st.sender_gone = true;
            st.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A new queue: the connection's end and the subscriber's.
pub(crate) fn queue(capacity: usize, overflow: Overflow) -> (QueueSender, Arc<Queue>) {
    let queue = Arc::new(Queue::new(capacity, overflow));
    (
        QueueSender {
            queue: queue.clone(),
        },
        queue,
    )
}

/// The connection's side of a subscription.
pub(crate) struct SubEntry {
    pub filter: Filter,
    pub tx: QueueSender,
}

impl SubEntry {
    /// Queues `event` without waiting; `false` when the subscriber is gone.
    pub fn deliver(
        &self,
        event: ConnectionEvent,
        lagged: &AtomicU64,
        coalesced: &AtomicU64,
    ) -> bool {
        self.tx.queue.push(event, lagged, coalesced)
    }
}

/// An ordered, bounded stream of events from one connection.
///
/// Created by [`Connection::subscribe`](crate::Connection::subscribe). When the subscriber
/// falls behind, the connection does not wait for it: it drops events for it and the
/// subscriber receives [`ConnectionEvent::Lagged`] with their number, at the place they were dropped
/// (with [`Overflow::CoalesceDeltas`], text deltas are merged first; see there).
/// When the connection closes, the subscription yields the events still queued, then
/// [`Error::Closed`] (with the exit status and stderr tail when the app-server exited).
///
/// Also a [`futures::Stream`] of `Result<ConnectionEvent>` that ends after the error.
pub struct Subscription {
    pub(crate) id: u64,
    pub(crate) queue: Arc<Queue>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) held: Option<ConnectionEvent>,
    pub(crate) ended: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("overflow", &self.queue.overflow)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next event, or the connection's close error once everything queued was read.
    pub async fn recv(&mut self) -> Result<ConnectionEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event (see [`Subscription::recv`]).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<ConnectionEvent>> {
        if let Some(event) = self.held.take() {
            return Poll::Ready(Ok(event));
        }
        match ready!(self.queue.poll_pop(cx)) {
            Popped::Item(Queued {
                missed_before,
                slot,
            }) => {
                let event = slot.into_event();
                if missed_before > 0 {
                    self.held = Some(event);
                    Poll::Ready(Ok(ConnectionEvent::Lagged(missed_before)))
                } else {
                    Poll::Ready(Ok(event))
                }
            }
            Popped::Lagged(missed) => Poll::Ready(Ok(ConnectionEvent::Lagged(missed))),
            Popped::Closed => Poll::Ready(Err(self.shared.closed_error())),
        }
    }

    /// Waits for the next notification, skipping other events (lag reports are skipped too;
    /// use [`Subscription::recv`] to see them).
    pub async fn next_notification(&mut self) -> Result<Arc<Notification>> {
        loop {
            if let ConnectionEvent::Notification(n) = self.recv().await? {
                return Ok(n);
            }
        }
    }

    /// How this subscription copes with bursts.
    pub fn overflow(&self) -> Overflow {
        self.queue.overflow
    }
}

impl futures::Stream for Subscription {
    type Item = Result<ConnectionEvent, Error>;

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
        {
            let mut st = self.queue.lock();
            st.receiver_gone = true;
            st.items.clear();
            st.merged_bytes = 0;
        }
        self.shared.lock().subs.remove(&self.id);
    }
}
