//! Binaries of this workspace for the tests of other packages.
//!
//! `env!("CARGO_BIN_EXE_<name>")` only names the binaries of a test's own package. Tests of
//! another package (say, `codex-agent`'s tests that run `fake-codex`) build the binary they
//! need from this checkout with `cargo build` (a no-op when it is up to date) and find it in
//! the target folder next to their own binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds `bin` of `package` (`cargo build --quiet -p PACKAGE --bin BIN` on this workspace)
/// and returns its path in `dir`, the target folder the calling test's own binaries are in
/// (e.g. the parent of `env!("CARGO_BIN_EXE_codex-companion")`).
///
/// # Errors
/// When cargo fails or the binary is not in `dir` afterwards; the message has cargo's
/// stderr.
pub fn build_workspace_bin(package: &str, bin: &str, dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    let target = dir.join(bin);
    if !out.status.success() || !target.is_file() {
        return Err(format!(
            "cargo build -p {package} --bin {bin} failed ({}), or {} is missing: {}",
            out.status,
            target.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target)
}
