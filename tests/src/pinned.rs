//! Where the pinned real codex binary lives.
//!
//! `cargo xtask codex` installs `@openai/codex@PINNED` with npm under
//! `<workspace>/.tools/codex-PINNED/` (a git-ignored folder). The launcher there is a small
//! Node.js script that starts the native binary shipped in the optional package
//! `@openai/codex-linux-x64`.

use std::path::PathBuf;

/// The codex CLI version the whole test suite is pinned to: the one line of
/// `codex-version.txt` at the workspace root (xtask reads the same file).
pub const PINNED_CODEX_VERSION: &str = include_str!("../../codex-version.txt").trim_ascii();

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The cargo target folder: `CARGO_TARGET_DIR` if set (relative values are taken from the
/// workspace root), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// Where `cargo xtask codex` installs the pinned codex launcher.
pub fn pinned_install_path() -> PathBuf {
    workspace_root()
        .join(".tools")
        .join(format!("codex-{PINNED_CODEX_VERSION}"))
        .join("node_modules")
        .join(".bin")
        .join("codex")
}

/// The codex binary the tests run: `CODEX_BIN` if set, else the pinned install.
///
/// # Panics
/// When the binary does not exist, with the message "the pinned codex is not installed: run
/// `cargo xtask codex` (or set CODEX_BIN)". Tests never silently skip.
pub fn pinned_codex() -> PathBuf {
    resolve_codex(std::env::var_os("CODEX_BIN"))
}

/// [`pinned_codex`] with the value of `CODEX_BIN` given.
fn resolve_codex(codex_bin: Option<std::ffi::OsString>) -> PathBuf {
    let path = match codex_bin {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => pinned_install_path(),
    };
    if !path.exists() {
        panic!(
            "the pinned codex is not installed: run `cargo xtask codex` (or set CODEX_BIN); \
             looked for {}",
            path.display()
        );
    }
    path
}

/// The pinned codex ([`pinned_codex`]), probed once per test binary (version and flags).
///
/// Panics with the install instruction when it is missing, and with the probe's error when
/// it does not answer `--version` / `--help` as a codex should.
pub async fn pinned_binary() -> codex_core::CodexBinary {
    static PINNED: tokio::sync::OnceCell<codex_core::CodexBinary> =
        tokio::sync::OnceCell::const_new();
    PINNED
        .get_or_init(|| async {
            codex_core::CodexBinary::probe(pinned_codex())
                .await
                .unwrap_or_else(|e| panic!("probing the pinned codex: {e}"))
        })
        .await
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "the pinned codex is not installed: run `cargo xtask codex` (or set CODEX_BIN)"
    )]
    fn a_missing_binary_panics_with_the_install_hint() {
        resolve_codex(Some("/nonexistent/codex".into()));
    }

    #[test]
    fn codex_bin_wins_over_the_pinned_install() {
        let this = std::env::current_exe().unwrap();
        assert_eq!(resolve_codex(Some(this.clone().into_os_string())), this);
    }

    #[test]
    fn the_pinned_install_is_under_tools() {
        let path = pinned_install_path();
        assert!(path.starts_with(workspace_root().join(".tools")));
        assert!(path.ends_with(format!(
            "codex-{PINNED_CODEX_VERSION}/node_modules/.bin/codex"
        )));
        assert!(workspace_root().join("Cargo.toml").exists());
    }
}
