//! The live setup of a benchmark run and its scenarios: one mock model, one private
//! `CODEX_HOME` per method (so no method's history slows another down), a git workspace,
//! the warm app-servers, and a `codex-broker` process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codex_asp::AspBackend;
use codex_asp::backend::AspBackendOptions;
use codex_asp::broker::{self, BrokerOptions};
use codex_cli_backend::CliBackend;
use codex_core::{Backend, BackendKind, CodexBinary, TaskSpec, TurnOutcome};
use tempfile::TempDir;

use super::procfs;
use super::raw::RawAppServer;
use super::stats::{Samples, Summary};
use crate::home::{CodexHome, ENV_TO_REMOVE, TempWorkspace};
use crate::mock::MockModel;
use crate::procs::{GroupGuard, wait_until_gone_async};

/// The prompt of every benchmark turn (the mock answers `echo: <prompt>`).
pub const PROMPT: &str = "Say hello.";
/// What a correct answer is.
const EXPECTED_ANSWER: &str = "echo: Say hello.";

/// The homes of the methods.
#[derive(Debug)]
struct Homes {
    exec: CodexHome,
    exec_bare: CodexHome,
    cold: CodexHome,
    cold_raw: CodexHome,
    warm: CodexHome,
    raw: CodexHome,
    broker: CodexHome,
}

/// A `codex-broker serve` process of our own.
#[derive(Debug)]
pub struct BrokerProcess {
    child: std::process::Child,
    guard: GroupGuard,
    /// How clients reach it.
    pub options: BrokerOptions,
    /// Its log file.
    pub log: PathBuf,
}

impl BrokerProcess {
    /// The broker's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker's descendants: the app-server (Node.js launcher and native codex) and
    /// whatever codex runs.
    pub fn app_server_pids(&self) -> Vec<u32> {
        procfs::descendants(self.pid())
    }

    /// `VmRSS` of the broker alone, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        procfs::status_kib(self.pid(), "VmRSS")
    }

    /// Summed `VmRSS` of the app-server processes, KiB.
    pub fn app_server_rss_kib(&self) -> u64 {
        procfs::total_rss_kib(&self.app_server_pids())
    }

    fn stop(mut self) {
        self.guard.kill();
        let _ = self.child.wait();
    }
}

/// Everything a run needs, alive for the whole run.
pub struct Lab {
    /// The codex launcher.
    pub codex: PathBuf,
    /// The probed codex.
    pub binary: CodexBinary,
    mock: MockModel,
    workspace: TempWorkspace,
    /// Short private folder (under `/tmp`, for a short socket path): `run/` is the
    /// companion's `XDG_RUNTIME_DIR`, `state/` its `CODEX_BRIDGE_STATE_DIR`, `home/` the
    /// empty `HOME` of every codex when the login environment is clean.
    scratch: TempDir,
    /// `HOME` for codex processes (`None`: inherited).
    home_dir: Option<PathBuf>,
    homes: Homes,
    turn_timeout: Duration,
    cli: CliBackend,
    warm: AspBackend,
    raw: RawAppServer,
    /// The broker (started by [`Lab::start_broker`]).
    pub broker: Option<BrokerProcess>,
    broker_client: Option<AspBackend>,
    companion: Option<PathBuf>,
    companion_wrapper: Vec<std::ffi::OsString>,
    broker_bin: PathBuf,
    /// The native binary behind the npm launcher, and the package root the launcher names.
    native: Option<(PathBuf, PathBuf)>,
}

fn err(context: &str, e: impl std::fmt::Display) -> String {
    format!("{context}: {e}")
}

fn check(outcome: &TurnOutcome) -> Result<(), String> {
    match outcome.final_message.as_deref() {
        Some(EXPECTED_ANSWER) => Ok(()),
        other => Err(format!("unexpected final message {other:?}")),
    }
}

impl Lab {
    /// Starts the mock, the homes, the CLI backend, a warm [`AspBackend`] and a warm raw
    /// client (each with one untimed warm-up turn).
    ///
    /// # Errors
    /// When codex cannot be probed or started.
    pub async fn start(
        codex: &Path,
        broker_bin: &Path,
        companion: Option<&Path>,
        turn_timeout: Duration,
        clean_home: bool,
        companion_wrapper: Vec<std::ffi::OsString>,
    ) -> Result<Lab, String> {
        let mock = MockModel::start().await;
        let workspace = TempWorkspace::new().git_repo();
        let scratch = tempfile::Builder::new()
            .prefix("cbb-")
            .tempdir_in("/tmp")
            .map_err(|e| err("creating a scratch folder in /tmp", e))?;
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(scratch.path().join(sub))
                .map_err(|e| err("creating the scratch folders", e))?;
        }
        let homes = Homes {
            exec: CodexHome::new(&mock),
            exec_bare: CodexHome::new(&mock),
            cold: CodexHome::new(&mock),
            cold_raw: CodexHome::new(&mock),
            warm: CodexHome::new(&mock),
            raw: CodexHome::new(&mock),
            broker: CodexHome::new(&mock),
        };
        let home_dir = clean_home.then(|| scratch.path().join("home"));
        let binary = CodexBinary::probe(codex)
            .await
            .map_err(|e| err("probing codex", e))?;
        let mut cli = CliBackend::builder()
            .binary(binary.clone())
            .envs(codex_env(&homes.exec, home_dir.as_deref()))
            .default_timeout(turn_timeout);
        for key in ENV_TO_REMOVE {
            cli = cli.env_remove(*key);
        }
        let cli = cli
            .build()
            .map_err(|e| err("building the CLI backend", e))?;
        let warm = AspBackend::spawn(
            binary.clone(),
            asp_options(&homes.warm, home_dir.as_deref(), turn_timeout),
        )
        .await
        .map_err(|e| err("starting the warm app-server", e))?;
        let raw = RawAppServer::start(codex, &homes.raw, home_dir.as_deref()).await?;
        let mut lab = Lab {
            codex: codex.to_owned(),
            binary,
            mock,
            workspace,
            scratch,
            home_dir,
            homes,
            turn_timeout,
            cli,
            warm,
            raw,
            broker: None,
            broker_client: None,
            companion: companion.map(Path::to_owned),
            companion_wrapper,
            broker_bin: broker_bin.to_owned(),
            native: native_codex(codex),
        };
        // warm-ups (codex's first turn in a home creates its databases)
        lab.exec_turn().await?;
        lab.exec_bare_turn().await?;
        lab.warm_turn().await?;
        lab.raw_warm_turn().await?;
        Ok(lab)
    }

    fn spec(&self) -> TaskSpec {
        TaskSpec::new(PROMPT)
            .cwd(self.workspace.path())
            .timeout(self.turn_timeout)
    }

    /// Applies `home`'s environment (and the clean `HOME`, if any) to a command.
    fn apply_env<'c>(
        &self,
        home: &CodexHome,
        command: &'c mut tokio::process::Command,
    ) -> &'c mut tokio::process::Command {
        home.apply_env(command);
        if let Some(dir) = &self.home_dir {
            command.env("HOME", dir);
        }
        command
    }

    /// The mock model's thread (its CPU time is the mock's).
    pub fn mock_thread_name(&self) -> String {
        format!("mock-model-{}", self.mock.addr().port())
    }

    async fn timed<F, T>(&self, fut: F) -> Result<(Duration, T), String>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        match tokio::time::timeout(self.turn_timeout, fut).await {
            Ok(Ok(v)) => Ok((start.elapsed(), v)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("timed out after {:?}", self.turn_timeout)),
        }
    }

    /// One turn through [`CliBackend`] (a `codex exec --json` process).
    pub async fn exec_turn(&self) -> Result<Duration, String> {
        let spec = self.spec();
        let (t, outcome) = self
            .timed(async { self.cli.run(spec).await.map_err(|e| err("exec", e)) })
            .await?;
        check(&outcome)?;
        Ok(t)
    }

    /// One turn of a bare `codex exec --json` started with `tokio::process` (no library).
    pub async fn exec_bare_turn(&self) -> Result<Duration, String> {
        let mut command = tokio::process::Command::new(&self.codex);
        self.apply_env(&self.homes.exec_bare, &mut command)
            .arg("exec")
            .arg("--json")
            .arg("-C")
            .arg(self.workspace.path())
            .arg(PROMPT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let (t, output) = self
            .timed(async {
                command
                    .output()
                    .await
                    .map_err(|e| err("running codex exec", e))
            })
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !stdout.contains("\"turn.completed\"") {
            return Err(format!("codex exec failed ({}): {stdout}", output.status));
        }
        Ok(t)
    }

    /// Whether the native binary behind the npm launcher was found.
    pub fn has_native(&self) -> bool {
        self.native.is_some()
    }

    /// One turn of a bare `codex exec --json` of the native binary, started as the npm
    /// launcher would start it (same `CODEX_MANAGED_*` variables), without Node.js.
    pub async fn exec_native_turn(&self) -> Result<Duration, String> {
        let (native, package_root) = self.native.as_ref().ok_or("no native codex found")?;
        let mut command = tokio::process::Command::new(native);
        self.apply_env(&self.homes.exec_bare, &mut command)
            .env("CODEX_MANAGED_BY_NPM", "1")
            .env("CODEX_MANAGED_PACKAGE_ROOT", package_root)
            .arg("exec")
            .arg("--json")
            .arg("-C")
            .arg(self.workspace.path())
            .arg(PROMPT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let (t, output) = self
            .timed(async {
                command
                    .output()
                    .await
                    .map_err(|e| err("running the native codex exec", e))
            })
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !stdout.contains("\"turn.completed\"") {
            return Err(format!(
                "native codex exec failed ({}): {stdout}",
                output.status
            ));
        }
        Ok(t)
    }

    /// `CodexBinary::probe` of the launcher: `--version`, then `exec --help` and `exec resume
    /// --help` side by side (what `CodexBinary::discover` does, and so every program that
    /// starts by discovering codex).
    pub async fn probe_turn(&self) -> Result<Duration, String> {
        let (t, _) = self
            .timed(async {
                CodexBinary::probe(&self.codex)
                    .await
                    .map_err(|e| err("probing codex", e))
            })
            .await?;
        Ok(t)
    }

    /// Spawn + initialize + thread + turn through [`AspBackend::spawn`]; the app-server is
    /// then killed (not timed) and waited for.
    pub async fn cold_turn(&self) -> Result<Duration, String> {
        let spec = self.spec();
        let home = &self.homes.cold;
        let result = self
            .timed(async {
                let backend = AspBackend::spawn(
                    self.binary.clone(),
                    asp_options(home, self.home_dir.as_deref(), self.turn_timeout),
                )
                .await
                .map_err(|e| err("spawning the app-server", e))?;
                backend.run(spec).await.map_err(|e| err("cold turn", e))
            })
            .await;
        settle(home).await;
        let (t, outcome) = result?;
        check(&outcome)?;
        Ok(t)
    }

    /// Spawn + initialize + thread + turn with the raw client, then kill (not timed).
    pub async fn cold_raw_turn(&self) -> Result<Duration, String> {
        let home = &self.homes.cold_raw;
        let ws = self.workspace.path();
        let result = self
            .timed(async {
                let mut raw =
                    RawAppServer::start(&self.codex, home, self.home_dir.as_deref()).await?;
                let answer = raw.turn(ws, PROMPT).await;
                Ok((raw, answer))
            })
            .await;
        let (t, (raw, answer)) = result?;
        raw.kill();
        settle(home).await;
        check_text(&answer?)?;
        Ok(t)
    }

    /// New thread + turn on the running [`AspBackend`].
    pub async fn warm_turn(&self) -> Result<Duration, String> {
        let spec = self.spec();
        let (t, outcome) = self
            .timed(async { self.warm.run(spec).await.map_err(|e| err("warm turn", e)) })
            .await?;
        check(&outcome)?;
        Ok(t)
    }

    /// New thread + turn on the running raw client.
    pub async fn raw_warm_turn(&mut self) -> Result<Duration, String> {
        let start = Instant::now();
        let ws = self.workspace.path().to_owned();
        let answer = tokio::time::timeout(self.turn_timeout, self.raw.turn(&ws, PROMPT))
            .await
            .map_err(|_| format!("timed out after {:?}", self.turn_timeout))??;
        let t = start.elapsed();
        check_text(&answer)?;
        Ok(t)
    }

    /// Starts `codex-broker serve` for the broker home, waits until it answers, connects
    /// one in-process client, and runs one untimed turn through it.
    ///
    /// # Errors
    /// When the broker does not come up.
    pub async fn start_broker(&mut self) -> Result<(), String> {
        let dir = self
            .scratch
            .path()
            .join("run")
            .join("codex-bridge")
            .join("broker");
        let options = BrokerOptions::new()
            .codex(&self.codex)
            .codex_home(self.homes.broker.path())
            .socket_dir(&dir)
            .client_info(codex_asp::protocol::InitializeParams::new(
                "codex-bridge-bench",
                env!("CARGO_PKG_VERSION"),
            ));
        let log = self.scratch.path().join("broker.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| err("creating the broker log", e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| err("creating the broker log", e))?;
        let mut command = std::process::Command::new(&self.broker_bin);
        self.homes.broker.apply_env_std(&mut command);
        if let Some(home) = &self.home_dir {
            command.env("HOME", home);
        }
        command
            .arg("serve")
            .arg("--codex")
            .arg(&self.codex)
            .arg("--socket-dir")
            .arg(&dir)
            .arg("--idle-timeout")
            .arg("0")
            .env("CODEX_BROKER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(|e| err(&format!("starting {}", self.broker_bin.display()), e))?;
        let guard = GroupGuard::new(Some(child.id()));
        let process = BrokerProcess {
            child,
            guard,
            options: options.clone(),
            log: log.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match broker::status(&options).await {
                Ok(status) if status.app_server == "ready" => break,
                _ if Instant::now() > deadline => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    process.stop();
                    return Err(format!("the broker did not come up in 60 s; log:\n{tail}"));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        self.broker = Some(process);
        let client = self.broker_client().await?;
        self.broker_client = Some(client);
        self.broker_turn().await?;
        Ok(())
    }

    /// A new in-process client of the broker, as an [`AspBackend`].
    ///
    /// # Errors
    /// When no broker runs or the handshake fails.
    pub async fn broker_client(&self) -> Result<AspBackend, String> {
        let options = &self.broker.as_ref().ok_or("no broker")?.options;
        let conn = broker::connect(options)
            .await
            .map_err(|e| err("connecting to the broker", e))?;
        Ok(AspBackend::from_connection_with(
            conn,
            AspBackendOptions::default()
                .kind(BackendKind::Broker)
                .default_timeout(self.turn_timeout),
        ))
    }

    /// New thread + turn through the broker, from this process.
    pub async fn broker_turn(&self) -> Result<Duration, String> {
        let client = self.broker_client.as_ref().ok_or("no broker client")?;
        let spec = self.spec();
        let (t, outcome) = self
            .timed(async { client.run(spec).await.map_err(|e| err("broker turn", e)) })
            .await?;
        check(&outcome)?;
        Ok(t)
    }

    /// The `broker-turn` helper of this executable through the warm broker, from process
    /// start to exit.
    pub async fn cli_broker_turn(&self) -> Result<Duration, String> {
        let broker = self.broker.as_ref().ok_or("no broker")?;
        let dir = broker.options.socket_dir.clone().ok_or("no socket dir")?;
        let me = std::env::current_exe().map_err(|e| err("locating this executable", e))?;
        let mut command = tokio::process::Command::new(me);
        self.apply_env(&self.homes.broker, &mut command)
            .arg("broker-turn")
            .arg("--codex")
            .arg(&self.codex)
            .arg("--socket-dir")
            .arg(dir)
            .arg("--cwd")
            .arg(self.workspace.path())
            .arg(PROMPT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let (t, output) = self
            .timed(async {
                command
                    .output()
                    .await
                    .map_err(|e| err("running broker-turn", e))
            })
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || stdout.trim() != EXPECTED_ANSWER {
            return Err(format!(
                "broker-turn failed ({}): {stdout:?} {:?}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(t)
    }

    /// Whether a companion binary was given.
    pub fn has_companion(&self) -> bool {
        self.companion.is_some()
    }

    fn companion_env(&self, command: &mut tokio::process::Command) {
        self.apply_env(&self.homes.broker, command)
            .env("CODEX_BIN", &self.codex)
            .env("XDG_RUNTIME_DIR", self.scratch.path().join("run"))
            .env("CODEX_BRIDGE_STATE_DIR", self.scratch.path().join("state"))
            .env(broker::BROKER_BIN_ENV, &self.broker_bin)
            .env_remove("CODEX_COMPANION_NO_BROKER");
    }

    fn companion_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--cwd".into(),
            self.workspace.path().into(),
            "task".into(),
            PROMPT.into(),
        ]
    }

    /// `codex-companion task` through the warm broker, from process start to exit.
    pub async fn companion_turn(&self) -> Result<Duration, String> {
        let bin = self.companion.as_ref().ok_or("no companion binary")?;
        let mut command = match self.companion_wrapper.split_first() {
            Some((wrapper, wrapper_args)) => {
                let mut c = tokio::process::Command::new(wrapper);
                c.args(wrapper_args).arg(bin);
                c
            }
            None => tokio::process::Command::new(bin),
        };
        self.companion_env(&mut command);
        command
            .args(self.companion_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let (t, output) = self
            .timed(async {
                command
                    .output()
                    .await
                    .map_err(|e| err("running codex-companion", e))
            })
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !stdout.contains(EXPECTED_ANSWER) {
            return Err(format!(
                "codex-companion task failed ({}): stdout {stdout:?} stderr {:?}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(t)
    }

    /// The peak RSS of `codex-companion task` runs, measured by re-running this benchmark
    /// binary as `rusage -- codex-companion ...` (see [`super::rusage`]): per run, the
    /// companion's own peak and the largest peak among it and the processes it ran, KiB.
    pub async fn companion_peak_rss(&self, runs: usize) -> Result<Vec<(u64, u64)>, String> {
        let bin = self.companion.as_ref().ok_or("no companion binary")?;
        let me = std::env::current_exe().map_err(|e| err("locating this executable", e))?;
        let mut peaks = Vec::new();
        for _ in 0..runs {
            let mut command = tokio::process::Command::new(&me);
            self.companion_env(&mut command);
            command
                .arg("rusage")
                .arg("--")
                .arg(bin)
                .args(self.companion_args())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let output = tokio::time::timeout(self.turn_timeout, command.output())
                .await
                .map_err(|_| "the rusage run timed out".to_owned())?
                .map_err(|e| err("running the rusage helper", e))?;
            let report: serde_json::Value = serde_json::from_slice(&output.stdout)
                .map_err(|e| err("reading the rusage helper's report", e))?;
            if report["code"] != 0 {
                return Err(format!("codex-companion failed under rusage: {report}"));
            }
            peaks.push((
                report["hwm_kib"].as_u64().ok_or("no hwm_kib")?,
                report["tree_max_rss_kib"]
                    .as_u64()
                    .ok_or("no tree_max_rss_kib")?,
            ));
        }
        Ok(peaks)
    }

    /// Runs `clients` concurrent clients for `secs` seconds, each looping over new thread +
    /// turn: through the broker (one connection each), or, as a control, straight on the
    /// warm app-server's one connection (the clients share it). Samples the broker's memory.
    ///
    /// # Errors
    /// When the clients cannot connect.
    pub async fn fan_in(
        &self,
        target: FanInTarget,
        clients: usize,
        secs: f64,
    ) -> Result<FanIn, String> {
        let mut backends = Vec::with_capacity(clients);
        let (server_pid, app_root) = match target {
            FanInTarget::Broker => {
                let broker = self.broker.as_ref().ok_or("no broker")?;
                for _ in 0..clients {
                    backends.push(self.broker_client().await?);
                }
                (Some(broker.pid()), broker.pid())
            }
            FanInTarget::Direct => {
                for _ in 0..clients {
                    backends.push(self.warm.clone());
                }
                let pid = self
                    .warm
                    .connection()
                    .process()
                    .and_then(|p| p.pid())
                    .ok_or("the warm app-server has no pid")?;
                (None, pid)
            }
        };
        let app_pids = move || {
            let mut pids = procfs::descendants(app_root);
            if server_pid.is_none() {
                pids.insert(0, app_root);
            }
            pids
        };
        let mock_thread = self.mock_thread_name();
        let before = CpuSnapshot::take(server_pid, &app_pids(), &mock_thread);
        let stop_sampling = Arc::new(AtomicBool::new(false));
        let max_rss = Arc::new(AtomicU64::new(0));
        let max_app_rss = Arc::new(AtomicU64::new(0));
        let sampler = {
            let stop = stop_sampling.clone();
            let max_rss = max_rss.clone();
            let max_app_rss = max_app_rss.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = server_pid.and_then(|p| procfs::status_kib(p, "VmRSS")) {
                        max_rss.fetch_max(rss, Ordering::Relaxed);
                    }
                    let app = procfs::total_rss_kib(&app_pids());
                    max_app_rss.fetch_max(app, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let mut tasks = Vec::with_capacity(clients);
        for backend in &backends {
            let backend = backend.clone();
            let spec = self.spec();
            tasks.push(tokio::spawn(async move {
                let mut samples = Samples::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let result = match backend.run(spec.clone()).await {
                        Ok(outcome) => check(&outcome).map(|()| t.elapsed()),
                        Err(e) => Err(codex_core::error_chain(&e)),
                    };
                    samples.record(result);
                }
                samples
            }));
        }
        let mut all = Samples::default();
        for task in tasks {
            match task.await {
                Ok(s) => {
                    all.times.extend(s.times);
                    all.errors.extend(s.errors);
                }
                Err(e) => all.errors.push(format!("client task failed: {e}")),
            }
        }
        let elapsed = start.elapsed();
        stop_sampling.store(true, Ordering::Relaxed);
        let _ = sampler.await;
        let after = CpuSnapshot::take(server_pid, &app_pids(), &mock_thread);
        if target == FanInTarget::Broker {
            for backend in &backends {
                let _ = backend
                    .connection()
                    .shutdown(Duration::from_millis(500))
                    .await;
            }
        }
        let turns = all.times.len();
        Ok(FanIn {
            target,
            clients,
            turns,
            errors: all.errors.len(),
            first_errors: all.errors.iter().take(3).cloned().collect(),
            elapsed,
            turns_per_s: turns as f64 / elapsed.as_secs_f64(),
            latency: Summary::of(&all.times),
            cpu: after.minus(&before),
            broker_max_rss_kib: max_rss.load(Ordering::Relaxed),
            app_server_max_rss_kib: max_app_rss.load(Ordering::Relaxed),
        })
    }

    /// Stops the broker and the warm app-servers.
    pub async fn shutdown(mut self) {
        if let Some(client) = self.broker_client.take() {
            let _ = client
                .connection()
                .shutdown(Duration::from_millis(500))
                .await;
        }
        if let Some(broker) = self.broker.take() {
            let _ = broker::shutdown(&broker.options).await;
            broker.stop();
        }
        self.raw.kill();
        drop(self.warm);
    }
}

/// Waits (up to 10 s) until no process of `home` is left: the app-server's group is killed at
/// once, but the login shell it starts for its shell snapshot runs in a session of its own
/// and finishes on its own. Not waiting would let it eat into the next measurement.
async fn settle(home: &CodexHome) {
    let _ = wait_until_gone_async(
        "CODEX_HOME",
        &home.path().to_string_lossy(),
        Duration::from_secs(10),
    )
    .await;
}

fn check_text(answer: &str) -> Result<(), String> {
    if answer == EXPECTED_ANSWER {
        Ok(())
    } else {
        Err(format!("unexpected final message {answer:?}"))
    }
}

/// The native binary that the npm launcher `launcher` (`node_modules/.bin/codex`) starts, and
/// the `@openai/codex` package root it names in `CODEX_MANAGED_PACKAGE_ROOT`.
pub fn native_codex(launcher: &Path) -> Option<(PathBuf, PathBuf)> {
    let script = launcher.canonicalize().ok()?;
    let node_modules = script
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "node_modules"))?;
    let package_root = node_modules
        .join("@openai")
        .join("codex")
        .canonicalize()
        .ok()?;
    for entry in std::fs::read_dir(node_modules.join("@openai"))
        .ok()?
        .flatten()
    {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("codex-linux-") {
            continue;
        }
        for triple in std::fs::read_dir(entry.path().join("vendor"))
            .ok()?
            .flatten()
        {
            for candidate in [
                triple.path().join("bin").join("codex"),
                triple.path().join("codex").join("codex"),
            ] {
                if candidate.is_file() {
                    return Some((candidate, package_root));
                }
            }
        }
    }
    None
}

/// `home`'s variables for a codex child, plus `HOME` when given.
fn codex_env(home: &CodexHome, home_dir: Option<&Path>) -> Vec<(String, String)> {
    let mut env = home.env();
    if let Some(dir) = home_dir {
        env.push(("HOME".to_owned(), dir.to_string_lossy().into_owned()));
    }
    env
}

fn asp_options(home: &CodexHome, home_dir: Option<&Path>, timeout: Duration) -> AspBackendOptions {
    let mut options = AspBackendOptions::default()
        .envs(codex_env(home, home_dir))
        .client_info("codex-bridge-bench", env!("CARGO_PKG_VERSION"))
        .default_timeout(timeout);
    for key in ENV_TO_REMOVE {
        options = options.env_remove(*key);
    }
    options
}

/// Where the fan-in clients send their turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanInTarget {
    /// One broker connection per client, one `codex-broker` in front of one app-server.
    Broker,
    /// The control: every client on the warm app-server's one stdio connection (no broker).
    Direct,
}

/// CPU time used by each party during a phase, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSplit {
    /// This process's client side: the benchmark's clients, without the mock's thread.
    pub clients_ms: f64,
    /// The mock model's thread.
    pub mock_ms: f64,
    /// The `codex-broker` process (0 without a broker).
    pub broker_ms: f64,
    /// The app-server processes themselves (Node.js launcher and native codex).
    pub app_server_ms: f64,
    /// The helpers the app-server ran and reaped (git, its shell-snapshot login shell).
    pub app_helpers_ms: f64,
}

impl CpuSplit {
    /// Everything.
    pub fn total_ms(&self) -> f64 {
        self.clients_ms + self.mock_ms + self.broker_ms + self.app_server_ms + self.app_helpers_ms
    }
}

#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    process: u64,
    mock: u64,
    broker: u64,
    app_server: u64,
    app_helpers: u64,
}

impl CpuSnapshot {
    fn take(broker: Option<u32>, app_pids: &[u32], mock_thread: &str) -> CpuSnapshot {
        let with_children: u64 = app_pids
            .iter()
            .filter_map(|p| procfs::cpu_ticks_with_children(*p))
            .sum();
        let own: u64 = app_pids.iter().filter_map(|p| procfs::cpu_ticks(*p)).sum();
        CpuSnapshot {
            process: procfs::self_cpu_ticks().unwrap_or(0),
            mock: thread_ticks(mock_thread).unwrap_or(0),
            broker: broker.and_then(procfs::cpu_ticks).unwrap_or(0),
            app_server: own,
            app_helpers: with_children.saturating_sub(own),
        }
    }

    fn minus(&self, before: &CpuSnapshot) -> CpuSplit {
        let d = |a: u64, b: u64| procfs::ticks_to_ms(a.saturating_sub(b));
        let mock = d(self.mock, before.mock);
        CpuSplit {
            clients_ms: (d(self.process, before.process) - mock).max(0.0),
            mock_ms: mock,
            broker_ms: d(self.broker, before.broker),
            app_server_ms: d(self.app_server, before.app_server),
            app_helpers_ms: d(self.app_helpers, before.app_helpers),
        }
    }
}

/// CPU ticks of this process's thread named `name` (`/proc/self/task/*/comm`).
fn thread_ticks(name: &str) -> Option<u64> {
    let short: String = name.chars().take(15).collect();
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == short {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            return Some(utime + stime);
        }
    }
    None
}

/// The result of one fan-in phase.
#[derive(Debug, Clone)]
pub struct FanIn {
    /// Through the broker, or straight on one app-server connection.
    pub target: FanInTarget,
    /// Concurrent clients.
    pub clients: usize,
    /// Completed turns.
    pub turns: usize,
    /// Failed turns.
    pub errors: usize,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// From the start until the last client finished its last turn.
    pub elapsed: Duration,
    /// `turns / elapsed`.
    pub turns_per_s: f64,
    /// Per-turn latency (new thread + turn) under this load.
    pub latency: Option<Summary>,
    /// CPU used during the phase.
    pub cpu: CpuSplit,
    /// The largest `VmRSS` of the broker sampled during the phase, KiB.
    pub broker_max_rss_kib: u64,
    /// The largest summed `VmRSS` of the app-server processes sampled, KiB.
    pub app_server_max_rss_kib: u64,
}

impl FanIn {
    /// CPU milliseconds per completed turn, by party.
    pub fn cpu_per_turn(&self) -> CpuSplit {
        let n = self.turns.max(1) as f64;
        CpuSplit {
            clients_ms: self.cpu.clients_ms / n,
            mock_ms: self.cpu.mock_ms / n,
            broker_ms: self.cpu.broker_ms / n,
            app_server_ms: self.cpu.app_server_ms / n,
            app_helpers_ms: self.cpu.app_helpers_ms / n,
        }
    }
}
