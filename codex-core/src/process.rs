//! Launching codex: the one place in codex-bridge that starts a codex process.
//!
//! Every process runs as the leader of its own process group, so that stopping it also stops
//! every command codex started. Dropping a [`CodexProcess`] kills the whole group. Stderr is
//! drained continuously into a bounded [`StderrTail`] (codex can be chatty; the pipe must never
//! fill up and block it), which errors quote.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use process_wrap::tokio::{KillOnDrop, ProcessGroup, TokioChildWrapper, TokioCommandWrap};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{ChildStdin, ChildStdout};

use crate::error::{Error, ExitSummary, Result};

/// How much of stderr a [`StderrTail`] keeps by default.
pub const DEFAULT_STDERR_TAIL_BYTES: usize = 8 * 1024;

/// What to connect to the child's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// A pipe; take it with [`CodexProcess::take_stdin`].
    Piped,
}

/// A codex command line, ready to launch.
#[derive(Debug, Clone)]
pub struct CodexCommand {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: BTreeMap<OsString, Option<OsString>>,
    stdin: Stdio,
    stderr_tail_bytes: usize,
}

impl CodexCommand {
    /// A command running `program` with no arguments.
    pub fn new(program: impl AsRef<Path>) -> Self {
        CodexCommand {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: BTreeMap::new(),
            stdin: Stdio::Null,
            stderr_tail_bytes: DEFAULT_STDERR_TAIL_BYTES,
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.insert(key.into(), Some(value.into()));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.insert(key.into(), None);
        self
    }

    /// Chooses stdin (default: null).
    pub fn stdin(mut self, stdin: Stdio) -> Self {
        self.stdin = stdin;
        self
    }

    /// How many bytes of stderr to keep (default [`DEFAULT_STDERR_TAIL_BYTES`]).
    pub fn stderr_tail_bytes(mut self, bytes: usize) -> Self {
        self.stderr_tail_bytes = bytes.max(256);
        self
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments, for logs and tests.
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// Starts the process in a new process group with stdout piped and stderr drained into a
    /// bounded tail.
    pub fn spawn(self) -> Result<CodexProcess> {
        let program = self.program.clone();
        let mut wrap = TokioCommandWrap::with_new(&self.program, |cmd| {
            cmd.args(&self.args);
            if let Some(dir) = &self.cwd {
                cmd.current_dir(dir);
            }
            for (k, v) in &self.env {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
            cmd.stdin(match self.stdin {
                Stdio::Null => std::process::Stdio::null(),
                Stdio::Piped => std::process::Stdio::piped(),
            });
            cmd.stdout(std::process::Stdio::piped());
            cmd.stderr(std::process::Stdio::piped());
        });
        wrap.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
        let mut child = wrap
            .spawn()
            .map_err(|source| spawn_error(&program, source))?;
        let tail = StderrTail::new(self.stderr_tail_bytes);
        if let Some(stderr) = child.stderr().take() {
            tokio::spawn(tail.clone().drain(stderr));
        }
        let pid = child.id();
        Ok(CodexProcess {
            child,
            program,
            pid,
            tail,
            exited: None,
        })
    }

    /// Runs to completion and collects stdout and stderr (for short probes like `--version`).
    pub async fn output(self) -> Result<Output> {
        let mut proc = self.spawn()?;
        let mut stdout = proc.take_stdout();
        let read = async {
            let mut buf = Vec::new();
            if let Some(out) = stdout.as_mut() {
                tokio::io::AsyncReadExt::read_to_end(out, &mut buf)
                    .await
                    .ok();
            }
            buf
        };
        let (buf, status) = tokio::join!(read, proc.wait());
        let status = status?;
        // give the stderr drain a moment to reach the end of the pipe
        tokio::task::yield_now().await;
        Ok(Output {
            status: ExitSummary::from_status(status),
            stdout: String::from_utf8_lossy(&buf).into_owned(),
            stderr: proc.tail.wait_closed(Duration::from_millis(500)).await,
        })
    }
}

fn spawn_error(program: &Path, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            looked_at: program.display().to_string(),
        }
    } else {
        Error::Spawn {
            program: program.to_owned(),
            source,
        }
    }
}

/// What a finished short command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it ended.
    pub status: ExitSummary,
    /// Stdout, lossily decoded.
    pub stdout: String,
    /// Stderr (the bounded tail), lossily decoded.
    pub stderr: String,
}

/// The last bytes a process wrote to stderr, shared between the drain task and readers.
#[derive(Debug, Clone)]
pub struct StderrTail {
    inner: Arc<Mutex<TailInner>>,
    closed: Arc<tokio::sync::Notify>,
}

#[derive(Debug)]
struct TailInner {
    buf: VecDeque<u8>,
    cap: usize,
    dropped: bool,
    done: bool,
}

impl StderrTail {
    /// An empty tail keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        StderrTail {
            inner: Arc::new(Mutex::new(TailInner {
                buf: VecDeque::with_capacity(cap.min(4096)),
                cap,
                dropped: false,
                done: false,
            })),
            closed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Appends bytes, dropping the oldest beyond the bound.
    pub fn push(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for &b in bytes {
            if inner.buf.len() == inner.cap {
                inner.buf.pop_front();
                inner.dropped = true;
            }
            inner.buf.push_back(b);
        }
    }

    /// The tail as text (lossy UTF-8), prefixed with `…` when older output was dropped.
    pub fn snapshot(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = inner.buf.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if inner.dropped {
            format!("…{text}")
        } else {
            text
        }
    }

    /// Waits (at most `limit`) until the stream reached its end, then snapshots.
    pub async fn wait_closed(&self, limit: Duration) -> String {
        let notified = self.closed.notified();
        let done = self.inner.lock().map(|i| i.done).unwrap_or(true);
        if !done {
            let _ = tokio::time::timeout(limit, notified).await;
        }
        self.snapshot()
    }

    async fn drain(self, stderr: impl AsyncRead + Unpin) {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    tracing::trace!(target: "codex_core::stderr", "{}", String::from_utf8_lossy(&line).trim_end());
                    self.push(&line);
                }
            }
        }
        if let Ok(mut inner) = self.inner.lock() {
            inner.done = true;
        }
        self.closed.notify_waiters();
    }
}

/// A running codex process, leader of its own process group.
///
/// Dropping it kills the whole group (SIGKILL), so no codex, and no command codex started,
/// outlives its owner.
#[derive(Debug)]
pub struct CodexProcess {
    child: Box<dyn TokioChildWrapper>,
    program: PathBuf,
    pid: Option<u32>,
    tail: StderrTail,
    exited: Option<ExitStatus>,
}

impl CodexProcess {
    /// The process id (also the process group id).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The program that runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Takes the stdin pipe (present when launched with [`Stdio::Piped`]).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin().take()
    }

    /// Takes the stdout pipe.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout().take()
    }

    /// The stderr tail (a shared handle; it keeps filling while the process runs).
    pub fn stderr_tail(&self) -> StderrTail {
        self.tail.clone()
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = Box::into_pin(self.child.wait())
            .await
            .map_err(|e| Error::io("waiting for codex to exit", e))?;
        self.exited = Some(status);
        Ok(status)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_some() {
            return Ok(self.exited);
        }
        let status = self
            .child
            .try_wait()
            .map_err(|e| Error::io("checking whether codex exited", e))?;
        self.exited = status;
        Ok(status)
    }

    /// Sends SIGKILL to the whole process group (does not wait).
    pub fn kill_group(&mut self) {
        if let Err(e) = self.child.start_kill()
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            tracing::debug!("killing codex process group: {e}");
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `grace`, then waits.
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if self.exited.is_none() {
            let _ = self.child.signal(libc::SIGTERM);
            if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
                let status = status?;
                self.kill_group();
                return Ok(status);
            }
        }
        self.kill_group();
        let status = self.wait().await?;
        self.kill_group();
        Ok(status)
    }

    /// The typed error for "codex exited while we waited for `context`", with the stderr tail.
    pub async fn exited_error(&mut self, context: impl Into<String>) -> Error {
        let status = match self.wait().await {
            Ok(s) => ExitSummary::from_status(s),
            Err(_) => ExitSummary::Unknown,
        };
        Error::ProcessExited {
            status,
            context: context.into(),
            stderr_tail: self.tail.wait_closed(Duration::from_millis(200)).await,
        }
    }
}

impl Drop for CodexProcess {
    fn drop(&mut self) {
        // Kill the group even after the leader exited: commands codex started may live on.
        self.kill_group();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_bounded() {
        let tail = StderrTail::new(8);
        tail.push(b"0123456789abc");
        assert_eq!(tail.snapshot(), "…56789abc");
    }

    #[tokio::test]
    async fn output_and_spawn_errors() {
        let out = CodexCommand::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status, ExitSummary::Code(3));
        assert_eq!(out.stdout.trim(), "out");
        assert_eq!(out.stderr.trim(), "err");
        let err = CodexCommand::new("/no/such/codex").spawn().unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn drop_kills_the_whole_group() {
        let mut p = CodexCommand::new("sh")
            .args(["-c", "sleep 300 & echo $!; wait"])
            .spawn()
            .unwrap();
        let mut out = BufReader::new(p.take_stdout().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).await.unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        drop(p);
        let alive = || std::path::Path::new(&format!("/proc/{grandchild}")).exists();
        for _ in 0..100 {
            if !alive() {
                return;
            }
            // a killed child stays a zombie until reaped by init; check its state
            let stat =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            if stat.contains(") Z") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("grandchild {grandchild} survived");
    }
}
