//! Wire enums and small shapes shared by several requests: sandbox and approval policies,
//! reasoning settings and user input.

use serde::{Deserialize, Serialize};
use serde_json::Value;

string_enum! {
    /// Sandbox mode as a **kebab-case string**: the shape taken by `thread/start`,
    /// `thread/resume` and `thread/fork` (field `sandbox`).
    ///
    /// `turn/start` and `command/exec` take the tagged object [`SandboxPolicy`] instead, and
    /// the `thread/*` responses report the effective policy as a [`SandboxPolicy`] too.
    pub enum WireSandboxMode {
        /// `"read-only"`.
        ReadOnly = "read-only",
        /// `"workspace-write"`.
        WorkspaceWrite = "workspace-write",
        /// `"danger-full-access"`.
        DangerFullAccess = "danger-full-access",
    }
}

string_enum! {
    /// Network access of an [`SandboxPolicy::ExternalSandbox`] policy.
    pub enum NetworkAccess {
        /// `"restricted"` (the default).
        Restricted = "restricted",
        /// `"enabled"`.
        Enabled = "enabled",
    }
}

/// Payload of [`SandboxPolicy::ReadOnly`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReadOnlySandboxPolicy {
    /// Whether commands may use the network (default `false`).
    #[serde(default)]
    pub network_access: bool,
}

/// Payload of [`SandboxPolicy::ExternalSandbox`]: codex runs commands unsandboxed because the
/// caller already sandboxes the whole process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExternalSandboxPolicy {
    /// Network access the external sandbox allows (default `"restricted"`).
    #[serde(default = "default_network_access")]
    pub network_access: NetworkAccess,
}

fn default_network_access() -> NetworkAccess {
    NetworkAccess::Restricted
}

/// Payload of [`SandboxPolicy::WorkspaceWrite`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WorkspaceWriteSandboxPolicy {
    /// Extra writable roots (absolute paths) besides the working directory.
    #[serde(default)]
    pub writable_roots: Vec<String>,
    /// Whether commands may use the network (default `false`).
    #[serde(default)]
    pub network_access: bool,
    /// Do not make `$TMPDIR` writable (default `false`).
    #[serde(default)]
    pub exclude_tmpdir_env_var: bool,
    /// Do not make `/tmp` writable (default `false`).
    #[serde(default)]
    pub exclude_slash_tmp: bool,
}

tagged_enum! {
    /// Sandbox policy as a **tagged object** `{"type": "readOnly" | "workspaceWrite" |
    /// "dangerFullAccess" | "externalSandbox", ...}`: the shape taken by `turn/start`
    /// (`sandboxPolicy`) and `command/exec`, and reported by the `thread/*` responses
    /// (`sandbox`).
    ///
    /// `thread/start`/`resume`/`fork` take the kebab-case [`WireSandboxMode`] string instead.
    pub enum SandboxPolicy (tag = "type") {
        unit {
            /// `{"type":"dangerFullAccess"}`: no sandbox.
            DangerFullAccess = "dangerFullAccess",
        }
        data {
            /// `{"type":"readOnly","networkAccess":false}`.
            ReadOnly(ReadOnlySandboxPolicy) = "readOnly",
            /// `{"type":"workspaceWrite","writableRoots":[..],"networkAccess":false,...}`.
            WorkspaceWrite(WorkspaceWriteSandboxPolicy) = "workspaceWrite",
            /// `{"type":"externalSandbox","networkAccess":"restricted"}`.
            ExternalSandbox(ExternalSandboxPolicy) = "externalSandbox",
        }
    }
}

impl SandboxPolicy {
    /// `{"type":"readOnly","networkAccess":false}`.
    pub fn read_only() -> Self {
        Self::ReadOnly(ReadOnlySandboxPolicy::default())
    }

    /// `{"type":"workspaceWrite", "writableRoots": roots, "networkAccess": network, ...}`.
    pub fn workspace_write(writable_roots: Vec<String>, network_access: bool) -> Self {
        Self::WorkspaceWrite(WorkspaceWriteSandboxPolicy {
            writable_roots,
            network_access,
            ..WorkspaceWriteSandboxPolicy::default()
        })
    }

    /// `{"type":"externalSandbox","networkAccess": network}`.
    pub fn external_sandbox(network_access: NetworkAccess) -> Self {
        Self::ExternalSandbox(ExternalSandboxPolicy { network_access })
    }

    /// The kebab-case mode closest to this policy (`None` for `externalSandbox`/unknown).
    pub fn mode(&self) -> Option<WireSandboxMode> {
        match self {
            Self::DangerFullAccess => Some(WireSandboxMode::DangerFullAccess),
            Self::ReadOnly(_) => Some(WireSandboxMode::ReadOnly),
            Self::WorkspaceWrite(_) => Some(WireSandboxMode::WorkspaceWrite),
            _ => None,
        }
    }
}

/// The fine-grained approval policy (`{"granular": {...}}`, snake_case inner fields).
///
/// The server answers -32600 "askForApproval.granular requires experimentalApi capability"
/// unless `initialize` declared `capabilities.experimentalApi: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GranularApprovalPolicy {
    /// Ask before escaping the sandbox.
    pub sandbox_approval: bool,
    /// Ask for exec-policy rule matches.
    pub rules: bool,
    /// Ask before using skills.
    #[serde(default)]
    pub skill_approval: bool,
    /// Ask on `request_permissions` tool calls.
    #[serde(default)]
    pub request_permissions: bool,
    /// Forward MCP elicitations.
    pub mcp_elicitations: bool,
}

/// Approval policy on the wire (field `approvalPolicy` of `thread/start`, `thread/resume`,
/// `thread/fork` and `turn/start`, and of the `thread/*` responses): the strings
/// `"untrusted"`, `"on-request"`, `"never"` (kebab-case), or `{"granular": {...}}`.
///
/// Note: since 0.169.0 `approval_policy = "untrusted"` in `config.toml` is a fatal config error
/// ("no longer supported"), but `approvalPolicy: "untrusted"` on the wire is accepted and makes
/// every non-trivial command ask for approval.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AskForApproval {
    /// `"untrusted"`: ask for every command not known to be safe.
    Untrusted,
    /// `"on-request"`: the model decides when to ask (escalations).
    OnRequest,
    /// `"never"`: never ask; failures go back to the model.
    Never,
    /// `{"granular": {...}}` (experimental API only).
    Granular(GranularApprovalPolicy),
    /// Any other value (for example `"on-failure"` from older versions), kept verbatim.
    Other(Value),
}

impl AskForApproval {
    /// The wire string for the plain variants (`None` for granular/other objects).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Untrusted => Some("untrusted"),
            Self::OnRequest => Some("on-request"),
            Self::Never => Some("never"),
            Self::Granular(_) => None,
            Self::Other(v) => v.as_str(),
        }
    }
}

impl Serialize for AskForApproval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Granular(g) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("granular", g)?;
                map.end()
            }
            Self::Other(v) => v.serialize(serializer),
            plain => serializer.serialize_str(plain.as_str().unwrap_or_default()),
        }
    }
}

impl<'de> Deserialize<'de> for AskForApproval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(match value.as_str() {
            Some("untrusted") => Self::Untrusted,
            Some("on-request") => Self::OnRequest,
            Some("never") => Self::Never,
            _ => match value.get("granular") {
                Some(g) => match GranularApprovalPolicy::deserialize(g) {
                    Ok(g) => Self::Granular(g),
                    Err(_) => Self::Other(value),
                },
                None => Self::Other(value),
            },
        })
    }
}

string_enum! {
    /// Who reviews approval requests (`approvalsReviewer`).
    pub enum ApprovalsReviewer {
        /// `"user"`: the client (the default).
        User = "user",
        /// `"auto_review"`: a reviewing sub-agent.
        AutoReview = "auto_review",
        /// `"guardian_subagent"`.
        GuardianSubagent = "guardian_subagent",
    }
}

string_enum! {
    /// Reasoning effort (`effort` on `turn/start`, `reasoningEffort` in responses). The schema
    /// types it as any non-empty string advertised by the model (see `model/list`).
    pub enum ReasoningEffort {
        /// `"none"`.
        None = "none",
        /// `"minimal"`.
        Minimal = "minimal",
        /// `"low"`.
        Low = "low",
        /// `"medium"`.
        Medium = "medium",
        /// `"high"`.
        High = "high",
        /// `"xhigh"`.
        XHigh = "xhigh",
    }
}

string_enum! {
    /// Reasoning summary mode (`summary` on `turn/start`).
    pub enum ReasoningSummary {
        /// `"auto"`.
        Auto = "auto",
        /// `"concise"`.
        Concise = "concise",
        /// `"detailed"`.
        Detailed = "detailed",
        /// `"none"`: no summaries.
        None = "none",
    }
}

string_enum! {
    /// Image detail of an image input.
    pub enum ImageDetail {
        /// `"auto"`.
        Auto = "auto",
        /// `"low"`.
        Low = "low",
        /// `"high"`.
        High = "high",
        /// `"original"`.
        Original = "original",
    }
}

/// A byte range inside a text input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ByteRange {
    /// Start offset (bytes, inclusive).
    pub start: u64,
    /// End offset (bytes, exclusive).
    pub end: u64,
}

/// A UI-defined span inside a text input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TextElement {
    /// Where the element is in the text.
    pub byte_range: ByteRange,
    /// Text shown in place of the element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
}

/// Payload of [`UserInput::Text`]. Note the snake_case `text_elements` (the one snake_case
/// field of the v2 input shapes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TextInput {
    /// The text.
    pub text: String,
    /// UI spans within `text` (usually empty; always sent).
    #[serde(default)]
    pub text_elements: Vec<TextElement>,
}

/// Payload of [`UserInput::Image`] and [`UserInput::Audio`]: exactly one of `url` / `fileId`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RemoteMediaInput {
    /// An http(s) or data URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An uploaded file id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// Image detail (images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
}

/// Payload of [`UserInput::LocalImage`] and [`UserInput::LocalAudio`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LocalMediaInput {
    /// Path of the file on the app-server's machine.
    pub path: String,
    /// Image detail (images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
}

/// Payload of [`UserInput::Skill`] and [`UserInput::Mention`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NamedPathInput {
    /// Display name.
    pub name: String,
    /// Path of the skill / mentioned file.
    pub path: String,
}

tagged_enum! {
    /// One element of the `input` of `turn/start` / `turn/steer` (and of `userMessage`
    /// items), tagged on `type`.
    pub enum UserInput (tag = "type") {
        unit {}
        data {
            /// `{"type":"text","text":..,"text_elements":[]}`.
            Text(TextInput) = "text",
            /// `{"type":"image","url":..}` or `{"type":"image","fileId":..}`.
            Image(RemoteMediaInput) = "image",
            /// `{"type":"localImage","path":..}`.
            LocalImage(LocalMediaInput) = "localImage",
            /// `{"type":"audio","url":..}` or `{"type":"audio","fileId":..}`.
            Audio(RemoteMediaInput) = "audio",
            /// `{"type":"localAudio","path":..}`.
            LocalAudio(LocalMediaInput) = "localAudio",
            /// `{"type":"skill","name":..,"path":..}`.
            Skill(NamedPathInput) = "skill",
            /// `{"type":"mention","name":..,"path":..}`.
            Mention(NamedPathInput) = "mention",
        }
    }
}

impl UserInput {
    /// A text input.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(TextInput {
            text: text.into(),
            text_elements: Vec::new(),
        })
    }

    /// An image given by URL.
    pub fn image_url(url: impl Into<String>) -> Self {
        Self::Image(RemoteMediaInput {
            url: Some(url.into()),
            ..RemoteMediaInput::default()
        })
    }

    /// An image file on the app-server's machine.
    pub fn local_image(path: impl Into<String>) -> Self {
        Self::LocalImage(LocalMediaInput {
            path: path.into(),
            detail: None,
        })
    }

    /// The text of a text input.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(&t.text),
            _ => None,
        }
    }
}

/// An empty params object for methods that take none (`account/logout`). It serializes as `{}`; codex 0.169.0 accepts `{}`, `null` and
/// an absent `params` alike for them, and deserializing accepts all three.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyParams;

impl Serialize for EmptyParams {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        serializer.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for EmptyParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _ = Option::<serde::de::IgnoredAny>::deserialize(deserializer)?;
        Ok(Self)
    }
}

/// The `{}` result of methods that return nothing (`thread/archive`, `turn/interrupt`,
/// `account/logout`, ...). Deserializing ignores any field a newer codex may add and also
/// accepts `null`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyResponse;

impl Serialize for EmptyResponse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EmptyParams.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EmptyResponse {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        EmptyParams::deserialize(deserializer).map(|_| Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sandbox_shapes() {
        assert_eq!(
            serde_json::to_value(WireSandboxMode::WorkspaceWrite).unwrap(),
            json!("workspace-write")
        );
        assert_eq!(
            serde_json::to_value(SandboxPolicy::DangerFullAccess).unwrap(),
            json!({"type": "dangerFullAccess"})
        );
        assert_eq!(
            serde_json::to_value(SandboxPolicy::read_only()).unwrap(),
            json!({"type": "readOnly", "networkAccess": false})
        );
        let p: SandboxPolicy =
            serde_json::from_value(json!({"type": "workspaceWrite", "writableRoots": ["/a"]}))
                .unwrap();
        assert_eq!(p, SandboxPolicy::workspace_write(vec!["/a".into()], false));
        let p: SandboxPolicy = serde_json::from_value(json!({"type": "readOnly"})).unwrap();
        assert_eq!(p, SandboxPolicy::read_only());
        let unknown = json!({"type": "seatbelt", "x": 1});
        let p: SandboxPolicy = serde_json::from_value(unknown.clone()).unwrap();
        assert_eq!(p.tag(), Some("seatbelt"));
        assert_eq!(serde_json::to_value(&p).unwrap(), unknown);
        assert!(
            serde_json::from_value::<SandboxPolicy>(
                json!({"type": "readOnly", "networkAccess": "x"})
            )
            .is_err()
        );
    }

    #[test]
    fn approval_shapes() {
        for (v, s) in [
            (AskForApproval::Untrusted, "untrusted"),
            (AskForApproval::OnRequest, "on-request"),
            (AskForApproval::Never, "never"),
        ] {
            assert_eq!(serde_json::to_value(&v).unwrap(), json!(s));
            assert_eq!(
                serde_json::from_value::<AskForApproval>(json!(s)).unwrap(),
                v
            );
        }
        let g = json!({"granular": {"sandbox_approval": true, "rules": false, "skill_approval": false, "request_permissions": false, "mcp_elicitations": true}});
        let a: AskForApproval = serde_json::from_value(g.clone()).unwrap();
        assert!(matches!(a, AskForApproval::Granular(_)));
        assert_eq!(serde_json::to_value(&a).unwrap(), g);
        let other: AskForApproval = serde_json::from_value(json!("on-failure")).unwrap();
        assert_eq!(other, AskForApproval::Other(json!("on-failure")));
        assert_eq!(serde_json::to_value(&other).unwrap(), json!("on-failure"));
    }

    #[test]
    fn string_enum_other() {
        let e: ReasoningEffort = serde_json::from_value(json!("ultra")).unwrap();
        assert_eq!(e, ReasoningEffort::Other("ultra".into()));
        assert_eq!(serde_json::to_value(&e).unwrap(), json!("ultra"));
        assert_eq!(ReasoningEffort::XHigh.to_string(), "xhigh");
    }

    #[test]
    fn user_input_shapes() {
        assert_eq!(
            serde_json::to_value(UserInput::text("hi")).unwrap(),
            json!({"type": "text", "text": "hi", "text_elements": []})
        );
        assert_eq!(
            serde_json::to_value(UserInput::image_url("https://x/y.png")).unwrap(),
            json!({"type": "image", "url": "https://x/y.png"})
        );
        assert_eq!(serde_json::to_value(EmptyParams).unwrap(), json!({}));
        assert_eq!(
            serde_json::from_value::<EmptyParams>(json!(null)).unwrap(),
            EmptyParams
        );
        assert_eq!(
            serde_json::from_value::<EmptyResponse>(json!({"new": 1})).unwrap(),
            EmptyResponse
        );
    }
}
