//! The hub's app-server side: its answers, notifications and requests, and its exit (what
//! is failed, who is told, the restart on the next request).

use super::routing::*;
use super::*;
use std::collections::{HashSet, VecDeque};

use serde_json::{Value, json};

use crate::approval::{Decision, ServerReply, ServerRequestCtx};
use crate::broker::outbox::Outgoing;
use crate::broker::{APP_SERVER_EXITED_NOTIFICATION, codes};
use crate::error::CloseReason;
use crate::jsonrpc::{JsonRpcError, Message, RequestId};
use crate::transport::{Frame, Garbage};

impl Hub {
    /// One frame from the app-server of generation `generation`.
    pub(crate) fn on_upstream_frame(&mut self, generation: u64, frame: Frame) {
        if self.upstream.as_ref().map(|u| u.generation) != Some(generation) {
            return;
        }
        match frame {
            Frame::Closed(reason) => {
                if let Some(up) = self.upstream.take() {
                    up.abort();
                }
                self.on_upstream_closed(reason);
            }
            Frame::Garbage(g) => tracing::warn!("skipping a frame from codex app-server: {g}"),
            Frame::Text(text) => match Message::parse(&text) {
                Err(reason) => {
                    tracing::warn!(
                        "skipping a frame from codex app-server: {}",
                        Garbage::new(reason, &text)
                    )
                }
                Ok(Message::Response { id, outcome }) => self.on_upstream_response(id, outcome),
                Ok(Message::Notification { method, params }) => {
                    self.on_upstream_notification(text, method, params)
                }
                Ok(Message::Request { id, method, params }) => {
                    self.on_server_request(id, method, params)
                }
            },
        }
    }

    pub(super) fn on_upstream_response(&mut self, id: Value, outcome: Result<Value, JsonRpcError>) {
        let Some(origin) = id.as_i64().and_then(|id| self.pending.remove(&id)) else {
            tracing::debug!(%id, "codex app-server answered an unknown request");
            return;
        };
        let up_id = id.as_i64().unwrap_or_default();
        match origin {
            Origin::Init => self.on_upstream_init(outcome),
            Origin::AutoResume { thread } => {
                match &outcome {
                    Ok(_) => {
                        if let Some(o) = self.owners.get_mut(&thread) {
                            o.generation = Some(self.generation);
                        }
                    }
                    Err(e) => tracing::debug!(%thread, "transparent resume failed: {}", e.message),
                }
                for d in self.deferred.remove(&thread).unwrap_or_default() {
                    if self.clients.contains_key(&d.client) {
                        self.dispatch_request(d.client, d.id, d.method, d.params);
                    }
                }
            }
            Origin::Client {
                client,
                id,
                method,
                params,
                thread,
                creating,
            } => {
                self.on_client_answer(up_id, client, id, &method, params, thread, outcome);
                if creating {
                    self.creating = self.creating.saturating_sub(1);
                    if self.creating == 0 && !self.held.is_empty() {
                        tracing::trace!(
                            count = self.held.len(),
                            "dropping notifications of unowned threads"
                        );
                        self.held.clear();
                    }
                }
            }
        }
    }

    pub(super) fn on_upstream_init(&mut self, outcome: Result<Value, JsonRpcError>) {
        match outcome {
            Ok(result) => {
                self.up_send(encode_notification("initialized", &Value::Null));
                if let Some(up) = &mut self.upstream {
                    up.ready = true;
                    up.init_deadline = None;
                }
                let user_agent = result
                    .get("userAgent")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned();
                tracing::info!(%user_agent, "codex app-server is ready");
                self.init_result = Some(result.clone());
                for (client, id) in std::mem::take(&mut self.init_waiters) {
                    self.finish_client_init(client, &id, &result);
                }
                for w in std::mem::take(&mut self.waiting) {
                    match w {
                        Waiting::Request {
                            client,
                            id,
                            method,
                            params,
                        } => self.dispatch_request(client, id, method, params),
                        Waiting::Notification { method, params, .. } => {
                            self.up_send(encode_notification(&method, &params))
                        }
                    }
                }
            }
            Err(e) => {
                let msg = format!(
                    "codex app-server refused initialize: {} ({})",
                    e.message, e.code
                );
                tracing::warn!("{msg}");
                if let Some(up) = self.upstream.take() {
                    if let Some(p) = &up.process {
                        p.kill();
                    }
                    up.abort();
                }
                self.on_upstream_closed(CloseReason::Failed {
                    message: msg,
                    source: None,
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_client_answer(
        &mut self,
        up_id: i64,
        client: ClientId,
        id: RequestId,
        method: &str,
        params: Value,
        thread: Option<String>,
        outcome: Result<Value, JsonRpcError>,
    ) {
        let connected = self.clients.contains_key(&client);
        match outcome {
            Ok(result) => {
                if let Some(thread) = &thread
                    && let Some(o) = self.owners.get_mut(thread)
                    && o.client == client
                {
                    if o.claim_req == Some(up_id) {
                        o.claim_req = None;
                    }
                    if LOADS.contains(&method) || NEEDS_LOADED.contains(&method) {
                        o.generation = Some(self.generation);
                    }
                    if method == "thread/resume" {
                        o.open_params = params.clone();
                    }
                    if RELEASES.contains(&method) {
                        self.owners.remove(thread);
                    }
                }
                if LOADS.contains(&method)
                    && let Some(opened) = result
                        .pointer("/thread/id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                {
                    if let Some(o) = self.owners.get(&opened)
                        && o.client != client
                    {
                        let owner = o.client;
                        let (msg, data) = self.owned_error(&opened, owner);
                        self.send_error(client, &id, codes::THREAD_OWNED, &msg, Some(&data));
                        return;
                    }
                    if connected {
                        let open_params = if method == "thread/fork"
                            || method == "thread/start"
                            || method == "thread/resume"
                        {
                            params
                        } else {
                            Value::Null
                        };
                        self.owners.insert(
                            opened.clone(),
                            Owner {
                                client,
                                claim_req: None,
                                generation: Some(self.generation),
                                open_params,
                            },
                        );
                        self.flush_held(&opened, client);
                    }
                }
                self.send(client, encode_result(&id, &result));
            }
            Err(e) => {
                if let Some(thread) = &thread
                    && self
                        .owners
                        .get(thread)
                        .is_some_and(|o| o.client == client && o.claim_req == Some(up_id))
                {
                    self.owners.remove(thread);
                }
                self.send(client, encode_error(Some(&id), e));
            }
        }
    }

    /// Delivers the held notifications of a thread that just got its owner, in order.
    pub(super) fn flush_held(&mut self, thread: &str, client: ClientId) {
        if self.held.is_empty() {
            return;
        }
        let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|held| held.thread == thread);
        self.held = rest;
        for held in mine {
            self.send(client, held.line);
        }
    }

    pub(super) fn on_upstream_notification(
        &mut self,
        text: String,
        method: String,
        mut params: Value,
    ) {
        let thread = notification_thread(&method, &params);
        match method.as_str() {
            "turn/started" => {
                if let (Some(thread), Some(turn)) =
                    (&thread, params.pointer("/turn/id").and_then(Value::as_str))
                {
                    self.running.insert(TurnRef::new(thread, turn));
                }
            }
            "turn/completed" => {
                if let (Some(thread), Some(turn)) =
                    (&thread, params.pointer("/turn/id").and_then(Value::as_str))
                {
                    self.running.remove(&TurnRef::new(thread, turn));
                }
            }
            "thread/started" => {
                if let Some(thread) = &thread
                    && !self.owners.contains_key(thread)
                    && let Some(parent) = parent_thread(&params)
                    && let Some(owner) = self.owners.get(&parent).map(|o| o.client)
                {
                    self.owners.insert(
                        thread.clone(),
                        Owner {
                            client: owner,
                            claim_req: None,
                            generation: Some(self.generation),
                            open_params: Value::Null,
                        },
                    );
                }
            }
            "serverRequest/resolved" => {
                let upstream_id = params
                    .get("requestId")
                    .and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
                if let Some(upstream_id) = upstream_id {
                    let target = self.answered.remove(&upstream_id).or_else(|| {
                        let found = self
                            .server_reqs
                            .iter()
                            .find(|(_, r)| r.upstream_id == upstream_id)
                            .map(|(b, r)| (r.client, *b));
                        if let Some((_, b)) = found {
                            self.server_reqs.remove(&b);
                        }
                        found
                    });
                    match target {
                        Some((client, broker_id)) => {
                            params["requestId"] = Value::from(broker_id);
                            if self.wants(client, &method) {
                                self.send(client, encode_notification(&method, &params));
                            }
                        }
                        None => tracing::trace!(%upstream_id, "resolved a request no client saw"),
                    }
                    return;
                }
            }
            _ => {}
        }
        match thread {
            Some(thread) => match self.owners.get(&thread).map(|o| o.client) {
                Some(owner) => {
                    if self.wants(owner, &method) {
                        self.send_out(owner, Outgoing::notification(text, &method, params));
                    }
                }
                None if self.creating > 0 => {
                    if self.held.len() >= MAX_HELD {
                        self.held.pop_front();
                    }
                    self.held.push_back(HeldLine { thread, line: text });
                }
                None => tracing::trace!(%thread, %method, "notification of an unowned thread"),
            },
            None => {
                let targets: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| c.state == ClientState::Ready && !c.opt_out.contains(&method))
                    .map(|(id, _)| *id)
                    .collect();
                for client in targets {
                    self.send(client, text.clone());
                }
            }
        }
    }

    /// Whether `client` is ready and did not opt out of `method`.
    pub(super) fn wants(&self, client: ClientId, method: &str) -> bool {
        self.clients
            .get(&client)
            .is_some_and(|c| c.state == ClientState::Ready && !c.opt_out.contains(method))
    }

    pub(super) fn on_server_request(&mut self, id: RequestId, method: String, params: Value) {
        let thread = server_request_thread(&method, &params);
        let owner = thread
            .as_ref()
            .and_then(|t| self.owners.get(t))
            .map(|o| o.client)
            .filter(|c| self.wants(*c, &method));
        let req = ServerReq {
            upstream_id: id,
            generation: self.generation,
            client: owner.unwrap_or_default(),
            method,
            params,
            thread,
        };
        let Some(client) = owner else {
            tracing::debug!(method = %req.method, thread = ?req.thread, "server request without a connected owner; declining");
            self.decline_upstream(req);
            return;
        };
        let broker_id = self.next_server_id;
        self.next_server_id += 1;
        let text = json!({"id": broker_id, "method": req.method, "params": req.params}).to_string();
        self.server_reqs.insert(broker_id, req);
        self.send(client, text);
    }

    /// Answers a server request with a decline (encoded for its method).
    pub(super) fn decline_upstream(&mut self, req: ServerReq) {
        if req.generation != self.generation {
            return;
        }
        let ctx = ServerRequestCtx::new(req.upstream_id.clone(), req.method, req.params);
        let outcome = ctx.encode_reply(ServerReply::Decision(Decision::Decline));
        let text = line(&Message::response(&req.upstream_id, outcome));
        self.up_send(text);
    }

    /// The app-server is gone: fail what waits for it, tell the owners of running turns.
    pub(crate) fn on_upstream_closed(&mut self, reason: CloseReason) {
        let exit = exit_info(&reason);
        tracing::warn!("codex app-server is gone: {}", exit.message);
        self.last_exit = Some(exit.message.clone());
        let data = to_value(&exit);
        let msg_for = |method: &str| {
            format!(
                "{} before answering {method}; the next request starts a new app-server",
                exit.message
            )
        };
        for (_, origin) in std::mem::take(&mut self.pending) {
            match origin {
                Origin::Client {
                    client, id, method, ..
                } => {
                    self.send_error(
                        client,
                        &id,
                        codes::APP_SERVER_EXITED,
                        &msg_for(&method),
                        Some(&data),
                    );
                }
                Origin::Init => {}
                Origin::AutoResume { thread } => {
                    for d in self.deferred.remove(&thread).unwrap_or_default() {
                        self.send_error(
                            d.client,
                            &d.id,
                            codes::APP_SERVER_EXITED,
                            &msg_for(&d.method),
                            Some(&data),
                        );
                    }
                }
            }
        }
        for (_, list) in std::mem::take(&mut self.deferred) {
            for d in list {
                self.send_error(
                    d.client,
                    &d.id,
                    codes::APP_SERVER_EXITED,
                    &msg_for(&d.method),
                    Some(&data),
                );
            }
        }
        for (client, id) in std::mem::take(&mut self.init_waiters) {
            if let Some(conn) = self.clients.get_mut(&client) {
                conn.state = ClientState::New;
            }
            self.send_error(
                client,
                &id,
                codes::APP_SERVER_EXITED,
                &msg_for("initialize"),
                Some(&data),
            );
        }
        for w in std::mem::take(&mut self.waiting) {
            if let Waiting::Request {
                client, id, method, ..
            } = w
            {
                self.send_error(
                    client,
                    &id,
                    codes::APP_SERVER_EXITED,
                    &msg_for(&method),
                    Some(&data),
                );
            }
        }
        self.owners.retain(|_, o| o.claim_req.is_none());
        self.creating = 0;
        self.held.clear();
        self.answered.clear();
        for (broker_id, req) in std::mem::take(&mut self.server_reqs) {
            let mut params = json!({"requestId": broker_id});
            if let Some(t) = &req.thread {
                params["threadId"] = Value::String(t.clone());
            }
            if self.wants(req.client, "serverRequest/resolved") {
                self.send(
                    req.client,
                    encode_notification("serverRequest/resolved", &params),
                );
            }
        }
        let mut told: HashSet<ClientId> = HashSet::new();
        for TurnRef { thread, turn } in std::mem::take(&mut self.running) {
            let Some(owner) = self.owners.get(&thread).map(|o| o.client) else {
                continue;
            };
            let mut note = exit.clone();
            note.thread_id = Some(thread);
            note.turn_id = Some(turn);
            if self.wants(owner, APP_SERVER_EXITED_NOTIFICATION) {
                told.insert(owner);
                self.send(
                    owner,
                    encode_notification(APP_SERVER_EXITED_NOTIFICATION, &to_value(&note)),
                );
            }
        }
        let others: Vec<ClientId> = self
            .clients
            .keys()
            .copied()
            .filter(|c| !told.contains(c) && self.wants(*c, APP_SERVER_EXITED_NOTIFICATION))
            .collect();
        for client in others {
            self.send(
                client,
                encode_notification(APP_SERVER_EXITED_NOTIFICATION, &data),
            );
        }
    }
}
