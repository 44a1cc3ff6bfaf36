//! Launching codex: the one place in codex-bridge that starts a codex process, and the one
//! place that kills its whole process tree.
//!
//! Every process runs as the leader of its own process group and carries a marker in its
//! environment ([`TREE_MARKER_ENV`]) that everything it starts inherits. Stopping it stops
//! its whole *tree*: its descendants, the members of its group, and every process carrying
//! its marker, whatever group or session they moved to and whoever adopted them (codex
//! 0.130 to 0.171 start the login shell of their shell snapshot with `setsid`; with a slow
//! `~/.bashrc` that shell and what it started outlive codex's group). On Linux the tree is
//! collected through `/proc` and frozen (SIGSTOP, repeated until no new member appears)
//! before every member gets SIGKILL, so nothing can fork its way out while it is killed;
//! elsewhere the process group is killed.
//!
//! Dropping a [`CodexProcess`] kills its tree, and so do [`CodexProcess::kill_tree`],
//! [`CodexProcess::terminate`] and [`CodexProcess::wind_down`]. [`kill_tree`] does the same
//! for a process this module did not start (a background worker); a program that owns codex
//! processes can become a child subreaper ([`become_subreaper`], opt-in) so that orphans
//! below it stay its descendants.
//!
//! Not covered: a command that both cleared its environment and left codex's group and
//! session, once its parent is gone (nothing links it to the tree any more; under a
//! subreaper it is still reached by a [`kill_tree`] of the subreaper). cgroups would cover
//! it, but are not used: cgroup v2 is often absent or not delegated to the user (this
//! project's CI machine runs a v1 hierarchy), and a fallback would be needed anyway.
//!
//! Stderr is drained continuously into a bounded [`StderrTail`] (codex can be chatty; the
//! pipe must never fill up and block it), which errors quote. [`CodexCommand::output`] (for
//! short commands such as `--version`) is bounded by a deadline.

#[cfg(target_os = "linux")]
mod tree;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::error::{Error, ExitSummary, Result};

/// How much of stderr a [`StderrTail`] keeps by default.
pub const DEFAULT_STDERR_TAIL_BYTES: usize = 8 * 1024;

/// How long [`CodexCommand::output`] waits by default before it kills the command.
pub const DEFAULT_OUTPUT_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable that marks every process of one launched tree. Its value is
/// unique per launch; codex passes its environment on to the shells and commands it starts.
pub const TREE_MARKER_ENV: &str = "CODEX_BRIDGE_PROCESS_TREE";

/// How long [`CodexCommand::output`] keeps reading stdout after the command exited while a
/// grandchild still holds the pipe.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How long killing a tree waits for the leader to be reaped.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// The pids of live leaders spawned here (waited for by tokio): [`reap_orphans`] leaves them.
static LEADERS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn leaders() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    LEADERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh marker value: this process, a counter and the clock.
fn new_marker() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{n}-{nanos:08x}", std::process::id())
}

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
    output_timeout: Duration,
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
            output_timeout: DEFAULT_OUTPUT_TIMEOUT,
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

    /// How long [`CodexCommand::output`] may take before the command's tree is killed and
    /// [`Error::CommandTimeout`] returned (default [`DEFAULT_OUTPUT_TIMEOUT`]).
    pub fn output_timeout(mut self, limit: Duration) -> Self {
        self.output_timeout = limit;
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

    /// Starts the process in a new process group, marked with a fresh [`TREE_MARKER_ENV`],
    /// with stdout piped and stderr drained into a bounded tail.
    ///
    /// Must be called within a Tokio runtime.
    pub fn spawn(self) -> Result<CodexProcess> {
        let program = self.program.clone();
        let marker = new_marker();
        let mut cmd = tokio::process::Command::new(&self.program);
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
        cmd.env(TREE_MARKER_ENV, &marker);
        cmd.stdin(match self.stdin {
            Stdio::Null => std::process::Stdio::null(),
            Stdio::Piped => std::process::Stdio::piped(),
        });
        cmd.stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::piped());
        cmd.process_group(0);
        // our own Drop kills the whole tree
        cmd.kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|source| spawn_error(&program, source))?;
        let pid = child.id();
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            leaders().insert(pid);
        }
        let tail = StderrTail::new(self.stderr_tail_bytes);
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(tail.clone().drain(stderr));
        }
        Ok(CodexProcess {
            child,
            program,
            pid,
            marker: format!("{TREE_MARKER_ENV}={marker}"),
            tail,
            exited: None,
            tree_dead: false,
        })
    }

    /// Runs to completion and collects stdout and stderr (for short probes like
    /// `--version`), within [`CodexCommand::output_timeout`].
    ///
    /// Once the command exited, stdout is read for at most two more seconds (a grandchild may
    /// hold the pipe open); the command's tree is killed when it ends either way.
    ///
    /// # Errors
    /// [`Error::CommandTimeout`] (naming the program and its arguments) when the command did
    /// not finish in time, after its tree was killed; spawn errors as
    /// [`CodexCommand::spawn`].
    pub async fn output(self) -> Result<Output> {
        let limit = self.output_timeout;
        let what = self.describe();
        let deadline = tokio::time::Instant::now() + limit;
        let mut proc = self.spawn()?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let reader = proc.take_stdout().map(|mut out| {
            let buf = stdout.clone();
            tokio::spawn(async move {
                let mut chunk = [0u8; 8192];
                loop {
                    match out.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend_from_slice(&chunk[..n]),
                    }
                }
            })
        });
        let status = match tokio::time::timeout_at(deadline, proc.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                proc.kill_tree();
                if let Some(reader) = reader {
                    reader.abort();
                }
                return Err(Error::CommandTimeout {
                    program: proc.program().to_owned(),
                    what,
                    after: limit,
                });
            }
        };
        if let Some(reader) = reader {
            let drain = deadline.min(tokio::time::Instant::now() + OUTPUT_DRAIN);
            let abort = reader.abort_handle();
            if tokio::time::timeout_at(drain, reader).await.is_err() {
                tracing::debug!("{what}: exited, but its stdout stayed open; killing its tree");
                abort.abort();
            }
        }
        proc.kill_tree();
        let stdout = std::mem::take(&mut *stdout.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Output {
            status: ExitSummary::from_status(status),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: proc.tail.wait_closed(Duration::from_millis(500)).await,
        })
    }

    /// `codex --version`-like text for messages: the arguments, or the program when none.
    fn describe(&self) -> String {
        if self.args.is_empty() {
            return self.program.display().to_string();
        }
        self.args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
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

/// A running codex process, leader of its own process group and of a marked tree.
///
/// Dropping it kills the whole tree (see the [module docs](self)), so no codex, and no
/// command codex started, outlives its owner.
#[derive(Debug)]
pub struct CodexProcess {
    child: Child,
    program: PathBuf,
    pid: Option<u32>,
    /// `TREE_MARKER_ENV=value`, as it appears in `/proc/PID/environ`.
    marker: String,
    tail: StderrTail,
    exited: Option<ExitStatus>,
    /// The tree was killed after the leader was reaped: nothing of it can be left.
    tree_dead: bool,
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
        self.child.stdin.take()
    }

    /// Takes the stdout pipe.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The stderr tail (a shared handle; it keeps filling while the process runs).
    pub fn stderr_tail(&self) -> StderrTail {
        self.tail.clone()
    }

    /// Waits for the process to exit. Commands it started may still run: they are killed
    /// with its tree ([`CodexProcess::kill_tree`], or on drop).
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::io("waiting for codex to exit", e))?;
        self.reaped(status);
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
        if let Some(status) = status {
            self.reaped(status);
        }
        Ok(status)
    }

    fn reaped(&mut self, status: ExitStatus) {
        self.exited = Some(status);
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            leaders().remove(&pid);
        }
    }

    /// Kills the whole tree (SIGKILL; see the [module docs](self)): the process if it still
    /// runs, its descendants, its process group, and every process carrying its marker,
    /// whatever group or session it moved to. Does not wait for the leader to be reaped.
    pub fn kill_tree(&mut self) {
        if self.tree_dead {
            return;
        }
        // while the leader is not reaped its pid is still ours: follow its children too
        let root = self.child.id().and_then(|p| i32::try_from(p).ok());
        let group = self.pid.and_then(|p| i32::try_from(p).ok());
        kill_scope(root, group, Some(&self.marker));
        // with the leader reaped, every member was frozen before the kill: none can be left
        self.tree_dead = self.exited.is_some();
    }

    /// Stops the tree gracefully: SIGTERM to the process group, SIGKILL to the whole tree
    /// after `grace` (or as soon as the leader exited: what it leaves behind is killed), then
    /// waits (bounded) for the leader to be reaped.
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if self.exited.is_none()
            && let Some(group) = self.pid.and_then(|p| i32::try_from(p).ok())
        {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = tokio::time::timeout(grace, self.wait()).await;
        }
        self.kill_and_reap().await
    }

    /// The end of a process whose work is done (its outcome is known): waits at most
    /// `grace` for it to exit by itself, then kills its tree (what is left of it) and waits
    /// (bounded) for the leader to be reaped. Returns the exit status when it was read.
    pub async fn wind_down(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() && tokio::time::timeout(grace, self.wait()).await.is_err() {
            tracing::debug!(pid = ?self.pid, "codex did not exit after its work ended; killing its tree");
        }
        self.kill_and_reap().await.ok()
    }

    /// Kills the tree and waits (at most a few seconds) for the leader to be reaped.
    async fn kill_and_reap(&mut self) -> Result<ExitStatus> {
        self.kill_tree();
        match tokio::time::timeout(REAP_LIMIT, self.wait()).await {
            Ok(status) => {
                // the leader is reaped: no new member can appear through it any more
                self.kill_tree();
                status
            }
            Err(_) => {
                tracing::warn!(pid = ?self.pid, "a killed codex was not reaped in time");
                Err(Error::io(
                    "waiting for a killed codex to exit",
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                ))
            }
        }
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
        // kill the tree even after the leader exited: commands codex started may live on
        self.kill_tree();
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            leaders().remove(&pid);
        }
        // an unreaped leader is reaped by tokio in the background
    }
}

/// Kills a tree: descendants of `root` (a live, unreaped child), members of `group`, and the
/// processes carrying `marker` (`KEY=VALUE`).
fn kill_scope(root: Option<i32>, group: Option<i32>, marker: Option<&str>) {
    #[cfg(target_os = "linux")]
    {
        tree::kill_tree(&tree::Scope {
            root,
            group,
            session: None,
            marker: marker.map(str::as_bytes),
            not_reaped: root,
        });
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (root, marker);
        if let Some(group) = group.filter(|g| *g > 1) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Kills the process `pid` and its whole tree (SIGKILL): its descendants, found by parent
/// links and frozen (SIGSTOP) before anything is killed, and, when `pid` leads a session of
/// its own, every member of that session (members stay members when their parent dies).
/// Returns how many processes were killed (0 when `pid` is gone).
///
/// For processes this library did not start, such as a background worker found in a job
/// record (a worker that is a [subreaper](become_subreaper) keeps every orphan below it
/// within reach); a [`CodexProcess`] kills its own tree ([`CodexProcess::kill_tree`]). The
/// process group of a `pid` that does not lead a session (a shell's job) is left alone, and
/// this process and its ancestors are never killed. Linux walks `/proc`; elsewhere the
/// process and the group it leads get SIGKILL.
pub fn kill_tree(pid: u32) -> usize {
    let Ok(pid) = i32::try_from(pid) else {
        return 0;
    };
    if pid <= 1 {
        return 0;
    }
    #[cfg(target_os = "linux")]
    {
        tree::kill_tree(&tree::Scope {
            root: Some(pid),
            group: None,
            session: tree::session_led_by(pid),
            marker: None,
            not_reaped: None,
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::{Pid, getpgid};
        let target = Pid::from_raw(pid);
        if getpgid(Some(target)).is_ok_and(|g| g == target) {
            let _ = killpg(target, Signal::SIGKILL);
        }
        usize::from(kill(target, Signal::SIGKILL).is_ok())
    }
}

/// Makes this process a *child subreaper* (Linux `PR_SET_CHILD_SUBREAPER`): processes
/// orphaned below it (a command whose parent died, such as the children of codex's
/// shell-snapshot login shell) are re-parented to it instead of to init. They then remain
/// descendants of this process, so that killing its tree from outside ([`kill_tree`], as
/// `codex-companion cancel` does with a background worker) reaches them even when they
/// carry no tree marker (a command that cleared its environment). Returns `Ok(false)` where
/// the platform has no such thing.
///
/// This is a process-wide change the library never makes by itself: call it early in a
/// program that owns codex processes (the companion and its worker, `codex-broker`).
/// Orphans that then exit by themselves stay zombies of this process until reaped: call
/// [`reap_orphans`] now and then (for instance on SIGCHLD) in a long-lived program.
///
/// # Errors
/// [`Error::Io`] when the system refuses.
pub fn become_subreaper() -> Result<bool> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_child_subreaper(true).map_err(|errno| {
            Error::io(
                "becoming a child subreaper (prctl PR_SET_CHILD_SUBREAPER)",
                std::io::Error::from(errno),
            )
        })?;
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(false)
    }
}

/// Reaps the dead children of this process that this module did not start itself: the
/// orphans a [subreaper](become_subreaper) adopted. Returns how many were reaped.
///
/// Only for programs whose own children are all started through this module (or not
/// waited for): a child started some other way that exits could be reaped here before its
/// owner waits for it.
pub fn reap_orphans() -> usize {
    #[cfg(target_os = "linux")]
    {
        let keep = leaders().clone();
        tree::reap_dead_children(&keep)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
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

    /// Gone, or a zombie waiting for its reaper.
    fn gone(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'))
        })
    }

    async fn assert_all_gone(pids: &[u32]) {
        for _ in 0..500 {
            if pids.iter().all(|p| gone(*p)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let alive: Vec<_> = pids.iter().filter(|p| !gone(**p)).collect();
        for pid in &alive {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(**pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        panic!("processes survived: {alive:?}");
    }

    fn is_orphan(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, r)| r.split(' ').nth(1) == Some("1"))
        })
    }

    /// Reads `count` pids, one a line, that the script writes to `file`.
    async fn read_pids(file: &Path, count: usize) -> Vec<u32> {
        for _ in 0..500 {
            let pids: Vec<u32> = std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            if pids.len() >= count {
                return pids;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the script did not write {count} pids to {}",
            file.display()
        );
    }

    /// A shell that starts: a grandchild in a session of its own (with a child of its own),
    /// and an orphan in a session of its own whose parent is gone (re-parented to init or to
    /// a subreaper). Every pid goes to `pids`.
    fn escaping_script(pids: &Path) -> String {
        let f = pids.display();
        format!(
            "setsid sh -c 'sleep 300 & echo $! >> {f}; echo $$ >> {f}; wait' &\n\
             (setsid sh -c 'echo $$ >> {f}; exec sleep 300' &)\n\
             echo $$ >> {f}\n\
             exec sleep 300\n"
        )
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
        let grandchild: u32 = line.trim().parse().unwrap();
        drop(p);
        assert_all_gone(&[grandchild]).await;
    }

    #[tokio::test]
    async fn drop_kills_descendants_that_left_the_group_and_orphans_that_lost_their_parent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let p = CodexCommand::new("sh")
            .args(["-c", &escaping_script(&file)])
            .spawn()
            .unwrap();
        let pids = read_pids(&file, 4).await;
        // the escapees really escaped: other sessions, other groups
        let leader = p.pid().unwrap();
        let sessions: BTreeSet<String> = pids
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|s| {
                s.rsplit_once(") ")
                    .map(|(_, r)| r.split(' ').nth(3).unwrap_or("").to_owned())
            })
            .collect();
        assert!(sessions.len() >= 3, "{sessions:?}");
        drop(p);
        assert_all_gone(&pids).await;
        assert!(gone(leader));
    }

    #[tokio::test]
    async fn terminate_and_wind_down_kill_what_the_leader_leaves_behind() {
        let dir = tempfile::tempdir().unwrap();
        // terminate: SIGTERM ends the leader; its escapees must go too
        let file = dir.path().join("terminate");
        let mut p = CodexCommand::new("sh")
            .args(["-c", &escaping_script(&file)])
            .spawn()
            .unwrap();
        let pids = read_pids(&file, 4).await;
        let status = p.terminate(Duration::from_secs(5)).await.unwrap();
        assert!(!status.success());
        assert_all_gone(&pids).await;
        // wind_down: a leader that exited by itself leaves its escapees behind
        let file = dir.path().join("wind-down");
        let script = escaping_script(&file).replace("exec sleep 300", "exit 0");
        let mut p = CodexCommand::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let pids = read_pids(&file, 4).await;
        let status = p.wind_down(Duration::from_secs(30)).await.unwrap();
        assert!(status.success());
        assert_all_gone(&pids).await;
        // wind_down: a leader that does not exit is killed after the grace
        let mut p = CodexCommand::new("sleep").arg("300").spawn().unwrap();
        let pid = p.pid().unwrap();
        let status = p.wind_down(Duration::from_millis(100)).await.unwrap();
        assert!(!status.success());
        assert_all_gone(&[pid]).await;
    }

    #[tokio::test]
    async fn the_public_tree_kill_takes_a_session_leader_with_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        // like a companion worker: a session of its own, not started by this module
        let mut leader = std::process::Command::new("setsid")
            .args(["sh", "-c", &escaping_script(&file)])
            .spawn()
            .unwrap();
        let pids = read_pids(&file, 4).await;
        let main = leader.id();
        // the main shell, and the session-of-its-own shell with its child; the orphan in a
        // session of its own has no link left to the worker (a subreaper would keep one)
        assert_eq!(kill_tree(main), 3);
        let _ = leader.wait();
        let reachable: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| *p == main || !is_orphan(*p))
            .collect();
        assert_all_gone(&reachable).await;
        // the orphan outside the session and without a parent link cannot be found: clean up
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert_eq!(kill_tree(u32::MAX), 0);
        assert_eq!(kill_tree(1), 0);
    }

    #[tokio::test]
    async fn a_hanging_command_times_out_typed_and_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let started = std::time::Instant::now();
        let err = CodexCommand::new("sh")
            .args(["-c", &escaping_script(&file)])
            .output_timeout(Duration::from_millis(1500))
            .output()
            .await
            .unwrap_err();
        let Error::CommandTimeout {
            program,
            what,
            after,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(program, Path::new("sh"));
        assert!(what.starts_with("-c setsid"), "{what}");
        assert_eq!(*after, Duration::from_millis(1500));
        assert!(err.to_string().contains("did not finish within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(60));
        let pids = read_pids(&file, 4).await;
        assert_all_gone(&pids).await;
    }

    #[tokio::test]
    async fn output_returns_when_a_grandchild_keeps_stdout_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pid");
        let out = CodexCommand::new("sh")
            .args([
                "-c",
                &format!("sleep 300 & echo $! > {}; echo done", file.display()),
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), "done");
        assert_eq!(out.status, ExitSummary::Code(0));
        let pids = read_pids(&file, 1).await;
        assert_all_gone(&pids).await;
    }
}
