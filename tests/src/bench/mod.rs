//! The benchmark behind `cargo xtask bench` (the `codex-bridge-bench` binary): how fast each
//! way of running Codex is, measured in one run on the real pinned codex against the mock
//! model on 127.0.0.1, written to `BENCHMARKS.md`.
//!
//! What it measures ([`run`]):
//!
//! - **One trivial turn** (new thread, prompt, `echo:` answer) through every method, taken
//!   round-robin so that a noisy neighbour hurts every method alike: the CLI backend
//!   (`codex exec --json`) and a bare `codex exec` without the library; a cold app-server
//!   (spawn + initialize + thread + turn) through [`AspBackend`](codex_asp::AspBackend) and
//!   through the raw client; a warm app-server (new thread + turn on a running connection)
//!   through `AspBackend` and through the raw client; the broker from an in-process client;
//!   and `codex-companion task` through a warm broker (process start to exit).
//! - **Library overhead**: warm `AspBackend` against the [`raw`] client, in interleaved pairs.
//! - **Fan-in**: 1, 8, 32 concurrent clients of one `codex-broker`, turns/s, errors, latency
//!   and the CPU each party used per turn; and, as a control, the largest count straight on
//!   one app-server connection (no broker).
//! - **Event decoding** ([`decoding`]): our decoders against `serde_json::Value`.
//! - **Job store** ([`store`]): several processes writing to one job store at once; writes/s,
//!   lost writes, corrupt records.
//! - **Memory**: the broker's RSS idle and busy (without its app-server, which is reported
//!   apart), the companion's peak RSS.
//!
//! The report ([`report`]) keeps anything written outside its generated block, so notes
//! about the findings survive regeneration.

pub mod decoding;
pub mod lab;
pub mod machine;
pub mod procfs;
pub mod raw;
pub mod report;
pub mod stats;
pub mod store;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::{FanIn, FanInTarget, Lab};
use machine::Machine;
use stats::Samples;

/// What to run, and how much.
#[derive(Debug, Clone)]
pub struct Config {
    /// The codex launcher (the pinned one).
    pub codex: PathBuf,
    /// The `codex-broker` binary.
    pub broker: PathBuf,
    /// The `codex-companion` binary, if there is one.
    pub companion: Option<PathBuf>,
    /// Rounds of the latency scenarios (each scenario runs once per round).
    pub iterations: usize,
    /// Interleaved pairs for the library-overhead comparison.
    pub overhead_pairs: usize,
    /// The client counts of the fan-in phases.
    pub fanin_clients: Vec<usize>,
    /// How long each fan-in phase runs.
    pub fanin_secs: f64,
    /// The size each decoding corpus is repeated to.
    pub decode_bytes: usize,
    /// Timed passes over each decoding corpus.
    pub decode_passes: usize,
    /// Runs of the companion under `rusage` for its peak RSS.
    pub rss_runs: usize,
    /// Writer processes of the job store stress (0: skipped).
    pub store_processes: usize,
    /// Writes of each of them.
    pub store_writes: usize,
    /// The limit of any one turn.
    pub turn_timeout: Duration,
    /// The workspace root (fixtures are read from there).
    pub workspace_root: PathBuf,
    /// Give every codex an empty `HOME`, so that the login shell codex starts for its shell
    /// snapshot (one per thread) does not run the developer's profile.
    pub clean_home: bool,
    /// Only these latency rows (by key; empty: all). Sections with a count of 0
    /// (`overhead_pairs`, `fanin_clients`, `decode_passes`, `rss_runs`) are skipped.
    pub only: Vec<String>,
    /// A command the companion runs under (a profiler such as `strace -f -o FILE`), for
    /// investigations; empty for the real figures.
    pub companion_wrapper: Vec<std::ffi::OsString>,
}

/// One row of the latency table.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// A short key (`exec`, `warm`, ...).
    pub key: &'static str,
    /// What the row measures.
    pub label: &'static str,
    /// The timings.
    pub samples: Samples,
    /// Why the row is empty, when it is.
    pub missing: Option<String>,
}

/// Memory figures, KiB.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// The broker's `VmRSS` right after it started its app-server, before any client.
    pub broker_fresh_kib: Option<u64>,
    /// The broker's `VmRSS` with no turn running, after the latency rounds and the fan-in.
    pub broker_idle_after_load_kib: Option<u64>,
    /// The broker's largest `VmRSS` sampled during the fan-in phases.
    pub broker_busy_kib: Option<u64>,
    /// The broker's `VmHWM` at the end.
    pub broker_hwm_kib: Option<u64>,
    /// The app-server processes' summed `VmRSS` when fresh.
    pub app_server_fresh_kib: Option<u64>,
    /// The app-server processes' largest summed `VmRSS` during the fan-in.
    pub app_server_busy_kib: Option<u64>,
    /// The app-server processes: (pid, command, `VmRSS` KiB) when fresh.
    pub app_server_parts: Vec<(u32, String, u64)>,
    /// The companion's own peak RSS per run (`VmHWM`).
    pub companion_peaks_kib: Vec<u64>,
    /// The largest peak among the companion and the processes it ran, per run.
    pub companion_tree_peaks_kib: Vec<u64>,
    /// Why there is no companion figure.
    pub companion_missing: Option<String>,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// Load averages at the start and the end (the end includes this run's own processes).
    pub load: (Option<[f64; 3]>, Option<[f64; 3]>),
    /// CPU used by other processes during the run, in cores on average (machine busy time
    /// minus this process tree's).
    pub others_cores: Option<f64>,
    /// The configuration.
    pub config: Config,
    /// One trivial turn, per method.
    pub latency: Vec<LatencyRow>,
    /// Library overhead: warm `AspBackend` turns, paired with...
    pub overhead_lib: Samples,
    /// ...raw client turns.
    pub overhead_raw: Samples,
    /// Fan-in phases.
    pub fanin: Vec<FanIn>,
    /// Decoding.
    pub decoding: Vec<decoding::DecodeResult>,
    /// The job store stress, when it ran (or why it could not).
    pub store: Option<Result<store::StressReport, String>>,
    /// Memory.
    pub memory: Memory,
    /// How long the run took.
    pub wall: Duration,
}

impl Results {
    /// The latency row `key`.
    pub fn row(&self, key: &str) -> Option<&LatencyRow> {
        self.latency.iter().find(|r| r.key == key)
    }

    /// The median of row `key`.
    pub fn median(&self, key: &str) -> Option<Duration> {
        Some(self.row(key)?.samples.summary()?.median)
    }
}

fn say(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

/// Runs the whole benchmark.
///
/// # Errors
/// When the setup fails (codex cannot be started, the broker does not come up, ...);
/// failures of single turns are counted in the results instead.
pub async fn run(config: Config) -> Result<Results, String> {
    let started = Instant::now();
    let load_start = machine::load_average();
    let busy_start = procfs::machine_busy_ticks();
    let own_start = procfs::own_tree_ticks();
    let machine = Machine::probe(&config.codex);
    say(format!(
        "{} cores, {}, {}, load {:?}",
        machine.nproc, machine.cpu_model, machine.codex_version, load_start
    ));

    let mut decoded = Vec::new();
    if config.decode_passes > 0 {
        say("decoding");
        let exec = decoding::exec_corpus(
            &config.workspace_root.join("tests/fixtures/exec"),
            config.decode_bytes,
        )?;
        decoded.push(decoding::bench_exec(&exec, config.decode_passes));
        let asp = decoding::asp_corpus(
            &config.workspace_root.join("codex-asp/tests/fixtures"),
            config.decode_bytes,
        )?;
        decoded.push(decoding::bench_asp(&asp, config.decode_passes));
    }

    let store = (config.store_processes > 0).then(|| {
        say(format!(
            "job store: {} processes × {} writes",
            config.store_processes, config.store_writes
        ));
        let report = store_stress(config.store_processes, config.store_writes, None);
        if let Ok(r) = &report {
            say(format!(
                "  {:.0} writes/s, {} lost, {} corrupt",
                r.writes_per_s(),
                r.lost,
                r.corrupt
            ));
        }
        report
    });

    say("starting the mock, the warm app-servers and the broker");
    let mut lab = Lab::start(
        &config.codex,
        &config.broker,
        config.companion.as_deref(),
        config.turn_timeout,
        config.clean_home,
        config.companion_wrapper.clone(),
    )
    .await?;
    let mut memory = Memory::default();
    lab.start_broker().await?;
    // the fresh broker: app-server started and one client served, nothing running
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(broker) = &lab.broker {
        memory.broker_fresh_kib = broker.rss_kib();
        memory.app_server_fresh_kib = Some(broker.app_server_rss_kib());
        memory.app_server_parts = broker
            .app_server_pids()
            .into_iter()
            .map(|p| {
                (
                    p,
                    procfs::comm(p).unwrap_or_default(),
                    procfs::status_kib(p, "VmRSS").unwrap_or(0),
                )
            })
            .collect();
    }
    let companion_ok = if lab.has_companion() {
        // warm-up, and a check that it works at all
        match lab.companion_turn().await {
            Ok(_) => None,
            Err(e) => Some(format!("codex-companion did not run: {e}")),
        }
    } else {
        Some("not yet measured: no codex-companion binary".to_owned())
    };

    let mut latency = vec![
        LatencyRow::new(
            "exec",
            "CLI backend: one `codex exec --json` process (CliBackend)",
        ),
        LatencyRow::new(
            "exec-bare",
            "bare `codex exec --json` (tokio::process, no library)",
        ),
        LatencyRow::new(
            "exec-native",
            "bare `codex exec --json` of the native binary (no Node.js launcher)",
        ),
        LatencyRow::new(
            "probe",
            "for reference: `CodexBinary::probe` of the launcher (`--version`, `exec --help`, `exec resume --help`)",
        ),
        LatencyRow::new(
            "cold",
            "app-server cold: spawn + initialize + thread + turn (AspBackend::spawn)",
        ),
        LatencyRow::new(
            "cold-raw",
            "app-server cold: spawn + initialize + thread + turn (raw client)",
        ),
        LatencyRow::new(
            "warm",
            "app-server warm: new thread + turn on a running connection (AspBackend)",
        ),
        LatencyRow::new(
            "warm-raw",
            "app-server warm: new thread + turn (raw tokio + serde_json client, the floor)",
        ),
        LatencyRow::new(
            "broker",
            "broker warm: new thread + turn from an in-process client (AspBackend)",
        ),
        LatencyRow::new(
            "companion",
            "`codex-companion task` through a warm broker (process start to exit)",
        ),
        LatencyRow::new(
            "cli-broker",
            "minimal CLI process through the warm broker: start, connect, new thread + turn, exit (`codex-bridge-bench broker-turn`)",
        ),
    ];
    for row in &mut latency {
        if row.key == "companion"
            && let Some(why) = &companion_ok
        {
            row.missing = Some(why.clone());
        }
        if row.key == "exec-native" && !lab.has_native() {
            row.missing = Some("no native codex found behind the launcher".into());
        }
    }
    for row in &mut latency {
        if !config.only.is_empty() && !config.only.iter().any(|k| k == row.key) {
            row.missing = Some("skipped (--only)".into());
        }
    }

    say(format!(
        "latency: {} rounds of {} scenarios",
        config.iterations,
        latency.len()
    ));
    for round in 0..config.iterations {
        // rotate the order so that no method always follows the same one
        for k in 0..latency.len() {
            let i = (k + round) % latency.len();
            if latency[i].missing.is_some() {
                continue;
            }
            let result = match latency[i].key {
                "exec" => lab.exec_turn().await,
                "exec-bare" => lab.exec_bare_turn().await,
                "exec-native" => lab.exec_native_turn().await,
                "probe" => lab.probe_turn().await,
                "cold" => lab.cold_turn().await,
                "cold-raw" => lab.cold_raw_turn().await,
                "warm" => lab.warm_turn().await,
                "warm-raw" => lab.raw_warm_turn().await,
                "broker" => lab.broker_turn().await,
                "cli-broker" => lab.cli_broker_turn().await,
                _ => lab.companion_turn().await,
            };
            if let Err(e) = &result {
                say(format!("{} failed: {e}", latency[i].key));
            }
            latency[i].samples.record(result);
        }
        say(format!("round {}/{} done", round + 1, config.iterations));
    }

    say(format!(
        "library overhead: {} interleaved pairs",
        config.overhead_pairs
    ));
    let mut overhead_lib = Samples::default();
    let mut overhead_raw = Samples::default();
    for i in 0..config.overhead_pairs {
        if i % 2 == 0 {
            overhead_lib.record(lab.warm_turn().await);
            overhead_raw.record(lab.raw_warm_turn().await);
        } else {
            overhead_raw.record(lab.raw_warm_turn().await);
            overhead_lib.record(lab.warm_turn().await);
        }
    }

    let mut fanin = Vec::new();
    let control = config.fanin_clients.iter().max().copied();
    let phases = config
        .fanin_clients
        .iter()
        .map(|n| (FanInTarget::Broker, *n))
        .chain(control.map(|n| (FanInTarget::Direct, n)));
    for (target, clients) in phases {
        say(format!(
            "fan-in ({target:?}): {clients} clients for {:.0} s",
            config.fanin_secs
        ));
        let phase = lab.fan_in(target, clients, config.fanin_secs).await?;
        say(format!(
            "  {} turns, {} errors, {:.1} turns/s",
            phase.turns, phase.errors, phase.turns_per_s
        ));
        fanin.push(phase);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(broker) = &lab.broker {
        tokio::time::sleep(Duration::from_secs(1)).await;
        memory.broker_idle_after_load_kib = broker.rss_kib();
        memory.broker_hwm_kib = procfs::status_kib(broker.pid(), "VmHWM");
    }
    let through_broker = || fanin.iter().filter(|f| f.target == FanInTarget::Broker);
    memory.broker_busy_kib = through_broker().map(|f| f.broker_max_rss_kib).max();
    memory.app_server_busy_kib = through_broker().map(|f| f.app_server_max_rss_kib).max();

    if companion_ok.is_none() && config.rss_runs > 0 {
        say(format!("companion peak RSS: {} runs", config.rss_runs));
        match lab.companion_peak_rss(config.rss_runs).await {
            Ok(peaks) => {
                memory.companion_peaks_kib = peaks.iter().map(|p| p.0).collect();
                memory.companion_tree_peaks_kib = peaks.iter().map(|p| p.1).collect();
            }
            Err(e) => memory.companion_missing = Some(e),
        }
    } else {
        memory.companion_missing = companion_ok.clone();
    }

    let own_end = procfs::own_tree_ticks();
    let others_cores = procfs::machine_busy_ticks()
        .zip(busy_start)
        .map(|(end, start)| {
            let others = end
                .saturating_sub(start)
                .saturating_sub(own_end.saturating_sub(own_start));
            procfs::ticks_to_ms(others) / 1000.0 / started.elapsed().as_secs_f64()
        });
    lab.shutdown().await;
    Ok(Results {
        others_cores,
        machine,
        load: (load_start, machine::load_average()),
        config,
        latency,
        overhead_lib,
        overhead_raw,
        fanin,
        decoding: decoded,
        store,
        memory,
        wall: started.elapsed(),
    })
}

/// The job store stress ([`store::stress`]) on a fresh store in a temporary directory under
/// `parent` (default: the system's), its writers being this executable's `store-writer`
/// subcommand.
///
/// # Errors
/// When the run cannot be set up.
pub fn store_stress(
    processes: usize,
    writes: usize,
    parent: Option<&std::path::Path>,
) -> Result<store::StressReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
    let dir = match parent {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace)
        .map_err(|e| format!("creating {}: {e}", workspace.display()))?;
    let config = store::StressConfig::new(processes, writes, &dir.path().join("state"), &workspace);
    store::stress(&config, |index, shared| {
        store::writer_command(&exe, &config, index, shared)
    })
}

impl LatencyRow {
    fn new(key: &'static str, label: &'static str) -> LatencyRow {
        LatencyRow {
            key,
            label,
            samples: Samples::default(),
            missing: None,
        }
    }
}

/// The `broker-turn` helper, a minimal command-line client: connects to the running broker
/// of `codex` (`CODEX_HOME` from the environment) in `socket_dir`, runs one turn of `prompt`
/// on a new thread in `cwd` through an [`AspBackend`](codex_asp::AspBackend), and returns the
/// answer. Timed from process start to exit, it is what a companion-like program costs
/// without anything else (no codex probe, no job records).
///
/// # Errors
/// When the broker cannot be reached or the turn fails.
pub async fn broker_turn(
    codex: &std::path::Path,
    socket_dir: &std::path::Path,
    cwd: &std::path::Path,
    prompt: &str,
) -> Result<String, String> {
    use codex_core::Backend as _;
    let options = codex_asp::broker::BrokerOptions::new()
        .codex(codex)
        .socket_dir(socket_dir)
        .client_info(codex_asp::protocol::InitializeParams::new(
            "codex-bridge-bench-cli",
            env!("CARGO_PKG_VERSION"),
        ));
    let conn = codex_asp::broker::connect(&options)
        .await
        .map_err(|e| format!("connecting to the broker: {}", codex_core::ErrorChain(&e)))?;
    let backend = codex_asp::AspBackend::from_connection_with(
        conn,
        codex_asp::backend::AspBackendOptions::default()
            .kind(codex_core::BackendKind::Broker)
            .default_timeout(Duration::from_secs(60)),
    );
    let outcome = backend
        .run(codex_core::TaskSpec::new(prompt).cwd(cwd))
        .await
        .map_err(|e| format!("the turn failed: {}", codex_core::ErrorChain(&e)))?;
    let _ = backend
        .connection()
        .shutdown(Duration::from_millis(200))
        .await;
    Ok(outcome.final_message.unwrap_or_default())
}

/// The `rusage` helper: runs `program args...` (stdout and stderr discarded), waits, and
/// returns `{"code":N,"hwm_kib":N,"tree_max_rss_kib":N,"wall_ms":F}`:
///
/// - `hwm_kib`: the program's own peak RSS, its `VmHWM` read every millisecond while it runs
///   (the high-water mark only grows, so the last read before it exits is its peak, give or
///   take what it allocates in its last millisecond);
/// - `tree_max_rss_kib`: `getrusage(RUSAGE_CHILDREN)`, the largest peak among the program and
///   every process it waited for (a `codex --version` it ran, for instance).
///
/// # Errors
/// When the program cannot be started or waited for.
pub fn rusage(
    program: &std::ffi::OsStr,
    args: &[std::ffi::OsString],
) -> Result<serde_json::Value, String> {
    use nix::sys::resource::{UsageWho, getrusage};
    let start = Instant::now();
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    let mut hwm = 0;
    let status = loop {
        if let Some(kib) = procfs::status_kib(child.id(), "VmHWM") {
            hwm = hwm.max(kib);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(format!("waiting for the program: {e}")),
        }
    };
    let wall = start.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| format!("getrusage: {e}"))?;
    Ok(serde_json::json!({
        "code": status.code(),
        "hwm_kib": hwm,
        "tree_max_rss_kib": usage.max_rss(),
        "wall_ms": wall.as_secs_f64() * 1000.0,
    }))
}
