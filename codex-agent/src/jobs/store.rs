//! [`JobStore`]: the on-disk, multi-process-safe store of one project's job records (layout
//! and guarantees in [the module above](super)).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codex_core::paths::STATE_DIR_ENV;
use codex_core::{BackendKind, ThreadId};

use super::record::{
    JobKind, JobPhase, JobRecord, JobStatus, MAX_JOB_ID_LEN, NewJob, validate_job_id,
};
use super::redact::redact;
use super::worker::Worker;

/// How many finished jobs a store keeps by default.
pub const DEFAULT_KEEP_FINISHED: usize = 50;

/// Errors of the job store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No job has this id (or id prefix).
    #[error("no job matches {id:?} in {}", store.display())]
    NotFound {
        /// The id or prefix asked for.
        id: String,
        /// The store searched.
        store: PathBuf,
    },
    /// The prefix matches several jobs.
    #[error("job id prefix {prefix:?} is ambiguous: it matches {}", matches.join(", "))]
    Ambiguous {
        /// The prefix.
        prefix: String,
        /// The matching ids.
        matches: Vec<String>,
    },
    /// A record (or the settings file) could not be parsed; it was moved aside to `kept_at`.
    #[error("{} is corrupt ({reason}); it was kept at {}", path.display(), kept_at.display())]
    Corrupt {
        /// Where the record was.
        path: PathBuf,
        /// Where it is now.
        kept_at: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// The requested status change is not allowed.
    #[error("job {id}: cannot go from {from} to {to}")]
    Transition {
        /// The job.
        id: String,
        /// Its status.
        from: JobStatus,
        /// The requested status.
        to: JobStatus,
    },
    /// A job id (or id prefix) is not well formed (see [`validate_job_id`]).
    #[error(
        "{id:?} is not a job id: job ids are 1 to {MAX_JOB_ID_LEN} ASCII letters, digits, '-' or '_' (like job-0194f3a2b1c-5e6f7a)"
    )]
    InvalidId {
        /// The id as given.
        id: String,
    },
    /// No state directory could be determined.
    #[error("no state directory: set {STATE_DIR_ENV}")]
    NoStateDir,
    /// An I/O error.
    #[error("job store: {context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// The result of [`JobStore::list`]: the readable jobs, newest first, and what was corrupt.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ListReport {
    /// The jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// Records that could not be read (moved aside).
    pub corrupt: Vec<StoreError>,
}

/// The job store of one project (see [`project_root`]).
#[derive(Debug, Clone)]
pub struct JobStore {
    dir: PathBuf,
    project_root: PathBuf,
    keep_finished: usize,
}

impl JobStore {
    /// The store of the project containing `cwd` ([`project_root`]: its git top-level, else
    /// `cwd` itself), under the state root (`codex_core::paths::state_root`).
    pub fn for_project(cwd: &Path) -> Result<JobStore, StoreError> {
        let root = codex_core::paths::state_root().map_err(|_| StoreError::NoStateDir)?;
        JobStore::open(&root, cwd)
    }

    /// The store of the project containing `cwd` ([`project_root`]), under `state_root`.
    pub fn open(state_root: &Path, cwd: &Path) -> Result<JobStore, StoreError> {
        let project_root = project_root(cwd);
        let dir = state_root
            .join("workspaces")
            .join(project_key(&project_root));
        for sub in ["jobs", "logs"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(io_err(format!("creating {}", dir.join(sub).display())))?;
        }
        Ok(JobStore {
            dir,
            project_root,
            keep_finished: DEFAULT_KEEP_FINISHED,
        })
    }

    /// How many finished jobs to keep when pruning.
    pub fn keep_finished(mut self, n: usize) -> Self {
        self.keep_finished = n;
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The project root this store belongs to (see [`project_root`]).
    pub fn project_root(&self) -> &Path {
        &self.project_root
    }

    /// The record file of `id`, which the caller has checked with [`validate_job_id`].
    fn job_path(&self, id: &str) -> PathBuf {
        debug_assert!(validate_job_id(id).is_ok(), "unchecked job id {id:?}");
        self.dir.join("jobs").join(format!("{id}.json"))
    }

    /// The log file of `id`, which the caller has checked with [`validate_job_id`].
    fn log_path_of(&self, id: &str) -> PathBuf {
        debug_assert!(validate_job_id(id).is_ok(), "unchecked job id {id:?}");
        self.dir.join("logs").join(format!("{id}.log"))
    }

    /// The log file of a job: `logs/<id>.log` in the store. Refuses an id that is not well
    /// formed ([`StoreError::InvalidId`]).
    ///
    /// ```
    /// # let state = tempfile::tempdir().unwrap();
    /// let store = codex_agent::jobs::JobStore::open(state.path(), state.path()).unwrap();
    /// assert!(store.log_path("job-1").unwrap().ends_with("logs/job-1.log"));
    /// assert!(store.log_path("../x").is_err());
    /// ```
    pub fn log_path(&self, id: &str) -> Result<PathBuf, StoreError> {
        validate_job_id(id)?;
        Ok(self.log_path_of(id))
    }

    fn lock(&self) -> Result<File, StoreError> {
        let path = self.dir.join("store.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        fs4::fs_std::FileExt::lock_exclusive(&file)
            .map_err(io_err(format!("locking {}", path.display())))?;
        Ok(file)
    }

    /// Creates a queued job and its (empty) log file.
    pub fn create(&self, new: NewJob) -> Result<JobRecord, StoreError> {
        let _guard = self.lock()?;
        let id = new_job_id();
        let now = now_ms();
        validate_job_id(&id)?;
        let record = JobRecord {
            log_file: self.log_path_of(&id),
            id,
            kind: new.kind,
            title: title_line(&new.title),
            summary: None,
            project_root: self.project_root.clone(),
            write: new.write,
            status: JobStatus::Queued,
            phase: JobPhase::Starting,
            pid: None,
            pid_start_time: None,
            backend: None,
            thread_id: None,
            turn_id: None,
            created_at_ms: now,
            updated_at_ms: now,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            result: None,
            session_id: new.session_id,
        };
        File::create(&record.log_file)
            .map_err(io_err(format!("creating {}", record.log_file.display())))?;
        self.write_record(&record)?;
        Ok(record)
    }

    /// Reads, changes and writes back one job under the lock. The change sees the current
    /// record (after reconciliation) and may refuse by returning an error. It cannot change
    /// the job's identity: `id` and `log_file` are put back as they were.
    pub fn update<F>(&self, id: &str, change: F) -> Result<JobRecord, StoreError>
    where
        F: FnOnce(&mut JobRecord) -> Result<(), StoreError>,
    {
        let _guard = self.lock()?;
        let id = self.resolve_locked(id)?;
        let mut record = self.read_record(&id)?;
        reconcile_one(&mut record);
        change(&mut record)?;
        record.log_file = self.log_path_of(&id);
        record.id = id;
        record.updated_at_ms = now_ms();
        record.title = redact(&record.title);
        record.summary = record.summary.as_deref().map(redact);
        record.error = record.error.as_deref().map(redact);
        if let Some(result) = &mut record.result {
            result.final_message = result.final_message.as_deref().map(redact);
            result.reasoning_summary = result.reasoning_summary.as_deref().map(redact);
        }
        self.write_record(&record)?;
        if record.status.is_finished() {
            self.prune_locked()?;
        }
        Ok(record)
    }

    /// Marks the job as run by this process (pid and its start time), status running.
    pub fn claim(&self, id: &str, backend: BackendKind) -> Result<JobRecord, StoreError> {
        let pid = std::process::id();
        self.update(id, |r| {
            r.set_status(JobStatus::Running)?;
            r.set_worker(Some(Worker::of(pid)));
            r.backend = Some(backend);
            r.phase = JobPhase::Starting;
            Ok(())
        })
    }

    /// One job by id or unique id prefix, reconciled.
    pub fn get(&self, id_or_prefix: &str) -> Result<JobRecord, StoreError> {
        let _guard = self.lock()?;
        let id = self.resolve_locked(id_or_prefix)?;
        let mut record = self.read_record(&id)?;
        if reconcile_one(&mut record) {
            self.write_record(&record)?;
        }
        Ok(record)
    }

    /// Every job, newest first, reconciled; corrupt records (unparsable, an `id` that is not
    /// their file name, a file name that is not a job id) are moved aside and reported.
    pub fn list(&self) -> Result<ListReport, StoreError> {
        let _guard = self.lock()?;
        let mut report = ListReport::default();
        let scan = self.scan()?;
        for path in scan.misnamed {
            report.corrupt.push(
                self.keep_aside(path, "its file name is not a job id (see validate_job_id)")?,
            );
        }
        for id in scan.ids {
            match self.read_record(&id) {
                Ok(mut record) => {
                    if reconcile_one(&mut record) {
                        self.write_record(&record)?;
                    }
                    report.jobs.push(record);
                }
                Err(e @ StoreError::Corrupt { .. }) => report.corrupt.push(e),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        report
            .jobs
            .sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        Ok(report)
    }

    /// The newest job that is not finished, if any.
    pub fn latest_active(&self) -> Result<Option<JobRecord>, StoreError> {
        Ok(self
            .list()?
            .jobs
            .into_iter()
            .find(|j| !j.status.is_finished()))
    }

    /// The thread of the newest completed task of this project (never a review thread),
    /// for "resume last".
    pub fn latest_task_thread(&self) -> Result<Option<ThreadId>, StoreError> {
        Ok(self
            .list()?
            .jobs
            .into_iter()
            .filter(|j| j.kind == JobKind::Task && j.status.is_finished())
            .filter(|j| j.project_root == self.project_root)
            .find_map(|j| j.thread_id))
    }

    /// Appends text to a job's log, redacted.
    pub fn append_log(&self, id: &str, text: &str) -> Result<(), StoreError> {
        let path = self.log_path(id)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        let mut text = redact(text);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        file.write_all(text.as_bytes())
            .map_err(io_err(format!("writing {}", path.display())))
    }

    /// Removes the oldest finished jobs beyond `keep_finished`, and their logs.
    pub fn prune(&self) -> Result<usize, StoreError> {
        let _guard = self.lock()?;
        self.prune_locked()
    }

    fn prune_locked(&self) -> Result<usize, StoreError> {
        // the paths removed are built from the (checked) file names, never from a record's
        // content: read_record guarantees `id` is the file name and derives `log_file`
        let mut finished: Vec<(String, JobRecord)> = self
            .scan()?
            .ids
            .into_iter()
            .filter_map(|id| self.read_record(&id).ok().map(|r| (id, r)))
            .filter(|(_, r)| r.status.is_finished())
            .collect();
        if finished.len() <= self.keep_finished {
            return Ok(0);
        }
        finished.sort_by_key(|(_, r)| {
            std::cmp::Reverse((r.finished_at_ms.unwrap_or(0), r.created_at_ms))
        });
        let mut removed = 0;
        for (id, _) in finished.into_iter().skip(self.keep_finished) {
            let _ = fs::remove_file(self.job_path(&id));
            let _ = fs::remove_file(self.log_path_of(&id));
            removed += 1;
        }
        Ok(removed)
    }

    /// The `jobs/*.json` files: the ids of those named by a valid job id (sorted), and the
    /// paths of the others. Folders are skipped.
    fn scan(&self) -> Result<Scan, StoreError> {
        let dir = self.dir.join("jobs");
        let mut scan = Scan::default();
        for entry in fs::read_dir(&dir).map_err(io_err(format!("reading {}", dir.display())))? {
            let entry = entry.map_err(io_err(format!("reading {}", dir.display())))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".json") {
                if validate_job_id(id).is_ok() {
                    scan.ids.push(id.to_owned());
                } else {
                    scan.misnamed.push(entry.path());
                }
            }
        }
        scan.ids.sort();
        Ok(scan)
    }

    fn resolve_locked(&self, prefix: &str) -> Result<String, StoreError> {
        validate_job_id(prefix)?;
        if self.job_path(prefix).exists() {
            return Ok(prefix.to_owned());
        }
        let matches: Vec<String> = self
            .scan()?
            .ids
            .into_iter()
            .filter(|id| id.starts_with(prefix))
            .collect();
        match matches.len() {
            0 => Err(StoreError::NotFound {
                id: prefix.to_owned(),
                store: self.dir.clone(),
            }),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            _ => Err(StoreError::Ambiguous {
                prefix: prefix.to_owned(),
                matches,
            }),
        }
    }

    /// Reads the record of `id`. The file name is the identity: a record whose `id` field
    /// says otherwise is kept aside as corrupt, and `log_file` is derived from `id`.
    fn read_record(&self, id: &str) -> Result<JobRecord, StoreError> {
        validate_job_id(id)?;
        let path = self.job_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    id: id.to_owned(),
                    store: self.dir.clone(),
                });
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        let mut record = match serde_json::from_slice::<JobRecord>(&bytes) {
            Ok(r) => r,
            Err(e) => return Err(self.keep_aside(path, &e.to_string())?),
        };
        if record.id != id {
            let claimed: String = record.id.chars().take(80).collect();
            let reason = format!("its id {claimed:?} is not its file name");
            return Err(self.keep_aside(path, &reason)?);
        }
        record.log_file = self.log_path_of(id);
        Ok(record)
    }

    /// Moves the corrupt file `path` (a record of `jobs/`, or the settings file) aside to
    /// `<name>.corrupt-N` and returns the [`StoreError::Corrupt`] that reports it.
    fn keep_aside(&self, path: PathBuf, reason: &str) -> Result<StoreError, StoreError> {
        let mut n = 0;
        let kept_at = loop {
            let mut name = path.file_name().unwrap_or_default().to_owned();
            name.push(format!(".corrupt-{n}"));
            let candidate = path.with_file_name(name);
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        fs::rename(&path, &kept_at).map_err(io_err(format!("moving aside {}", path.display())))?;
        tracing::warn!(
            "corrupt store file {} kept at {}",
            path.display(),
            kept_at.display()
        );
        Ok(StoreError::Corrupt {
            path,
            kept_at,
            reason: reason.to_owned(),
        })
    }

    fn write_record(&self, record: &JobRecord) -> Result<(), StoreError> {
        validate_job_id(&record.id)?;
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| io_err("serialising a job record")(std::io::Error::other(e)))?;
        write_atomically(&self.job_path(&record.id), &json)
    }

    /// The project's settings (`settings.json` in the store); defaults when none were saved.
    /// A file that cannot be parsed is kept aside like a corrupt record
    /// ([`StoreError::Corrupt`]) rather than silently reset.
    pub fn settings(&self) -> Result<ProjectSettings, StoreError> {
        let _guard = self.lock()?;
        self.read_settings()
    }

    /// Reads, changes and saves the project's settings under the store's lock.
    pub fn update_settings<F>(&self, change: F) -> Result<ProjectSettings, StoreError>
    where
        F: FnOnce(&mut ProjectSettings),
    {
        let _guard = self.lock()?;
        let mut settings = self.read_settings()?;
        change(&mut settings);
        let json = serde_json::to_vec_pretty(&settings)
            .map_err(|e| io_err("serialising the settings")(std::io::Error::other(e)))?;
        write_atomically(&self.dir.join(SETTINGS_FILE), &json)?;
        Ok(settings)
    }

    fn read_settings(&self) -> Result<ProjectSettings, StoreError> {
        let path = self.dir.join(SETTINGS_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProjectSettings::default());
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_slice(&bytes).or_else(|e| Err(self.keep_aside(path, &e.to_string())?))
    }
}

/// The name of a store's settings file.
const SETTINGS_FILE: &str = "settings.json";

/// Per-project settings kept beside the jobs (`settings.json` in the project's store), read
/// with [`JobStore::settings`] and changed with [`JobStore::update_settings`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ProjectSettings {
    /// Whether the stop-time review gate is on for this project.
    #[serde(default)]
    pub review_gate: bool,
}

/// Writes `bytes` to `path` as one complete new file (a synced temp file in the same folder,
/// renamed over `path`), so a reader sees the old content or the new, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(io_err(format!("creating a temp file in {}", dir.display())))?;
    tmp.write_all(bytes)
        .map_err(io_err(format!("writing {}", path.display())))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err(format!("syncing {}", path.display())))?;
    tmp.persist(path)
        .map_err(|e| io_err(format!("replacing {}", path.display()))(e.error))?;
    Ok(())
}

/// The files of a store's `jobs/` folder (see [`JobStore::scan`]).
#[derive(Default)]
struct Scan {
    /// Records named by a valid job id, sorted.
    ids: Vec<String>,
    /// `*.json` files whose name is not a job id.
    misnamed: Vec<PathBuf>,
}

/// Marks a queued/running job whose worker is gone as failed. Returns whether it changed.
fn reconcile_one(record: &mut JobRecord) -> bool {
    if record.status.is_finished() {
        return false;
    }
    let Some(pid) = record.pid else { return false };
    if Worker::from_parts(pid, record.pid_start_time).is_alive() {
        return false;
    }
    let _ = record.fail("worker exited before the job finished");
    record.pid = None;
    record.updated_at_ms = now_ms();
    true
}

/// The project a directory belongs to: the nearest ancestor holding `.git` (a repository or
/// worktree), else the directory itself; canonicalised. Each project has its own job store.
/// (Not to be confused with the roots Codex may write to, `codex_core::writable_roots`.)
pub fn project_root(cwd: &Path) -> PathBuf {
    let canon = cwd.canonicalize().unwrap_or_else(|_| cwd.to_owned());
    canon
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .unwrap_or(&canon)
        .to_owned()
}

/// A stable, readable directory name for a project root: `<basename>-<16 hex of FNV-1a>`.
fn project_key(root: &Path) -> String {
    let hash = codex_core::util::fnv1a64(root.as_os_str().as_encoded_bytes());
    let base: String = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{base}-{hash:016x}")
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

fn new_job_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64;
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // xorshift to spread the bits
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    format!("job-{:011x}-{:06x}", now_ms(), x & 0xff_ffff)
}

fn title_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut title: String = redact(line).chars().take(120).collect();
    if title.is_empty() {
        title = "(no title)".into();
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, tempfile::TempDir, JobStore) {
        let state = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        let s = JobStore::open(state.path(), ws.path()).unwrap();
        (state, ws, s)
    }

    #[test]
    fn lifecycle_and_prefixes() {
        let (_s, _w, store) = store();
        let job = store
            .create(NewJob::new(JobKind::Task, "fix it\nmore", true))
            .unwrap();
        assert_eq!(job.title, "fix it");
        assert_eq!(job.status, JobStatus::Queued);
        let claimed = store.claim(&job.id, BackendKind::AppServer).unwrap();
        assert_eq!(claimed.status, JobStatus::Running);
        assert_eq!(claimed.pid, Some(std::process::id()));
        let prefix = &job.id[..job.id.len() - 2];
        assert_eq!(store.get(prefix).unwrap().id, job.id);
        let done = store
            .update(&job.id, |r| {
                r.thread_id = Some("t-1".into());
                r.set_status(JobStatus::Completed)
            })
            .unwrap();
        assert!(done.finished_at_ms.is_some());
        let err = store
            .update(&job.id, |r| r.set_status(JobStatus::Running))
            .unwrap_err();
        assert!(matches!(err, StoreError::Transition { .. }));
        assert_eq!(store.latest_task_thread().unwrap().unwrap().as_str(), "t-1");
        assert!(matches!(
            store.get("nope"),
            Err(StoreError::NotFound { .. })
        ));
        store
            .create(NewJob::new(JobKind::Review, "r", false))
            .unwrap();
        assert!(matches!(
            store.get("job-"),
            Err(StoreError::Ambiguous { .. })
        ));
        for bad in ["../x", "", "a/b", "job.json", "x y"] {
            assert!(
                matches!(store.get(bad), Err(StoreError::InvalidId { .. })),
                "{bad:?}"
            );
        }
        assert!(store.log_path("../x").is_err());
        assert!(store.append_log("../x", "nope").is_err());
    }

    #[test]
    fn sessions_and_settings() {
        let (_s, _w, store) = store();
        let job = store
            .create(NewJob::new(JobKind::Task, "t", false).session(Some("sess-1".into())))
            .unwrap();
        assert_eq!(
            store.get(&job.id).unwrap().session_id.as_deref(),
            Some("sess-1")
        );
        let blank = store
            .create(NewJob::new(JobKind::Task, "t", false).session(Some(" ".into())))
            .unwrap();
        assert_eq!(blank.session_id, None);

        assert!(!store.settings().unwrap().review_gate);
        let on = store.update_settings(|s| s.review_gate = true).unwrap();
        assert!(on.review_gate);
        assert!(store.settings().unwrap().review_gate);

        fs::write(store.dir().join(SETTINGS_FILE), b"{not json").unwrap();
        let err = store.settings().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(
            !store.settings().unwrap().review_gate,
            "kept aside, then defaults"
        );
    }

    /// Every file outside `skip` under `root`, with its content (`None` for a folder).
    fn snapshot(root: &Path, skip: &Path) -> std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> {
        let mut out = std::collections::BTreeMap::new();
        let mut todo = vec![root.to_owned()];
        while let Some(dir) = todo.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.starts_with(skip) {
                    continue;
                }
                if path.is_dir() {
                    todo.push(path.clone());
                    out.insert(path, None);
                } else {
                    out.insert(path.clone(), Some(fs::read(&path).unwrap()));
                }
            }
        }
        out
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn hand_edited_ids_never_become_paths() {
        let root = tempfile::tempdir().unwrap();
        let ws = root.path().join("ws");
        fs::create_dir_all(&ws).unwrap();
        let victim = root.path().join("victim.log");
        fs::write(&victim, b"keep me").unwrap();
        let store = JobStore::open(&root.path().join("state"), &ws)
            .unwrap()
            .keep_finished(0);
        let jobs = store.dir().join("jobs");

        // a running job of a dead worker (reconciling rewrites it) that claims to be ../../x
        let a = store
            .create(NewJob::new(JobKind::Task, "a", false))
            .unwrap();
        let mut doc = serde_json::to_value(&a).unwrap();
        doc["id"] = "../../x".into();
        doc["status"] = "running".into();
        doc["pid"] = dead_pid().into();
        fs::write(store.job_path(&a.id), doc.to_string()).unwrap();
        // a finished job (pruning deletes it) whose id is another job's and whose log file
        // is outside the store
        let b = store
            .create(NewJob::new(JobKind::Task, "b", false))
            .unwrap();
        let mut doc = serde_json::to_value(&b).unwrap();
        doc["id"] = "job-c".into();
        doc["status"] = "completed".into();
        doc["log_file"] = victim.to_string_lossy().into_owned().into();
        fs::write(store.job_path(&b.id), doc.to_string()).unwrap();
        // a finished job whose id is right but whose log file is outside the store
        let d = store
            .create(NewJob::new(JobKind::Task, "d", false))
            .unwrap();
        let mut doc = serde_json::to_value(&d).unwrap();
        doc["status"] = "completed".into();
        doc["log_file"] = victim.to_string_lossy().into_owned().into();
        fs::write(store.job_path(&d.id), doc.to_string()).unwrap();
        // files whose names are not job ids
        fs::write(jobs.join("x.y.json"), b"{}").unwrap();
        fs::write(jobs.join("a b.json"), b"{}").unwrap();

        let before = snapshot(root.path(), store.dir());
        assert!(matches!(store.get(&a.id), Err(StoreError::Corrupt { .. })));
        assert!(matches!(
            store.get("../../x"),
            Err(StoreError::InvalidId { .. })
        ));
        let report = store.list().unwrap();
        let corrupt: Vec<String> = report.corrupt.iter().map(ToString::to_string).collect();
        assert_eq!(corrupt.len(), 3, "{corrupt:?}"); // b, x.y, a b (a went aside in get)
        assert!(
            corrupt
                .iter()
                .any(|c| c.contains("\"job-c\" is not its file name")),
            "{corrupt:?}"
        );
        assert_eq!(report.jobs.len(), 1, "{:?}", report.jobs);
        assert_eq!(report.jobs[0].id, d.id);
        assert_eq!(report.jobs[0].log_file, store.log_path(&d.id).unwrap());
        store.prune().unwrap();
        assert!(store.list().unwrap().jobs.is_empty());
        assert!(store.update("job-c", |_| Ok(())).is_err());
        assert_eq!(snapshot(root.path(), store.dir()), before);
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        // nothing was duplicated, everything corrupt is kept aside
        assert!(!jobs.join("job-c.json").exists());
        assert!(jobs.join(format!("{}.json.corrupt-0", a.id)).exists());
        assert!(jobs.join(format!("{}.json.corrupt-0", b.id)).exists());
        assert!(jobs.join("x.y.json.corrupt-0").exists());
        assert!(jobs.join("a b.json.corrupt-0").exists());
    }

    #[test]
    fn an_update_cannot_change_the_identity() {
        let (_s, _w, store) = store();
        let job = store
            .create(NewJob::new(JobKind::Task, "t", false))
            .unwrap();
        let updated = store
            .update(&job.id, |r| {
                r.id = "../../x".into();
                r.log_file = "/etc/passwd".into();
                r.summary = Some("s".into());
                Ok(())
            })
            .unwrap();
        assert_eq!(updated.id, job.id);
        assert_eq!(updated.log_file, job.log_file);
        assert_eq!(store.get(&job.id).unwrap().summary.as_deref(), Some("s"));
        let names: Vec<_> = fs::read_dir(store.dir().join("jobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [format!("{}.json", job.id)]);
    }

    #[test]
    fn dead_worker_is_reconciled() {
        let (_s, _w, store) = store();
        let job = store
            .create(NewJob::new(JobKind::Task, "t", false))
            .unwrap();
        let pid = dead_pid();
        store
            .update(&job.id, |r| {
                r.set_status(JobStatus::Running)?;
                r.pid = Some(pid);
                Ok(())
            })
            .unwrap();
        let got = store.get(&job.id).unwrap();
        assert_eq!(got.status, JobStatus::Failed);
        assert!(got.error.unwrap().contains("worker exited"));
    }

    #[test]
    fn corrupt_records_are_kept_aside() {
        let (_s, _w, store) = store();
        let job = store
            .create(NewJob::new(JobKind::Task, "t", false))
            .unwrap();
        fs::write(store.job_path(&job.id), b"{not json").unwrap();
        let report = store.list().unwrap();
        assert!(report.jobs.is_empty());
        assert_eq!(report.corrupt.len(), 1);
        let StoreError::Corrupt { kept_at, .. } = &report.corrupt[0] else {
            panic!()
        };
        assert_eq!(fs::read(kept_at).unwrap(), b"{not json");
    }

    /// Found by `cargo xtask fuzz`: a corrupt `..json` (job id ".") made `list` loop forever,
    /// holding the store's lock.
    #[test]
    fn a_corrupt_dot_dot_json_is_kept_aside() {
        let (_s, _w, store) = store();
        let jobs = store.dir().join("jobs");
        fs::write(jobs.join("..json"), b"{not json").unwrap();
        let report = store.list().unwrap();
        assert_eq!(report.corrupt.len(), 1, "{report:?}");
        assert_eq!(
            fs::read(jobs.join("..json.corrupt-0")).unwrap(),
            b"{not json"
        );
    }

    #[test]
    fn prune_keeps_newest_finished() {
        let (_s, _w, store) = store();
        let store = store.keep_finished(2);
        let mut ids = Vec::new();
        for i in 0..4 {
            let j = store
                .create(NewJob::new(JobKind::Task, format!("t{i}"), false))
                .unwrap();
            store
                .update(&j.id, |r| r.set_status(JobStatus::Completed))
                .unwrap();
            ids.push(j.id);
            std::thread::sleep(Duration::from_millis(3));
        }
        let running = store
            .create(NewJob::new(JobKind::Task, "live", false))
            .unwrap();
        let left: Vec<String> = store
            .list()
            .unwrap()
            .jobs
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&running.id) && left.contains(&ids[3]) && left.contains(&ids[2]));
    }

    #[test]
    fn secrets_are_redacted() {
        let (_s, _w, store) = store();
        let job = store
            .create(NewJob::new(
                JobKind::Task,
                "use sk-abcdefghijklmnop now",
                false,
            ))
            .unwrap();
        assert_eq!(job.title, "use [REDACTED] now");
        store
            .append_log(&job.id, "Authorization: Bearer tok_123456789")
            .unwrap();
        let log = fs::read_to_string(store.log_path(&job.id).unwrap()).unwrap();
        assert_eq!(log, "Authorization: Bearer [REDACTED]\n");
        assert_eq!(redact("api_key=abcd1234 ok"), "api_key=[REDACTED] ok");
        assert_eq!(redact("sk-short"), "sk-short");
        assert_eq!(redact("héllo wörld"), "héllo wörld");
    }

    #[test]
    fn project_key_uses_git_top_level() {
        let ws = tempfile::tempdir().unwrap();
        fs::create_dir_all(ws.path().join(".git")).unwrap();
        fs::create_dir_all(ws.path().join("a/b")).unwrap();
        assert_eq!(
            project_root(&ws.path().join("a/b")),
            ws.path().canonicalize().unwrap()
        );
        let k = project_key(Path::new("/x/my repo"));
        assert!(
            k.starts_with("my_repo-") && k.len() == "my_repo-".len() + 16,
            "{k}"
        );
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let (_s, _w, store) = store();
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        let j = store
                            .create(NewJob::new(JobKind::Task, format!("{t}-{i}"), false))
                            .unwrap();
                        store
                            .update(&j.id, |r| {
                                r.summary = Some(format!("s{t}-{i}"));
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let jobs = store.list().unwrap().jobs;
        assert_eq!(jobs.len(), 80);
        assert!(jobs.iter().all(|j| j.summary.is_some()));
    }
}
