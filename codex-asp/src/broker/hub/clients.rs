//! The hub's client side: connections, their requests, notifications and answers, thread
//! ownership and the forwarding of requests to the app-server.

use super::routing::*;
use super::*;
use std::collections::HashSet;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::broker::outbox::Outgoing;
use crate::broker::{SHUTDOWN_METHOD, STATUS_METHOD, codes};
use crate::jsonrpc::{
    ALREADY_INITIALIZED_MESSAGE, JsonRpcError, Message, NOT_INITIALIZED_MESSAGE, RequestId,
    error_codes,
};
use crate::transport::{Frame, Garbage, GarbageReason};

impl Hub {
    /// A new client connection.
    pub(crate) fn add_client(
        &mut self,
        id: ClientId,
        tx: mpsc::Sender<Outgoing>,
        pid: Option<i32>,
    ) {
        tracing::debug!(client = id, ?pid, "client connected");
        self.clients.insert(
            id,
            ClientConn {
                tx,
                pid,
                connected: Instant::now(),
                name: None,
                state: ClientState::New,
                opt_out: HashSet::new(),
            },
        );
    }

    /// Clients whose queue overflowed since the last call (the caller drops them).
    pub(crate) fn take_overflowed(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.overflowed)
    }

    /// Queues `text` for `client`.
    pub(super) fn send(&mut self, client: ClientId, text: impl Into<Option<String>>) {
        if let Some(text) = text.into() {
            self.send_out(client, Outgoing::Line(text));
        }
    }

    /// Queues `out` for `client`.
    pub(super) fn send_out(&mut self, client: ClientId, out: Outgoing) {
        let Some(conn) = self.clients.get(&client) else {
            return;
        };
        match conn.tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    client,
                    queue = self.cfg.client_queue,
                    "client does not read fast enough; disconnecting it"
                );
                self.overflowed.push(client);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub(super) fn send_error(
        &mut self,
        client: ClientId,
        id: &RequestId,
        code: i64,
        msg: &str,
        data: Option<&Value>,
    ) {
        let mut error = JsonRpcError::new(code, msg);
        error.data = data.cloned();
        self.send(client, encode_error(Some(id), error));
    }

    /// A client went away: release its threads, decline its approvals, forget its requests.
    pub(crate) fn remove_client(&mut self, client: ClientId) {
        if self.clients.remove(&client).is_none() {
            return;
        }
        tracing::debug!(client, "client disconnected");
        let released: Vec<String> = self
            .owners
            .iter()
            .filter(|(_, o)| o.client == client)
            .map(|(t, _)| t.clone())
            .collect();
        for thread in &released {
            self.owners.remove(thread);
        }
        if !released.is_empty() {
            tracing::debug!(client, threads = released.len(), "released threads");
        }
        let mine: Vec<i64> = self
            .server_reqs
            .iter()
            .filter(|(_, r)| r.client == client)
            .map(|(id, _)| *id)
            .collect();
        for id in mine {
            if let Some(req) = self.server_reqs.remove(&id) {
                self.decline_upstream(req);
            }
        }
        self.answered.retain(|_, (c, _)| *c != client);
        self.init_waiters.retain(|(c, _)| *c != client);
        self.waiting.retain(|w| w.client() != client);
        for list in self.deferred.values_mut() {
            list.retain(|d| d.client != client);
        }
    }

    /// One frame from a client.
    pub(crate) fn on_client_frame(&mut self, client: ClientId, frame: Frame) {
        match frame {
            Frame::Closed(_) => self.remove_client(client),
            Frame::Garbage(garbage) => self.reply_garbage(client, &garbage),
            Frame::Text(text) => match Message::parse(&text) {
                Err(reason) => {
                    let garbage = Garbage::new(reason, &text);
                    match &garbage.reason {
                        GarbageReason::NotJsonRpc => {
                            let id = salvage_id(&text);
                            let msg = format!("Invalid request: {garbage}");
                            self.send(
                                client,
                                encode_error(
                                    id.as_ref(),
                                    JsonRpcError::new(error_codes::INVALID_REQUEST, msg),
                                ),
                            );
                        }
                        _ => self.reply_garbage(client, &garbage),
                    }
                }
                Ok(Message::Request { id, method, params }) => {
                    self.on_client_request(client, id, method, params)
                }
                Ok(Message::Notification { method, params }) => {
                    self.on_client_notification(client, method, params)
                }
                Ok(Message::Response { id, outcome }) => {
                    self.on_client_response(client, id, outcome)
                }
            },
        }
    }

    pub(super) fn reply_garbage(&mut self, client: ClientId, garbage: &Garbage) {
        tracing::debug!(client, "garbage from a client: {garbage}");
        let msg = format!("Parse error: {garbage}");
        self.send(
            client,
            encode_error(None, JsonRpcError::new(error_codes::PARSE_ERROR, msg)),
        );
    }

    pub(super) fn on_client_request(
        &mut self,
        client: ClientId,
        id: RequestId,
        method: String,
        params: Value,
    ) {
        match method.as_str() {
            STATUS_METHOD => {
                let status = to_value(&self.status());
                self.send(client, encode_result(&id, &status));
                return;
            }
            SHUTDOWN_METHOD => {
                tracing::info!(client, "broker/shutdown requested");
                self.send(client, encode_result(&id, &json!({"ok": true})));
                self.shutdown_requested = true;
                return;
            }
            _ => {}
        }
        if self.shutdown_requested {
            self.send_error(
                client,
                &id,
                codes::SHUTTING_DOWN,
                "the codex-broker is shutting down",
                None,
            );
            return;
        }
        let state = match self.clients.get(&client) {
            Some(c) => c.state,
            None => return,
        };
        if method == "initialize" {
            if state != ClientState::New {
                self.send_error(
                    client,
                    &id,
                    error_codes::INVALID_REQUEST,
                    ALREADY_INITIALIZED_MESSAGE,
                    None,
                );
                return;
            }
            self.on_client_initialize(client, id, &params);
            return;
        }
        if state != ClientState::Ready {
            self.send_error(
                client,
                &id,
                error_codes::INVALID_REQUEST,
                NOT_INITIALIZED_MESSAGE,
                None,
            );
            return;
        }
        if !self.upstream_ready() {
            self.waiting.push_back(Waiting::Request {
                client,
                id,
                method,
                params,
            });
            self.ensure_starting();
            return;
        }
        self.dispatch_request(client, id, method, params);
    }

    pub(super) fn on_client_initialize(&mut self, client: ClientId, id: RequestId, params: &Value) {
        if let Some(conn) = self.clients.get_mut(&client) {
            conn.name = params
                .pointer("/clientInfo/name")
                .and_then(Value::as_str)
                .map(str::to_owned);
            conn.opt_out = params
                .pointer("/capabilities/optOutNotificationMethods")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            conn.state = ClientState::Initializing;
        }
        if let Some(result) = self.init_result.clone() {
            self.finish_client_init(client, &id, &result);
        } else {
            self.init_waiters.push((client, id));
            self.ensure_starting();
        }
    }

    pub(super) fn finish_client_init(&mut self, client: ClientId, id: &RequestId, result: &Value) {
        if let Some(conn) = self.clients.get_mut(&client) {
            conn.state = ClientState::Ready;
        }
        self.send(client, encode_result(id, result));
    }

    /// Starts the app-server if needed; if it cannot start, fails whoever waits for it.
    pub(super) fn ensure_starting(&mut self) {
        if self.upstream.is_some() {
            return;
        }
        if let Err(msg) = self.start_upstream() {
            let data = json!({"reason": "appServerUnavailable", "message": msg});
            for (client, id) in std::mem::take(&mut self.init_waiters) {
                if let Some(conn) = self.clients.get_mut(&client) {
                    conn.state = ClientState::New;
                }
                self.send_error(
                    client,
                    &id,
                    codes::APP_SERVER_UNAVAILABLE,
                    &msg,
                    Some(&data),
                );
            }
            for w in std::mem::take(&mut self.waiting) {
                if let Waiting::Request { client, id, .. } = w {
                    self.send_error(
                        client,
                        &id,
                        codes::APP_SERVER_UNAVAILABLE,
                        &msg,
                        Some(&data),
                    );
                }
            }
        }
    }

    pub(super) fn on_client_notification(
        &mut self,
        client: ClientId,
        method: String,
        params: Value,
    ) {
        let Some(conn) = self.clients.get(&client) else {
            return;
        };
        if method == "initialized" || conn.state != ClientState::Ready {
            return;
        }
        if self.upstream_ready() {
            self.up_send(encode_notification(&method, &params));
        } else {
            self.waiting.push_back(Waiting::Notification {
                client,
                method,
                params,
            });
            self.ensure_starting();
        }
    }

    pub(super) fn on_client_response(
        &mut self,
        client: ClientId,
        id: Value,
        outcome: Result<Value, JsonRpcError>,
    ) {
        let Some(broker_id) = id.as_i64() else {
            tracing::debug!(client, %id, "answer with an id the broker never sent");
            return;
        };
        let belongs = self
            .server_reqs
            .get(&broker_id)
            .is_some_and(|r| r.client == client);
        if !belongs {
            tracing::debug!(
                client,
                broker_id,
                "answer to an unknown or resolved server request"
            );
            return;
        }
        let Some(req) = self.server_reqs.remove(&broker_id) else {
            return;
        };
        if req.generation != self.generation {
            return;
        }
        let text = match outcome {
            Ok(result) => encode_result(&req.upstream_id, &result),
            Err(e) => encode_error(Some(&req.upstream_id), e),
        };
        self.answered
            .insert(req.upstream_id.clone(), (client, broker_id));
        self.up_send(text);
    }

    /// Routes a client's request to the app-server (which is ready).
    pub(super) fn dispatch_request(
        &mut self,
        client: ClientId,
        id: RequestId,
        method: String,
        params: Value,
    ) {
        let thread = param_thread(&params);
        if let Some(thread) = &thread {
            if let Some(list) = self.deferred.get_mut(thread) {
                // a transparent resume of this thread is in flight: keep the order
                list.push(Deferred {
                    client,
                    id,
                    method,
                    params,
                });
                return;
            }
            if !READ_ONLY.contains(&method.as_str()) {
                if let Some(owner) = self.owners.get(thread)
                    && owner.client != client
                {
                    let (msg, data) = self.owned_error(thread, owner.client);
                    self.send_error(client, &id, codes::THREAD_OWNED, &msg, Some(&data));
                    return;
                }
                let stale = self.owners.get(thread).is_some_and(|o| {
                    o.generation.is_some_and(|g| g != self.generation) && o.claim_req.is_none()
                });
                if stale && NEEDS_LOADED.contains(&method.as_str()) {
                    self.auto_resume(
                        thread.clone(),
                        Deferred {
                            client,
                            id,
                            method,
                            params,
                        },
                    );
                    return;
                }
            }
        }
        self.forward(client, id, method, params, thread);
    }

    pub(super) fn forward(
        &mut self,
        client: ClientId,
        id: RequestId,
        method: String,
        params: Value,
        thread: Option<String>,
    ) {
        let up_id = self.next_id();
        let Some(text) = encode_request(up_id, &method, &params) else {
            self.send_error(
                client,
                &id,
                error_codes::INTERNAL_ERROR,
                "could not encode the request",
                None,
            );
            return;
        };
        let creating = matches!(method.as_str(), "thread/start" | "thread/fork");
        if creating {
            self.creating += 1;
        }
        if let Some(thread) = &thread
            && !READ_ONLY.contains(&method.as_str())
            && !self.owners.contains_key(thread)
        {
            // claim it now, so that its notifications reach this client at once
            self.owners.insert(
                thread.clone(),
                Owner {
                    client,
                    claim_req: Some(up_id),
                    generation: None,
                    open_params: if method == "thread/resume" {
                        params.clone()
                    } else {
                        Value::Null
                    },
                },
            );
        }
        self.pending.insert(
            up_id,
            Origin::Client {
                client,
                id,
                method,
                params,
                thread,
                creating,
            },
        );
        self.up_send(text);
    }

    pub(super) fn auto_resume(&mut self, thread: String, first: Deferred) {
        let open = self
            .owners
            .get(&thread)
            .map(|o| o.open_params.clone())
            .unwrap_or(Value::Null);
        let params = resume_params(&thread, &open);
        let up_id = self.next_id();
        let Some(text) = encode_request(up_id, "thread/resume", &params) else {
            self.forward(
                first.client,
                first.id,
                first.method,
                first.params,
                Some(thread),
            );
            return;
        };
        tracing::debug!(%thread, "resuming a thread after an app-server restart");
        self.deferred.insert(thread.clone(), vec![first]);
        self.pending.insert(up_id, Origin::AutoResume { thread });
        self.up_send(text);
    }

    pub(super) fn owned_error(&self, thread: &str, owner: ClientId) -> (String, Value) {
        let conn = self.clients.get(&owner);
        let name = conn.and_then(|c| c.name.clone());
        let pid = conn.and_then(|c| c.pid);
        let who = match (&name, pid) {
            (Some(n), Some(p)) => format!("client #{owner} \"{n}\", pid {p}"),
            (Some(n), None) => format!("client #{owner} \"{n}\""),
            (None, Some(p)) => format!("client #{owner}, pid {p}"),
            (None, None) => format!("client #{owner}"),
        };
        let msg = format!(
            "thread {thread} is owned by another client of this codex-broker ({who}): only one \
             client may write a thread at a time; wait until that client disconnects, or fork \
             the thread (thread/fork)"
        );
        let data = json!({
            "reason": codes::THREAD_OWNED_REASON,
            "threadId": thread,
            "owner": {"client": owner, "name": name, "pid": pid},
        });
        (msg, data)
    }
}
