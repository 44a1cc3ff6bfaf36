//! What a job is: its record, kind, status and phase, and the job-id rule.

use std::path::PathBuf;

use codex_core::{BackendKind, ThreadId, TurnId};
use serde::{Deserialize, Serialize};

use super::redact::redact;
use super::store::{StoreError, now_ms};
use super::worker::Worker;

/// The longest job id (or prefix) [`validate_job_id`] accepts.
pub const MAX_JOB_ID_LEN: usize = 128;

/// Checks that `id` can name a job (or be a prefix of one): 1 to [`MAX_JOB_ID_LEN`] ASCII
/// letters, digits, `-` or `_`. No separator, no dot, so it names one file in the store's
/// folders and nothing else. This one rule applies to ids given by a caller and to ids read
/// from the store's own files.
///
/// ```
/// use codex_agent::jobs::validate_job_id;
/// assert!(validate_job_id("job-0194f3a2b1c-5e6f7a").is_ok());
/// assert!(validate_job_id("job-01").is_ok());
/// assert!(validate_job_id("../../x").is_err());
/// assert!(validate_job_id("").is_err());
/// ```
pub fn validate_job_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_JOB_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId { id: id.to_owned() })
    }
}

/// What kind of work a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum JobKind {
    /// A task (`codex-companion task`, a delegation).
    Task,
    /// A native review (`review/start`).
    Review,
    /// A structured adversarial review.
    AdversarialReview,
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobKind::Task => "task",
            JobKind::Review => "review",
            JobKind::AdversarialReview => "adversarial-review",
        })
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobStatus {
    /// Created, no worker yet.
    Queued,
    /// A worker runs it.
    Running,
    /// Codex completed the turn.
    Completed,
    /// It failed (see `error`).
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl JobStatus {
    /// Whether the job is over.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Whether `self → to` is allowed (queued → running → completed | failed | cancelled;
    /// queued may also fail or be cancelled directly; finished is final).
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match (self, to) {
            (a, b) if a == b => !a.is_finished(),
            (Queued, _) => true,
            (Running, Completed | Failed | Cancelled) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        })
    }
}

/// A finer-grained progress marker while a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobPhase {
    /// Starting codex / connecting.
    Starting,
    /// The model is working.
    Running,
    /// Files are being changed.
    Editing,
    /// Commands are being run (tests, checks).
    Verifying,
    /// Writing the answer.
    Finalizing,
    /// Over.
    Done,
}

/// What a finished job produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobResult {
    /// Codex's final message.
    pub final_message: Option<String>,
    /// Files the turn changed.
    pub touched_files: Vec<PathBuf>,
    /// The reasoning summary.
    pub reasoning_summary: Option<String>,
}

impl JobResult {
    /// Builds a result.
    pub fn new(
        final_message: Option<String>,
        touched_files: Vec<PathBuf>,
        reasoning_summary: Option<String>,
    ) -> Self {
        JobResult {
            final_message,
            touched_files,
            reasoning_summary,
        }
    }
}

/// One job, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobRecord {
    /// Unique id (sortable by creation time). The record's file is `jobs/<id>.json`; a stored
    /// record whose `id` differs from its file name is corrupt.
    pub id: String,
    /// What it is.
    pub kind: JobKind,
    /// A short title (first line of the prompt).
    pub title: String,
    /// A one-line summary of the outcome, once known.
    pub summary: Option<String>,
    /// The project root the job runs in (its store's [`project_root`](super::project_root)).
    /// Stored as `project_root`; records written before the rename say `workspace_root`.
    #[serde(alias = "workspace_root")]
    pub project_root: PathBuf,
    /// Whether it may write files.
    pub write: bool,
    /// Status.
    pub status: JobStatus,
    /// Phase.
    pub phase: JobPhase,
    /// The worker process, while one runs the job.
    pub pid: Option<u32>,
    /// The worker's start time (clock ticks since boot), to detect pid reuse.
    #[serde(default)]
    pub pid_start_time: Option<u64>,
    /// The backend that runs it.
    pub backend: Option<BackendKind>,
    /// The codex thread.
    pub thread_id: Option<ThreadId>,
    /// The codex turn.
    pub turn_id: Option<TurnId>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Last update.
    pub updated_at_ms: u64,
    /// When it started running.
    pub started_at_ms: Option<u64>,
    /// When it finished.
    pub finished_at_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// What it produced.
    pub result: Option<JobResult>,
    /// Its log file, `logs/<id>.log` in the store (derived from the id when read back).
    pub log_file: PathBuf,
    /// The agent-host session that started the job (for example the Claude Code session id),
    /// if any. Default job selection (`status`, `result`, `cancel`, resuming the last task)
    /// is scoped to the caller's session; an explicit job id reaches any session's job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl JobRecord {
    /// Moves to `to`, stamping times; refuses transitions out of a finished state.
    pub fn set_status(&mut self, to: JobStatus) -> Result<(), StoreError> {
        if !self.status.can_become(to) {
            return Err(StoreError::Transition {
                id: self.id.clone(),
                from: self.status,
                to,
            });
        }
        let now = now_ms();
        if to == JobStatus::Running && self.started_at_ms.is_none() {
            self.started_at_ms = Some(now);
        }
        if to.is_finished() {
            self.finished_at_ms = Some(now);
            self.phase = JobPhase::Done;
        }
        self.status = to;
        Ok(())
    }

    /// The worker process recorded for the job, if any.
    pub fn worker(&self) -> Option<Worker> {
        self.pid
            .map(|pid| Worker::from_parts(pid, self.pid_start_time))
    }

    /// Records `worker` as the process running the job (its pid and start time), or none.
    pub fn set_worker(&mut self, worker: Option<Worker>) {
        self.pid = worker.map(Worker::pid);
        self.pid_start_time = worker.and_then(Worker::start_time);
    }

    /// Marks the job failed with `error` (redacted).
    pub fn fail(&mut self, error: &str) -> Result<(), StoreError> {
        self.set_status(JobStatus::Failed)?;
        self.error = Some(redact(error));
        Ok(())
    }
}

/// What to create.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewJob {
    /// Kind.
    pub kind: JobKind,
    /// Title (redacted and cut to one line of at most 120 characters).
    pub title: String,
    /// Whether it may write.
    pub write: bool,
    /// The agent-host session starting it, if any (see [`JobRecord::session_id`]).
    pub session_id: Option<String>,
}

impl NewJob {
    /// A new job description, outside any session.
    pub fn new(kind: JobKind, title: impl Into<String>, write: bool) -> Self {
        NewJob {
            kind,
            title: title.into(),
            write,
            session_id: None,
        }
    }

    /// Records the agent-host session that starts the job (an empty id counts as none).
    pub fn session(mut self, session_id: Option<String>) -> Self {
        self.session_id = session_id.filter(|s| !s.trim().is_empty());
        self
    }
}
