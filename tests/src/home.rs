//! A private, offline `CODEX_HOME` pointed at a [`MockModel`], and throw-away workspaces.
//!
//! Facts about the real codex 0.169.0 that shaped these helpers:
//! - A `CODEX_HOME` under `/tmp` makes codex warn on stderr ("Refusing to create helper
//!   binaries under temporary dir"), so homes live under `<target>/codex-homes/`.
//! - A plain turn fills the home with `sessions/`, several SQLite files (`state_5.sqlite`,
//!   `logs_2.sqlite`, `memories_1.sqlite`, ...), `installation_id`, `skills/` and `tmp/`; it
//!   does not touch `~/.codex`.
//! - `codex login --with-api-key` reads the key from stdin and writes `auth.json` as
//!   `{"auth_mode":"apikey","OPENAI_API_KEY":"sk-..."}`; `codex login status` then prints
//!   "API key configured - sk-test-***56789" on stderr.
//! - Codex finds the git repository of its cwd by itself (it ignores
//!   `GIT_CEILING_DIRECTORIES`), so a folder under `target/` counts as inside the project's
//!   checkout: `--skip-git-repo-check` is then not needed. Use
//!   [`TempWorkspace::outside_git`] to get a folder outside any repository.
//!
//! Two kinds of home:
//! - [`CodexHome::new`] is the fast, clean home most tests use: codex's shell snapshot is
//!   off and `HOME` is left alone.
//! - [`CodexHome::realistic`] is what a developer's machine looks like: the shell snapshot
//!   is on (codex 0.169.0 runs it at the start of every thread, as `bash -lc` in a session of
//!   its own), `HOME` is a private folder whose login profile is slow and leaves a child
//!   process looping in the background (like `eval "$(pyenv init -)"` starting a `pyenv
//!   rehash`), and the provider needs no OpenAI login. Timeout, cancel, kill and auth tests
//!   run there: they check that no process of that tree survives (see
//!   [`crate::procs`]; every process of the tree carries `CODEX_HOME=<the home>` and
//!   `HOME=<the private HOME>`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::mock::MockModel;
use crate::pinned::{pinned_codex, target_dir};

/// Variables a test should remove from the environment it passes on to codex, so that the
/// developer's own settings cannot leak in (credentials, other homes, base URLs, sandbox
/// markers, and `RUST_BACKTRACE`/`RUST_LOG`, which add backtraces and logs to codex's stderr).
pub const ENV_TO_REMOVE: &[&str] = &[
    "OPENAI_API_KEY",
    "CODEX_API_KEY",
    "CODEX_ACCESS_TOKEN",
    "OPENAI_BASE_URL",
    "CODEX_SQLITE_HOME",
    "CODEX_SANDBOX",
    "CODEX_SANDBOX_NETWORK_DISABLED",
    "CODEX_EXEC_SERVER_URL",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// The login profile of the realistic home (`.bashrc`, `.profile` and `.bash_profile`): it
/// leaves a subshell looping in the background (for at most five minutes, so that a failing
/// test cannot leave it forever) and takes a second to finish, like a profile that runs
/// `eval "$(pyenv init -)"`.
pub const SLOW_PROFILE: &str = "\
# codex-bridge realistic test home: a slow login profile that leaves a child behind
( i=0; while [ \"$i\" -lt 600 ]; do sleep 0.5; i=$((i+1)); done ) &
sleep 1
";

fn fresh_dir(kind: &str) -> TempDir {
    let parent = target_dir().join(kind);
    std::fs::create_dir_all(&parent)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    tempfile::Builder::new()
        .prefix("t-")
        .tempdir_in(&parent)
        .unwrap_or_else(|e| panic!("cannot create a temp dir in {}: {e}", parent.display()))
}

/// A fresh `CODEX_HOME` whose `config.toml` sends codex to a mock provider. Removed on drop.
///
/// The builder methods rewrite `config.toml` at once.
#[derive(Debug)]
pub struct CodexHome {
    dir: TempDir,
    user_home: Option<TempDir>,
    shell_snapshot: bool,
    base_url: String,
    model: String,
    approval_policy: String,
    sandbox_mode: String,
    top_level: Vec<String>,
    extra: Vec<String>,
    requires_openai_auth: bool,
    env_key: Option<String>,
}

impl CodexHome {
    /// A home under `<target>/codex-homes/` pointed at `mock`.
    ///
    /// # Panics
    /// When the folder or `config.toml` cannot be written.
    pub fn new(mock: &MockModel) -> CodexHome {
        CodexHome::with_base_url(&mock.base_url())
    }

    /// A home pointed at any provider base URL (e.g. a closed port, for "unreachable" tests).
    ///
    /// # Panics
    /// When the folder or `config.toml` cannot be written.
    pub fn with_base_url(base_url: &str) -> CodexHome {
        let home = CodexHome {
            dir: fresh_dir("codex-homes"),
            user_home: None,
            shell_snapshot: false,
            base_url: base_url.to_owned(),
            model: "gpt-5.5".to_owned(),
            approval_policy: "never".to_owned(),
            sandbox_mode: "danger-full-access".to_owned(),
            top_level: Vec::new(),
            extra: Vec::new(),
            requires_openai_auth: false,
            env_key: None,
        };
        home.write_config();
        home
    }

    /// The realistic home (see the module docs) pointed at `mock`: shell snapshot on, a
    /// private `HOME` with a slow login profile that leaves a looping child behind
    /// ([`SLOW_PROFILE`]), `SHELL=/bin/bash`, and the mock provider without OpenAI login.
    ///
    /// # Panics
    /// When the folders or files cannot be written.
    pub fn realistic(mock: &MockModel) -> CodexHome {
        CodexHome::realistic_with_base_url(&mock.base_url())
    }

    /// [`CodexHome::realistic`] pointed at any provider base URL.
    ///
    /// # Panics
    /// When the folders or files cannot be written.
    pub fn realistic_with_base_url(base_url: &str) -> CodexHome {
        let user_home = fresh_dir("user-homes");
        for name in [".bashrc", ".profile", ".bash_profile"] {
            let path = user_home.path().join(name);
            std::fs::write(&path, SLOW_PROFILE)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        let mut home = CodexHome::with_base_url(base_url);
        home.user_home = Some(user_home);
        home.shell_snapshot = true;
        home.write_config();
        home
    }

    /// The private `HOME` of a [`CodexHome::realistic`] home (`None` for the clean home).
    pub fn user_home(&self) -> Option<&Path> {
        self.user_home.as_ref().map(TempDir::path)
    }

    /// Sets `approval_policy` ("never", "on-request", "untrusted", ...).
    pub fn approval_policy(mut self, policy: &str) -> CodexHome {
        self.approval_policy = policy.to_owned();
        self.write_config();
        self
    }

    /// Sets `sandbox_mode` ("read-only", "workspace-write", "danger-full-access").
    pub fn sandbox_mode(mut self, mode: &str) -> CodexHome {
        self.sandbox_mode = mode.to_owned();
        self.write_config();
        self
    }

    /// Sets the `model` slug (default "gpt-5.5", a model of codex's bundled catalog).
    pub fn model(mut self, model: &str) -> CodexHome {
        self.model = model.to_owned();
        self.write_config();
        self
    }

    /// Sets the mock provider's `requires_openai_auth` (default `false`: codex runs with no
    /// login at all and `codex login status` says "Not logged in"). With `true` and nothing
    /// stored, `codex login status` still says "Not logged in" and codex 0.169.0 still runs
    /// turns, sending no `authorization` header.
    pub fn requires_openai_auth(mut self, yes: bool) -> CodexHome {
        self.requires_openai_auth = yes;
        self.write_config();
        self
    }

    /// Sets the mock provider's `env_key`: codex sends `Authorization: Bearer $NAME`, and a
    /// turn fails with "Missing environment variable: `NAME`." when it is unset.
    pub fn env_key(mut self, name: &str) -> CodexHome {
        self.env_key = Some(name.to_owned());
        self.write_config();
        self
    }

    /// Adds a top-level `key = value` line (written before any table).
    pub fn config_line(mut self, line: &str) -> CodexHome {
        self.top_level.push(line.to_owned());
        self.write_config();
        self
    }

    /// Appends raw TOML at the end of the file (tables such as `[mcp_servers.x]` go here).
    pub fn extra_toml(mut self, toml: &str) -> CodexHome {
        self.extra.push(toml.to_owned());
        self.write_config();
        self
    }

    /// The home folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<home>/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    /// The current text of `config.toml`.
    pub fn config_toml(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("model = {}\n", toml_str(&self.model)));
        out.push_str("model_provider = \"mock\"\n");
        out.push_str(&format!(
            "approval_policy = {}\n",
            toml_str(&self.approval_policy)
        ));
        out.push_str(&format!(
            "sandbox_mode = {}\n",
            toml_str(&self.sandbox_mode)
        ));
        for line in &self.top_level {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("\n[analytics]\nenabled = false\n\n");
        // codex's shell snapshot runs `bash -lc` at thread start; a slow or blocked login
        // profile (seen here: pyenv's rehash lock) would stall every test turn, so the clean
        // home turns it off; the realistic home keeps it on, with a private HOME.
        out.push_str(&format!(
            "[features]\nshell_snapshot = {}\n\n",
            self.shell_snapshot
        ));
        out.push_str("[model_providers.mock]\n");
        out.push_str("name = \"Mock Responses\"\n");
        out.push_str(&format!("base_url = {}\n", toml_str(&self.base_url)));
        out.push_str("wire_api = \"responses\"\n");
        out.push_str("request_max_retries = 0\n");
        out.push_str("stream_max_retries = 0\n");
        out.push_str("supports_websockets = false\n");
        out.push_str(&format!(
            "requires_openai_auth = {}\n",
            self.requires_openai_auth
        ));
        if let Some(name) = &self.env_key {
            out.push_str(&format!("env_key = {}\n", toml_str(name)));
        }
        for block in &self.extra {
            out.push('\n');
            out.push_str(block);
            out.push('\n');
        }
        out
    }

    fn write_config(&self) {
        let path = self.config_path();
        std::fs::write(&path, self.config_toml())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// The variables to set for a codex child: `CODEX_HOME` and
    /// `CODEX_APP_SERVER_DISABLE_MANAGED_CONFIG=1` (and, for the realistic home, `HOME` and
    /// `SHELL=/bin/bash`). Remove [`ENV_TO_REMOVE`] as well.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "CODEX_HOME".to_owned(),
                self.path().to_string_lossy().into_owned(),
            ),
            (
                "CODEX_APP_SERVER_DISABLE_MANAGED_CONFIG".to_owned(),
                "1".to_owned(),
            ),
        ];
        if let Some(user_home) = self.user_home() {
            env.push(("HOME".to_owned(), user_home.to_string_lossy().into_owned()));
            env.push(("SHELL".to_owned(), "/bin/bash".to_owned()));
        }
        env
    }

    /// Applies [`CodexHome::env`] and removes [`ENV_TO_REMOVE`] on a `tokio` command.
    pub fn apply_env<'c>(
        &self,
        command: &'c mut tokio::process::Command,
    ) -> &'c mut tokio::process::Command {
        for key in ENV_TO_REMOVE {
            command.env_remove(key);
        }
        command.envs(self.env())
    }

    /// Applies [`CodexHome::env`] and removes [`ENV_TO_REMOVE`] on a `std` command.
    pub fn apply_env_std<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        for key in ENV_TO_REMOVE {
            command.env_remove(key);
        }
        command.envs(self.env())
    }

    /// Stores an API key the real way: runs the pinned `codex login --with-api-key` with the
    /// key on stdin (never in argv), which writes `auth.json`.
    ///
    /// # Errors
    /// When codex cannot be run or exits non-zero (the message carries its stderr).
    pub fn store_api_key(&self, key: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut command = Command::new(pinned_codex());
        self.apply_env_std(&mut command)
            .args(["login", "--with-api-key"])
            .current_dir(self.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(key.as_bytes())?;
            stdin.write_all(b"\n")?;
        }
        let output = child.wait_with_output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "codex login --with-api-key failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }

    /// The session rollout files (`sessions/**/*.jsonl`) written so far.
    pub fn session_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        collect_files(&self.path().join("sessions"), "jsonl", &mut out);
        out.sort();
        out
    }
}

fn collect_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A throw-away working directory for codex. Removed on drop.
#[derive(Debug)]
pub struct TempWorkspace {
    dir: TempDir,
}

impl Default for TempWorkspace {
    fn default() -> Self {
        TempWorkspace::new()
    }
}

impl TempWorkspace {
    /// An empty folder under `<target>/workspaces/`. Codex sees it as inside the project's
    /// own git checkout (see the module docs).
    ///
    /// # Panics
    /// When the folder cannot be created.
    pub fn new() -> TempWorkspace {
        TempWorkspace {
            dir: fresh_dir("workspaces"),
        }
    }

    /// An empty folder in the system temp dir, outside any git repository (codex refuses it
    /// without `--skip-git-repo-check`).
    ///
    /// # Panics
    /// When the folder cannot be created.
    pub fn outside_git() -> TempWorkspace {
        let dir = tempfile::Builder::new()
            .prefix("codex-bridge-ws-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        TempWorkspace { dir }
    }

    /// Makes the folder a git repository of its own with one commit holding `README.md`.
    ///
    /// # Panics
    /// When git fails.
    pub fn git_repo(self) -> TempWorkspace {
        let readme = self.path().join("README.md");
        std::fs::write(&readme, "# test workspace\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", readme.display()));
        self.git(&["init", "--quiet", "--initial-branch=main"]);
        self.git(&["add", "README.md"]);
        self.git(&[
            "-c",
            "user.name=codex-bridge tests",
            "-c",
            "user.email=tests@codex-bridge.invalid",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--quiet",
            "-m",
            "initial commit",
        ]);
        self
    }

    fn git(&self, args: &[&str]) {
        let output = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run git: {e}"));
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Writes a file (creating parent folders) and returns its path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Reads a file of the workspace, `None` if it does not exist or is not UTF-8.
    pub fn read(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.path().join(relative)).ok()
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
