//! [`Delegate`]: runs [`DelegateRequest`]s on the best available backend, with proof.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::jobs::{JobKind, JobStore};
use codex_core::{AuthMode, Backend, BackendKind, CodexBinary, TaskSpec, ThreadId};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::jobs::{JobHandle, JobTracker};
use crate::request::{Continuation, DelegateRequest};
use crate::select::{Requirements, select_backends};
use crate::verify::{EventHook, Verified, Witness, observe_run};

/// Delegates tasks to Codex through one or more backends and returns only proven outcomes.
///
/// Backends are injected: register each available one with its kind. Per request, the
/// preferred one that can do the job runs it (see [`select`](crate::select)): the broker's
/// app-server, else a private app-server, else `codex exec` when no approvals are needed. If a
/// backend cannot be reached at all, the next candidate is tried; the outcome says which ran.
///
/// Cheap to clone (shared inside).
///
/// ```no_run
/// # async fn demo(exec: std::sync::Arc<dyn codex_core::Backend>) -> codex_agent::Result<()> {
/// use codex_agent::{Delegate, DelegateRequest};
/// use codex_core::{BackendKind, CodexBinary};
/// let codex = CodexBinary::discover().await?;
/// let delegate = Delegate::builder(codex).backend(BackendKind::Exec, exec).build();
/// let verified = delegate.run(DelegateRequest::new("why does `cargo test` fail?")).await?;
/// println!("{}", verified.final_message().unwrap_or_default());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Delegate {
    inner: Arc<Inner>,
}

struct Inner {
    backends: Vec<(BackendKind, Arc<dyn Backend>)>,
    codex: CodexBinary,
    auth: Option<AuthMode>,
    state_root: Option<PathBuf>,
    record_jobs: bool,
    /// Cancellation of the delegations running in this process, by job id.
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl Inner {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps a running delegation's cancellation reachable by id; unregisters on drop (also when
/// the delegation's future is dropped mid-way).
struct Registration {
    inner: Arc<Inner>,
    id: String,
}

impl Registration {
    fn new(inner: &Arc<Inner>, id: &str, cancel: &CancellationToken) -> Self {
        inner.running().insert(id.to_owned(), cancel.clone());
        Registration {
            inner: inner.clone(),
            id: id.to_owned(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.running().remove(&self.id);
    }
}

impl fmt::Debug for Delegate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delegate")
            .field("backends", &self.backend_kinds())
            .field("codex", &self.inner.codex.path())
            .field("version", &self.inner.codex.version().to_string())
            .field("auth", &self.inner.auth)
            .field("state_root", &self.inner.state_root)
            .field("record_jobs", &self.inner.record_jobs)
            .finish()
    }
}

/// Builds a [`Delegate`].
///
/// ```
/// use codex_agent::Delegate;
/// use codex_core::{Capabilities, CodexBinary, CodexVersion};
/// let codex = CodexBinary::from_parts("codex".into(), CodexVersion::new(0, 169, 0), Capabilities::default());
/// let delegate = Delegate::builder(codex).record_jobs(false).build();
/// assert!(delegate.backend_kinds().is_empty());
/// ```
#[must_use]
pub struct DelegateBuilder {
    backends: Vec<(BackendKind, Arc<dyn Backend>)>,
    codex: CodexBinary,
    auth: Option<AuthMode>,
    state_root: Option<PathBuf>,
    record_jobs: bool,
}

impl fmt::Debug for DelegateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelegateBuilder")
            .field(
                "backends",
                &self.backends.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .field("codex", &self.codex.path())
            .finish_non_exhaustive()
    }
}

impl DelegateBuilder {
    /// Registers a backend as `kind` (replacing one registered as the same kind).
    ///
    /// ```no_run
    /// # fn demo(codex: codex_core::CodexBinary, asp: std::sync::Arc<dyn codex_core::Backend>) {
    /// let d = codex_agent::Delegate::builder(codex).backend(codex_core::BackendKind::AppServer, asp).build();
    /// # let _ = d; }
    /// ```
    pub fn backend(mut self, kind: BackendKind, backend: Arc<dyn Backend>) -> Self {
        if backend.kind() != kind {
            tracing::warn!(
                registered = %kind,
                reported = %backend.kind(),
                "a backend was registered under a kind it does not report; its runs will not verify"
            );
        }
        self.backends.retain(|(k, _)| *k != kind);
        self.backends.push((kind, backend));
        self
    }

    /// States how codex is signed in; every request is then checked against it before
    /// anything starts, refusing only what is certain (Fast Mode with an API key or another
    /// model provider: [`Error::Refused`]). [`AuthMode::None`] ("not logged in") is no
    /// refusal: codex may still run (a key in its environment, a session it refreshes), and
    /// a run it rejects ends in [`Error::AuthRejected`] with codex's message. Read it with
    /// [`CodexBinary::auth`].
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let d = codex_agent::Delegate::builder(codex).auth(codex_core::AuthMode::ApiKey).build();
    /// # let _ = d;
    /// ```
    pub fn auth(mut self, auth: AuthMode) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The root of the job stores (default: `$CODEX_BRIDGE_STATE_DIR`, else the platform
    /// state directory).
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let d = codex_agent::Delegate::builder(codex).state_root("/tmp/state").build();
    /// # let _ = d;
    /// ```
    pub fn state_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_root = Some(dir.into());
        self
    }

    /// Whether foreground delegations are recorded as jobs too (default: yes, so that
    /// "resume last" and `codex-companion status` see them). Background delegations are
    /// always recorded.
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let d = codex_agent::Delegate::builder(codex).record_jobs(false).build();
    /// # let _ = d;
    /// ```
    pub fn record_jobs(mut self, yes: bool) -> Self {
        self.record_jobs = yes;
        self
    }

    /// Builds the delegate.
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let d = codex_agent::Delegate::builder(codex).build();
    /// # let _ = d;
    /// ```
    pub fn build(self) -> Delegate {
        Delegate {
            inner: Arc::new(Inner {
                backends: self.backends,
                codex: self.codex,
                auth: self.auth,
                state_root: self.state_root,
                record_jobs: self.record_jobs,
                running: Mutex::default(),
            }),
        }
    }
}

/// What [`Delegate::delegate`] returns: the outcome, or the background job.
///
/// ```
/// # fn demo(d: codex_agent::Delegation) {
/// match d {
///     codex_agent::Delegation::Finished(v) => println!("{}", v.final_message().unwrap_or_default()),
///     codex_agent::Delegation::Background(job) => println!("job {}", job.id()),
///     _ => {}
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Delegation {
    /// A foreground delegation's proven outcome.
    Finished(Box<Verified>),
    /// A background delegation's job.
    Background(JobHandle),
}

/// A request after its checks, ready to run.
#[derive(Debug, Clone)]
struct Prepared {
    spec: TaskSpec,
    candidates: Vec<BackendKind>,
    resume: Option<ThreadId>,
    store: Option<JobStore>,
    title: String,
    write: bool,
    kind: JobKind,
}

impl Delegate {
    /// Starts building a delegate for the given codex (its version goes into every
    /// [`Verified`] outcome).
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let builder = codex_agent::Delegate::builder(codex);
    /// # let _ = builder;
    /// ```
    pub fn builder(codex: CodexBinary) -> DelegateBuilder {
        DelegateBuilder {
            backends: Vec::new(),
            codex,
            auth: None,
            state_root: None,
            record_jobs: true,
        }
    }

    /// The kinds of the registered backends, in registration order.
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// assert!(codex_agent::Delegate::builder(codex).build().backend_kinds().is_empty());
    /// ```
    pub fn backend_kinds(&self) -> Vec<BackendKind> {
        self.inner.backends.iter().map(|(k, _)| *k).collect()
    }

    /// The codex this delegate reports in its outcomes.
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let d = codex_agent::Delegate::builder(codex).build();
    /// assert_eq!(d.codex().version().to_string(), "0.169.0");
    /// ```
    pub fn codex(&self) -> &CodexBinary {
        &self.inner.codex
    }

    /// The backends that would be tried for `request`, best first (after the request's own
    /// checks).
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let d = codex_agent::Delegate::builder(codex).build();
    /// let err = d.candidates(&codex_agent::DelegateRequest::new("x").cwd("/")).unwrap_err();
    /// assert!(matches!(err, codex_agent::Error::NoBackend { .. }));
    /// ```
    pub fn candidates(&self, request: &DelegateRequest) -> Result<Vec<BackendKind>> {
        let spec = request.to_task_spec()?;
        select_backends(&self.backend_kinds(), Requirements::for_spec(&spec))
    }

    /// The job store of the workspace containing `dir`.
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let state = std::env::temp_dir().join("codex-agent-doc-state");
    /// let d = codex_agent::Delegate::builder(codex).state_root(&state).build();
    /// let store = d.job_store(&std::env::temp_dir()).unwrap();
    /// assert!(store.dir().starts_with(&state));
    /// ```
    pub fn job_store(&self, dir: &Path) -> Result<JobStore> {
        Ok(match &self.inner.state_root {
            Some(root) => JobStore::open(root, dir)?,
            None => JobStore::for_project(dir)?,
        })
    }

    /// Runs `request` in the foreground (whatever its background flag) and returns the
    /// proven outcome.
    ///
    /// ```no_run
    /// # async fn demo(d: codex_agent::Delegate) -> codex_agent::Result<()> {
    /// let v = d.run(codex_agent::DelegateRequest::new("list the crates").intent(codex_agent::prompt::Intent::Research)).await?;
    /// println!("{} {}", v.backend(), v.thread_id());
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, request: DelegateRequest) -> Result<Verified> {
        let prepared = self.prepare(&request, false).await?;
        let cancel = CancellationToken::new();
        // dropping this future cancels the delegation, which then still ends its job record
        let on_drop = cancel.clone().drop_guard();
        let inner = self.inner.clone();
        let record = self.inner.record_jobs;
        let task = tokio::spawn(async move {
            let tracker = match &prepared.store {
                Some(store) if record => Some(
                    JobTracker::create(store, prepared.kind, &prepared.title, prepared.write)
                        .await?,
                ),
                _ => None,
            };
            let registration = tracker
                .as_ref()
                .map(|t| Registration::new(&inner, t.id(), &cancel));
            run_tracked(inner, prepared, tracker, cancel, registration).await
        });
        let result = match task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!("the delegation task ended abnormally: {e}");
                Err(Error::JobLost {
                    job_id: "(foreground delegation)".into(),
                })
            }
        };
        on_drop.disarm();
        result
    }

    /// Starts `request` in the background: records a job, returns its handle at once, and
    /// runs it in a task of this process.
    ///
    /// ```no_run
    /// # async fn demo(d: codex_agent::Delegate) -> codex_agent::Result<()> {
    /// let job = d.spawn(codex_agent::DelegateRequest::new("fix the flaky test").write(true)).await?;
    /// println!("started {}", job.id());
    /// # Ok(()) }
    /// ```
    pub async fn spawn(&self, request: DelegateRequest) -> Result<JobHandle> {
        let prepared = self.prepare(&request, true).await?;
        let Some(store) = prepared.store.clone() else {
            return Err(Error::Refused {
                reason: "a background delegation needs a job store".into(),
                source: None,
            });
        };
        let tracker =
            JobTracker::create(&store, prepared.kind, &prepared.title, prepared.write).await?;
        let id = tracker.id().to_owned();
        let cancel = CancellationToken::new();
        let registration = Registration::new(&self.inner, &id, &cancel);
        let task = tokio::spawn(run_tracked(
            self.inner.clone(),
            prepared,
            Some(tracker),
            cancel.clone(),
            Some(registration),
        ));
        Ok(JobHandle::new(id, store, task, cancel))
    }

    /// Runs `request` in the foreground as the job `job_id`, a queued record of the request's
    /// workspace store created beforehand (e.g. by the process that queued a background job
    /// and started a worker for it). The record is claimed by this process and ended like any
    /// other; when the request is refused before anything starts, the record is marked failed
    /// with the reason.
    ///
    /// ```no_run
    /// # async fn demo(d: codex_agent::Delegate, store: codex_agent::jobs::JobStore) -> codex_agent::Result<()> {
    /// use codex_agent::jobs::{JobKind, NewJob};
    /// let job = store.create(NewJob::new(JobKind::Task, "fix the flaky test", true))?;
    /// let v = d.run_job(&job.id, codex_agent::DelegateRequest::new("fix the flaky test").write(true)).await?;
    /// assert_eq!(v.job_id(), Some(job.id.as_str()));
    /// # Ok(()) }
    /// ```
    pub async fn run_job(&self, job_id: &str, request: DelegateRequest) -> Result<Verified> {
        let prepared = match self.prepare(&request, true).await {
            Ok(p) => p,
            Err(e) => {
                if let Ok(store) = self.job_store(&request.workspace()?) {
                    let message = codex_core::error_chain(&e);
                    let id = job_id.to_owned();
                    let _ = tokio::task::spawn_blocking(move || {
                        store.update(&id, |r| {
                            r.pid = None;
                            r.fail(&message)
                        })
                    })
                    .await;
                }
                return Err(e);
            }
        };
        let Some(store) = prepared.store.clone() else {
            return Err(Error::Refused {
                reason: "a queued job needs its job store".into(),
                source: None,
            });
        };
        let tracker = JobTracker::adopt(&store, job_id).await?;
        let cancel = CancellationToken::new();
        let on_drop = cancel.clone().drop_guard();
        let registration = Registration::new(&self.inner, tracker.id(), &cancel);
        let task = tokio::spawn(run_tracked(
            self.inner.clone(),
            prepared,
            Some(tracker),
            cancel,
            Some(registration),
        ));
        let result = match task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(job = job_id, "the delegation task ended abnormally: {e}");
                Err(Error::JobLost {
                    job_id: job_id.to_owned(),
                })
            }
        };
        on_drop.disarm();
        result
    }

    /// Runs `request` as it asks: in the foreground ([`Delegation::Finished`]) or in the
    /// background ([`Delegation::Background`]).
    ///
    /// ```no_run
    /// # async fn demo(d: codex_agent::Delegate) -> codex_agent::Result<()> {
    /// use codex_agent::{Delegation, DelegateRequest};
    /// match d.delegate(DelegateRequest::new("x").background(true)).await? {
    ///     Delegation::Finished(v) => println!("{}", v.thread_id()),
    ///     Delegation::Background(job) => println!("job {}", job.id()),
    ///     _ => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn delegate(&self, request: DelegateRequest) -> Result<Delegation> {
        if request.is_background() {
            Ok(Delegation::Background(self.spawn(request).await?))
        } else {
            Ok(Delegation::Finished(Box::new(self.run(request).await?)))
        }
    }

    /// Cancels a delegation running in this process, by job id or unique id prefix (as
    /// listed by the job store). Returns whether one was found; it then ends as cancelled.
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// let d = codex_agent::Delegate::builder(codex).build();
    /// assert!(!d.cancel("job-0123"));
    /// ```
    pub fn cancel(&self, job_id: &str) -> bool {
        let running = self.inner.running();
        let matches: Vec<&CancellationToken> = running
            .iter()
            .filter(|(id, _)| {
                id.as_str() == job_id || (!job_id.is_empty() && id.starts_with(job_id))
            })
            .map(|(_, token)| token)
            .collect();
        match matches.as_slice() {
            [token] => {
                token.cancel();
                true
            }
            _ => match running.get(job_id) {
                Some(token) => {
                    token.cancel();
                    true
                }
                None => false,
            },
        }
    }

    /// The ids of the delegations running in this process.
    ///
    /// ```
    /// # let codex = codex_core::CodexBinary::from_parts("codex".into(), codex_core::CodexVersion::new(0, 169, 0), Default::default());
    /// assert!(codex_agent::Delegate::builder(codex).build().running_jobs().is_empty());
    /// ```
    pub fn running_jobs(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.running().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The checks done before anything starts, and what the run needs.
    async fn prepare(&self, request: &DelegateRequest, background: bool) -> Result<Prepared> {
        let spec = request.to_task_spec()?;
        if let Some(auth) = &self.inner.auth {
            if *auth == AuthMode::None {
                // no proof of failure: codex may use a key from its environment or refresh an
                // expired session; a rejection comes back as Error::AuthRejected
                tracing::warn!(
                    "`codex login status` reports no stored credentials; running anyway"
                );
            }
            spec.check_auth(auth)
                .map_err(|e| Error::before_turn(None, e))?;
        }
        let candidates = select_backends(&self.backend_kinds(), Requirements::for_spec(&spec))?;
        let needs_store = background
            || self.inner.record_jobs
            || matches!(request.continuation(), Continuation::ResumeLast);
        let store = if needs_store {
            let workspace = request.workspace()?;
            let this = self.clone();
            let opened = tokio::task::spawn_blocking(move || this.job_store(&workspace))
                .await
                .map_err(|e| Error::Refused {
                    reason: format!("opening the job store failed: {e}"),
                    source: None,
                })?;
            match opened {
                Ok(store) => Some(store),
                // a foreground run only records itself: it can go on without the store
                Err(e) if !background && !request.continuation().is_resume() => {
                    tracing::warn!(
                        "running without a job record: {}",
                        codex_core::ErrorChain(&e)
                    );
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let resume = match request.continuation() {
            Continuation::Fresh => None,
            Continuation::Resume(thread) => Some(thread.clone()),
            Continuation::ResumeLast => {
                let Some(store) = store.clone() else {
                    return Err(Error::Refused {
                        reason: "resuming the last task needs the job store".into(),
                        source: None,
                    });
                };
                let workspace = store.project_root().to_owned();
                let latest = tokio::task::spawn_blocking(move || store.latest_task_thread())
                    .await
                    .map_err(|e| Error::Refused {
                        reason: format!("reading the job store failed: {e}"),
                        source: None,
                    })??;
                Some(latest.ok_or(Error::NothingToResume { workspace })?)
            }
        };
        Ok(Prepared {
            spec,
            candidates,
            resume,
            store,
            title: request.task().to_owned(),
            write: request.may_write(),
            kind: request.get_job_kind(),
        })
    }

    fn backend(&self, kind: BackendKind) -> Option<Arc<dyn Backend>> {
        self.inner
            .backends
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, b)| b.clone())
    }
}

impl<H: EventHook> EventHook for Option<H> {
    async fn event(&mut self, event: &codex_core::Event) {
        if let Some(hook) = self {
            hook.event(event).await;
        }
    }
}

/// Runs a prepared request, keeping its job record (if any) in step, and ends the record.
async fn run_tracked(
    inner: Arc<Inner>,
    prepared: Prepared,
    mut tracker: Option<JobTracker>,
    cancel: CancellationToken,
    registration: Option<Registration>,
) -> Result<Verified> {
    let delegate = Delegate { inner };
    let result = execute(&delegate, &prepared, &mut tracker, &cancel).await;
    let job_id = tracker.as_ref().map(|t| t.id().to_owned());
    if let Some(t) = tracker.as_mut() {
        t.finish(&result).await;
    }
    drop(registration);
    result.map(|mut v| {
        v.set_job_id(job_id);
        v
    })
}

async fn execute(
    delegate: &Delegate,
    prepared: &Prepared,
    tracker: &mut Option<JobTracker>,
    cancel: &CancellationToken,
) -> Result<Verified> {
    let deadline = prepared
        .spec
        .timeout
        .map(|d| (codex_core::util::deadline(d), d));
    if let (Some(t), Some(first)) = (tracker.as_mut(), prepared.candidates.first()) {
        t.claim(*first).await?;
    }
    let total = prepared.candidates.len();
    for (i, kind) in prepared.candidates.iter().copied().enumerate() {
        let Some(backend) = delegate.backend(kind) else {
            continue;
        };
        let spec = prepared.spec.clone();
        let start = async {
            match &prepared.resume {
                Some(thread) => backend.resume(thread, spec).await,
                None => backend.start(spec).await,
            }
        };
        let started = tokio::select! {
            biased;
            () = cancel.cancelled() => Err(Error::Cancelled { thread_id: None }),
            () = codex_core::util::sleep_until(deadline.map(|(at, _)| at)) => Err(Error::Timeout {
                after: deadline.map(|(_, d)| d).unwrap_or_default(),
                thread_id: None,
            }),
            r = start => r.map_err(|e| Error::before_turn(Some(kind), e)),
        };
        let run = match started {
            Ok(run) => run,
            Err(e) if e.backend_unavailable() && i + 1 < total => {
                tracing::warn!(
                    backend = %kind,
                    "backend unavailable, trying the next one: {}",
                    codex_core::ErrorChain(&e)
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(backend = %kind, resume = ?prepared.resume, "turn started");
        if i > 0
            && let Some(t) = tracker.as_mut()
        {
            t.running_on(kind).await;
        }
        let witness = Witness::new(kind, prepared.resume.clone());
        return observe_run(
            run,
            witness,
            deadline,
            cancel,
            tracker,
            delegate.inner.codex.version().clone(),
        )
        .await;
    }
    Err(Error::NoBackend {
        reason: "every candidate backend was unavailable".into(),
    })
}
