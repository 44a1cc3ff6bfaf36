//! The subcommands.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::connect::{
    self, Connected, Interrupt, JobClock, broker_binary, broker_status, interrupt_through_broker,
};
use crate::error::{CompanionError, ExitCode};
use crate::progress::{EventCallback, progress_line};
use crate::review::{render_native, resolve_scope, run_native_review, scope_diff};
use crate::worker::{
    BackendChoice, JobSpec, Stopped, detach_from_caller, start_worker, stop_worker,
};
use crate::{adversarial, render};
use anyhow::{Context, Result, anyhow};
use codex_agent::jobs::{JobKind, JobRecord, JobStatus, JobStore, NewJob};
use codex_agent::prompt::Intent;
use codex_agent::{Continuation, Delegate, DelegateRequest, Verified};
use codex_core::{AuthContext, AuthMode, BackendKind, CodexBinary, ErrorChain, ThreadId};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    AdversarialArgs, Cli, Command, Global, JobArg, ReviewArgs, StatusArgs, TaskArgs, WorkerArgs,
};

/// The turn timeout when none is given: 30 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The most of a diff put into an adversarial review's prompt.
const MAX_DIFF_BYTES: usize = 200 * 1024;
/// How long `cancel` lets a worker end by itself after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often `status --wait` reads the store.
const POLL: Duration = Duration::from_millis(200);

/// What every command needs.
struct Ctx {
    json: bool,
    cwd: PathBuf,
    choice: BackendChoice,
}

impl Ctx {
    fn new(global: &Global) -> Result<Ctx> {
        let cwd = match &global.cwd {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("reading the current directory")?,
        };
        if !cwd.is_dir() {
            return Err(CompanionError::usage(format!(
                "--cwd {}: not an existing directory",
                cwd.display()
            ))
            .into());
        }
        let cwd = cwd
            .canonicalize()
            .with_context(|| format!("resolving {}", cwd.display()))?;
        Ok(Ctx {
            json: global.json,
            cwd,
            choice: if global.no_broker {
                BackendChoice::Private
            } else {
                BackendChoice::Broker
            },
        })
    }

    fn store(&self) -> Result<JobStore> {
        JobStore::for_project(&self.cwd)
            .map_err(CompanionError::from)
            .context("opening the job store")
    }

    /// Prints `text` on stdout, or `doc` with `--json`.
    fn emit(&self, text: &str, doc: &Value) {
        if self.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(doc).unwrap_or_else(|_| doc.to_string())
            );
        } else if text.ends_with('\n') {
            out!("{text}");
        } else {
            outln!("{text}");
        }
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx::new(&cli.global)?;
    if matches!(
        cli.command,
        Command::Task(_) | Command::Review(_) | Command::AdversarialReview(_)
    ) {
        // what codex's commands leave behind when their parent dies (the children of its
        // shell-snapshot login shell) is re-parented to us and killed with codex's tree
        adopt_orphans("codex-companion");
    }
    match cli.command {
        Command::Task(args) => task(&ctx, args).await,
        Command::Review(args) => review(&ctx, args).await,
        Command::AdversarialReview(args) => adversarial_review(&ctx, args).await,
        Command::Status(args) => status(&ctx, args).await,
        Command::Result(arg) => result(&ctx, arg),
        Command::Cancel(arg) => cancel(&ctx, arg).await,
        Command::Setup => setup(&ctx).await,
        Command::Worker(args) => worker(&ctx, args).await,
    }
}

/// Progress lines on stderr.
fn progress() -> EventCallback {
    Arc::new(|event| {
        if let Some(line) = progress_line(event) {
            errln!("[codex] {line}");
        }
    })
}

fn note(line: &str) {
    errln!("[codex-companion] {line}");
}

/// The codex to run, found within the job's time.
async fn codex(clock: &JobClock) -> Result<CodexBinary> {
    clock
        .bound("probing codex", CodexBinary::discover_cached())
        .await?
        .map_err(|e| anyhow!(codex_agent::Error::from(e)))
}

/// What is left of the job's time for its turn, marking the job failed when start-up used
/// it all.
fn turn_time(store: &JobStore, job_id: &str, clock: &JobClock) -> Result<Duration> {
    clock.turn_time("starting the turn").map_err(|e| {
        let err = anyhow!(e);
        fail_job(store, job_id, &err);
        err
    })
}

/// Runs `fut`; SIGINT or SIGTERM call `on_signal` (which should make `fut` end soon, as
/// cancelled) once each time they arrive.
async fn with_signals<T>(
    fut: impl std::future::Future<Output = T>,
    on_signal: impl Fn(),
) -> Result<T> {
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Ok(out),
            _ = interrupt.recv() => on_signal(),
            _ = terminate.recv() => on_signal(),
        }
    }
}

/// Marks a job failed (best effort), for failures before its run started.
fn fail_job(store: &JobStore, id: &str, err: &anyhow::Error) {
    let message = codex_core::error_chain(err.as_ref());
    let _ = store.append_log(id, &format!("failed: {message}"));
    let _ = store.update(id, |r| {
        if r.status.is_finished() {
            return Ok(());
        }
        r.pid = None;
        r.fail(&message)
    });
}

/// Connects for a job within its time, marking it failed when that is impossible.
async fn connect_for(
    store: &JobStore,
    job_id: &str,
    codex: &CodexBinary,
    choice: BackendChoice,
    clock: JobClock,
    private_args: &[String],
) -> Result<Connected> {
    let connected = if private_args.is_empty() {
        connect::connect(codex, choice, clock).await
    } else {
        connect::connect_private(codex, clock, private_args).await
    };
    match connected {
        Ok(c) => {
            if let Some(why) = &c.fallback {
                note(&format!(
                    "the broker is not available ({why}); using a private app-server"
                ));
            }
            Ok(c)
        }
        Err(e) => {
            let err = anyhow!(e).context("connecting to codex");
            fail_job(store, job_id, &err);
            Err(err)
        }
    }
}

// ---------------------------------------------------------------------------------------
// task

fn read_prompt(args: &TaskArgs) -> Result<String> {
    let text = if !args.prompt.is_empty() {
        args.prompt.join(" ")
    } else if let Some(file) = &args.prompt_file {
        if file.as_os_str() == "-" {
            read_stdin()?
        } else {
            std::fs::read_to_string(file).map_err(|e| {
                CompanionError::usage(format!("--prompt-file {}: {e}", file.display()))
            })?
        }
    } else if !std::io::stdin().is_terminal() {
        read_stdin()?
    } else {
        return Err(CompanionError::usage(
            "no prompt: give it as arguments, with --prompt-file F, or on stdin",
        )
        .into());
    };
    if text.trim().is_empty() {
        return Err(CompanionError::usage("the prompt is empty").into());
    }
    Ok(text)
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CompanionError::usage(format!("reading the prompt from stdin: {e}")))?;
    Ok(text)
}

async fn task(ctx: &Ctx, args: TaskArgs) -> Result<ExitCode> {
    let prompt = read_prompt(&args)?;
    let timeout = args.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let store = ctx.store()?;
    let continuation = if args.resume_last {
        let latest = store
            .latest_task_thread()
            .map_err(CompanionError::from)?
            .ok_or_else(|| codex_agent::Error::NothingToResume {
                workspace: store.project_root().to_owned(),
            })?;
        Continuation::Resume(latest)
    } else if let Some(id) = &args.resume {
        if id.trim().is_empty() {
            return Err(CompanionError::usage("--resume: the thread id is empty").into());
        }
        Continuation::Resume(ThreadId(id.trim().to_owned()))
    } else {
        Continuation::Fresh
    };
    if let Some(model) = &args.model
        && model.trim().is_empty()
    {
        return Err(CompanionError::usage("--model: the model name is empty").into());
    }
    let mut request = DelegateRequest::new(prompt.clone())
        .intent(Intent::Free)
        .replace_prompt(prompt.clone())
        .write(args.write)
        .cwd(&ctx.cwd)
        .timeout(timeout)
        .continue_with(continuation);
    if let Some(model) = &args.model {
        request = request.model(model.trim());
    }
    if let Some(effort) = args.effort {
        request = request.effort(effort.into());
    }
    request
        .to_task_spec()
        .map_err(|e| CompanionError::usage(codex_core::error_chain(&e)))?;
    let job = store
        .create(NewJob::new(JobKind::Task, &prompt, args.write))
        .map_err(CompanionError::from)?;

    if args.background {
        return start_background(ctx, &store, &job, request);
    }
    note(&format!("job {}", job.id));
    // --timeout covers the whole job: finding codex, connecting, the turn
    let clock = JobClock::start(timeout);
    let codex = match codex(&clock).await {
        Ok(c) => c,
        Err(e) => {
            fail_job(&store, &job.id, &e);
            return Err(e);
        }
    };
    let connected = connect_for(&store, &job.id, &codex, ctx.choice, clock, &[]).await?;
    let request = request.timeout(turn_time(&store, &job.id, &clock)?);
    let delegate = connected.delegate(&codex, Some(progress()));
    let outcome = run_job(&delegate, &job.id, request).await?;
    Ok(finish_turn(ctx, &store, &job.id, outcome, |v| {
        let text = v.final_message().unwrap_or_default().to_owned();
        (text, json!({}))
    }))
}

fn start_background(
    ctx: &Ctx,
    store: &JobStore,
    job: &JobRecord,
    request: DelegateRequest,
) -> Result<ExitCode> {
    let start = || -> Result<u32> {
        JobSpec::new(request, ctx.choice).save(store, &job.id)?;
        if let Err(e) = JobSpec::prune_orphans(store) {
            tracing::debug!("pruning job specs: {}", ErrorChain(&e));
        }
        let exe = std::env::current_exe().context("finding this executable")?;
        Ok(start_worker(&exe, store, &job.id)?)
    };
    let pid = match start() {
        Ok(pid) => pid,
        Err(e) => {
            fail_job(store, &job.id, &e);
            JobSpec::remove(store, &job.id);
            return Err(e.context("starting the background job"));
        }
    };
    note(&format!(
        "started background job {} (worker pid {pid}); follow it with `codex-companion status {} --wait`, then `codex-companion result {}`",
        job.id, job.id, job.id
    ));
    let doc = json!({
        "ok": true,
        "job_id": job.id,
        "status": "queued",
        "worker_pid": pid,
        "workspace": store.project_root(),
        "log_file": job.log_file,
    });
    ctx.emit(&job.id, &doc);
    Ok(ExitCode::Success)
}

/// Runs a delegation as a job, cancelling it on SIGINT / SIGTERM.
async fn run_job(
    delegate: &Delegate,
    job_id: &str,
    request: DelegateRequest,
) -> Result<codex_agent::Result<Verified>> {
    let d = delegate.clone();
    let id = job_id.to_owned();
    with_signals(delegate.run_job(job_id, request), move || {
        note(&format!("cancelling job {id}"));
        d.cancel(&id);
    })
    .await
}

/// Prints a turn's answer (or failure) and gives the exit code. `answer` renders a verified
/// outcome as text and extra JSON members.
fn finish_turn(
    ctx: &Ctx,
    store: &JobStore,
    job_id: &str,
    outcome: codex_agent::Result<Verified>,
    answer: impl FnOnce(&Verified) -> (String, Value),
) -> ExitCode {
    match outcome {
        Ok(v) => {
            let (text, extra) = answer(&v);
            let mut doc = json!({
                "ok": true,
                "job_id": job_id,
                "status": "completed",
                "backend": v.backend(),
                "codex_version": v.codex_version().to_string(),
                "thread_id": v.thread_id(),
                "turn_id": v.turn_id(),
                "final_message": v.final_message(),
                "touched_files": v.touched_files(),
                "usage": v.usage(),
            });
            if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
                doc.extend(extra.clone());
            }
            ctx.emit(&text, &doc);
            ExitCode::Success
        }
        Err(err) => {
            let record = store.get(job_id).ok();
            let status = record
                .as_ref()
                .map_or("failed".to_owned(), |r| r.status.to_string());
            let message = codex_agent::jobs::redact(&codex_core::error_chain(&err));
            errln!("codex-companion: job {job_id} {status}: {message}");
            if ctx.json {
                let doc = json!({
                    "ok": false,
                    "job_id": job_id,
                    "status": status,
                    "error": message,
                    "error_kind": error_kind(&err),
                    "thread_id": err.thread_id(),
                });
                ctx.emit("", &doc);
            }
            ExitCode::Failure
        }
    }
}

fn error_kind(err: &codex_agent::Error) -> &'static str {
    use codex_agent::Error as E;
    match err {
        E::BinaryMissing { .. } => "binary_missing",
        E::NotLoggedIn => "not_logged_in",
        E::SpawnRefused { .. } => "spawn_refused",
        E::ConnectionLost { .. } => "connection_lost",
        E::TurnFailed { .. } => "turn_failed",
        E::AuthRejected { .. } => "auth_rejected",
        E::TurnIncomplete { .. } => "turn_incomplete",
        E::Unverified { .. } => "unverified",
        E::Timeout { .. } => "timeout",
        E::Cancelled { .. } => "cancelled",
        E::Refused { .. } => "refused",
        E::NoBackend { .. } => "no_backend",
        E::NothingToResume { .. } => "nothing_to_resume",
        E::JobStore(_) => "job_store",
        E::JobLost { .. } => "job_lost",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------
// worker

/// Makes this process a child subreaper (see `codex_core::process::become_subreaper`);
/// says so on stderr when the system refuses.
fn adopt_orphans(who: &str) {
    if let Err(e) = codex_core::process::become_subreaper() {
        eprintln!("{who}: {e}; orphans of codex's commands go to init");
    }
}

async fn worker(ctx: &Ctx, args: WorkerArgs) -> Result<ExitCode> {
    if let Err(e) = detach_from_caller() {
        errln!(
            "codex-companion worker: {}; going on in the caller's session",
            ErrorChain(&e)
        );
    }
    adopt_orphans("codex-companion worker");
    let store = ctx.store()?;
    let id = store.get(&args.job).map_err(CompanionError::from)?.id;
    errln!(
        "codex-companion worker {} runs job {id}",
        std::process::id()
    );
    let spec = match JobSpec::load(&store, &id) {
        Ok(spec) => spec,
        Err(e) => {
            let err = anyhow!(e);
            fail_job(&store, &id, &err);
            return Err(err);
        }
    };
    // the job's timeout covers its start-up: a worker never waits on codex for longer
    let clock = JobClock::start(spec.request.get_timeout().unwrap_or(DEFAULT_TIMEOUT));
    let codex = match codex(&clock).await {
        Ok(c) => c,
        Err(e) => {
            fail_job(&store, &id, &e);
            JobSpec::remove(&store, &id);
            return Err(e);
        }
    };
    let started = match connect_for(&store, &id, &codex, spec.backend, clock, &[]).await {
        Ok(c) => turn_time(&store, &id, &clock).map(|left| (c, left)),
        Err(e) => Err(e),
    };
    let (connected, left) = match started {
        Ok(started) => started,
        Err(e) => {
            JobSpec::remove(&store, &id);
            return Err(e);
        }
    };
    errln!(
        "codex-companion worker: running on the {} backend",
        connected.kind()
    );
    let delegate = connected.delegate(&codex, None);
    let outcome = run_job(&delegate, &id, spec.request.timeout(left)).await;
    JobSpec::remove(&store, &id);
    match outcome? {
        Ok(v) => {
            errln!(
                "codex-companion worker: job {id} completed on thread {}",
                v.thread_id()
            );
            Ok(ExitCode::Success)
        }
        Err(e) => {
            errln!(
                "codex-companion worker: job {id} ended: {}",
                codex_agent::jobs::redact(&codex_core::error_chain(&e))
            );
            Ok(ExitCode::Failure)
        }
    }
}

// ---------------------------------------------------------------------------------------
// reviews

fn review_timeout(args: &ReviewArgs) -> Duration {
    args.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

fn check_model(model: Option<&String>) -> Result<Option<String>> {
    match model {
        Some(m) if m.trim().is_empty() => {
            Err(CompanionError::usage("--model: the model name is empty").into())
        }
        Some(m) => Ok(Some(m.trim().to_owned())),
        None => Ok(None),
    }
}

async fn review(ctx: &Ctx, args: ReviewArgs) -> Result<ExitCode> {
    let model = check_model(args.model.as_ref())?;
    let scope = resolve_scope(&ctx.cwd, args.scope.into(), args.base.as_deref())?;
    let timeout = review_timeout(&args);
    let store = ctx.store()?;
    let job = store
        .create(NewJob::new(
            JobKind::Review,
            format!("review of {}", scope.describe()),
            false,
        ))
        .map_err(CompanionError::from)?;
    note(&format!("job {}: review of {}", job.id, scope.describe()));
    // --timeout covers the whole job; the review gets what start-up leaves
    let clock = JobClock::start(timeout);
    let codex = match codex(&clock).await {
        Ok(c) => c,
        Err(e) => {
            fail_job(&store, &job.id, &e);
            return Err(e);
        }
    };
    // review/start takes no model: a chosen model goes to codex's `review_model` setting of
    // a private app-server
    let private_args: Vec<String> = match &model {
        Some(m) => {
            note(&format!(
                "--model {m}: the review runs on a private app-server with review_model={m}"
            ));
            vec!["-c".into(), format!("review_model={}", toml_string(m))]
        }
        None => Vec::new(),
    };
    let connected = connect_for(&store, &job.id, &codex, ctx.choice, clock, &private_args).await?;
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let outcome = with_signals(
        run_native_review(
            &connected.backend,
            &store,
            &job.id,
            &ctx.cwd,
            &scope,
            cancel,
            Some(progress()),
        ),
        move || c.cancel(),
    )
    .await?;
    match outcome {
        Ok(review) => {
            let text = render_native(&review.raw);
            let doc = json!({
                "ok": true,
                "job_id": job.id,
                "status": "completed",
                "scope": scope,
                "backend": connected.kind(),
                "thread_id": review.thread_id,
                "turn_id": review.turn_id,
                "review": review.raw,
                "rendered": text,
            });
            ctx.emit(&text, &doc);
            Ok(ExitCode::Success)
        }
        Err(CompanionError::Delegate(err)) => {
            Ok(finish_turn(ctx, &store, &job.id, Err(err), |_| {
                (String::new(), json!({}))
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

async fn adversarial_review(ctx: &Ctx, args: AdversarialArgs) -> Result<ExitCode> {
    let model = check_model(args.review.model.as_ref())?;
    let scope = resolve_scope(
        &ctx.cwd,
        args.review.scope.into(),
        args.review.base.as_deref(),
    )?;
    let timeout = review_timeout(&args.review);
    let focus = args.focus.join(" ");
    let diff = scope_diff(&ctx.cwd, &scope, MAX_DIFF_BYTES)?;
    let prompt = adversarial::prompt(&scope.describe(), &diff, &focus);
    let mut title = format!("adversarial review of {}", scope.describe());
    if !focus.trim().is_empty() {
        title.push_str(&format!(" (focus: {})", focus.trim()));
    }
    let mut request = DelegateRequest::new(title.clone())
        .intent(Intent::Review)
        .replace_prompt(prompt)
        .cwd(&ctx.cwd)
        .timeout(timeout)
        .output_schema(adversarial::output_schema())
        .job_kind(JobKind::AdversarialReview);
    if let Some(m) = model {
        request = request.model(m);
    }
    let store = ctx.store()?;
    let job = store
        .create(NewJob::new(JobKind::AdversarialReview, &title, false))
        .map_err(CompanionError::from)?;
    note(&format!("job {}: {title}", job.id));
    // --timeout covers the whole job: finding codex, connecting, the turn
    let clock = JobClock::start(timeout);
    let codex = match codex(&clock).await {
        Ok(c) => c,
        Err(e) => {
            fail_job(&store, &job.id, &e);
            return Err(e);
        }
    };
    let connected = connect_for(&store, &job.id, &codex, ctx.choice, clock, &[]).await?;
    let request = request.timeout(turn_time(&store, &job.id, &clock)?);
    let delegate = connected.delegate(&codex, Some(progress()));
    let outcome = run_job(&delegate, &job.id, request).await?;
    Ok(finish_turn(ctx, &store, &job.id, outcome, |v| {
        let raw = v.final_message().unwrap_or_default();
        let answer = render::render_answer(JobKind::AdversarialReview, raw);
        if let Some(reason) = &answer.schema_error {
            note(&format!(
                "the answer does not follow the review schema: {reason}"
            ));
        }
        let extra = json!({
            "scope": scope,
            "valid": answer.review.is_some(),
            "review": answer.review,
            "schema_error": answer.schema_error,
            "rendered": answer.text,
        });
        (answer.text, extra)
    }))
}

// ---------------------------------------------------------------------------------------
// status, result, cancel

async fn status(ctx: &Ctx, args: StatusArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let deadline = args
        .timeout_ms
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let expired = || deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
    if let Some(id) = &args.job {
        let mut job = store.get(id).map_err(CompanionError::from)?;
        while args.wait && !job.status.is_finished() && !expired() {
            tokio::time::sleep(POLL).await;
            job = store.get(&job.id).map_err(CompanionError::from)?;
        }
        let doc = json!({ "ok": true, "job": render::job_json(&job) });
        ctx.emit(&render::job_detail(&job), &doc);
        return Ok(if args.wait && !job.status.is_finished() {
            ExitCode::Pending
        } else {
            ExitCode::Success
        });
    }
    let mut report = store.list().map_err(CompanionError::from)?;
    while args.wait && report.jobs.iter().any(|j| !j.status.is_finished()) && !expired() {
        tokio::time::sleep(POLL).await;
        report = store.list().map_err(CompanionError::from)?;
    }
    for corrupt in &report.corrupt {
        errln!("codex-companion: warning: {}", ErrorChain(corrupt));
    }
    let listed = render::listed(&report.jobs, args.all);
    let mut text = String::new();
    if listed.is_empty() {
        text.push_str(&format!("no jobs in {}\n", store.project_root().display()));
    }
    for job in &listed {
        text.push_str(&render::status_line(job));
        text.push('\n');
    }
    let hidden = report.jobs.len() - listed.len();
    if hidden > 0 {
        text.push_str(&format!(
            "({hidden} older finished jobs; --all lists them)\n"
        ));
    }
    let doc = json!({
        "ok": true,
        "workspace": store.project_root(),
        "jobs": listed.iter().map(|j| render::job_json(j)).collect::<Vec<_>>(),
        "hidden": hidden,
        "corrupt": report.corrupt.iter().map(|e| codex_core::error_chain(e)).collect::<Vec<_>>(),
    });
    ctx.emit(&text, &doc);
    let pending = args.wait && report.jobs.iter().any(|j| !j.status.is_finished());
    Ok(if pending {
        ExitCode::Pending
    } else {
        ExitCode::Success
    })
}

fn pick_job(store: &JobStore, id: Option<&str>, active_only: bool) -> Result<JobRecord> {
    if let Some(id) = id {
        return Ok(store.get(id).map_err(CompanionError::from)?);
    }
    let jobs = store.list().map_err(CompanionError::from)?.jobs;
    let found = if active_only {
        jobs.into_iter().find(|j| !j.status.is_finished())
    } else {
        jobs.into_iter().next()
    };
    found.ok_or_else(|| {
        anyhow!(
            "no {}job in {}",
            if active_only { "running " } else { "" },
            store.project_root().display()
        )
    })
}

fn result(ctx: &Ctx, arg: JobArg) -> Result<ExitCode> {
    let store = ctx.store()?;
    let job = pick_job(&store, arg.job.as_deref(), false)?;
    let (text, code) = render::result_text(&job);
    let mut doc = render::result_json(&job);
    doc["ok"] = json!(code == ExitCode::Success);
    if code == ExitCode::Success || ctx.json {
        ctx.emit(&text, &doc);
    } else {
        // not an answer: a failure or "still running" goes to stderr
        err!("{text}");
    }
    Ok(code)
}

async fn cancel(ctx: &Ctx, arg: JobArg) -> Result<ExitCode> {
    let store = ctx.store()?;
    let job = pick_job(&store, arg.job.as_deref(), true)?;
    if job.status.is_finished() {
        let text = format!("job {} already finished ({})\n", job.id, job.status);
        let doc = json!({"ok": false, "job_id": job.id, "status": job.status, "cancelled": false});
        if ctx.json {
            ctx.emit(&text, &doc);
        }
        err!("{text}");
        return Ok(ExitCode::Failure);
    }
    // the record first: whatever the worker reports afterwards, the job ends cancelled
    let marked = store
        .update(&job.id, |r| {
            r.error = Some("cancelled with codex-companion cancel".into());
            r.set_status(JobStatus::Cancelled)
        })
        .map_err(CompanionError::from)?;
    let _ = store.append_log(&job.id, "cancel requested");
    let broker_turn = match (&marked.backend, &marked.thread_id, &marked.turn_id) {
        (Some(BackendKind::Broker), Some(thread), Some(turn)) => {
            Some((thread.clone(), turn.clone()))
        }
        _ => None,
    };
    let codex_path = CodexBinary::locate(None).ok();
    let mut interrupt = None;
    if let (Some((thread, turn)), Some(codex)) = (&broker_turn, &codex_path) {
        interrupt = Some(interrupt_through_broker(codex, thread, turn).await);
    }
    let stopped = match marked.worker() {
        Some(worker) if worker.pid() != std::process::id() => {
            tokio::task::spawn_blocking(move || stop_worker(worker, STOP_GRACE))
                .await
                .unwrap_or(Stopped::AlreadyGone)
        }
        _ => Stopped::AlreadyGone,
    };
    // a worker that owned the thread let it go when it ended: interrupt the turn if it runs
    if let (Some((thread, turn)), Some(codex), Some(Interrupt::Owned | Interrupt::Failed(_))) =
        (&broker_turn, &codex_path, &interrupt)
    {
        interrupt = Some(interrupt_through_broker(codex, thread, turn).await);
    }
    let _ = store.update(&job.id, |r| {
        r.pid = None;
        Ok(())
    });
    let worker = match stopped {
        Stopped::AlreadyGone => "gone",
        Stopped::Terminated => "terminated",
        Stopped::Killed => "killed",
    };
    let interrupt_text = match &interrupt {
        None => "no broker turn to interrupt".to_owned(),
        Some(Interrupt::Sent) => "turn interrupted".to_owned(),
        Some(Interrupt::NoBroker) => "no broker running".to_owned(),
        Some(Interrupt::NotRunning) => "the turn had already ended".to_owned(),
        Some(Interrupt::Owned) => "the worker interrupted its turn".to_owned(),
        Some(Interrupt::Failed(why)) => format!("interrupt failed: {why}"),
    };
    let text = format!(
        "cancelled job {} ({interrupt_text}; worker {worker})\n",
        job.id
    );
    let doc = json!({
        "ok": true,
        "job_id": job.id,
        "status": "cancelled",
        "interrupt": interrupt_text,
        "worker": worker,
    });
    ctx.emit(&text, &doc);
    Ok(ExitCode::Success)
}

// ---------------------------------------------------------------------------------------
// setup

async fn setup(ctx: &Ctx) -> Result<ExitCode> {
    let mut lines = Vec::new();
    let mut doc = json!({});
    let mut next = "ok";
    let mut advice = Vec::new();
    let codex = match CodexBinary::locate(None) {
        Ok(path) => match CodexBinary::probe(&path).await {
            Ok(codex) => {
                let version = codex.version();
                let shown = if version.is_known() {
                    format!("codex-cli {version}")
                } else {
                    format!(
                        "version {version}; assuming codex {}",
                        codex_core::binary::NEWEST_KNOWN_VERSION
                    )
                };
                lines.push(format!("codex:   {} ({shown})", codex.path().display()));
                doc["codex"] = json!({
                    "found": true,
                    "path": codex.path(),
                    "version": version.to_string(),
                    "version_known": version.is_known(),
                });
                Some(codex)
            }
            Err(e) => {
                let e = codex_core::error_chain(&e);
                lines.push(format!("codex:   {} does not work: {e}", path.display()));
                doc["codex"] = json!({"found": true, "path": path, "error": e});
                None
            }
        },
        Err(e) => {
            let e = codex_core::error_chain(&e);
            lines.push(format!("codex:   not found ({e})"));
            doc["codex"] = json!({"found": false, "error": e});
            None
        }
    };
    match &codex {
        None => {
            next = "install";
            advice.push(
                "install codex: `npm install -g @openai/codex` (or point CODEX_BIN at it)"
                    .to_owned(),
            );
        }
        Some(codex) => {
            let auth = codex.auth(&AuthContext::new()).await;
            match &auth {
                Ok(mode) => {
                    lines.push(format!("auth:    {mode}"));
                    doc["auth"] = json!({"mode": auth_name(mode), "description": mode.to_string()});
                }
                Err(e) => {
                    let e = codex_core::error_chain(e);
                    lines.push(format!("auth:    unknown ({e})"));
                    doc["auth"] = json!({"mode": "unknown", "error": e});
                }
            }
            if matches!(auth, Ok(AuthMode::None)) {
                next = "login";
                advice.push(
                    "log in: `codex login` (ChatGPT), or store an API key with `printenv OPENAI_API_KEY | codex login --with-api-key`"
                        .to_owned(),
                );
            }
        }
    }
    let broker_bin = broker_binary();
    let mut broker = json!({
        "enabled": ctx.choice == BackendChoice::Broker,
        "binary": broker_bin,
        "running": false,
    });
    if ctx.choice == BackendChoice::Private {
        lines.push("broker:  disabled (--no-broker / CODEX_COMPANION_NO_BROKER)".to_owned());
    } else if let Some(codex) = &codex {
        match broker_status(codex).await {
            Ok(Some(s)) => {
                lines.push(format!(
                    "broker:  running (pid {}, {} client(s), app-server {}{}, {} restart(s))",
                    s.pid,
                    s.clients.len(),
                    s.app_server,
                    s.app_server_pid
                        .map(|p| format!(" pid {p}"))
                        .unwrap_or_default(),
                    s.restarts
                ));
                broker["running"] = json!(true);
                broker["pid"] = json!(s.pid);
                broker["clients"] = json!(s.clients.len());
                broker["app_server"] = json!(s.app_server);
                broker["app_server_pid"] = json!(s.app_server_pid);
                broker["socket"] = json!(s.socket);
                broker["restarts"] = json!(s.restarts);
            }
            Ok(None) => lines.push(match &broker_bin {
                Some(bin) => format!(
                    "broker:  not running (the first task starts {})",
                    bin.display()
                ),
                None => "broker:  not running, and codex-broker was not found".to_owned(),
            }),
            Err(e) => {
                let e = codex_core::error_chain(&e);
                lines.push(format!("broker:  unreachable ({e})"));
                broker["error"] = json!(e);
            }
        }
        if broker_bin.is_none() {
            advice.push(
                "codex-broker was not found (CODEX_BROKER_BIN, next to codex-companion, PATH): tasks will use a private app-server"
                    .to_owned(),
            );
        }
    }
    doc["broker"] = broker;
    if advice.is_empty() {
        advice.push("ready: run `codex-companion task \"...\"`".to_owned());
    }
    lines.push(format!("next:    {next}: {}", advice.join("; ")));
    doc["ok"] = json!(next == "ok");
    doc["next"] = json!(next);
    doc["next_steps"] = json!(advice);
    doc["workspace"] = json!(ctx.cwd);
    ctx.emit(&lines.join("\n"), &doc);
    Ok(if next == "ok" {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

fn auth_name(mode: &AuthMode) -> &'static str {
    match mode {
        AuthMode::ChatGpt { .. } => "chatgpt",
        AuthMode::ApiKey => "api-key",
        AuthMode::OtherProvider { .. } => "other-provider",
        AuthMode::None => "none",
        _ => "unknown",
    }
}
