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

/// A shell script that answers `--version` with `output` (nothing at all when empty) and
/// runs the pinned codex for everything else: a codex whose version the parser does not know
/// (`codex-cli test`, a development build `codex-cli 0.0.0-dev`, a wrapper printing
/// nothing). It lives under `<target>/codex-wrappers/` and is removed on drop.
#[derive(Debug)]
pub struct VersionWrapper {
    dir: tempfile::TempDir,
}

impl VersionWrapper {
    /// Writes the wrapper.
    ///
    /// # Panics
    /// When the pinned codex is missing or the script cannot be written.
    pub fn new(output: &str) -> VersionWrapper {
        use std::os::unix::fs::PermissionsExt as _;
        let real = pinned_codex();
        let parent = target_dir().join("codex-wrappers");
        std::fs::create_dir_all(&parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        let dir = tempfile::Builder::new()
            .prefix("w-")
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("cannot create a dir in {}: {e}", parent.display()));
        let print = if output.is_empty() {
            String::new()
        } else {
            format!("printf '%s\\n' {}; ", sh_quote(output))
        };
        let script = format!(
            "#!/bin/sh\nif [ \"$1\" = --version ] || [ \"$1\" = -V ]; then {print}exit 0; fi\nexec {} \"$@\"\n",
            sh_quote(&real.to_string_lossy())
        );
        let path = dir.path().join("codex");
        std::fs::write(&path, script)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
        VersionWrapper { dir }
    }

    /// The script.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("codex")
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_known_version_is_the_pinned_one() {
        assert_eq!(
            codex_core::binary::NEWEST_KNOWN_VERSION,
            PINNED_CODEX_VERSION,
            "move NEWEST_KNOWN_VERSION in codex-core/src/binary.rs with the pin"
        );
    }

    #[test]
    fn a_version_wrapper_answers_version_and_runs_codex_otherwise() {
        let w = VersionWrapper::new("codex-cli it's a test");
        let out = std::process::Command::new(w.path())
            .arg("--version")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "codex-cli it's a test\n"
        );
        let out = std::process::Command::new(w.path())
            .args(["exec", "--help"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("--json"));
        let w = VersionWrapper::new("");
        let out = std::process::Command::new(w.path())
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.stdout.is_empty() && out.status.success());
    }

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
