//! How jobs and answers look: one line per job for `status`, the details of one job, the
//! rendered answer of a finished job (per kind), and the JSON documents of `--json`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codex_agent::jobs::{JobKind, JobPhase, JobRecord, JobStatus};
use serde_json::{Value, json};

use crate::adversarial;
use crate::error::ExitCode;
use crate::review::render_native;

/// How many finished jobs `status` lists without `--all`.
pub const RECENT_FINISHED: usize = 5;

/// The jobs `status` lists: every unfinished job and the [`RECENT_FINISHED`] newest finished
/// ones, or every job with `all`. `jobs` is newest first (as `JobStore::list` returns them).
pub fn listed(jobs: &[JobRecord], all: bool) -> Vec<&JobRecord> {
    let mut finished = 0;
    jobs.iter()
        .filter(|j| {
            if all || !j.status.is_finished() {
                return true;
            }
            finished += 1;
            finished <= RECENT_FINISHED
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// How long a job ran (or has been running), in milliseconds.
pub fn elapsed_ms(job: &JobRecord) -> u64 {
    let start = job.started_at_ms.unwrap_or(job.created_at_ms);
    job.finished_at_ms
        .unwrap_or_else(now_ms)
        .saturating_sub(start)
}

/// `1h02m`, `3m07s`, `12.3s`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}.{}s", s, (ms % 1000) / 100)
    }
}

fn phase_name(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Starting => "starting",
        JobPhase::Running => "running",
        JobPhase::Editing => "editing",
        JobPhase::Verifying => "verifying",
        JobPhase::Finalizing => "finalizing",
        JobPhase::Done => "done",
        _ => "working",
    }
}

/// One line of `status`: id, status (with the phase while it runs), kind, age, title.
pub fn status_line(job: &JobRecord) -> String {
    let status = if job.status.is_finished() {
        job.status.to_string()
    } else {
        format!("{} ({})", job.status, phase_name(job.phase))
    };
    format!(
        "{}  {:<22}  {:<18}  {:>7}  {}",
        job.id,
        status,
        job.kind.to_string(),
        duration(elapsed_ms(job)),
        job.title
    )
}

/// The details of one job, several lines.
pub fn job_detail(job: &JobRecord) -> String {
    let mut out = format!("job {}\n", job.id);
    let mut field = |name: &str, value: String| out.push_str(&format!("  {name:<10} {value}\n"));
    field("kind", job.kind.to_string());
    field(
        "status",
        if job.status.is_finished() {
            job.status.to_string()
        } else {
            format!("{} ({})", job.status, phase_name(job.phase))
        },
    );
    field("title", job.title.clone());
    field("workspace", job.project_root.display().to_string());
    field("write", if job.write { "yes" } else { "no" }.to_owned());
    if let Some(b) = job.backend {
        field("backend", b.to_string());
    }
    if let Some(t) = &job.thread_id {
        field("thread", t.to_string());
    }
    if let Some(t) = &job.turn_id {
        field("turn", t.to_string());
    }
    if let Some(pid) = job.pid {
        field("pid", pid.to_string());
    }
    field("elapsed", duration(elapsed_ms(job)));
    if let Some(s) = &job.summary {
        field("summary", s.clone());
    }
    if let Some(e) = &job.error {
        field("error", e.clone());
    }
    field("log", job.log_file.display().to_string());
    out
}

/// A job as a JSON object: the record's fields plus `elapsed_ms`.
pub fn job_json(job: &JobRecord) -> Value {
    let mut value = serde_json::to_value(job).unwrap_or_else(|e| json!({"error": e.to_string()}));
    if let Some(obj) = value.as_object_mut() {
        obj.insert("elapsed_ms".into(), json!(elapsed_ms(job)));
    }
    value
}

/// A finished turn's answer, rendered for its kind of job.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Answer {
    /// The text to print.
    pub text: String,
    /// The structured adversarial review, when the answer followed the schema.
    pub review: Option<adversarial::AdversarialReview>,
    /// Why an adversarial review's answer did not follow the schema.
    pub schema_error: Option<String>,
}

/// Renders `raw`, the final message of a job of `kind`: a task's answer as it is, a native
/// review rendered ([`render_native`]), an adversarial review checked and rendered sorted by
/// severity, or shown raw with the reason.
pub fn render_answer(kind: JobKind, raw: &str) -> Answer {
    match kind {
        JobKind::AdversarialReview => match adversarial::parse(raw) {
            Ok(review) => Answer {
                text: adversarial::render(&review),
                review: Some(review),
                schema_error: None,
            },
            Err(e) => Answer {
                text: adversarial::render_mismatch(raw, &e.reason),
                review: None,
                schema_error: Some(e.reason),
            },
        },
        JobKind::Review => Answer {
            text: render_native(raw),
            review: None,
            schema_error: None,
        },
        _ => {
            let mut text = raw.trim_end().to_owned();
            text.push('\n');
            Answer {
                text,
                review: None,
                schema_error: None,
            }
        }
    }
}

/// What `result` shows for a job, and the exit code: the rendered answer of a completed job
/// (0); the error of a failed or cancelled one (1); "still running" for an unfinished one
/// (3, [`ExitCode::Pending`]).
pub fn result_text(job: &JobRecord) -> (String, ExitCode) {
    match job.status {
        JobStatus::Completed => {
            let raw = job
                .result
                .as_ref()
                .and_then(|r| r.final_message.clone())
                .unwrap_or_default();
            (render_answer(job.kind, &raw).text, ExitCode::Success)
        }
        JobStatus::Failed | JobStatus::Cancelled => (
            format!(
                "job {} {}: {}\n",
                job.id,
                job.status,
                job.error.as_deref().unwrap_or("no reason recorded")
            ),
            ExitCode::Failure,
        ),
        _ => (
            format!(
                "job {} is still {} ({}, {} so far); wait with `codex-companion status {} --wait`\n",
                job.id,
                job.status,
                phase_name(job.phase),
                duration(elapsed_ms(job)),
                job.id
            ),
            ExitCode::Pending,
        ),
    }
}

/// The JSON document of `result --json`: the job, and for a completed job its rendered
/// answer (`rendered`) and, for adversarial reviews, the structured review or the schema
/// error.
pub fn result_json(job: &JobRecord) -> Value {
    let mut doc = json!({ "job": job_json(job) });
    if job.status == JobStatus::Completed {
        let raw = job
            .result
            .as_ref()
            .and_then(|r| r.final_message.clone())
            .unwrap_or_default();
        let answer = render_answer(job.kind, &raw);
        doc["final_message"] = json!(raw);
        doc["rendered"] = json!(answer.text);
        if job.kind == JobKind::AdversarialReview {
            doc["review"] = json!(answer.review);
            doc["schema_error"] = json!(answer.schema_error);
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_agent::jobs::{JobResult, JobStore, NewJob};

    #[test]
    fn listing_and_results() {
        let state = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        let store = JobStore::open(state.path(), ws.path()).unwrap();
        let mut ids = Vec::new();
        for i in 0..8 {
            let j = store
                .create(NewJob::new(JobKind::Task, format!("t{i}"), false))
                .unwrap();
            if i < 7 {
                store
                    .update(&j.id, |r| {
                        r.result = Some(JobResult::new(Some(format!("answer {i}")), vec![], None));
                        r.set_status(JobStatus::Completed)
                    })
                    .unwrap();
            }
            ids.push(j.id);
            std::thread::sleep(Duration::from_millis(2));
        }
        let jobs = store.list().unwrap().jobs;
        assert_eq!(listed(&jobs, true).len(), 8);
        let some = listed(&jobs, false);
        assert_eq!(some.len(), 1 + RECENT_FINISHED);
        assert!(some.iter().any(|j| j.id == ids[7]));

        let running = store.get(&ids[7]).unwrap();
        let (text, code) = result_text(&running);
        assert_eq!(code, ExitCode::Pending);
        assert!(text.contains("still queued"), "{text}");
        assert!(status_line(&running).contains("queued (starting)"));

        let done = store.get(&ids[0]).unwrap();
        assert_eq!(
            result_text(&done),
            ("answer 0\n".to_owned(), ExitCode::Success)
        );
        let doc = result_json(&done);
        assert_eq!(doc["final_message"], "answer 0");
        assert_eq!(doc["job"]["status"], "completed");
        assert!(job_detail(&done).contains("  status     completed\n"));
    }
}

/// The examples that documented this module when it was public API of codex-agent.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn example_1() {
        assert_eq!(crate::render::duration(187_000), "3m07s");
        assert_eq!(crate::render::duration(1_250), "1.2s");
    }

    #[test]
    fn example_2() {
        use crate::render::render_answer;
        use codex_agent::jobs::JobKind;
        let a = render_answer(JobKind::AdversarialReview, "oops");
        assert!(a.schema_error.is_some() && a.text.ends_with("oops\n"));
        assert_eq!(render_answer(JobKind::Task, "done").text, "done\n");
    }
}
