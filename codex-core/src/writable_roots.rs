//! Writable roots: where Codex may write (its working directory and the extra writable
//! directories). Not the project root a job store is keyed by (`codex-agent`'s
//! `jobs::project_root`).
//!
//! With the `workspace-write` sandbox, commands Codex runs can write only inside its working
//! directory and the extra writable directories; anything else fails inside the sandbox, often
//! after the model spent a turn trying. The working fix is to run Codex *in* the target
//! workspace (set [`TaskSpec::cwd`](crate::TaskSpec::cwd)), or to add the directory as an extra
//! writable root ([`TaskSpec::writable_dir`](crate::TaskSpec::writable_dir), `--add-dir`).
//! [`check_writable`] says so before anything starts.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::spec::{SandboxMode, TaskSpec};

/// Normalises a path without touching the file system beyond canonicalising the longest
/// existing ancestor (so not-yet-created files can be checked).
pub(crate) fn normalize(path: &Path, base: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for comp in joined.components() {
        match comp {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    // canonicalise the longest existing prefix (resolves symlinks such as /tmp -> /private/tmp)
    let mut existing = out.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => rest.push(name.to_owned()),
            None => break,
        }
        if !existing.pop() {
            break;
        }
    }
    let mut canon = existing.canonicalize().unwrap_or(existing);
    for part in rest.into_iter().rev() {
        canon.push(part);
    }
    canon
}

/// Whether `path` is inside `root` (both normalised).
pub(crate) fn is_within(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// Checks that each of `targets` (absolute, or relative to the spec's working directory) is
/// writable under `spec`. A read-only sandbox allows no writes; `danger-full-access` allows
/// all. The error names the path and how to allow it.
pub fn check_writable(spec: &TaskSpec, targets: &[PathBuf]) -> Result<()> {
    let base = match &spec.cwd {
        Some(c) => c.clone(),
        None => {
            std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?
        }
    };
    match spec.sandbox {
        Some(SandboxMode::DangerFullAccess) => return Ok(()),
        Some(SandboxMode::ReadOnly) => {
            if let Some(first) = targets.first() {
                return Err(Error::InvalidSpec {
                    field: "sandbox",
                    reason: format!(
                        "{} would be written, but the sandbox is read-only; use the workspace-write sandbox (Preset::FullAuto, `--write`)",
                        first.display()
                    ),
                });
            }
            return Ok(());
        }
        _ => {}
    }
    let roots: Vec<PathBuf> = spec
        .writable_roots()
        .iter()
        .map(|r| normalize(r, &base))
        .collect();
    for target in targets {
        let t = normalize(target, &base);
        if !roots.iter().any(|r| is_within(&t, r)) {
            return Err(Error::OutsideWorkspace { path: t, roots });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Preset;

    #[test]
    fn inside_and_outside() {
        let ws = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let spec = TaskSpec::new("x").cwd(ws.path()).preset(Preset::FullAuto);
        check_writable(&spec, &[PathBuf::from("src/new.rs")]).unwrap();
        check_writable(&spec, &[ws.path().join("a/../b.txt")]).unwrap();
        let err = check_writable(&spec, &[other.path().join("x.txt")]).unwrap_err();
        assert!(matches!(err, Error::OutsideWorkspace { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("outside its workspace") && msg.contains("--add-dir"),
            "{msg}"
        );
        let err = check_writable(&spec, &[PathBuf::from("../escape.txt")]).unwrap_err();
        assert!(matches!(err, Error::OutsideWorkspace { .. }));

        let spec = spec.writable_dir(other.path());
        check_writable(&spec, &[other.path().join("x.txt")]).unwrap();
    }

    #[test]
    fn read_only_and_full_access() {
        let ws = tempfile::tempdir().unwrap();
        let spec = TaskSpec::new("x").cwd(ws.path()).preset(Preset::ReadOnly);
        let err = check_writable(&spec, &[PathBuf::from("a")]).unwrap_err();
        assert!(err.to_string().contains("read-only"));
        let spec = TaskSpec::new("x")
            .cwd(ws.path())
            .preset(Preset::DangerFullAccess);
        check_writable(&spec, &[PathBuf::from("/anywhere")]).unwrap();
    }
}
