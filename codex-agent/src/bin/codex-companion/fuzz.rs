//! Fuzz target `companion-cli` (`cargo xtask fuzz --target companion-cli`): the command line
//! of `codex-companion`, parsed in-process (no process per case).
//!
//! Inputs: sequences of the real subcommands, flags (with and without `=value`) and values
//! (numbers at the edges of their range, enum values, odd strings, bytes that are not
//! UTF-8), and random words.
//! Properties: no panic; a parse either gives a command line that keeps the declared rules
//! (timeouts of at least one second, `--timeout-ms` only with `--wait`, at most one way to
//! continue a thread, a prompt from one place only), or a clap error whose exit status is 0
//! (help, version) or 2 (usage), and that renders.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;

use clap::Parser as _;
use codex_core::fuzzing::{self, odd_string};
use proptest::prelude::*;

use crate::cli::{Cli, Command};

const WORDS: &[&str] = &[
    "task",
    "review",
    "adversarial-review",
    "status",
    "result",
    "cancel",
    "setup",
    "worker",
    "help",
    "frobnicate",
    "--json",
    "--cwd",
    "--no-broker",
    "--background",
    "--write",
    "--resume-last",
    "--resume",
    "--fresh",
    "--model",
    "--effort",
    "--prompt-file",
    "--timeout",
    "--base",
    "--scope",
    "--all",
    "--wait",
    "--timeout-ms",
    "--help",
    "-h",
    "--version",
    "-V",
    "--",
    "-",
    "--json=true",
    "--no-broker=0",
    "--timeout=0",
    "--timeout=18446744073709551615",
    "--timeout-ms=18446744073709551616",
    "--effort=xhigh",
    "--scope=branch",
    "--cwd=",
    "--unknown",
    "-x",
    "0",
    "1",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "1e3",
    " 5",
    "none",
    "minimal",
    "low",
    "medium",
    "high",
    "xhigh",
    "auto",
    "working-tree",
    "branch",
    "job-00000000001-000001",
    "",
];

fn arg() -> BoxedStrategy<OsString> {
    prop_oneof![
        8 => prop::sample::select(WORDS).prop_map(OsString::from),
        2 => odd_string().prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec),
        1 => Just(OsString::from_vec(vec![b'-', b'-', 0xff])),
    ]
    .boxed()
}

fn check(cli: &Cli) -> Result<(), TestCaseError> {
    match &cli.command {
        Command::Task(t) => {
            prop_assert!(t.timeout.is_none_or(|s| s >= 1));
            let ways = [t.resume_last, t.resume.is_some(), t.fresh]
                .iter()
                .filter(|b| **b)
                .count();
            prop_assert!(ways <= 1, "more than one way to continue: {t:?}");
            prop_assert!(t.prompt.is_empty() || t.prompt_file.is_none());
        }
        Command::Review(r) => prop_assert!(r.timeout.is_none_or(|s| s >= 1)),
        Command::AdversarialReview(a) => prop_assert!(a.review.timeout.is_none_or(|s| s >= 1)),
        Command::Status(s) => prop_assert!(s.timeout_ms.is_none() || s.wait),
        Command::Result(_) | Command::Cancel(_) | Command::Setup | Command::Worker(_) => {}
    }
    Ok(())
}

#[test]
fn fuzz_companion_cli() {
    let strategy = prop::collection::vec(arg(), 0..10);
    fuzzing::run("companion-cli/parse", 1, strategy, |args| {
        let argv = std::iter::once(OsString::from("codex-companion")).chain(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => check(&cli)?,
            Err(e) => {
                let code = e.exit_code();
                prop_assert!(code == 0 || code == 2, "exit status {code} for {e}");
                prop_assert!(!e.render().to_string().is_empty());
            }
        }
        Ok(())
    });
}
