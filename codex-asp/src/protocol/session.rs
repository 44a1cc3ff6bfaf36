//! `initialize`, and the account, model, config and command requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{ReasoningEffort, SandboxPolicy};

/// The notification a client sends right after the `initialize` response.
pub const INITIALIZED_NOTIFICATION: &str = "initialized";

/// Who the client is (`initialize` `clientInfo`). codex builds its user agent from it:
/// `"{name}/{codex version} (...) ({name}; {version})"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClientInfo {
    /// Client name.
    pub name: String,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Client version.
    pub version: String,
}

impl ClientInfo {
    /// A client named `name` at `version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            title: None,
            version: version.into(),
        }
    }
}

/// Capabilities declared in `initialize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InitializeCapabilities {
    /// Opt into experimental methods and fields (needed, for example, for the granular
    /// approval policy). Note that 0.169.0 sends some experimental response fields
    /// (`thread.environments`, `availableDecisions`, ...) even without it.
    #[serde(default)]
    pub experimental_api: bool,
    /// Exact notification methods to suppress on this connection (for example
    /// `"account/rateLimits/updated"`); honoured by 0.169.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_out_notification_methods: Option<Vec<String>>,
}

/// Params of `initialize`, the first request of every connection (anything sent before it
/// is answered -32600 "Not initialized"; a second one gets "Already initialized").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InitializeParams {
    /// Who the client is.
    pub client_info: ClientInfo,
    /// Declared capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<InitializeCapabilities>,
}

impl InitializeParams {
    /// Params for a client named `name` at `version`, without capabilities.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            client_info: ClientInfo::new(name, version),
            capabilities: None,
        }
    }
}

/// Response of `initialize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InitializeResponse {
    /// User agent codex will use (contains the codex version after the first `/`).
    pub user_agent: String,
    /// Absolute `$CODEX_HOME` of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codex_home: Option<String>,
    /// `"unix"` or `"windows"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    /// `"linux"`, `"macos"` or `"windows"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_os: Option<String>,
}

impl InitializeResponse {
    /// The codex version parsed from the user agent (`"name/0.169.0 (...)"` → `"0.169.0"`).
    pub fn codex_version(&self) -> Option<&str> {
        let rest = self.user_agent.split_once('/')?.1;
        let version = rest.split_whitespace().next()?;
        (!version.is_empty()).then_some(version)
    }
}

/// Params of `account/read`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GetAccountParams {
    /// Refresh the ChatGPT token first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<bool>,
}

/// Payload of [`Account::Chatgpt`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ChatgptAccount {
    /// Account e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Plan (`"plus"`, `"pro"`, `"team"`, `"enterprise"`, ... `"unknown"`).
    #[serde(default)]
    pub plan_type: String,
    /// Workspace name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
}

/// Payload of [`Account::AmazonBedrock`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AmazonBedrockAccount {
    /// Whether codex manages the credentials.
    #[serde(default)]
    pub uses_codex_managed_credentials: bool,
}

tagged_enum! {
    /// The signed-in account.
    pub enum Account (tag = "type") {
        unit {
            /// `{"type":"apiKey"}`.
            ApiKey = "apiKey",
            /// `{"type":"gcp"}`.
            Gcp = "gcp",
        }
        data {
            /// `{"type":"chatgpt","email":..,"planType":..}`.
            Chatgpt(ChatgptAccount) = "chatgpt",
            /// `{"type":"amazonBedrock",...}`.
            AmazonBedrock(AmazonBedrockAccount) = "amazonBedrock",
        }
    }
}

/// Response of `account/read`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GetAccountResponse {
    /// The account, `None` when signed out. With a provider that has
    /// `requires_openai_auth = false` it stays `None` even after an API-key login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// Whether the configured provider needs OpenAI auth.
    #[serde(default)]
    pub requires_openai_auth: bool,
    /// User id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// Payload of [`LoginAccountParams::ApiKey`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApiKeyLogin {
    /// The OpenAI API key (stored by codex under `$CODEX_HOME`).
    pub api_key: String,
}

/// Payload of [`LoginAccountParams::Chatgpt`] (browser login).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ChatgptLogin {
    /// `"codex"` or `"chatgpt"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_brand: Option<String>,
    /// Use the hosted success page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_hosted_login_success_page: Option<bool>,
}

tagged_enum! {
    /// Params of `account/login/start`, tagged on `type`. Other login kinds of the schema
    /// (`chatgptAuthTokens`, `amazonBedrock`, ...) can be sent as `Unknown(json)`.
    pub enum LoginAccountParams (tag = "type") {
        unit {
            /// `{"type":"chatgptDeviceCode"}`: device-code login.
            ChatgptDeviceCode = "chatgptDeviceCode",
        }
        data {
            /// `{"type":"apiKey","apiKey":..}`: answers `{"type":"apiKey"}` at once and
            /// notifies `account/login/completed` then `account/updated`.
            ApiKey(ApiKeyLogin) = "apiKey",
            /// `{"type":"chatgpt"}`: answers a `loginId` and an `authUrl` to open;
            /// `account/login/completed` follows when the browser flow ends.
            Chatgpt(ChatgptLogin) = "chatgpt",
        }
    }
}

impl LoginAccountParams {
    /// An API-key login.
    pub fn api_key(api_key: impl Into<String>) -> Self {
        Self::ApiKey(ApiKeyLogin {
            api_key: api_key.into(),
        })
    }

    /// A ChatGPT browser login.
    pub fn chatgpt() -> Self {
        Self::Chatgpt(ChatgptLogin::default())
    }
}

/// Payload of [`LoginAccountResponse::Chatgpt`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ChatgptLoginStarted {
    /// Login id (matches `account/login/completed`; cancel with `account/login/cancel`).
    pub login_id: String,
    /// URL the user must open.
    pub auth_url: String,
}

/// Payload of [`LoginAccountResponse::ChatgptDeviceCode`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeviceCodeLoginStarted {
    /// Login id.
    pub login_id: String,
    /// URL where the code is entered.
    pub verification_url: String,
    /// The code to enter.
    pub user_code: String,
}

tagged_enum! {
    /// Response of `account/login/start`.
    pub enum LoginAccountResponse (tag = "type") {
        unit {
            /// `{"type":"apiKey"}`: done.
            ApiKey = "apiKey",
            /// `{"type":"chatgptAuthTokens"}`: done.
            ChatgptAuthTokens = "chatgptAuthTokens",
            /// `{"type":"amazonBedrock"}`: done.
            AmazonBedrock = "amazonBedrock",
        }
        data {
            /// `{"type":"chatgpt","loginId":..,"authUrl":..}`.
            Chatgpt(ChatgptLoginStarted) = "chatgpt",
            /// `{"type":"chatgptDeviceCode",...}`.
            ChatgptDeviceCode(DeviceCodeLoginStarted) = "chatgptDeviceCode",
        }
    }
}

/// One rate-limit window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RateLimitWindow {
    /// Percentage used (0-100).
    #[serde(default)]
    pub used_percent: i64,
    /// Window length in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_duration_mins: Option<i64>,
    /// Unix seconds when the window resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<i64>,
}

/// Credits of a ChatGPT account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreditsSnapshot {
    /// Whether the account has credits.
    #[serde(default)]
    pub has_credits: bool,
    /// Whether usage is unlimited.
    #[serde(default)]
    pub unlimited: bool,
    /// Balance (a decimal string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
}

/// A rate-limit snapshot (`account/rateLimits/read`, `account/rateLimits/updated`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RateLimitSnapshot {
    /// Limit id (`"codex"`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_id: Option<String>,
    /// Limit name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_name: Option<String>,
    /// Primary (short) window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<RateLimitWindow>,
    /// Secondary (long) window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<RateLimitWindow>,
    /// Credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditsSnapshot>,
    /// Plan type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_type: Option<String>,
    /// Which limit was reached, if any (raw string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_reached_type: Option<String>,
}

/// Params of `account/rateLimits/read` (optional: `{}` or `null` work too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GetAccountRateLimitsParams {
    /// Leave out the reset-credit details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_reset_credit_details: Option<bool>,
}

/// Response of `account/rateLimits/read` (needs ChatGPT auth: otherwise -32600 "codex
/// account authentication required to read rate limits").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GetAccountRateLimitsResponse {
    /// The main snapshot.
    #[serde(default)]
    pub rate_limits: RateLimitSnapshot,
    /// Snapshots per limit id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits_by_limit_id: Option<BTreeMap<String, RateLimitSnapshot>>,
}

/// Params of `model/list` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ModelListParams {
    /// Page cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Include hidden models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_hidden: Option<bool>,
    /// Models of this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_provider: Option<String>,
}

/// One reasoning effort a model supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReasoningEffortOption {
    /// The effort.
    pub reasoning_effort: ReasoningEffort,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// A service tier of a model (`{id:"priority", name:"Fast"}`: `service_tier = "fast"` in
/// config goes on the wire as `"priority"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ModelServiceTier {
    /// Wire id (`serviceTier` value).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// A model of `model/list` (answered offline from the bundled catalog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Model {
    /// Catalog id.
    pub id: String,
    /// Model slug (what `model` takes).
    #[serde(default)]
    pub model: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Hidden from pickers.
    #[serde(default)]
    pub hidden: bool,
    /// The default model.
    #[serde(default)]
    pub is_default: bool,
    /// Default reasoning effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_reasoning_effort: Option<ReasoningEffort>,
    /// Supported reasoning efforts.
    #[serde(default)]
    pub supported_reasoning_efforts: Vec<ReasoningEffortOption>,
    /// Service tiers (Fast Mode, ...).
    #[serde(default)]
    pub service_tiers: Vec<ModelServiceTier>,
    /// Default service tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_service_tier: Option<String>,
    /// `"text"`, `"image"`, `"audio"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_modalities: Option<Vec<String>>,
    /// Suggested upgrade model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<String>,
}

/// Response of `model/list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ModelListResponse {
    /// Models of this page.
    #[serde(default)]
    pub data: Vec<Model>,
    /// Next page cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Params of `config/read`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConfigReadParams {
    /// Resolve project config for this directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Also return the config layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_layers: Option<bool>,
}

/// Response of `config/read`. The config keeps the **snake_case** keys of `config.toml`
/// (`model_provider`, `approval_policy`, ...), so it is kept as raw JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConfigReadResponse {
    /// Effective config (snake_case keys).
    #[serde(default)]
    pub config: Map<String, Value>,
    /// Where each key came from.
    #[serde(default)]
    pub origins: Map<String, Value>,
    /// Layers, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Value>>,
}

impl ConfigReadResponse {
    /// A top-level config value by its `config.toml` key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.config.get(key)
    }
}

/// Terminal size for `command/exec` with `tty`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandExecTerminalSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// Params of `command/exec`: run a command directly (no model, no thread) under codex's
/// sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CommandExecParams {
    /// argv (not a shell string).
    pub command: Vec<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Environment overrides; `None` values unset inherited variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, Option<String>>>,
    /// Timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Sandbox: the **tagged object** form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_policy: Option<SandboxPolicy>,
    /// Client-chosen process id, needed for `command/exec/write|terminate|resize` and for
    /// streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_id: Option<String>,
    /// Run under a PTY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// PTY size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<CommandExecTerminalSize>,
    /// Accept stdin through `command/exec/write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_stdin: Option<bool>,
    /// Stream output through `command/exec/outputDelta` notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_stdout_stderr: Option<bool>,
    /// Cap on captured output bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes_cap: Option<u64>,
    /// Additional fields sent verbatim (for fields this crate does not type).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CommandExecParams {
    /// Run `argv` with the defaults.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            command: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Response of `command/exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CommandExecResponse {
    /// Exit code.
    pub exit_code: i32,
    /// Captured stdout.
    #[serde(default)]
    pub stdout: String,
    /// Captured stderr.
    #[serde(default)]
    pub stderr: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn login_params_shapes() {
        assert_eq!(
            serde_json::to_value(LoginAccountParams::api_key("sk-1")).unwrap(),
            json!({"type": "apiKey", "apiKey": "sk-1"})
        );
        assert_eq!(
            serde_json::to_value(LoginAccountParams::chatgpt()).unwrap(),
            json!({"type": "chatgpt"})
        );
        let r: LoginAccountResponse = serde_json::from_value(
            json!({"type": "chatgpt", "loginId": "l", "authUrl": "https://auth"}),
        )
        .unwrap();
        assert!(matches!(r, LoginAccountResponse::Chatgpt(ref s) if s.auth_url == "https://auth"));
    }

    #[test]
    fn account_read_shapes() {
        let r: GetAccountResponse = serde_json::from_value(json!({"account": null, "userId": null,
            "requiresOpenaiAuth": false, "workspaceRouting": null}))
        .unwrap();
        assert_eq!(r.account, None);
        let r: GetAccountResponse = serde_json::from_value(json!({"account": {"type": "chatgpt",
            "email": "a@b.c", "planType": "plus"}, "requiresOpenaiAuth": true}))
        .unwrap();
        assert!(matches!(r.account, Some(Account::Chatgpt(ref c)) if c.plan_type == "plus"));
    }

    #[test]
    fn user_agent_version() {
        let r = InitializeResponse {
            user_agent: "codex-bridge/0.169.0 (Debian 12.0.0; x86_64) xterm (codex-bridge; 0.1.0)"
                .into(),
            ..InitializeResponse::default()
        };
        assert_eq!(r.codex_version(), Some("0.169.0"));
    }
}
