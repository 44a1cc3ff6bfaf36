//! `cargo xtask fuzz [--cases N] [--target NAME]`: runs the property-based fuzz tests of the
//! workspace with N cases per target (default 1,000,000), built with the `fuzz` profile
//! (release optimisation, overflow checks and debug assertions on), and prints how long
//! each target took.
//!
//! The targets are ordinary `#[test]`s (proptest) that `cargo test` runs with 256 cases;
//! here only the number of cases changes, through `CODEX_BRIDGE_FUZZ_CASES`. A failure
//! prints the shrunk input; `PROPTEST_RNG_SEED=N` replays a run.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

/// `cargo xtask fuzz` arguments.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Cases per target.
    #[arg(long, default_value_t = 1_000_000)]
    cases: u32,
    /// Run one target only (default: all).
    #[arg(long, value_enum)]
    target: Option<Target>,
}

/// One fuzz target: where its tests live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// `codex exec --json` output: JSONL framing and line decoding (codex-cli-backend).
    ExecJsonl,
    /// JSON-RPC messages, typed notifications and server requests, turn tracking (codex-asp).
    Jsonrpc,
    /// The connection driver over the in-memory transport (codex-asp).
    Connection,
    /// Job records on disk (codex-agent's job store).
    JobStore,
    /// The command line of codex-companion (codex-agent).
    CompanionCli,
}

impl Target {
    const ALL: [Target; 5] = [
        Target::ExecJsonl,
        Target::Jsonrpc,
        Target::Connection,
        Target::JobStore,
        Target::CompanionCli,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::ExecJsonl => "exec-jsonl",
            Target::Jsonrpc => "jsonrpc",
            Target::Connection => "connection",
            Target::JobStore => "job-store",
            Target::CompanionCli => "companion-cli",
        }
    }

    /// The test-name filter that selects the target's tests.
    fn filter(self) -> &'static str {
        match self {
            Target::ExecJsonl => "fuzz_exec",
            Target::Jsonrpc => "fuzz_jsonrpc",
            Target::Connection => "fuzz_connection",
            Target::JobStore => "fuzz_job_store",
            Target::CompanionCli => "fuzz_companion",
        }
    }
}

/// The test binaries of every target, selected together so that every run shares one build
/// (selecting one package at a time would unify features differently and rebuild).
const TEST_BINARIES: &[&str] = &[
    "-p",
    "codex-cli-backend",
    "-p",
    "codex-asp",
    "-p",
    "codex-core",
    "-p",
    "codex-agent",
    "--lib",
    "--bin",
    "codex-companion",
];

/// Runs the selected targets; fails when one of them does.
pub fn run(args: FuzzArgs) -> Result<()> {
    let targets: Vec<Target> = match args.target {
        Some(t) => vec![t],
        None => Target::ALL.to_vec(),
    };
    let mut results: Vec<(Target, Duration, bool)> = Vec::new();
    for target in targets {
        eprintln!(
            "xtask: fuzz target {}: {} cases per test (a test whose case is a batch of inputs runs fewer)",
            target.name(),
            args.cases
        );
        let started = Instant::now();
        let ok = crate::run(
            crate::cargo()
                .args(["test", "--profile", "fuzz"])
                .args(TEST_BINARIES)
                .args(["--", target.filter(), "--nocapture"])
                .env("CODEX_BRIDGE_FUZZ_CASES", args.cases.to_string()),
        )
        .map_err(|e| eprintln!("xtask: fuzz target {} FAILED: {e:#}", target.name()))
        .is_ok();
        results.push((target, started.elapsed(), ok));
    }
    eprintln!("xtask: fuzz summary ({} cases per test):", args.cases);
    for (target, took, ok) in &results {
        eprintln!(
            "  {:<14} {:>9.1?}  {}",
            target.name(),
            took,
            if *ok { "ok" } else { "FAILED" }
        );
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, _, ok)| !ok)
        .map(|(t, _, _)| t.name())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("fuzz targets failed: {}", failed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn fuzz_arguments_parse() {
        let cli = crate::Cli::try_parse_from(["cargo xtask", "fuzz"]).unwrap();
        let crate::Task::Fuzz(args) = cli.command else {
            panic!("not fuzz")
        };
        assert_eq!((args.cases, args.target), (1_000_000, None));
        let cli = crate::Cli::try_parse_from([
            "cargo xtask",
            "fuzz",
            "--cases",
            "100",
            "--target",
            "job-store",
        ])
        .unwrap();
        let crate::Task::Fuzz(args) = cli.command else {
            panic!("not fuzz")
        };
        assert_eq!((args.cases, args.target), (100, Some(Target::JobStore)));
        for t in Target::ALL {
            assert_eq!(Target::from_str(t.name(), false), Ok(t));
        }
    }
}
