//! The child-subreaper opt-in (`codex_core::process::become_subreaper`), in a test binary of
//! its own: it changes the whole test process. Linux only.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use codex_core::process::{CodexCommand, become_subreaper, kill_tree, reap_orphans};

/// Set in the re-executed test binary that plays a companion worker.
const WORKER_ENV: &str = "CODEX_CORE_SUBREAPER_TEST_WORKER";

/// `(ppid, state)` of a process, `None` once it is gone.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(") ")?;
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

fn gone(pid: u32) -> bool {
    stat(pid).is_none_or(|(_, state)| state == 'Z')
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pid(file: &Path) -> u32 {
    let mut pid = None;
    wait_until("a pid file", || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap_or_default()
}

/// A shell command that leaves an orphan behind: in a session of its own, with an empty
/// environment (no tree marker), its parent gone. It writes its pid to `file`, then runs
/// `then`.
fn orphan(file: &Path, then: &str) -> String {
    format!(
        "(setsid env -i /bin/sh -c 'echo $$ > {}; {then}' &)",
        file.display()
    )
}

/// Played by the re-executed test binary: a subreaper that owns a codex-like tree which
/// leaves a marker-less orphan, then waits to be killed.
fn worker(dir: &Path) {
    assert!(become_subreaper().expect("prctl"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let orphan_file = dir.join("orphan");
        let script = format!(
            "{}; echo $$ > {}; exec sleep 300",
            orphan(&orphan_file, "exec sleep 300"),
            dir.join("codex").display()
        );
        let _codex = CodexCommand::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let pid = read_pid(&orphan_file);
        // adopted by this process, not by init
        wait_until("the orphan to be adopted", || {
            stat(pid).is_some_and(|(ppid, _)| ppid == std::process::id())
        });
        std::fs::write(dir.join("ready"), b"").unwrap();
        tokio::time::sleep(Duration::from_secs(300)).await;
    });
}

#[test]
fn a_subreaper_worker_keeps_marker_less_orphans_within_reach_of_its_tree_kill() {
    if let Some(dir) = std::env::var_os(WORKER_ENV) {
        worker(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut worker = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_subreaper_worker_keeps_marker_less_orphans_within_reach_of_its_tree_kill",
            "--nocapture",
        ])
        .env(WORKER_ENV, dir.path())
        .spawn()
        .unwrap();
    wait_until("the worker to be ready", || {
        dir.path().join("ready").exists()
    });
    let orphan = read_pid(&dir.path().join("orphan"));
    let codex = read_pid(&dir.path().join("codex"));
    let killed = kill_tree(worker.id());
    let _ = worker.wait();
    assert!(killed >= 3, "killed {killed}");
    wait_until("the tree to die", || gone(orphan) && gone(codex));
}

#[test]
fn adopted_orphans_that_exit_are_reaped_on_request() {
    if std::env::var_os(WORKER_ENV).is_some() {
        return;
    }
    assert!(become_subreaper().expect("prctl"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orphan");
    let status = Command::new("sh")
        .args(["-c", &orphan(&file, "sleep 0.2")])
        .status()
        .unwrap();
    assert!(status.success());
    let pid = read_pid(&file);
    // it becomes a zombie child of this process, until reaped here
    wait_until("the orphan to die as our zombie", || {
        stat(pid).is_some_and(|(ppid, state)| ppid == std::process::id() && state == 'Z')
    });
    let mut reaped = 0;
    wait_until("the zombie to be reaped", || {
        reaped += reap_orphans();
        stat(pid).is_none()
    });
    assert!(reaped >= 1);
}
