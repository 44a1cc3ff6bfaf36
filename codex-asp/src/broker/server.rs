//! The broker's server side: files, the listening socket, client tasks and the event loop.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use codex_core::util::sleep_until as sleep_until_opt;

use super::error::{Error, Result};
use super::hub::{ClientId, Hub, HubConfig};
use super::outbox::{Outbox, Outgoing};
use super::paths::{self, BrokerPaths};
use super::{BrokerOptions, Launcher};
use crate::jsonrpc::error_codes;
use crate::transport::{Frame, FrameWrite, TransportOptions, lines, stdio};
use codex_core::process::CodexCommand;

/// How long the app-server gets to exit after its input closed, at shutdown.
const UPSTREAM_EXIT_GRACE: Duration = Duration::from_secs(3);
/// How long clients' queues get to drain at shutdown.
const CLIENT_FLUSH_GRACE: Duration = Duration::from_secs(1);

/// Why [`Broker::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// No client and no running turn for the idle timeout.
    Idle,
    /// A client sent `broker/shutdown`.
    ShutdownRequested,
    /// [`BrokerHandle::shutdown`] was called.
    Stopped,
}

/// Stops a running [`Broker`] from elsewhere (a signal handler, a test). Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl BrokerHandle {
    /// Asks the broker to stop: clients are disconnected, the app-server is stopped, the
    /// socket and pid file are removed.
    pub fn shutdown(&self) {
        self.tx.send_replace(true);
    }
}

/// Removes the socket and pid file when the broker ends, if they are still this broker's.
struct FilesGuard {
    socket: PathBuf,
    socket_id: Option<(u64, u64)>,
    pid: PathBuf,
}

impl Drop for FilesGuard {
    fn drop(&mut self) {
        let same_socket = std::fs::symlink_metadata(&self.socket)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if same_socket.is_some() && same_socket == self.socket_id {
            let _ = std::fs::remove_file(&self.socket);
        }
        let ours = std::fs::read_to_string(&self.pid)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            == Some(std::process::id());
        if ours {
            let _ = std::fs::remove_file(&self.pid);
        }
    }
}

/// A broker bound to its socket, holding its lock, with the app-server starting.
///
/// [`Broker::bind`] then [`Broker::run`] (or [`Broker::serve`] for both). Dropping a broker
/// (or the future of `run`) stops its app-server and removes its socket.
pub struct Broker {
    paths: BrokerPaths,
    listener: UnixListener,
    hub: Hub,
    up_rx: mpsc::UnboundedReceiver<(u64, Frame)>,
    idle_timeout: Option<Duration>,
    client_queue: usize,
    stop_tx: Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
    // dropped last: the files are removed before the lock is released
    _files: FilesGuard,
    _lock: File,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("socket", &self.paths.socket)
            .field("codex", &self.paths.codex)
            .field("codex_home", &self.paths.codex_home)
            .finish_non_exhaustive()
    }
}

fn default_launcher(paths: &BrokerPaths, options: &BrokerOptions) -> Launcher {
    let codex = options.codex.clone().unwrap_or_else(|| paths.codex.clone());
    let args = options.app_server_args.clone();
    let env = options.env.clone();
    Arc::new(move || {
        let mut command = CodexCommand::new(&codex)
            .arg("app-server")
            .args(args.clone());
        for (key, value) in &env {
            command = match value {
                Some(value) => command.env(key.clone(), value.clone()),
                None => command.env_remove(key.clone()),
            };
        }
        stdio::spawn(command, &TransportOptions::default())
    })
}

impl Broker {
    /// Takes the lock of this (codex, `CODEX_HOME`) pair, replaces a stale socket, binds the
    /// socket (mode 0600, in a 0700 directory), writes the pid file and starts the
    /// app-server.
    ///
    /// Fails with [`Error::AlreadyRunning`] when another broker holds the lock, and with the
    /// launch error when codex cannot be started.
    pub async fn bind(options: BrokerOptions) -> Result<Broker> {
        let paths = BrokerPaths::resolve(&options)?;
        paths.prepare_dir()?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&paths.lock)
            .map_err(|e| Error::io(format!("opening {}", paths.lock.display()), e))?;
        let locked = fs4::fs_std::FileExt::try_lock_exclusive(&lock)
            .map_err(|e| Error::io(format!("locking {}", paths.lock.display()), e))?;
        if !locked {
            return Err(Error::AlreadyRunning {
                pid: paths.read_pid(),
                socket: paths.socket.clone(),
            });
        }
        let launcher = options
            .launcher
            .clone()
            .unwrap_or_else(|| default_launcher(&paths, &options));
        let upstream_init =
            serde_json::to_value(&options.upstream_init).map_err(|e| Error::Config {
                detail: format!("the upstream initialize params do not encode: {e}"),
            })?;
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let mut hub = Hub::new(
            HubConfig {
                launcher,
                upstream_init,
                client_queue: options.client_queue.max(16),
                idle_timeout: options.idle_timeout,
                init_timeout: options.upstream_init_timeout,
                socket: paths.socket.clone(),
                codex: paths.codex.clone(),
                codex_home: paths.codex_home.clone(),
            },
            up_tx,
        );
        // start the app-server before the socket exists: a broker that cannot launch codex
        // never accepts a client
        hub.start_upstream()
            .map_err(|detail| Error::AppServerStart { detail })?;
        // we hold the lock: any socket file left is stale
        match std::fs::symlink_metadata(&paths.socket) {
            Ok(_) => {
                tracing::info!(socket = %paths.socket.display(), "removing a stale socket");
                std::fs::remove_file(&paths.socket).map_err(|e| {
                    Error::io(
                        format!("removing the stale socket {}", paths.socket.display()),
                        e,
                    )
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!("inspecting {}", paths.socket.display()),
                    e,
                ));
            }
        }
        let listener = UnixListener::bind(&paths.socket)
            .map_err(|e| Error::io(format!("listening on {}", paths.socket.display()), e))?;
        let socket_id = std::fs::symlink_metadata(&paths.socket)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let files = FilesGuard {
            socket: paths.socket.clone(),
            socket_id,
            pid: paths.pid.clone(),
        };
        std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("making {} private", paths.socket.display()), e))?;
        paths.write_pid(std::process::id())?;

        let (stop_tx, stop_rx) = watch::channel(false);
        tracing::info!(
            socket = %paths.socket.display(),
            codex = %paths.codex.display(),
            codex_home = %paths.codex_home.display(),
            pid = std::process::id(),
            "codex-broker listening"
        );
        Ok(Broker {
            paths,
            listener,
            hub,
            up_rx,
            idle_timeout: options.idle_timeout,
            client_queue: options.client_queue.max(16),
            stop_tx: Arc::new(stop_tx),
            stop_rx,
            _files: files,
            _lock: lock,
        })
    }

    /// [`Broker::bind`] then [`Broker::run`]: serves until idle, `broker/shutdown`, or (for
    /// a binary) the process is stopped.
    pub async fn serve(options: BrokerOptions) -> Result<ExitReason> {
        Broker::bind(options).await?.run().await
    }

    /// The socket clients connect to.
    pub fn socket_path(&self) -> &Path {
        &self.paths.socket
    }

    /// The broker's log file (where a `codex-broker` started by [`super::ensure`] writes).
    pub fn log_path(&self) -> &Path {
        &self.paths.log
    }

    /// A handle that stops the broker.
    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            tx: self.stop_tx.clone(),
        }
    }

    /// Serves clients until the broker is idle for the idle timeout, a client sends
    /// `broker/shutdown`, or [`BrokerHandle::shutdown`] is called; then disconnects the
    /// clients, stops the app-server and removes the socket and pid file.
    pub async fn run(mut self) -> Result<ExitReason> {
        let (ev_tx, mut ev_rx) = mpsc::channel::<(ClientId, Frame)>(1024);
        let mut readers: JoinSet<()> = JoinSet::new();
        let mut writers: JoinSet<()> = JoinSet::new();
        let mut reader_handles: HashMap<ClientId, AbortHandle> = HashMap::new();
        let mut next_client: ClientId = 1;
        let mut idle_since = Some(Instant::now());
        let my_uid = paths::current_uid();
        let reason = loop {
            let idle_at = match (idle_since, self.idle_timeout) {
                (Some(since), Some(timeout)) => {
                    Some(codex_core::util::deadline_from(since, timeout))
                }
                _ => None,
            };
            let init_at = self.hub.init_deadline();
            tokio::select! {
                biased;
                changed = self.stop_rx.changed() => {
                    if changed.is_err() || *self.stop_rx.borrow() {
                        break ExitReason::Stopped;
                    }
                }
                Some((generation, frame)) = self.up_rx.recv() => self.hub.on_upstream_frame(generation, frame),
                Some((client, frame)) = ev_rx.recv() => {
                    if matches!(frame, Frame::Closed(_)) {
                        reader_handles.remove(&client);
                    }
                    self.hub.on_client_frame(client, frame);
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let id = next_client;
                        next_client += 1;
                        if let Some((tx, pid, reader)) = self.accept(stream, id, my_uid, &ev_tx, &mut readers, &mut writers) {
                            reader_handles.insert(id, reader);
                            self.hub.add_client(id, tx, pid);
                        }
                    }
                    Err(e) => {
                        tracing::warn!("accepting a client failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                () = sleep_until_opt(init_at), if init_at.is_some() => self.hub.init_timed_out(),
                () = sleep_until_opt(idle_at), if idle_at.is_some() => {
                    tracing::info!("idle: no client and no running turn; exiting");
                    break ExitReason::Idle;
                }
            }
            for client in self.hub.take_overflowed() {
                self.hub.remove_client(client);
                if let Some(h) = reader_handles.remove(&client) {
                    h.abort();
                }
            }
            while readers.try_join_next().is_some() {}
            while writers.try_join_next().is_some() {}
            if self.hub.shutdown_requested() {
                break ExitReason::ShutdownRequested;
            }
            if self.hub.is_idle() {
                idle_since.get_or_insert_with(Instant::now);
            } else {
                idle_since = None;
            }
        };
        tracing::info!(?reason, "codex-broker stopping");
        self.hub.fail_all_for_shutdown();
        self.hub.disconnect_all();
        readers.abort_all();
        if let Some((process, reader)) = self.hub.stop_upstream() {
            let waited = async {
                match &process {
                    Some(p) => {
                        let _ = p.wait().await;
                    }
                    None => {
                        let _ = tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            if tokio::time::timeout(UPSTREAM_EXIT_GRACE, waited)
                .await
                .is_err()
            {
                tracing::warn!("codex app-server did not exit after its input closed; killing it");
                if let Some(p) = &process {
                    p.kill();
                    let _ = tokio::time::timeout(Duration::from_secs(2), p.wait()).await;
                }
            }
            reader.abort();
        }
        let _ = tokio::time::timeout(CLIENT_FLUSH_GRACE, async {
            while writers.join_next().await.is_some() {}
        })
        .await;
        writers.abort_all();
        Ok(reason)
    }

    /// Checks the peer and starts the client's reader and writer tasks.
    #[allow(clippy::type_complexity)]
    fn accept(
        &self,
        stream: UnixStream,
        id: ClientId,
        my_uid: u32,
        ev_tx: &mpsc::Sender<(ClientId, Frame)>,
        readers: &mut JoinSet<()>,
        writers: &mut JoinSet<()>,
    ) -> Option<(mpsc::Sender<Outgoing>, Option<i32>, AbortHandle)> {
        let cred = match stream.peer_cred() {
            Ok(cred) => cred,
            Err(e) => {
                tracing::warn!("refusing a client whose credentials cannot be read: {e}");
                return None;
            }
        };
        if cred.uid() != my_uid {
            tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "refusing a client of another user");
            let refusal = refusal_line(cred.uid(), my_uid);
            writers.spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = stream;
                let _ = stream.write_all(refusal.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
            return None;
        }
        let (read, write) = stream.into_split();
        let transport = lines::transport(
            read,
            write,
            &TransportOptions::default(),
            format!("broker client #{id}"),
        );
        let (mut reader, writer) = transport.into_halves();
        let (tx, rx) = mpsc::channel::<Outgoing>(self.client_queue);
        let ev_tx = ev_tx.clone();
        let handle = readers.spawn(async move {
            loop {
                let frame = reader.recv().await;
                let closed = matches!(frame, Frame::Closed(_));
                if ev_tx.send((id, frame)).await.is_err() || closed {
                    break;
                }
            }
        });
        writers.spawn(write_client(id, writer, rx, Outbox::new(self.client_queue)));
        Some((tx, cred.pid(), handle))
    }
}

/// Writes what the hub queues for client `id`, taking it off the hub's channel as soon as it
/// arrives (the backlog waits in `outbox`, where deltas merge); closes the client when the
/// backlog overflows.
async fn write_client(
    id: ClientId,
    mut writer: Box<dyn FrameWrite>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut outbox: Outbox,
) {
    let mut open = true;
    let overflow = |outbox: &Outbox| {
        tracing::warn!(
            client = id,
            merged = outbox.merged(),
            "client does not read fast enough; disconnecting it"
        );
    };
    loop {
        if outbox.is_empty() {
            match rx.recv().await {
                Some(out) => {
                    if !outbox.push(out) {
                        return overflow(&outbox);
                    }
                }
                None => break,
            }
        }
        let Some(line) = outbox.pop() else { continue };
        let send = writer.send(line);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                sent = &mut send => {
                    if let Err(e) = sent {
                        tracing::debug!(client = id, "writing to a client failed: {}", codex_core::ErrorChain(&e));
                        return;
                    }
                    break;
                }
                out = rx.recv(), if open => match out {
                    Some(out) => {
                        if !outbox.push(out) {
                            return overflow(&outbox);
                        }
                    }
                    None => open = false,
                },
            }
        }
        if !open && outbox.is_empty() {
            break;
        }
    }
    if outbox.merged() > 0 {
        tracing::debug!(
            client = id,
            merged = outbox.merged(),
            "merged deltas for a slow client"
        );
    }
    let _ = writer.close().await;
}

/// The line sent to a peer of another user before closing.
pub(super) fn refusal_line(peer_uid: u32, my_uid: u32) -> String {
    let msg = format!("refused: this codex-broker serves uid {my_uid} only (peer uid {peer_uid})");
    let mut line = serde_json::json!({
        "id": null,
        "error": {"code": error_codes::INVALID_REQUEST, "message": msg},
    })
    .to_string();
    line.push('\n');
    line
}
