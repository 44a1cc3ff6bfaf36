//! Where a broker lives: its private directory and the socket, pid, lock and log files of one
//! (codex binary, `CODEX_HOME`) pair.

use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::BrokerOptions;
use super::error::{Error, Result};

/// The longest path a unix socket address can hold (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The files of one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerPaths {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub pid: PathBuf,
    pub lock: PathBuf,
    pub log: PathBuf,
    pub codex: PathBuf,
    pub codex_home: PathBuf,
}

impl BrokerPaths {
    /// Resolves the codex binary, `CODEX_HOME` and the directory of `options`.
    pub fn resolve(options: &BrokerOptions) -> Result<BrokerPaths> {
        let codex = options.resolve_codex()?;
        let codex_home = options.resolve_codex_home();
        let base = match &options.socket_dir {
            Some(dir) => absolute(dir)?,
            None => default_dir()?,
        };
        Ok(Self::in_dir(base, codex, codex_home, current_uid()))
    }

    /// The files for `codex` and `codex_home` under `base`, or under
    /// `/tmp/codex-bridge-<uid>/` when the socket path would be too long.
    pub fn in_dir(base: PathBuf, codex: PathBuf, codex_home: PathBuf, uid: u32) -> BrokerPaths {
        let key = key(&codex, &codex_home);
        let name = format!("broker-{key}");
        let mut dir = base;
        if dir.join(format!("{name}.sock")).as_os_str().len() > MAX_SOCKET_PATH {
            dir = fallback_dir(uid);
        }
        BrokerPaths {
            socket: dir.join(format!("{name}.sock")),
            pid: dir.join(format!("{name}.pid")),
            lock: dir.join(format!("{name}.lock")),
            log: dir.join(format!("{name}.log")),
            dir,
            codex,
            codex_home,
        }
    }

    /// Creates the directory (mode 0700) or checks that an existing one is ours and private.
    pub fn prepare_dir(&self) -> Result<()> {
        ensure_private_dir(&self.dir)
    }

    /// The pid in the pid file, if any.
    pub fn read_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Writes the pid file (mode 0600), atomically.
    pub fn write_pid(&self, pid: u32) -> Result<()> {
        let tmp = self.pid.with_extension("pid.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            writeln!(file, "{pid}")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.pid)
        };
        write().map_err(|e| Error::io(format!("writing {}", self.pid.display()), e))
    }

    /// Whether some process holds the lock file (a broker runs).
    pub fn lock_held(&self) -> bool {
        let Ok(file) = OpenOptions::new().read(true).open(&self.lock) else {
            return false;
        };
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => {
                let _ = fs4::fs_std::FileExt::unlock(&file);
                false
            }
            Ok(false) => true,
            Err(_) => false,
        }
    }
}

/// The default directory: `$XDG_RUNTIME_DIR/codex-bridge/broker` when that variable is set,
/// else `<state root>/broker` ([`codex_core::paths::state_root`]).
pub(crate) fn default_dir() -> Result<PathBuf> {
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        let runtime = PathBuf::from(runtime);
        if runtime.is_absolute() {
            return Ok(runtime.join("codex-bridge").join("broker"));
        }
    }
    let root = codex_core::paths::state_root().map_err(|e| Error::Config {
        detail: format!(
            "no directory for the broker's socket ({e}); set BrokerOptions::socket_dir"
        ),
    })?;
    Ok(root.join("broker"))
}

/// The short fallback directory for a socket path that would be too long.
pub(crate) fn fallback_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/codex-bridge-{uid}"))
}

/// This process's real user id.
pub(crate) fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// 12 hex digits of FNV-1a over the codex path and `CODEX_HOME`.
pub(crate) fn key(codex: &Path, codex_home: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(codex.as_os_str().as_encoded_bytes());
    eat(&[0]);
    eat(codex_home.as_os_str().as_encoded_bytes());
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}

/// `path` made absolute against the current directory (without resolving symlinks).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(format!("resolving {}", path.display()), e))
}

/// `path` canonicalised when it exists, else made absolute.
pub(crate) fn canonical_or_absolute(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

/// Creates `dir` (and its parents) with mode 0700, or checks an existing one: a real
/// directory, owned by this user, not readable or writable by others (a group/other bit on
/// a directory we own is removed).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        return Err(Error::io(format!("creating {}", dir.display()), e));
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("inspecting {}", dir.display()), e))?;
    if !meta.file_type().is_dir() {
        return Err(Error::InsecureDir {
            path: dir.to_owned(),
            detail: "it is not a directory (a symlink?)".into(),
        });
    }
    let uid = current_uid();
    if meta.uid() != uid {
        return Err(Error::InsecureDir {
            path: dir.to_owned(),
            detail: format!(
                "it is owned by uid {}, not by this user (uid {uid})",
                meta.uid()
            ),
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("making {} private (0700)", dir.display()), e))?;
    }
    Ok(())
}

/// The value `options.env` gives `key`: `Some(Some(v))` set, `Some(None)` removed, `None`
/// not mentioned.
pub(crate) fn env_override<'a>(
    env: &'a [(OsString, Option<OsString>)],
    key: &str,
) -> Option<Option<&'a OsString>> {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_stable() {
        let a = key(Path::new("/usr/bin/codex"), Path::new("/home/u/.codex"));
        let b = key(Path::new("/usr/bin/codex"), Path::new("/home/u/.codex2"));
        assert_eq!(a.len(), 12);
        assert_ne!(a, b);
        assert_eq!(
            a,
            key(Path::new("/usr/bin/codex"), Path::new("/home/u/.codex"))
        );
    }

    #[test]
    fn long_dirs_fall_back_to_tmp() {
        let long = PathBuf::from(format!("/{}", "d".repeat(120)));
        let paths = BrokerPaths::in_dir(long, "/c".into(), "/h".into(), 1234);
        assert_eq!(paths.dir, PathBuf::from("/tmp/codex-bridge-1234"));
        assert!(paths.socket.as_os_str().len() <= MAX_SOCKET_PATH);
        let short = BrokerPaths::in_dir("/run/user/1".into(), "/c".into(), "/h".into(), 1);
        assert_eq!(short.dir, PathBuf::from("/run/user/1"));
        assert!(short.socket.to_string_lossy().ends_with(".sock"));
        assert_eq!(short.lock.extension().unwrap(), "lock");
    }
}
