//! Background jobs: the stored [`JobSpec`] a worker runs, and the worker process itself.
//!
//! `codex-companion task --background` creates the queued job record, stores the job's spec
//! next to the record (`<store>/specs/<job-id>.json`, written atomically), then starts a
//! worker — the same binary with the hidden `worker JOB_ID` subcommand — detached from the
//! caller: stdin from `/dev/null`, stdout and stderr appended to the job's log, and a
//! session and process group of its own (the worker calls [`detach_from_caller`] first thing;
//! its pid is recorded in the job at once, so a worker that dies before it claims the job is
//! still noticed). The worker claims the job (its pid recorded again, with its start time)
//! and runs it; [`stop_worker`] ends it: SIGTERM to its process group, then, after a grace
//! period, SIGKILL to its whole process tree (`codex_core::process::kill_tree`: the codex
//! processes it started lead groups of their own, and the worker, a child subreaper, keeps
//! the orphans below it within reach).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codex_agent::jobs::{JobStatus, JobStore, Worker, validate_job_id};
use serde::{Deserialize, Serialize};

use crate::error::CompanionError;
use codex_agent::DelegateRequest;

/// The format version of stored specs.
pub const SPEC_FORMAT: u32 = 1;

/// The folder of the store that holds job specs.
pub const SPEC_DIR: &str = "specs";

/// Which app-server a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BackendChoice {
    /// The app-server shared through the resident broker.
    #[default]
    Broker,
    /// A private app-server of the process running the job.
    Private,
}

/// Everything a worker needs to run a queued job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobSpec {
    /// [`SPEC_FORMAT`].
    pub format: u32,
    /// The delegation to run.
    pub request: DelegateRequest,
    /// The app-server to run it on.
    pub backend: BackendChoice,
}

impl JobSpec {
    /// A spec for `request` on `backend`.
    pub fn new(request: DelegateRequest, backend: BackendChoice) -> Self {
        JobSpec {
            format: SPEC_FORMAT,
            request,
            backend,
        }
    }

    /// Where the spec of `job_id` lives in `store`. Refuses an id that is not well formed
    /// ([`validate_job_id`]): the path is only ever built from a checked id.
    pub fn path(store: &JobStore, job_id: &str) -> Result<PathBuf, CompanionError> {
        validate_job_id(job_id)?;
        Ok(store.dir().join(SPEC_DIR).join(format!("{job_id}.json")))
    }

    /// Writes the spec of `job_id` atomically (a temporary file renamed into place).
    pub fn save(&self, store: &JobStore, job_id: &str) -> Result<PathBuf, CompanionError> {
        let path = Self::path(store, job_id)?;
        let dir = store.dir().join(SPEC_DIR);
        fs::create_dir_all(&dir)
            .map_err(|e| CompanionError::io(format!("creating {}", dir.display()), e))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| CompanionError::Spec {
            job_id: job_id.to_owned(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = dir.join(format!(".{job_id}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            CompanionError::io(format!("writing {}", path.display()), e)
        })?;
        Ok(path)
    }

    /// Reads the spec of `job_id`.
    pub fn load(store: &JobStore, job_id: &str) -> Result<JobSpec, CompanionError> {
        let path = Self::path(store, job_id)?;
        let fail = |reason: String| CompanionError::Spec {
            job_id: job_id.to_owned(),
            path: path.clone(),
            reason,
        };
        let bytes = fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let spec: JobSpec = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
        if spec.format != SPEC_FORMAT {
            return Err(fail(format!(
                "format {} is not {SPEC_FORMAT}; it was written by another version of codex-companion",
                spec.format
            )));
        }
        Ok(spec)
    }

    /// Removes the spec of `job_id` (a missing one, or an id that is not well formed, is fine).
    pub fn remove(store: &JobStore, job_id: &str) {
        if let Ok(path) = Self::path(store, job_id) {
            let _ = fs::remove_file(path);
        }
    }

    /// Removes the specs whose job record is gone (pruned). Returns how many.
    ///
    /// The spec files are listed before the records: a spec is written after its record, so
    /// a job queued meanwhile by another process is never taken for an orphan.
    pub fn prune_orphans(store: &JobStore) -> Result<usize, CompanionError> {
        let dir = store.dir().join(SPEC_DIR);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let specs: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".json")?.to_owned();
                Some((id, entry.path()))
            })
            .collect();
        let live: Vec<String> = store.list()?.jobs.into_iter().map(|j| j.id).collect();
        let mut removed = 0;
        for (id, path) in specs {
            if !live.contains(&id) && fs::remove_file(path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Starts the worker of the queued job `job_id`: `exe worker --cwd <workspace> <job_id>`,
/// stdin from `/dev/null`, stdout and stderr appended to the job's log, not waited for. The
/// worker's pid is recorded in the job at once. Returns the pid.
pub fn start_worker(exe: &Path, store: &JobStore, job_id: &str) -> Result<u32, CompanionError> {
    let log_path = store.log_path(job_id)?;
    let worker_err = |what: &str, source: std::io::Error| CompanionError::Worker {
        job_id: job_id.to_owned(),
        what: what.to_owned(),
        source,
    };
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| worker_err(&format!("opening the log {}", log_path.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| worker_err("duplicating the log handle", e))?;
    let workspace = store.project_root().to_owned();
    let child = Command::new(exe)
        .arg("worker")
        .arg("--cwd")
        .arg(&workspace)
        .arg(job_id)
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| worker_err(&format!("starting {}", exe.display()), e))?;
    let pid = child.id();
    // not waited for: the worker outlives us; whoever adopts it reaps it
    drop(child);
    let worker = Worker::of(pid);
    store.update(job_id, |r| {
        if r.status == JobStatus::Queued {
            r.set_worker(Some(worker));
        }
        Ok(())
    })?;
    Ok(pid)
}

/// Makes the calling process the leader of a new session and process group, so that the
/// caller's terminal and signals to the caller's group do not reach it. Call it first thing
/// in a worker (which is never a group leader when started by [`start_worker`]).
pub fn detach_from_caller() -> Result<u32, CompanionError> {
    match nix::unistd::setsid() {
        Ok(pid) => Ok(pid.as_raw().unsigned_abs()),
        Err(errno) => Err(CompanionError::io(
            "starting a session of our own (setsid)",
            std::io::Error::from(errno),
        )),
    }
}

/// How [`stop_worker`] ended a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// It was already gone.
    AlreadyGone,
    /// It exited after SIGTERM.
    Terminated,
    /// It had to be killed (SIGKILL) after the grace period.
    Killed,
}

/// Stops a worker: SIGTERM to its process group when it leads a session of its own (a
/// worker, see [`detach_from_caller`]), else to the process alone (a foreground
/// companion: its shell's job is never signalled); then, if it is still alive after `grace`,
/// SIGKILL to its whole process tree: the process, every descendant (the codex processes it
/// started lead groups of their own) and, for a worker, every member of its session
/// (`codex_core::process::kill_tree`). The worker's start time guards against a reused pid.
pub fn stop_worker(worker: Worker, grace: Duration) -> Stopped {
    let pid = worker.pid();
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::{Pid, getpgid, getsid};
    let Ok(raw) = i32::try_from(pid) else {
        return Stopped::AlreadyGone;
    };
    if raw <= 1 || !worker.is_alive() {
        return Stopped::AlreadyGone;
    }
    let target = Pid::from_raw(raw);
    let leads_group = getsid(Some(target)).is_ok_and(|s| s == target)
        && getpgid(Some(target)).is_ok_and(|g| g == target);
    let _ = if leads_group {
        killpg(target, Signal::SIGTERM)
    } else {
        kill(target, Signal::SIGTERM)
    };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !worker.is_alive() {
            return Stopped::Terminated;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    if worker.is_alive() {
        codex_core::process::kill_tree(pid);
    } else {
        return Stopped::Terminated;
    }
    Stopped::Killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_agent::jobs::{JobKind, NewJob, StoreError};

    #[test]
    fn specs_round_trip_and_orphans_are_pruned() {
        let state = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        let store = JobStore::open(state.path(), ws.path()).unwrap();
        let job = store
            .create(NewJob::new(JobKind::Task, "t", false))
            .unwrap();
        let request = DelegateRequest::new("do it").write(true).cwd(ws.path());
        JobSpec::new(request.clone(), BackendChoice::Private)
            .save(&store, &job.id)
            .unwrap();
        let back = JobSpec::load(&store, &job.id).unwrap();
        assert_eq!(back.request, request);
        assert_eq!(back.backend, BackendChoice::Private);
        // the spec folder is not mistaken for records
        assert_eq!(store.list().unwrap().jobs.len(), 1);
        assert!(store.list().unwrap().corrupt.is_empty());
        JobSpec::new(request, BackendChoice::Broker)
            .save(&store, "job-gone")
            .unwrap();
        assert_eq!(JobSpec::prune_orphans(&store).unwrap(), 1);
        assert!(JobSpec::load(&store, &job.id).is_ok());
        let err = JobSpec::load(&store, "job-gone").unwrap_err();
        assert!(matches!(err, CompanionError::Spec { .. }), "{err}");
        std::fs::write(JobSpec::path(&store, "bad").unwrap(), b"{").unwrap();
        assert!(JobSpec::load(&store, "bad").is_err());
        let err = JobSpec::load(&store, "../../x").unwrap_err();
        assert!(
            matches!(err, CompanionError::Store(StoreError::InvalidId { .. })),
            "{err}"
        );
        assert!(
            JobSpec::new(DelegateRequest::new("x"), BackendChoice::Broker)
                .save(&store, "../../x")
                .is_err()
        );
    }

    #[test]
    fn stopping_a_gone_or_live_process() {
        use std::os::unix::process::CommandExt;
        assert_eq!(
            stop_worker(Worker::of(u32::MAX), Duration::ZERO),
            Stopped::AlreadyGone
        );
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = Worker::of(pid);
        let reaper = std::thread::spawn(move || child.wait());
        assert_eq!(
            stop_worker(start, Duration::from_secs(5)),
            Stopped::Terminated
        );
        reaper.join().unwrap().unwrap();
        assert_eq!(stop_worker(start, Duration::ZERO), Stopped::AlreadyGone);
    }

    #[test]
    fn a_session_leader_is_stopped_with_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg.pid");
        // like a worker: a session of its own, with a child in its group
        let mut leader = Command::new("setsid")
            .arg("sh")
            .arg("-c")
            .arg(format!(
                "sleep 30 & echo $! > '{}'; wait",
                pidfile.display()
            ))
            .spawn()
            .unwrap();
        let pid = leader.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let child: u32 = loop {
            if let Some(p) = fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "the group never started");
            std::thread::sleep(Duration::from_millis(20));
        };
        let reaper = std::thread::spawn(move || leader.wait());
        assert_eq!(
            stop_worker(Worker::of(pid), Duration::from_secs(5)),
            Stopped::Terminated
        );
        reaper.join().unwrap().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Worker::of(child).is_alive() {
            assert!(Instant::now() < deadline, "the worker's child survived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The examples that documented this module when it was public API of codex-agent.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn example_1() {
        use crate::worker::{BackendChoice, JobSpec};
        let spec = JobSpec::new(
            codex_agent::DelegateRequest::new("fix it"),
            BackendChoice::Broker,
        );
        let json = serde_json::to_string(&spec).unwrap();
        let back: JobSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.request.task(), "fix it");
    }

    #[test]
    fn example_2() {
        let state = tempfile::tempdir().unwrap();
        let store = codex_agent::jobs::JobStore::open(state.path(), state.path()).unwrap();
        let path = crate::worker::JobSpec::path(&store, "job-1").unwrap();
        assert!(path.ends_with("specs/job-1.json"));
        assert!(crate::worker::JobSpec::path(&store, "../job-1").is_err());
    }
}
