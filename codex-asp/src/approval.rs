//! Server-to-client requests: approvals, user input, MCP elicitations.
//!
//! codex asks its client before running a command (`item/commandExecution/requestApproval`),
//! applying a patch (`item/fileChange/requestApproval`), widening permissions
//! (`item/permissions/requestApproval`), and for user input (`item/tool/requestUserInput`) and
//! MCP elicitations (`mcpServer/elicitation/request`). These requests carry ids from the
//! server's own counter (from 0, overlapping the client's ids). Every one must be answered,
//! or the turn waits forever.
//!
//! A [`Connection`](crate::Connection) hands each request to its [`ApprovalHandler`]
//! ([`ConnectionOptions::approval_handler`](crate::ConnectionOptions)); the handler returns
//! a [`ServerReply`], usually a [`Decision`], which is encoded for the request's method:
//!
//! | decision | command | file change | permissions | elicitation | user input |
//! | --- | --- | --- | --- | --- | --- |
//! | [`Decision::Accept`] | `"accept"` | `"accept"` | grant the request, turn | `accept` | no answers |
//! | [`Decision::AcceptForSession`] | `"acceptForSession"` | `"acceptForSession"` | grant, session | `accept` | no answers |
//! | [`Decision::AcceptWithExecpolicyAmendment`] | `{"acceptWithExecpolicyAmendment":..}` | `"accept"` | grant, turn | `accept` | no answers |
//! | [`Decision::Decline`] | `"decline"` (turn goes on) | `"decline"` | grant nothing | `decline` | no answers |
//! | [`Decision::Cancel`] | `"cancel"` (turn interrupted) | `"cancel"` | grant nothing | `cancel` | no answers |
//!
//! The legacy `execCommandApproval` / `applyPatchApproval` get `approved`,
//! `approved_for_session`, `denied`, `abort`; `item/tool/call` (dynamic tools) gets an
//! unsuccessful tool result. Any other request gets a JSON-RPC error (-32601) unless the
//! handler answers with [`ServerReply::Result`].
//!
//! The default handler, [`DeclineAll`], declines everything. [`ChannelHandler`] hands requests
//! to the caller as [`PendingServerRequest`]s: one that is dropped unanswered is declined,
//! never left hanging. [`ServiceHandler`] makes any `tower::Service<ServerRequestCtx>` a
//! handler.
//!
//! ```
//! use codex_asp::approval::{ApprovalHandler, Decision, ServerReply, ServerRequestCtx, ServerRequestKind};
//!
//! /// Accepts commands starting with `ls`, declines everything else.
//! struct OnlyLs;
//!
//! #[async_trait::async_trait]
//! impl ApprovalHandler for OnlyLs {
//!     async fn handle(&self, request: ServerRequestCtx) -> ServerReply {
//!         let command = request.params()["command"].as_str().unwrap_or_default();
//!         if request.kind() == ServerRequestKind::CommandExecution && command.contains("'ls") {
//!             Decision::Accept.into()
//!         } else {
//!             Decision::Decline.into()
//!         }
//!     }
//! }
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::jsonrpc::{JsonRpcError, RequestId, error_codes};
use crate::protocol::{
    CommandExecutionApprovalDecision, CommandExecutionRequestApprovalResponse,
    FileChangeApprovalDecision, FileChangeRequestApprovalResponse,
    McpServerElicitationRequestResponse, PermissionGrantScope, PermissionProfile,
    PermissionsRequestApprovalResponse, ServerRequest, ToolRequestUserInputResponse,
};

/// What a server request is about, from its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerRequestKind {
    /// `item/commandExecution/requestApproval`.
    CommandExecution,
    /// `item/fileChange/requestApproval`.
    FileChange,
    /// `item/permissions/requestApproval`.
    Permissions,
    /// `item/tool/requestUserInput`.
    UserInput,
    /// `mcpServer/elicitation/request`.
    McpElicitation,
    /// `item/tool/call` (a dynamic tool the client would run).
    DynamicToolCall,
    /// `execCommandApproval` (legacy API).
    LegacyExecCommand,
    /// `applyPatchApproval` (legacy API).
    LegacyApplyPatch,
    /// Anything else (`account/chatgptAuthTokens/refresh`, `attestation/generate`, ...).
    Other,
}

impl ServerRequestKind {
    /// The kind of a method.
    pub fn from_method(method: &str) -> Self {
        match method {
            "item/commandExecution/requestApproval" => Self::CommandExecution,
            "item/fileChange/requestApproval" => Self::FileChange,
            "item/permissions/requestApproval" => Self::Permissions,
            "item/tool/requestUserInput" => Self::UserInput,
            "mcpServer/elicitation/request" => Self::McpElicitation,
            "item/tool/call" => Self::DynamicToolCall,
            "execCommandApproval" => Self::LegacyExecCommand,
            "applyPatchApproval" => Self::LegacyApplyPatch,
            _ => Self::Other,
        }
    }

    /// Whether a [`Decision`] can answer this kind of request.
    pub fn takes_decision(self) -> bool {
        self != Self::Other
    }
}

/// A decision on an approval (see the module docs for how each kind encodes it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Allow it, once.
    Accept,
    /// Allow it, and similar requests for the rest of the session.
    AcceptForSession,
    /// Refuse it; the turn goes on (the model is told).
    Decline,
    /// Refuse it and interrupt the turn.
    Cancel,
    /// Allow the command and add this command prefix to the exec policy (commands only;
    /// other kinds treat it as [`Decision::Accept`]).
    AcceptWithExecpolicyAmendment(Vec<String>),
}

/// A handler's answer to a server request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerReply {
    /// A decision, encoded for the request's method.
    Decision(Decision),
    /// This exact `result` object (for answers a decision cannot express: user-input
    /// answers, elicitation content, dynamic tool output, ...).
    Result(Value),
    /// A JSON-RPC error.
    Error(JsonRpcError),
}

impl From<Decision> for ServerReply {
    fn from(decision: Decision) -> Self {
        ServerReply::Decision(decision)
    }
}

/// One server-to-client request, as given to an [`ApprovalHandler`].
#[derive(Clone)]
pub struct ServerRequestCtx {
    id: RequestId,
    method: String,
    params: Value,
    request: Arc<ServerRequest>,
    resolved: CancellationToken,
}

impl fmt::Debug for ServerRequestCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerRequestCtx")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("params", &self.params)
            .field("resolved", &self.resolved.is_cancelled())
            .finish()
    }
}

impl ServerRequestCtx {
    /// A request with a fresh "resolved" signal (for handler tests; the connection builds
    /// these itself).
    pub fn new(id: RequestId, method: impl Into<String>, params: Value) -> Self {
        Self::with_token(id, method.into(), params, CancellationToken::new())
    }

    pub(crate) fn with_token(
        id: RequestId,
        method: String,
        params: Value,
        resolved: CancellationToken,
    ) -> Self {
        let request = ServerRequest::from_parts(&method, params.clone());
        ServerRequestCtx {
            id,
            method,
            params,
            request: Arc::new(request),
            resolved,
        }
    }

    /// The server's id for this request.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// The JSON-RPC method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The params as received.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// The typed request.
    pub fn request(&self) -> &ServerRequest {
        &self.request
    }

    /// What the request is about.
    pub fn kind(&self) -> ServerRequestKind {
        ServerRequestKind::from_method(&self.method)
    }

    /// The thread it belongs to.
    pub fn thread_id(&self) -> Option<&str> {
        self.request.thread_id()
    }

    /// The turn it belongs to.
    pub fn turn_id(&self) -> Option<&str> {
        self.request.turn_id()
    }

    /// The item it is about.
    pub fn item_id(&self) -> Option<&str> {
        self.request.item_id()
    }

    /// Whether the request no longer needs an answer: the server resolved it
    /// (`serverRequest/resolved`, e.g. the turn was interrupted), or the connection closed.
    pub fn is_resolved(&self) -> bool {
        self.resolved.is_cancelled()
    }

    /// Waits until the request no longer needs an answer (see [`Self::is_resolved`]); a UI
    /// can race this against the user to dismiss its prompt.
    pub async fn resolved(&self) {
        self.resolved.cancelled().await
    }

    /// Marks the request as no longer needing an answer.
    pub(crate) fn mark_resolved(&self) {
        self.resolved.cancel();
    }

    /// The `result` (or JSON-RPC error) this reply encodes to, for this request.
    pub(crate) fn encode_reply(&self, reply: ServerReply) -> Result<Value, JsonRpcError> {
        match reply {
            ServerReply::Result(value) => Ok(value),
            ServerReply::Error(error) => Err(error),
            ServerReply::Decision(decision) => self.encode_decision(decision),
        }
    }

    fn encode_decision(&self, decision: Decision) -> Result<Value, JsonRpcError> {
        let to_value = |r: serde_json::Result<Value>| {
            r.map_err(|e| {
                JsonRpcError::new(
                    error_codes::INTERNAL_ERROR,
                    format!("could not encode the answer: {e}"),
                )
            })
        };
        match self.kind() {
            ServerRequestKind::CommandExecution => {
                let decision = match decision {
                    Decision::Accept => CommandExecutionApprovalDecision::Accept,
                    Decision::AcceptForSession => {
                        CommandExecutionApprovalDecision::AcceptForSession
                    }
                    Decision::Decline => CommandExecutionApprovalDecision::Decline,
                    Decision::Cancel => CommandExecutionApprovalDecision::Cancel,
                    Decision::AcceptWithExecpolicyAmendment(prefix) => {
                        CommandExecutionApprovalDecision::AcceptWithExecpolicyAmendment {
                            execpolicy_amendment: prefix,
                        }
                    }
                };
                to_value(serde_json::to_value(
                    CommandExecutionRequestApprovalResponse::new(decision),
                ))
            }
            ServerRequestKind::FileChange => {
                let decision = match decision {
                    Decision::Accept | Decision::AcceptWithExecpolicyAmendment(_) => {
                        FileChangeApprovalDecision::Accept
                    }
                    Decision::AcceptForSession => FileChangeApprovalDecision::AcceptForSession,
                    Decision::Decline => FileChangeApprovalDecision::Decline,
                    Decision::Cancel => FileChangeApprovalDecision::Cancel,
                };
                to_value(serde_json::to_value(
                    FileChangeRequestApprovalResponse::new(decision),
                ))
            }
            ServerRequestKind::Permissions => {
                let requested = || match &*self.request {
                    ServerRequest::PermissionsApproval(p) => p.permissions.clone(),
                    _ => self
                        .params
                        .get("permissions")
                        .and_then(|p| serde_json::from_value::<PermissionProfile>(p.clone()).ok())
                        .unwrap_or_default(),
                };
                let response = match decision {
                    Decision::Accept | Decision::AcceptWithExecpolicyAmendment(_) => {
                        PermissionsRequestApprovalResponse::grant(
                            requested(),
                            PermissionGrantScope::Turn,
                        )
                    }
                    Decision::AcceptForSession => PermissionsRequestApprovalResponse::grant(
                        requested(),
                        PermissionGrantScope::Session,
                    ),
                    Decision::Decline | Decision::Cancel => {
                        PermissionsRequestApprovalResponse::deny()
                    }
                };
                to_value(serde_json::to_value(response))
            }
            ServerRequestKind::UserInput => {
                to_value(serde_json::to_value(ToolRequestUserInputResponse::default()))
            }
            ServerRequestKind::McpElicitation => {
                let response = match decision {
                    Decision::Accept
                    | Decision::AcceptForSession
                    | Decision::AcceptWithExecpolicyAmendment(_) => {
                        McpServerElicitationRequestResponse::accept(None)
                    }
                    Decision::Decline => McpServerElicitationRequestResponse::decline(),
                    Decision::Cancel => McpServerElicitationRequestResponse::cancel(),
                };
                to_value(serde_json::to_value(response))
            }
            ServerRequestKind::LegacyExecCommand | ServerRequestKind::LegacyApplyPatch => {
                let decision = match decision {
                    Decision::Accept => json!("approved"),
                    Decision::AcceptForSession => json!("approved_for_session"),
                    Decision::Decline => json!("denied"),
                    Decision::Cancel => json!("abort"),
                    Decision::AcceptWithExecpolicyAmendment(prefix) => json!({
                        "approved_execpolicy_amendment": {"proposed_execpolicy_amendment": prefix}
                    }),
                };
                Ok(json!({ "decision": decision }))
            }
            ServerRequestKind::DynamicToolCall => Ok(json!({
                "contentItems": [{"type": "inputText", "text": "the client does not run this tool"}],
                "success": false,
            })),
            ServerRequestKind::Other => Err(JsonRpcError::new(
                error_codes::METHOD_NOT_FOUND,
                format!(
                    "this client does not handle the server request `{}`",
                    self.method
                ),
            )),
        }
    }
}

/// Decides server-to-client requests.
///
/// Called on its own task for every request; take as long as needed (a human may be asked).
/// If the handler panics, or the connection drops its task, the request is declined.
#[async_trait]
pub trait ApprovalHandler: Send + Sync + 'static {
    /// The answer to `request`.
    async fn handle(&self, request: ServerRequestCtx) -> ServerReply;
}

/// The default handler: declines every approval (and answers requests that take no decision
/// with a JSON-RPC error).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeclineAll;

#[async_trait]
impl ApprovalHandler for DeclineAll {
    async fn handle(&self, _request: ServerRequestCtx) -> ServerReply {
        Decision::Decline.into()
    }
}

/// Answers every request with the same decision (for tests and fully automatic runs).
#[derive(Debug, Clone)]
pub struct AlwaysDecide(pub Decision);

#[async_trait]
impl ApprovalHandler for AlwaysDecide {
    async fn handle(&self, _request: ServerRequestCtx) -> ServerReply {
        self.0.clone().into()
    }
}

/// Makes a `tower::Service<ServerRequestCtx, Response = ServerReply>` an approval handler;
/// a service error declines the request.
///
/// ```
/// use codex_asp::approval::{Decision, ServerReply, ServerRequestCtx, ServiceHandler};
/// let handler = ServiceHandler::new(tower::service_fn(|req: ServerRequestCtx| async move {
///     Ok::<_, std::convert::Infallible>(ServerReply::from(if req.method().contains("fileChange") {
///         Decision::Accept
///     } else {
///         Decision::Decline
///     }))
/// }));
/// # let _ = handler;
/// ```
#[derive(Debug, Clone)]
pub struct ServiceHandler<S> {
    service: S,
}

impl<S> ServiceHandler<S> {
    /// Wraps `service`.
    pub fn new(service: S) -> Self {
        ServiceHandler { service }
    }
}

#[async_trait]
impl<S> ApprovalHandler for ServiceHandler<S>
where
    S: tower::Service<ServerRequestCtx, Response = ServerReply> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: fmt::Display + Send,
{
    async fn handle(&self, request: ServerRequestCtx) -> ServerReply {
        let method = request.method().to_owned();
        match self.service.clone().oneshot(request).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(%method, "approval service failed, declining: {e}");
                Decision::Decline.into()
            }
        }
    }
}

/// Hands every request to the caller as a [`PendingServerRequest`] on a bounded channel.
///
/// When the channel is full or its receiver is gone, the request is declined at once; a
/// handle dropped without an answer is declined.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use codex_asp::approval::{ChannelHandler, ApprovalHandler, Decision, ServerReply, ServerRequestCtx};
/// use codex_asp::jsonrpc::RequestId;
/// use serde_json::json;
///
/// let (handler, mut requests) = ChannelHandler::new(8);
/// let answer = tokio::spawn(async move {
///     let request = ServerRequestCtx::new(RequestId::Integer(0), "item/fileChange/requestApproval", json!({}));
///     handler.handle(request).await
/// });
/// let pending = requests.recv().await.unwrap();
/// drop(pending); // nobody answers
/// assert_eq!(answer.await.unwrap(), ServerReply::Decision(Decision::Decline));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ChannelHandler {
    tx: mpsc::Sender<PendingServerRequest>,
}

impl ChannelHandler {
    /// A handler and the receiver of its requests (`capacity` requests may wait unread).
    pub fn new(capacity: usize) -> (ChannelHandler, mpsc::Receiver<PendingServerRequest>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ChannelHandler { tx }, rx)
    }
}

#[async_trait]
impl ApprovalHandler for ChannelHandler {
    async fn handle(&self, request: ServerRequestCtx) -> ServerReply {
        let (tx, rx) = oneshot::channel();
        let resolved = request.resolved.clone();
        let pending = PendingServerRequest {
            ctx: request,
            tx: Some(tx),
        };
        if let Err(e) = self.tx.try_send(pending) {
            tracing::debug!("no one takes server requests ({e}); declining");
        }
        tokio::select! {
            reply = rx => reply.unwrap_or(ServerReply::Decision(Decision::Decline)),
            () = resolved.cancelled() => ServerReply::Decision(Decision::Decline),
        }
    }
}

/// A server request waiting for the caller's answer. Dropping it unanswered declines it.
#[derive(Debug)]
pub struct PendingServerRequest {
    ctx: ServerRequestCtx,
    tx: Option<oneshot::Sender<ServerReply>>,
}

impl PendingServerRequest {
    /// The request.
    pub fn request(&self) -> &ServerRequestCtx {
        &self.ctx
    }

    /// Answers it.
    pub fn respond(mut self, reply: impl Into<ServerReply>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(reply.into());
        }
    }

    /// Answers [`Decision::Accept`].
    pub fn accept(self) {
        self.respond(Decision::Accept)
    }

    /// Answers [`Decision::Decline`].
    pub fn decline(self) {
        self.respond(Decision::Decline)
    }
}

impl Drop for PendingServerRequest {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(ServerReply::Decision(Decision::Decline));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(method: &str, params: Value) -> ServerRequestCtx {
        ServerRequestCtx::new(RequestId::Integer(0), method, params)
    }

    #[test]
    fn decisions_encode_per_kind() {
        let cmd = ctx("item/commandExecution/requestApproval", json!({}));
        assert_eq!(
            cmd.encode_reply(Decision::Decline.into()).unwrap(),
            json!({"decision": "decline"})
        );
        assert_eq!(
            cmd.encode_reply(Decision::AcceptWithExecpolicyAmendment(vec!["touch".into()]).into())
                .unwrap(),
            json!({"decision": {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["touch"]}}})
        );
        let file = ctx("item/fileChange/requestApproval", json!({}));
        assert_eq!(
            file.encode_reply(Decision::AcceptForSession.into())
                .unwrap(),
            json!({"decision": "acceptForSession"})
        );
        let perms = ctx(
            "item/permissions/requestApproval",
            json!({"threadId":"t","turnId":"u","itemId":"i","permissions":{"network":{"enabled":true}}}),
        );
        assert_eq!(
            perms
                .encode_reply(Decision::AcceptForSession.into())
                .unwrap(),
            json!({"permissions": {"network": {"enabled": true}}, "scope": "session"})
        );
        assert_eq!(
            perms.encode_reply(Decision::Decline.into()).unwrap(),
            json!({"permissions": {}})
        );
        let elicit = ctx("mcpServer/elicitation/request", json!({}));
        assert_eq!(
            elicit.encode_reply(Decision::Cancel.into()).unwrap(),
            json!({"action": "cancel"})
        );
        let input = ctx("item/tool/requestUserInput", json!({}));
        assert_eq!(
            input.encode_reply(Decision::Decline.into()).unwrap(),
            json!({"answers": {}})
        );
        let legacy = ctx("execCommandApproval", json!({}));
        assert_eq!(
            legacy.encode_reply(Decision::Decline.into()).unwrap(),
            json!({"decision": "denied"})
        );
        let other = ctx("attestation/generate", json!({}));
        let error = other.encode_reply(Decision::Decline.into()).unwrap_err();
        assert_eq!(error.code, error_codes::METHOD_NOT_FOUND);
        assert!(error.message.contains("attestation/generate"), "{error}");
        assert_eq!(
            other
                .encode_reply(ServerReply::Result(json!({"token": "t"})))
                .unwrap(),
            json!({"token": "t"})
        );
    }

    #[tokio::test]
    async fn channel_handler_answers_and_declines() {
        let (handler, mut rx) = ChannelHandler::new(1);
        let h = handler.clone();
        let task = tokio::spawn(async move {
            h.handle(ctx("item/fileChange/requestApproval", json!({})))
                .await
        });
        rx.recv().await.unwrap().accept();
        assert_eq!(task.await.unwrap(), Decision::Accept.into());

        drop(rx);
        let reply = handler
            .handle(ctx("item/fileChange/requestApproval", json!({})))
            .await;
        assert_eq!(reply, Decision::Decline.into());
    }

    #[tokio::test]
    async fn service_errors_decline() {
        let handler = ServiceHandler::new(tower::service_fn(|_req: ServerRequestCtx| async {
            Err::<ServerReply, _>("boom")
        }));
        let reply = handler
            .handle(ctx("item/commandExecution/requestApproval", json!({})))
            .await;
        assert_eq!(reply, Decision::Decline.into());
    }
}
