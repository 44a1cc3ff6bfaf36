//! A [`TaskSpec`] on the wire: the `thread/start` overrides and `turn/start` params.

use std::path::{Path, PathBuf};

use codex_core::{ApprovalPolicy, ReasoningEffort, SandboxMode, ServiceTier, TaskSpec};
use serde_json::{Map, Value, json};

use crate::protocol::{
    self, AskForApproval, SandboxPolicy, ThreadOverrides, TurnStartParams, UserInput,
    WireSandboxMode,
};

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> codex_core::Error {
    codex_core::Error::InvalidSpec {
        field,
        reason: reason.into(),
    }
}

pub(super) fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The absolute form of `path` (relative paths are taken from the current directory).
pub(super) fn absolute(path: &Path, field: &'static str) -> codex_core::Result<PathBuf> {
    std::path::absolute(path).map_err(|e| invalid(field, format!("{}: {e}", path.display())))
}

/// The absolute, canonical form of an existing directory (codex stores canonical cwds).
pub(super) fn absolute_dir(path: &Path, field: &'static str) -> codex_core::Result<PathBuf> {
    let abs = absolute(path, field)?;
    Ok(abs.canonicalize().unwrap_or(abs))
}

pub(super) fn wire_sandbox(mode: SandboxMode) -> WireSandboxMode {
    match mode {
        SandboxMode::ReadOnly => WireSandboxMode::ReadOnly,
        SandboxMode::WorkspaceWrite => WireSandboxMode::WorkspaceWrite,
        SandboxMode::DangerFullAccess => WireSandboxMode::DangerFullAccess,
        other => WireSandboxMode::Other(other.as_str().to_owned()),
    }
}

pub(super) fn wire_approval(policy: ApprovalPolicy) -> AskForApproval {
    match policy {
        ApprovalPolicy::Untrusted => AskForApproval::Untrusted,
        ApprovalPolicy::OnRequest => AskForApproval::OnRequest,
        ApprovalPolicy::Never => AskForApproval::Never,
        other => AskForApproval::Other(Value::String(other.as_str().to_owned())),
    }
}

pub(super) fn wire_effort(effort: ReasoningEffort) -> protocol::ReasoningEffort {
    use protocol::ReasoningEffort as W;
    match effort {
        ReasoningEffort::None => W::None,
        ReasoningEffort::Minimal => W::Minimal,
        ReasoningEffort::Low => W::Low,
        ReasoningEffort::Medium => W::Medium,
        ReasoningEffort::High => W::High,
        ReasoningEffort::Xhigh => W::XHigh,
        other => W::Other(other.as_str().to_owned()),
    }
}

/// The service tier id on the wire (Fast Mode is the `priority` tier of `model/list`).
pub(super) fn wire_service_tier(tier: ServiceTier) -> String {
    match tier {
        ServiceTier::Fast => "priority".to_owned(),
        other => other.as_str().to_owned(),
    }
}

pub(super) fn writable_dirs(spec: &TaskSpec) -> codex_core::Result<Vec<String>> {
    spec.writable_dirs
        .iter()
        .map(|d| absolute_dir(d, "writable_dirs").map(|p| path_string(&p)))
        .collect()
}

/// The `thread/start` / `thread/resume` overrides of `spec`. `default_cwd`: send the current
/// directory when the spec has no cwd (new threads); a resumed thread keeps its own.
pub(super) fn thread_overrides(
    spec: &TaskSpec,
    default_cwd: bool,
) -> codex_core::Result<ThreadOverrides> {
    let mut overrides = ThreadOverrides::default();
    let cwd = match &spec.cwd {
        Some(cwd) => Some(absolute_dir(cwd, "cwd")?),
        None if default_cwd => Some(
            std::env::current_dir()
                .map_err(|e| codex_core::Error::io("reading the current directory", e))?,
        ),
        None => None,
    };
    overrides.cwd = cwd.as_deref().map(path_string);
    overrides.model = spec.model.clone();
    overrides.sandbox = spec.sandbox.map(wire_sandbox);
    overrides.approval_policy = spec.approval.map(wire_approval);
    overrides.service_tier = spec.service_tier.map(wire_service_tier);
    let mut config = Map::new();
    let dirs = writable_dirs(spec)?;
    if !dirs.is_empty() {
        config.insert("sandbox_workspace_write.writable_roots".into(), json!(dirs));
    }
    for o in &spec.config {
        config.insert(o.key.clone(), o.value.clone());
    }
    overrides.config = (!config.is_empty()).then_some(config);
    Ok(overrides)
}

/// The `turn/start` params of `spec` on `thread_id`.
pub(super) fn turn_params(thread_id: &str, spec: &TaskSpec) -> codex_core::Result<TurnStartParams> {
    let mut input = Vec::new();
    let text = spec.full_prompt();
    if !text.is_empty() {
        input.push(UserInput::text(text));
    }
    for image in &spec.images {
        input.push(UserInput::local_image(path_string(&absolute(
            image, "images",
        )?)));
    }
    let mut params = TurnStartParams::new(thread_id, input);
    params.approval_policy = spec.approval.map(wire_approval);
    params.sandbox_policy = match spec.sandbox {
        Some(SandboxMode::ReadOnly) => Some(SandboxPolicy::read_only()),
        Some(SandboxMode::WorkspaceWrite) => {
            Some(SandboxPolicy::workspace_write(writable_dirs(spec)?, false))
        }
        Some(SandboxMode::DangerFullAccess) => Some(SandboxPolicy::DangerFullAccess),
        _ => None,
    };
    params.model = spec.model.clone();
    params.effort = spec.effort.map(wire_effort);
    params.output_schema = spec.output_schema.clone();
    params.service_tier = spec.service_tier.map(wire_service_tier);
    Ok(params)
}
