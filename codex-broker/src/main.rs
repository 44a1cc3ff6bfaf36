//! `codex-broker`: keeps one `codex app-server` warm and shares it among many clients over a
//! per-user unix socket (see `codex_asp::broker`).
//!
//! ```text
//! codex-broker serve [--codex PATH] [--idle-timeout SECS] [--init-timeout SECS] [--socket-dir DIR]
//! codex-broker status [--codex PATH] [--socket-dir DIR] [--json]
//! codex-broker stop [--codex PATH] [--socket-dir DIR]
//! ```
//!
//! `CODEX_HOME` comes from the environment (default `~/.codex`). Log lines go to stderr
//! (a broker started by `broker::ensure` has stderr appended to `broker-<key>.log` next to
//! its socket); `CODEX_BROKER_LOG=debug|trace|warn` changes the level (default `info`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use codex_asp::broker::{self, Broker, BrokerOptions, BrokerStatus};

#[derive(Debug, Parser)]
#[command(
    name = "codex-broker",
    version,
    about = "Share one warm `codex app-server` among many clients over a per-user unix socket"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Target {
    /// The codex binary (default: $CODEX_BIN, else `codex` on PATH).
    #[arg(long, value_name = "PATH")]
    codex: Option<PathBuf>,
    /// The directory of the socket, pid, lock and log files (default:
    /// $XDG_RUNTIME_DIR/codex-bridge/broker, else the codex-bridge state dir + /broker).
    #[arg(long, value_name = "DIR")]
    socket_dir: Option<PathBuf>,
}

impl Target {
    fn options(&self) -> BrokerOptions {
        let mut options = BrokerOptions::new();
        if let Some(codex) = &self.codex {
            options = options.codex(codex);
        }
        if let Some(dir) = &self.socket_dir {
            options = options.socket_dir(dir);
        }
        options
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker in the foreground until it is idle or stopped.
    Serve {
        #[command(flatten)]
        target: Target,
        /// Exit after this many seconds with no client and no running turn (0: never).
        #[arg(long, value_name = "SECS", default_value_t = 600.0)]
        idle_timeout: f64,
        /// How long the app-server gets to answer the broker's `initialize` (default 30).
        #[arg(long, value_name = "SECS")]
        init_timeout: Option<f64>,
        /// An extra argument for `codex app-server` (repeatable), e.g.
        /// `--app-server-arg=-c --app-server-arg=model="o3"`.
        #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
        app_server_arg: Vec<String>,
        /// Started by a client in the background: ignore SIGHUP.
        #[arg(long, hide = true)]
        detached: bool,
    },
    /// Print the running broker's status.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the raw JSON status.
        #[arg(long)]
        json: bool,
    },
    /// Stop the running broker.
    Stop {
        #[command(flatten)]
        target: Target,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("codex-broker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("codex-broker: {}", codex_core::ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            target,
            idle_timeout,
            init_timeout,
            app_server_arg,
            detached,
        } => serve(target, idle_timeout, init_timeout, app_server_arg, detached).await,
        Command::Status { target, json } => match broker::status(&target.options()).await {
            Ok(status) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    print_status(&status);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(broker::Error::NotRunning { socket }) => {
                println!("not running (socket {})", socket.display());
                Ok(ExitCode::from(3))
            }
            Err(e) => Err(e).context("reading the broker's status"),
        },
        Command::Stop { target } => match broker::shutdown(&target.options()).await {
            Ok(()) => {
                println!("stopped");
                Ok(ExitCode::SUCCESS)
            }
            Err(broker::Error::NotRunning { socket }) => {
                println!("not running (socket {})", socket.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(e).context("stopping the broker"),
        },
    }
}

/// Makes the broker a child subreaper, so that what codex's commands leave behind when
/// their parent dies (the children of its shell-snapshot login shell) is re-parented here
/// and killed with the app-server's process tree, and reaps those orphans when they exit by
/// themselves (every other child of the broker is started and waited for by
/// `codex_core::process`).
fn adopt_orphans() {
    use tokio::signal::unix::{SignalKind, signal};
    match codex_core::process::become_subreaper() {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!("{e}; orphans of codex's commands go to init");
            return;
        }
    }
    let Ok(mut child) = signal(SignalKind::child()) else {
        tracing::warn!("cannot watch SIGCHLD; adopted orphans are reaped when the broker exits");
        return;
    };
    tokio::spawn(async move {
        while child.recv().await.is_some() {
            let reaped = codex_core::process::reap_orphans();
            if reaped > 0 {
                tracing::debug!(reaped, "reaped adopted orphans");
            }
        }
    });
}

async fn serve(
    target: Target,
    idle_timeout: f64,
    init_timeout: Option<f64>,
    app_server_args: Vec<String>,
    detached: bool,
) -> anyhow::Result<ExitCode> {
    install_logger();
    let idle = if idle_timeout > 0.0 && idle_timeout.is_finite() {
        Some(Duration::from_secs_f64(idle_timeout.min(1e9)))
    } else {
        None
    };
    let mut options = target.options().idle_timeout(idle);
    if let Some(secs) = init_timeout {
        if !(secs > 0.0 && secs.is_finite()) {
            anyhow::bail!("--init-timeout: {secs} is not a positive number of seconds");
        }
        options = options.upstream_init_timeout(Duration::from_secs_f64(secs.min(1e9)));
    }
    for arg in app_server_args {
        options = options.app_server_arg(arg);
    }
    let broker = match Broker::bind(options).await {
        Ok(b) => b,
        Err(e @ broker::Error::AlreadyRunning { .. }) => {
            eprintln!("codex-broker: {e}");
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e).context("starting the broker"),
    };
    adopt_orphans();
    let handle = broker.handle();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    if !detached {
                        break;
                    }
                }
            }
        }
        tracing::info!("signal received; stopping");
        handle.shutdown();
    });
    let reason = broker.run().await.context("serving")?;
    tracing::info!(?reason, "codex-broker exited");
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &BrokerStatus) {
    println!("pid:          {}", status.pid);
    println!("uptime:       {:.1} s", status.uptime_ms as f64 / 1000.0);
    println!("socket:       {}", status.socket.display());
    println!("codex:        {}", status.codex.display());
    println!("CODEX_HOME:   {}", status.codex_home.display());
    println!(
        "codex:        {}",
        status.codex_version.as_deref().unwrap_or("unknown version")
    );
    println!(
        "app-server:   {}{} (restarts: {})",
        status.app_server,
        status
            .app_server_pid
            .map(|p| format!(", pid {p}"))
            .unwrap_or_default(),
        status.restarts
    );
    if let Some(exit) = &status.last_exit {
        println!("last exit:    {exit}");
    }
    println!("clients:      {}", status.clients.len());
    for c in &status.clients {
        println!(
            "  #{} {} pid {}{}",
            c.id,
            c.name.as_deref().unwrap_or("-"),
            c.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            if c.initialized {
                ""
            } else {
                " (not initialized)"
            }
        );
    }
    println!("threads:      {}", status.threads.len());
    println!("running:      {}", status.running_turns.len());
    for t in &status.running_turns {
        println!("  thread {} turn {}", t.thread_id, t.turn_id);
    }
}

/// A small tracing subscriber writing one line per event to stderr.
struct StderrLogger {
    max: tracing::Level,
    next_span: AtomicU64,
}

fn install_logger() {
    let max = match std::env::var("CODEX_BROKER_LOG").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let _ = tracing::subscriber::set_global_default(StderrLogger {
        max,
        next_span: AtomicU64::new(1),
    });
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

impl tracing::Subscriber for StderrLogger {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!(
            "{}.{:03} {:5} [{}] {}{}",
            now.as_secs(),
            now.subsec_millis(),
            event.metadata().level(),
            std::process::id(),
            fields.message,
            fields.rest
        );
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
