//! An in-memory transport for tests: the test holds the "server" end ([`MemoryServer`]) and
//! can answer requests, send notifications and server requests, inject any text (including
//! garbage lines), close the stream, or pretend the process exited.
//!
//! The client end is a real line transport over a [`tokio::io::duplex`] pipe, so it exercises
//! the same framing as stdio.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use codex_asp::transport::{memory, TransportOptions};
//! use codex_asp::{Connection, ConnectionOptions};
//! use serde_json::json;
//!
//! let (transport, mut server) = memory::pair(TransportOptions::default());
//! let conn = Connection::new(transport, ConnectionOptions::default());
//! let fake = tokio::spawn(async move {
//!     let req = server.recv_json().await.unwrap();
//!     server.respond(&req["id"], json!({"models": []})).await.unwrap();
//!     server
//! });
//! let models = conn.request_raw("model/list", json!({})).await.unwrap();
//! assert_eq!(models, json!({"models": []}));
//! # drop(fake.await.unwrap()); }
//! ```

use std::process::ExitStatus;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::lines::{LinesReader, LinesWriter};
use super::stdio::ProcessExit;
use super::{Transport, TransportOptions};

/// The size of the in-memory pipe's buffer in each direction.
const PIPE_BYTES: usize = 64 * 1024;

/// Creates a connected pair: the client [`Transport`] and the test's [`MemoryServer`].
pub fn pair(options: TransportOptions) -> (Transport, MemoryServer) {
    let (client, server) = tokio::io::duplex(PIPE_BYTES);
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let (exit_tx, exit_rx) = watch::channel(None);
    let reader = LinesReader::new(client_read, &options).with_exit(exit_rx, None, None);
    let writer = LinesWriter::new(client_write, &options);
    let transport = Transport::new(reader, writer, "memory");
    let server = MemoryServer {
        lines: FramedRead::new(server_read, LinesCodec::new()),
        write: server_write,
        exit_tx: Some(exit_tx),
    };
    (transport, server)
}

/// The test's end of an in-memory transport.
pub struct MemoryServer {
    lines: FramedRead<ReadHalf<DuplexStream>, LinesCodec>,
    write: WriteHalf<DuplexStream>,
    exit_tx: Option<watch::Sender<Option<ProcessExit>>>,
}

impl std::fmt::Debug for MemoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryServer").finish_non_exhaustive()
    }
}

impl MemoryServer {
    /// Sends raw bytes (no newline added).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await?;
        self.write.flush().await
    }

    /// Sends `text` followed by a newline, whatever it contains.
    pub async fn send_line(&mut self, text: &str) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 1);
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        self.send_raw(&line).await
    }

    /// Sends a JSON value as one line.
    pub async fn send_json(&mut self, value: &Value) -> std::io::Result<()> {
        self.send_line(&value.to_string()).await
    }

    /// Answers the request `id` with `result`.
    pub async fn respond(&mut self, id: &Value, result: Value) -> std::io::Result<()> {
        self.send_json(&json!({"id": id, "result": result})).await
    }

    /// Answers the request `id` with a JSON-RPC error.
    pub async fn respond_error(
        &mut self,
        id: &Value,
        code: i64,
        message: &str,
    ) -> std::io::Result<()> {
        self.send_json(&json!({"id": id, "error": {"code": code, "message": message}}))
            .await
    }

    /// Sends a notification.
    pub async fn notify(&mut self, method: &str, params: Value) -> std::io::Result<()> {
        self.send_json(&json!({"method": method, "params": params}))
            .await
    }

    /// Sends a server-to-client request.
    pub async fn request(&mut self, id: Value, method: &str, params: Value) -> std::io::Result<()> {
        self.send_json(&json!({"id": id, "method": method, "params": params}))
            .await
    }

    /// The next line the client sent (`None` once the client closed its side).
    pub async fn recv_line(&mut self) -> Option<String> {
        match self.lines.next().await {
            Some(Ok(line)) => Some(line),
            _ => None,
        }
    }

    /// The next message the client sent, parsed (a line that is not JSON comes back as a JSON
    /// string).
    pub async fn recv_json(&mut self) -> Option<Value> {
        let line = self.recv_line().await?;
        Some(serde_json::from_str(&line).unwrap_or(Value::String(line)))
    }

    /// Closes the server's side: the client reads end-of-stream.
    pub async fn close(&mut self) {
        self.exit_tx = None;
        let _ = self.write.shutdown().await;
    }

    /// Pretends the server process exited with `status` after writing `stderr_tail`: the
    /// client sees [`CloseReason::ProcessExited`](crate::error::CloseReason::ProcessExited).
    pub async fn exit(&mut self, status: ExitStatus, stderr_tail: &str) {
        if let Some(tx) = self.exit_tx.take() {
            let _ = tx.send(Some(ProcessExit {
                status,
                stderr_tail: stderr_tail.to_owned(),
            }));
        }
        let _ = self.write.shutdown().await;
    }
}
