//! Shared by codex-asp's real-binary tests: the pinned codex and an offline `CODEX_HOME`.

use std::path::{Path, PathBuf};

/// The pinned codex version: the one line of `codex-version.txt` at the workspace root.
const PINNED_VERSION: &str = include_str!("../../../codex-version.txt").trim_ascii();

/// Where `cargo xtask codex` installs the pinned codex.
fn pinned_install() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".tools")
        .join(format!("codex-{PINNED_VERSION}"))
        .join("node_modules/.bin/codex")
}

/// `CODEX_BIN`, else the pinned codex; fails (never skips) with the install instruction.
pub fn codex_bin() -> PathBuf {
    let path = std::env::var_os("CODEX_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(pinned_install);
    assert!(
        path.exists(),
        "codex not found at {}: run `cargo xtask codex` to install the pinned version",
        path.display()
    );
    path
}

/// Writes `home/config.toml` for an offline codex whose model provider sits on a closed
/// port of 127.0.0.1 (these tests never run a model turn).
pub fn write_offline_config(home: &Path) {
    std::fs::create_dir_all(home).expect("create CODEX_HOME");
    std::fs::write(
        home.join("config.toml"),
        r#"model = "gpt-5.5"
model_provider = "mock"
approval_policy = "never"
sandbox_mode = "danger-full-access"
[analytics]
enabled = false
[model_providers.mock]
name = "Mock Responses"
base_url = "http://127.0.0.1:9/v1"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
supports_websockets = false
requires_openai_auth = false
"#,
    )
    .expect("write config.toml");
}
