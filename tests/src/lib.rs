//! Test support for codex-bridge: a scriptable mock of the OpenAI Responses API
//! ([`mock::MockModel`]), a private offline `CODEX_HOME` ([`home::CodexHome`]), throw-away
//! workspaces ([`home::TempWorkspace`]), the pinned-codex locator ([`pinned::pinned_codex`]),
//! process checks ([`procs`]), a codex whose app-server never answers ([`silent`]) and the
//! workspace's binaries for other packages' tests ([`bins`]).
//!
//! The crate also builds binaries: `fake-codex`, a fault-injecting stand-in for codex
//! (`env!("CARGO_BIN_EXE_fake-codex")` in this package's tests; see its source for the
//! `FAKE_CODEX_MODE` values), `codex-bridge-demo`, and `codex-bridge-bench`, the benchmark
//! behind `cargo xtask bench` and `BENCHMARKS.md` (its logic is [`mod@bench`]).
//!
//! Recorded output of the real `codex exec --json` lives in `tests/fixtures/exec/`
//! ([`fixtures_dir`]).

pub mod bench;
pub mod bins;
pub mod home;
pub mod mock;
pub mod pinned;
pub mod procs;
pub mod silent;

pub use home::{CodexHome, TempWorkspace};
pub use mock::{MockModel, RecordedRequest, Reply};
pub use pinned::{PINNED_CODEX_VERSION, VersionWrapper, pinned_binary, pinned_codex};

/// `<workspace>/tests/fixtures`, where recorded codex output is kept.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
