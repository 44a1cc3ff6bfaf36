//! What the benchmark reads from `/proc` (Linux only): resident memory, CPU time, and the
//! process tree under a pid.

use std::collections::HashMap;

/// The kernel's clock tick for `utime`/`stime` in `/proc/PID/stat` (`USER_HZ`, 100 on every
/// Linux architecture the project runs on).
pub const CLOCK_TICKS_PER_SEC: u64 = 100;

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), in KiB; `None` when the
/// process is gone or has no such field (a zombie has no `VmRSS`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&text, field)
}

/// [`status_kib`] of `/proc/self`.
pub fn self_status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&text, field)
}

fn parse_status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The fields of `/proc/PID/stat` after the command name, so that index 0 is `state` (field 3
/// in proc(5)), index 1 `ppid`, index 11 `utime`, index 12 `stime`.
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// The parent pid of `pid`.
pub fn ppid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&text)?.get(1)?.parse().ok()
}

/// User plus system CPU time of `pid` (all its threads, not its children), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_ticks_of(&text)
}

/// [`cpu_ticks`] plus the CPU time of its children that exited and were waited for
/// (`cutime`, `cstime`): what a process and its finished helpers (short-lived shells...)
/// used.
pub fn cpu_ticks_with_children(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&text)?;
    let mut total = 0;
    for i in 11..=14 {
        total += fields.get(i)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// [`cpu_ticks`] of this process.
pub fn self_cpu_ticks() -> Option<u64> {
    cpu_ticks_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn cpu_ticks_of(text: &str) -> Option<u64> {
    let fields = stat_fields(text)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Every live process below `pid` (children, grandchildren, ...), parents before children.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(parent) = ppid(child) {
                children.entry(parent).or_default().push(child);
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        if let Some(kids) = children.get(&p) {
            for k in kids {
                out.push(*k);
                queue.push(*k);
            }
        }
    }
    out
}

/// The command name (`/proc/PID/comm`).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The summed `VmRSS` of `pids`, in KiB (processes gone are counted as 0).
pub fn total_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| status_kib(*p, "VmRSS")).sum()
}

/// Busy CPU time of the whole machine since boot, in clock ticks: the first line of
/// `/proc/stat` without idle and iowait.
pub fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum();
    Some(busy)
}

/// CPU time of this process, everything it waited for, and every live descendant (with
/// what they waited for), in clock ticks.
pub fn own_tree_ticks() -> u64 {
    let me = std::process::id();
    std::iter::once(me)
        .chain(descendants(me))
        .filter_map(cpu_ticks_with_children)
        .sum()
}

/// CPU ticks as milliseconds.
pub fn ticks_to_ms(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / CLOCK_TICKS_PER_SEC as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let rss = self_status_kib("VmRSS").unwrap();
        assert!(rss > 0);
        assert_eq!(
            status_kib(std::process::id(), "VmRSS").map(|_| ()),
            Some(())
        );
        assert!(self_cpu_ticks().is_some());
        assert_eq!(
            ppid(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
    }

    #[test]
    fn parses_status_and_stat_lines() {
        let status = "Name:\tcodex\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(1024));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(2048));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        // a command name with spaces and parentheses
        let stat = "42 (a) b)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        assert_eq!(cpu_ticks_of(stat), Some(10));
        assert_eq!(stat_fields(stat).unwrap()[13], "0");
        assert_eq!(stat_fields(stat).unwrap()[1], "1");
    }

    #[test]
    fn machine_and_own_cpu() {
        assert!(machine_busy_ticks().unwrap() > 0);
        let _ = own_tree_ticks();
    }

    #[test]
    fn finds_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = descendants(std::process::id()).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }
}
