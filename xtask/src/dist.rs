//! `cargo xtask dist`: build `codex-companion` and `codex-broker` in release mode and put them
//! side by side in one folder (default `target/dist/`), where the companion finds the broker
//! (it looks next to its own executable first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cargo, describe, workspace_root};

/// The binaries of a distribution: (package, binary).
pub const BINARIES: [(&str, &str); 2] = [
    ("codex-agent", "codex-companion"),
    ("codex-broker", "codex-broker"),
];

/// The cargo target folder: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The `cargo build` command line of a distribution.
fn build_command() -> Command {
    let mut command = cargo();
    command.args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
    ]);
    for (package, _) in BINARIES {
        command.args(["-p", package]);
    }
    for (_, bin) in BINARIES {
        command.args(["--bin", bin]);
    }
    command
}

/// The executables cargo reported building, by binary name, from its JSON messages.
fn executables(messages: &str) -> Vec<(String, PathBuf)> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_owned();
            let exe = m["executable"].as_str()?;
            Some((name, PathBuf::from(exe)))
        })
        .collect()
}

/// Builds the binaries and copies them into `out` (default `<target>/dist`); prints their
/// paths.
pub fn run(out: Option<PathBuf>) -> Result<()> {
    let out = out.unwrap_or_else(|| target_dir().join("dist"));
    let mut command = build_command();
    eprintln!("xtask: running {}", describe(&command));
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", describe(&command)))?;
    if !output.status.success() {
        bail!("{} failed: {}", describe(&command), output.status);
    }
    let built = executables(&String::from_utf8_lossy(&output.stdout));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for (_, bin) in BINARIES {
        let from = built
            .iter()
            .find(|(name, _)| name == bin)
            .map(|(_, path)| path.clone())
            .unwrap_or_else(|| target_dir().join("release").join(bin));
        if !from.is_file() {
            bail!(
                "cargo did not build {} ({} is missing)",
                bin,
                from.display()
            );
        }
        let to = out.join(bin);
        copy_replacing(&from, &to)?;
        println!("{}", to.display());
    }
    eprintln!(
        "xtask: codex-companion and codex-broker are in {}",
        out.display()
    );
    Ok(())
}

/// Copies `from` to `to`, replacing `to` through a temporary file (a running copy of the old
/// binary keeps working).
fn copy_replacing(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_selects_both_binaries_in_release() {
        let line = describe(&build_command());
        assert!(line.contains("build --release"), "{line}");
        for (package, bin) in BINARIES {
            assert!(line.contains(&format!("-p {package}")), "{line}");
            assert!(line.contains(&format!("--bin {bin}")), "{line}");
        }
    }

    #[test]
    fn executables_come_from_compiler_artifacts() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"codex-broker"},"executable":"/t/release/codex-broker"}
{"reason":"compiler-artifact","target":{"name":"codex_core"},"executable":null}
{"reason":"build-finished","success":true}
not json"#;
        assert_eq!(
            executables(messages),
            [(
                "codex-broker".to_owned(),
                PathBuf::from("/t/release/codex-broker")
            )]
        );
    }
}
