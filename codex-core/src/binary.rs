//! Finding codex, reading its version, and knowing which flags it accepts.
//!
//! Flags come and go between codex versions (`codex exec --full-auto` exists in older CLIs and
//! is rejected by 0.169.0). Rather than guessing from version numbers, [`CodexBinary::probe`]
//! reads `codex exec --help` and `codex exec resume --help` once and remembers the flags each
//! accepts; backends build arguments from these [`Capabilities`].

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{AuthContext, AuthMode};
use crate::error::{Error, Result};
use crate::process::{CodexCommand, Stdio};

/// The environment variable that names the codex binary to use.
pub const CODEX_BIN_ENV: &str = "CODEX_BIN";

/// The newest codex version whose behaviour this crate knows (the pinned version the tests
/// run). A codex whose `--version` cannot be read is assumed to behave like this one.
pub const NEWEST_KNOWN_VERSION: &str = "0.171.0";

/// What `codex --version` said: a version (`codex-cli 0.169.0` → 0.169.0), or, for output
/// the parser does not know (`codex-cli test`, a development build `0.0.0-dev`, a wrapper
/// script printing nothing), an *unknown* version.
///
/// An unknown version is not an error: codex is assumed to behave like the newest known
/// version ([`CodexVersion::behaves_as`]), and the flags used are still the ones its `--help`
/// lists ([`Capabilities`]). It displays as `unknown (<what codex printed>)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CodexVersion {
    version: semver::Version,
    /// `Some(output)` when the version is unknown.
    unknown: Option<String>,
}

impl CodexVersion {
    /// Parses the output of `codex --version`; `None` when it names no version (see
    /// [`CodexVersion::from_version_output`] for the lenient form).
    pub fn parse_version_output(output: &str) -> Option<CodexVersion> {
        output
            .split_whitespace()
            .filter_map(|word| semver::Version::parse(word.trim_start_matches('v')).ok())
            .next()
            .map(|version| CodexVersion {
                version,
                unknown: None,
            })
    }

    /// Reads the output of `codex --version`, never failing: a version, or an unknown version
    /// when the output names none or names `0.0.0` (a development build).
    pub fn from_version_output(output: &str) -> CodexVersion {
        match CodexVersion::parse_version_output(output) {
            Some(v) if !is_dev_build(&v.version) => v,
            _ => CodexVersion::unknown(output),
        }
    }

    /// An unknown version; `output` is what codex printed (kept, trimmed and bounded, for
    /// messages).
    pub fn unknown(output: &str) -> CodexVersion {
        let mut text: String = output.trim().chars().take(200).collect();
        if text.contains(['\n', '\r']) {
            text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        CodexVersion {
            version: newest_known(),
            unknown: Some(text),
        }
    }

    /// Builds a version from its parts.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        CodexVersion {
            version: semver::Version::new(major, minor, patch),
            unknown: None,
        }
    }

    /// The newest version whose behaviour is known ([`NEWEST_KNOWN_VERSION`]).
    pub fn newest_known() -> Self {
        CodexVersion {
            version: newest_known(),
            unknown: None,
        }
    }

    /// Whether `codex --version` named a version.
    pub fn is_known(&self) -> bool {
        self.unknown.is_none()
    }

    /// The version, when known.
    pub fn semver(&self) -> Option<&semver::Version> {
        self.is_known().then_some(&self.version)
    }

    /// The version whose behaviour to assume: this one, or the newest known one when this
    /// one is unknown.
    pub fn behaves_as(&self) -> &semver::Version {
        &self.version
    }

    /// What `codex --version` printed, when the version is unknown.
    pub fn unknown_output(&self) -> Option<&str> {
        self.unknown.as_deref()
    }
}

fn newest_known() -> semver::Version {
    semver::Version::parse(NEWEST_KNOWN_VERSION).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
}

/// `0.0.0` (with any pre-release or build tag) is what development builds print.
fn is_dev_build(v: &semver::Version) -> bool {
    v.major == 0 && v.minor == 0 && v.patch == 0
}

impl fmt::Display for CodexVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.unknown {
            None => self.version.fmt(f),
            Some(out) if out.is_empty() => f.write_str("unknown (no output)"),
            Some(out) => write!(f, "unknown ({out})"),
        }
    }
}

/// Which command-line flags an installed codex accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    exec: BTreeSet<String>,
    resume: BTreeSet<String>,
}

impl Capabilities {
    /// Builds capabilities from the help texts of `codex exec` and `codex exec resume`.
    pub fn from_help(exec_help: &str, resume_help: &str) -> Self {
        Capabilities {
            exec: parse_flags(exec_help),
            resume: parse_flags(resume_help),
        }
    }

    /// Whether `codex exec` accepts `flag` (written with its dashes, e.g. `--full-auto`).
    pub fn exec_accepts(&self, flag: &str) -> bool {
        self.exec.contains(flag)
    }

    /// Whether `codex exec resume` accepts `flag`.
    pub fn resume_accepts(&self, flag: &str) -> bool {
        self.resume.contains(flag)
    }

    /// Every flag `codex exec` accepts.
    pub fn exec_flags(&self) -> impl Iterator<Item = &str> {
        self.exec.iter().map(String::as_str)
    }

    /// Every flag `codex exec resume` accepts.
    pub fn resume_flags(&self) -> impl Iterator<Item = &str> {
        self.resume.iter().map(String::as_str)
    }
}

/// Collects every `--long` and `-s` flag that starts an option line of a clap help text.
fn parse_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        for word in line.split([' ', ',', '=', '[', '<']) {
            if word.starts_with('-') && word.len() > 1 && word != "--" {
                flags.insert(word.to_owned());
            }
        }
    }
    flags
}

/// How [`CodexBinary::probe_with`] runs its probe commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeOptions {
    /// How long each probe command (`--version`, `exec --help`, `exec resume --help`) may
    /// take before its process tree is killed and the probe fails with
    /// [`Error::CommandTimeout`]. Default [`ProbeOptions::DEFAULT_DEADLINE`].
    pub deadline: Duration,
}

impl ProbeOptions {
    /// The default deadline of one probe command: 30 s (the npm launcher answers in about
    /// 100 ms; a cold start on a loaded machine may take a few seconds).
    pub const DEFAULT_DEADLINE: Duration = crate::process::DEFAULT_OUTPUT_TIMEOUT;

    /// Sets the deadline of each probe command.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            deadline: Self::DEFAULT_DEADLINE,
        }
    }
}

/// An installed codex: where it is, its version and what it accepts.
///
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct CodexBinary {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    version: CodexVersion,
    capabilities: Capabilities,
}

impl CodexBinary {
    /// Finds the codex program without running it: `explicit` if given, else `$CODEX_BIN`,
    /// else `codex` on `PATH`.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
        if let Some(path) = explicit {
            return check_exists(path, "the explicit path");
        }
        if let Some(env) = std::env::var_os(CODEX_BIN_ENV).filter(|v| !v.is_empty()) {
            return check_exists(Path::new(&env), "CODEX_BIN");
        }
        which::which("codex").map_err(|_| Error::NotFound {
            looked_at: "PATH".into(),
        })
    }

    /// Finds codex ([`CodexBinary::locate`] with no explicit path) and probes it.
    pub async fn discover() -> Result<CodexBinary> {
        let path = Self::locate(None)?;
        Self::probe(path).await
    }

    /// Probes the codex at `path`: its version, and the flags of `exec` and `exec resume`.
    ///
    /// A `--version` output the parser does not know is no error: the version is
    /// [unknown](CodexVersion::is_known) (a warning is logged once per program), codex is
    /// assumed to behave like the newest known version, and the flags still come from its
    /// `--help`.
    ///
    /// Each probe command gets the default [`ProbeOptions`] deadline (30 s).
    ///
    /// # Errors
    /// [`Error::NotFound`] / [`Error::Spawn`] when it cannot be run,
    /// [`Error::CommandTimeout`] when a probe command hangs (its process tree is killed).
    pub async fn probe(path: impl Into<PathBuf>) -> Result<CodexBinary> {
        Self::probe_with(path, ProbeOptions::default()).await
    }

    /// [`CodexBinary::probe`] with explicit options (the deadline of each probe command).
    ///
    /// # Errors
    /// As [`CodexBinary::probe`].
    pub async fn probe_with(
        path: impl Into<PathBuf>,
        options: ProbeOptions,
    ) -> Result<CodexBinary> {
        let path = path.into();
        let run_quick = |args: &'static [&'static str]| run_quick(&path, args, options.deadline);
        let version_out = run_quick(&["--version"]).await?;
        let version = CodexVersion::from_version_output(&version_out.stdout);
        warn_if_unknown(&path, &version);
        let (exec_help, resume_help) = tokio::join!(
            run_quick(&["exec", "--help"]),
            run_quick(&["exec", "resume", "--help"])
        );
        let capabilities = Capabilities::from_help(&exec_help?.stdout, &resume_help?.stdout);
        Ok(CodexBinary {
            inner: Arc::new(Inner {
                path,
                version,
                capabilities,
            }),
        })
    }

    /// Like [`CodexBinary::discover`], through the on-disk probe cache
    /// ([`CodexBinary::probe_cached`]).
    pub async fn discover_cached() -> Result<CodexBinary> {
        let path = Self::locate(None)?;
        Self::probe_cached(path).await
    }

    /// Like [`CodexBinary::probe`], but remembers the answer on disk so that short-lived
    /// programs (one `codex-companion` invocation, one script run) do not pay three codex
    /// start-ups (about 100 ms each through the npm launcher) every time.
    ///
    /// The cache lives under the job-store root (`$CODEX_BRIDGE_STATE_DIR`, else the platform
    /// state directory) in `probe-cache/`, one small JSON file per binary, keyed by the
    /// binary's canonical path, size and modification time: reinstalling or upgrading codex
    /// changes the key. Any problem with the cache (unwritable, corrupt) falls back to a
    /// fresh probe; the cache is never a reason to fail.
    pub async fn probe_cached(path: impl Into<PathBuf>) -> Result<CodexBinary> {
        let path = path.into();
        let Some(entry) = cache_file(&path) else {
            return Self::probe(path).await;
        };
        if let Some(cached) = read_cache(&entry) {
            let binary = cached.into_binary(path);
            warn_if_unknown(binary.path(), binary.version());
            return Ok(binary);
        }
        let binary = Self::probe(path).await?;
        write_cache(&entry, &CachedProbe::of(&binary));
        Ok(binary)
    }

    /// Builds a binary description without probing (for tests and for callers that already
    /// know the facts).
    pub fn from_parts(path: PathBuf, version: CodexVersion, capabilities: Capabilities) -> Self {
        CodexBinary {
            inner: Arc::new(Inner {
                path,
                version,
                capabilities,
            }),
        }
    }

    /// The program path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The version.
    pub fn version(&self) -> &CodexVersion {
        &self.inner.version
    }

    /// The flags it accepts.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// A command line for this codex, ready to be given arguments and launched.
    pub fn command<I, S>(&self, args: I) -> CodexCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        CodexCommand::new(self.path()).args(args)
    }

    /// How a codex run in `ctx` will authenticate: the one auth detection of every entry
    /// point.
    ///
    /// When the model provider `ctx` selects needs no OpenAI sign-in (see
    /// [`AuthContext::model_provider`]) the answer is [`AuthMode::OtherProvider`], without
    /// asking codex; otherwise it is what `codex login status` says (run with `ctx`'s
    /// environment). [`AuthMode::None`] is no reason to refuse a run: codex may take a key
    /// from its environment or refresh an expired session itself (see [`crate::auth`]).
    ///
    /// # Errors
    /// When `codex login status` cannot be run or prints something unrecognised
    /// ([`Error::LoginStatus`]).
    pub async fn auth(&self, ctx: &AuthContext) -> Result<AuthMode> {
        if let Some(provider) = ctx.model_provider()
            && !provider.requires_openai_auth
        {
            return Ok(AuthMode::OtherProvider { name: provider.id });
        }
        self.login_status(ctx).await
    }

    /// [`CodexBinary::auth`] of a run with this process's environment plus `env` (pass
    /// `CODEX_HOME` there to ask about a particular home) and no overrides.
    ///
    /// # Errors
    /// As [`CodexBinary::auth`].
    pub async fn auth_mode(&self, env: &[(String, String)]) -> Result<AuthMode> {
        self.auth(&AuthContext::new().envs(env.iter().cloned()))
            .await
    }

    /// What `codex login status` (run with `ctx`'s environment) says about the stored
    /// credentials, whatever the model provider. An API key that is only in the environment
    /// does not count.
    ///
    /// # Errors
    /// When codex cannot be run or prints something unrecognised ([`Error::LoginStatus`]).
    pub async fn login_status(&self, ctx: &AuthContext) -> Result<AuthMode> {
        let mut cmd = self.command(["login", "status"]).stdin(Stdio::Null);
        for k in &ctx.env_remove {
            cmd = cmd.env_remove(k);
        }
        for (k, v) in &ctx.env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.output().await?;
        let text = format!("{}\n{}", out.stdout, out.stderr);
        AuthMode::from_login_status(&text, out.status.code()).ok_or_else(|| Error::LoginStatus {
            program: self.path().to_owned(),
            detail: format!("unrecognised output {:?} ({})", text.trim(), out.status),
        })
    }
}

/// What the probe cache keeps of one binary.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedProbe {
    /// The semantic version; ignored when `unknown_version` is set.
    version: String,
    /// What `--version` printed when it named no version we know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unknown_version: Option<String>,
    exec: BTreeSet<String>,
    resume: BTreeSet<String>,
}

impl CachedProbe {
    fn of(binary: &CodexBinary) -> Self {
        let caps = binary.capabilities();
        let version = binary.version();
        CachedProbe {
            version: version.behaves_as().to_string(),
            unknown_version: version.unknown_output().map(str::to_owned),
            exec: caps.exec.clone(),
            resume: caps.resume.clone(),
        }
    }

    fn into_binary(self, path: PathBuf) -> CodexBinary {
        let version = match &self.unknown_version {
            Some(output) => CodexVersion::unknown(output),
            None => CodexVersion::parse_version_output(&self.version)
                .unwrap_or_else(|| CodexVersion::unknown(&self.version)),
        };
        let capabilities = Capabilities {
            exec: self.exec,
            resume: self.resume,
        };
        CodexBinary::from_parts(path, version, capabilities)
    }
}

/// The cache file for `path`: `<state root>/probe-cache/<fnv of canonical path, size, mtime>.json`.
fn cache_file(path: &Path) -> Option<PathBuf> {
    cache_file_in(&crate::paths::state_root().ok()?, path)
}

fn cache_file_in(root: &Path, path: &Path) -> Option<PathBuf> {
    let canonical = path.canonicalize().ok()?;
    let meta = std::fs::metadata(&canonical).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let key = format!(
        "{}\0{}\0{}.{}",
        canonical.display(),
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    );
    let hash = crate::util::fnv1a64(key.as_bytes());
    Some(root.join("probe-cache").join(format!("{hash:016x}.json")))
}

fn read_cache(file: &Path) -> Option<CachedProbe> {
    let bytes = std::fs::read(file).ok()?;
    let cached: CachedProbe = serde_json::from_slice(&bytes).ok()?;
    if cached.unknown_version.is_none() {
        semver::Version::parse(&cached.version).ok()?;
    }
    Some(cached)
}

fn write_cache(file: &Path, probe: &CachedProbe) {
    let write = || -> std::io::Result<()> {
        let dir = file
            .parent()
            .ok_or_else(|| std::io::Error::other("no parent"))?;
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, &serde_json::to_vec(probe)?)?;
        tmp.persist(file).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::debug!(
            "could not write the codex probe cache {}: {e}",
            file.display()
        );
    }
}

/// Logs (once per program and process) that `--version` named no version we know.
fn warn_if_unknown(path: &Path, version: &CodexVersion) {
    static WARNED: std::sync::Mutex<BTreeSet<PathBuf>> = std::sync::Mutex::new(BTreeSet::new());
    let Some(output) = version.unknown_output() else {
        return;
    };
    let first = WARNED
        .lock()
        .map(|mut seen| seen.insert(path.to_owned()))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            program = %path.display(),
            "`codex --version` printed {output:?}, which names no known codex version; assuming \
             the behaviour of codex {NEWEST_KNOWN_VERSION} (flags are still read from `--help`)"
        );
    }
}

fn check_exists(path: &Path, what: &str) -> Result<PathBuf> {
    if path.exists() {
        Ok(path.to_owned())
    } else {
        Err(Error::NotFound {
            looked_at: format!("{what} {}", path.display()),
        })
    }
}

async fn run_quick(
    path: &Path,
    args: &[&str],
    deadline: Duration,
) -> Result<crate::process::Output> {
    CodexCommand::new(path)
        .args(args.iter().copied())
        .stdin(Stdio::Null)
        .output_timeout(deadline)
        .output()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let v = CodexVersion::parse_version_output("codex-cli 0.169.0\n").unwrap();
        assert_eq!(v, CodexVersion::new(0, 169, 0));
        let v = CodexVersion::parse_version_output("codex-cli 0.170.0-alpha.2").unwrap();
        assert_eq!(v.semver().unwrap().pre.as_str(), "alpha.2");
        assert!(CodexVersion::parse_version_output("nothing here").is_none());
    }

    #[test]
    fn unknown_version_outputs_are_no_error() {
        let newest = semver::Version::parse(NEWEST_KNOWN_VERSION).unwrap();
        for output in [
            "codex-cli test\n",
            "codex-cli 0.0.0-dev\n",
            "",
            "  \n",
            "codex-cli 0.0.0",
        ] {
            let v = CodexVersion::from_version_output(output);
            assert!(!v.is_known(), "{output:?}");
            assert_eq!(v.semver(), None, "{output:?}");
            assert_eq!(v.behaves_as(), &newest, "{output:?}");
            assert!(v.to_string().starts_with("unknown ("), "{v}");
        }
        assert_eq!(
            CodexVersion::from_version_output("codex-cli test").to_string(),
            "unknown (codex-cli test)"
        );
        assert_eq!(
            CodexVersion::from_version_output("").to_string(),
            "unknown (no output)"
        );
        let known = CodexVersion::from_version_output("codex-cli 0.154.0\n");
        assert!(known.is_known());
        assert_eq!(known, CodexVersion::new(0, 154, 0));
        assert_eq!(known.to_string(), "0.154.0");
        // a long, multi-line output is kept bounded and on one line
        let long = format!("line one\n{}", "x".repeat(1000));
        let v = CodexVersion::from_version_output(&long);
        assert!(!v.unknown_output().unwrap().contains('\n'));
        assert!(v.unknown_output().unwrap().len() <= 200);
    }

    #[tokio::test]
    async fn a_binary_with_an_unknown_version_is_probed_and_cached() {
        let state = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("codex");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncase \"$1\" in --version) echo codex-cli test;; *) echo '      --json';; esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let probed = CodexBinary::probe(&fake).await.unwrap();
        assert!(!probed.version().is_known());
        assert_eq!(probed.version().unknown_output(), Some("codex-cli test"));
        assert!(probed.capabilities().exec_accepts("--json"));
        let file = cache_file_in(state.path(), &fake).unwrap();
        write_cache(&file, &CachedProbe::of(&probed));
        let cached = read_cache(&file).unwrap().into_binary(fake.clone());
        assert_eq!(cached.version(), probed.version());
        assert!(cached.capabilities().exec_accepts("--json"));
    }

    #[test]
    fn parses_help_flags() {
        let help = "Options:\n  -c, --config <key=value>\n          Override\n      --full-auto\n          Sugar\n  -s, --sandbox <SANDBOX_MODE>\n      --skip-git-repo-check\n  -o, --output-last-message <FILE>\n";
        let caps = Capabilities::from_help(help, "  -c, --config <key=value>\n      --last\n");
        for f in [
            "-c",
            "--config",
            "--full-auto",
            "-s",
            "--sandbox",
            "--skip-git-repo-check",
            "-o",
        ] {
            assert!(caps.exec_accepts(f), "{f}");
        }
        assert!(!caps.exec_accepts("--sandbox-mode"));
        assert!(caps.resume_accepts("--last"));
        assert!(!caps.resume_accepts("--sandbox"));
    }

    #[tokio::test]
    async fn probe_cache_answers_without_running_codex_and_follows_changes() {
        let state = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("codex");
        let script = |version: &str| {
            format!(
                "#!/bin/sh\ncase \"$1\" in --version) echo codex-cli {version};; *) echo '      --json';; esac\n"
            )
        };
        std::fs::write(&fake, script("0.1.0")).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let file = cache_file_in(state.path(), &fake).unwrap();
        assert!(file.starts_with(state.path()));
        let probed = CodexBinary::probe(&fake).await.unwrap();
        write_cache(&file, &CachedProbe::of(&probed));
        let cached = read_cache(&file).unwrap().into_binary(fake.clone());
        assert_eq!(cached.version(), &CodexVersion::new(0, 1, 0));
        assert!(cached.capabilities().exec_accepts("--json"));
        // a corrupt entry is ignored
        std::fs::write(&file, b"{oops").unwrap();
        assert!(read_cache(&file).is_none());
        // a reinstalled binary has another key
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&fake, script("0.2.0") + "\n").unwrap();
        let other = cache_file_in(state.path(), &fake).unwrap();
        assert_ne!(file, other);
    }

    #[tokio::test]
    async fn a_hanging_probe_times_out_typed_and_its_tree_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("codex");
        let pids = dir.path().join("pids");
        // answers --version, then hangs on `exec --help` with a child of its own
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\ncase \"$1\" in --version) echo codex-cli 0.1.0;; *) sleep 300 & echo $! >> '{}'; wait;; esac\n",
                pids.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let options = ProbeOptions::default().deadline(std::time::Duration::from_millis(1500));
        assert_eq!(options.deadline, std::time::Duration::from_millis(1500));
        let err = CodexBinary::probe_with(&fake, options).await.unwrap_err();
        let Error::CommandTimeout {
            program,
            what,
            after,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(program, &fake);
        assert!(
            what.starts_with("exec") && what.ends_with("--help"),
            "{what}"
        );
        assert_eq!(*after, std::time::Duration::from_millis(1500));
        let msg = err.to_string();
        assert!(msg.contains(&fake.display().to_string()), "{msg}");
        let recorded = std::fs::read_to_string(&pids).unwrap_or_default();
        assert!(
            !recorded.trim().is_empty(),
            "the hung probe never started its child"
        );
        for pid in recorded.lines() {
            let stat = format!("/proc/{}/stat", pid.trim());
            let mut gone = false;
            for _ in 0..250 {
                gone = std::fs::read_to_string(&stat).map_or(true, |s| {
                    s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))
                });
                if gone {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert!(gone, "the hung probe's child {pid} survived");
        }
    }

    #[test]
    fn locate_reports_what_it_tried() {
        let err = CodexBinary::locate(Some(Path::new("/no/such/codex"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("npm install -g @openai/codex"), "{msg}");
        assert!(msg.contains("/no/such/codex"), "{msg}");
    }
}
