//! [`CliBackend`]: runs each turn as one `codex exec --json` process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codex_core::backend::DEFAULT_EVENT_CAPACITY;
use codex_core::process::{CodexProcess, Stdio};
use codex_core::{
    AuthContext, AuthMode, Backend, BackendKind, CancelHandle, CodexBinary, Run, RunSink,
    ServiceTier, TaskSpec, ThreadId,
};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::ChildStdin;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::args::{ArgFiles, ThreadMode, build_args};
use crate::decode::{DEFAULT_MAX_LINE_BYTES, JsonlFraming};
use crate::error::Error;

/// How long to keep reading after codex exited while something else still holds its stdout.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long codex may take to exit (and close its output) once its turn ended; then its
/// process tree is killed and the outcome reported. The real codex exits within a fraction
/// of a second; this bounds one that does not.
const EXIT_AFTER_TURN: Duration = Duration::from_secs(3);
/// How long codex may take to exit once its stdout ended before the turn did; then its
/// process tree is killed and the run fails ([`codex_core::Error::ProcessExited`]).
const EXIT_AFTER_EOF: Duration = Duration::from_secs(2);
/// How long `codex login --with-api-key` may take.
const LOGIN_LIMIT: Duration = Duration::from_secs(60);

/// The name of the output-schema file in a run's temp directory.
const SCHEMA_FILE: &str = "output-schema.json";
/// The name of the last-message file in a run's temp directory.
const LAST_MESSAGE_FILE: &str = "last-message.txt";

/// Runs codex turns as one-shot `codex exec --json` processes.
///
/// Every turn is a fresh process (`codex exec` for [`Backend::start`], `codex exec resume
/// ID` for [`Backend::resume`]; codex re-reads the thread's history from `CODEX_HOME`). The
/// process runs in its own process group; timeout, cancellation and dropping the [`Run`] kill
/// its whole process tree ([`codex_core::process`]), so no codex and no command it started
/// outlives the run. When codex reports the end of its turn (`turn.completed` /
/// `turn.failed`) but does not exit, it gets a short grace to exit, then its tree is killed
/// and the outcome reported: the outcome never waits for the timeout.
///
/// Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> codex_core::Result<()> {
/// use codex_cli_backend::CliBackend;
/// use codex_core::{Backend, Preset, TaskSpec};
/// let backend = CliBackend::discover().await?;
/// let outcome = backend
///     .run(TaskSpec::new("add a README").cwd("/work/repo").preset(Preset::FullAuto))
///     .await?;
/// println!("{}", outcome.final_message.unwrap_or_default());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CliBackend {
    inner: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    binary: CodexBinary,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    event_capacity: usize,
    default_timeout: Option<Duration>,
    max_line_bytes: usize,
    temp_dir: Option<PathBuf>,
}

/// Builds a [`CliBackend`]; start with [`CliBackend::builder`].
#[derive(Debug, Clone)]
pub struct CliBackendBuilder {
    binary: Option<CodexBinary>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    event_capacity: usize,
    default_timeout: Option<Duration>,
    max_line_bytes: usize,
    temp_dir: Option<PathBuf>,
}

impl Default for CliBackendBuilder {
    fn default() -> Self {
        CliBackendBuilder {
            binary: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            default_timeout: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            temp_dir: None,
        }
    }
}

impl CliBackendBuilder {
    /// The codex to run (required): [`CodexBinary::discover`] or [`CodexBinary::probe`].
    pub fn binary(mut self, binary: CodexBinary) -> Self {
        self.binary = Some(binary);
        self
    }

    /// Sets an environment variable for every codex process (e.g. `CODEX_HOME`). Also used
    /// by [`CliBackend::auth_mode`]. A task's own [`TaskSpec::env`] wins over these.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Removes an inherited environment variable from every codex process (e.g.
    /// `OPENAI_API_KEY`).
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// The capacity of each run's event queue (default
    /// [`DEFAULT_EVENT_CAPACITY`]). A full queue slows codex's output down; nothing is lost.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// The timeout of tasks that set none ([`TaskSpec::timeout`] wins). Default: none. Note
    /// that `codex exec` retries forever when the model provider is unreachable.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// The longest line of codex output accepted (default 16 MiB); longer lines become an
    /// [`codex_core::Event::Undecodable`] and are skipped without being buffered.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes.max(1);
        self
    }

    /// Where each run's temporary directory (output schema, last message) is created.
    /// Default: the system temp dir. The directory is removed when the run ends, however it
    /// ends.
    pub fn temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = Some(dir.into());
        self
    }

    /// Builds the backend.
    ///
    /// # Errors
    /// [`Error::NoBinary`] (as a [`codex_core::Error::Backend`]) when no binary was given.
    pub fn build(self) -> codex_core::Result<CliBackend> {
        let binary = self.binary.ok_or(Error::NoBinary)?;
        Ok(CliBackend {
            inner: Arc::new(Settings {
                binary,
                env: self.env,
                env_remove: self.env_remove,
                event_capacity: self.event_capacity,
                default_timeout: self.default_timeout,
                max_line_bytes: self.max_line_bytes,
                temp_dir: self.temp_dir,
            }),
        })
    }
}

impl CliBackend {
    /// A builder.
    pub fn builder() -> CliBackendBuilder {
        CliBackendBuilder::default()
    }

    /// A backend with default settings for `binary`.
    pub fn new(binary: CodexBinary) -> Self {
        CliBackend {
            inner: Arc::new(Settings {
                binary,
                env: Vec::new(),
                env_remove: Vec::new(),
                event_capacity: DEFAULT_EVENT_CAPACITY,
                default_timeout: None,
                max_line_bytes: DEFAULT_MAX_LINE_BYTES,
                temp_dir: None,
            }),
        }
    }

    /// Finds codex (`$CODEX_BIN`, else `codex` on `PATH`), probes it and builds a backend
    /// with default settings.
    ///
    /// # Errors
    /// [`codex_core::Error::NotFound`] (whose message says `npm install -g @openai/codex`),
    /// or a probe error.
    pub async fn discover() -> codex_core::Result<Self> {
        Ok(CliBackend::new(CodexBinary::discover().await?))
    }

    /// Probes the codex at `path` and builds a backend with default settings.
    ///
    /// # Errors
    /// [`codex_core::Error::NotFound`] when there is no such program, or a probe error.
    pub async fn from_path(path: impl Into<PathBuf>) -> codex_core::Result<Self> {
        Ok(CliBackend::new(CodexBinary::probe(path).await?))
    }

    /// The codex this backend runs.
    pub fn binary(&self) -> &CodexBinary {
        &self.inner.binary
    }

    /// The arguments (after the program name) a run of `spec` on a new thread would get,
    /// built from this codex's probed flags; for logs and dry runs. Temporary files (output
    /// schema, last message) are left out.
    ///
    /// # Errors
    /// [`Error::UnsupportedFlag`] when the task needs a flag this codex lacks,
    /// [`Error::NullConfigValue`] / [`Error::BadConfigOverride`] for overrides that have no
    /// TOML form.
    pub fn args_for(&self, spec: &TaskSpec) -> Result<Vec<OsString>, Error> {
        self.args_with(spec, &ThreadMode::New, &ArgFiles::none())
    }

    fn args_with(
        &self,
        spec: &TaskSpec,
        mode: &ThreadMode,
        files: &ArgFiles,
    ) -> Result<Vec<OsString>, Error> {
        build_args(self.inner.binary.capabilities(), spec, mode, files)
    }

    /// How codex runs of this backend authenticate ([`CodexBinary::auth`] with this
    /// backend's environment): [`AuthMode::OtherProvider`] when the configured model provider
    /// needs no OpenAI sign-in, else what `codex login status` says (an API key that is only
    /// in the environment does not count).
    ///
    /// # Errors
    /// When codex cannot be run or `codex login status` prints something unrecognised.
    pub async fn auth_mode(&self) -> codex_core::Result<AuthMode> {
        self.inner.binary.auth(&self.auth_context(None)).await
    }

    /// The auth context of a run of `spec` (or of no particular task): this backend's
    /// environment, then the task's environment and config overrides.
    fn auth_context(&self, spec: Option<&TaskSpec>) -> AuthContext {
        let mut ctx = match spec {
            Some(spec) => AuthContext::for_spec(spec),
            None => AuthContext::new(),
        };
        let task_env = std::mem::take(&mut ctx.env);
        ctx.env_remove = self.inner.env_remove.clone();
        ctx.env = self.inner.env.clone();
        ctx.env.extend(task_env);
        ctx
    }

    /// Stores an OpenAI API key for codex: runs `codex login --with-api-key` with the key on
    /// stdin (never on the command line, where other users could read it).
    ///
    /// # Errors
    /// [`codex_core::Error::InvalidSpec`] for an empty or multi-line key;
    /// [`codex_core::Error::ProcessExited`] (with codex's stderr) when codex refuses it.
    pub async fn login_with_api_key(&self, key: &str) -> codex_core::Result<()> {
        let key = key.trim();
        if key.is_empty() || key.contains(['\n', '\r']) {
            return Err(codex_core::Error::InvalidSpec {
                field: "api_key",
                reason: "the API key must be one non-empty line".into(),
            });
        }
        let mut cmd = self
            .inner
            .binary
            .command(["login", "--with-api-key"])
            .stdin(Stdio::Piped);
        cmd = self.apply_env(cmd, &Default::default());
        let mut proc = cmd.spawn()?;
        let stdin = proc.take_stdin();
        let mut stdout = proc.take_stdout();
        let feed = async {
            if let Some(mut stdin) = stdin {
                let mut line = key.as_bytes().to_vec();
                line.push(b'\n');
                if let Err(e) = stdin.write_all(&line).await {
                    tracing::debug!("writing the API key to codex login: {e}");
                }
                let _ = stdin.shutdown().await;
            }
        };
        let drain = async {
            let mut sink = Vec::new();
            if let Some(out) = stdout.as_mut() {
                let _ = out.read_to_end(&mut sink).await;
            }
        };
        let finished = tokio::time::timeout(LOGIN_LIMIT, async {
            tokio::join!(feed, drain);
            proc.wait().await
        })
        .await;
        match finished {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(_)) => Err(proc
                .exited_error("while storing the API key (`codex login --with-api-key`)")
                .await),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                proc.kill_tree();
                Err(codex_core::Error::CommandTimeout {
                    program: proc.program().to_owned(),
                    what: "login --with-api-key".into(),
                    after: LOGIN_LIMIT,
                })
            }
        }
    }

    fn apply_env(
        &self,
        mut cmd: codex_core::process::CodexCommand,
        spec_env: &std::collections::BTreeMap<String, String>,
    ) -> codex_core::process::CodexCommand {
        for key in &self.inner.env_remove {
            cmd = cmd.env_remove(key);
        }
        for (k, v) in &self.inner.env {
            cmd = cmd.env(k, v);
        }
        for (k, v) in spec_env {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    async fn launch(&self, spec: TaskSpec, mode: ThreadMode) -> codex_core::Result<Run> {
        spec.validate()?;
        let spec = absolutize(spec)?;
        if spec.service_tier == Some(ServiceTier::Fast) {
            // only a certain "no" is refused; a detection that fails decides nothing
            match self
                .inner
                .binary
                .auth(&self.auth_context(Some(&spec)))
                .await
            {
                Ok(auth) => spec.check_auth(&auth)?,
                Err(e) => tracing::warn!("could not tell how codex signs in: {e}"),
            }
        }

        let tmp = match &self.inner.temp_dir {
            Some(parent) => tempfile::Builder::new()
                .prefix("codex-exec-")
                .tempdir_in(parent),
            None => tempfile::Builder::new().prefix("codex-exec-").tempdir(),
        }
        .map_err(|source| Error::TempFile {
            what: "run directory",
            path: self.inner.temp_dir.clone().unwrap_or_default(),
            source,
        })?;
        let mut files = ArgFiles::none().last_message(tmp.path().join(LAST_MESSAGE_FILE));
        if let Some(schema) = &spec.output_schema {
            let path = tmp.path().join(SCHEMA_FILE);
            let text = serde_json::to_vec_pretty(schema).map_err(|e| Error::TempFile {
                what: "output schema",
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            tokio::fs::write(&path, text)
                .await
                .map_err(|source| Error::TempFile {
                    what: "output schema",
                    path: path.clone(),
                    source,
                })?;
            files = files.output_schema(path);
        }
        let args = self.args_with(&spec, &mode, &files)?;

        let mut cmd = self.inner.binary.command(args).stdin(Stdio::Piped);
        if let Some(cwd) = &spec.cwd {
            cmd = cmd.current_dir(cwd);
        }
        cmd = self.apply_env(cmd, &spec.env);
        tracing::debug!(
            program = %cmd.program().display(),
            args = ?cmd.get_args(),
            cwd = ?spec.cwd,
            "starting codex exec"
        );
        let mut proc = cmd.spawn()?;
        tracing::debug!(pid = ?proc.pid(), "codex exec started");
        let stdin = proc.take_stdin();
        let Some(stdout) = proc.take_stdout() else {
            return Err(codex_core::Error::backend(
                BackendKind::Exec,
                "codex was started without a stdout pipe",
            ));
        };

        let (sink, run) = Run::channel(BackendKind::Exec, self.inner.event_capacity);
        let driver = Driver {
            cancel: sink.cancel_handle(),
            sink,
            proc,
            timeout: spec.timeout.or(self.inner.default_timeout),
            last_message: files.last_message,
            max_line_bytes: self.inner.max_line_bytes,
            tmp: Some(tmp),
        };
        tokio::spawn(driver.drive(stdin, stdout, spec.full_prompt()));
        Ok(run)
    }
}

/// Makes the spec's paths absolute (against the current directory), so that codex, whose
/// working directory is the task's, reads the same files.
fn absolutize(mut spec: TaskSpec) -> Result<TaskSpec, Error> {
    let abs = |p: &Path| -> Result<PathBuf, Error> {
        std::path::absolute(p).map_err(|source| Error::Path {
            path: p.to_owned(),
            source,
        })
    };
    if let Some(cwd) = &spec.cwd {
        spec.cwd = Some(abs(cwd)?);
    }
    for dir in &mut spec.writable_dirs {
        *dir = abs(dir)?;
    }
    for image in &mut spec.images {
        *image = abs(image)?;
    }
    Ok(spec)
}

#[async_trait::async_trait]
impl Backend for CliBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Exec
    }

    async fn start(&self, spec: TaskSpec) -> codex_core::Result<Run> {
        self.launch(spec, ThreadMode::New).await
    }

    async fn resume(&self, thread_id: &ThreadId, spec: TaskSpec) -> codex_core::Result<Run> {
        if thread_id.as_str().trim().is_empty() || thread_id.as_str().starts_with('-') {
            return Err(codex_core::Error::InvalidSpec {
                field: "thread_id",
                reason: format!("{:?} is not a thread id", thread_id.as_str()),
            });
        }
        self.launch(spec, ThreadMode::Resume(thread_id.clone()))
            .await
    }
}

/// Why the reading loop stopped.
enum Stop {
    /// Stdout ended (or stayed open too long after codex exited).
    Eof,
    /// The caller cancelled or dropped the run.
    Cancelled,
    /// The timeout fired.
    Timeout(Duration),
}

/// Owns one running `codex exec` until its run is finished.
struct Driver {
    sink: RunSink,
    cancel: CancelHandle,
    proc: CodexProcess,
    timeout: Option<Duration>,
    last_message: Option<PathBuf>,
    max_line_bytes: usize,
    /// Removed before the outcome is reported, after codex is gone.
    tmp: Option<tempfile::TempDir>,
}

impl Driver {
    async fn drive(
        mut self,
        stdin: Option<ChildStdin>,
        stdout: tokio::process::ChildStdout,
        prompt: String,
    ) {
        let feeder = tokio::spawn(feed_prompt(stdin, prompt));
        // saturating: `Instant + Duration` panics on overflow (a timeout of u64::MAX seconds)
        let deadline = self.timeout.map(codex_core::util::deadline);
        let mut frames = FramedRead::new(stdout, JsonlFraming::new(self.max_line_bytes));
        let mut drain_until: Option<Instant> = None;
        // when the terminal event arrived: the end of codex's grace to exit
        let mut wind_down: Option<Instant> = None;
        let mut exited = false;

        let stop = loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break Stop::Cancelled,
                _ = codex_core::util::sleep_until(deadline) => break Stop::Timeout(self.timeout.unwrap_or_default()),
                frame = frames.next() => match frame {
                    Some(Ok(frame)) => {
                        let Some(event) = frame.into_event() else { continue };
                        if let codex_core::Event::Undecodable { reason, .. } = &event {
                            tracing::debug!("undecodable codex output: {reason}");
                        }
                        // emitting waits while the caller's queue is full: stay cancellable
                        tokio::select! {
                            biased;
                            _ = self.cancel.cancelled() => break Stop::Cancelled,
                            _ = codex_core::util::sleep_until(deadline) => break Stop::Timeout(self.timeout.unwrap_or_default()),
                            _ = self.sink.emit(event) => {}
                        }
                        if self.sink.saw_terminal() && wind_down.is_none() {
                            // the outcome is known: codex gets a short grace to finish
                            let at = Instant::now() + EXIT_AFTER_TURN;
                            wind_down = Some(at);
                            drain_until = Some(drain_until.map_or(at, |d| d.min(at)));
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!("reading codex output: {e}");
                        break Stop::Eof;
                    }
                    None => break Stop::Eof,
                },
                status = self.proc.wait(), if !exited => {
                    tracing::debug!(?status, "codex exec exited; draining its output");
                    exited = true;
                    let at = Instant::now() + DRAIN_AFTER_EXIT;
                    drain_until = Some(drain_until.map_or(at, |d| d.min(at)));
                }
                _ = codex_core::util::sleep_until(drain_until) => {
                    tracing::debug!("codex exited but its stdout stayed open; stopping");
                    break Stop::Eof;
                }
            }
        };
        feeder.abort();

        match stop {
            // a turn that already ended is not undone by a late cancel or timeout
            Stop::Cancelled | Stop::Timeout(_) if self.sink.saw_terminal() => {
                self.kill().await;
                self.finish_ended().await;
            }
            Stop::Cancelled => {
                tracing::debug!("run cancelled: killing the codex process group");
                self.kill().await;
                self.remove_temp_files();
                let thread_id = self.sink.thread_id().cloned();
                self.sink.fail(codex_core::Error::Cancelled { thread_id });
            }
            Stop::Timeout(after) => {
                tracing::debug!(?after, "run timed out: killing the codex process group");
                self.kill().await;
                self.remove_temp_files();
                let thread_id = self.sink.thread_id().cloned();
                self.sink
                    .fail(codex_core::Error::Timeout { after, thread_id });
            }
            Stop::Eof if self.sink.saw_terminal() => {
                let grace = wind_down
                    .unwrap_or_else(|| Instant::now() + EXIT_AFTER_TURN)
                    .saturating_duration_since(Instant::now());
                self.wind_down(grace).await;
                self.finish_ended().await;
            }
            Stop::Eof => {
                // stdout ended before the turn did: codex is exiting, or it closed its output
                // and lingers (then only a timeout, if there is one, would end the run)
                let waited = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => Some(Stop::Cancelled),
                    _ = codex_core::util::sleep_until(deadline) => Some(Stop::Timeout(self.timeout.unwrap_or_default())),
                    _ = self.proc.wait() => None,
                    () = tokio::time::sleep(EXIT_AFTER_EOF) => Some(Stop::Eof),
                };
                let thread_id = self.sink.thread_id().cloned();
                match waited {
                    Some(Stop::Timeout(after)) => {
                        self.kill().await;
                        self.remove_temp_files();
                        self.sink
                            .fail(codex_core::Error::Timeout { after, thread_id });
                    }
                    Some(Stop::Eof) => {
                        tracing::debug!(
                            "codex closed its output before the turn ended but did not exit; killing its process tree"
                        );
                        self.kill().await;
                        let err = self
                            .proc
                            .exited_error(format!(
                                "after it closed its output before the turn ended (no turn.completed or turn.failed) and did not exit within {EXIT_AFTER_EOF:?}"
                            ))
                            .await;
                        self.remove_temp_files();
                        self.sink.fail(err);
                    }
                    Some(_) => {
                        self.kill().await;
                        self.remove_temp_files();
                        self.sink.fail(codex_core::Error::Cancelled { thread_id });
                    }
                    None => {
                        let err = self
                            .proc
                            .exited_error(
                                "before the turn ended (no turn.completed or turn.failed)",
                            )
                            .await;
                        self.kill().await;
                        self.remove_temp_files();
                        self.sink.fail(err);
                    }
                }
            }
        }
    }

    /// Finishes a run whose terminal event was seen, with the `-o` file as the final
    /// message when codex emitted no agent message.
    async fn finish_ended(mut self) {
        if let Some(path) = &self.last_message
            && let Ok(text) = tokio::fs::read_to_string(path).await
            && !text.is_empty()
        {
            // codex writes the message exactly, without a trailing newline
            self.sink.final_message_fallback(text);
        }
        self.proc.kill_tree();
        self.remove_temp_files();
        self.sink.finish(|| {
            codex_core::Error::backend(BackendKind::Exec, "the turn ended without an outcome")
        });
    }

    /// Gives codex (whose turn ended) at most `grace` to exit, cancellable, then kills its
    /// whole tree and reaps it (bounded).
    async fn wind_down(&mut self, grace: Duration) {
        let cancel = self.cancel.clone();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => self.kill().await,
            _ = self.proc.wind_down(grace) => {}
        }
    }

    /// Removes the run's temporary directory (before the outcome is reported, so a caller
    /// who got the outcome finds nothing left).
    fn remove_temp_files(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let path = tmp.path().to_owned();
            if let Err(e) = tmp.close() {
                tracing::warn!("removing {}: {e}", path.display());
            }
        }
    }

    /// Kills codex's whole process tree and reaps the leader (bounded).
    async fn kill(&mut self) {
        let _ = self.proc.wind_down(Duration::ZERO).await;
    }
}

async fn feed_prompt(stdin: Option<ChildStdin>, prompt: String) {
    let Some(mut stdin) = stdin else { return };
    if let Err(e) = stdin.write_all(prompt.as_bytes()).await {
        tracing::debug!("writing the prompt to codex: {e}");
        return;
    }
    if let Err(e) = stdin.shutdown().await {
        tracing::debug!("closing codex's stdin: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Instant as StdInstant;

    use codex_core::{Capabilities, CodexVersion, Error as CoreError, Event};
    use serde_json::json;

    use super::*;

    /// The option lines of `codex exec --help` 0.169.0 that the backend uses.
    const HELP: &str = "
  -c, --config <key=value>
  -i, --image <FILE>...
  -m, --model <MODEL>
  -s, --sandbox <SANDBOX_MODE>
  -C, --cd <DIR>
      --add-dir <DIR>
      --skip-git-repo-check
      --ephemeral
      --output-schema <FILE>
      --json
  -o, --output-last-message <FILE>
";

    /// A fake codex: a shell script with `body`, described by the 0.169.0 capabilities.
    fn script(dir: &Path, name: &str, body: &str) -> CodexBinary {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        CodexBinary::from_parts(
            path,
            CodexVersion::new(0, 169, 0),
            Capabilities::from_help(HELP, HELP),
        )
    }

    /// Shell that finds the value of `--flag` in "$@" as $found.
    fn find_flag(flag: &str) -> String {
        format!(
            r#"found=""; prev=""; for a in "$@"; do [ "$prev" = "{flag}" ] && found="$a"; prev="$a"; done"#
        )
    }

    fn backend(binary: CodexBinary, tmp: &Path) -> CliBackendBuilder {
        CliBackend::builder()
            .binary(binary)
            .temp_dir(tmp)
            .default_timeout(Duration::from_secs(20))
    }

    fn is_gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.contains(") Z"),
        }
    }

    async fn wait_gone(pid: u32) -> bool {
        for _ in 0..200 {
            if is_gone(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn last_message_file_is_the_fallback_final_message() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let body = format!(
            r#"{}
cat > /dev/null
echo '{{"type":"thread.started","thread_id":"t-o"}}'
printf 'from the file' > "$found"
echo '{{"type":"turn.completed"}}'"#,
            find_flag("--output-last-message")
        );
        let b = backend(script(dir.path(), "codex", &body), tmp.path())
            .build()
            .unwrap();
        let outcome = b.run(TaskSpec::new("hi")).await.unwrap();
        assert_eq!(outcome.final_message.as_deref(), Some("from the file"));
        assert_eq!(outcome.thread_id.as_str(), "t-o");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn the_prompt_goes_on_stdin_and_the_schema_into_a_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let copy = dir.path().join("schema-copy.json");
        let body = format!(
            r#"{}
cp "$found" '{}'
prompt=$(cat)
echo '{{"type":"thread.started","thread_id":"t-s"}}'
printf '{{"type":"item.completed","item":{{"id":"i0","type":"agent_message","text":"%s|%s"}}}}\n' "$prompt" "$found"
echo '{{"type":"turn.completed"}}'"#,
            find_flag("--output-schema"),
            copy.display()
        );
        let b = backend(script(dir.path(), "codex", &body), tmp.path())
            .build()
            .unwrap();
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let outcome = b
            .run(TaskSpec::new("the prompt").output_schema(schema.clone()))
            .await
            .unwrap();
        let text = outcome.final_message.unwrap();
        let (prompt, schema_path) = text.split_once('|').unwrap();
        assert_eq!(prompt, "the prompt");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&copy).unwrap()).unwrap();
        assert_eq!(written, schema);
        assert!(
            !Path::new(schema_path).exists(),
            "{schema_path} was left behind"
        );
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    /// Found by `cargo xtask fuzz` (companion arguments): a timeout of u64::MAX seconds
    /// overflowed `Instant + Duration`, a panic.
    #[tokio::test]
    async fn a_huge_timeout_is_no_panic() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let body = r#"cat > /dev/null
echo '{"type":"thread.started","thread_id":"t-h"}'
echo '{"type":"turn.completed"}'"#;
        let b = backend(script(dir.path(), "codex", body), tmp.path())
            .build()
            .unwrap();
        let outcome = b
            .run(TaskSpec::new("hi").timeout(Duration::from_secs(u64::MAX)))
            .await
            .unwrap();
        assert_eq!(outcome.thread_id.as_str(), "t-h");
    }

    #[tokio::test]
    async fn timeout_kills_even_when_nobody_reads_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // many events, then sleep: the queue (capacity 1) fills and nobody reads it
        let body = format!(
            r#"echo $$ > '{}'
echo '{{"type":"thread.started","thread_id":"t-t"}}'
i=0; while [ $i -lt 200 ]; do echo '{{"type":"error","message":"Reconnecting..."}}'; i=$((i+1)); done
exec sleep 30"#,
            pid_file.display()
        );
        let b = backend(script(dir.path(), "codex", &body), tmp.path())
            .event_capacity(1)
            .build()
            .unwrap();
        let started = StdInstant::now();
        let mut run = b
            .start(TaskSpec::new("x").timeout(Duration::from_millis(500)))
            .await
            .unwrap();
        let mut pid = None;
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && let Ok(p) = text.trim().parse::<u32>()
            {
                pid = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pid = pid.expect("the script started");
        assert!(wait_gone(pid).await, "codex {pid} survived its timeout");
        let err = run.outcome().await.unwrap_err();
        assert!(
            matches!(&err, CoreError::Timeout { thread_id: Some(t), .. } if t.as_str() == "t-t"),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(8));
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn cancel_while_blocked_on_a_full_queue() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let body = r#"echo '{"type":"thread.started","thread_id":"t-c"}'
i=0; while [ $i -lt 200 ]; do echo '{"type":"turn.started"}'; i=$((i+1)); done
exec sleep 30"#;
        let b = backend(script(dir.path(), "codex", body), tmp.path())
            .event_capacity(1)
            .build()
            .unwrap();
        let mut run = b.start(TaskSpec::new("x")).await.unwrap();
        assert!(matches!(
            run.next_event().await,
            Some(Event::ThreadStarted { .. })
        ));
        run.cancel();
        let err = tokio::time::timeout(Duration::from_secs(10), run.outcome())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, CoreError::Cancelled { thread_id: Some(t) } if t.as_str() == "t-c"),
            "{err:?}"
        );
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn exit_while_a_grandchild_holds_stdout_open() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let body = r#"sleep 60 &
echo "background $!" >&2
echo '{"type":"thread.started","thread_id":"t-g"}'
exit 0"#;
        let b = backend(script(dir.path(), "codex", body), tmp.path())
            .build()
            .unwrap();
        let started = StdInstant::now();
        let err = b.run(TaskSpec::new("x")).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let CoreError::ProcessExited {
            status,
            stderr_tail,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(status.code(), Some(0));
        let pid: u32 = stderr_tail
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{stderr_tail:?}"));
        assert!(wait_gone(pid).await, "the background sleep {pid} survived");
    }

    #[tokio::test]
    async fn a_codex_that_closes_its_output_mid_turn_and_lingers_is_killed_without_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // the turn starts, then codex closes its stdout and neither exits nor ends the turn
        let body = format!(
            r#"cat > /dev/null
echo $$ >> '{pids}'
echo '{{"type":"thread.started","thread_id":"t-c"}}'
echo '{{"type":"turn.started"}}'
exec 1>&-
echo 'closed my output' >&2
exec sleep 300"#,
            pids = pids.display()
        );
        // no timeout at all: only noticing the end of stdout can end this run
        let b = CliBackend::builder()
            .binary(script(dir.path(), "codex", &body))
            .temp_dir(tmp.path())
            .build()
            .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(60), b.run(TaskSpec::new("x")))
            .await
            .expect("the run ended without a timeout")
            .unwrap_err();
        match &err {
            CoreError::ProcessExited {
                status,
                stderr_tail,
                context,
            } => {
                assert_eq!(*status, codex_core::ExitSummary::Signal(9), "{err}");
                assert!(stderr_tail.contains("closed my output"), "{err}");
                assert!(context.contains("closed its output"), "{err}");
            }
            other => panic!("expected ProcessExited, got {other:?}"),
        }
        for pid in std::fs::read_to_string(&pids).unwrap().lines() {
            let pid: u32 = pid.trim().parse().unwrap();
            assert!(wait_gone(pid).await, "{pid} survived");
        }
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_codex_that_does_not_exit_after_its_turn_is_wound_down_without_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        for terminal in [
            r#"{"type":"turn.completed"}"#,
            r#"{"type":"turn.failed","error":{"message":"model exploded"}}"#,
        ] {
            let pids = dir.path().join("pids");
            let _ = std::fs::remove_file(&pids);
            // the turn ends, then codex neither exits nor closes stdout, and a child of its
            // own (in a session of its own) keeps running
            let body = format!(
                r#"cat > /dev/null
setsid sleep 300 > /dev/null 2>&1 &
echo $! >> '{pids}'
echo $$ >> '{pids}'
echo '{{"type":"thread.started","thread_id":"t-w"}}'
echo '{{"type":"item.completed","item":{{"id":"i0","type":"agent_message","text":"done"}}}}'
echo '{terminal}'
exec sleep 300"#,
                pids = pids.display()
            );
            // no timeout at all: only the wind-down can end this run
            let b = CliBackend::builder()
                .binary(script(dir.path(), "codex", &body))
                .temp_dir(tmp.path())
                .build()
                .unwrap();
            let started = StdInstant::now();
            let outcome = tokio::time::timeout(Duration::from_secs(60), b.run(TaskSpec::new("x")))
                .await
                .expect("the outcome came without a timeout");
            if terminal.contains("completed") {
                let outcome = outcome.unwrap();
                assert_eq!(outcome.final_message.as_deref(), Some("done"));
            } else {
                let err = outcome.unwrap_err();
                assert!(
                    matches!(&err, CoreError::TurnFailed { message, .. } if message == "model exploded"),
                    "{err:?}"
                );
            }
            assert!(started.elapsed() < Duration::from_secs(30));
            for pid in std::fs::read_to_string(&pids).unwrap().lines() {
                let pid: u32 = pid.trim().parse().unwrap();
                assert!(wait_gone(pid).await, "{pid} survived the wind-down");
            }
            assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        }
    }

    #[tokio::test]
    async fn turn_failed_is_the_outcome_even_with_a_non_zero_exit() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let body = r#"cat > /dev/null
echo '{"type":"thread.started","thread_id":"t-f"}'
echo 'Reconnecting... not JSON'
echo '{"type":"error","message":"Reconnecting... 1/5"}'
echo '{"type":"turn.failed","error":{"message":"model exploded"}}'
exit 1"#;
        let b = backend(script(dir.path(), "codex", body), tmp.path())
            .build()
            .unwrap();
        let err = b.run(TaskSpec::new("x")).await.unwrap_err();
        assert!(
            matches!(&err, CoreError::TurnFailed { message, thread_id: Some(_), .. } if message == "model exploded"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn builder_needs_a_binary_and_resume_a_real_id() {
        let err = CliBackend::builder().build().unwrap_err();
        assert!(
            matches!(Error::from_core(&err), Some(Error::NoBinary)),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let b = CliBackend::new(script(dir.path(), "codex", "exit 0"));
        assert_eq!(b.kind(), BackendKind::Exec);
        let err = b
            .resume(&ThreadId::from("--last"), TaskSpec::new("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::InvalidSpec {
                    field: "thread_id",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
