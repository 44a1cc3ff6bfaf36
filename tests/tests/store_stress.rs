//! The job store under concurrent writers in separate OS processes: 8 processes × 500
//! writes (creates and read-modify-write updates, half of them on records every process
//! shares) on one store; afterwards every write is found and every record parses.
//!
//! The writers are `codex-bridge-bench store-writer` processes (`codex_bridge_tests::bench::
//! store`, the code behind the benchmark's job store figures). The store is made on tmpfs
//! (`/dev/shm`) when there is one: the test is about the lock and the atomic replace, not
//! about the disk, and without fsync costs more writes overlap in a given time. The
//! benchmark measures the same on the disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_agent::jobs::JobStore;
use codex_bridge_tests::bench::store::{self, StressConfig};

fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_codex-bridge-bench"))
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("a temporary directory")
}

fn config(dir: &Path, processes: usize, writes: usize) -> StressConfig {
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let mut config = StressConfig::new(processes, writes, &dir.join("state"), &workspace);
    // generous: the machine may be busy
    config.limit = Duration::from_secs(300);
    config
}

#[test]
fn eight_processes_times_500_writes_lose_nothing() {
    let dir = scratch();
    let config = config(dir.path(), 8, 500);
    let exe = bench_bin();
    let report = store::stress(&config, |i, shared| {
        store::writer_command(&exe, &config, i, shared)
    })
    .expect("the stress runs");
    eprintln!(
        "{} writes in {:.2} s ({:.0} writes/s): {} lost, {} corrupt",
        report.writes,
        report.elapsed.as_secs_f64(),
        report.writes_per_s(),
        report.lost,
        report.corrupt
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.writes, 4000);
    assert_eq!(report.records, 8 * config.own_jobs + config.shared_jobs);
    assert_eq!(report.own_ids.len(), 8 * config.own_jobs);
    assert_eq!((report.lost, report.corrupt), (0, 0), "{report:?}");
    // nothing but records (and what is kept aside, of which there is none) in jobs/
    let store = JobStore::open(&config.state_root, &config.workspace).expect("store");
    let names: Vec<String> = std::fs::read_dir(store.dir().join("jobs"))
        .expect("jobs/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), report.records, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with(".json")), "{names:?}");
}

#[test]
fn the_check_finds_lost_writes_and_corrupt_records() {
    let dir = scratch();
    let config = config(dir.path(), 2, 40);
    let exe = bench_bin();
    let report = store::stress(&config, |i, shared| {
        store::writer_command(&exe, &config, i, shared)
    })
    .expect("the stress runs");
    assert!(report.is_clean(), "{report:?}");
    let store = JobStore::open(&config.state_root, &config.workspace)
        .expect("store")
        .keep_finished(usize::MAX);
    // lose one update of a shared record: drop its last token
    let shared = &report.shared_ids[0];
    store
        .update(shared, |r| {
            let text = r.summary.take().unwrap_or_default();
            let kept: Vec<&str> = text.split_whitespace().collect();
            r.summary = Some(kept[..kept.len() - 1].join(" "));
            Ok(())
        })
        .expect("update");
    // damage an own record
    let own = report.own_ids.values().next().expect("an own job");
    let path = store.dir().join("jobs").join(format!("{own}.json"));
    std::fs::write(&path, b"{\"id\":").expect("write");
    let (records, lost, corrupt) =
        store::verify(&config, &report.shared_ids, &report.own_ids).expect("verify");
    assert_eq!(records, report.records);
    assert!(lost >= 2, "lost {lost}"); // the token, and the damaged record's writes
    assert_eq!(corrupt, 1, "the unparsable record");
}
