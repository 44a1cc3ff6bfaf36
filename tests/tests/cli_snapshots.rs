//! Snapshot tests of the exec decoder over real `codex exec --json` output.
//!
//! Each `tests/fixtures/exec/<scenario>.jsonl` (recorded from the pinned codex against the
//! mock model; re-record with `cargo xtask fixtures`) is framed and decoded exactly as
//! `CliBackend` does it, folded into an outcome by a `RunSink`, and snapshotted with thread
//! ids, item ids and paths redacted.

use std::path::{Path, PathBuf};

use codex_bridge_tests::fixtures_dir;
use codex_cli_backend::{DEFAULT_MAX_LINE_BYTES, decode_stream};
use codex_core::{BackendKind, Event, Run};
use futures::StreamExt as _;
use serde_json::{Value, json};

/// The scenarios every recording must hold (the harness and `record-fixtures` write them).
const SCENARIOS: &[&str] = &[
    "text",
    "streamed",
    "reasoning",
    "exec_command",
    "exec_command_failed",
    "apply_patch",
    "http_500",
    "http_429",
    "response_failed",
    "resume_first",
    "resume",
    "output_schema",
];

fn fixture_files() -> Vec<PathBuf> {
    let dir = fixtures_dir().join("exec");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

/// Frames and decodes a recording like the backend does.
async fn decode_file(path: &Path) -> Vec<Event> {
    let file = tokio::fs::File::open(path)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    decode_stream(file, DEFAULT_MAX_LINE_BYTES).collect().await
}

/// The outcome a `RunSink` folds from the events: the final message, items and usage, or
/// the error.
async fn outcome_of(events: &[Event]) -> Value {
    let (mut sink, run) = Run::channel(BackendKind::Exec, events.len() + 1);
    for e in events {
        sink.emit(e.clone()).await;
    }
    sink.finish(|| codex_core::Error::backend(BackendKind::Exec, "the recording ended early"));
    match run.wait().await {
        Ok(outcome) => json!({
            "final_message": outcome.final_message,
            "items": outcome.items.len(),
            "touched_files": outcome.touched_files(),
            "usage": outcome.usage,
        }),
        Err(e) => json!({ "error": codex_core::error_chain(&e) }),
    }
}

/// `/any/where/name.ext` → `[path]/name.ext`.
fn redact_path(value: insta::internals::Content, _: insta::internals::ContentPath<'_>) -> String {
    let text = value.as_str().unwrap_or_default().to_owned();
    match Path::new(&text).file_name() {
        Some(name) => format!("[path]/{}", name.to_string_lossy()),
        None => "[path]".to_owned(),
    }
}

#[tokio::test]
async fn every_recorded_scenario_decodes_into_known_events() {
    let files = fixture_files();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for scenario in SCENARIOS {
        assert!(
            names.iter().any(|n| n == scenario),
            "tests/fixtures/exec/{scenario}.jsonl is missing: run `cargo xtask fixtures`"
        );
    }
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let events = decode_file(path).await;
        assert!(!events.is_empty(), "{name}: no events");
        for e in &events {
            assert!(
                !matches!(e, Event::Undecodable { .. } | Event::Unknown { .. }),
                "{name}: {e:?}"
            );
        }
        assert!(
            matches!(events.first(), Some(Event::ThreadStarted { .. })),
            "{name}"
        );
        // a turn interrupted by a signal (`sigint_during_turn`) ends without a terminal event
        if SCENARIOS.contains(&name.as_str()) {
            assert!(events.last().is_some_and(Event::is_terminal), "{name}");
        }

        let snapshot = json!({
            "events": events,
            "outcome": outcome_of(&events).await,
        });
        insta::assert_json_snapshot!(format!("exec_{name}"), snapshot, {
            ".events[].thread_id" => "[thread-id]",
            ".events[].item.id" => "[item-id]",
            ".events[].item.changes[].path" => insta::dynamic_redaction(redact_path),
            ".outcome.touched_files[]" => insta::dynamic_redaction(redact_path),
        });
    }
}

#[tokio::test]
async fn recorded_outcomes_hold_the_expected_content() {
    let dir = fixtures_dir().join("exec");
    let outcome = |name: &'static str| {
        let path = dir.join(format!("{name}.jsonl"));
        async move { outcome_of(&decode_file(&path).await).await }
    };
    assert_eq!(
        outcome("text").await["final_message"],
        "Hello from the mock"
    );
    assert_eq!(outcome("streamed").await["final_message"], "Hello, world");
    assert_eq!(
        outcome("output_schema").await["final_message"],
        r#"{"answer":"42"}"#
    );
    let patch = outcome("apply_patch").await;
    assert!(
        patch["touched_files"][0]
            .as_str()
            .is_some_and(|p| p.ends_with("/hello.txt")),
        "{patch}"
    );
    for failed in ["http_500", "http_429", "response_failed"] {
        let o = outcome(failed).await;
        assert!(
            o["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("codex turn failed: ")),
            "{failed}: {o}"
        );
    }
    // the error event before turn.failed is not what fails the turn: the turn.failed is
    let events = decode_file(&dir.join("http_500.jsonl")).await;
    let n = events.len();
    assert!(matches!(events[n - 2], Event::Error { .. }));
    assert!(matches!(events[n - 1], Event::TurnFailed { .. }));
    // resume keeps the thread id
    let first = decode_file(&dir.join("resume_first.jsonl")).await;
    let second = decode_file(&dir.join("resume.jsonl")).await;
    assert_eq!(first[0], second[0]);
}
