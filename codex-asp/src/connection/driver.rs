//! The connection's tasks: the driver (owns the reading half, routes every incoming message)
//! and the writer (owns the writing half, drains the outbound queues).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use codex_core::util::sleep_until as sleep_until_opt;
use tokio_util::sync::CancellationToken;

use super::subscription::{ConnectionEvent, SubEntry};
use super::{Outbound, Outcome, Shared};
use crate::approval::{ApprovalHandler, Decision, ServerReply, ServerRequestCtx};
use crate::error::{CloseReason, Error};
use crate::jsonrpc::{JsonRpcError, Message, RequestId};
use crate::transport::{Frame, FrameRead, FrameWrite, Garbage};

/// After a write failure, how long the reader gets to report a better reason (the process's
/// exit status) before the connection closes with the write error.
const WRITE_FAILURE_GRACE: Duration = Duration::from_millis(200);

/// Messages to the driver.
pub(crate) enum Control {
    /// One message could not be sent (too large, ...): fail its request.
    SendFailed { id: i64, error: Error },
    /// The writer failed for good.
    WriteFailed(Error),
    /// Close gracefully.
    Close { grace: Duration },
}

pub(crate) struct Parts {
    pub shared: Arc<Shared>,
    pub reader: Box<dyn FrameRead>,
    pub writer: Box<dyn FrameWrite>,
    pub out_rx: mpsc::Receiver<Outbound>,
    pub ctl_tx: mpsc::UnboundedSender<Control>,
    pub ctl_rx: mpsc::UnboundedReceiver<Control>,
    pub shutdown_rx: oneshot::Receiver<()>,
    pub handler: Arc<dyn ApprovalHandler>,
    pub label: String,
}

pub(crate) fn start(parts: Parts) {
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let (close_tx, close_rx) = oneshot::channel();
    let writer = tokio::spawn(write_loop(
        parts.writer,
        parts.out_rx,
        reply_rx,
        close_rx,
        parts.ctl_tx,
    ));
    let driver = Driver {
        _guard: CloseOnDrop {
            shared: parts.shared.clone(),
            writer: writer.abort_handle(),
            label: parts.label.clone(),
        },
        shared: parts.shared,
        reader: parts.reader,
        ctl_rx: parts.ctl_rx,
        shutdown_rx: parts.shutdown_rx,
        reply_tx,
        handler: parts.handler,
        writer,
        writer_close: Some(close_tx),
        label: parts.label,
    };
    tokio::spawn(driver.run());
}

struct Driver {
    /// Closes the connection if the driver stops without closing it (a panic, or the runtime
    /// shutting down), so that no caller waits forever.
    _guard: CloseOnDrop,
    shared: Arc<Shared>,
    reader: Box<dyn FrameRead>,
    ctl_rx: mpsc::UnboundedReceiver<Control>,
    shutdown_rx: oneshot::Receiver<()>,
    reply_tx: mpsc::UnboundedSender<String>,
    handler: Arc<dyn ApprovalHandler>,
    writer: JoinHandle<()>,
    writer_close: Option<oneshot::Sender<()>>,
    label: String,
}

/// Marks the connection closed: fails every pending request, ends every subscription and
/// resolves every unanswered server request. Does nothing when already closed.
fn close_shared(shared: &Shared, reason: CloseReason, label: &str) {
    let (pending, subs, server_requests) = {
        let mut st = shared.lock();
        if st.closed.is_some() {
            return;
        }
        st.closed = Some(reason.clone());
        (
            std::mem::take(&mut st.pending),
            std::mem::take(&mut st.subs),
            std::mem::take(&mut st.server_requests),
        )
    };
    shared.closed_tx.send_replace(Some(reason.clone()));
    tracing::debug!(
        transport = %label,
        pending = pending.len(),
        "codex app-server connection closed: {reason}"
    );
    for (_, p) in pending {
        let _ = p.tx.send(Outcome::Failed(Error::closed(reason.clone())));
    }
    drop(subs);
    for (_, (_, token)) in server_requests {
        token.cancel();
    }
}

struct CloseOnDrop {
    shared: Arc<Shared>,
    writer: tokio::task::AbortHandle,
    label: String,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.writer.abort();
        close_shared(
            &self.shared,
            CloseReason::Failed {
                message: "the connection task stopped unexpectedly".into(),
                source: None,
            },
            &self.label,
        );
    }
}

impl Driver {
    async fn run(mut self) {
        let mut write_failure: Option<(Instant, Error)> = None;
        let mut closing: Option<Instant> = None;
        let mut ctl_open = true;
        let reason = loop {
            let write_deadline = write_failure.as_ref().map(|(at, _)| *at);
            tokio::select! {
                biased;
                ctl = self.ctl_rx.recv(), if ctl_open => match ctl {
                    Some(Control::SendFailed { id, error }) => self.fail_pending(id, error),
                    Some(Control::WriteFailed(error)) => {
                        tracing::debug!(transport = %self.label, "writing failed: {}", codex_core::ErrorChain(&error));
                        if write_failure.is_none() {
                            write_failure = Some((Instant::now() + WRITE_FAILURE_GRACE, error));
                        }
                    }
                    Some(Control::Close { grace }) => {
                        if let Some(tx) = self.writer_close.take() {
                            let _ = tx.send(());
                        }
                        let at = codex_core::util::deadline(grace);
                        closing = Some(closing.map_or(at, |c| c.min(at)));
                    }
                    None => ctl_open = false,
                },
                _ = &mut self.shutdown_rx => break CloseReason::ClientClosed,
                frame = self.reader.recv() => match frame {
                    Frame::Text(text) => self.on_text(&text),
                    Frame::Garbage(garbage) => self.on_garbage(garbage),
                    Frame::Closed(reason) => break reason,
                },
                () = sleep_until_opt(write_deadline), if write_deadline.is_some() => {
                    let reason = match write_failure.take() {
                        Some((_, error)) => CloseReason::failed("writing to the app-server failed", error),
                        None => CloseReason::ClientClosed,
                    };
                    break reason;
                }
                () = sleep_until_opt(closing), if closing.is_some() => break CloseReason::ClientClosed,
            }
        };
        self.finish(reason);
    }

    fn finish(self, reason: CloseReason) {
        close_shared(&self.shared, reason, &self.label);
        self.writer.abort();
        // dropping the reader kills an app-server the transport launched
        drop(self.reader);
    }

    fn fail_pending(&self, id: i64, error: Error) {
        let entry = self.shared.lock().pending.remove(&id);
        if let Some(p) = entry {
            let _ = p.tx.send(Outcome::Failed(error));
        }
    }

    fn on_text(&mut self, text: &str) {
        match Message::parse(text) {
            Err(reason) => self.on_garbage(Garbage::new(reason, text)),
            Ok(Message::Response { id, outcome }) => self.on_response(id, outcome),
            Ok(Message::Notification { method, params }) => self.on_notification(method, params),
            Ok(Message::Request { id, method, params }) => {
                self.on_server_request(id, method, params)
            }
        }
    }

    fn on_garbage(&self, garbage: Garbage) {
        tracing::warn!(transport = %self.label, "skipping a frame from codex app-server: {garbage}");
        self.shared.counters.garbage.fetch_add(1, Ordering::Relaxed);
        self.dispatch(ConnectionEvent::Garbage(Arc::new(garbage)));
    }

    fn on_response(&self, id: serde_json::Value, outcome: Result<serde_json::Value, JsonRpcError>) {
        let entry = id
            .as_i64()
            .and_then(|id| self.shared.lock().pending.remove(&id));
        let Some(pending) = entry else {
            self.shared
                .counters
                .unmatched
                .fetch_add(1, Ordering::Relaxed);
            match &outcome {
                Err(e) if id.is_null() => tracing::warn!(
                    transport = %self.label,
                    code = e.code,
                    "codex app-server reported an error without a request id: {}", e.message
                ),
                _ => tracing::debug!(%id, "answer to a forgotten request"),
            }
            return;
        };
        let outcome = match outcome {
            Ok(value) => {
                let mut subscribed = false;
                if let Some((filter_for, parts)) = pending.subscribe
                    && let Some(filter) = call_filter(filter_for, &value)
                {
                    let mut st = self.shared.lock();
                    if !parts.tx.is_closed() {
                        st.subs.insert(
                            parts.id,
                            SubEntry {
                                filter,
                                tx: parts.tx,
                            },
                        );
                        subscribed = true;
                    }
                }
                Outcome::Ok { value, subscribed }
            }
            Err(e) => Outcome::Rpc(e),
        };
        let _ = pending.tx.send(outcome);
    }

    fn on_notification(&self, method: String, params: serde_json::Value) {
        self.shared
            .counters
            .notifications
            .fetch_add(1, Ordering::Relaxed);
        tracing::trace!(%method, "notification");
        if method == "serverRequest/resolved"
            && let Some(id) = params
                .get("requestId")
                .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok())
        {
            let entry = self.shared.lock().server_requests.remove(&id);
            if let Some((_, token)) = entry {
                token.cancel();
            }
        }
        let notification = super::Notification::new(method, params);
        self.dispatch(ConnectionEvent::Notification(Arc::new(notification)));
    }

    fn on_server_request(&self, id: RequestId, method: String, params: serde_json::Value) {
        tracing::debug!(%id, %method, "server request");
        let token = CancellationToken::new();
        let seq = {
            let mut st = self.shared.lock();
            let seq = st.next_server_seq;
            st.next_server_seq += 1;
            if let Some((_, old)) = st.server_requests.insert(id.clone(), (seq, token.clone())) {
                tracing::warn!(%id, "codex reused the id of an unanswered server request");
                old.cancel();
            }
            seq
        };
        let ctx = ServerRequestCtx::with_token(id, method, params, token);
        self.dispatch(ConnectionEvent::ServerRequest(Arc::new(ctx.clone())));
        let responder = Responder {
            shared: self.shared.clone(),
            reply_tx: self.reply_tx.clone(),
            ctx: ctx.clone(),
            seq,
            done: false,
        };
        let handler = self.handler.clone();
        tokio::spawn(async move {
            let reply = handler.handle(ctx).await;
            responder.send(reply);
        });
    }

    /// Delivers an event to every matching subscriber, without waiting for any.
    fn dispatch(&self, event: ConnectionEvent) {
        let lagged = &self.shared.counters.lagged;
        let coalesced = &self.shared.counters.coalesced;
        let mut st = self.shared.lock();
        st.subs.retain(|_, sub| {
            if !sub.filter.matches(&event) {
                return true;
            }
            sub.deliver(event.clone(), lagged, coalesced)
        });
    }
}

/// Runs a caller's filter function, treating a panic as "no subscription".
fn call_filter(filter_for: super::FilterFn, value: &serde_json::Value) -> Option<super::Filter> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| filter_for(value))) {
        Ok(filter) => filter,
        Err(_) => {
            tracing::warn!("the subscription filter panicked; not subscribing");
            None
        }
    }
}

/// Sends the answer to one server request, exactly once: dropping it unsent (a handler that
/// panicked, a task that was cancelled) declines the request.
struct Responder {
    shared: Arc<Shared>,
    reply_tx: mpsc::UnboundedSender<String>,
    ctx: ServerRequestCtx,
    seq: u64,
    done: bool,
}

impl Responder {
    fn send(mut self, reply: ServerReply) {
        self.done = true;
        self.deliver(reply);
    }

    fn deliver(&self, reply: ServerReply) {
        let id = self.ctx.id();
        {
            let mut st = self.shared.lock();
            if st.closed.is_some() {
                return;
            }
            match st.server_requests.get(id) {
                Some((seq, _)) if *seq == self.seq => {
                    st.server_requests.remove(id);
                }
                _ => {
                    tracing::debug!(%id, "server request already resolved; not answering");
                    return;
                }
            }
        }
        let text = Message::response(id, self.ctx.encode_reply(reply)).encode();
        match text {
            Ok(text) => {
                tracing::debug!(%id, method = self.ctx.method(), "answering server request");
                let _ = self.reply_tx.send(text);
            }
            Err(e) => tracing::warn!(%id, "could not encode the answer to a server request: {e}"),
        }
        self.ctx.mark_resolved();
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!(
                id = %self.ctx.id(),
                method = self.ctx.method(),
                "approval handler gave no answer; declining"
            );
            self.deliver(ServerReply::Decision(Decision::Decline));
        }
    }
}

async fn write_loop(
    mut writer: Box<dyn FrameWrite>,
    mut out_rx: mpsc::Receiver<Outbound>,
    mut reply_rx: mpsc::UnboundedReceiver<String>,
    mut close_rx: oneshot::Receiver<()>,
    ctl: mpsc::UnboundedSender<Control>,
) {
    loop {
        let (text, id) = tokio::select! {
            biased;
            Some(text) = reply_rx.recv() => (text, None),
            Some(out) = out_rx.recv() => (out.text, out.id),
            _ = &mut close_rx => break,
            else => break,
        };
        match writer.send(text).await {
            Ok(()) => {}
            Err(error @ (Error::MessageTooLarge { .. } | Error::Protocol { .. })) => match id {
                Some(id) => {
                    let _ = ctl.send(Control::SendFailed { id, error });
                }
                None => tracing::warn!("could not send an answer to codex: {error}"),
            },
            Err(error) => {
                let _ = ctl.send(Control::WriteFailed(error));
                return;
            }
        }
    }
    if let Err(e) = writer.close().await {
        tracing::debug!(
            "closing the app-server's input: {}",
            codex_core::ErrorChain(&e)
        );
    }
}
