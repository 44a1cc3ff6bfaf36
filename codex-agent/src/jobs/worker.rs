//! The process that runs a job, told apart from a later process that got its pid.
//!
//! Linux only: liveness and start times are read from `/proc/<pid>/stat`.

use std::fs;

/// A worker process: its pid and, when known, its start time (clock ticks since boot), so a
/// pid the system has since given to another process is not taken for the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    pid: u32,
    start_time: Option<u64>,
}

impl Worker {
    /// Process `pid` as it is now (its start time read at once).
    ///
    /// ```
    /// let me = codex_agent::jobs::Worker::of(std::process::id());
    /// assert!(me.is_alive());
    /// assert!(!codex_agent::jobs::Worker::of(u32::MAX).is_alive());
    /// ```
    pub fn of(pid: u32) -> Worker {
        Worker {
            pid,
            start_time: start_time(pid),
        }
    }

    pub(crate) fn from_parts(pid: u32, start_time: Option<u64>) -> Worker {
        Worker { pid, start_time }
    }

    /// The process id.
    pub fn pid(self) -> u32 {
        self.pid
    }

    /// The start time, in clock ticks since boot, when it could be read.
    pub fn start_time(self) -> Option<u64> {
        self.start_time
    }

    /// Whether the process is alive (not a zombie) and, when its start time is known, still
    /// the same process.
    pub fn is_alive(self) -> bool {
        alive(self.pid, self.start_time)
    }
}

/// Whether process `pid` is alive and (when known) still the same process.
fn alive(pid: u32, start_time: Option<u64>) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    // a zombie is dead for our purposes
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
            return false;
        }
        if let (Some(expected), Some(actual)) = (start_time, fields.get(19)) {
            return actual.parse::<u64>().ok() == Some(expected);
        }
    }
    true
}

/// The start time of process `pid` in clock ticks since boot (Linux), to tell a reused pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}
