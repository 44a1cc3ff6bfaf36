//! Delegations recorded as jobs in the project's [`JobStore`], and background handles.
//!
//! Each delegation (foreground or background) is a [`JobKind::Task`](super::JobKind::Task) record in the job store
//! of its project, the same records `codex-companion status` reads: created queued, claimed
//! by this process when the run starts, its phase following the events (editing on file
//! changes, verifying on commands), then completed with its result or failed / cancelled with
//! the reason. Background delegations run in a tokio task of this process; a [`JobHandle`]
//! awaits, polls or cancels it.

use std::path::PathBuf;

use super::{JobPhase, JobRecord, JobResult, JobStatus, JobStore, StoreError};
use codex_core::{BackendKind, Event, ItemDetails, ThreadId, TurnId};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::verify::{EventHook, Verified};

/// The job phase an event moves a running job to, if any: running when the turn starts,
/// editing on file changes, verifying on commands, finalizing when the turn ends.
pub(crate) fn phase_for(event: &Event) -> Option<JobPhase> {
    match event {
        Event::TurnStarted { .. } => Some(JobPhase::Running),
        Event::ItemStarted { item } | Event::ItemCompleted { item } => match item.details {
            ItemDetails::FileChange { .. } => Some(JobPhase::Editing),
            ItemDetails::CommandExecution { .. } => Some(JobPhase::Verifying),
            _ => None,
        },
        Event::TurnCompleted { .. } => Some(JobPhase::Finalizing),
        _ => None,
    }
}

/// Runs a store operation off the async threads (the store takes a file lock and fsyncs).
async fn blocking<T, F>(store: &JobStore, op: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&JobStore) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || op(&store)).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Io {
            context: "job store task".into(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Keeps one job record in step with a run.
#[derive(Debug)]
pub(crate) struct JobTracker {
    store: JobStore,
    id: String,
    phase: Option<JobPhase>,
    thread_id: Option<ThreadId>,
    turn_id: Option<TurnId>,
    finished: bool,
}

impl JobTracker {
    /// Creates the queued record.
    pub(crate) async fn create(
        store: &JobStore,
        kind: super::JobKind,
        title: &str,
        write: bool,
    ) -> Result<JobTracker> {
        let new = super::NewJob::new(kind, title, write);
        let record = blocking(store, move |s| s.create(new)).await?;
        Ok(JobTracker {
            store: store.clone(),
            id: record.id,
            phase: None,
            thread_id: None,
            turn_id: None,
            finished: false,
        })
    }

    /// Takes over a record created elsewhere (by the process that queued a background job);
    /// it must not be finished yet.
    pub(crate) async fn adopt(store: &JobStore, id: &str) -> Result<JobTracker> {
        let wanted = id.to_owned();
        let record = blocking(store, move |s| s.get(&wanted)).await?;
        if record.status.is_finished() {
            return Err(StoreError::Transition {
                id: record.id,
                from: record.status,
                to: JobStatus::Running,
            }
            .into());
        }
        Ok(JobTracker {
            store: store.clone(),
            id: record.id,
            phase: None,
            thread_id: None,
            turn_id: None,
            finished: false,
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Marks the job running in this process on `backend`.
    pub(crate) async fn claim(&mut self, backend: BackendKind) -> Result<()> {
        let id = self.id.clone();
        blocking(&self.store, move |s| s.claim(&id, backend)).await?;
        self.phase = Some(JobPhase::Starting);
        Ok(())
    }

    /// Records the backend actually running the turn (after a fallback).
    pub(crate) async fn running_on(&mut self, backend: BackendKind) {
        self.update(move |r| {
            r.backend = Some(backend);
            Ok(())
        })
        .await;
    }

    async fn update<F>(&self, change: F)
    where
        F: FnOnce(&mut JobRecord) -> Result<(), StoreError> + Send + 'static,
    {
        let id = self.id.clone();
        if let Err(e) = blocking(&self.store, move |s| s.update(&id, change)).await {
            tracing::warn!(job = %self.id, "could not update the job record: {}", codex_core::ErrorChain(&e));
        }
    }

    async fn log(&self, line: String) {
        let id = self.id.clone();
        if let Err(e) = blocking(&self.store, move |s| s.append_log(&id, &line)).await {
            tracing::warn!(job = %self.id, "could not write the job log: {}", codex_core::ErrorChain(&e));
        }
    }

    /// Ends the job from the delegation's result.
    pub(crate) async fn finish(&mut self, result: &Result<Verified>) {
        self.finished = true;
        let thread_id = self.thread_id.clone();
        let turn_id = self.turn_id.clone();
        match result {
            Ok(v) => {
                let summary = v.final_message().and_then(summary_line);
                let job_result = JobResult::new(
                    v.final_message().map(str::to_owned),
                    v.touched_files().to_vec(),
                    v.reasoning_summary(),
                );
                let (backend, thread, turn) =
                    (v.backend(), v.thread_id().clone(), v.turn_id().cloned());
                self.log(format!("completed: thread {thread}")).await;
                self.update(move |r| {
                    r.backend = Some(backend);
                    r.thread_id = Some(thread);
                    r.turn_id = turn.or(turn_id);
                    r.summary = summary;
                    r.result = Some(job_result);
                    r.pid = None;
                    r.set_status(JobStatus::Completed)
                })
                .await;
            }
            Err(err) => {
                // stored once: the error and each cause
                let message = codex_core::error_chain(err);
                let cancelled = matches!(err, Error::Cancelled { .. });
                let thread = err.thread_id().cloned().or(thread_id);
                self.log(format!(
                    "{}: {message}",
                    if cancelled { "cancelled" } else { "failed" }
                ))
                .await;
                self.update(move |r| {
                    r.thread_id = r.thread_id.take().or(thread);
                    r.turn_id = r.turn_id.take().or(turn_id);
                    r.pid = None;
                    if cancelled {
                        r.error = Some(message);
                        r.set_status(JobStatus::Cancelled)
                    } else {
                        r.fail(&message)
                    }
                })
                .await;
            }
        }
    }
}

impl EventHook for JobTracker {
    async fn event(&mut self, event: &Event) {
        let mut thread = None;
        let mut turn = None;
        match event {
            Event::ThreadStarted { thread_id } if self.thread_id.as_ref() != Some(thread_id) => {
                self.thread_id = Some(thread_id.clone());
                thread = Some(thread_id.clone());
                self.log(format!("thread started: {thread_id}")).await;
            }
            Event::TurnStarted { turn_id } => {
                if let Some(t) = turn_id
                    && self.turn_id.as_ref() != Some(t)
                {
                    self.turn_id = Some(t.clone());
                    turn = Some(t.clone());
                }
                self.log("turn started".to_owned()).await;
            }
            Event::ItemCompleted { item } => {
                if let Some(line) = log_line(&item.details) {
                    self.log(line).await;
                }
            }
            Event::Error { message } => self.log(format!("codex error: {message}")).await,
            _ => {}
        }
        let phase = phase_for(event).filter(|p| Some(*p) != self.phase);
        if let Some(p) = phase {
            self.phase = Some(p);
        }
        if thread.is_some() || turn.is_some() || phase.is_some() {
            self.update(move |r| {
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
            .await;
        }
    }
}

impl Drop for JobTracker {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // the delegation was dropped mid-way (its future or task was dropped)
        let result = self.store.update(&self.id, |r| {
            if r.status.is_finished() {
                return Ok(());
            }
            r.pid = None;
            r.error = Some("the delegation was dropped before it finished".into());
            r.set_status(JobStatus::Cancelled)
        });
        if let Err(e) = result {
            tracing::warn!(
                job = %self.id,
                "could not mark the dropped job cancelled: {}",
                codex_core::ErrorChain(&e)
            );
        }
    }
}

fn summary_line(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())?;
    Some(line.chars().take(120).collect())
}

fn log_line(details: &ItemDetails) -> Option<String> {
    match details {
        ItemDetails::CommandExecution {
            command, exit_code, ..
        } => Some(match exit_code {
            Some(code) => format!("ran `{command}` (exit {code})"),
            None => format!("ran `{command}`"),
        }),
        ItemDetails::FileChange { changes, .. } => {
            let paths: Vec<String> = changes
                .iter()
                .map(|c| c.path.display().to_string())
                .collect();
            Some(format!("changed {}", paths.join(", ")))
        }
        ItemDetails::AgentMessage { text } => summary_line(text).map(|l| format!("message: {l}")),
        ItemDetails::Error { message } => Some(format!("error item: {message}")),
        _ => None,
    }
}

/// A background delegation: its job id at once, then its outcome.
///
/// Dropping the handle does not stop the job; [`JobHandle::cancel`] does.
///
/// ```no_run
/// # async fn demo(delegate: codex_agent::Delegate) -> codex_agent::Result<()> {
/// let handle = delegate.spawn(codex_agent::DelegateRequest::new("refactor the parser").write(true)).await?;
/// println!("job {}", handle.id());
/// let record = handle.record()?;            // poll the store
/// println!("{} {:?}", record.status, record.phase);
/// let verified = handle.wait().await?;      // or await it
/// # let _ = verified; Ok(()) }
/// ```
#[derive(Debug)]
pub struct JobHandle {
    id: String,
    store: JobStore,
    task: JoinHandle<Result<Verified>>,
    cancel: CancellationToken,
}

impl JobHandle {
    pub(crate) fn new(
        id: String,
        store: JobStore,
        task: JoinHandle<Result<Verified>>,
        cancel: CancellationToken,
    ) -> Self {
        JobHandle {
            id,
            store,
            task,
            cancel,
        }
    }

    /// The job id (as listed by `store.list()` and `codex-companion status`).
    ///
    /// ```
    /// # fn demo(job: &codex_agent::JobHandle) {
    /// println!("started {}", job.id());
    /// # }
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The job store holding the record.
    ///
    /// ```
    /// # fn demo(job: &codex_agent::JobHandle) {
    /// println!("{}", job.store().dir().display());
    /// # }
    /// ```
    pub fn store(&self) -> &JobStore {
        &self.store
    }

    /// The job's log file.
    ///
    /// ```
    /// # fn demo(job: &codex_agent::JobHandle) -> codex_agent::Result<()> {
    /// println!("tail -f {}", job.log_path()?.display());
    /// # Ok(()) }
    /// ```
    pub fn log_path(&self) -> Result<PathBuf> {
        Ok(self.store.log_path(&self.id)?)
    }

    /// The current record (status, phase, thread, result or error).
    ///
    /// ```
    /// # fn demo(job: &codex_agent::JobHandle) -> codex_agent::Result<()> {
    /// let record = job.record()?;
    /// println!("{} {:?}", record.status, record.phase);
    /// # Ok(()) }
    /// ```
    pub fn record(&self) -> Result<JobRecord> {
        Ok(self.store.get(&self.id)?)
    }

    /// Asks the job to stop; it then ends as cancelled.
    ///
    /// ```
    /// # fn demo(job: &codex_agent::JobHandle) {
    /// job.cancel();
    /// # }
    /// ```
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether the job's task has ended.
    ///
    /// ```
    /// # fn demo(job: &codex_agent::JobHandle) {
    /// if !job.is_finished() { println!("still running"); }
    /// # }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the outcome.
    ///
    /// ```
    /// # async fn demo(job: codex_agent::JobHandle) -> codex_agent::Result<()> {
    /// let verified = job.wait().await?;
    /// println!("{}", verified.thread_id());
    /// # Ok(()) }
    /// ```
    pub async fn wait(self) -> Result<Verified> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(job = %self.id, "background job task ended abnormally: {e}");
                Err(Error::JobLost { job_id: self.id })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_core::Item;
    use codex_core::event::{FileChangeKind, FileUpdate, ItemStatus};

    #[test]
    fn phases_follow_events() {
        let file = Item::new(
            "f",
            ItemDetails::FileChange {
                changes: vec![FileUpdate::new("a.rs", FileChangeKind::Update)],
                status: ItemStatus::InProgress,
            },
        );
        let cmd = Item::new(
            "c",
            ItemDetails::CommandExecution {
                command: "cargo test".into(),
                aggregated_output: String::new(),
                exit_code: None,
                status: ItemStatus::InProgress,
            },
        );
        assert_eq!(
            phase_for(&Event::ItemStarted { item: file }),
            Some(JobPhase::Editing)
        );
        assert_eq!(
            phase_for(&Event::ItemStarted { item: cmd }),
            Some(JobPhase::Verifying)
        );
        assert_eq!(
            phase_for(&Event::TurnCompleted {
                turn_id: None,
                usage: None
            }),
            Some(JobPhase::Finalizing)
        );
    }

    #[test]
    fn summaries_are_one_line() {
        assert_eq!(
            summary_line("\n## Summary\nfixed").as_deref(),
            Some("Summary")
        );
        assert_eq!(summary_line("  \n "), None);
    }
}
