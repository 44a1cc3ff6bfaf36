//! `codex app-server` over its stdin and stdout, one JSON message per line.
//!
//! The process is launched with [`codex_core::process::CodexCommand`]: it leads its own
//! process group, its whole process tree (whatever group or session a descendant moved to)
//! is killed when the transport is dropped, and its stderr is drained into a bounded tail. When the process exits, the reading half reports
//! [`CloseReason::ProcessExited`](crate::error::CloseReason::ProcessExited) with the exit status
//! and that tail, within milliseconds of the exit.
//!
//! ```no_run
//! # async fn demo() -> codex_asp::Result<()> {
//! use codex_asp::transport::{stdio, TransportOptions};
//! use codex_core::process::CodexCommand;
//! let command = CodexCommand::new("codex").arg("app-server").env("CODEX_HOME", "/tmp/home");
//! let transport = stdio::spawn(command, &TransportOptions::default())?;
//! let pid = transport.process().and_then(|p| p.pid());
//! # let _ = pid; Ok(()) }
//! ```

use std::fmt;
use std::process::ExitStatus;
use std::time::Duration;

use codex_core::process::{CodexCommand, CodexProcess, StderrTail, Stdio};
use tokio::sync::{mpsc, oneshot, watch};

use super::lines::{LinesReader, LinesWriter};
use super::{Transport, TransportOptions};
use crate::error::{Error, Result};

/// How long to wait for the end of stderr after the process exited.
const TAIL_WAIT: Duration = Duration::from_millis(200);

/// How a launched app-server ended.
#[derive(Debug, Clone)]
pub struct ProcessExit {
    /// Its exit status.
    pub status: ExitStatus,
    /// The last lines it wrote to stderr.
    pub stderr_tail: String,
}

/// A handle on a launched app-server process: its pid, its exit, and a way to kill it.
///
/// Cheap to clone. Holding a handle does not keep the process alive: it is killed when the
/// transport that launched it is dropped.
#[derive(Clone)]
pub struct ProcessHandle {
    pid: Option<u32>,
    program: Option<std::path::PathBuf>,
    kill_tx: mpsc::UnboundedSender<()>,
    exit: watch::Receiver<Option<ProcessExit>>,
    tail: StderrTail,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid)
            .field("program", &self.program)
            .field("exit", &*self.exit.borrow())
            .finish_non_exhaustive()
    }
}

impl ProcessHandle {
    /// The process id (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The program that was launched.
    pub fn program(&self) -> Option<&std::path::PathBuf> {
        self.program.as_ref()
    }

    /// Kills the whole process tree (SIGKILL; see [`codex_core::process`]); does not wait.
    pub fn kill(&self) {
        let _ = self.kill_tx.send(());
    }

    /// How the process ended, if it did.
    pub fn exit(&self) -> Option<ProcessExit> {
        self.exit.borrow().clone()
    }

    /// Waits until the process exited (`None` if its watcher went away first, which only
    /// happens when the runtime shuts down).
    pub async fn wait(&self) -> Option<ProcessExit> {
        let mut rx = self.exit.clone();
        rx.wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone())
    }

    /// What the process wrote to stderr so far (bounded).
    pub fn stderr_tail(&self) -> String {
        self.tail.snapshot()
    }
}

/// Launches `command` (which must run `codex app-server`, with any `-c` overrides, and
/// without `--listen` or with `--listen stdio://`) and returns a line transport on its stdin
/// and stdout, carrying its [`ProcessHandle`].
///
/// Must be called within a Tokio runtime.
pub fn spawn(command: CodexCommand, options: &TransportOptions) -> Result<Transport> {
    let mut process = command.stdin(Stdio::Piped).spawn()?;
    let stdin = process.take_stdin().ok_or_else(|| Error::Protocol {
        detail: "the app-server's stdin pipe is missing".into(),
    })?;
    let stdout = process.take_stdout().ok_or_else(|| Error::Protocol {
        detail: "the app-server's stdout pipe is missing".into(),
    })?;
    let (handle, exit_rx, owner) = watch_process(process);
    tracing::debug!(pid = ?handle.pid(), "launched codex app-server on stdio");
    let reader =
        LinesReader::new(stdout, options).with_exit(exit_rx, Some(handle.clone()), Some(owner));
    let writer = LinesWriter::new(stdin, options);
    Ok(Transport::new(reader, writer, "stdio").with_process(handle))
}

/// Dropped by the reading half: tells the watcher to kill the process.
pub(crate) struct OwnerGuard {
    _tx: oneshot::Sender<()>,
}

/// Moves the process into a watcher task that publishes its exit and kills it on request or
/// when the owner guard drops.
pub(crate) fn watch_process(
    process: CodexProcess,
) -> (
    ProcessHandle,
    watch::Receiver<Option<ProcessExit>>,
    OwnerGuard,
) {
    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    let (exit_tx, exit_rx) = watch::channel(None);
    let (owner_tx, owner_rx) = oneshot::channel();
    let handle = ProcessHandle {
        pid: process.pid(),
        program: Some(process.program().to_owned()),
        kill_tx,
        exit: exit_rx.clone(),
        tail: process.stderr_tail(),
    };
    tokio::spawn(watcher(process, kill_rx, owner_rx, exit_tx));
    (handle, exit_rx, OwnerGuard { _tx: owner_tx })
}

async fn watcher(
    mut process: CodexProcess,
    mut kill_rx: mpsc::UnboundedReceiver<()>,
    mut owner_rx: oneshot::Receiver<()>,
    exit_tx: watch::Sender<Option<ProcessExit>>,
) {
    let mut handles_gone = false;
    let mut owner_gone = false;
    let status = loop {
        tokio::select! {
            status = process.wait() => break status,
            cmd = kill_rx.recv(), if !handles_gone => match cmd {
                Some(()) => process.kill_tree(),
                None => handles_gone = true,
            },
            _ = &mut owner_rx, if !owner_gone => {
                owner_gone = true;
                process.kill_tree();
            }
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            tracing::warn!("could not read the app-server's exit status: {e}");
            return;
        }
    };
    let stderr_tail = process.stderr_tail().wait_closed(TAIL_WAIT).await;
    tracing::debug!(
        pid = ?process.pid(),
        status = %crate::error::render_status(&status),
        "codex app-server exited"
    );
    let _ = exit_tx.send(Some(ProcessExit {
        status,
        stderr_tail,
    }));
    // dropping the process kills what is left of its tree
}
