//! Runs one codex turn through `codex exec --json` and prints what happens.
//!
//! ```text
//! cargo run -p codex-cli-backend --example exec -- [--cd DIR] [--write] [--timeout SECS]
//!     [--model MODEL] [--add-dir DIR] [--resume THREAD_ID] [--skip-git-repo-check] PROMPT
//! ```
//!
//! Uses the codex of the environment (`CODEX_BIN`, else `codex` on `PATH`) and its
//! `CODEX_HOME`. Without `--write` the turn runs in a read-only sandbox; with it, the
//! FullAuto preset (workspace-write sandbox). Each event is printed as one JSON line as it
//! arrives, then the final message. `--resume` runs the turn on an existing thread
//! (`codex exec resume`). Exits 0 only when the turn completed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use codex_cli_backend::CliBackend;
use codex_core::{Backend, Preset, TaskSpec};

const USAGE: &str = "usage: exec [--cd DIR] [--write] [--timeout SECS] [--model MODEL] [--add-dir DIR] [--resume THREAD_ID] [--skip-git-repo-check] PROMPT";

struct Options {
    cd: Option<PathBuf>,
    write: bool,
    timeout: Option<Duration>,
    model: Option<String>,
    add_dirs: Vec<PathBuf>,
    resume: Option<String>,
    skip_git_repo_check: bool,
    prompt: String,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        cd: None,
        write: false,
        timeout: None,
        model: None,
        add_dirs: Vec::new(),
        resume: None,
        skip_git_repo_check: false,
        prompt: String::new(),
    };
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cd" | "-C" => {
                opts.cd = Some(args.next().ok_or("--cd needs a directory")?.into());
            }
            "--write" => opts.write = true,
            "--timeout" => {
                let secs = args.next().ok_or("--timeout needs a number of seconds")?;
                let secs: f64 = secs
                    .parse()
                    .map_err(|_| format!("--timeout: {secs:?} is not a number of seconds"))?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err("--timeout must be positive".into());
                }
                opts.timeout = Some(Duration::from_secs_f64(secs));
            }
            "--model" | "-m" => opts.model = Some(args.next().ok_or("--model needs a name")?),
            "--add-dir" => opts
                .add_dirs
                .push(args.next().ok_or("--add-dir needs a directory")?.into()),
            "--resume" => opts.resume = Some(args.next().ok_or("--resume needs a thread id")?),
            "--skip-git-repo-check" => opts.skip_git_repo_check = true,
            "-h" | "--help" => return Err(USAGE.into()),
            "--" => words.extend(args.by_ref()),
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s}\n{USAGE}"));
            }
            _ => words.push(arg),
        }
    }
    opts.prompt = words.join(" ");
    if opts.prompt.trim().is_empty() {
        return Err(format!("no prompt given\n{USAGE}"));
    }
    Ok(opts)
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };

    let backend = match CliBackend::discover().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}", codex_core::ErrorChain(&e));
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "codex {} at {}",
        backend.binary().version(),
        backend.binary().path().display()
    );

    let mut spec = TaskSpec::new(opts.prompt)
        .preset(if opts.write {
            Preset::FullAuto
        } else {
            Preset::ReadOnly
        })
        .skip_git_repo_check(opts.skip_git_repo_check);
    if let Some(dir) = opts.cd {
        spec = spec.cwd(dir);
    }
    if let Some(t) = opts.timeout {
        spec = spec.timeout(t);
    }
    if let Some(m) = opts.model {
        spec = spec.model(m);
    }
    for dir in opts.add_dirs {
        spec = spec.writable_dir(dir);
    }

    let started = match &opts.resume {
        Some(id) => backend.resume(&id.as_str().into(), spec).await,
        None => backend.start(spec).await,
    };
    let mut run = match started {
        Ok(run) => run,
        Err(e) => {
            eprintln!("error: {}", codex_core::ErrorChain(&e));
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C cancels the run (and kills codex's process group)
    let cancel = run.cancel_handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });

    while let Some(event) = run.next_event().await {
        match serde_json::to_string(&event) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("(unprintable event: {e})"),
        }
    }
    match run.outcome().await {
        Ok(outcome) => {
            println!("--- thread {}", outcome.thread_id);
            println!("{}", outcome.final_message.unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", codex_core::ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}
