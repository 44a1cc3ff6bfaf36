//! `cargo xtask bench`: build the benchmark, `codex-broker` and `codex-companion` in release
//! mode and run `codex-bridge-bench`, which measures every method against the mock model on
//! the pinned codex and rewrites the generated block of `BENCHMARKS.md`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{PINNED_CODEX_VERSION, cargo, describe, ensure_codex, run, workspace_root};

/// Options of `cargo xtask bench` (passed on to `codex-bridge-bench run`).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rounds of the one-turn scenarios (every method once per round).
    #[arg(long, default_value_t = 15)]
    iterations: usize,
    /// Interleaved AspBackend/raw pairs for the library-overhead figure.
    #[arg(long, default_value_t = 40)]
    overhead_pairs: usize,
    /// Client counts of the fan-in phases.
    #[arg(long, default_value = "1,8,32")]
    fanin_clients: String,
    /// Seconds per fan-in phase.
    #[arg(long, default_value_t = 8.0)]
    fanin_secs: f64,
    /// Size of each decoding corpus, in MB.
    #[arg(long, default_value_t = 4.0)]
    decode_mb: f64,
    /// A quick smoke run (3 rounds, 6 pairs, 2 s fan-in phases, 1 MB corpora).
    #[arg(long)]
    quick: bool,
    /// Leave the companion rows unmeasured even if `codex-companion` builds.
    #[arg(long)]
    no_companion: bool,
    /// Where to write the report (default: BENCHMARKS.md at the workspace root).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `<target>/release`.
fn release_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    };
    target.join("release")
}

/// The 1-minute load average.
fn load_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the benchmark.
pub fn bench(args: BenchArgs) -> Result<()> {
    let codex = ensure_codex(PINNED_CODEX_VERSION)?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "codex-bridge-tests",
        "--bin",
        "codex-bridge-bench",
        "-p",
        "codex-broker",
        "--bin",
        "codex-broker",
    ]))
    .context("building the benchmark and codex-broker")?;
    let release = release_dir();
    let companion = if args.no_companion {
        None
    } else {
        match run(cargo().args([
            "build",
            "--release",
            "-p",
            "codex-agent",
            "--bin",
            "codex-companion",
        ])) {
            Ok(()) => Some(release.join("codex-companion")),
            Err(e) => {
                eprintln!(
                    "xtask: codex-companion does not build ({e:#}); its rows stay \"not yet measured\""
                );
                None
            }
        }
    };
    let (iterations, pairs, fanin_secs, decode_mb) = if args.quick {
        (3, 6, 2.0, 1.0)
    } else {
        (
            args.iterations,
            args.overhead_pairs,
            args.fanin_secs,
            args.decode_mb,
        )
    };
    if let Some(load) = load_1min() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        eprintln!("xtask: load average {load:.2} on {cores} cores");
        if load > cores as f64 * 0.75 {
            eprintln!(
                "xtask: the machine is busy; absolute times will be high (ratios are taken in the same run)"
            );
        }
    }
    let mut command = Command::new(release.join("codex-bridge-bench"));
    command
        .current_dir(workspace_root())
        .arg("run")
        .arg("--codex")
        .arg(&codex)
        .arg("--broker")
        .arg(release.join("codex-broker"))
        .arg("--companion")
        .arg(companion.unwrap_or_else(|| PathBuf::from("none")))
        .arg(format!("--iterations={iterations}"))
        .arg(format!("--overhead-pairs={pairs}"))
        .arg(format!("--fanin-clients={}", args.fanin_clients))
        .arg(format!("--fanin-secs={fanin_secs}"))
        .arg(format!("--decode-mb={decode_mb}"))
        .arg("--out")
        .arg(
            args.out
                .unwrap_or_else(|| workspace_root().join("BENCHMARKS.md")),
        );
    eprintln!("xtask: running {}", describe(&command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", describe(&command)))?;
    if !status.success() {
        bail!("the benchmark failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_binaries_live_under_target() {
        assert!(release_dir().ends_with("release"));
    }
}
