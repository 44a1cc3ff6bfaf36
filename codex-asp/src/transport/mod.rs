//! Transports: how JSON-RPC text frames travel between this client and `codex app-server`.
//!
//! A [`Transport`] is a pair of halves — a [`FrameRead`] and a [`FrameWrite`] — so that a
//! connection can read and write at the same time. Every transport carries one JSON-RPC
//! message per frame:
//!
//! | transport | module | framing |
//! | --- | --- | --- |
//! | `codex app-server` on stdin/stdout | [`stdio`] | one JSON object per line |
//! | `--listen ws://127.0.0.1:PORT` | [`ws`] | one message per WebSocket text frame |
//! | `--listen unix://PATH` (and codex's own daemon) | [`ws`] | WebSocket over the unix socket |
//! | in memory, for tests | [`memory`] | one JSON object per line over a duplex pipe |
//!
//! Facts verified on codex-cli 0.169.0:
//!
//! - stdio: one JSON per line; the process exits when stdin closes. A reader of stdout sees
//!   end-of-file when the process (group) dies.
//! - `--listen ws://127.0.0.1:0` works: the server binds a free port and prints
//!   `  listening on: ws://127.0.0.1:PORT` (plus `readyz:`/`healthz:` URLs) on **stderr**.
//!   `GET /readyz` and `GET /healthz` answer 200 with an empty body. A non-loopback address
//!   without `--ws-auth` is refused at start-up.
//! - `--ws-auth capability-token --ws-token-file ABS`: the upgrade needs
//!   `Authorization: Bearer TOKEN`; without it the answer is `401 Unauthorized` with the body
//!   `missing websocket bearer token`, with a wrong token also 401.
//! - `--listen unix://PATH`: `PATH` becomes a symlink to a socket under
//!   `/tmp/codex-daemon-<uid>/`; nothing is printed; the socket speaks WebSocket (this client
//!   upgrades with `ws://localhost/`, which codex accepts); plain JSONL is closed. codex's own
//!   daemon listens the same way on `$CODEX_HOME/app-server-control/app-server-control.sock`.
//!
//! Frames are bounded ([`TransportOptions::max_message_bytes`], 64 MiB by default). Over
//! stdio an over-long line is skipped and reported as [`Frame::Garbage`]; over a WebSocket
//! the library refuses the message and the connection closes.

use std::fmt;

use async_trait::async_trait;

use crate::error::{CloseReason, Result};

pub mod lines;
pub mod memory;
pub mod stdio;
pub mod ws;

pub use stdio::ProcessHandle;

/// The default bound on one message: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Options shared by every transport.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportOptions {
    /// The largest message accepted in either direction (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]).
    pub max_message_bytes: usize,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl TransportOptions {
    /// Sets the bound on one message (at least 1 KiB).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.max(1024);
        self
    }
}

/// What a transport read.
#[derive(Debug, Clone)]
pub enum Frame {
    /// One message's text (not yet parsed).
    Text(String),
    /// Something that is not a message (an over-long line, invalid UTF-8, a binary frame);
    /// it was skipped and the transport goes on.
    Garbage(Garbage),
    /// The transport is closed for good; every later read returns this again.
    Closed(CloseReason),
}

/// A skipped frame: what it looked like and why it was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    /// Why it was skipped.
    pub reason: GarbageReason,
    /// The beginning of the frame (at most 200 characters), for logs.
    pub excerpt: String,
}

impl Garbage {
    /// A garbage frame with an excerpt of `text`.
    pub fn new(reason: GarbageReason, text: &str) -> Self {
        Garbage {
            reason,
            excerpt: excerpt(text),
        }
    }
}

impl fmt::Display for Garbage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if !self.excerpt.is_empty() {
            write!(f, ": {:?}", self.excerpt)?;
        }
        Ok(())
    }
}

/// Why a frame was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GarbageReason {
    /// A line longer than the bound.
    TooLong {
        /// The bound, in bytes.
        max: usize,
    },
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// A WebSocket binary frame that is not UTF-8 text.
    Binary,
    /// Text that is not JSON.
    NotJson(String),
    /// JSON that is not a JSON-RPC request, notification or response.
    NotJsonRpc,
}

impl fmt::Display for GarbageReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GarbageReason::TooLong { max } => write!(f, "line longer than {max} bytes"),
            GarbageReason::NotUtf8 => f.write_str("not UTF-8"),
            GarbageReason::Binary => f.write_str("binary frame"),
            GarbageReason::NotJson(e) => write!(f, "not JSON ({e})"),
            GarbageReason::NotJsonRpc => f.write_str("not a JSON-RPC message"),
        }
    }
}

pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The reading half of a transport.
#[async_trait]
pub trait FrameRead: Send + 'static {
    /// The next frame.
    ///
    /// Must be **cancel safe**: the connection polls it inside `tokio::select!`, and a
    /// dropped call must not lose a frame. After [`Frame::Closed`] every call returns
    /// `Frame::Closed` again.
    async fn recv(&mut self) -> Frame;
}

/// The writing half of a transport.
#[async_trait]
pub trait FrameWrite: Send + 'static {
    /// Sends one message (one JSON text, without a trailing newline).
    async fn send(&mut self, text: String) -> Result<()>;

    /// Closes the writing direction (stdin end-of-file, WebSocket close frame).
    async fn close(&mut self) -> Result<()>;
}

/// A transport: its two halves, a label for logs, and the app-server process when this side
/// launched it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use codex_asp::transport::{memory, Frame, TransportOptions};
/// let (transport, mut server) = memory::pair(TransportOptions::default());
/// let (mut reader, mut writer) = transport.into_halves();
/// writer.send(r#"{"id":0,"method":"initialize","params":{}}"#.into()).await.unwrap();
/// assert_eq!(server.recv_json().await.unwrap()["method"], "initialize");
/// server.send_line("not json at all").await;
/// assert!(matches!(reader.recv().await, Frame::Text(t) if t == "not json at all"));
/// # }
/// ```
pub struct Transport {
    reader: Box<dyn FrameRead>,
    writer: Box<dyn FrameWrite>,
    label: String,
    process: Option<ProcessHandle>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("label", &self.label)
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport made of two halves; `label` names it in logs (`stdio`, the URL, ...).
    pub fn new(
        reader: impl FrameRead,
        writer: impl FrameWrite,
        label: impl Into<String>,
    ) -> Transport {
        Transport {
            reader: Box::new(reader),
            writer: Box::new(writer),
            label: label.into(),
            process: None,
        }
    }

    /// Attaches the app-server process this transport talks to.
    pub fn with_process(mut self, process: ProcessHandle) -> Transport {
        self.process = Some(process);
        self
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The app-server process, when this transport launched it.
    pub fn process(&self) -> Option<&ProcessHandle> {
        self.process.as_ref()
    }

    /// Splits into the two halves.
    pub fn into_halves(self) -> (Box<dyn FrameRead>, Box<dyn FrameWrite>) {
        (self.reader, self.writer)
    }

    /// Splits into the two halves, the label and the process handle.
    pub fn into_parts(
        self,
    ) -> (
        Box<dyn FrameRead>,
        Box<dyn FrameWrite>,
        String,
        Option<ProcessHandle>,
    ) {
        (self.reader, self.writer, self.label, self.process)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_bounded() {
        let long = "é".repeat(500);
        let ex = excerpt(&long);
        assert_eq!(ex.chars().count(), 201);
        assert!(ex.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }
}
