//! What to run: [`TaskSpec`], presets, and the sandbox / approval policies.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{AuthMode, Feature};
use crate::error::{Error, Result};

/// Where commands run by Codex may read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SandboxMode {
    /// Read anywhere, write nowhere.
    ReadOnly,
    /// Write inside the working directory and the extra writable directories only.
    WorkspaceWrite,
    /// No sandbox at all. Only for environments that are sandboxed from the outside.
    DangerFullAccess,
}

impl SandboxMode {
    /// The kebab-case name codex uses on its command line and in `config.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::ReadOnly => "read-only",
            SandboxMode::WorkspaceWrite => "workspace-write",
            SandboxMode::DangerFullAccess => "danger-full-access",
        }
    }

    /// Whether commands may write files at all.
    pub fn allows_writes(self) -> bool {
        !matches!(self, SandboxMode::ReadOnly)
    }
}

/// When Codex asks a human before running a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ApprovalPolicy {
    /// Ask before any command that is not known to be safe.
    Untrusted,
    /// Ask only when a command fails in the sandbox (deprecated by codex, still accepted).
    OnFailure,
    /// The model decides when to ask (e.g. to leave the sandbox).
    OnRequest,
    /// Never ask; failures go back to the model.
    Never,
}

impl ApprovalPolicy {
    /// The kebab-case name codex uses in `config.toml` and on its command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalPolicy::Untrusted => "untrusted",
            ApprovalPolicy::OnFailure => "on-failure",
            ApprovalPolicy::OnRequest => "on-request",
            ApprovalPolicy::Never => "never",
        }
    }
}

/// How hard the model thinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReasoningEffort {
    /// No reasoning.
    None,
    /// Minimal reasoning.
    Minimal,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Extra high.
    Xhigh,
}

impl ReasoningEffort {
    /// The lowercase name codex uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::None => "none",
            ReasoningEffort::Minimal => "minimal",
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
            ReasoningEffort::Xhigh => "xhigh",
        }
    }
}

/// The service tier of a request. [`ServiceTier::Fast`] is Codex's "Fast Mode".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ServiceTier {
    /// Fast Mode (sent to the model as the "priority" tier). Needs ChatGPT sign-in.
    Fast,
    /// Flex processing.
    Flex,
}

impl ServiceTier {
    /// The value of codex's `service_tier` setting.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTier::Fast => "fast",
            ServiceTier::Flex => "flex",
        }
    }
}

macro_rules! impl_from_str {
    ($ty:ident, $what:literal, [$($variant:ident),+ $(,)?]) => {
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $(if s == $ty::$variant.as_str() { return Ok($ty::$variant); })+
                Err(Error::InvalidSpec {
                    field: $what,
                    reason: format!(
                        "unknown value {s:?}; expected one of: {}",
                        [$($ty::$variant.as_str()),+].join(", ")
                    ),
                })
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
impl_from_str!(
    SandboxMode,
    "sandbox",
    [ReadOnly, WorkspaceWrite, DangerFullAccess]
);
impl_from_str!(
    ApprovalPolicy,
    "approval_policy",
    [Untrusted, OnFailure, OnRequest, Never]
);
impl_from_str!(
    ReasoningEffort,
    "effort",
    [None, Minimal, Low, Medium, High, Xhigh]
);
impl_from_str!(ServiceTier, "service_tier", [Fast, Flex]);

/// Named combinations of sandbox and approval policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Preset {
    /// The classic `codex --full-auto`: workspace-write sandbox, approvals on request.
    ///
    /// Recent codex versions removed the `--full-auto` flag; backends map this preset to
    /// whatever the installed version accepts (see `CodexBinary::capabilities`).
    FullAuto,
    /// Read-only sandbox; approvals on request.
    ReadOnly,
    /// No sandbox and no approvals. Only for externally sandboxed environments.
    DangerFullAccess,
}

impl Preset {
    /// The sandbox mode of this preset.
    pub fn sandbox(self) -> SandboxMode {
        match self {
            Preset::FullAuto => SandboxMode::WorkspaceWrite,
            Preset::ReadOnly => SandboxMode::ReadOnly,
            Preset::DangerFullAccess => SandboxMode::DangerFullAccess,
        }
    }

    /// The approval policy of this preset.
    pub fn approval(self) -> ApprovalPolicy {
        match self {
            Preset::FullAuto | Preset::ReadOnly => ApprovalPolicy::OnRequest,
            Preset::DangerFullAccess => ApprovalPolicy::Never,
        }
    }
}

/// One `key = value` override of codex's configuration (`-c key=value` on the command line,
/// the `config` object in app-server requests).
///
/// The key is a dotted path (`shell_environment_policy.inherit`); the value is structured
/// data. Backends render it in their own format (TOML for the command line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigOverride {
    /// Dotted key.
    pub key: String,
    /// Value.
    pub value: serde_json::Value,
}

/// Everything needed to run one turn of Codex, independent of the backend.
///
/// Build it with [`TaskSpec::new`] and the builder methods; every field is public for reading.
///
/// ```
/// use codex_core::{Preset, TaskSpec};
/// let spec = TaskSpec::new("fix the failing test")
///     .cwd("/tmp")
///     .preset(Preset::FullAuto)
///     .timeout(std::time::Duration::from_secs(600));
/// assert_eq!(spec.sandbox, Some(codex_core::SandboxMode::WorkspaceWrite));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskSpec {
    /// The instruction for Codex.
    pub prompt: String,
    /// Extra text inputs appended after the prompt (context blocks, file excerpts).
    pub inputs: Vec<String>,
    /// Working directory (Codex's workspace root). `None`: the caller's current directory.
    pub cwd: Option<PathBuf>,
    /// Extra directories Codex may write to besides `cwd`.
    pub writable_dirs: Vec<PathBuf>,
    /// Model slug; `None`: codex's configured default.
    pub model: Option<String>,
    /// Reasoning effort; `None`: codex's default.
    pub effort: Option<ReasoningEffort>,
    /// A JSON Schema the final answer must follow.
    pub output_schema: Option<serde_json::Value>,
    /// Images attached to the prompt.
    pub images: Vec<PathBuf>,
    /// Sandbox mode; `None`: codex's configured default.
    pub sandbox: Option<SandboxMode>,
    /// Approval policy; `None`: codex's configured default.
    pub approval: Option<ApprovalPolicy>,
    /// Service tier (Fast Mode); `None`: default.
    pub service_tier: Option<ServiceTier>,
    /// Configuration overrides, applied in order.
    pub config: Vec<ConfigOverride>,
    /// Extra environment variables for the codex process.
    pub env: BTreeMap<String, String>,
    /// Give up (and stop codex) after this long. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Allow running outside a git repository.
    pub skip_git_repo_check: bool,
    /// Do not persist the thread on disk (it cannot be resumed later).
    pub ephemeral: bool,
}

impl TaskSpec {
    /// A task with this prompt and every other setting at codex's defaults.
    pub fn new(prompt: impl Into<String>) -> Self {
        TaskSpec {
            prompt: prompt.into(),
            ..TaskSpec::default()
        }
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Adds an extra writable directory.
    pub fn writable_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.writable_dirs.push(dir.into());
        self
    }

    /// Appends a text input after the prompt.
    pub fn input(mut self, text: impl Into<String>) -> Self {
        self.inputs.push(text.into());
        self
    }

    /// Sets the model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the reasoning effort.
    pub fn effort(mut self, effort: ReasoningEffort) -> Self {
        self.effort = Some(effort);
        self
    }

    /// Requires the final answer to follow this JSON Schema.
    pub fn output_schema(mut self, schema: serde_json::Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    /// Attaches an image.
    pub fn image(mut self, path: impl Into<PathBuf>) -> Self {
        self.images.push(path.into());
        self
    }

    /// Sets the sandbox mode.
    pub fn sandbox(mut self, mode: SandboxMode) -> Self {
        self.sandbox = Some(mode);
        self
    }

    /// Sets the approval policy.
    pub fn approval(mut self, policy: ApprovalPolicy) -> Self {
        self.approval = Some(policy);
        self
    }

    /// Applies a preset (sandbox mode and approval policy together).
    pub fn preset(mut self, preset: Preset) -> Self {
        self.sandbox = Some(preset.sandbox());
        self.approval = Some(preset.approval());
        self
    }

    /// Sets the service tier.
    pub fn service_tier(mut self, tier: ServiceTier) -> Self {
        self.service_tier = Some(tier);
        self
    }

    /// Adds a configuration override.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.config.push(ConfigOverride {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Sets an environment variable for the codex process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Allows running outside a git repository.
    pub fn skip_git_repo_check(mut self, yes: bool) -> Self {
        self.skip_git_repo_check = yes;
        self
    }

    /// Marks the thread as ephemeral (not persisted, not resumable).
    pub fn ephemeral(mut self, yes: bool) -> Self {
        self.ephemeral = yes;
        self
    }

    /// The prompt with the extra inputs appended, as codex receives it.
    pub fn full_prompt(&self) -> String {
        let mut text = self.prompt.clone();
        for input in &self.inputs {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(input);
        }
        text
    }

    /// The roots Codex may write to under this spec (empty for a read-only sandbox).
    pub fn writable_roots(&self) -> Vec<PathBuf> {
        if matches!(self.sandbox, Some(SandboxMode::ReadOnly)) {
            return Vec::new();
        }
        let mut roots = Vec::new();
        let cwd = match &self.cwd {
            Some(c) => Some(c.clone()),
            None => std::env::current_dir().ok(),
        };
        roots.extend(cwd);
        roots.extend(self.writable_dirs.iter().cloned());
        roots
    }

    /// Checks the spec for mistakes that would otherwise surface as confusing codex errors:
    /// an empty prompt, a missing working directory, missing images or writable dirs, a zero
    /// timeout, a non-object output schema, an empty config key.
    pub fn validate(&self) -> Result<()> {
        if self.full_prompt().trim().is_empty() && self.images.is_empty() {
            return Err(invalid("prompt", "the prompt is empty"));
        }
        if let Some(cwd) = &self.cwd {
            require_dir("cwd", cwd)?;
        }
        for dir in &self.writable_dirs {
            require_dir("writable_dirs", dir)?;
        }
        for image in &self.images {
            if !image.is_file() {
                return Err(invalid(
                    "images",
                    format!("{} is not a readable file", image.display()),
                ));
            }
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(invalid(
                "timeout",
                "a zero timeout would stop codex at once",
            ));
        }
        if let Some(schema) = &self.output_schema
            && !schema.is_object()
        {
            return Err(invalid(
                "output_schema",
                "a JSON Schema must be a JSON object",
            ));
        }
        for o in &self.config {
            if o.key.trim().is_empty() || o.key.contains(char::is_whitespace) {
                return Err(invalid("config", format!("bad key {:?}", o.key)));
            }
        }
        if let Some(model) = &self.model
            && model.trim().is_empty()
        {
            return Err(invalid("model", "the model name is empty"));
        }
        Ok(())
    }

    /// Refuses what the sign-in `auth` certainly cannot do for this spec: Fast Mode with an
    /// API key or another model provider (Fast Mode needs ChatGPT sign-in). Call before any
    /// request is made.
    ///
    /// [`AuthMode::None`] is never refused here (codex may find a key in its environment or
    /// refresh its session): a run that codex then rejects ends in
    /// [`Error::AuthRejected`] with codex's own message.
    pub fn check_auth(&self, auth: &AuthMode) -> Result<()> {
        if self.service_tier == Some(ServiceTier::Fast) {
            if auth.rules_out(Feature::FastMode) {
                auth.require(Feature::FastMode)?;
            } else if *auth == AuthMode::None {
                tracing::warn!(
                    "Fast Mode needs ChatGPT sign-in and `codex login status` reports none; \
                     running anyway (codex may refresh its session)"
                );
            }
        }
        Ok(())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        field,
        reason: reason.into(),
    }
}

fn require_dir(field: &'static str, dir: &Path) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{} is not an existing directory", dir.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_auto_is_workspace_write_on_request() {
        let spec = TaskSpec::new("x").preset(Preset::FullAuto);
        assert_eq!(spec.sandbox, Some(SandboxMode::WorkspaceWrite));
        assert_eq!(spec.approval, Some(ApprovalPolicy::OnRequest));
    }

    #[test]
    fn parse_policies_and_name_bad_values() {
        assert_eq!(
            "workspace-write".parse::<SandboxMode>().unwrap(),
            SandboxMode::WorkspaceWrite
        );
        assert_eq!(
            "on-request".parse::<ApprovalPolicy>().unwrap(),
            ApprovalPolicy::OnRequest
        );
        assert_eq!(
            "xhigh".parse::<ReasoningEffort>().unwrap(),
            ReasoningEffort::Xhigh
        );
        let err = "sometimes"
            .parse::<ApprovalPolicy>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("approval_policy") && err.contains("sometimes"),
            "{err}"
        );
        assert!(err.contains("on-request"), "{err}");
    }

    #[test]
    fn validate_names_the_field() {
        let err = TaskSpec::new("  ").validate().unwrap_err().to_string();
        assert!(err.contains("prompt"), "{err}");
        let err = TaskSpec::new("x")
            .cwd("/definitely/not/here")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("cwd"), "{err}");
        let err = TaskSpec::new("x")
            .timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
        let err = TaskSpec::new("x")
            .output_schema(serde_json::json!(3))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("output_schema"), "{err}");
        TaskSpec::new("x").cwd("/").validate().unwrap();
    }

    #[test]
    fn fast_mode_needs_chatgpt() {
        let spec = TaskSpec::new("x").service_tier(ServiceTier::Fast);
        let err = spec.check_auth(&AuthMode::ApiKey).unwrap_err();
        assert!(matches!(
            err,
            Error::FeatureUnavailable {
                feature: Feature::FastMode,
                ..
            }
        ));
        assert!(err.to_string().contains("Fast Mode"), "{err}");
        spec.check_auth(&AuthMode::ChatGpt {
            plan: Some("plus".into()),
            email: None,
        })
        .unwrap();
        let err = spec
            .check_auth(&AuthMode::OtherProvider {
                name: "ollama".into(),
            })
            .unwrap_err();
        assert!(matches!(err, Error::FeatureUnavailable { .. }), "{err}");
        // "not logged in" is no certainty: codex may refresh its session
        spec.check_auth(&AuthMode::None).unwrap();
        TaskSpec::new("x").check_auth(&AuthMode::None).unwrap();
    }

    #[test]
    fn full_prompt_appends_inputs() {
        let spec = TaskSpec::new("task").input("ctx one").input("ctx two");
        assert_eq!(spec.full_prompt(), "task\n\nctx one\n\nctx two");
    }
}
