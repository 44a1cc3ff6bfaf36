//! Fault injection against every entry point: a misbehaving codex (the `fake-codex` binary
//! of the `tests` package, in one of its fault modes) run by the exec backend
//! ([`CliBackend`]), by [`AspBackend`] over a private stdio app-server, by
//! [`codex_agent::Delegate`] over each of them (foreground and in-process background jobs),
//! and by the `codex-companion` binary (foreground and `--background` worker, on a private
//! app-server and through the broker).
//!
//! The faults:
//!
//! | fault | what the fake does | expected |
//! | --- | --- | --- |
//! | huge line | one line just over 64 MiB mid-turn, then a normal end | an undecodable event (exec) or a skipped frame (app-server), the turn completes, memory stays bounded |
//! | deep JSON | one line nesting 100 000 arrays | the same, no stack overflow |
//! | invalid UTF-8 | bare invalid bytes, and a JSON line with invalid bytes in a string | the same |
//! | exit mid-stream | half a line, a message on stderr, exit 7 | `ProcessExited` (exit code 7) with the stderr tail |
//! | SIGSEGV | dies of SIGSEGV mid-turn | `ProcessExited` naming the signal (`signal 11, SIGSEGV`) |
//! | stdout closed | closes its stdout mid-turn and keeps running | the run ends (no timeout set), the process tree is killed |
//! | no answer | exec: prints nothing, never exits; app-server: never answers `initialize` | a typed timeout within the configured deadline |
//! | hanging probe | `--version` (or `exec --help`) never returns | a typed probe timeout |
//!
//! Every hanging mode also leaves a *detached* child (a `sleep` in a process group of its
//! own). Each case checks: the typed error (or the completed turn), that it ended within
//! its bound (every case runs under an outer timeout, so a missing fix fails instead of
//! hanging the suite), that no process carrying the case's private `CODEX_HOME` is left,
//! and that no job record is left queued or running (a failed job carries its error).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use codex_agent::jobs::{JobRecord, JobStatus, JobStore};
use codex_agent::{Delegate, DelegateRequest, Verified};
use codex_asp::AspBackend;
use codex_asp::backend::AspBackendOptions;
use codex_bridge_tests::TempWorkspace;
use codex_bridge_tests::bins::build_workspace_bin;
use codex_bridge_tests::procs::{processes_with_env, wait_until_gone, wait_until_gone_async};
use codex_cli_backend::CliBackend;
use codex_core::{
    Backend, BackendKind, CodexBinary, Event, ExitSummary, ProbeOptions, Run, TaskSpec,
};
use serde_json::Value;

/// The outer bound of one case of the library entry points.
const CASE: Duration = Duration::from_secs(90);
/// The outer bound of one companion command.
const COMMAND: Duration = Duration::from_secs(120);
/// The timeout given to runs of the "no answer" fault (the only runs with a timeout: every
/// other fault must end the run by itself).
const NO_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// The deadline of each probe command.
const PROBE_DEADLINE: Duration = Duration::from_secs(3);
/// How long processes may take to disappear after a run ended.
const GONE: Duration = Duration::from_secs(15);
/// The size of the huge line: just over 64 MiB (over the 16 MiB line bound of the exec
/// backend and the 64 MiB message bound of the app-server transport).
const HUGE_BYTES: usize = (64 << 20) + 1;
/// The agent message the fake sends after a fault the turn survives.
const AFTER_THE_FAULT: &str = "fake: after the fault";

// ---------------------------------------------------------------------------------------
// the faults and the fake

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    HugeLine,
    DeepJson,
    BadUtf8,
    ExitMidStream,
    Segv,
    StdoutClosed,
    NoAnswer,
    HangingVersion,
    HangingHelp,
}

use Fault::*;

impl Fault {
    /// `FAKE_CODEX_MODE`.
    fn mode(self) -> &'static str {
        match self {
            HugeLine => "huge-line",
            DeepJson => "deep-json",
            BadUtf8 => "bad-utf8",
            ExitMidStream => "exit-mid-stream",
            Segv => "segv",
            StdoutClosed => "close-stdout",
            NoAnswer => "silent",
            HangingVersion | HangingHelp => "ok",
        }
    }

    /// `FAKE_CODEX_PROBE`.
    fn probe(self) -> Option<&'static str> {
        match self {
            HangingVersion => Some("hang-version"),
            HangingHelp => Some("hang-help"),
            _ => None,
        }
    }

    fn is_probe(self) -> bool {
        self.probe().is_some()
    }

    /// Faults after which the turn goes on and completes.
    fn survivable(self) -> bool {
        matches!(self, HugeLine | DeepJson | BadUtf8)
    }

    /// The timeout of the run (only "no answer" has one).
    fn timeout(self) -> Option<Duration> {
        (self == NoAnswer).then_some(NO_ANSWER_TIMEOUT)
    }
}

/// The `fake-codex` binary, built from this checkout.
fn fake_codex() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| build_workspace_bin("codex-bridge-tests", "fake-codex", bin_dir())) {
        Ok(path) => path,
        Err(e) => panic!("the fake-codex binary is needed: {e}"),
    }
}

fn companion_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_codex-companion"))
}

/// The target folder of this test's binaries.
fn bin_dir() -> &'static Path {
    companion_bin().parent().expect("the companion's folder")
}

/// One fault's fake codex: a wrapper script that runs `fake-codex` with the fault's
/// environment and a private `CODEX_HOME` (the marker that finds every process of the
/// case). Dropping it kills whatever of the case is left.
struct Fake {
    fault: Fault,
    dir: tempfile::TempDir,
    program: PathBuf,
}

impl Fake {
    fn new(fault: Fault) -> Fake {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix("codex-fault-")
            .tempdir()
            .expect("temp dir");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("home dir");
        let program = dir.path().join("codex");
        let mut script = format!(
            "#!/bin/sh\nexport FAKE_CODEX_MODE='{}'\nexport FAKE_CODEX_HUGE_BYTES={HUGE_BYTES}\nexport CODEX_HOME='{}'\n",
            fault.mode(),
            home.display()
        );
        if let Some(probe) = fault.probe() {
            script.push_str(&format!("export FAKE_CODEX_PROBE='{probe}'\n"));
        }
        script.push_str(&format!("exec '{}' \"$@\"\n", fake_codex().display()));
        std::fs::write(&program, script).expect("write the wrapper");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the wrapper");
        Fake {
            fault,
            dir,
            program,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn marker(&self) -> String {
        self.home().to_string_lossy().into_owned()
    }

    /// Probes the fake (each probe command gets [`PROBE_DEADLINE`]). For a probe fault,
    /// checks the typed probe timeout and returns `None`.
    async fn probe(&self) -> Option<CodexBinary> {
        let options = ProbeOptions::default().deadline(PROBE_DEADLINE);
        let result = CodexBinary::probe_with(&self.program, options).await;
        if !self.fault.is_probe() {
            return Some(result.unwrap_or_else(|e| panic!("probing the fake: {e}")));
        }
        let hung = if self.fault == HangingVersion {
            "--version"
        } else {
            "--help"
        };
        match result {
            Err(codex_core::Error::CommandTimeout {
                ref what, after, ..
            }) => {
                assert!(what.contains(hung), "{:?}: {what}", self.fault);
                assert_eq!(after, PROBE_DEADLINE, "{:?}", self.fault);
            }
            other => panic!(
                "{:?}: expected a typed probe timeout, got {other:?}",
                self.fault
            ),
        }
        None
    }

    fn spec(&self, ws: &TempWorkspace) -> TaskSpec {
        let mut spec = TaskSpec::new("inject a fault").cwd(ws.path());
        if let Some(t) = self.fault.timeout() {
            spec = spec.timeout(t);
        }
        spec
    }

    fn request(&self, ws: &TempWorkspace) -> DelegateRequest {
        let mut request = DelegateRequest::new("inject a fault")
            .cwd(ws.path())
            .replace_prompt("inject a fault");
        if let Some(t) = self.fault.timeout() {
            request = request.timeout(t);
        }
        request
    }

    /// Fails when a process of this case is still alive after [`GONE`].
    async fn assert_no_process_left(&self, entry: &str) {
        if let Err(left) = wait_until_gone_async("CODEX_HOME", &self.marker(), GONE).await {
            panic!(
                "{entry} / {:?}: processes left:\n{}",
                self.fault,
                describe(&left)
            );
        }
    }

    fn assert_no_process_left_blocking(&self, entry: &str) -> Result<(), String> {
        wait_until_gone("CODEX_HOME", &self.marker(), GONE).map_err(|left| {
            format!(
                "{entry} / {:?}: processes left:\n{}",
                self.fault,
                describe(&left)
            )
        })
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        // whatever a failed case left behind
        for pid in processes_with_env("CODEX_HOME", &self.marker()) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// `pid: command line` of each process, for failure messages.
fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            format!("{pid}: {cmdline}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one case under the outer bound [`CASE`].
async fn bounded<F: std::future::Future<Output = ()>>(what: &str, fault: Fault, case: F) {
    if tokio::time::timeout(CASE, case).await.is_err() {
        panic!("{what} / {fault:?}: did not end within {CASE:?}");
    }
}

async fn collect(mut run: Run) -> (Vec<Event>, codex_core::Result<codex_core::TurnOutcome>) {
    let mut events = Vec::new();
    while let Some(event) = run.next_event().await {
        events.push(event);
    }
    let outcome = run.outcome().await;
    (events, outcome)
}

// ---------------------------------------------------------------------------------------
// memory

/// The peak resident size of this process, from a reset (`/proc/self/clear_refs`) on.
struct PeakRss {
    base_kib: u64,
}

/// Huge-line cases run one at a time, so that each sees its own peak.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl PeakRss {
    /// Resets the peak; `None` where the kernel does not allow it.
    fn start() -> Option<PeakRss> {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        Some(PeakRss {
            base_kib: status_kib("VmRSS")?,
        })
    }

    /// How far the peak rose above the resident size at the reset, in MiB.
    fn growth_mib(&self) -> u64 {
        status_kib("VmHWM").map_or(0, |hwm| hwm.saturating_sub(self.base_kib) / 1024)
    }
}

/// Checks the memory of a huge-line case: at most `limit_mib` more than before.
fn assert_memory(entry: &str, peak: Option<&PeakRss>, limit_mib: u64) {
    if let Some(peak) = peak {
        let growth = peak.growth_mib();
        eprintln!("{entry} / HugeLine: peak resident size +{growth} MiB");
        assert!(
            growth <= limit_mib,
            "{entry} / HugeLine: the peak resident size grew by {growth} MiB (limit {limit_mib} MiB)"
        );
    }
}

// ---------------------------------------------------------------------------------------
// expectations

/// Checks a core outcome (exec backend, AspBackend) of `fault`.
fn check_core(
    entry: &str,
    fault: Fault,
    events: &[Event],
    outcome: codex_core::Result<codex_core::TurnOutcome>,
) {
    let ctx = format!("{entry} / {fault:?}");
    use codex_core::Error as E;
    match fault {
        HugeLine | DeepJson | BadUtf8 => {
            let outcome = outcome.unwrap_or_else(|e| panic!("{ctx}: the turn must survive: {e}"));
            assert_eq!(
                outcome.final_message.as_deref(),
                Some(AFTER_THE_FAULT),
                "{ctx}"
            );
            for event in events {
                if let Event::Undecodable { text, .. } = event {
                    assert!(text.len() <= 8 * 1024, "{ctx}: kept {} bytes", text.len());
                }
            }
        }
        ExitMidStream => match outcome {
            Err(E::ProcessExited {
                status: ExitSummary::Code(7),
                ref stderr_tail,
                ..
            }) => assert!(stderr_tail.contains("fake: lost the stream"), "{ctx}"),
            other => panic!("{ctx}: expected ProcessExited (exit code 7), got {other:?}"),
        },
        Segv => match outcome {
            Err(
                ref err @ E::ProcessExited {
                    status: ExitSummary::Signal(11),
                    ..
                },
            ) => assert!(
                err.to_string().contains("signal 11, SIGSEGV"),
                "{ctx}: {err}"
            ),
            other => panic!("{ctx}: expected ProcessExited (signal 11), got {other:?}"),
        },
        StdoutClosed => match outcome {
            Err(E::ProcessExited { .. }) => {}
            other => panic!("{ctx}: expected ProcessExited, got {other:?}"),
        },
        NoAnswer => match outcome {
            Err(E::Timeout { after, .. }) => assert_eq!(after, NO_ANSWER_TIMEOUT, "{ctx}"),
            other => panic!("{ctx}: expected a timeout, got {other:?}"),
        },
        HangingVersion | HangingHelp => unreachable!("probe faults end at the probe"),
    }
}

/// Checks a delegation's outcome of `fault`.
fn check_delegate(entry: &str, fault: Fault, outcome: codex_agent::Result<Verified>) {
    let ctx = format!("{entry} / {fault:?}");
    use codex_agent::Error as A;
    use codex_core::Error as E;
    let source_status = |err: &A| match err {
        A::TurnIncomplete {
            source: Some(source),
            ..
        }
        | A::ConnectionLost {
            source: Some(source),
            ..
        } => match source.as_ref() {
            E::ProcessExited { status, .. } => Some(*status),
            _ => None,
        },
        _ => None,
    };
    match fault {
        HugeLine | DeepJson | BadUtf8 => {
            let verified = outcome.unwrap_or_else(|e| panic!("{ctx}: the turn must survive: {e}"));
            assert_eq!(verified.final_message(), Some(AFTER_THE_FAULT), "{ctx}");
        }
        ExitMidStream | Segv | StdoutClosed => {
            let err = outcome.expect_err(&ctx);
            let status = source_status(&err).unwrap_or_else(|| {
                panic!("{ctx}: expected a turn ended by codex's exit, got {err:?}")
            });
            match fault {
                ExitMidStream => {
                    assert_eq!(status, ExitSummary::Code(7), "{ctx}: {err}");
                    let chain = codex_core::error_chain(&err);
                    assert!(chain.contains("fake: lost the stream"), "{ctx}: {chain}");
                }
                Segv => {
                    assert_eq!(status, ExitSummary::Signal(11), "{ctx}: {err}");
                    let chain = codex_core::error_chain(&err);
                    assert!(chain.contains("signal 11, SIGSEGV"), "{ctx}: {chain}");
                }
                _ => {}
            }
        }
        NoAnswer => match outcome {
            Err(A::Timeout { after, .. }) => assert_eq!(after, NO_ANSWER_TIMEOUT, "{ctx}"),
            other => panic!("{ctx}: expected a timeout, got {other:?}"),
        },
        HangingVersion | HangingHelp => unreachable!("probe faults end at the probe"),
    }
}

/// Checks that the store's jobs all ended, as `fault` wants, and that there are `count`.
fn check_jobs(entry: &str, fault: Fault, store: &JobStore, count: usize) {
    let ctx = format!("{entry} / {fault:?}");
    let jobs: Vec<JobRecord> = store.list().expect("list the jobs").jobs;
    assert_eq!(jobs.len(), count, "{ctx}: {jobs:#?}");
    for job in &jobs {
        if fault.survivable() {
            assert_eq!(job.status, JobStatus::Completed, "{ctx}: {job:#?}");
        } else {
            assert_eq!(job.status, JobStatus::Failed, "{ctx}: {job:#?}");
            assert!(
                job.error.as_deref().is_some_and(|e| !e.is_empty()),
                "{ctx}: a failed job names its error: {job:#?}"
            );
        }
        assert!(job.pid.is_none(), "{ctx}: {job:#?}");
    }
}

// ---------------------------------------------------------------------------------------
// the exec backend

async fn exec_case(fault: Fault) {
    let fake = Fake::new(fault);
    let _memory = if fault == HugeLine {
        Some(MEMORY.lock().await)
    } else {
        None
    };
    bounded("exec", fault, async {
        let Some(binary) = fake.probe().await else {
            return;
        };
        let backend = CliBackend::builder().binary(binary).build().expect("build");
        let ws = TempWorkspace::new();
        let peak = (fault == HugeLine).then(PeakRss::start).flatten();
        let run = backend.start(fake.spec(&ws)).await.expect("start");
        let (events, outcome) = collect(run).await;
        check_core("exec", fault, &events, outcome);
        if fault.survivable() {
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, Event::Undecodable { .. })),
                "exec / {fault:?}: no undecodable event: {events:#?}"
            );
        }
        if fault == HugeLine {
            assert!(
                events.iter().any(
                    |e| matches!(e, Event::Undecodable { reason, .. } if reason.contains("exceeds"))
                ),
                "{events:#?}"
            );
            // the line is skipped while it streams by: at most the 16 MiB bound is buffered
            assert_memory("exec", peak.as_ref(), 64);
        }
    })
    .await;
    fake.assert_no_process_left("exec").await;
}

// ---------------------------------------------------------------------------------------
// AspBackend over a private stdio app-server

async fn asp_backend(fake: &Fake) -> Option<AspBackend> {
    let binary = fake.probe().await?;
    let options = AspBackendOptions::default().handshake_timeout(NO_ANSWER_TIMEOUT);
    let result = AspBackend::spawn(binary, options).await;
    if fake.fault == NoAnswer {
        let err = result.expect_err("an app-server that never answers initialize");
        match codex_asp::backend::asp_error(&err) {
            Some(codex_asp::Error::HandshakeTimeout { after, .. }) => {
                assert_eq!(*after, NO_ANSWER_TIMEOUT, "asp / NoAnswer: {err}");
            }
            _ => panic!("asp / NoAnswer: expected a handshake timeout, got {err:?}"),
        }
        return None;
    }
    Some(result.unwrap_or_else(|e| panic!("asp / {:?}: spawn: {e}", fake.fault)))
}

async fn asp_case(fault: Fault) {
    let fake = Fake::new(fault);
    let _memory = if fault == HugeLine {
        Some(MEMORY.lock().await)
    } else {
        None
    };
    bounded("asp", fault, async {
        let Some(backend) = asp_backend(&fake).await else {
            return;
        };
        let ws = TempWorkspace::new();
        let peak = (fault == HugeLine).then(PeakRss::start).flatten();
        let run = backend.start(fake.spec(&ws)).await.expect("start");
        let (events, outcome) = collect(run).await;
        check_core("asp", fault, &events, outcome);
        if fault.survivable() {
            let garbage = backend.connection().stats().garbage_frames;
            let want = if fault == BadUtf8 { 2 } else { 1 };
            assert_eq!(garbage, want, "asp / {fault:?}: skipped frames");
        }
        if fault == HugeLine {
            // the line is skipped once it passes the 64 MiB bound: nothing holds it twice
            assert_memory("asp", peak.as_ref(), 192);
        }
        drop(backend);
    })
    .await;
    fake.assert_no_process_left("asp").await;
}

// ---------------------------------------------------------------------------------------
// Delegate over each backend, foreground and background

async fn delegate_case(fault: Fault, kind: BackendKind) {
    let entry = format!("delegate/{kind}");
    let fake = Fake::new(fault);
    let _memory = if fault == HugeLine {
        Some(MEMORY.lock().await)
    } else {
        None
    };
    // an app-server that never answers fails its spawn (see `asp_case`); the delegate gets
    // a connected backend whose turn is never answered instead
    let fake = if fault == NoAnswer && kind == BackendKind::AppServer {
        let hang = Fake::new(NoAnswer);
        std::fs::write(
            &hang.program,
            std::fs::read_to_string(&hang.program)
                .expect("wrapper")
                .replace("FAKE_CODEX_MODE='silent'", "FAKE_CODEX_MODE='hang'"),
        )
        .expect("rewrite the wrapper");
        drop(fake);
        hang
    } else {
        fake
    };
    let state = tempfile::tempdir().expect("state dir");
    let ws = TempWorkspace::new().git_repo();
    bounded(&entry, fault, async {
        let Some(binary) = fake.probe().await else {
            return;
        };
        let backend: Arc<dyn Backend> = match kind {
            BackendKind::Exec => Arc::new(
                CliBackend::builder()
                    .binary(binary.clone())
                    .build()
                    .expect("build"),
            ),
            _ => Arc::new(
                AspBackend::spawn(binary.clone(), AspBackendOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("{entry} / {fault:?}: spawn: {e}")),
            ),
        };
        let delegate = Delegate::builder(binary)
            .backend(kind, backend.clone())
            .state_root(state.path())
            .build();
        // foreground
        let peak = (fault == HugeLine).then(PeakRss::start).flatten();
        let outcome = delegate.run(fake.request(&ws)).await;
        check_delegate(&entry, fault, outcome);
        if fault == HugeLine {
            assert_memory(&entry, peak.as_ref(), 192);
        }
        // background, in this process
        let job = delegate
            .spawn(fake.request(&ws).background(true))
            .await
            .expect("spawn the job");
        let outcome = job.wait().await;
        check_delegate(&format!("{entry} (background)"), fault, outcome);
        let store = delegate.job_store(ws.path()).expect("store");
        check_jobs(&entry, fault, &store, 2);
        drop(delegate);
        drop(backend);
    })
    .await;
    fake.assert_no_process_left(&entry).await;
}

// ---------------------------------------------------------------------------------------
// codex-companion

/// Makes sure `codex-broker` sits next to `codex-companion` (where the companion looks
/// first), built from this checkout.
fn ensure_broker_binary() {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Err(e) =
        READY.get_or_init(|| build_workspace_bin("codex-broker", "codex-broker", bin_dir()))
    {
        panic!("the codex-broker binary is needed next to codex-companion: {e}");
    }
}

/// How the companion runs the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `task`, on a private app-server (`--no-broker`).
    Private,
    /// `task`, through the broker.
    Broker,
    /// `task --background`: a detached worker, on a private app-server.
    BackgroundPrivate,
    /// `task --background`: a detached worker, through the broker.
    BackgroundBroker,
}

impl Way {
    fn broker(self) -> bool {
        matches!(self, Way::Broker | Way::BackgroundBroker)
    }

    fn background(self) -> bool {
        matches!(self, Way::BackgroundPrivate | Way::BackgroundBroker)
    }
}

const WAYS: [Way; 4] = [
    Way::Private,
    Way::Broker,
    Way::BackgroundPrivate,
    Way::BackgroundBroker,
];

/// A companion world for one fault: the fake, a workspace, a job store.
struct Companion {
    fake: Fake,
    ws: TempWorkspace,
    state: tempfile::TempDir,
}

impl Companion {
    fn new(fault: Fault) -> Companion {
        ensure_broker_binary();
        Companion {
            fake: Fake::new(fault),
            ws: TempWorkspace::new().git_repo(),
            state: tempfile::tempdir().expect("state dir"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(companion_bin());
        cmd.args(args)
            .current_dir(self.ws.path())
            .env("CODEX_BIN", &self.fake.program)
            .env("CODEX_HOME", self.fake.home())
            .env("CODEX_BRIDGE_STATE_DIR", self.state.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("CODEX_COMPANION_NO_BROKER")
            .env_remove("CODEX_BROKER_BIN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn store(&self) -> JobStore {
        JobStore::open(self.state.path(), self.ws.path()).expect("open the job store")
    }

    /// Stops this world's broker, if one runs.
    fn shutdown_broker(&self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let options = codex_asp::broker::BrokerOptions::new()
            .codex(&self.fake.program)
            .codex_home(self.fake.home())
            .socket_dir(self.state.path().join("broker"));
        let _ = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(15),
                codex_asp::broker::shutdown(&options),
            )
            .await
        });
    }

    /// Runs the fault's task the `way` asks; `Err` says what went wrong.
    fn run(&self, way: Way) -> Result<(), String> {
        let fault = self.fake.fault;
        let ctx = format!("companion/{way:?} / {fault:?}");
        let before: Vec<String> = self
            .store()
            .list()
            .map_err(|e| format!("{ctx}: {e}"))?
            .jobs
            .into_iter()
            .map(|j| j.id)
            .collect();
        let mut args = vec!["task", "--json"];
        if !way.broker() {
            args.push("--no-broker");
        }
        if way.background() {
            args.push("--background");
        }
        let timeout = NO_ANSWER_TIMEOUT.as_secs().to_string();
        if fault == NoAnswer {
            args.extend(["--timeout", &timeout]);
        }
        args.push("inject a fault");
        let started = Instant::now();
        let out = finish(
            self.command(&args).spawn().map_err(|e| e.to_string())?,
            &ctx,
        )?;
        let doc: Value = serde_json::from_str(&out.stdout)
            .map_err(|e| format!("{ctx}: stdout is not JSON ({e}):\n{out}"))?;
        let job_id = match doc["job_id"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                // a failure before the job was made names no id: find the new record
                let jobs = self.store().list().map_err(|e| format!("{ctx}: {e}"))?.jobs;
                jobs.into_iter()
                    .map(|j| j.id)
                    .find(|id| !before.contains(id))
                    .ok_or_else(|| format!("{ctx}: no job was recorded:\n{out}"))?
            }
        };
        if way.background() {
            if out.code != Some(0) {
                return Err(format!("{ctx}: starting the job failed:\n{out}"));
            }
        } else if fault.survivable() {
            if out.code != Some(0) || doc["final_message"] != AFTER_THE_FAULT {
                return Err(format!("{ctx}: the turn must survive:\n{out}"));
            }
        } else {
            if out.code != Some(1) || doc["ok"] != false {
                return Err(format!("{ctx}: expected a failure (exit 1):\n{out}"));
            }
            let error = doc["error"].as_str().unwrap_or_default();
            let kind = doc["error_kind"].as_str().unwrap_or_default();
            let wanted = match fault {
                ExitMidStream => error.contains("exit code 7"),
                Segv => error.contains("signal 11, SIGSEGV"),
                StdoutClosed => kind == "turn_incomplete",
                // the job's timeout bounds the handshake too
                NoAnswer => error.contains("did not answer initialize"),
                HangingVersion | HangingHelp => error.contains("did not finish"),
                _ => true,
            };
            if !wanted {
                return Err(format!("{ctx}: not the expected error:\n{out}"));
            }
        }
        // the record ends, with the error
        let store = self.store();
        let deadline = Instant::now() + COMMAND;
        let job = loop {
            let job = store.get(&job_id).map_err(|e| format!("{ctx}: {e}"))?;
            if job.status.is_finished() {
                break job;
            }
            if Instant::now() >= deadline {
                return Err(format!("{ctx}: the job is stuck {}: {job:#?}", job.status));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let ok = if fault.survivable() {
            job.status == JobStatus::Completed
                && job.result.as_ref().and_then(|r| r.final_message.as_deref())
                    == Some(AFTER_THE_FAULT)
        } else {
            job.status == JobStatus::Failed && job.error.as_deref().is_some_and(|e| !e.is_empty())
        };
        if !ok {
            return Err(format!("{ctx}: the job ended wrong: {job:#?}\n{out}"));
        }
        // a background worker exits once its job ended
        if way.background() {
            let bound = Instant::now() + GONE;
            while job_worker_alive(&job) {
                if Instant::now() >= bound {
                    return Err(format!("{ctx}: the worker outlived its job: {job:#?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = started;
        if way.broker() {
            // the broker and its app-server stay for the next client: stop them
            self.shutdown_broker();
        }
        // nothing of the run survives it
        self.fake
            .assert_no_process_left_blocking(&format!("companion/{way:?}"))?;
        Ok(())
    }
}

fn job_worker_alive(job: &JobRecord) -> bool {
    job.worker().is_some_and(|w| w.is_alive())
}

/// A finished command.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Waits for a companion command (killed after [`COMMAND`]).
fn finish(child: Child, ctx: &str) -> Result<Out, String> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND) {
        Ok(Ok(output)) => Ok(Out {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(format!("{ctx}: waiting for the companion: {e}")),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(format!(
                "{ctx}: the companion did not finish within {COMMAND:?}"
            ))
        }
    }
}

/// Runs the fault through the companion every way; fails with every way that went wrong.
fn companion_case(fault: Fault) {
    let world = Companion::new(fault);
    let mut failures = Vec::new();
    // a probe runs before a backend is chosen: broker or not makes no difference there
    let ways: &[Way] = if fault.is_probe() {
        &[Way::Private, Way::BackgroundBroker]
    } else {
        &WAYS
    };
    for &way in ways {
        if let Err(e) = world.run(way) {
            failures.push(e);
        }
    }
    world.shutdown_broker();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------
// the matrix

macro_rules! library_cases {
    ($($name:ident: $fault:expr;)*) => {
        mod exec {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                exec_case($fault).await;
            })*
        }
        mod asp {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                asp_case($fault).await;
            })*
        }
        mod delegate_exec {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                delegate_case($fault, BackendKind::Exec).await;
            })*
        }
        mod delegate_asp {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                delegate_case($fault, BackendKind::AppServer).await;
            })*
        }
        mod companion {
            use super::*;
            $(#[test]
            fn $name() {
                companion_case($fault);
            })*
        }
    };
}

library_cases! {
    huge_line: HugeLine;
    deep_json: DeepJson;
    invalid_utf8: BadUtf8;
    exit_mid_stream: ExitMidStream;
    sigsegv: Segv;
    stdout_closed: StdoutClosed;
    no_answer: NoAnswer;
    hanging_version_probe: HangingVersion;
    hanging_help_probe: HangingHelp;
}
