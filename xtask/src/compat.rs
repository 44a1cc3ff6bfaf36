//! `cargo xtask compat [--versions V1,V2,...] [--suite cli|asp|all]`: runs the end-to-end
//! tests against several real codex versions from the npm registry and prints a table of
//! results (version × suite → passed/failed).
//!
//! Each version is installed under `.tools/codex-V/` when missing (the logic of
//! `cargo xtask codex`), then each suite runs with `CODEX_BIN` pointing at it, one version at
//! a time. Only the test binaries that run the real codex are selected:
//!
//! - `cli`: `codex-bridge-tests` `cli_e2e` and `harness` (its `codex exec` tests),
//!   `codex-agent` `exec_e2e`;
//! - `asp`: `codex-asp` `transport` and `broker` (most of its tests use an in-memory
//!   app-server), `codex-broker` `cli` (the binary), `codex-bridge-tests` `asp_e2e`, `broker_e2e` and the
//!   app-server test of `harness`, `codex-agent` `companion_e2e` (through the broker or a
//!   private app-server).
//!
//! A test binary whose file is missing from the tree is left out with a note. The test
//! binaries are built once, before the first version runs.
//!
//! The command fails when a version inside the supported range
//! ([`OLDEST_SUPPORTED`] up to the pinned one) fails a test or cannot be installed; versions
//! outside the range are reported only.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The oldest codex the libraries support.
///
/// Found by running this command (both suites) over the stable `x.y.0` releases listed once
/// by `npm view @openai/codex versions --json`, bisecting between 0.100.0 (fails both suites)
/// and 0.169.0 (then the pinned version):
///
/// - 0.125.0 passes `cli`, fails `asp`; 0.128.0 to 0.130.0 fail `asp` (an escalated command
///   runs without an approval request; a non-loopback `--listen` without auth is accepted)
///   and 0.130.0 also fails `cli` (its shell-snapshot `bash -lc` runs in a session of its own
///   and outlives the killed process group);
/// - 0.131.0 to 0.153.0 pass `cli` and all of `asp` but two companion cancel tests: after
///   `turn/interrupt` the app-server keeps the model's HTTP stream open (the turn does end as
///   interrupted);
/// - 0.154.0 is the oldest release that passes every test.
///
/// README, "Supported codex versions", has the details.
pub(crate) const OLDEST_SUPPORTED: &str = "0.154.0";

/// A release about halfway between the oldest supported one and the pinned one.
pub(crate) const MID_VERSION: &str = "0.160.0";

/// The previously pinned release and its patch release, kept in the default run so that a
/// move of the pin shows what changed since.
pub(crate) const RECENT_VERSIONS: [&str; 2] = ["0.169.0", "0.169.1"];

/// The versions checked when `--versions` is not given, oldest first: oldest supported, mid,
/// the recent ones, pinned (last).
pub(crate) const DEFAULT_VERSIONS: [&str; 5] = [
    OLDEST_SUPPORTED,
    MID_VERSION,
    RECENT_VERSIONS[0],
    RECENT_VERSIONS[1],
    crate::PINNED_CODEX_VERSION,
];

/// Which suites to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SuiteChoice {
    /// The `codex exec` suites.
    Cli,
    /// The app-server suites.
    Asp,
    /// Both.
    All,
}

/// A set of test binaries (and test-name filters within them).
struct Suite {
    name: &'static str,
    parts: &'static [Part],
}

/// One test binary of one package, optionally narrowed by a test-name substring.
struct Part {
    package: &'static str,
    /// The package's folder, relative to the workspace root.
    dir: &'static str,
    test: &'static str,
    /// Only tests whose name contains this.
    only: Option<&'static str>,
    /// Not the tests whose name contains this.
    skip: Option<&'static str>,
}

const CLI: Suite = Suite {
    name: "cli",
    parts: &[
        Part {
            package: "codex-bridge-tests",
            dir: "tests",
            test: "cli_e2e",
            only: None,
            skip: None,
        },
        Part {
            package: "codex-bridge-tests",
            dir: "tests",
            test: "harness",
            only: None,
            skip: Some("app_server"),
        },
        Part {
            package: "codex-agent",
            dir: "codex-agent",
            test: "exec_e2e",
            only: None,
            skip: None,
        },
    ],
};

const ASP: Suite = Suite {
    name: "asp",
    parts: &[
        Part {
            package: "codex-asp",
            dir: "codex-asp",
            test: "transport",
            only: None,
            skip: None,
        },
        Part {
            package: "codex-bridge-tests",
            dir: "tests",
            test: "harness",
            only: Some("app_server"),
            skip: None,
        },
        Part {
            package: "codex-bridge-tests",
            dir: "tests",
            test: "asp_e2e",
            only: None,
            skip: None,
        },
        Part {
            package: "codex-bridge-tests",
            dir: "tests",
            test: "broker_e2e",
            only: None,
            skip: None,
        },
        Part {
            package: "codex-asp",
            dir: "codex-asp",
            test: "broker",
            only: None,
            skip: None,
        },
        Part {
            package: "codex-broker",
            dir: "codex-broker",
            test: "cli",
            only: None,
            skip: None,
        },
        Part {
            package: "codex-agent",
            dir: "codex-agent",
            test: "companion_e2e",
            only: None,
            skip: None,
        },
    ],
};

/// Tests left out for every version but the pinned one, with the reason (exact test names).
/// Keep this short: a test should rather be written so that it holds for any version.
const EXCLUDED: &[(&str, &str)] = &[(
    "setup_reports_codex_auth_and_broker",
    "codex-agent companion_e2e: asserts that `setup` reports the pinned version string",
)];

impl Part {
    /// Whether the test's source file is in the tree (a suite may name a test binary that a
    /// branch does not have yet).
    fn exists(&self) -> bool {
        crate::workspace_root()
            .join(self.dir)
            .join("tests")
            .join(format!("{}.rs", self.test))
            .is_file()
    }
}

impl SuiteChoice {
    fn suites(self) -> Vec<&'static Suite> {
        match self {
            SuiteChoice::Cli => vec![&CLI],
            SuiteChoice::Asp => vec![&ASP],
            SuiteChoice::All => vec![&CLI, &ASP],
        }
    }
}

/// The result of one suite on one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counts {
    passed: u32,
    failed: u32,
    /// The names of the failing (or timed-out) tests.
    failing: Vec<String>,
    /// Why no count could be read (install or build failure...).
    error: Option<String>,
}

impl Counts {
    fn ok(&self) -> bool {
        self.error.is_none() && self.failed == 0 && self.passed > 0
    }

    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.failing.extend(other.failing);
        if let Some(e) = other.error {
            self.error = Some(match self.error.take() {
                Some(prev) => format!("{prev}; {e}"),
                None => e,
            });
        }
    }

    fn cell(&self) -> String {
        match &self.error {
            Some(_) => "error".to_owned(),
            None => format!("{} passed, {} failed", self.passed, self.failed),
        }
    }
}

/// Runs the compat check; an error when a supported version fails.
pub(crate) fn run(versions: Option<Vec<String>>, suite: SuiteChoice) -> Result<()> {
    let versions = match versions {
        Some(list) => list,
        None => DEFAULT_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
    };
    let mut seen = BTreeSet::new();
    let versions: Vec<String> = versions
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty() && seen.insert(v.clone()))
        .collect();
    if versions.is_empty() {
        bail!("no version given");
    }
    for v in &versions {
        if numeric(v).is_none() {
            bail!("{v:?} is not a codex version such as 0.171.0");
        }
    }
    let suites = suite.suites();
    let nextest = crate::has_nextest();
    if !nextest {
        eprintln!("xtask: cargo-nextest not found, using cargo test");
    }
    for (name, reason) in EXCLUDED {
        eprintln!("xtask: compat excludes {name} on non-pinned versions: {reason}");
    }

    // Build the test binaries once: they do not depend on the codex version.
    for part in suites.iter().flat_map(|s| s.parts.iter()) {
        if !part.exists() {
            eprintln!(
                "xtask: compat: {}/tests/{}.rs does not exist; left out",
                part.dir, part.test
            );
        }
    }
    let all_parts: Vec<&Part> = suites.iter().flat_map(|s| present(s.parts)).collect();
    if nextest {
        crate::run(&mut nextest_command(&all_parts, true)).context("building the tests")?;
    } else {
        crate::run(&mut cargo_test_build(&all_parts)).context("building the tests")?;
    }

    let mut rows: Vec<(String, Vec<Counts>)> = Vec::new();
    for version in &versions {
        eprintln!("xtask: ===== codex {version} =====");
        let codex = match crate::ensure_codex(version) {
            Ok(path) => path,
            Err(e) => {
                let error = Counts {
                    error: Some(format!("install: {e:#}")),
                    ..Counts::default()
                };
                eprintln!("xtask: codex {version}: {e:#}");
                rows.push((version.clone(), vec![error; suites.len()]));
                continue;
            }
        };
        let excluded: &[(&str, &str)] = if version == crate::PINNED_CODEX_VERSION {
            &[]
        } else {
            EXCLUDED
        };
        let mut cells = Vec::new();
        for suite in &suites {
            eprintln!("xtask: codex {version}, suite {}", suite.name);
            let counts = if nextest {
                run_nextest(suite, excluded, &codex)
            } else {
                run_cargo_test(suite, excluded, &codex)
            };
            cells.push(counts);
        }
        rows.push((version.clone(), cells));
    }

    let table = render(&suites, &rows);
    println!("{table}");
    let bad: Vec<&str> = rows
        .iter()
        .filter(|(v, cells)| supported(v) && cells.iter().any(|c| !c.ok()))
        .map(|(v, _)| v.as_str())
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        bail!(
            "supported codex versions failed: {} (supported: {OLDEST_SUPPORTED} to {})",
            bad.join(", "),
            crate::PINNED_CODEX_VERSION
        )
    }
}

/// `major.minor.patch` of a version (any pre-release tail is ignored).
fn numeric(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|n| n.parse::<u64>().ok());
    let parsed = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(parsed)
}

/// Whether `version` is inside the claimed supported range.
fn supported(version: &str) -> bool {
    match (
        numeric(version),
        numeric(OLDEST_SUPPORTED),
        numeric(crate::PINNED_CODEX_VERSION),
    ) {
        (Some(v), Some(lo), Some(hi)) => lo <= v && v <= hi,
        _ => false,
    }
}

/// The nextest filter expression selecting `parts` minus `excluded`.
fn filter_expression(parts: &[&Part], excluded: &[(&str, &str)]) -> String {
    let mut alternatives = Vec::new();
    for part in parts {
        let mut expr = format!("package({}) & binary({})", part.package, part.test);
        if let Some(only) = part.only {
            let _ = write!(expr, " & test({only})");
        }
        if let Some(skip) = part.skip {
            let _ = write!(expr, " & not test({skip})");
        }
        alternatives.push(format!("({expr})"));
    }
    let mut out = alternatives.join(" | ");
    if !excluded.is_empty() {
        out = format!("({out})");
        for (name, _) in excluded {
            let _ = write!(out, " & not test(={name})");
        }
    }
    out
}

/// `-p` for each package and `--test` for each binary of `parts`.
fn target_args(parts: &[&Part]) -> Vec<String> {
    let mut packages = BTreeSet::new();
    let mut tests = BTreeSet::new();
    for part in parts {
        packages.insert(part.package);
        tests.insert(part.test);
    }
    let mut args = Vec::new();
    for p in packages {
        args.push("-p".to_owned());
        args.push(p.to_owned());
    }
    for t in tests {
        args.push("--test".to_owned());
        args.push(t.to_owned());
    }
    args
}

fn nextest_command(parts: &[&Part], build_only: bool) -> Command {
    let mut command = crate::cargo();
    command.args(["nextest", "run"]).args(target_args(parts));
    if build_only {
        command.arg("--no-run");
    } else {
        let mut tool_config = OsString::from("xtask:");
        tool_config.push(crate::workspace_root().join("xtask").join("nextest.toml"));
        command
            .args(["--no-fail-fast", "--color", "never"])
            .arg("--tool-config-file")
            .arg(tool_config);
    }
    command
}

/// The parts whose test file exists.
fn present(parts: &[Part]) -> Vec<&Part> {
    parts.iter().filter(|p| p.exists()).collect()
}

fn run_nextest(suite: &Suite, excluded: &[(&str, &str)], codex: &std::path::Path) -> Counts {
    let parts = present(suite.parts);
    let mut command = nextest_command(&parts, false);
    command
        .arg("-E")
        .arg(filter_expression(&parts, excluded))
        .env("CODEX_BIN", codex);
    match run_teed(&mut command) {
        Ok(output) => parse_nextest(&output),
        Err(e) => Counts {
            error: Some(format!("{e:#}")),
            ..Counts::default()
        },
    }
}

/// The `cargo test` command that builds every test binary of `parts`.
fn cargo_test_build(parts: &[&Part]) -> Command {
    let mut command = crate::cargo();
    command.arg("test").args(target_args(parts)).arg("--no-run");
    command
}

fn run_cargo_test(suite: &Suite, excluded: &[(&str, &str)], codex: &std::path::Path) -> Counts {
    let mut total = Counts::default();
    for part in present(suite.parts) {
        let mut command = crate::cargo();
        command
            .args([
                "test",
                "--no-fail-fast",
                "-p",
                part.package,
                "--test",
                part.test,
            ])
            .arg("--");
        if let Some(only) = part.only {
            command.arg(only);
        }
        if let Some(skip) = part.skip {
            command.args(["--skip", skip]);
        }
        for (name, _) in excluded {
            command.args(["--skip", name, "--exact"]);
        }
        command.env("CODEX_BIN", codex);
        total.add(match run_teed(&mut command) {
            Ok(output) => parse_cargo_test(&output),
            Err(e) => Counts {
                error: Some(format!("{e:#}")),
                ..Counts::default()
            },
        });
    }
    total
}

/// Runs `command`, echoing its stdout and stderr to our stderr, and returns both (stderr
/// first, then stdout; the parsers look for lines, not their order).
fn run_teed(command: &mut Command) -> Result<String> {
    eprintln!("xtask: running {}", crate::describe(command));
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", crate::describe(command)))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let echo_stdout = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("{line}");
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut text = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            text.push_str(&line);
            text.push('\n');
        }
    }
    text.push_str(&echo_stdout.join().unwrap_or_default());
    child.wait().context("waiting for the tests")?;
    Ok(text)
}

/// Reads nextest's final `Summary [...] N tests run: P passed, F failed, ...` line and the
/// names of the failing tests.
fn parse_nextest(output: &str) -> Counts {
    let Some(summary) = output
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("Summary [") && l.contains(" run: "))
    else {
        let tail: Vec<&str> = output.lines().rev().take(5).collect();
        return Counts {
            error: Some(format!(
                "no nextest summary (build failure?): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )),
            ..Counts::default()
        };
    };
    let mut counts = Counts::default();
    let stats = summary.split(" run: ").nth(1).unwrap_or_default();
    for item in stats.split(',') {
        let mut words = item.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        match what {
            "passed" => counts.passed += n,
            "failed" | "timed" => counts.failed += n,
            _ => {}
        }
    }
    // `        FAIL [   1.234s] ( 3/30) codex-bridge-tests::cli_e2e some_test`
    let mut failing = BTreeSet::new();
    for line in output.lines() {
        let line = line.trim_start();
        if (line.starts_with("FAIL [") || line.starts_with("TIMEOUT ["))
            && let Some(name) = line.split_whitespace().last()
        {
            failing.insert(name.to_owned());
        }
    }
    counts.failing = failing.into_iter().collect();
    counts
}

/// Sums the `test result: ... P passed; F failed; ...` lines of `cargo test`.
fn parse_cargo_test(output: &str) -> Counts {
    let mut counts = Counts::default();
    let mut found = false;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("test result: ") {
            found = true;
            for item in rest.split(';') {
                let words: Vec<&str> = item.split_whitespace().collect();
                let n = words
                    .iter()
                    .rev()
                    .nth(1)
                    .and_then(|n| n.parse::<u32>().ok());
                match (n, words.last()) {
                    (Some(n), Some(&"passed")) => counts.passed += n,
                    (Some(n), Some(&"failed")) => counts.failed += n,
                    _ => {}
                }
            }
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            counts.failing.push(name.to_owned());
        }
    }
    if !found {
        counts.error = Some("no `test result:` line (build failure?)".to_owned());
    }
    counts
}

/// The results table, then the failing tests of each cell.
fn render(suites: &[&Suite], rows: &[(String, Vec<Counts>)]) -> String {
    let mut header = vec!["codex".to_owned()];
    header.extend(suites.iter().map(|s| s.name.to_owned()));
    header.push("supported".to_owned());
    let mut lines = vec![header];
    for (version, cells) in rows {
        let mut line = vec![version.clone()];
        line.extend(cells.iter().map(Counts::cell));
        line.push(if supported(version) { "yes" } else { "no" }.to_owned());
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    for (version, cells) in rows {
        for (suite, counts) in suites.iter().zip(cells) {
            if let Some(e) = &counts.error {
                let _ = writeln!(out, "codex {version} {}: {e}", suite.name);
            }
            for name in &counts.failing {
                let _ = writeln!(out, "codex {version} {}: FAILED {name}", suite.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_versions_are_in_range_and_ordered() {
        let parsed: Vec<_> = DEFAULT_VERSIONS
            .iter()
            .map(|v| numeric(v).unwrap())
            .collect();
        assert!(
            parsed.windows(2).all(|w| w[0] < w[1]),
            "{DEFAULT_VERSIONS:?}"
        );
        assert!(DEFAULT_VERSIONS.iter().all(|v| supported(v)));
        assert_eq!(DEFAULT_VERSIONS.last(), Some(&crate::PINNED_CODEX_VERSION));
        assert!(!supported("0.1.0"));
        assert!(!supported("9.0.0"));
        assert_eq!(numeric("0.170.0-alpha.2"), Some((0, 170, 0)));
        assert_eq!(numeric("0.169"), None);
        assert_eq!(numeric("latest"), None);
    }

    #[test]
    fn filter_selects_the_parts() {
        let parts: Vec<&Part> = CLI.parts.iter().chain(ASP.parts).collect();
        let expr = filter_expression(&parts, &[("a_test", "why")]);
        assert!(expr.starts_with("((package(codex-bridge-tests) & binary(cli_e2e))"));
        assert!(expr.contains("binary(harness) & not test(app_server))"));
        assert!(expr.contains("binary(harness) & test(app_server))"));
        assert!(expr.ends_with(") & not test(=a_test)"));
        let args = target_args(&parts);
        assert_eq!(args.iter().filter(|a| *a == "-p").count(), 4);
        assert_eq!(args.iter().filter(|a| *a == "--test").count(), 9);
    }

    #[test]
    fn parses_nextest_summaries() {
        let out = "\
        PASS [   0.5s] (1/3) codex-bridge-tests::cli_e2e a
        FAIL [   1.2s] (2/3) codex-bridge-tests::cli_e2e b
     TIMEOUT [  60.0s] (3/3) codex-asp::transport c
------------
     Summary [  62.0s] 3 tests run: 1 passed, 1 failed, 1 timed out, 4 skipped
        FAIL [   1.2s] (2/3) codex-bridge-tests::cli_e2e b
";
        let c = parse_nextest(out);
        assert_eq!((c.passed, c.failed), (1, 2));
        assert_eq!(c.failing, ["b", "c"]);
        assert!(!c.ok());
        let c =
            parse_nextest("     Summary [   9.0s] 30 tests run: 30 passed (2 slow), 5 skipped\n");
        assert_eq!((c.passed, c.failed), (30, 0));
        assert!(c.ok());
        let c = parse_nextest("error: could not compile `x`\n");
        assert!(c.error.is_some() && !c.ok());
    }

    #[test]
    fn parses_cargo_test_results() {
        let out = "\
test a ... ok
test b ... FAILED
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 3 filtered out; finished in 1.00s
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
";
        let c = parse_cargo_test(out);
        assert_eq!((c.passed, c.failed), (5, 1));
        assert_eq!(c.failing, ["b"]);
    }

    #[test]
    fn table_lists_every_version_and_failure() {
        let rows = vec![
            (
                "0.169.0".to_owned(),
                vec![Counts {
                    passed: 3,
                    ..Counts::default()
                }],
            ),
            (
                "0.1.0".to_owned(),
                vec![Counts {
                    passed: 1,
                    failed: 1,
                    failing: vec!["t".into()],
                    error: None,
                }],
            ),
        ];
        let text = render(&[&CLI], &rows);
        assert!(
            text.contains("| 0.169.0 | 3 passed, 0 failed | yes       |"),
            "{text}"
        );
        assert!(
            text.contains("| 0.1.0   | 1 passed, 1 failed | no        |"),
            "{text}"
        );
        assert!(text.contains("codex 0.1.0 cli: FAILED t"), "{text}");
    }
}
