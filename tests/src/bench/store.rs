//! Job store stress: several OS processes write to one [`JobStore`] at the same time; then
//! every write must be found in the store, and every record must parse.
//!
//! Each writer process (the `store-writer` subcommand of `codex-bridge-bench`, see
//! [`writer`]) makes `writes` writes, all read-modify-writes through the store's lock:
//!
//! - it first creates its own jobs (one write each);
//! - then it alternates between an update of one of its own jobs and an update of one of the
//!   jobs *shared* by every writer (created by the parent beforehand), round-robin over each;
//! - every update appends a token `<writer>:<write number>` to the record's `summary`, and
//!   the last update of each own job also marks it completed.
//!
//! The schedule is deterministic ([`plan`]), so the parent ([`stress`]) knows exactly which
//! tokens each record must end with: a token missing from its record is a **lost** write (an
//! update that overwrote another process's, or a record that vanished), a record that does
//! not parse, holds a token twice or a token nobody wrote to it, or is a job nobody created,
//! is **corrupt**.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codex_agent::jobs::{JobKind, JobStatus, JobStore, NewJob};
use codex_core::error_chain;

/// The environment-independent description of one stress run.
#[derive(Debug, Clone)]
pub struct StressConfig {
    /// How many writer processes.
    pub processes: usize,
    /// Writes per process (creates and updates together).
    pub writes: usize,
    /// Jobs each writer creates for itself.
    pub own_jobs: usize,
    /// Jobs every writer updates (created by the parent, not counted as writes).
    pub shared_jobs: usize,
    /// The state root the store lives under (`CODEX_BRIDGE_STATE_DIR`).
    pub state_root: PathBuf,
    /// The workspace the store belongs to.
    pub workspace: PathBuf,
    /// How long the writers may take, all together.
    pub limit: Duration,
}

impl StressConfig {
    /// `processes` writers of `writes` writes each, on a store under `state_root` for
    /// `workspace`; 10 own jobs per writer, 8 shared jobs, 10 minutes at most.
    pub fn new(processes: usize, writes: usize, state_root: &Path, workspace: &Path) -> Self {
        StressConfig {
            processes,
            writes,
            own_jobs: 10.min(writes.max(1)),
            shared_jobs: 8,
            state_root: state_root.to_owned(),
            workspace: workspace.to_owned(),
            limit: Duration::from_secs(600),
        }
    }
}

/// What a stress run found.
#[derive(Debug, Clone, Default)]
pub struct StressReport {
    /// Writer processes.
    pub processes: usize,
    /// Writes issued, all writers together.
    pub writes: usize,
    /// From the start signal to the last writer's exit.
    pub elapsed: Duration,
    /// Records expected in the store (own jobs and shared jobs).
    pub records: usize,
    /// Writes whose effect is missing from the store.
    pub lost: usize,
    /// Records that are corrupt (unparsable, a token twice or from nowhere, unexpected).
    pub corrupt: usize,
    /// Writers that failed, and other problems of the run itself.
    pub failures: Vec<String>,
    /// The shared jobs.
    pub shared_ids: Vec<String>,
    /// The own jobs, by (writer, job), as the writers reported them.
    pub own_ids: BTreeMap<(usize, usize), String>,
}

impl StressReport {
    /// Writes per second over the run.
    pub fn writes_per_s(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Whether nothing was lost, nothing is corrupt and every writer did its work.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.corrupt == 0 && self.failures.is_empty()
    }
}

/// One write of a writer's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create own job `n`.
    Create(usize),
    /// Update own job `n`; `last`: its last update, which also completes it.
    Own {
        /// The own job.
        job: usize,
        /// Whether this is its last update.
        last: bool,
    },
    /// Update shared job `n`.
    Shared(usize),
}

/// The schedule of one writer: `writes` steps over `own` own jobs and `shared` shared jobs.
pub fn plan(writes: usize, own: usize, shared: usize) -> Vec<Step> {
    let own = own.max(1);
    let mut steps: Vec<Step> = (0..writes)
        .map(|w| {
            if w < own {
                return Step::Create(w);
            }
            let u = w - own;
            if shared == 0 {
                Step::Own {
                    job: u % own,
                    last: false,
                }
            } else if u.is_multiple_of(2) {
                Step::Own {
                    job: (u / 2) % own,
                    last: false,
                }
            } else {
                Step::Shared((u / 2) % shared)
            }
        })
        .collect();
    for job in 0..own {
        if let Some(Step::Own { last, .. }) = steps
            .iter_mut()
            .rev()
            .find(|s| matches!(s, Step::Own { job: j, .. } if *j == job))
        {
            *last = true;
        }
    }
    steps
}

fn token(writer: usize, write: usize) -> String {
    format!("{writer}:{write}")
}

fn append(summary: &mut Option<String>, token: &str) {
    let text = summary.get_or_insert_with(String::new);
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(token);
}

/// One writer: waits for a line on stdin (the start signal), then makes its writes on the
/// store of `workspace` under `state_root`, printing `job <n> <id>` for each own job it
/// creates. `shared` are the ids of the shared jobs.
///
/// # Errors
/// The first store error, rendered with its causes.
pub fn writer(
    state_root: &Path,
    workspace: &Path,
    index: usize,
    writes: usize,
    own_jobs: usize,
    shared: &[String],
) -> Result<(), String> {
    let store = JobStore::open(state_root, workspace)
        .map_err(|e| error_chain(&e))?
        // nothing finished may be pruned while the parent has not counted it
        .keep_finished(usize::MAX);
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("waiting for the start signal: {e}"))?;
    let mut out = std::io::stdout().lock();
    let mut own = Vec::new();
    for (w, step) in plan(writes, own_jobs, shared.len()).into_iter().enumerate() {
        let tok = token(index, w);
        let result = match step {
            Step::Create(n) => store
                .create(NewJob::new(
                    JobKind::Task,
                    format!("stress writer {index} job {n}"),
                    false,
                ))
                .map(|record| {
                    let _ = writeln!(out, "job {n} {}", record.id);
                    own.push(record.id);
                }),
            Step::Own { job, last } => store
                .update(&own[job], |r| {
                    append(&mut r.summary, &tok);
                    if last {
                        r.set_status(JobStatus::Completed)?;
                    }
                    Ok(())
                })
                .map(drop),
            Step::Shared(n) => store
                .update(&shared[n], |r| {
                    append(&mut r.summary, &tok);
                    Ok(())
                })
                .map(drop),
        };
        result.map_err(|e| format!("writer {index}, write {w}: {}", error_chain(&e)))?;
    }
    out.flush()
        .map_err(|e| format!("writer {index}: stdout: {e}"))?;
    Ok(())
}

/// The tokens a record must end with, its final status, and whether a writer created it.
struct Expected {
    tokens: Vec<String>,
    status: JobStatus,
    created: bool,
}

/// The command of writer `index`: `exe store-writer --state DIR --cwd DIR --index N
/// --writes N --own-jobs N [--shared ID,...]` (the `codex-bridge-bench` subcommand that calls
/// [`writer`]).
pub fn writer_command(
    exe: &Path,
    config: &StressConfig,
    index: usize,
    shared: &[String],
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("store-writer")
        .arg("--state")
        .arg(&config.state_root)
        .arg("--cwd")
        .arg(&config.workspace)
        .arg("--index")
        .arg(index.to_string())
        .arg("--writes")
        .arg(config.writes.to_string())
        .arg("--own-jobs")
        .arg(config.own_jobs.to_string());
    if !shared.is_empty() {
        cmd.arg("--shared").arg(shared.join(","));
    }
    cmd
}

/// Runs a stress: creates the shared jobs, starts `config.processes` writers with
/// `writer_command(index, shared_ids)` (a command whose process calls [`writer`]), gives them
/// the start signal together, waits for them (at most `config.limit`), then checks the
/// store.
///
/// # Errors
/// When the run cannot be set up (the store cannot be opened, a writer cannot be started).
/// Failures of writers and of the checks are in the report.
pub fn stress(
    config: &StressConfig,
    writer_command: impl Fn(usize, &[String]) -> Command,
) -> Result<StressReport, String> {
    let store = JobStore::open(&config.state_root, &config.workspace)
        .map_err(|e| error_chain(&e))?
        .keep_finished(usize::MAX);
    let shared: Vec<String> = (0..config.shared_jobs)
        .map(|n| {
            store
                .create(NewJob::new(JobKind::Task, format!("shared {n}"), false))
                .map(|r| r.id)
                .map_err(|e| error_chain(&e))
        })
        .collect::<Result<_, _>>()?;
    let mut report = StressReport {
        processes: config.processes,
        writes: config.processes * config.writes,
        ..StressReport::default()
    };

    let mut children = Vec::new();
    for index in 0..config.processes {
        let child = writer_command(index, &shared)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting writer {index}: {e}"))?;
        children.push(child);
    }
    let started = Instant::now();
    for child in &mut children {
        // dropping stdin after the line: a writer that reads again sees the end
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }
    let deadline = started + config.limit;
    let mut outputs = vec![None; children.len()];
    while outputs.iter().any(Option::is_none) {
        for (i, child) in children.iter_mut().enumerate() {
            if outputs[i].is_some() {
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) => outputs[i] = Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let status = child.wait().map_err(|e| format!("writer {i}: {e}"))?;
                    report.failures.push(format!(
                        "writer {i} did not finish within {:?}; killed",
                        config.limit
                    ));
                    outputs[i] = Some(status);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for writer {i}: {e}")),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report.elapsed = started.elapsed();

    // what each writer says it created, and what it printed on stderr
    let mut own_ids: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for (i, child) in children.iter_mut().enumerate() {
        if let Some(stdout) = child.stdout.take() {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut parts = line.split_whitespace();
                if let (Some("job"), Some(n), Some(id)) = (parts.next(), parts.next(), parts.next())
                    && let Ok(n) = n.parse::<usize>()
                {
                    own_ids.insert((i, n), id.to_owned());
                }
            }
        }
        let status = outputs[i].take();
        if !status.is_some_and(|s| s.success()) {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            report.failures.push(format!(
                "writer {i} exited with {status:?}: {}",
                stderr.trim()
            ));
        }
    }

    report.shared_ids = shared;
    report.own_ids = own_ids;
    let (records, lost, corrupt) = verify(config, &report.shared_ids, &report.own_ids)?;
    report.records = records;
    report.lost = lost;
    report.corrupt = corrupt;
    Ok(report)
}

/// Checks the store after a run: `shared` are the shared jobs' ids, `own_ids` the own jobs'
/// ids by (writer, job). Returns (records expected, lost writes, corrupt records).
///
/// # Errors
/// When the store cannot be read.
pub fn verify(
    config: &StressConfig,
    shared: &[String],
    own_ids: &BTreeMap<(usize, usize), String>,
) -> Result<(usize, usize, usize), String> {
    let mut lost = 0;
    let mut corrupt = 0;
    // the expected end state of every record
    let mut expected: BTreeMap<String, Expected> = shared
        .iter()
        .map(|id| {
            (
                id.clone(),
                Expected {
                    tokens: Vec::new(),
                    status: JobStatus::Queued,
                    created: false,
                },
            )
        })
        .collect();
    let steps = plan(config.writes, config.own_jobs, shared.len());
    let completes = |n: usize| steps.contains(&Step::Own { job: n, last: true });
    for i in 0..config.processes {
        for (w, step) in steps.iter().copied().enumerate() {
            let (id, status) = match step {
                Step::Create(n) | Step::Own { job: n, .. } => match own_ids.get(&(i, n)) {
                    Some(id) if completes(n) => (id.clone(), JobStatus::Completed),
                    Some(id) => (id.clone(), JobStatus::Queued),
                    // never reported: its create and every update are lost
                    None => {
                        lost += 1;
                        continue;
                    }
                },
                Step::Shared(n) => (shared[n].clone(), JobStatus::Queued),
            };
            let entry = expected.entry(id).or_insert_with(|| Expected {
                tokens: Vec::new(),
                status,
                created: true,
            });
            if !matches!(step, Step::Create(_)) {
                entry.tokens.push(token(i, w));
            }
        }
    }
    let records = expected.len();

    let store = JobStore::open(&config.state_root, &config.workspace)
        .map_err(|e| error_chain(&e))?
        .keep_finished(usize::MAX);
    let listed = store.list().map_err(|e| error_chain(&e))?;
    corrupt += listed.corrupt.len();
    let mut found: BTreeMap<String, _> =
        listed.jobs.into_iter().map(|j| (j.id.clone(), j)).collect();
    for (id, want) in &expected {
        let Some(record) = found.remove(id) else {
            // the create (for an own job) and every update
            lost += want.tokens.len() + usize::from(want.created);
            continue;
        };
        let have: Vec<&str> = record
            .summary
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let have_set: HashSet<&str> = have.iter().copied().collect();
        let want_set: HashSet<&str> = want.tokens.iter().map(String::as_str).collect();
        let missing = want_set.difference(&have_set).count();
        lost += missing;
        let twice = have_set.len() != have.len();
        let stray = !have_set.is_subset(&want_set);
        if twice || stray || (missing == 0 && record.status != want.status) {
            corrupt += 1;
        }
    }
    // records nobody expected (a duplicate, a job written under another id)
    corrupt += found.len();
    Ok((records, lost, corrupt))
}

/// The benchmark's section on the job store.
pub fn render(out: &mut String, r: &StressReport, per_writer: usize) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "## Job store: concurrent writers\n");
    let _ = writeln!(
        out,
        "{} processes make {per_writer} writes each on one job store (`JobStore::create` / \
         `update`: a read-modify-write of one file under the store's lock, written to a \
         temporary file, fsynced and renamed into place), all at once; each update appends a \
         token to its record, half of them to records every process shares. Afterwards every \
         token must be in its record and every record must parse. The store is in the \
         system's temporary directory (here on the same disk as the state directory).\n",
        r.processes
    );
    let _ = writeln!(
        out,
        "| processes × writes | records | wall time | writes/s | lost writes | corrupt records |\n|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| {} × {per_writer} | {} | {:.2} s | {:.0} | {} | {} |",
        r.processes,
        r.records,
        r.elapsed.as_secs_f64(),
        r.writes_per_s(),
        r.lost,
        r.corrupt
    );
    for failure in &r.failures {
        let _ = writeln!(out, "\nfailure: {}", failure.replace('\n', " "));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_creates_first_then_alternates() {
        let steps = plan(10, 2, 3);
        assert_eq!(steps[0], Step::Create(0));
        assert_eq!(steps[1], Step::Create(1));
        assert_eq!(
            steps[2],
            Step::Own {
                job: 0,
                last: false
            }
        );
        assert_eq!(steps[3], Step::Shared(0));
        assert_eq!(
            steps[4],
            Step::Own {
                job: 1,
                last: false
            }
        );
        assert_eq!(steps[5], Step::Shared(1));
        // the last update of each own job completes it
        assert_eq!(steps[6], Step::Own { job: 0, last: true });
        assert_eq!(steps[8], Step::Own { job: 1, last: true });
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Own { last: true, .. }))
                .count(),
            2
        );
        assert_eq!(plan(500, 10, 8).len(), 500);
    }
}
