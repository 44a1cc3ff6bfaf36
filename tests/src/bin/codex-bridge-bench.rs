//! `codex-bridge-bench`: measures every way of running Codex through codex-bridge against
//! the mock model and writes `BENCHMARKS.md` (see `codex_bridge_tests::bench`).
//!
//! Run it through `cargo xtask bench`, which builds it, `codex-broker` and `codex-companion`
//! in release mode and passes their paths:
//!
//! ```text
//! codex-bridge-bench run --codex PATH --broker PATH [--companion PATH] [--out FILE] ...
//! codex-bridge-bench rusage -- PROGRAM [ARGS...]   # peak RSS of one child, as JSON
//! codex-bridge-bench store [--processes 8] [--writes 500]  # only the job store stress
//! ```

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use codex_bridge_tests::bench::{self, Config, report};

#[derive(Debug, Parser)]
#[command(
    name = "codex-bridge-bench",
    about = "Benchmark codex-bridge against the mock model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmark and write the report.
    Run(RunArgs),
    /// One turn through the running broker, as a minimal command-line client (the answer on
    /// stdout).
    BrokerTurn {
        /// The codex binary the broker runs.
        #[arg(long)]
        codex: PathBuf,
        /// The broker's socket directory.
        #[arg(long)]
        socket_dir: PathBuf,
        /// The working directory of the turn.
        #[arg(long)]
        cwd: PathBuf,
        /// The prompt.
        prompt: String,
    },
    /// Only the job store stress: PROCESSES writers of WRITES writes each on one store; prints
    /// the report's section (the run's other sections are untouched).
    Store {
        /// Writer processes.
        #[arg(long, default_value_t = 8)]
        processes: usize,
        /// Writes per process.
        #[arg(long, default_value_t = 500)]
        writes: usize,
        /// Where to make the store (default: the system's temporary directory); e.g.
        /// /dev/shm to leave the disk out, for investigations.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// One writer of the job store stress (started by the stress itself).
    #[command(hide = true)]
    StoreWriter {
        /// The state root of the store.
        #[arg(long)]
        state: PathBuf,
        /// The workspace of the store.
        #[arg(long)]
        cwd: PathBuf,
        /// This writer's number.
        #[arg(long)]
        index: usize,
        /// How many writes.
        #[arg(long)]
        writes: usize,
        /// How many jobs of its own it creates.
        #[arg(long)]
        own_jobs: usize,
        /// The ids of the jobs every writer updates.
        #[arg(long, value_delimiter = ',')]
        shared: Vec<String>,
    },
    /// Run PROGRAM and print its exit code, peak RSS and wall time as JSON.
    Rusage {
        /// The program.
        program: OsString,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The codex launcher (default: CODEX_BIN, else the pinned install).
    #[arg(long, env = "CODEX_BIN")]
    codex: Option<PathBuf>,
    /// The codex-broker binary (default: next to this executable).
    #[arg(long)]
    broker: Option<PathBuf>,
    /// The codex-companion binary (default: next to this executable, if there); `none` to
    /// leave the companion rows unmeasured.
    #[arg(long)]
    companion: Option<PathBuf>,
    /// Rounds of the latency scenarios.
    #[arg(long, default_value_t = 15)]
    iterations: usize,
    /// Interleaved pairs for the library-overhead comparison.
    #[arg(long, default_value_t = 40)]
    overhead_pairs: usize,
    /// Client counts of the fan-in phases (0 alone: no fan-in).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    fanin_clients: Vec<usize>,
    /// Seconds per fan-in phase.
    #[arg(long, default_value_t = 8.0)]
    fanin_secs: f64,
    /// Size of each decoding corpus, in MB.
    #[arg(long, default_value_t = 4.0)]
    decode_mb: f64,
    /// Timed passes over each decoding corpus.
    #[arg(long, default_value_t = 9)]
    decode_passes: usize,
    /// Companion runs under rusage.
    #[arg(long, default_value_t = 3)]
    rss_runs: usize,
    /// Writer processes of the job store stress (0: skip it).
    #[arg(long, default_value_t = 8)]
    store_processes: usize,
    /// Writes per process of the job store stress.
    #[arg(long, default_value_t = 500)]
    store_writes: usize,
    /// Where to write the report (default: BENCHMARKS.md at the workspace root).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these one-turn scenarios (comma-separated keys: exec, exec-bare, cold, cold-raw,
    /// warm, warm-raw, broker, companion); for investigations.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run the companion under this command (e.g. "strace -f -tt -o /tmp/c.trace"); for
    /// investigations, never for the real figures.
    #[arg(long)]
    companion_wrapper: Option<String>,
    /// Let codex inherit this process's HOME (and so run the login profile found there for
    /// its shell snapshots) instead of an empty one.
    #[arg(long)]
    inherit_home: bool,
}

fn sibling(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.join(name);
    path.is_file().then_some(path)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rusage { program, args } => match bench::rusage(&program, &args) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("codex-bridge-bench rusage: {e}");
                ExitCode::FAILURE
            }
        },
        Command::BrokerTurn {
            codex,
            socket_dir,
            cwd,
            prompt,
        } => {
            let answer = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(bench::broker_turn(&codex, &socket_dir, &cwd, &prompt)));
            match answer {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("codex-bridge-bench broker-turn: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Store {
            processes,
            writes,
            dir,
        } => match bench::store_stress(processes.max(1), writes.max(1), dir.as_deref()) {
            Ok(report) => {
                let mut text = String::new();
                bench::store::render(&mut text, &report, writes.max(1));
                println!("{text}");
                if report.is_clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("codex-bridge-bench store: {e}");
                ExitCode::FAILURE
            }
        },
        Command::StoreWriter {
            state,
            cwd,
            index,
            writes,
            own_jobs,
            shared,
        } => match bench::store::writer(&state, &cwd, index, writes, own_jobs, &shared) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("codex-bridge-bench store-writer: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("codex-bridge-bench: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(args: RunArgs) -> Result<(), String> {
    let codex = args
        .codex
        .unwrap_or_else(codex_bridge_tests::pinned::pinned_install_path);
    if !codex.is_file() {
        return Err(format!(
            "no codex at {}: run `cargo xtask codex` (or set CODEX_BIN)",
            codex.display()
        ));
    }
    let codex = std::path::absolute(&codex)
        .map_err(|e| format!("cannot make {} absolute: {e}", codex.display()))?;
    let broker = args
        .broker
        .or_else(|| sibling("codex-broker"))
        .ok_or("no codex-broker next to this executable: pass --broker")?;
    let companion = match args.companion {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p),
        None => sibling("codex-companion"),
    };
    let root = codex_bridge_tests::pinned::workspace_root();
    let out = args.out.unwrap_or_else(|| root.join("BENCHMARKS.md"));
    let config = Config {
        codex,
        broker,
        companion,
        iterations: args.iterations.max(1),
        overhead_pairs: args.overhead_pairs,
        fanin_clients: args.fanin_clients.into_iter().filter(|n| *n > 0).collect(),
        fanin_secs: args.fanin_secs.max(0.5),
        decode_bytes: (args.decode_mb * 1e6) as usize,
        decode_passes: args.decode_passes,
        rss_runs: args.rss_runs,
        store_processes: args.store_processes,
        store_writes: args.store_writes.max(1),
        turn_timeout: Duration::from_secs(60),
        workspace_root: root,
        clean_home: !args.inherit_home,
        only: args.only,
        companion_wrapper: args
            .companion_wrapper
            .map(|w| w.split_whitespace().map(OsString::from).collect())
            .unwrap_or_default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let results = runtime.block_on(bench::run(config))?;
    let block = report::render(&results);
    let existing = std::fs::read_to_string(&out).ok();
    let text = report::merge(existing.as_deref(), &block);
    std::fs::write(&out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("{block}");
    eprintln!("codex-bridge-bench: wrote {}", out.display());
    Ok(())
}
