//! A stand-in for codex whose `app-server` never answers: a shell script that reads its
//! input forever and writes nothing, for tests of start-up deadlines.
//!
//! `--version` prints `codex-cli 0.169.0` and any other command prints an empty help text
//! (`Options:`), so that probing it succeeds. `app-server` writes its pid to
//! `$FAKE_PID_FILE` when that is set, then reads stdin until killed, keeping its stdout open
//! (a process that closes stdout is killed by the stdio transport after 2 s). Its processes carry the
//! environment they were started with (a test's `CODEX_HOME`), so
//! [`processes_with_env`](crate::procs::processes_with_env) finds them.

use std::path::{Path, PathBuf};

/// The script's text.
pub const SCRIPT: &str = "#!/bin/sh\n\
case \"$1\" in\n\
  --version) echo 'codex-cli 0.169.0' ;;\n\
  app-server)\n\
    if [ -n \"$FAKE_PID_FILE\" ]; then echo $$ > \"$FAKE_PID_FILE\"; fi\n\
    exec cat 3>&1 > /dev/null ;;\n\
  *) echo 'Options:' ;;\n\
esac\n";

/// Writes the script as `dir/codex` (executable) and returns its path.
pub fn silent_codex(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("codex");
    std::fs::write(&path, SCRIPT).expect("write the silent codex");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make the silent codex executable");
    path
}
