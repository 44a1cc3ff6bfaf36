//! WebSocket transports: to `codex app-server --listen ws://127.0.0.1:PORT`, and over the unix
//! socket of `--listen unix://PATH` (which is also what codex's own daemon speaks).
//!
//! One JSON-RPC message per text frame. A server started with
//! `--ws-auth capability-token --ws-token-file ABS` wants `Authorization: Bearer TOKEN` on the
//! upgrade request; without it, or with a wrong token, it answers HTTP 401, which becomes
//! [`Error::Unauthorized`].
//!
//! [`WsServer::spawn`] and [`UnixServer::spawn`] launch an app-server listening on a fresh
//! loopback port (`--listen ws://127.0.0.1:0`; the bound port is read from the
//! `listening on: ws://127.0.0.1:PORT` line codex prints on stderr, then `GET /readyz` must
//! answer 200) or on a unix socket (ready when it accepts connections).
//!
//! ```no_run
//! # async fn demo() -> codex_asp::Result<()> {
//! use codex_asp::transport::ws::{WsAuth, WsServer, WsServerOptions};
//! use codex_asp::transport::TransportOptions;
//! use codex_core::process::CodexCommand;
//!
//! let dir = std::path::Path::new("/abs/private/dir");
//! let auth = WsAuth::generate_token_file(&dir.join("ws-token"))?;
//! let command = CodexCommand::new("codex").arg("app-server");
//! let server = WsServer::spawn(command, WsServerOptions::new(auth)).await?;
//! let transport = server.connect(&TransportOptions::default()).await?;
//! # let _ = transport; Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use codex_core::process::{CodexCommand, CodexProcess, Stdio};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{Frame, FrameRead, FrameWrite, Garbage, GarbageReason, Transport, TransportOptions};
use crate::error::{CloseReason, Error, Result};

/// The default time an app-server gets to start listening.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a WebSocket to `url` (`ws://HOST:PORT[/PATH]`), sending `Authorization: Bearer TOKEN`
/// when `token` is given.
pub async fn connect(
    url: &str,
    token: Option<&str>,
    options: &TransportOptions,
) -> Result<Transport> {
    let request = build_request(url, token)?;
    let host = request.uri().host().unwrap_or_default().to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| Error::io(format!("connecting to {url}"), e))?;
    let _ = stream.set_nodelay(true);
    handshake(url, request, stream, options).await
}

/// Opens a WebSocket over the unix socket at `path` (what `--listen unix://PATH` and codex's
/// daemon speak), sending `Authorization: Bearer TOKEN` when `token` is given.
pub async fn connect_unix(
    path: impl AsRef<Path>,
    token: Option<&str>,
    options: &TransportOptions,
) -> Result<Transport> {
    let path = path.as_ref();
    let label = format!("unix://{}", path.display());
    let request = build_request("ws://localhost/", token)?;
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| Error::io(format!("connecting to {label}"), e))?;
    handshake(&label, request, stream, options).await
}

/// Where codex's own daemon (`codex app-server daemon start`) listens: a WebSocket over the
/// unix socket `$CODEX_HOME/app-server-control/app-server-control.sock` (connect with
/// [`connect_unix`]).
pub fn daemon_socket(codex_home: impl AsRef<Path>) -> PathBuf {
    codex_home
        .as_ref()
        .join("app-server-control")
        .join("app-server-control.sock")
}

fn build_request(url: &str, token: Option<&str>) -> Result<Request> {
    let mut request = url.into_client_request().map_err(|e| Error::WebSocket {
        url: url.to_owned(),
        source: Box::new(e),
    })?;
    if let Some(token) = token {
        let value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Protocol {
                detail: "the capability token is not a valid HTTP header value".into(),
            })?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(request)
}

async fn handshake<S>(
    label: &str,
    request: Request,
    stream: S,
    options: &TransportOptions,
) -> Result<Transport>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(options.max_message_bytes))
        .max_frame_size(Some(options.max_message_bytes));
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(response)
                    if response.status() == StatusCode::UNAUTHORIZED =>
                {
                    Error::Unauthorized {
                        url: label.to_owned(),
                        body: response
                            .body()
                            .as_deref()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default(),
                    }
                }
                other => Error::WebSocket {
                    url: label.to_owned(),
                    source: Box::new(other),
                },
            })?;
    tracing::debug!(url = label, "WebSocket to codex app-server open");
    let (sink, stream) = ws.split();
    Ok(Transport::new(
        WsReader {
            stream,
            closed: None,
        },
        WsWriter {
            sink,
            max: options.max_message_bytes,
        },
        label,
    ))
}

/// The reading half of a WebSocket transport. Cancel safe.
struct WsReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    closed: Option<CloseReason>,
}

#[async_trait]
impl<S> FrameRead for WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn recv(&mut self) -> Frame {
        loop {
            if let Some(reason) = &self.closed {
                return Frame::Closed(reason.clone());
            }
            let reason = match self.stream.next().await {
                Some(Ok(Message::Text(text))) => return Frame::Text(text.as_str().to_owned()),
                Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                    Ok(text) => return Frame::Text(text.to_owned()),
                    Err(_) => return Frame::Garbage(Garbage::new(GarbageReason::Binary, "")),
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => CloseReason::PeerClosed {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame
                        .map(|f| f.reason.as_str().to_owned())
                        .unwrap_or_default(),
                },
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                ))
                | None => CloseReason::PeerClosed {
                    code: None,
                    reason: "end of stream".into(),
                },
                Some(Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ))) => CloseReason::PeerClosed {
                    code: None,
                    reason: "connection reset without a closing handshake".into(),
                },
                Some(Err(e)) => CloseReason::failed("reading from the WebSocket failed", e),
            };
            self.closed = Some(reason);
        }
    }
}

/// The writing half of a WebSocket transport.
struct WsWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    max: usize,
}

#[async_trait]
impl<S> FrameWrite for WsWriter<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn send(&mut self, text: String) -> Result<()> {
        if text.len() > self.max {
            return Err(Error::MessageTooLarge {
                what: "outgoing",
                len: text.len(),
                max: self.max,
            });
        }
        self.sink
            .send(Message::text(text))
            .await
            .map_err(|e| Error::io("writing to the WebSocket", std::io::Error::other(e)))
    }

    async fn close(&mut self) -> Result<()> {
        self.sink
            .close()
            .await
            .map_err(|e| Error::io("closing the WebSocket", std::io::Error::other(e)))
    }
}

/// How a spawned WebSocket app-server authenticates clients.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum WsAuth {
    /// No authentication (only allowed on loopback addresses).
    #[default]
    None,
    /// `--ws-auth capability-token --ws-token-file FILE`: clients send
    /// `Authorization: Bearer TOKEN`.
    CapabilityToken {
        /// The token (the content of the file, trimmed).
        token: String,
        /// The absolute path of the file holding it.
        file: PathBuf,
    },
}

impl WsAuth {
    /// Capability-token auth with the token stored in `file` (an absolute path).
    pub fn token_file(file: impl Into<PathBuf>) -> Result<WsAuth> {
        let file = file.into();
        if !file.is_absolute() {
            return Err(Error::Protocol {
                detail: format!(
                    "the capability-token file must be an absolute path, not {}",
                    file.display()
                ),
            });
        }
        let token = std::fs::read_to_string(&file)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?
            .trim()
            .to_owned();
        Ok(WsAuth::CapabilityToken { token, file })
    }

    /// Generates a random token, writes it to `file` (an absolute path, created with mode
    /// 0600) and returns capability-token auth using it.
    pub fn generate_token_file(file: impl Into<PathBuf>) -> Result<WsAuth> {
        use rand::Rng;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let file = file.into();
        if !file.is_absolute() {
            return Err(Error::Protocol {
                detail: format!(
                    "the capability-token file must be an absolute path, not {}",
                    file.display()
                ),
            });
        }
        let bytes: [u8; 24] = rand::rng().random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| Error::io(format!("writing {}", file.display()), e))?;
        f.write_all(token.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", file.display()), e))?;
        Ok(WsAuth::CapabilityToken { token, file })
    }

    /// The token clients must send, if any.
    pub fn token(&self) -> Option<&str> {
        match self {
            WsAuth::None => None,
            WsAuth::CapabilityToken { token, .. } => Some(token),
        }
    }
}

/// Options of [`WsServer::spawn`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsServerOptions {
    /// How clients authenticate.
    pub auth: WsAuth,
    /// The address to listen on (default `127.0.0.1:0`: a free loopback port).
    pub listen: SocketAddr,
    /// How long the server gets to become ready (default [`DEFAULT_READY_TIMEOUT`]).
    pub ready_timeout: Duration,
}

impl Default for WsServerOptions {
    fn default() -> Self {
        WsServerOptions {
            auth: WsAuth::None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

impl WsServerOptions {
    /// Default options with `auth`.
    pub fn new(auth: WsAuth) -> Self {
        WsServerOptions {
            auth,
            ..Default::default()
        }
    }

    /// Sets the ready timeout.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

/// An app-server launched by this process, listening on a loopback WebSocket. Dropping it
/// kills the server's process tree.
#[derive(Debug)]
pub struct WsServer {
    process: CodexProcess,
    addr: SocketAddr,
    auth: WsAuth,
}

impl WsServer {
    /// Launches `command` (which must run `codex app-server`, with any `-c` overrides) with
    /// `--listen ws://ADDR` and the auth flags appended, and waits until it listens and
    /// `GET /readyz` answers 200.
    pub async fn spawn(command: CodexCommand, options: WsServerOptions) -> Result<WsServer> {
        let mut command = command
            .stdin(Stdio::Null)
            .arg("--listen")
            .arg(format!("ws://{}", options.listen));
        if let WsAuth::CapabilityToken { file, .. } = &options.auth {
            command = command
                .args(["--ws-auth", "capability-token", "--ws-token-file"])
                .arg(file.as_os_str());
        }
        let mut process = command.spawn()?;
        let deadline = codex_core::util::deadline(options.ready_timeout);
        let tail = process.stderr_tail();
        let addr = loop {
            if let Some(addr) = parse_listening(&tail.snapshot()) {
                break addr;
            }
            check_alive(&mut process).await?;
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    after: options.ready_timeout,
                    detail: format!(
                        "no `listening on:` line on stderr; stderr: {}",
                        tail.snapshot().trim()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        loop {
            if let Ok(200) = readyz(addr).await {
                break;
            }
            check_alive(&mut process).await?;
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    after: options.ready_timeout,
                    detail: format!("GET http://{addr}/readyz did not answer 200"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::debug!(%addr, pid = ?process.pid(), "codex app-server listening");
        Ok(WsServer {
            process,
            addr,
            auth: options.auth,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its WebSocket URL (`ws://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The token clients must send, if any.
    pub fn token(&self) -> Option<&str> {
        self.auth.token()
    }

    /// Connects with the server's token (if it has one).
    pub async fn connect(&self, options: &TransportOptions) -> Result<Transport> {
        connect(&self.url(), self.token(), options).await
    }

    /// Connects with the given token (or none) instead of the server's.
    pub async fn connect_with_token(
        &self,
        token: Option<&str>,
        options: &TransportOptions,
    ) -> Result<Transport> {
        connect(&self.url(), token, options).await
    }

    /// The server process (its pid, stderr tail, or to kill it).
    pub fn process(&mut self) -> &mut CodexProcess {
        &mut self.process
    }
}

/// An app-server launched by this process, listening on a unix socket. Dropping it kills the
/// server's process tree and removes the socket.
#[derive(Debug)]
pub struct UnixServer {
    process: CodexProcess,
    path: PathBuf,
}

impl UnixServer {
    /// Launches `command` (which must run `codex app-server`) with `--listen unix://PATH`
    /// appended, and waits until the socket accepts connections.
    pub async fn spawn(
        command: CodexCommand,
        path: impl Into<PathBuf>,
        ready_timeout: Duration,
    ) -> Result<UnixServer> {
        let path = path.into();
        let mut process = command
            .stdin(Stdio::Null)
            .arg("--listen")
            .arg(format!("unix://{}", path.display()))
            .spawn()?;
        let deadline = codex_core::util::deadline(ready_timeout);
        loop {
            if UnixStream::connect(&path).await.is_ok() {
                break;
            }
            check_alive(&mut process).await?;
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    after: ready_timeout,
                    detail: format!("{} does not accept connections", path.display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(UnixServer { process, path })
    }

    /// The socket path given to `--listen unix://`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connects a WebSocket over the socket.
    pub async fn connect(&self, options: &TransportOptions) -> Result<Transport> {
        connect_unix(&self.path, None, options).await
    }

    /// The server process (its pid, stderr tail, or to kill it).
    pub fn process(&mut self) -> &mut CodexProcess {
        &mut self.process
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        self.process.kill_tree();
        // codex makes PATH a symlink to a socket of its own; remove both
        if let Ok(target) = std::fs::read_link(&self.path) {
            let _ = std::fs::remove_file(target);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn check_alive(process: &mut CodexProcess) -> Result<()> {
    if let Some(status) = process.try_wait()? {
        let stderr_tail = process
            .stderr_tail()
            .wait_closed(Duration::from_millis(200))
            .await;
        return Err(Error::closed(CloseReason::ProcessExited {
            status,
            stderr_tail,
        }));
    }
    Ok(())
}

/// Finds `listening on: ws://ADDR` in codex's start-up banner.
fn parse_listening(stderr: &str) -> Option<SocketAddr> {
    let rest = stderr.split("listening on: ws://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '/')
        .collect();
    addr.parse().ok()
}

/// `GET /readyz` on a loopback app-server: the HTTP status code.
pub async fn readyz(addr: SocketAddr) -> Result<u16> {
    let fut = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| {
            Error::io(
                format!("GET http://{addr}/readyz"),
                std::io::ErrorKind::TimedOut.into(),
            )
        })?
        .map_err(|e| Error::io(format!("GET http://{addr}/readyz"), e))?;
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::Protocol {
            detail: format!("unexpected answer to GET /readyz: {:?}", line.trim()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_banner() {
        let banner = "codex app-server (WebSockets)\n  listening on: ws://127.0.0.1:45313\n  readyz: http://127.0.0.1:45313/readyz\n";
        assert_eq!(
            parse_listening(banner),
            Some("127.0.0.1:45313".parse().unwrap())
        );
        assert_eq!(parse_listening("codex app-server (WebSockets)\n"), None);
    }

    #[test]
    fn relative_token_files_are_refused() {
        assert!(WsAuth::token_file("rel/token").is_err());
        assert!(WsAuth::generate_token_file("rel/token").is_err());
    }
}
