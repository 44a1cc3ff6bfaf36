//! Where codex-bridge keeps its state on disk.
//!
//! One convention for every crate: the probe cache of [`CodexBinary`](crate::CodexBinary),
//! the job stores of `codex-agent` and the broker's socket directory of `codex-asp` all live
//! under [`state_root`].

use std::path::PathBuf;

use crate::Error;

/// The environment variable naming the state root (see [`state_root`]).
pub const STATE_DIR_ENV: &str = "CODEX_BRIDGE_STATE_DIR";

/// The root of codex-bridge's state: `$CODEX_BRIDGE_STATE_DIR` when set and not empty, else
/// `<platform state dir>/codex-bridge` (`$XDG_STATE_HOME`, `~/.local/state`, or the local data
/// directory). [`Error::NoStateDir`] when the platform has none.
///
/// ```
/// // SAFETY of the example: a single-threaded doctest
/// unsafe { std::env::set_var("CODEX_BRIDGE_STATE_DIR", "/tmp/state") };
/// assert_eq!(codex_core::paths::state_root().unwrap(), std::path::Path::new("/tmp/state"));
/// ```
pub fn state_root() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("codex-bridge"))
        .ok_or(Error::NoStateDir)
}
