//! Finding processes by an environment variable, to check that nothing a test started
//! survives it.
//!
//! Every codex a test starts carries `CODEX_HOME=<that test's private home>`, and codex passes
//! its environment on to the commands it runs, so scanning `/proc/*/environ` for that pair
//! finds the whole tree, however it was re-parented. Linux only.
//!
//! How the real codex 0.169.0 process tree looks (checked on the binary, Node.js 20):
//! - `node_modules/.bin/codex` is a Node.js launcher. On Node versions with
//!   `process.execve` it replaces itself with the native binary; on Node 20 (this machine)
//!   it stays as the parent, spawns the native `codex` and forwards SIGINT, SIGTERM and
//!   SIGHUP to it (both are gone about 200 ms after SIGTERM or SIGINT). SIGKILL of the
//!   launcher alone leaves the native codex running, re-parented to init: kill the whole
//!   process group (spawn codex with `process_group(0)`), or signal with SIGTERM first.
//! - The launcher adds `CODEX_MANAGED_BY_NPM=1` and `CODEX_MANAGED_PACKAGE_ROOT` to the
//!   environment of the native binary.
//! - Commands that codex runs (`exec_command`) live under a PTY in a session and process
//!   group of their own, so killing codex's process group does not signal them directly;
//!   they still go away at once, hung up when codex's PTY closes. They inherit
//!   `CODEX_HOME`, so [`processes_with_env`] finds them too.

use std::time::{Duration, Instant};

use crate::home::CodexHome;

/// The ids of the live processes (other than this one) whose environment holds `key=value`
/// exactly. Zombies (whose environment is gone) and processes that cannot be read are not
/// listed.
pub fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let wanted = format!("{key}={value}").into_bytes();
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|environ| {
                    environ
                        .split(|b| *b == 0)
                        .any(|var| var == wanted.as_slice())
                })
                .unwrap_or(false)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The live processes that belong to `home`: those whose environment carries its
/// `CODEX_HOME`, or the private `HOME` of a [realistic](CodexHome::realistic) home (the
/// login shell of codex's shell snapshot and the children its profile left behind).
pub fn processes_of(home: &CodexHome) -> Vec<u32> {
    let mut pids = processes_with_env("CODEX_HOME", &home.path().to_string_lossy());
    if let Some(user_home) = home.user_home() {
        pids.extend(processes_with_env("HOME", &user_home.to_string_lossy()));
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Waits until no process belongs to `home` ([`processes_of`]). `Err` describes those still
/// alive when `timeout` ran out ([`describe`]).
pub async fn wait_until_home_is_quiet(home: &CodexHome, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let pids = processes_of(home);
        if pids.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(describe(&pids));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// [`wait_until_home_is_quiet`] for tests without a runtime.
pub fn wait_until_home_is_quiet_blocking(
    home: &CodexHome,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = processes_of(home);
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(describe(&pids));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `pid (ppid, pgid, sid): command line` of each process, one a line, for failure messages.
pub fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ids: Vec<&str> = stat
                .rsplit_once(") ")
                .map(|(_, rest)| rest.split(' ').skip(1).take(3).collect())
                .unwrap_or_default();
            let mut cmdline = cmdline.trim().to_owned();
            if cmdline.len() > 160 {
                let mut cut = 160;
                while !cmdline.is_char_boundary(cut) {
                    cut -= 1;
                }
                cmdline.truncate(cut);
                cmdline.push('…');
            }
            format!("{pid} (ppid, pgid, sid {}): {cmdline}", ids.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends SIGKILL to every process of `home` ([`processes_of`]), for the clean-up of a
/// failing test.
pub fn kill_all_of(home: &CodexHome) {
    for pid in processes_of(home) {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Waits until no process carries `key=value` any more. `Err` lists those still alive when
/// `timeout` ran out.
pub fn wait_until_gone(key: &str, value: &str, timeout: Duration) -> Result<(), Vec<u32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = processes_with_env(key, value);
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(pids);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// [`wait_until_gone`] for async tests (polls without blocking the runtime).
pub async fn wait_until_gone_async(
    key: &str,
    value: &str,
    timeout: Duration,
) -> Result<(), Vec<u32>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let pids = processes_with_env(key, value);
        if pids.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(pids);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sends SIGKILL to the process group `pgid` (a child spawned with `process_group(0)` leads
/// a group whose id is its pid). Errors, such as a group already gone, are ignored.
pub fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Kills a process group when dropped, so that a failing test leaves no codex behind (a
/// SIGKILL of the Node.js launcher alone would orphan the native binary).
#[derive(Debug)]
pub struct GroupGuard {
    pgid: Option<u32>,
}

impl GroupGuard {
    /// Guards the group led by `pgid`; `None` guards nothing.
    pub fn new(pgid: Option<u32>) -> GroupGuard {
        GroupGuard { pgid }
    }

    /// Kills the group now.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }

    /// Stops guarding (the group is left alone).
    pub fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
