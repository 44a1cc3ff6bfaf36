//! What a review looks at ([`ReviewScope`], read from git by [`resolve_scope`]), the change
//! itself for prompts ([`scope_diff`]), and the rendering of codex's native review output
//! ([`ReviewOutput`]).

use std::path::Path;
use std::process::{Command, Stdio};

use codex_agent::jobs::{JobPhase, JobResult, JobStatus, JobStore, StoreError};
use codex_asp::AspBackend;
use codex_asp::protocol::{BaseBranchTarget, ReviewTarget};
use codex_core::{Backend, Event, ItemDetails, ThreadId, TurnId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::CompanionError;
use crate::progress::EventCallback;

/// Which scope the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ScopeRequest {
    /// The working tree when it has changes, else the branch.
    #[default]
    Auto,
    /// The uncommitted changes (staged, unstaged, untracked).
    WorkingTree,
    /// The branch against its merge base with the base ref.
    Branch,
}

/// What a review looks at, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ReviewScope {
    /// The uncommitted changes.
    WorkingTree,
    /// The commits of the branch since it left `base`.
    Branch {
        /// The base ref (`origin/main`, `main`...).
        base: String,
    },
}

impl ReviewScope {
    /// A description for prompts and progress lines.
    pub fn describe(&self) -> String {
        match self {
            ReviewScope::WorkingTree => "the uncommitted changes of the working tree".to_owned(),
            ReviewScope::Branch { base } => {
                format!("the changes of the current branch against {base}")
            }
        }
    }
}

/// Runs git in `dir`, returning its trimmed stdout, or a typed error with git's message.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String, CompanionError> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CompanionError::Git {
            command: args.join(" "),
            detail: format!("cannot run git: {e}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(CompanionError::Git {
            command: args.join(" "),
            detail: if stderr.is_empty() {
                output.status.to_string()
            } else {
                stderr
            },
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned())
}

/// Whether `dir` is inside a git work tree.
pub fn is_git_repo(dir: &Path) -> bool {
    git(dir, &["rev-parse", "--is-inside-work-tree"]).is_ok_and(|out| out == "true")
}

/// Whether the work tree of `dir` has uncommitted changes (untracked files included).
pub fn is_dirty(dir: &Path) -> Result<bool, CompanionError> {
    Ok(!git(dir, &["status", "--porcelain", "--untracked-files=normal"])?.is_empty())
}

/// The ref a branch review compares against when none is given: the branch's upstream,
/// else `origin/HEAD`, else `main`, else `master`.
pub fn default_base(dir: &Path) -> Result<String, CompanionError> {
    if let Ok(upstream) = git(
        dir,
        &[
            "rev-parse",
            "--abbrev-ref",
            "--symbolic-full-name",
            "@{upstream}",
        ],
    ) && !upstream.is_empty()
    {
        return Ok(upstream);
    }
    if let Ok(head) = git(
        dir,
        &["symbolic-ref", "--short", "refs/remotes/origin/HEAD"],
    ) && !head.is_empty()
    {
        return Ok(head);
    }
    for candidate in ["main", "master"] {
        if git(dir, &["rev-parse", "--verify", "--quiet", candidate]).is_ok() {
            return Ok(candidate.to_owned());
        }
    }
    Err(CompanionError::usage(
        "no base to review the branch against: the branch has no upstream and there is no origin/HEAD, main or master; pass --base REF",
    ))
}

/// Resolves the scope of a review of the repository at `dir`: `auto` is the working tree
/// when it has changes, else the branch; the base of a branch review is `base` or
/// [`default_base`], and must resolve to a commit.
pub fn resolve_scope(
    dir: &Path,
    request: ScopeRequest,
    base: Option<&str>,
) -> Result<ReviewScope, CompanionError> {
    if !is_git_repo(dir) {
        return Err(CompanionError::usage(format!(
            "{} is not inside a git repository; a review needs one",
            dir.display()
        )));
    }
    let working_tree = match request {
        ScopeRequest::WorkingTree => true,
        ScopeRequest::Branch => false,
        ScopeRequest::Auto => is_dirty(dir)?,
    };
    if working_tree {
        return Ok(ReviewScope::WorkingTree);
    }
    let base = match base {
        Some(b) => b.to_owned(),
        None => default_base(dir)?,
    };
    let spec = format!("{base}^{{commit}}");
    if git(dir, &["rev-parse", "--verify", "--quiet", &spec]).is_err() {
        return Err(CompanionError::usage(format!(
            "--base {base}: no such commit or branch in {}",
            dir.display()
        )));
    }
    Ok(ReviewScope::Branch { base })
}

/// The change a scope covers, as a diff bounded to `max_bytes` (a note says when it was
/// cut): for the working tree, `git diff HEAD` plus each untracked file as an addition; for a
/// branch, the diff from the merge base to `HEAD`.
pub fn scope_diff(
    dir: &Path,
    scope: &ReviewScope,
    max_bytes: usize,
) -> Result<String, CompanionError> {
    let mut text = match scope {
        ReviewScope::WorkingTree => {
            let has_head = git(dir, &["rev-parse", "--verify", "--quiet", "HEAD"]).is_ok();
            let mut diff = if has_head {
                git(dir, &["diff", "HEAD", "--no-color", "--no-ext-diff"])?
            } else {
                git(dir, &["diff", "--cached", "--no-color", "--no-ext-diff"])?
            };
            let untracked = git(
                dir,
                &[
                    "-c",
                    "core.quotepath=off",
                    "ls-files",
                    "--others",
                    "--exclude-standard",
                ],
            )?;
            for file in untracked.lines().filter(|l| !l.trim().is_empty()) {
                if diff.len() > max_bytes {
                    break;
                }
                diff.push_str(&untracked_as_diff(dir, file));
            }
            diff
        }
        ReviewScope::Branch { base } => {
            let merge_base = git(dir, &["merge-base", "HEAD", base])?;
            git(
                dir,
                &["diff", &merge_base, "HEAD", "--no-color", "--no-ext-diff"],
            )?
        }
    };
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!(
            "\n[... the diff was cut at {max_bytes} bytes; inspect the rest with git]\n"
        ));
    }
    Ok(text)
}

/// An untracked file as the diff that would add it (binary or unreadable files named only).
fn untracked_as_diff(dir: &Path, file: &str) -> String {
    let mut out = format!("\ndiff --git a/{file} b/{file}\nnew file (untracked)\n");
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => {
                out.push_str(&format!("--- /dev/null\n+++ b/{file}\n"));
                for line in text.lines() {
                    out.push('+');
                    out.push_str(line);
                    out.push('\n');
                }
            }
            _ => out.push_str("(binary file)\n"),
        },
        Err(e) => out.push_str(&format!("(unreadable: {e})\n")),
    }
    out
}

/// Where a native review finding is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CodeLocation {
    /// The file.
    pub absolute_file_path: String,
    /// The lines.
    pub line_range: LineRange,
}

/// A range of lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LineRange {
    /// First line.
    pub start: u64,
    /// Last line.
    pub end: u64,
}

/// One finding of codex's native review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReviewFinding {
    /// Title.
    pub title: String,
    /// Explanation.
    pub body: String,
    /// Confidence from 0 to 1.
    pub confidence_score: f64,
    /// Priority (0 is the most urgent), when given.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Where.
    pub code_location: CodeLocation,
}

/// The structured output of codex's native review (the model's JSON answer in review mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReviewOutput {
    /// The findings.
    pub findings: Vec<ReviewFinding>,
    /// "patch is correct" / "patch is incorrect".
    #[serde(default)]
    pub overall_correctness: String,
    /// Why.
    #[serde(default)]
    pub overall_explanation: String,
    /// Confidence from 0 to 1.
    #[serde(default)]
    pub overall_confidence_score: Option<f64>,
}

impl ReviewOutput {
    /// Reads the review JSON (a Markdown fence around it is tolerated); `None` when the text
    /// is not that JSON.
    pub fn parse(text: &str) -> Option<ReviewOutput> {
        let t = text.trim();
        let t = t
            .strip_prefix("```json")
            .or_else(|| t.strip_prefix("```"))
            .map_or(t, |rest| rest.trim().trim_end_matches("```").trim());
        serde_json::from_str(t).ok()
    }

    /// Renders the review: the overall judgement, then the findings by priority.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.overall_correctness.is_empty() {
            out.push_str(&format!("Overall: {}", self.overall_correctness));
            if let Some(c) = self.overall_confidence_score {
                out.push_str(&format!(" (confidence {c:.2})"));
            }
            out.push('\n');
        }
        if !self.overall_explanation.trim().is_empty() {
            out.push_str(self.overall_explanation.trim());
            out.push('\n');
        }
        let mut findings: Vec<&ReviewFinding> = self.findings.iter().collect();
        findings.sort_by_key(|f| f.priority.unwrap_or(i64::MAX));
        if findings.is_empty() {
            out.push_str("\nNo findings.\n");
        } else {
            out.push_str(&format!("\nFindings ({}):\n", findings.len()));
        }
        for (i, f) in findings.iter().enumerate() {
            let range = f.code_location.line_range;
            let lines = if range.end > range.start {
                format!("{}-{}", range.start, range.end)
            } else {
                range.start.to_string()
            };
            let priority = f.priority.map(|p| format!("[P{p}] ")).unwrap_or_default();
            out.push_str(&format!(
                "\n{}. {priority}{} ({}:{}, confidence {:.2})\n",
                i + 1,
                f.title.trim(),
                f.code_location.absolute_file_path,
                lines,
                f.confidence_score
            ));
            for line in f.body.trim().lines() {
                out.push_str(&format!("   {line}\n"));
            }
        }
        out
    }
}

/// The text to show for a native review's answer: the rendered review when it is codex's
/// review JSON, else the text itself.
pub fn render_native(text: &str) -> String {
    match ReviewOutput::parse(text) {
        Some(review) => review.render(),
        None => {
            let mut t = text.trim_end().to_owned();
            t.push('\n');
            t
        }
    }
}

/// What a native review produced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NativeReview {
    /// The review text as codex gave it (the `exitedReviewMode` item's review, else the
    /// final message).
    pub raw: String,
    /// The review's thread.
    pub thread_id: ThreadId,
    /// The review's turn.
    pub turn_id: Option<TurnId>,
}

impl ReviewScope {
    /// The `review/start` target of this scope.
    pub fn target(&self) -> ReviewTarget {
        match self {
            ReviewScope::WorkingTree => ReviewTarget::UncommittedChanges,
            ReviewScope::Branch { base } => {
                let mut target = BaseBranchTarget::default();
                target.branch = base.clone();
                ReviewTarget::BaseBranch(target)
            }
        }
    }
}

/// Runs codex's native review (`review/start`) of `scope` in `cwd` as the job `job_id` (a
/// queued review record of `store`, claimed here): the job follows the run (thread, turn,
/// phase), then ends completed with the review as its result, or failed / cancelled with
/// the reason. `cancel` stops the review; `progress` is told of every event.
pub async fn run_native_review(
    backend: &AspBackend,
    store: &JobStore,
    job_id: &str,
    cwd: &Path,
    scope: &ReviewScope,
    cancel: CancellationToken,
    progress: Option<EventCallback>,
) -> Result<NativeReview, CompanionError> {
    let kind = backend.kind();
    let claim_store = store.clone();
    let id = job_id.to_owned();
    blocking(move || claim_store.claim(&id, kind)).await?;
    let result = review_turn(backend, store, job_id, cwd, scope, cancel, progress).await;
    let (thread, turn) = match &result {
        Ok(r) => (Some(r.thread_id.clone()), r.turn_id.clone()),
        Err(e) => (e.thread_id().cloned(), None),
    };
    let message = result.as_ref().err().map(|e| codex_core::error_chain(e));
    let cancelled = matches!(result, Err(codex_agent::Error::Cancelled { .. }));
    let raw = result.as_ref().ok().map(|r| r.raw.clone());
    let store2 = store.clone();
    let id = job_id.to_owned();
    blocking(move || {
        if let Some(text) = &raw {
            let _ = store2.append_log(&id, "review completed");
            let summary = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(|l| l.chars().take(120).collect::<String>());
            store2.update(&id, |r| {
                r.thread_id = r.thread_id.take().or(thread);
                r.turn_id = r.turn_id.take().or(turn);
                r.pid = None;
                r.summary = summary;
                r.result = Some(JobResult::new(Some(text.clone()), Vec::new(), None));
                r.set_status(JobStatus::Completed)
            })
        } else {
            let message = message.unwrap_or_default();
            let _ = store2.append_log(&id, &format!("review ended: {message}"));
            store2.update(&id, |r| {
                if r.status.is_finished() {
                    return Ok(());
                }
                r.thread_id = r.thread_id.take().or(thread);
                r.pid = None;
                if cancelled {
                    r.error = Some(message);
                    r.set_status(JobStatus::Cancelled)
                } else {
                    r.fail(&message)
                }
            })
        }
    })
    .await?;
    Ok(result?)
}

async fn review_turn(
    backend: &AspBackend,
    store: &JobStore,
    job_id: &str,
    cwd: &Path,
    scope: &ReviewScope,
    cancel: CancellationToken,
    progress: Option<EventCallback>,
) -> Result<NativeReview, codex_agent::Error> {
    let kind = backend.kind();
    let mut run = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(codex_agent::Error::Cancelled { thread_id: None }),
        run = backend.review(cwd, scope.target()) => run.map_err(codex_agent::Error::from)?,
    };
    let mut thread_id: Option<ThreadId> = None;
    let mut turn_id: Option<TurnId> = None;
    let mut exited_review: Option<String> = None;
    loop {
        let event = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                run.cancel();
                let _ = run.outcome().await;
                return Err(codex_agent::Error::Cancelled { thread_id });
            }
            event = run.next_event() => event,
        };
        let Some(event) = event else { break };
        if let Some(callback) = &progress {
            callback(&event);
        }
        let mut change: Option<(Option<ThreadId>, Option<TurnId>, Option<JobPhase>)> = None;
        match &event {
            Event::ThreadStarted { thread_id: t } => {
                thread_id = Some(t.clone());
                change = Some((Some(t.clone()), None, None));
            }
            Event::TurnStarted { turn_id: Some(t) } => {
                turn_id = Some(t.clone());
                change = Some((None, Some(t.clone()), Some(JobPhase::Running)));
            }
            Event::TurnCompleted { turn_id: t, .. } => {
                turn_id = t.clone().or(turn_id);
                change = Some((None, turn_id.clone(), Some(JobPhase::Finalizing)));
            }
            Event::ItemCompleted { item } => {
                if let ItemDetails::Unknown { kind, raw } = &item.details
                    && kind == "exitedReviewMode"
                    && let Some(text) = raw.get("review").and_then(Value::as_str)
                    && !text.trim().is_empty()
                {
                    exited_review = Some(text.to_owned());
                }
            }
            _ => {}
        }
        if let Some((thread, turn, phase)) = change {
            let store = store.clone();
            let id = job_id.to_owned();
            let _ = blocking(move || {
                store.update(&id, |r| {
                    if let Some(t) = thread {
                        r.thread_id = Some(t);
                    }
                    if let Some(t) = turn {
                        r.turn_id = Some(t);
                    }
                    if let Some(p) = phase
                        && !r.status.is_finished()
                    {
                        r.phase = p;
                    }
                    Ok(())
                })
            })
            .await;
        }
    }
    let outcome = run.outcome().await.map_err(|e| match e {
        codex_core::Error::Cancelled { thread_id: t } => codex_agent::Error::Cancelled {
            thread_id: t.or(thread_id.clone()),
        },
        codex_core::Error::Timeout {
            after,
            thread_id: t,
        } => codex_agent::Error::Timeout {
            after,
            thread_id: t.or(thread_id.clone()),
        },
        codex_core::Error::TurnFailed {
            thread_id: t,
            turn_id: u,
            message,
        } => codex_agent::Error::TurnFailed {
            backend: kind,
            thread_id: t.or(thread_id.clone()),
            turn_id: u.or(turn_id.clone()),
            message,
        },
        codex_core::Error::AuthRejected {
            thread_id: t,
            turn_id: u,
            message,
        } => codex_agent::Error::AuthRejected {
            backend: Some(kind),
            thread_id: t.or(thread_id.clone()),
            turn_id: u.or(turn_id.clone()),
            message,
        },
        other if thread_id.is_some() => codex_agent::Error::TurnIncomplete {
            backend: kind,
            thread_id: thread_id.clone(),
            turn_id: turn_id.clone(),
            source: Some(Box::new(other)),
        },
        other => codex_agent::Error::from(other),
    })?;
    let raw = exited_review.or(outcome.final_message).unwrap_or_default();
    Ok(NativeReview {
        raw,
        thread_id: outcome.thread_id,
        turn_id: outcome.turn_id.or(turn_id),
    })
}

/// Runs a job store operation off the async threads.
async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CompanionError> {
    match tokio::task::spawn_blocking(op).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(CompanionError::io(
            "job store task",
            std::io::Error::other(e.to_string()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| git(dir.path(), args).unwrap();
        run(&["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
        run(&["add", "a.txt"]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--quiet",
            "-m",
            "first",
        ]);
        dir
    }

    #[test]
    fn scopes_follow_the_work_tree() {
        let dir = repo();
        // clean: auto is the branch against main
        assert_eq!(
            resolve_scope(dir.path(), ScopeRequest::Auto, None).unwrap(),
            ReviewScope::Branch {
                base: "main".into()
            }
        );
        std::fs::write(dir.path().join("a.txt"), "two\n").unwrap();
        std::fs::write(dir.path().join("new.txt"), "new\n").unwrap();
        assert_eq!(
            resolve_scope(dir.path(), ScopeRequest::Auto, None).unwrap(),
            ReviewScope::WorkingTree
        );
        let diff = scope_diff(dir.path(), &ReviewScope::WorkingTree, 10_000).unwrap();
        assert!(diff.contains("+two"), "{diff}");
        assert!(
            diff.contains(
                "diff --git a/new.txt b/new.txt\nnew file (untracked)\n--- /dev/null\n+++ b/new.txt\n+new\n"
            ),
            "{diff}"
        );
        let cut = scope_diff(dir.path(), &ReviewScope::WorkingTree, 10).unwrap();
        assert!(cut.contains("cut at 10 bytes"), "{cut}");
        let err = resolve_scope(dir.path(), ScopeRequest::Branch, Some("nope")).unwrap_err();
        assert!(err.to_string().contains("--base nope"), "{err}");
        let outside = tempfile::tempdir().unwrap();
        let err = resolve_scope(outside.path(), ScopeRequest::Auto, None).unwrap_err();
        assert!(
            err.to_string().contains("not inside a git repository"),
            "{err}"
        );
    }

    #[test]
    fn native_reviews_render_by_priority() {
        let text = r#"```json
{"findings":[
 {"title":"Minor","body":"b","confidence_score":0.3,"priority":3,"code_location":{"absolute_file_path":"/w/a.rs","line_range":{"start":2,"end":2}}},
 {"title":"Major","body":"line1\nline2","confidence_score":0.9,"priority":0,"code_location":{"absolute_file_path":"/w/b.rs","line_range":{"start":5,"end":9}}}],
 "overall_correctness":"patch is incorrect","overall_explanation":"Two problems.","overall_confidence_score":0.7}
```"#;
        let out = render_native(text);
        assert!(
            out.starts_with("Overall: patch is incorrect (confidence 0.70)\nTwo problems.\n"),
            "{out}"
        );
        assert!(out.find("Major").unwrap() < out.find("Minor").unwrap());
        assert!(
            out.contains("1. [P0] Major (/w/b.rs:5-9, confidence 0.90)\n   line1\n   line2\n"),
            "{out}"
        );
    }
}

/// The examples that documented this module when it was public API of codex-agent.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn example_1() {
        use crate::review::ReviewScope;
        assert_eq!(
            ReviewScope::WorkingTree.describe(),
            "the uncommitted changes of the working tree"
        );
        assert_eq!(
            ReviewScope::Branch {
                base: "main".into()
            }
            .describe(),
            "the changes of the current branch against main"
        );
    }

    #[test]
    fn example_2() {
        assert!(!crate::review::is_git_repo(std::path::Path::new("/")));
    }

    #[test]
    fn example_3() {
        use crate::review::ReviewOutput;
        let out = ReviewOutput::parse(r#"{"findings":[],"overall_correctness":"patch is correct","overall_explanation":"Fine.","overall_confidence_score":0.8}"#).unwrap();
        assert!(out.render().contains("patch is correct"));
        assert!(ReviewOutput::parse("plain text").is_none());
    }

    #[test]
    fn example_4() {
        assert_eq!(
            crate::review::render_native("No issues found."),
            "No issues found.\n"
        );
    }

    #[test]
    fn example_5() {
        use crate::review::ReviewScope;
        use codex_asp::protocol::ReviewTarget;
        assert_eq!(
            ReviewScope::WorkingTree.target(),
            ReviewTarget::UncommittedChanges
        );
    }
}
