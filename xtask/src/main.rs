//! codex-bridge automation, run as `cargo xtask <command>`:
//!
//! - `codex [--version V]`: install `@openai/codex@V` (default: the pinned version) under
//!   `.tools/codex-V/` with npm when it is missing, check `--version`, print the path;
//! - `test`: install the pinned codex, then `cargo fmt --check`, `cargo clippy -D warnings`
//!   and the whole test suite (cargo-nextest when available, else `cargo test`) with
//!   `CODEX_BIN` pointing at the pinned codex;
//! - `demo`: one offline turn of the real codex (the `codex-bridge-demo` binary);
//! - `fixtures`: re-record `tests/fixtures/{exec,app-server}/*.jsonl` and
//!   `codex-asp/tests/fixtures/transcript-*.jsonl` from the real codex (the `record-fixtures`
//!   binary, the harness's app-server test, then `capture.py`);
//! - `protocol-check [--codex PATH] [--update]`: compare the App Server Protocol schema of an
//!   installed codex (default: `CODEX_BIN`, else the pinned one) with `codex-asp/schema/`
//!   (exit 1 when they differ); with `--update`, re-vendor the schema from it instead;
//! - `compat [--versions V1,V2,...] [--suite cli|asp|all]`: run the end-to-end suites against
//!   several codex versions (installed like `codex`) and print a version × suite table (exit 1
//!   when a version in the supported range fails);
//! - `dist [--out DIR]`: build `codex-companion` and `codex-broker` in release mode into one
//!   folder (default `target/dist/`) and print their paths;
//! - `bench [--iterations N] [--quick] ...`: build the benchmark, `codex-broker` and
//!   `codex-companion` in release mode, measure every method against the mock model on the
//!   pinned codex, and rewrite the generated block of `BENCHMARKS.md` (see `bench.rs`).
//!
//! xtask depends on none of the project's library crates, so it builds even when they do not.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod compat;
mod dist;
mod protocol_check;

/// The codex CLI version the project is pinned to: the one line of `codex-version.txt` at the
/// workspace root, which the tests crate (`tests/src/pinned.rs`) and codex-asp's tests read too.
const PINNED_CODEX_VERSION: &str = include_str!("../../codex-version.txt").trim_ascii();

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "codex-bridge automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install @openai/codex@VERSION under .tools/ if missing, and print the binary's path.
    Codex {
        /// The codex version to install.
        #[arg(long, default_value = PINNED_CODEX_VERSION)]
        version: String,
    },
    /// fmt check, clippy, and the whole test suite against the pinned codex.
    Test,
    /// Run one offline turn of the real codex against the mock model.
    Demo,
    /// Re-record tests/fixtures/{exec,app-server}/*.jsonl from the real pinned codex.
    Fixtures,
    /// Compare the protocol schema of an installed codex with codex-asp/schema/ (exit 1 if different).
    ProtocolCheck {
        /// The codex binary (default: CODEX_BIN, else the pinned one under .tools/).
        #[arg(long, env = "CODEX_BIN")]
        codex: Option<PathBuf>,
        /// Instead of comparing, regenerate the vendored schema from that codex.
        #[arg(long)]
        update: bool,
    },
    /// Run the end-to-end suites against several codex versions and print a results table.
    Compat {
        /// Comma-separated codex versions (default: oldest supported, a mid one, 0.169.0,
        /// 0.169.1 and the pinned one).
        #[arg(long, value_delimiter = ',')]
        versions: Option<Vec<String>>,
        /// Which suites to run.
        #[arg(long, value_enum, default_value = "all")]
        suite: compat::SuiteChoice,
    },
    /// Build codex-companion and codex-broker in release mode into one folder (target/dist/).
    Dist {
        /// The folder (default: target/dist).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Measure every method against the mock model and rewrite BENCHMARKS.md.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_task(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Printed by hand: anyhow's own report would add a backtrace under RUST_BACKTRACE.
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_task(task: Task) -> Result<()> {
    match task {
        Task::Codex { version } => {
            let path = ensure_codex(&version)?;
            println!("{}", path.display());
            Ok(())
        }
        Task::Test => test(),
        Task::Demo => demo(),
        Task::Fixtures => fixtures(),
        Task::ProtocolCheck { codex, update } => {
            let codex = codex.unwrap_or_else(|| codex_bin(PINNED_CODEX_VERSION));
            if update {
                protocol_check::update(&codex)
            } else {
                protocol_check::run(&codex)
            }
        }
        Task::Compat { versions, suite } => compat::run(versions, suite),
        Task::Bench(args) => bench::bench(args),
        Task::Dist { out } => dist::run(out),
    }
}

/// The workspace root: the parent of xtask's own folder.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// `.tools/codex-VERSION`, the npm prefix of one codex version.
fn codex_prefix(version: &str) -> PathBuf {
    workspace_root()
        .join(".tools")
        .join(format!("codex-{version}"))
}

/// The launcher npm installs for one codex version.
fn codex_bin(version: &str) -> PathBuf {
    codex_prefix(version)
        .join("node_modules")
        .join(".bin")
        .join("codex")
}

/// The cargo that runs us (so the same toolchain is used throughout).
fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// Runs a command to completion, echoing it first; fails on a non-zero exit.
fn run(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed: {status}", describe(command));
    }
    Ok(())
}

fn describe(command: &Command) -> String {
    let mut out = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Installs codex `version` with npm unless it is there, then checks `codex --version`.
fn ensure_codex(version: &str) -> Result<PathBuf> {
    let bin = codex_bin(version);
    if !bin.exists() {
        let prefix = codex_prefix(version);
        std::fs::create_dir_all(&prefix)
            .with_context(|| format!("cannot create {}", prefix.display()))?;
        run(Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args(["--no-audit", "--no-fund"])
            .arg(format!("@openai/codex@{version}"))
            .current_dir(workspace_root()))
        .context("installing codex with npm (is Node.js/npm installed?)")?;
        if !bin.exists() {
            bail!("npm finished but {} does not exist", bin.display());
        }
    }
    let output = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", bin.display()))?;
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let expected = format!("codex-cli {version}");
    if !output.status.success() || printed != expected {
        bail!(
            "{} --version printed {printed:?} ({}), expected {expected:?}; stderr: {}",
            bin.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(bin)
}

/// Whether `cargo nextest` is installed.
fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test() -> Result<()> {
    let codex = ensure_codex(PINNED_CODEX_VERSION)?;
    let mut failures = Vec::new();
    let mut step = |name: &str, command: &mut Command| {
        if let Err(e) = run(command) {
            eprintln!("xtask: {name} FAILED: {e:#}");
            failures.push(name.to_owned());
        }
    };
    step("fmt", cargo().args(["fmt", "--all", "--", "--check"]));
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    );
    if has_nextest() {
        // Doc tests first, so that the suite's own summary closes the output.
        step(
            "doc tests",
            cargo()
                .args(["test", "--doc", "--workspace"])
                .env("CODEX_BIN", &codex),
        );
        let mut tool_config = OsString::from("xtask:");
        tool_config.push(workspace_root().join("xtask").join("nextest.toml"));
        step(
            "tests",
            cargo()
                .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .arg("--tool-config-file")
                .arg(tool_config)
                .env("CODEX_BIN", &codex),
        );
    } else {
        eprintln!("xtask: cargo-nextest not found, using cargo test");
        step(
            "tests",
            cargo()
                .args(["test", "--workspace", "--no-fail-fast"])
                .env("CODEX_BIN", &codex),
        );
    }
    if failures.is_empty() {
        eprintln!("xtask: all checks passed");
        Ok(())
    } else {
        bail!("failed: {}", failures.join(", "))
    }
}

fn demo() -> Result<()> {
    let codex = ensure_codex(PINNED_CODEX_VERSION)?;
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "codex-bridge-tests",
            "--bin",
            "codex-bridge-demo",
        ])
        .env("CODEX_BIN", &codex))
}

fn fixtures() -> Result<()> {
    let codex = ensure_codex(PINNED_CODEX_VERSION)?;
    // exec/*.jsonl: the record-fixtures binary, one scenario per file.
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "codex-bridge-tests",
            "--bin",
            "record-fixtures",
        ])
        .env("CODEX_BIN", &codex))?;
    // app-server/*.jsonl: written by the harness's app-server test when asked to.
    run(cargo()
        .args([
            "test",
            "-p",
            "codex-bridge-tests",
            "--test",
            "harness",
            "escalated_exec_command_asks_the_app_server_client",
        ])
        .env("CODEX_BIN", &codex)
        .env("CODEX_BRIDGE_WRITE_FIXTURES", "1"))?;
    // codex-asp/tests/fixtures/transcript-*.jsonl: the app-server transcripts.
    run(Command::new("python3")
        .arg(workspace_root().join("codex-asp/tests/fixtures/capture.py"))
        .arg(&codex))?;
    eprintln!(
        "xtask: fixtures written to {} and {}",
        workspace_root().join("tests/fixtures").display(),
        workspace_root().join("codex-asp/tests/fixtures").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_version_is_one_plain_version() {
        let parts: Vec<&str> = PINNED_CODEX_VERSION.split('.').collect();
        assert_eq!(
            parts.len(),
            3,
            "codex-version.txt: {PINNED_CODEX_VERSION:?}"
        );
        assert!(
            parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            "codex-version.txt must hold one version such as 0.171.0, got {PINNED_CODEX_VERSION:?}"
        );
        // The schema the typed protocol is checked against is vendored under that version.
        assert!(
            workspace_root()
                .join("codex-asp/schema")
                .join(PINNED_CODEX_VERSION)
                .is_dir(),
            "codex-asp/schema/{PINNED_CODEX_VERSION}/ is missing: run `cargo xtask protocol-check --update`"
        );
    }

    #[test]
    fn paths_are_under_the_workspace_tools_folder() {
        let bin = codex_bin("1.2.3");
        assert!(bin.ends_with(".tools/codex-1.2.3/node_modules/.bin/codex"));
        assert!(bin.starts_with(workspace_root()));
        assert!(workspace_root().join("Cargo.toml").exists());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["cargo xtask", "codex", "--version", "0.160.0"]).unwrap();
        assert!(matches!(cli.command, Task::Codex { version } if version == "0.160.0"));
    }
}
