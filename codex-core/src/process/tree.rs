//! Finding and killing a whole process tree on Linux, through `/proc`.
//!
//! Killing codex's process group is not enough: codex starts the login shell of its shell
//! snapshot in a session of its own, and whatever that shell starts (a `pyenv rehash` loop
//! from `~/.bashrc`, say) is re-parented to init when the shell ends. So a tree is
//! everything that matches any of:
//!
//! - the root process and its descendants by parent links (only while the root has not been
//!   reaped: after that its pid may belong to a stranger);
//! - the members of the root's process group (a group id is never reused while a member
//!   lives);
//! - the processes whose environment holds the tree's marker (`KEY=VALUE`, set on the root
//!   by [`CodexCommand::spawn`](super::CodexCommand::spawn) and inherited by everything it
//!   starts, whatever group, session or parent it ends up with);
//!
//! and, again, the descendants of any of those. The tree is frozen before it is killed:
//! every member found is stopped (SIGSTOP) so that it cannot fork any more, and the walk is
//! repeated until it finds nobody new; then every member gets SIGKILL. This process, its
//! ancestors and init are never part of a tree.
//!
//! Members that are children of this process (orphans adopted by a child subreaper, see
//! [`become_subreaper`](super::become_subreaper)) are reaped once they died.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// At most this many freeze rounds (each finds the children forked since the previous one).
const MAX_ROUNDS: usize = 32;
/// How long a background reaper waits for killed children of ours to die.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// What belongs to a tree.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope<'a> {
    /// A live (not yet reaped) process whose descendants belong to the tree.
    pub root: Option<i32>,
    /// A process group whose members belong to the tree.
    pub group: Option<i32>,
    /// A session whose members belong to the tree.
    pub session: Option<i32>,
    /// An environment entry (`KEY=VALUE`) that marks members.
    pub marker: Option<&'a [u8]>,
    /// A pid never to reap here (a child that someone else waits for).
    pub not_reaped: Option<i32>,
}

/// One line of `/proc/PID/stat`, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    pid: i32,
    ppid: i32,
    pgid: i32,
    sid: i32,
    zombie: bool,
}

/// Parses `/proc/PID/stat` (`pid (comm) state ppid pgrp session ...`; comm may hold spaces
/// and parentheses, so the fields are counted from the last `)`).
fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    let sid = fields.next()?.parse().ok()?;
    Some(Stat {
        pid,
        ppid,
        pgid,
        sid,
        zombie: matches!(state, "Z" | "X"),
    })
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process `/proc` lists now.
fn scan() -> Vec<Stat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .collect()
}

fn has_marker(pid: i32, marker: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|var| var == marker))
        .unwrap_or(false)
}

/// This process and its ancestors: never part of a tree.
fn protected() -> BTreeSet<i32> {
    let mut out = BTreeSet::from([0, 1]);
    let mut pid = i32::try_from(std::process::id()).unwrap_or(0);
    while pid > 1 && out.insert(pid) {
        pid = read_stat(pid).map_or(0, |s| s.ppid);
    }
    out
}

/// The members of the tree among `procs` (zombies included, for reaping).
fn collect(
    scope: &Scope<'_>,
    procs: &[Stat],
    protected: &BTreeSet<i32>,
    marked: &mut BTreeMap<i32, bool>,
) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seeds: Vec<i32> = Vec::new();
    if let Some(root) = scope.root
        && procs.iter().any(|p| p.pid == root)
    {
        seeds.push(root);
    }
    for p in procs {
        let member = scope.group.is_some_and(|g| g > 1 && p.pgid == g)
            || scope.session.is_some_and(|s| s > 1 && p.sid == s)
            || (!p.zombie
                && scope
                    .marker
                    .is_some_and(|m| *marked.entry(p.pid).or_insert_with(|| has_marker(p.pid, m))));
        if member {
            seeds.push(p.pid);
        }
    }
    let mut tree = BTreeSet::new();
    while let Some(pid) = seeds.pop() {
        if protected.contains(&pid) || !tree.insert(pid) {
            continue;
        }
        if let Some(kids) = children.get(&pid) {
            seeds.extend(kids.iter().copied());
        }
    }
    tree
}

/// Freezes the tree of `scope`, kills every member (SIGKILL) and reaps those that are
/// children of this process (in the background). Returns how many processes were killed.
pub(crate) fn kill_tree(scope: &Scope<'_>) -> usize {
    let protected = protected();
    let mut marked = BTreeMap::new();
    let mut frozen: BTreeSet<i32> = BTreeSet::new();
    let mut ours: BTreeSet<i32> = BTreeSet::new();
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    for _ in 0..MAX_ROUNDS {
        let procs = scan();
        let tree = collect(scope, &procs, &protected, &mut marked);
        let mut new = false;
        for p in procs.iter().filter(|p| tree.contains(&p.pid)) {
            if p.ppid == me && Some(p.pid) != scope.not_reaped {
                ours.insert(p.pid);
            }
            if !p.zombie && frozen.insert(p.pid) {
                new = true;
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGSTOP);
            }
        }
        if !new {
            break;
        }
    }
    for pid in &frozen {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    // anything of the group that escaped the walk (a member forked between two reads)
    if let Some(group) = scope.group
        && group > 1
        && !protected.contains(&group)
    {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    if !ours.is_empty() {
        reap_in_background(ours);
    }
    frozen.len()
}

/// Reaps killed children of ours (orphans this process adopted as a subreaper) once they
/// died, on a short-lived thread, for at most [`REAP_LIMIT`].
fn reap_in_background(pids: BTreeSet<i32>) {
    let reap = move || {
        let deadline = Instant::now() + REAP_LIMIT;
        let mut left = pids;
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|pid| {
                !matches!(
                    waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_)
                )
            });
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("codex-reaper".into())
        .spawn(reap)
    {
        tracing::debug!("could not start a thread to reap killed processes: {e}");
    }
}

/// Reaps the dead children of this process that are not in `keep` (pids someone else waits
/// for). Returns how many were reaped.
pub(crate) fn reap_dead_children(keep: &BTreeSet<i32>) -> usize {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let mut reaped = 0;
    for p in scan() {
        if p.ppid == me
            && p.zombie
            && !keep.contains(&p.pid)
            && matches!(
                waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
            )
        {
            reaped += 1;
        }
    }
    reaped
}

/// The session `pid` leads, if it leads one.
pub(crate) fn session_led_by(pid: i32) -> Option<i32> {
    read_stat(pid).filter(|s| s.sid == pid).map(|_| pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        let s = parse_stat("4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 ...").unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                ppid: 1,
                pgid: 4242,
                sid: 4242,
                zombie: false
            }
        );
        assert!(parse_stat("7 (x) Z 3 3 3 0").unwrap().zombie);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn collect_follows_parents_groups_sessions_and_never_protected_ones() {
        let p = |pid, ppid, pgid, sid| Stat {
            pid,
            ppid,
            pgid,
            sid,
            zombie: false,
        };
        let procs = [
            p(100, 50, 100, 50),   // root, leads its group
            p(101, 100, 100, 50),  // child
            p(102, 101, 102, 102), // grandchild that started a session
            p(103, 102, 102, 102), // its child
            p(104, 1, 102, 102),   // orphan of that session: not reachable (no marker)
            p(105, 1, 100, 50),    // orphan still in the root's group
            p(106, 105, 106, 106), // its child
            p(200, 1, 200, 200),   // a stranger
            p(50, 1, 50, 50),      // the caller
        ];
        let scope = Scope {
            root: Some(100),
            group: Some(100),
            ..Scope::default()
        };
        let protected = BTreeSet::from([0, 1, 50]);
        let tree = collect(&scope, &procs, &protected, &mut BTreeMap::new());
        assert_eq!(tree, BTreeSet::from([100, 101, 102, 103, 105, 106]));
        let session = Scope {
            session: Some(102),
            ..Scope::default()
        };
        let tree = collect(&session, &procs, &protected, &mut BTreeMap::new());
        assert_eq!(tree, BTreeSet::from([102, 103, 104]));
        // a reaped root (not listed) seeds nothing
        let gone = Scope {
            root: Some(999),
            ..Scope::default()
        };
        assert!(collect(&gone, &procs, &protected, &mut BTreeMap::new()).is_empty());
        let caller = Scope {
            root: Some(50),
            ..Scope::default()
        };
        assert!(collect(&caller, &procs, &protected, &mut BTreeMap::new()).is_empty());
    }
}
