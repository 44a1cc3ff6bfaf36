//! Server-to-client requests: approvals, user input and MCP elicitations.
//!
//! The server numbers its own requests from 0, independently of the client's ids. The client
//! answers `{"id": N, "result": ...}` with the method's response type (for example
//! `{"decision": "accept"}`); `serverRequest/resolved` follows. Every approval request comes
//! *after* the matching `item/started`, and the thread's status gets the
//! `waitingOnApproval` flag while it is pending.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Request;
use super::items::CommandAction;

string_enum! {
    /// Action of a network policy rule.
    pub enum NetworkPolicyRuleAction {
        /// `"allow"`.
        Allow = "allow",
        /// `"deny"`.
        Deny = "deny",
    }
}

/// A proposed network policy amendment (host rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkPolicyAmendment {
    /// Host.
    pub host: String,
    /// Allow or deny.
    pub action: NetworkPolicyRuleAction,
}

impl NetworkPolicyAmendment {
    /// A rule for `host`.
    pub fn new(host: impl Into<String>, action: NetworkPolicyRuleAction) -> Self {
        Self {
            host: host.into(),
            action,
        }
    }
}

/// Network context of a network approval (a blocked connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkApprovalContext {
    /// Host.
    pub host: String,
    /// `"http"`, `"https"`, `"socks5Tcp"`, `"socks5Udp"`.
    pub protocol: String,
}

/// Params of `item/commandExecution/requestApproval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CommandExecutionRequestApprovalParams {
    /// Thread.
    pub thread_id: String,
    /// Turn.
    pub turn_id: String,
    /// The `commandExecution` item (already announced by `item/started`).
    pub item_id: String,
    /// `"command"` (default), `"writeStdin"` or `"humanCommand"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Distinguishes several approvals of one item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Why approval is needed (e.g. the model's justification for an escalation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The command line (`/bin/bash -c 'touch x'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Parsed actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_actions: Option<Vec<CommandAction>>,
    /// The exec-policy prefix codex proposes to allow from now on (e.g. `["touch","x"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_execpolicy_amendment: Option<Vec<String>>,
    /// Proposed network rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_network_policy_amendments: Option<Vec<NetworkPolicyAmendment>>,
    /// Set for network approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_approval_context: Option<NetworkApprovalContext>,
    /// The decisions the client may offer, in order (an experimental field that 0.169.0
    /// sends anyway; seen: `["accept", {"acceptWithExecpolicyAmendment":..}, "cancel"]`,
    /// i.e. **without "decline"**, although "decline" is still accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_decisions: Option<Vec<CommandExecutionApprovalDecision>>,
    /// Environment id (`"local"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
}

/// Decision on a command approval.
///
/// Wire forms: `"accept"`, `"acceptForSession"`, `"decline"` (the turn goes on, the command
/// is `declined`), `"cancel"` (the turn is interrupted),
/// `{"acceptWithExecpolicyAmendment":{"execpolicy_amendment":["touch","x"]}}` and
/// `{"applyNetworkPolicyAmendment":{"network_policy_amendment":{"host":..,"action":..}}}`
/// (note the snake_case inner keys).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CommandExecutionApprovalDecision {
    /// Run it once.
    Accept,
    /// Run it, and similar commands for the rest of the session.
    AcceptForSession,
    /// Run it and add this prefix rule to the exec policy.
    AcceptWithExecpolicyAmendment {
        /// The command prefix to allow (usually the proposed one).
        execpolicy_amendment: Vec<String>,
    },
    /// Apply a network rule.
    ApplyNetworkPolicyAmendment {
        /// The rule.
        network_policy_amendment: NetworkPolicyAmendment,
    },
    /// Do not run it; the model is told and the turn continues.
    Decline,
    /// Do not run it and interrupt the turn.
    Cancel,
    /// Any other decision, kept verbatim.
    Other(Value),
}

impl Serialize for CommandExecutionApprovalDecision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = match self {
            Self::Accept => Value::from("accept"),
            Self::AcceptForSession => Value::from("acceptForSession"),
            Self::Decline => Value::from("decline"),
            Self::Cancel => Value::from("cancel"),
            Self::AcceptWithExecpolicyAmendment {
                execpolicy_amendment,
            } => serde_json::json!({
                "acceptWithExecpolicyAmendment": { "execpolicy_amendment": execpolicy_amendment }
            }),
            Self::ApplyNetworkPolicyAmendment {
                network_policy_amendment,
            } => serde_json::json!({
                "applyNetworkPolicyAmendment": { "network_policy_amendment": network_policy_amendment }
            }),
            Self::Other(v) => v.clone(),
        };
        value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CommandExecutionApprovalDecision {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let parsed = match &value {
            Value::String(s) => match s.as_str() {
                "accept" => Some(Self::Accept),
                "acceptForSession" => Some(Self::AcceptForSession),
                "decline" => Some(Self::Decline),
                "cancel" => Some(Self::Cancel),
                _ => None,
            },
            Value::Object(map) if map.len() == 1 => {
                if let Some(inner) = map.get("acceptWithExecpolicyAmendment") {
                    inner
                        .get("execpolicy_amendment")
                        .and_then(|v| Vec::<String>::deserialize(v).ok())
                        .map(|execpolicy_amendment| Self::AcceptWithExecpolicyAmendment {
                            execpolicy_amendment,
                        })
                } else if let Some(inner) = map.get("applyNetworkPolicyAmendment") {
                    inner
                        .get("network_policy_amendment")
                        .and_then(|v| NetworkPolicyAmendment::deserialize(v).ok())
                        .map(
                            |network_policy_amendment| Self::ApplyNetworkPolicyAmendment {
                                network_policy_amendment,
                            },
                        )
                } else {
                    None
                }
            }
            _ => None,
        };
        Ok(parsed.unwrap_or(Self::Other(value)))
    }
}

/// Response to `item/commandExecution/requestApproval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandExecutionRequestApprovalResponse {
    /// The decision.
    pub decision: CommandExecutionApprovalDecision,
}

impl CommandExecutionRequestApprovalResponse {
    /// A response with `decision`.
    pub fn new(decision: CommandExecutionApprovalDecision) -> Self {
        Self { decision }
    }
}

/// Params of `item/fileChange/requestApproval` (the changes themselves are in the
/// `fileChange` item announced just before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FileChangeRequestApprovalParams {
    /// Thread.
    pub thread_id: String,
    /// Turn.
    pub turn_id: String,
    /// The `fileChange` item.
    pub item_id: String,
    /// Why approval is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A root the agent asks to be made writable for the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_root: Option<String>,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
}

string_enum! {
    /// Decision on a file change approval.
    pub enum FileChangeApprovalDecision {
        /// `"accept"`: apply it.
        Accept = "accept",
        /// `"acceptForSession"`: apply it and similar changes for the session.
        AcceptForSession = "acceptForSession",
        /// `"decline"`: do not apply it; the turn continues.
        Decline = "decline",
        /// `"cancel"`: do not apply it and interrupt the turn.
        Cancel = "cancel",
    }
}

/// Response to `item/fileChange/requestApproval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileChangeRequestApprovalResponse {
    /// The decision.
    pub decision: FileChangeApprovalDecision,
}

impl FileChangeRequestApprovalResponse {
    /// A response with `decision`.
    pub fn new(decision: FileChangeApprovalDecision) -> Self {
        Self { decision }
    }
}

/// File-system permissions (requested or granted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FileSystemPermissions {
    /// Readable paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<String>>,
    /// Writable paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<Vec<String>>,
    /// Detailed entries (`{path, access}`), raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<Value>>,
    /// Glob scan depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob_scan_max_depth: Option<u32>,
}

/// Network permissions (requested or granted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NetworkPermissions {
    /// Network on/off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A set of additional permissions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PermissionProfile {
    /// File-system part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system: Option<FileSystemPermissions>,
    /// Network part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPermissions>,
}

/// Params of `item/permissions/requestApproval` (the model's `request_permissions` tool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PermissionsRequestApprovalParams {
    /// Thread.
    pub thread_id: String,
    /// Turn.
    pub turn_id: String,
    /// Item.
    pub item_id: String,
    /// Working directory.
    #[serde(default)]
    pub cwd: String,
    /// Requested permissions.
    #[serde(default)]
    pub permissions: PermissionProfile,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Environment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
}

string_enum! {
    /// How long granted permissions last.
    pub enum PermissionGrantScope {
        /// `"turn"` (the default).
        Turn = "turn",
        /// `"session"`.
        Session = "session",
    }
}

/// Response to `item/permissions/requestApproval`: the subset granted (empty = denied).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PermissionsRequestApprovalResponse {
    /// Granted permissions.
    pub permissions: PermissionProfile,
    /// Scope of the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<PermissionGrantScope>,
}

impl PermissionsRequestApprovalResponse {
    /// Grant nothing.
    pub fn deny() -> Self {
        Self::default()
    }

    /// Grant `permissions` for `scope`.
    pub fn grant(permissions: PermissionProfile, scope: PermissionGrantScope) -> Self {
        Self {
            permissions,
            scope: Some(scope),
        }
    }
}

/// One option of a user-input question.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolRequestUserInputOption {
    /// Label (what the answer should contain).
    pub label: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// One question of `item/tool/requestUserInput`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolRequestUserInputQuestion {
    /// Question id (key of the answer map).
    pub id: String,
    /// Short header.
    #[serde(default)]
    pub header: String,
    /// The question.
    #[serde(default)]
    pub question: String,
    /// Offers a free-form "other" answer.
    #[serde(default)]
    pub is_other: bool,
    /// The answer is secret.
    #[serde(default)]
    pub is_secret: bool,
    /// Choices, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<ToolRequestUserInputOption>>,
}

/// Params of `item/tool/requestUserInput` (the model's `request_user_input` tool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolRequestUserInputParams {
    /// Thread.
    pub thread_id: String,
    /// Turn.
    pub turn_id: String,
    /// Item.
    pub item_id: String,
    /// Questions.
    #[serde(default)]
    pub questions: Vec<ToolRequestUserInputQuestion>,
    /// Whether the turn waits for the answer.
    #[serde(default)]
    pub is_blocking: bool,
    /// Auto-resolution delay in milliseconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resolution_ms: Option<i64>,
}

/// Answer to one question.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolRequestUserInputAnswer {
    /// Selected labels and/or free text.
    pub answers: Vec<String>,
}

impl ToolRequestUserInputAnswer {
    /// An answer made of `answers`.
    pub fn new<I, S>(answers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            answers: answers.into_iter().map(Into::into).collect(),
        }
    }
}

/// Response to `item/tool/requestUserInput`: answers by question id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolRequestUserInputResponse {
    /// Question id → answer.
    pub answers: BTreeMap<String, ToolRequestUserInputAnswer>,
}

impl ToolRequestUserInputResponse {
    /// A response from `(question id, answer)` pairs.
    pub fn new<I, K>(answers: I) -> Self
    where
        I: IntoIterator<Item = (K, ToolRequestUserInputAnswer)>,
        K: Into<String>,
    {
        Self {
            answers: answers.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }
}

/// Params of `mcpServer/elicitation/request`: an MCP server asks the user for structured
/// input (`mode: "form"` with a `requestedSchema`) or to visit a URL (`mode: "url"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpServerElicitationRequestParams {
    /// Thread.
    pub thread_id: String,
    /// Turn, when the elicitation comes from a turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    /// MCP server name.
    pub server_name: String,
    /// The environment whose registration of the server asks (codex 0.171.0 and later; `None`
    /// for a thread-wide server and from older codex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// `"form"`, `"url"`, `"openai/form"`, `"openaiForm"`.
    #[serde(default)]
    pub mode: String,
    /// Message for the user.
    #[serde(default)]
    pub message: String,
    /// JSON Schema of the requested content (form modes), raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_schema: Option<Value>,
    /// URL to open (`url` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Elicitation id (`url` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elicitation_id: Option<String>,
    /// MCP `_meta`, raw.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

string_enum! {
    /// The user's action on an elicitation.
    pub enum McpServerElicitationAction {
        /// `"accept"` (with `content` for forms).
        Accept = "accept",
        /// `"decline"`.
        Decline = "decline",
        /// `"cancel"`.
        Cancel = "cancel",
    }
}

/// Response to `mcpServer/elicitation/request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct McpServerElicitationRequestResponse {
    /// The action.
    pub action: McpServerElicitationAction,
    /// Form content matching `requestedSchema` (for `accept`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// MCP `_meta`.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

impl McpServerElicitationRequestResponse {
    /// Accept with `content` (use `None` for URL elicitations).
    pub fn accept(content: Option<Value>) -> Self {
        Self {
            action: McpServerElicitationAction::Accept,
            content,
            meta: None,
        }
    }

    /// Decline.
    pub fn decline() -> Self {
        Self {
            action: McpServerElicitationAction::Decline,
            content: None,
            meta: None,
        }
    }

    /// Cancel.
    pub fn cancel() -> Self {
        Self {
            action: McpServerElicitationAction::Cancel,
            content: None,
            meta: None,
        }
    }
}

macro_rules! server_request_markers {
    ($( $(#[$meta:meta])* $marker:ident = $method:literal, $params:ty => $response:ty; )*) => {$(
        $(#[$meta])*
        #[derive(Debug)]
        pub enum $marker {}

        impl Request for $marker {
            const METHOD: &'static str = $method;
            type Params = $params;
            type Response = $response;
        }
    )*};
}

server_request_markers! {
    /// `item/commandExecution/requestApproval` (server → client).
    CommandExecutionRequestApproval = "item/commandExecution/requestApproval",
        CommandExecutionRequestApprovalParams => CommandExecutionRequestApprovalResponse;
    /// `item/fileChange/requestApproval` (server → client).
    FileChangeRequestApproval = "item/fileChange/requestApproval",
        FileChangeRequestApprovalParams => FileChangeRequestApprovalResponse;
    /// `item/permissions/requestApproval` (server → client).
    PermissionsRequestApproval = "item/permissions/requestApproval",
        PermissionsRequestApprovalParams => PermissionsRequestApprovalResponse;
    /// `item/tool/requestUserInput` (server → client).
    ToolRequestUserInput = "item/tool/requestUserInput",
        ToolRequestUserInputParams => ToolRequestUserInputResponse;
    /// `mcpServer/elicitation/request` (server → client).
    McpServerElicitationRequest = "mcpServer/elicitation/request",
        McpServerElicitationRequestParams => McpServerElicitationRequestResponse;
}

/// A server-to-client request (without its id).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerRequest {
    /// `item/commandExecution/requestApproval`.
    CommandExecutionApproval(CommandExecutionRequestApprovalParams),
    /// `item/fileChange/requestApproval`.
    FileChangeApproval(FileChangeRequestApprovalParams),
    /// `item/permissions/requestApproval`.
    PermissionsApproval(PermissionsRequestApprovalParams),
    /// `item/tool/requestUserInput`.
    ToolRequestUserInput(ToolRequestUserInputParams),
    /// `mcpServer/elicitation/request`.
    McpServerElicitation(McpServerElicitationRequestParams),
    /// Any other server request (`item/tool/call`, `account/chatgptAuthTokens/refresh`,
    /// `attestation/generate`, the legacy `applyPatchApproval` / `execCommandApproval`), or
    /// a typed one whose params did not parse. The client must still answer it (with an
    /// error response if it cannot handle it), or the turn waits forever.
    Raw {
        /// The method.
        method: String,
        /// The params as received.
        params: Value,
        /// Why a typed method fell back to `Raw` (`None` for untyped methods).
        parse_error: Option<String>,
    },
}

impl ServerRequest {
    /// The methods that have a typed variant.
    pub const TYPED_METHODS: &'static [&'static str] = &[
        CommandExecutionRequestApproval::METHOD,
        FileChangeRequestApproval::METHOD,
        PermissionsRequestApproval::METHOD,
        ToolRequestUserInput::METHOD,
        McpServerElicitationRequest::METHOD,
    ];

    /// Builds the request from its method and params. Never fails.
    pub fn from_parts(method: &str, params: Value) -> Self {
        fn parse<T: serde::de::DeserializeOwned>(
            method: &str,
            params: Value,
            wrap: fn(T) -> ServerRequest,
        ) -> ServerRequest {
            match T::deserialize(&params) {
                Ok(p) => wrap(p),
                Err(e) => ServerRequest::Raw {
                    method: method.to_owned(),
                    params,
                    parse_error: Some(e.to_string()),
                },
            }
        }
        match method {
            CommandExecutionRequestApproval::METHOD => {
                parse(method, params, Self::CommandExecutionApproval)
            }
            FileChangeRequestApproval::METHOD => parse(method, params, Self::FileChangeApproval),
            PermissionsRequestApproval::METHOD => parse(method, params, Self::PermissionsApproval),
            ToolRequestUserInput::METHOD => parse(method, params, Self::ToolRequestUserInput),
            McpServerElicitationRequest::METHOD => {
                parse(method, params, Self::McpServerElicitation)
            }
            _ => Self::Raw {
                method: method.to_owned(),
                params,
                parse_error: None,
            },
        }
    }

    /// The JSON-RPC method.
    pub fn method(&self) -> &str {
        match self {
            Self::CommandExecutionApproval(_) => CommandExecutionRequestApproval::METHOD,
            Self::FileChangeApproval(_) => FileChangeRequestApproval::METHOD,
            Self::PermissionsApproval(_) => PermissionsRequestApproval::METHOD,
            Self::ToolRequestUserInput(_) => ToolRequestUserInput::METHOD,
            Self::McpServerElicitation(_) => McpServerElicitationRequest::METHOD,
            Self::Raw { method, .. } => method,
        }
    }

    /// The params as JSON.
    pub fn params(&self) -> Value {
        let result = match self {
            Self::CommandExecutionApproval(p) => serde_json::to_value(p),
            Self::FileChangeApproval(p) => serde_json::to_value(p),
            Self::PermissionsApproval(p) => serde_json::to_value(p),
            Self::ToolRequestUserInput(p) => serde_json::to_value(p),
            Self::McpServerElicitation(p) => serde_json::to_value(p),
            Self::Raw { params, .. } => return params.clone(),
        };
        result.unwrap_or(Value::Null)
    }

    /// The thread the request belongs to.
    pub fn thread_id(&self) -> Option<&str> {
        match self {
            Self::CommandExecutionApproval(p) => Some(&p.thread_id),
            Self::FileChangeApproval(p) => Some(&p.thread_id),
            Self::PermissionsApproval(p) => Some(&p.thread_id),
            Self::ToolRequestUserInput(p) => Some(&p.thread_id),
            Self::McpServerElicitation(p) => Some(&p.thread_id),
            Self::Raw { params, .. } => params.get("threadId").and_then(Value::as_str),
        }
    }

    /// The turn the request belongs to.
    pub fn turn_id(&self) -> Option<&str> {
        match self {
            Self::CommandExecutionApproval(p) => Some(&p.turn_id),
            Self::FileChangeApproval(p) => Some(&p.turn_id),
            Self::PermissionsApproval(p) => Some(&p.turn_id),
            Self::ToolRequestUserInput(p) => Some(&p.turn_id),
            Self::McpServerElicitation(p) => p.turn_id.as_deref(),
            Self::Raw { params, .. } => params.get("turnId").and_then(Value::as_str),
        }
    }

    /// The item the request is about (`itemId`), when it has one.
    pub fn item_id(&self) -> Option<&str> {
        match self {
            Self::CommandExecutionApproval(p) => Some(&p.item_id),
            Self::FileChangeApproval(p) => Some(&p.item_id),
            Self::PermissionsApproval(p) => Some(&p.item_id),
            Self::ToolRequestUserInput(p) => Some(&p.item_id),
            Self::McpServerElicitation(_) => None,
            Self::Raw { params, .. } => params.get("itemId").and_then(Value::as_str),
        }
    }

    /// A safe "no" to this request, as the `result` to send back: `decline` for approvals
    /// (the turn goes on), no permissions, no answers, a declined elicitation. `None` for
    /// `Raw` requests, which need a JSON-RPC error response instead.
    pub fn denial_result(&self) -> Option<Value> {
        let result = match self {
            Self::CommandExecutionApproval(_) => {
                serde_json::to_value(CommandExecutionRequestApprovalResponse::new(
                    CommandExecutionApprovalDecision::Decline,
                ))
            }
            Self::FileChangeApproval(_) => serde_json::to_value(
                FileChangeRequestApprovalResponse::new(FileChangeApprovalDecision::Decline),
            ),
            Self::PermissionsApproval(_) => {
                serde_json::to_value(PermissionsRequestApprovalResponse::deny())
            }
            Self::ToolRequestUserInput(_) => {
                serde_json::to_value(ToolRequestUserInputResponse::default())
            }
            Self::McpServerElicitation(_) => {
                serde_json::to_value(McpServerElicitationRequestResponse::decline())
            }
            Self::Raw { .. } => return None,
        };
        result.ok()
    }

    /// Whether this is a typed method whose params failed to parse.
    pub fn parse_error(&self) -> Option<&str> {
        match self {
            Self::Raw { parse_error, .. } => parse_error.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decisions_round_trip() {
        let cases = [
            (CommandExecutionApprovalDecision::Accept, json!("accept")),
            (
                CommandExecutionApprovalDecision::AcceptForSession,
                json!("acceptForSession"),
            ),
            (CommandExecutionApprovalDecision::Decline, json!("decline")),
            (CommandExecutionApprovalDecision::Cancel, json!("cancel")),
            (
                CommandExecutionApprovalDecision::AcceptWithExecpolicyAmendment {
                    execpolicy_amendment: vec!["touch".into(), "x".into()],
                },
                json!({"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["touch", "x"]}}),
            ),
            (
                CommandExecutionApprovalDecision::ApplyNetworkPolicyAmendment {
                    network_policy_amendment: NetworkPolicyAmendment::new(
                        "example.com",
                        NetworkPolicyRuleAction::Allow,
                    ),
                },
                json!({"applyNetworkPolicyAmendment": {"network_policy_amendment": {"host": "example.com", "action": "allow"}}}),
            ),
            (
                CommandExecutionApprovalDecision::Other(json!("later")),
                json!("later"),
            ),
        ];
        for (decision, wire) in cases {
            assert_eq!(serde_json::to_value(&decision).unwrap(), wire);
            assert_eq!(
                serde_json::from_value::<CommandExecutionApprovalDecision>(wire).unwrap(),
                decision
            );
        }
        assert_eq!(
            serde_json::to_value(FileChangeRequestApprovalResponse::new(
                FileChangeApprovalDecision::Decline
            ))
            .unwrap(),
            json!({"decision": "decline"})
        );
    }

    #[test]
    fn server_request_parts() {
        let r = ServerRequest::from_parts(
            "item/fileChange/requestApproval",
            json!({"threadId": "t", "turnId": "u", "itemId": "call-p", "startedAtMs": 1, "reason": null, "grantRoot": null}),
        );
        assert!(matches!(r, ServerRequest::FileChangeApproval(_)));
        assert_eq!(
            (r.thread_id(), r.turn_id(), r.item_id()),
            (Some("t"), Some("u"), Some("call-p"))
        );
        assert_eq!(r.denial_result(), Some(json!({"decision": "decline"})));
        let r = ServerRequest::from_parts(
            "item/tool/call",
            json!({"threadId": "t", "turnId": "u", "callId": "c"}),
        );
        assert!(matches!(
            r,
            ServerRequest::Raw {
                parse_error: None,
                ..
            }
        ));
        assert_eq!(r.thread_id(), Some("t"));
        assert_eq!(r.denial_result(), None);
        let r = ServerRequest::from_parts("item/fileChange/requestApproval", json!({}));
        assert!(r.parse_error().is_some());
        assert_eq!(r.denial_result(), None);
        assert_eq!(r.method(), "item/fileChange/requestApproval");
    }

    #[test]
    fn elicitation_environment() {
        let params = json!({"threadId": "t", "turnId": null, "serverName": "docs",
            "environmentId": "local", "mode": "url", "message": "Sign in",
            "url": "https://example.invalid/", "elicitationId": "e-1", "_meta": null});
        let r = ServerRequest::from_parts("mcpServer/elicitation/request", params);
        let ServerRequest::McpServerElicitation(p) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(p.environment_id.as_deref(), Some("local"));
        let r = ServerRequest::from_parts(
            "mcpServer/elicitation/request",
            json!({"threadId": "t", "serverName": "docs", "mode": "form", "message": "?"}),
        );
        assert!(
            matches!(r, ServerRequest::McpServerElicitation(ref p) if p.environment_id.is_none())
        );
    }

    #[test]
    fn user_input_response_shape() {
        let r =
            ToolRequestUserInputResponse::new([("q1", ToolRequestUserInputAnswer::new(["yes"]))]);
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            json!({"answers": {"q1": {"answers": ["yes"]}}})
        );
    }
}
