//! Newline-delimited JSON over any byte stream (what `codex app-server` speaks on stdio).
//!
//! Reading uses [`tokio_util::codec::LinesCodec::new_with_max_length`]: a line longer than the
//! bound is skipped (up to its newline) and reported as [`Frame::Garbage`], and so is a line
//! that is not UTF-8; neither ends the stream. Blank lines are ignored.
//!
//! When the bytes come from a process, the reader also watches the process: once it exited,
//! the reader drains what is left in the pipe (for at most 100 ms) and then reports
//! [`CloseReason::ProcessExited`] with the exit status and the stderr tail, even when a
//! grandchild still holds the pipe open. When stdout ends first, the reader waits for the
//! exit status (killing the process group after 2 s if it does not come).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use codex_asp::transport::{lines, Frame, TransportOptions};
//! let (client, server) = tokio::io::duplex(1024);
//! let (read, write) = tokio::io::split(client);
//! let transport = lines::transport(read, write, &TransportOptions::default(), "pipe");
//! let (mut reader, _writer) = transport.into_halves();
//! drop(server); // end of stream
//! assert!(matches!(reader.recv().await, Frame::Closed(_)));
//! # }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use codex_core::util::sleep_until as sleep_until_opt;
use tokio_util::codec::{Decoder, FramedRead, LinesCodec, LinesCodecError};

use super::stdio::{OwnerGuard, ProcessExit, ProcessHandle};
use super::{Frame, FrameRead, FrameWrite, Garbage, GarbageReason, Transport, TransportOptions};
use crate::error::{CloseReason, Error, Result};

/// How long the reader keeps draining the pipe after the process exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);
/// How long the reader waits for the exit status after stdout ended before killing the group.
const EXIT_AFTER_EOF: Duration = Duration::from_secs(2);
/// How long it waits after that kill before giving up on an exit status.
const EXIT_AFTER_KILL: Duration = Duration::from_secs(3);

/// A transport speaking one JSON message per line over `read` and `write`.
pub fn transport<R, W>(
    read: R,
    write: W,
    options: &TransportOptions,
    label: impl Into<String>,
) -> Transport
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    Transport::new(
        LinesReader::new(read, options),
        LinesWriter::new(write, options),
        label,
    )
}

/// One decoded line, or why there is none.
enum Line {
    Text(String),
    TooLong,
    NotUtf8,
}

/// [`LinesCodec`] with over-long and non-UTF-8 lines turned into items instead of errors
/// (an error from a decoder ends a `FramedRead` stream, and leaves buffered lines unread).
struct LineCodec {
    inner: LinesCodec,
}

impl LineCodec {
    fn map(result: Result<Option<String>, LinesCodecError>) -> std::io::Result<Option<Line>> {
        match result {
            Ok(line) => Ok(line.map(Line::Text)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(Line::TooLong)),
            // LinesCodec reports invalid UTF-8 as InvalidData, after removing the line
            Err(LinesCodecError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Ok(Some(Line::NotUtf8))
            }
            Err(LinesCodecError::Io(e)) => Err(e),
        }
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Line>> {
        Self::map(self.inner.decode(buf))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Line>> {
        Self::map(self.inner.decode_eof(buf))
    }
}

/// The reading half of a line transport. Cancel safe.
pub struct LinesReader<R> {
    framed: FramedRead<R, LineCodec>,
    max: usize,
    exit: Option<ExitWatch>,
    /// Set once the byte stream ended (with the read error, if any).
    ended: Option<(Instant, Option<String>)>,
    closed: Option<CloseReason>,
}

struct ExitWatch {
    rx: watch::Receiver<Option<ProcessExit>>,
    seen: Option<ProcessExit>,
    /// The watcher went away without an exit status.
    lost: bool,
    drain_until: Option<Instant>,
    killed: bool,
    process: Option<ProcessHandle>,
    /// Dropping it (with the reader) kills the process.
    _owner: Option<OwnerGuard>,
}

impl<R: AsyncRead + Unpin + Send + 'static> LinesReader<R> {
    /// Reads lines of at most `options.max_message_bytes` bytes from `read`.
    pub fn new(read: R, options: &TransportOptions) -> Self {
        LinesReader {
            framed: FramedRead::new(
                read,
                LineCodec {
                    inner: LinesCodec::new_with_max_length(options.max_message_bytes),
                },
            ),
            max: options.max_message_bytes,
            exit: None,
            ended: None,
            closed: None,
        }
    }

    /// Ties the end of this stream to a process whose exit is published on `rx`.
    pub(crate) fn with_exit(
        mut self,
        rx: watch::Receiver<Option<ProcessExit>>,
        process: Option<ProcessHandle>,
        owner: Option<OwnerGuard>,
    ) -> Self {
        let seen = rx.borrow().clone();
        self.exit = Some(ExitWatch {
            rx,
            seen,
            lost: false,
            drain_until: None,
            killed: false,
            process,
            _owner: owner,
        });
        self
    }

    fn close(&mut self, reason: CloseReason) -> Frame {
        self.closed = Some(reason.clone());
        Frame::Closed(reason)
    }

    fn end_reason(&self) -> CloseReason {
        if let Some(exit) = self.exit.as_ref().and_then(|e| e.seen.as_ref()) {
            return CloseReason::ProcessExited {
                status: exit.status,
                stderr_tail: exit.stderr_tail.clone(),
            };
        }
        match &self.ended {
            Some((_, Some(err))) => CloseReason::Failed {
                message: format!("reading from the app-server failed: {err}"),
                source: None,
            },
            _ => CloseReason::PeerClosed {
                code: None,
                reason: "end of stream".into(),
            },
        }
    }
}

#[async_trait]
impl<R: AsyncRead + Unpin + Send + 'static> FrameRead for LinesReader<R> {
    async fn recv(&mut self) -> Frame {
        loop {
            if let Some(reason) = &self.closed {
                return Frame::Closed(reason.clone());
            }
            if let Some((ended_at, _)) = self.ended {
                // the stream is over; with a process, wait for its exit status
                let Some(exit) = self.exit.as_mut() else {
                    let reason = self.end_reason();
                    return self.close(reason);
                };
                if exit.seen.is_some() || exit.lost {
                    let reason = self.end_reason();
                    return self.close(reason);
                }
                let give_up = ended_at + EXIT_AFTER_EOF + EXIT_AFTER_KILL;
                let kill_at = ended_at + EXIT_AFTER_EOF;
                tokio::select! {
                    changed = exit.rx.changed() => match changed {
                        Ok(()) => exit.seen = exit.rx.borrow_and_update().clone(),
                        Err(_) => exit.lost = true,
                    },
                    () = tokio::time::sleep_until(kill_at), if !exit.killed => {
                        tracing::debug!("app-server closed stdout but did not exit; killing it");
                        exit.killed = true;
                        if let Some(p) = &exit.process {
                            p.kill();
                        }
                    }
                    () = tokio::time::sleep_until(give_up) => exit.lost = true,
                }
                continue;
            }

            let (exit_pending, drain_until) = match &self.exit {
                Some(e) => (e.seen.is_none() && !e.lost, e.drain_until),
                None => (false, None),
            };
            tokio::select! {
                biased;
                item = self.framed.next() => match item {
                    Some(Ok(Line::Text(text))) => {
                        if text.trim().is_empty() {
                            continue;
                        }
                        return Frame::Text(text);
                    }
                    Some(Ok(Line::TooLong)) => {
                        return Frame::Garbage(Garbage::new(GarbageReason::TooLong { max: self.max }, ""));
                    }
                    Some(Ok(Line::NotUtf8)) => {
                        return Frame::Garbage(Garbage::new(GarbageReason::NotUtf8, ""));
                    }
                    Some(Err(e)) => self.ended = Some((Instant::now(), Some(e.to_string()))),
                    None => self.ended = Some((Instant::now(), None)),
                },
                changed = exit_changed(&mut self.exit), if exit_pending => {
                    if let Some(e) = self.exit.as_mut() {
                        match changed {
                            Ok(()) => e.seen = e.rx.borrow_and_update().clone(),
                            Err(_) => e.lost = true,
                        }
                        if e.seen.is_some() || e.lost {
                            e.drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
                        }
                    }
                }
                () = sleep_until_opt(drain_until), if drain_until.is_some() => {
                    // exited, and the pipe is still open (a grandchild holds it): stop here
                    let reason = self.end_reason();
                    return self.close(reason);
                }
            }
        }
    }
}

async fn exit_changed(exit: &mut Option<ExitWatch>) -> Result<(), watch::error::RecvError> {
    match exit {
        Some(e) => e.rx.changed().await,
        None => std::future::pending().await,
    }
}

/// The writing half of a line transport.
pub struct LinesWriter<W> {
    inner: W,
    max: usize,
}

impl<W: AsyncWrite + Unpin + Send + 'static> LinesWriter<W> {
    /// Writes lines of at most `options.max_message_bytes` bytes to `write`.
    pub fn new(write: W, options: &TransportOptions) -> Self {
        LinesWriter {
            inner: write,
            max: options.max_message_bytes,
        }
    }
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send + 'static> FrameWrite for LinesWriter<W> {
    async fn send(&mut self, text: String) -> Result<()> {
        if text.len() > self.max {
            return Err(Error::MessageTooLarge {
                what: "outgoing",
                len: text.len(),
                max: self.max,
            });
        }
        if text.contains('\n') {
            return Err(Error::Protocol {
                detail: "a message sent over a line transport must not contain a newline".into(),
            });
        }
        let mut line = text.into_bytes();
        line.push(b'\n');
        self.inner
            .write_all(&line)
            .await
            .map_err(|e| Error::io("writing to the app-server", e))?;
        self.inner
            .flush()
            .await
            .map_err(|e| Error::io("writing to the app-server", e))
    }

    async fn close(&mut self) -> Result<()> {
        self.inner
            .shutdown()
            .await
            .map_err(|e| Error::io("closing the app-server's input", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn opts(max: usize) -> TransportOptions {
        TransportOptions {
            max_message_bytes: max,
        }
    }

    #[tokio::test]
    async fn long_and_bad_lines_are_skipped_not_fatal() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut reader = LinesReader::new(client, &opts(16));
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"first\n");
        bytes.extend_from_slice(&[b'x'; 40]);
        bytes.extend_from_slice(b"\n\n   \n");
        bytes.extend_from_slice(b"\xff\xfe\n");
        bytes.extend_from_slice(b"second\r\nthird");
        server.write_all(&bytes).await.unwrap();
        drop(server);
        assert!(matches!(reader.recv().await, Frame::Text(t) if t == "first"));
        assert!(matches!(
            reader.recv().await,
            Frame::Garbage(Garbage {
                reason: GarbageReason::TooLong { max: 16 },
                ..
            })
        ));
        assert!(matches!(
            reader.recv().await,
            Frame::Garbage(Garbage {
                reason: GarbageReason::NotUtf8,
                ..
            })
        ));
        assert!(matches!(reader.recv().await, Frame::Text(t) if t == "second"));
        assert!(matches!(reader.recv().await, Frame::Text(t) if t == "third"));
        assert!(matches!(
            reader.recv().await,
            Frame::Closed(CloseReason::PeerClosed { .. })
        ));
        assert!(matches!(reader.recv().await, Frame::Closed(_)));
    }

    #[tokio::test]
    async fn a_line_after_an_overlong_one_is_not_delayed() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut reader = LinesReader::new(client, &opts(8));
        server
            .write_all(b"0123456789abcdef\n{\"ok\":1}\n")
            .await
            .unwrap();
        // the server keeps the stream open: the second line must come without more input
        assert!(matches!(reader.recv().await, Frame::Garbage(_)));
        let next = tokio::time::timeout(Duration::from_millis(500), reader.recv())
            .await
            .expect("buffered line delivered");
        assert!(matches!(next, Frame::Text(t) if t == "{\"ok\":1}"));
    }

    #[tokio::test]
    async fn writer_bounds_and_newlines() {
        let (client, _server) = tokio::io::duplex(1 << 16);
        let mut writer = LinesWriter::new(client, &opts(1024));
        let err = writer.send("x".repeat(2000)).await.unwrap_err();
        assert!(
            matches!(err, Error::MessageTooLarge { len: 2000, .. }),
            "{err}"
        );
        let err = writer.send("a\nb".into()).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
    }
}
