//! [`DelegateRequest`]: what to delegate, where, and how.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::jobs::JobKind;
use codex_core::{ApprovalPolicy, Preset, ReasoningEffort, SandboxMode, TaskSpec, ThreadId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::prompt::{Context, Intent, OutputStyle, PromptOverride, PromptPlan, Recipe};

/// Which thread the delegated turn runs on.
///
/// ```
/// use codex_agent::Continuation;
/// assert_eq!(Continuation::default(), Continuation::Fresh);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Continuation {
    /// A new thread.
    #[default]
    Fresh,
    /// The thread of the latest finished task of the same workspace (never a review thread,
    /// never another workspace's).
    ResumeLast,
    /// This thread.
    Resume(ThreadId),
}

impl Continuation {
    /// Whether the turn continues an existing thread.
    ///
    /// ```
    /// assert!(codex_agent::Continuation::ResumeLast.is_resume());
    /// ```
    pub fn is_resume(&self) -> bool {
        !matches!(self, Continuation::Fresh)
    }
}

/// Whether the caller waits for the outcome.
///
/// ```
/// use codex_agent::{DelegateRequest, Mode};
/// assert_eq!(Mode::default(), Mode::Foreground);
/// assert!(DelegateRequest::new("x").background(true).is_background());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Mode {
    /// Wait for the outcome.
    #[default]
    Foreground,
    /// Record a job and return its id at once.
    Background,
}

/// A task to delegate to Codex.
///
/// Defaults: [`Intent::Fix`], read-only (sandbox `read-only`), approval policy `never` (a
/// sub-agent has nobody to ask; the sandbox is the guard), the caller's current directory,
/// foreground, a fresh thread, no timeout.
///
/// ```
/// use codex_agent::{Continuation, DelegateRequest};
/// use codex_agent::prompt::Intent;
/// let req = DelegateRequest::new("make `cargo test` pass")
///     .intent(Intent::Fix)
///     .write(true)
///     .branch("fix/tests")
///     .failing_command("cargo test", "test a ... FAILED")
///     .timeout(std::time::Duration::from_secs(900));
/// assert!(req.prompt().contains("<failing_command>"));
/// assert_eq!(req.continuation(), &Continuation::Fresh);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DelegateRequest {
    task: String,
    context: Context,
    intent: Intent,
    output_style: OutputStyle,
    write: bool,
    cwd: Option<PathBuf>,
    writable_dirs: Vec<PathBuf>,
    expected_writes: Vec<PathBuf>,
    model: Option<String>,
    effort: Option<ReasoningEffort>,
    mode: Mode,
    continuation: Continuation,
    timeout: Option<Duration>,
    overrides: Vec<PromptOverride>,
    sandbox: Option<SandboxMode>,
    approval: Option<ApprovalPolicy>,
    skip_git_repo_check: bool,
    #[serde(default)]
    output_schema: Option<serde_json::Value>,
    #[serde(default = "default_job_kind")]
    job_kind: JobKind,
}

fn default_job_kind() -> JobKind {
    JobKind::Task
}

impl DelegateRequest {
    /// A request for `task`, with the defaults above.
    ///
    /// ```
    /// let req = codex_agent::DelegateRequest::new("explain the build");
    /// assert_eq!(req.task(), "explain the build");
    /// ```
    pub fn new(task: impl Into<String>) -> Self {
        DelegateRequest {
            task: task.into(),
            context: Context::default(),
            intent: Intent::default(),
            output_style: OutputStyle::default(),
            write: false,
            cwd: None,
            writable_dirs: Vec::new(),
            expected_writes: Vec::new(),
            model: None,
            effort: None,
            mode: Mode::Foreground,
            continuation: Continuation::Fresh,
            timeout: None,
            overrides: Vec::new(),
            sandbox: None,
            approval: None,
            skip_git_repo_check: false,
            output_schema: None,
            job_kind: JobKind::Task,
        }
    }

    /// Sets the intent (picks the prompt recipe).
    ///
    /// ```
    /// use codex_agent::{DelegateRequest, prompt::Intent};
    /// assert!(DelegateRequest::new("x").intent(Intent::Review).prompt().contains("## Findings"));
    /// ```
    pub fn intent(mut self, intent: Intent) -> Self {
        self.intent = intent;
        self
    }

    /// Sets the shape of the answer.
    ///
    /// ```
    /// use codex_agent::{DelegateRequest, prompt::OutputStyle};
    /// assert!(DelegateRequest::new("x").output_style(OutputStyle::Compact).prompt().contains("at most"));
    /// ```
    pub fn output_style(mut self, style: OutputStyle) -> Self {
        self.output_style = style;
        self
    }

    /// Sets the whole context.
    ///
    /// ```
    /// use codex_agent::{DelegateRequest, prompt::Context};
    /// let req = DelegateRequest::new("x").context(Context::default().branch("main"));
    /// assert!(req.prompt().contains("`main`"));
    /// ```
    pub fn context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    /// Adds a relevant file to the context.
    ///
    /// ```
    /// assert!(codex_agent::DelegateRequest::new("x").file("src/a.rs").prompt().contains("- src/a.rs"));
    /// ```
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.context.files.push(path.into());
        self
    }

    /// Names the branch in the context.
    ///
    /// ```
    /// assert!(codex_agent::DelegateRequest::new("x").branch("dev").prompt().contains("`dev`"));
    /// ```
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.context.branch = Some(branch.into());
        self
    }

    /// Adds a failing command and its output to the context.
    ///
    /// ```
    /// let req = codex_agent::DelegateRequest::new("x").failing_command("make", "boom");
    /// assert!(req.prompt().contains("$ make"));
    /// ```
    pub fn failing_command(
        mut self,
        command: impl Into<String>,
        output: impl Into<String>,
    ) -> Self {
        self.context = self.context.failing_command(command, output);
        self
    }

    /// Allows Codex to write (sandbox `workspace-write`) or not (`read-only`, the default).
    ///
    /// ```
    /// let spec = codex_agent::DelegateRequest::new("x").write(true).cwd("/").to_task_spec().unwrap();
    /// assert_eq!(spec.sandbox, Some(codex_core::SandboxMode::WorkspaceWrite));
    /// ```
    pub fn write(mut self, write: bool) -> Self {
        self.write = write;
        self
    }

    /// Runs Codex in this workspace (its working directory and first writable root).
    ///
    /// ```
    /// let spec = codex_agent::DelegateRequest::new("x").cwd("/tmp").to_task_spec().unwrap();
    /// assert_eq!(spec.cwd.as_deref(), Some(std::path::Path::new("/tmp")));
    /// ```
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Adds a directory Codex may write to besides the workspace (`--add-dir`). It must exist.
    ///
    /// ```
    /// let req = codex_agent::DelegateRequest::new("x").write(true).cwd("/").writable_dir("/tmp");
    /// assert_eq!(req.to_task_spec().unwrap().writable_dirs.len(), 1);
    /// ```
    pub fn writable_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.writable_dirs.push(dir.into());
        self
    }

    /// Declares a path the task is expected to write (absolute, or relative to the
    /// workspace). A path outside every writable root refuses the request before anything
    /// starts, with an error that says how to allow it.
    ///
    /// ```
    /// let req = codex_agent::DelegateRequest::new("x").write(true).cwd("/tmp").expected_write("/etc/passwd");
    /// let err = req.to_task_spec().unwrap_err();
    /// assert!(codex_core::error_chain(&err).contains("--add-dir"), "{err}");
    /// ```
    pub fn expected_write(mut self, path: impl Into<PathBuf>) -> Self {
        self.expected_writes.push(path.into());
        self
    }

    /// Sets the model.
    ///
    /// ```
    /// let spec = codex_agent::DelegateRequest::new("x").cwd("/").model("gpt-5.4").to_task_spec().unwrap();
    /// assert_eq!(spec.model.as_deref(), Some("gpt-5.4"));
    /// ```
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the reasoning effort.
    ///
    /// ```
    /// use codex_core::ReasoningEffort;
    /// let spec = codex_agent::DelegateRequest::new("x").cwd("/").effort(ReasoningEffort::High).to_task_spec().unwrap();
    /// assert_eq!(spec.effort, Some(ReasoningEffort::High));
    /// ```
    pub fn effort(mut self, effort: ReasoningEffort) -> Self {
        self.effort = Some(effort);
        self
    }

    /// Runs in the background (a job, returned at once) or not.
    ///
    /// ```
    /// assert!(codex_agent::DelegateRequest::new("x").background(true).is_background());
    /// ```
    pub fn background(mut self, yes: bool) -> Self {
        self.mode = if yes {
            Mode::Background
        } else {
            Mode::Foreground
        };
        self
    }

    /// Sets the continuation.
    ///
    /// ```
    /// use codex_agent::{Continuation, DelegateRequest};
    /// let req = DelegateRequest::new("and now the docs").continue_with(Continuation::Resume("t-1".into()));
    /// assert_eq!(req.prompt(), "and now the docs");
    /// ```
    pub fn continue_with(mut self, continuation: Continuation) -> Self {
        self.continuation = continuation;
        self
    }

    /// Continues the latest finished task thread of the workspace.
    ///
    /// ```
    /// let req = codex_agent::DelegateRequest::new("x").resume_last();
    /// assert!(req.continuation().is_resume());
    /// ```
    pub fn resume_last(self) -> Self {
        self.continue_with(Continuation::ResumeLast)
    }

    /// Stops Codex after this long.
    ///
    /// ```
    /// let spec = codex_agent::DelegateRequest::new("x").cwd("/").timeout(std::time::Duration::from_secs(5)).to_task_spec().unwrap();
    /// assert_eq!(spec.timeout, Some(std::time::Duration::from_secs(5)));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a change to the recipe's prompt (applied in order).
    ///
    /// ```
    /// use codex_agent::{DelegateRequest, prompt::{BlockKind, PromptOverride}};
    /// let req = DelegateRequest::new("x").prompt_override(PromptOverride::Remove(BlockKind::OutputContract));
    /// assert!(!req.prompt().contains("<output_contract>"));
    /// ```
    pub fn prompt_override(mut self, change: PromptOverride) -> Self {
        self.overrides.push(change);
        self
    }

    /// Replaces the whole prompt with `text`.
    ///
    /// ```
    /// assert_eq!(codex_agent::DelegateRequest::new("x").replace_prompt("just this").prompt(), "just this");
    /// ```
    pub fn replace_prompt(self, text: impl Into<String>) -> Self {
        self.prompt_override(PromptOverride::Whole(text.into()))
    }

    /// Sets the sandbox mode explicitly (instead of deriving it from [`write`](Self::write)).
    ///
    /// ```
    /// use codex_core::SandboxMode;
    /// let spec = codex_agent::DelegateRequest::new("x").cwd("/").sandbox(SandboxMode::DangerFullAccess).to_task_spec().unwrap();
    /// assert_eq!(spec.sandbox, Some(SandboxMode::DangerFullAccess));
    /// ```
    pub fn sandbox(mut self, mode: SandboxMode) -> Self {
        self.sandbox = Some(mode);
        self
    }

    /// Sets the approval policy (default `never`). A policy that may ask rules out the exec
    /// backend.
    ///
    /// ```
    /// use codex_core::ApprovalPolicy;
    /// let spec = codex_agent::DelegateRequest::new("x").cwd("/").approval(ApprovalPolicy::OnRequest).to_task_spec().unwrap();
    /// assert_eq!(spec.approval, Some(ApprovalPolicy::OnRequest));
    /// ```
    pub fn approval(mut self, policy: ApprovalPolicy) -> Self {
        self.approval = Some(policy);
        self
    }

    /// Applies a preset: its sandbox mode and approval policy.
    ///
    /// ```
    /// use codex_core::{ApprovalPolicy, Preset};
    /// let spec = codex_agent::DelegateRequest::new("x").cwd("/").preset(Preset::FullAuto).to_task_spec().unwrap();
    /// assert_eq!(spec.approval, Some(ApprovalPolicy::OnRequest));
    /// ```
    pub fn preset(mut self, preset: Preset) -> Self {
        self.sandbox = Some(preset.sandbox());
        self.approval = Some(preset.approval());
        self.write = preset.sandbox().allows_writes();
        self
    }

    /// Allows running outside a git repository.
    ///
    /// ```
    /// let spec = codex_agent::DelegateRequest::new("x").cwd("/").skip_git_repo_check(true).to_task_spec().unwrap();
    /// assert!(spec.skip_git_repo_check);
    /// ```
    pub fn skip_git_repo_check(mut self, yes: bool) -> Self {
        self.skip_git_repo_check = yes;
        self
    }

    /// Requires the final answer to follow this JSON Schema (an object schema); it becomes
    /// the task spec's output schema.
    ///
    /// ```
    /// let schema = serde_json::json!({"type": "object"});
    /// let req = codex_agent::DelegateRequest::new("x").cwd("/").output_schema(schema.clone());
    /// assert_eq!(req.to_task_spec().unwrap().output_schema, Some(schema));
    /// ```
    pub fn output_schema(mut self, schema: serde_json::Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    /// The kind of the job record this delegation gets (default
    /// [`JobKind::Task`]; only tasks are candidates for "resume last").
    ///
    /// ```
    /// use codex_agent::jobs::JobKind;
    /// let req = codex_agent::DelegateRequest::new("x").job_kind(JobKind::AdversarialReview);
    /// assert_eq!(req.get_job_kind(), JobKind::AdversarialReview);
    /// ```
    pub fn job_kind(mut self, kind: JobKind) -> Self {
        self.job_kind = kind;
        self
    }

    /// The kind of job record this delegation gets.
    ///
    /// ```
    /// assert_eq!(codex_agent::DelegateRequest::new("x").get_job_kind(), codex_agent::jobs::JobKind::Task);
    /// ```
    pub fn get_job_kind(&self) -> JobKind {
        self.job_kind
    }

    /// The task text.
    ///
    /// ```
    /// assert_eq!(codex_agent::DelegateRequest::new("t").task(), "t");
    /// ```
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The intent.
    ///
    /// ```
    /// assert_eq!(codex_agent::DelegateRequest::new("t").get_intent(), codex_agent::prompt::Intent::Fix);
    /// ```
    pub fn get_intent(&self) -> Intent {
        self.intent
    }

    /// Whether Codex may write.
    ///
    /// ```
    /// assert!(!codex_agent::DelegateRequest::new("t").may_write());
    /// ```
    pub fn may_write(&self) -> bool {
        self.write || self.sandbox.is_some_and(SandboxMode::allows_writes)
    }

    /// Whether the request runs in the background.
    ///
    /// ```
    /// assert!(!codex_agent::DelegateRequest::new("t").is_background());
    /// ```
    pub fn is_background(&self) -> bool {
        self.mode == Mode::Background
    }

    /// The continuation.
    ///
    /// ```
    /// assert!(!codex_agent::DelegateRequest::new("t").continuation().is_resume());
    /// ```
    pub fn continuation(&self) -> &Continuation {
        &self.continuation
    }

    /// The timeout.
    ///
    /// ```
    /// assert_eq!(codex_agent::DelegateRequest::new("t").get_timeout(), None);
    /// ```
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The prompt plan, with the overrides applied: the recipe of the intent for a fresh
    /// thread; on resume only the new instruction (and any context given with it).
    ///
    /// ```
    /// use codex_agent::{DelegateRequest, prompt::BlockKind};
    /// let plan = DelegateRequest::new("x").plan();
    /// assert!(plan.block(BlockKind::VerificationLoop).is_some());
    /// assert!(DelegateRequest::new("x").resume_last().plan().block(BlockKind::VerificationLoop).is_none());
    /// ```
    pub fn plan(&self) -> PromptPlan {
        let mut plan = if self.continuation.is_resume() {
            PromptPlan::resume(&self.task, &self.context)
        } else {
            Recipe::new(self.intent)
                .write(self.may_write())
                .style(self.output_style)
                .plan(&self.task, &self.context)
        };
        for change in &self.overrides {
            plan.apply(change);
        }
        plan
    }

    /// The rendered prompt, exactly as Codex will receive it.
    ///
    /// ```
    /// assert!(codex_agent::DelegateRequest::new("x").prompt().starts_with("<task>\nx\n</task>"));
    /// ```
    pub fn prompt(&self) -> String {
        self.plan().render()
    }

    /// The workspace: the request's working directory made absolute, else the caller's.
    ///
    /// ```
    /// let ws = codex_agent::DelegateRequest::new("x").cwd("/tmp").workspace().unwrap();
    /// assert_eq!(ws, std::path::Path::new("/tmp"));
    /// ```
    pub fn workspace(&self) -> Result<PathBuf> {
        let here = || {
            std::env::current_dir().map_err(|e| Error::Refused {
                reason: format!(
                    "the current directory cannot be read ({e}); set the request's cwd"
                ),
                source: None,
            })
        };
        match &self.cwd {
            Some(dir) if dir.is_absolute() => Ok(dir.clone()),
            Some(dir) => Ok(here()?.join(dir)),
            None => here(),
        }
    }

    /// The [`TaskSpec`] this request runs, after the checks that refuse it before anything
    /// starts: an empty task, a working directory or writable directory that does not exist,
    /// an expected write outside every writable root (the error says how to allow it).
    ///
    /// ```
    /// let err = codex_agent::DelegateRequest::new("x").cwd("/tmp").write(true)
    ///     .writable_dir("/no/such/dir").to_task_spec().unwrap_err();
    /// assert!(err.is_refusal() && codex_core::error_chain(&err).contains("create it"), "{err}");
    /// ```
    pub fn to_task_spec(&self) -> Result<TaskSpec> {
        let cwd = self.workspace()?;
        let here = cwd.clone();
        let absolute = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                here.join(p)
            }
        };
        let sandbox = self.sandbox.unwrap_or(if self.write {
            SandboxMode::WorkspaceWrite
        } else {
            SandboxMode::ReadOnly
        });
        let mut spec = TaskSpec::new(self.prompt())
            .cwd(cwd.clone())
            .sandbox(sandbox)
            .approval(self.approval.unwrap_or(ApprovalPolicy::Never))
            .skip_git_repo_check(self.skip_git_repo_check);
        for dir in &self.writable_dirs {
            spec = spec.writable_dir(absolute(dir));
        }
        if let Some(model) = &self.model {
            spec = spec.model(model.clone());
        }
        if let Some(effort) = self.effort {
            spec = spec.effort(effort);
        }
        if let Some(timeout) = self.timeout {
            spec = spec.timeout(timeout);
        }
        if let Some(schema) = &self.output_schema {
            spec = spec.output_schema(schema.clone());
        }
        spec.validate().map_err(|e| refuse_invalid(e, &cwd))?;
        let targets: Vec<PathBuf> = self.expected_writes.iter().map(|p| absolute(p)).collect();
        codex_core::writable_roots::check_writable(&spec, &targets)
            .map_err(|e| Error::before_turn(None, e))?;
        Ok(spec)
    }
}

/// A refusal for an invalid spec, with the fix spelled out.
fn refuse_invalid(err: codex_core::Error, cwd: &Path) -> Error {
    let hint = match &err {
        codex_core::Error::InvalidSpec {
            field: "writable_dirs",
            ..
        } => Some(
            "create it first, or drop it from the request's writable dirs (`DelegateRequest::writable_dir`, `--add-dir`)"
                .to_owned(),
        ),
        codex_core::Error::InvalidSpec { field: "cwd", .. } => Some(format!(
            "create it, or point the request's cwd at an existing workspace (it is {})",
            cwd.display()
        )),
        codex_core::Error::InvalidSpec {
            field: "prompt", ..
        } => Some("give the task some text".to_owned()),
        _ => None,
    };
    // the source says what is wrong; the reason only adds the fix
    Error::Refused {
        reason: hint.unwrap_or_default(),
        source: Some(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_follows_the_request() {
        let ws = tempfile::tempdir().unwrap();
        let extra = tempfile::tempdir().unwrap();
        let spec = DelegateRequest::new("fix it")
            .write(true)
            .cwd(ws.path())
            .writable_dir(extra.path())
            .model("m")
            .effort(ReasoningEffort::Low)
            .timeout(Duration::from_secs(3))
            .expected_write("src/new.rs")
            .expected_write(extra.path().join("out.txt"))
            .to_task_spec()
            .unwrap();
        assert_eq!(spec.cwd.as_deref(), Some(ws.path()));
        assert_eq!(spec.writable_dirs, vec![extra.path().to_owned()]);
        assert_eq!(spec.sandbox, Some(SandboxMode::WorkspaceWrite));
        assert_eq!(spec.approval, Some(ApprovalPolicy::Never));
        assert_eq!(spec.model.as_deref(), Some("m"));
        assert!(spec.prompt.starts_with("<task>\nfix it\n</task>"));
    }

    #[test]
    fn writes_outside_the_workspace_are_refused_with_the_fix() {
        let ws = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let err = DelegateRequest::new("x")
            .write(true)
            .cwd(ws.path())
            .expected_write(other.path().join("f.txt"))
            .to_task_spec()
            .unwrap_err();
        assert!(err.is_refusal());
        let msg = codex_core::error_chain(&err);
        assert!(
            msg.contains("outside its workspace") && msg.contains("--add-dir"),
            "{msg}"
        );

        let err = DelegateRequest::new("x")
            .cwd(ws.path())
            .expected_write("f.txt")
            .to_task_spec()
            .unwrap_err();
        assert!(codex_core::error_chain(&err).contains("--write"), "{err}");

        let err = DelegateRequest::new("x")
            .write(true)
            .cwd(ws.path())
            .writable_dir(ws.path().join("missing"))
            .to_task_spec()
            .unwrap_err();
        let msg = codex_core::error_chain(&err);
        assert!(
            msg.contains("missing") && msg.contains("create it first"),
            "{msg}"
        );

        let err = DelegateRequest::new("x")
            .cwd(ws.path().join("nope"))
            .to_task_spec()
            .unwrap_err();
        assert!(
            codex_core::error_chain(&err).contains("existing workspace"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_are_against_the_workspace() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir(ws.path().join("gen")).unwrap();
        let spec = DelegateRequest::new("x")
            .write(true)
            .cwd(ws.path())
            .writable_dir("gen")
            .to_task_spec()
            .unwrap();
        assert_eq!(spec.writable_dirs, vec![ws.path().join("gen")]);
    }
}
