//! Fuzz target `job-store` (`cargo xtask fuzz --target job-store`): job records on disk.
//!
//! One case: a fresh store in a sandbox folder, its `jobs/` folder filled with random
//! bytes, valid records (some truncated, some mutated by
//! [`codex_core::fuzzing::mutated`]), records whose id or log file are hostile (`../../x`, an
//! absolute path, a NUL byte, another record's id), then a random series of `list`, `get`,
//! `update`, `prune`, `latest_*`, `append_log` and `create`.
//!
//! Properties: no panic, no hang; every call returns a record or a typed error; a file
//! that is not a record is moved aside (`*.json.corrupt-N`, same bytes) by the first
//! `list`, and afterwards every `*.json` left is a record. A separate test,
//! [`fuzz_job_store_hostile_ids_stay_inside`], checks that nothing outside the store's
//! folder is created, changed or removed (the **hostile-id sub-check**).
//!
//! With `CODEX_BRIDGE_FUZZ_CASES=N` each test runs N/4 cases (each one a batch).
//!
//! Every path a generated record could make the store touch is checked before the record
//! is written: one that would lead out of the case's sandbox is replaced, so that the fuzz
//! test itself can never touch a file outside its temporary folder.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use serde_json::Value;

use crate::jobs::{JobKind, JobRecord, JobStatus, JobStore, NewJob, StoreError};
use codex_core::fuzzing::{self, Input};

/// Where the store lives inside a case's sandbox: `..` from `jobs/` up to seven levels stays
/// in the sandbox.
const STATE: &str = "s/a/b/state";
/// Stands for the sandbox's path in generated records.
const SANDBOX: &str = "/SANDBOX";

#[derive(Debug, Clone)]
enum Content {
    Bytes(Input),
    Record { record: Value, cut: Option<u32> },
    Mutated(Input),
}

#[derive(Debug, Clone)]
struct Planted {
    name: String,
    content: Content,
}

#[derive(Debug, Clone)]
enum Op {
    List,
    Get(String),
    Update(String, JobStatus),
    Prune(usize),
    LatestActive,
    LatestTaskThread,
    AppendLog(u32, String),
    Create,
}

#[derive(Debug, Clone)]
struct Case {
    files: Vec<Planted>,
    ops: Vec<Op>,
}

fn status() -> impl Strategy<Value = JobStatus> {
    prop::sample::select(
        &[
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ][..],
    )
}

/// Ids: well-formed ones, look-alikes, and hostile ones (relative to `jobs/`, within the
/// sandbox: at most seven `..`).
fn id() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (0u64..20).prop_map(|n| format!("job-0000000000{n:x}-00000{n:x}")),
        2 => "[a-z0-9.-]{1,12}",
        1 => Just("../../x".to_owned()),
        1 => Just("../../../../../../../escaped".to_owned()),
        1 => Just(format!("{SANDBOX}/outside/abs")),
        1 => Just("a/b".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(String::new()),
        1 => Just("x\u{0}y".to_owned()),
        1 => Just("é 🙂".to_owned()),
    ]
    .boxed()
}

fn log_file() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just(format!("{SANDBOX}/{STATE}/logs/x.log")),
        1 => Just(format!("{SANDBOX}/outside/victim.log")),
        1 => Just("relative.log".to_owned()),
        1 => Just(String::new()),
    ]
    .boxed()
}

/// A record as the store writes it (built as JSON, so that this test does not depend on
/// the struct's exact fields).
fn record() -> impl Strategy<Value = Value> {
    (
        id(),
        prop::sample::select(&["task", "review", "adversarial-review"][..]),
        prop::sample::select(&["queued", "running", "completed", "failed", "cancelled"][..]),
        prop_oneof![
            Just(None),
            Just(Some(u32::MAX)),
            Just(Some(std::process::id())),
            Just(Some(0x3fff_fff0)),
        ],
        any::<u64>(),
        log_file(),
        fuzzing::odd_string(),
    )
        .prop_map(|(id, kind, status, pid, created, log_file, text)| {
            let finished = matches!(status, "completed" | "failed" | "cancelled");
            serde_json::json!({
                "id": id,
                "kind": kind,
                "title": text,
                "summary": text,
                "workspace_root": format!("{SANDBOX}/ws"),
                "write": created % 2 == 0,
                "status": status,
                "phase": "running",
                "pid": pid,
                "pid_start_time": pid.map(|_| created % 1000),
                "backend": "app-server",
                "thread_id": text,
                "turn_id": null,
                "created_at_ms": created,
                "updated_at_ms": created,
                "started_at_ms": null,
                "finished_at_ms": finished.then_some(created),
                "error": text,
                "result": {"final_message": text, "touched_files": ["a"], "reasoning_summary": null},
                "log_file": log_file,
            })
        })
}

/// Valid records of every status, to mutate.
fn corpus() -> Arc<[Value]> {
    static CORPUS: OnceLock<Arc<[Value]>> = OnceLock::new();
    CORPUS
        .get_or_init(|| {
            let mut runner = proptest::test_runner::TestRunner::deterministic();
            (0..12)
                .filter_map(|_| record().new_tree(&mut runner).ok().map(|t| t.current()))
                .collect::<Vec<_>>()
                .into()
        })
        .clone()
}

fn planted() -> impl Strategy<Value = Planted> {
    (
        prop_oneof![
            6 => id().prop_map(|id| format!("{id}.json")),
            1 => Just("job-00000000001-000001.json.corrupt-0".to_owned()),
            1 => Just("notes.txt".to_owned()),
        ],
        prop_oneof![
            2 => fuzzing::random_bytes(200).prop_map(Content::Bytes),
            3 => (record(), prop::option::of(any::<u32>()))
                .prop_map(|(record, cut)| Content::Record { record, cut }),
            3 => fuzzing::mutated(corpus()).prop_map(Content::Mutated),
        ],
    )
        .prop_map(|(name, content)| Planted { name, content })
}

fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        3 => Just(Op::List),
        2 => prop_oneof![id(), Just("job-".to_owned()), Just("j".to_owned())].prop_map(Op::Get),
        2 => (id(), status()).prop_map(|(id, s)| Op::Update(id, s)),
        1 => (0usize..3).prop_map(Op::Prune),
        1 => Just(Op::LatestActive),
        1 => Just(Op::LatestTaskThread),
        1 => (any::<u32>(), fuzzing::odd_string()).prop_map(|(i, t)| Op::AppendLog(i, t)),
        1 => Just(Op::Create),
    ]
    .boxed()
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(planted(), 0..6),
        prop::collection::vec(op(), 1..8),
    )
        .prop_map(|(files, ops)| Case { files, ops })
}

/// `path` with `.` and `..` resolved lexically (the sandbox holds no symbolic links, so
/// the kernel either resolves it to the same place or fails).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether the store, holding `record`, could only touch files inside `sandbox`: its
/// record and log paths (`jobs/<id>.json`, `logs/<id>.log`) and its `log_file` (which
/// `prune` removes).
fn stays_in(record: &JobRecord, sandbox: &Path, store: &Path) -> bool {
    let inside = |p: &Path| {
        !p.as_os_str().as_encoded_bytes().contains(&0)
            && normalize(p).starts_with(sandbox)
            && p.is_absolute()
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    inside(&store.join("jobs").join(format!("{}.json", record.id)))
        && inside(&store.join("logs").join(format!("{}.log", record.id)))
        && (record.log_file.as_os_str().is_empty() || inside(&cwd.join(&record.log_file)))
}

/// The bytes to plant, with `/SANDBOX` made the real sandbox, and any record that could
/// lead the store out of the sandbox made harmless.
fn plant_bytes(content: &Content, sandbox: &Path, store: &Path) -> Vec<u8> {
    let sandbox_text = sandbox.to_string_lossy();
    let raw = match content {
        Content::Bytes(b) => b.0.clone(),
        Content::Record { record, cut } => {
            let mut bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
            if let Some(cut) = cut {
                bytes.truncate(*cut as usize % (bytes.len() + 1));
            }
            bytes
        }
        Content::Mutated(m) => m.0.clone(),
    };
    let text = String::from_utf8_lossy(&raw);
    let raw = if text.contains(SANDBOX) {
        text.replace(SANDBOX, &sandbox_text).into_bytes()
    } else {
        raw
    };
    match serde_json::from_slice::<JobRecord>(&raw) {
        Ok(mut record) if !stays_in(&record, sandbox, store) => {
            record.id = "defused".into();
            record.log_file = sandbox.join("outside/victim.log");
            serde_json::to_vec(&record).unwrap_or_default()
        }
        _ => raw,
    }
}

/// Every file under `dir` except those under `skip`, with its bytes.
fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.starts_with(skip) {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn sandbox_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// What a case leaves to check.
struct Outcome {
    /// The files outside the store before and after.
    outside: (BTreeMap<PathBuf, Vec<u8>>, BTreeMap<PathBuf, Vec<u8>>),
}

fn run_case(case: &Case) -> Result<Outcome, TestCaseError> {
    let sandbox = tempfile::Builder::new()
        .prefix("codex-bridge-fuzz-")
        .tempdir_in(sandbox_root())
        .map_err(|e| TestCaseError::fail(format!("sandbox: {e}")))?;
    let root = sandbox.path();
    let state = root.join(STATE);
    let ws = root.join("ws");
    for d in [&state, &ws, &root.join("outside")] {
        std::fs::create_dir_all(d).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    std::fs::write(root.join("outside/victim.log"), b"victim")
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let store = JobStore::open(&state, &ws)
        .map_err(|e| TestCaseError::fail(format!("open: {e}")))?
        .keep_finished(3);
    let dir = store.dir().to_owned();
    let jobs = dir.join("jobs");

    // plant the files; remember what is not a record
    let mut not_records: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut consistent = true;
    for p in &case.files {
        let path = jobs.join(&p.name);
        if path.parent() != Some(jobs.as_path()) || p.name.contains('\0') {
            continue;
        }
        let bytes = plant_bytes(&p.content, root, &dir);
        if std::fs::write(&path, &bytes).is_err() {
            continue;
        }
        if let Some(stem) = p.name.strip_suffix(".json") {
            match serde_json::from_slice::<JobRecord>(&bytes) {
                Ok(r) => consistent &= r.id == stem,
                Err(_) => not_records.push((path, bytes)),
            }
        }
    }
    // the same name planted twice: the last one counts
    not_records.retain(|(path, bytes)| std::fs::read(path).ok().as_ref() == Some(bytes));

    let before = snapshot(root, &dir);
    let mut listed = false;
    for op in &case.ops {
        match op {
            Op::List => {
                let report = store.list();
                if let Ok(report) = &report {
                    for e in &report.corrupt {
                        let StoreError::Corrupt { path, kept_at, .. } = e else {
                            prop_assert!(false, "list reported {e:?} as corrupt");
                            continue;
                        };
                        prop_assert!(kept_at.exists(), "{} was not kept", kept_at.display());
                        prop_assert!(!kept_at.to_string_lossy().ends_with(".json"));
                        prop_assert_eq!(kept_at.parent(), path.parent());
                    }
                    if consistent && !listed {
                        // every file that is not a record was moved aside (by this list or
                        // an earlier call), its bytes intact
                        let kept: Vec<Vec<u8>> = std::fs::read_dir(&jobs)
                            .into_iter()
                            .flatten()
                            .flatten()
                            .filter(|e| e.file_name().to_string_lossy().contains(".json.corrupt-"))
                            .filter_map(|e| std::fs::read(e.path()).ok())
                            .collect();
                        for (path, bytes) in &not_records {
                            prop_assert!(!path.exists(), "{} was left in place", path.display());
                            prop_assert!(
                                kept.contains(bytes),
                                "{} was not kept aside with its bytes",
                                path.display()
                            );
                        }
                    }
                    listed = true;
                } else if consistent {
                    prop_assert!(false, "list failed: {:?}", report.err());
                }
            }
            Op::Get(id) => {
                let _ = store.get(id);
            }
            Op::Update(id, to) => {
                let _ = store.update(id, |r| {
                    r.summary = Some("updated".into());
                    r.set_status(*to)
                });
            }
            Op::Prune(keep) => {
                let _ = store.clone().keep_finished(*keep).prune();
            }
            Op::LatestActive => {
                let _ = store.latest_active();
            }
            Op::LatestTaskThread => {
                let _ = store.latest_task_thread();
            }
            Op::AppendLog(i, text) => {
                // as the companion does: the id of a record the store gave back
                if let Ok(report) = store.list()
                    && !report.jobs.is_empty()
                {
                    let job = &report.jobs[*i as usize % report.jobs.len()];
                    let _ = store.append_log(&job.id, text);
                }
            }
            Op::Create => {
                let job = store.create(NewJob::new(JobKind::Task, "fuzz", false));
                prop_assert!(job.is_ok(), "create failed: {:?}", job.err());
            }
        }
    }
    if consistent {
        // whatever happened, a last list leaves only records
        let report = store.list();
        prop_assert!(report.is_ok(), "list failed: {:?}", report.err());
        for e in std::fs::read_dir(&jobs).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                prop_assert!(
                    serde_json::from_slice::<JobRecord>(&bytes).is_ok(),
                    "{name} is not a record after list"
                );
            }
        }
    }
    let after = snapshot(root, &dir);
    Ok(Outcome {
        outside: (before, after),
    })
}

#[test]
fn fuzz_job_store() {
    // one case is a batch: up to 6 files and 8 store calls on a fresh store
    fuzzing::run("job-store/records", 4, case(), |case| {
        run_case(&case).map(|_| ())
    });
}

/// The **hostile-id sub-check**: records whose id or log file point elsewhere (`../x`, an
/// absolute path, a log file outside the store) must not make the store create, change or
/// remove anything outside its own folder.
#[test]
fn fuzz_job_store_hostile_ids_stay_inside() {
    fuzzing::run("job-store/hostile-ids", 4, case(), |case| {
        let Outcome {
            outside: (before, after),
        } = run_case(&case)?;
        if before != after {
            let changed: Vec<String> = before
                .keys()
                .chain(after.keys())
                .filter(|k| before.get(*k) != after.get(*k))
                .map(|k| k.display().to_string())
                .collect();
            prop_assert!(
                false,
                "[hostile-id sub-check] files outside the job store were created, changed or removed: {changed:?}"
            );
        }
        Ok(())
    });
}

#[test]
fn the_generated_records_are_records() {
    for doc in corpus().iter() {
        let mut text = doc.to_string();
        text = text.replace(SANDBOX, "/tmp/x");
        serde_json::from_str::<JobRecord>(&text).unwrap();
    }
}
