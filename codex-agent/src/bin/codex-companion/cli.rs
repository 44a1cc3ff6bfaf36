//! The command line of `codex-companion` (clap derive).

use std::path::PathBuf;

use crate::review::ScopeRequest;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use codex_core::ReasoningEffort;

/// Drive the OpenAI Codex CLI from another tool: tasks, reviews and background jobs, through
/// a resident broker that shares one warm `codex app-server`.
///
/// stdout carries the answer (or one JSON document with --json); progress goes to stderr.
/// Exit status: 0 when the turn completed (or the command did what was asked), 1 when it
/// failed, was cancelled or timed out, 2 for bad flags or input, 3 when a job is not
/// finished yet.
#[derive(Debug, Parser)]
#[command(name = "codex-companion", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The workspace to work in (Codex's working root, and whose jobs are listed) instead of
    /// the current directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub cwd: Option<PathBuf>,

    /// Run Codex on a private app-server instead of the shared broker (the variable counts
    /// when set to anything but "", 0, no, false or off).
    #[arg(
        long,
        global = true,
        env = crate::connect::NO_BROKER_ENV,
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub no_broker: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a task: one turn of Codex, in the foreground or as a background job.
    Task(TaskArgs),
    /// Codex's native review of the uncommitted changes or of the branch.
    Review(ReviewArgs),
    /// An adversarial review with a structured verdict and findings sorted by severity.
    AdversarialReview(AdversarialArgs),
    /// List this workspace's jobs, or show one.
    Status(StatusArgs),
    /// Show a job's answer (default: the newest job).
    Result(JobArg),
    /// Cancel a running job (default: the newest running one).
    Cancel(JobArg),
    /// Check the installation: codex, its sign-in, the broker; and say what to do next.
    Setup,
    /// Run a queued background job (started by `task --background`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

impl From<Effort> for ReasoningEffort {
    fn from(e: Effort) -> Self {
        match e {
            Effort::None => ReasoningEffort::None,
            Effort::Minimal => ReasoningEffort::Minimal,
            Effort::Low => ReasoningEffort::Low,
            Effort::Medium => ReasoningEffort::Medium,
            Effort::High => ReasoningEffort::High,
            Effort::Xhigh => ReasoningEffort::Xhigh,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("continuation").multiple(false)))]
pub struct TaskArgs {
    /// Return the job id at once; a detached worker runs the task (see `status`, `result`).
    #[arg(long)]
    pub background: bool,

    /// Let Codex change files (workspace-write sandbox); otherwise it only reads.
    #[arg(long)]
    pub write: bool,

    /// Continue the thread of this workspace's last finished task.
    #[arg(long, group = "continuation")]
    pub resume_last: bool,

    /// Continue the thread THREAD_ID.
    #[arg(long, value_name = "THREAD_ID", group = "continuation")]
    pub resume: Option<String>,

    /// Start a new thread (the default).
    #[arg(long, group = "continuation")]
    pub fresh: bool,

    /// The model (default: codex's configured one).
    #[arg(long, value_name = "M")]
    pub model: Option<String>,

    /// Reasoning effort.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub effort: Option<Effort>,

    /// Read the prompt from file F ("-" for stdin).
    #[arg(long, value_name = "F", conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,

    /// Stop the turn after S seconds (default 1800).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,

    /// The prompt (default: --prompt-file, else stdin when it is not a terminal).
    #[arg(value_name = "PROMPT")]
    pub prompt: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// The working tree when it has changes, else the branch.
    Auto,
    /// The uncommitted changes (staged, unstaged, untracked).
    WorkingTree,
    /// The branch against its merge base with --base.
    Branch,
}

impl From<Scope> for ScopeRequest {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Auto => ScopeRequest::Auto,
            Scope::WorkingTree => ScopeRequest::WorkingTree,
            Scope::Branch => ScopeRequest::Branch,
        }
    }
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The base of a branch review (default: the branch's upstream, else origin/HEAD, main
    /// or master).
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,

    /// What to review.
    #[arg(long, value_enum, default_value = "auto")]
    pub scope: Scope,

    /// The model (default: codex's configured one).
    #[arg(long, value_name = "M")]
    pub model: Option<String>,

    /// Stop the review after S seconds (default 1800).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AdversarialArgs {
    #[command(flatten)]
    pub review: ReviewArgs,

    /// What to look at especially (free text).
    #[arg(value_name = "FOCUS")]
    pub focus: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One job (id or unique id prefix); default: the workspace's jobs.
    #[arg(value_name = "JOB_ID")]
    pub job: Option<String>,

    /// List every job, not only the running ones and the 5 newest finished.
    #[arg(long)]
    pub all: bool,

    /// Wait until the job (or every running job) has finished.
    #[arg(long)]
    pub wait: bool,

    /// Give up waiting after N milliseconds (exit status 3); default: wait as long as the
    /// job runs.
    #[arg(long, value_name = "N", requires = "wait")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct JobArg {
    /// The job (id or unique id prefix).
    #[arg(value_name = "JOB_ID")]
    pub job: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The queued job to run.
    #[arg(value_name = "JOB_ID")]
    pub job: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn conflicts_are_usage_errors() {
        for args in [
            &["codex-companion", "task", "--resume-last", "--fresh", "x"][..],
            &[
                "codex-companion",
                "task",
                "--resume",
                "t",
                "--resume-last",
                "x",
            ],
            &["codex-companion", "task", "--effort", "turbo", "x"],
            &["codex-companion", "task", "--timeout", "0", "x"],
            &["codex-companion", "task", "--prompt-file", "f", "x"],
            &["codex-companion", "review", "--scope", "everything"],
            &["codex-companion", "status", "--timeout-ms", "5"],
            &["codex-companion", "frobnicate"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        let cli = Cli::try_parse_from([
            "codex-companion",
            "task",
            "--write",
            "--effort",
            "high",
            "fix",
            "the",
            "--json",
            "--",
            "--bug",
        ])
        .unwrap();
        let Command::Task(t) = &cli.command else {
            panic!()
        };
        assert!(t.write);
        assert_eq!(t.prompt, ["fix", "the", "--bug"]);
        assert!(cli.global.json);
        let cli =
            Cli::try_parse_from(["codex-companion", "status", "--json", "--cwd", "/x"]).unwrap();
        assert!(cli.global.json);
    }
}
