//! # codex-cli-backend
//!
//! The codex-bridge backend over one-shot `codex exec --json` processes: every turn is one
//! codex process, its prompt on stdin, its events read from stdout as JSON lines.
//!
//! - [`CliBackend`] implements [`codex_core::Backend`]: [`start`](codex_core::Backend::start)
//!   runs `codex exec`, [`resume`](codex_core::Backend::resume) runs
//!   `codex exec resume ID` (same thread id; codex re-sends the thread's history itself).
//!   Build it with [`CliBackend::builder`] or [`CliBackend::discover`].
//! - [`build_args`] turns a [`codex_core::TaskSpec`] into the command line, deciding each flag
//!   from the probed [`codex_core::Capabilities`] (see the table in [`args`]).
//! - [`decode_line`] and [`JsonlFraming`] turn codex's output into [`codex_core::Event`]s
//!   without ever failing on bad input.
//! - [`Error`] is this crate's error; it reaches callers as
//!   [`codex_core::Error::Backend`] and [`Error::from_core`] gets it back.
//!
//! ## How a run ends
//!
//! | what happened                                     | outcome                                   |
//! |---------------------------------------------------|-------------------------------------------|
//! | `turn.completed`                                  | `Ok(TurnOutcome)`                         |
//! | `turn.failed{error{message}}`                     | [`codex_core::Error::TurnFailed`]         |
//! | codex exited without either                       | [`codex_core::Error::ProcessExited`] (exit code, stderr tail) |
//! | the timeout ([`TaskSpec::timeout`](codex_core::TaskSpec::timeout) or the backend default) fired | [`codex_core::Error::Timeout`] |
//! | [`Run::cancel`](codex_core::Run::cancel), a [`CancelHandle`](codex_core::CancelHandle), or dropping the run | [`codex_core::Error::Cancelled`] |
//!
//! On timeout and cancellation the whole process group is killed (codex, its Node.js
//! launcher, and every command it started), and the run's temporary directory (output
//! schema, last-message file) is removed. `error` events (`Reconnecting... 1/5`) are not
//! terminal: codex may still succeed.
//!
//! ## Flags that differ between codex versions (read from the real `--help` texts)
//!
//! | flag                                       | 0.100 | 0.120 | 0.125 | 0.128 | 0.131 | 0.132 | 0.169 |
//! |--------------------------------------------|-------|-------|-------|-------|-------|-------|-------|
//! | `exec --full-auto`                         | yes   | yes   | yes   | no    | no    | no    | no    |
//! | `exec resume --full-auto`                  | yes   | yes   | yes   | no    | no    | no    | no    |
//! | `exec resume -o/--output-last-message`     | no    | yes   | yes   | yes   | yes   | yes   | yes   |
//! | `exec resume --output-schema`              | no    | no    | no    | no    | no    | yes   | yes   |
//! | `exec resume --sandbox`, `-C`, `--add-dir` | no    | no    | no    | no    | no    | no    | no    |
//!
//! (0.126.0 and 0.127.0 were never published.) Every one of these accepts `exec --json`,
//! `--sandbox`, `-C`, `--add-dir`, `--skip-git-repo-check`, `--ephemeral`,
//! `--output-schema`, `-o`, `-i`, `-m`, `-c`, and none has `exec -a/--ask-for-approval`.
//! (0.129.0, 0.130.0 are like 0.128.0; 0.135.0, 0.140.0 like 0.132.0.) Start and resume
//! with the FullAuto preset were run end to end on 0.100.0, 0.125.0, 0.128.0, 0.140.0 and
//! 0.169.0: `--full-auto` where it exists, else
//! `--sandbox workspace-write -c approval_policy="on-request"` (and on resume
//! `-c sandbox_mode=...`).
//!
//! ## Facts about the real codex (verified with 0.169.0 on Linux)
//!
//! - `codex exec --full-auto` is a usage error (exit 2) in 0.169.0. `codex exec` forces
//!   approvals to "never" anyway: escalations are refused without an item.
//! - `codex exec resume` of 0.169.0 accepts none of `--sandbox`, `-C/--cd`, `--add-dir`: the
//!   sandbox goes as `-c sandbox_mode="..."`, the working directory is the process's current
//!   directory and extra writable directories go as
//!   `-c sandbox_workspace_write.writable_roots=[...]`. It does accept `-m`, `-i`,
//!   `--output-schema`, `-o`, `--ephemeral`, `--skip-git-repo-check` and `--json`.
//! - `-i/--image` takes several values: a positional after it is read as an image
//!   (`exec -i a.png hello` loses the prompt "hello"; `exec resume -i a.png ID -` loses the
//!   thread id), so the arguments end with `-- [THREAD_ID] -`, which 0.169.0 accepts.
//! - The prompt `-` makes codex read it from stdin (a prompt given in argv plus piped stdin
//!   would append stdin as a `<stdin>` block).
//! - `-c key=value` values are parsed as TOML (a value that does not parse is taken as a raw
//!   string), so strings are always quoted here.
//! - `codex exec --json` sends no text deltas; items arrive whole on `item.completed`
//!   (`item.started` for commands, `item.updated` for to-do lists). Exit codes: 0 success; 1
//!   failed turn, bad config, unknown resume id, a cwd outside git without
//!   `--skip-git-repo-check`; 2 usage error.
//! - With an unreachable provider `codex exec` retries forever: always set a timeout.
//! - Resuming an unknown thread id exits 1 before any request, stderr "thread/resume failed:
//!   no rollout found for thread id ...".
//! - A cwd outside any git repository without `--skip-git-repo-check` exits 1 with "Not
//!   inside a trusted directory and --skip-git-repo-check was not specified.".
//! - `-o FILE` receives the last agent message exactly (no trailing newline added); the
//!   backend reads it back as the final message when no `agent_message` item was seen.
//! - `-c model_reasoning_effort="high"` and `-c model_reasoning_summary="detailed"` show in
//!   the request's `reasoning` object; `-m` sets its `model`; `--output-schema` puts
//!   `text.format = {type: "json_schema", strict: true, schema}` in the request.
//! - `codex login status` reports on stored credentials only (an API key in the environment
//!   does not count); `codex login --with-api-key` reads the key from stdin.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

mod args;
mod backend;
mod decode;
mod error;

pub use backend::{CliBackend, CliBackendBuilder};
/// Decodes a whole buffer of `codex exec --json` output at once. For the benchmark
/// (`codex-bridge-bench`) only; not part of the supported API.
#[doc(hidden)]
pub use decode::decode_all;
pub use decode::{DEFAULT_MAX_LINE_BYTES, decode_line, decode_stream};
pub use error::{Command, Error, Result};
