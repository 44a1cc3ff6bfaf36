//! Adversarial reviews: a turn whose answer must follow [`output_schema`], checked by
//! [`parse`] and shown by [`render`] (findings sorted by severity), or shown raw with the
//! reason when it does not match.
//!
//! The validator understands the subset of JSON Schema the schema uses (`type`, `required`,
//! `properties`, `items`, `enum`, `minimum`, `maximum`), so the schema sent to Codex and the
//! check of its answer cannot drift apart.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The JSON Schema an adversarial review's answer must follow.
///
/// Every property is required and no other is allowed (the form strict structured outputs
/// need).
pub fn output_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["verdict", "summary", "findings", "next_steps"],
        "properties": {
            "verdict": {"type": "string", "enum": ["approve", "needs-attention"]},
            "summary": {"type": "string"},
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": [
                        "severity", "title", "body", "file", "line_start", "line_end",
                        "confidence", "recommendation"
                    ],
                    "properties": {
                        "severity": {"type": "string", "enum": ["critical", "high", "medium", "low"]},
                        "title": {"type": "string"},
                        "body": {"type": "string"},
                        "file": {"type": "string"},
                        "line_start": {"type": "integer", "minimum": 0},
                        "line_end": {"type": "integer", "minimum": 0},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        "recommendation": {"type": "string"}
                    }
                }
            },
            "next_steps": {"type": "array", "items": {"type": "string"}}
        }
    })
}

/// The reviewer's overall judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Verdict {
    /// Ship it.
    Approve,
    /// Something must be looked at first.
    NeedsAttention,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Approve => "approve",
            Verdict::NeedsAttention => "needs-attention",
        })
    }
}

/// How bad a finding is; ordered from the worst (`Critical < High < Medium < Low`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// Data loss, security hole, crash on the main path.
    Critical,
    /// A real bug most users will hit.
    High,
    /// A bug in a corner, or a serious maintainability problem.
    Medium,
    /// A nit.
    Low,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        })
    }
}

/// One problem the reviewer found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// A one-line title.
    pub title: String,
    /// The explanation.
    pub body: String,
    /// The file (relative to the workspace).
    pub file: String,
    /// First line concerned.
    pub line_start: u64,
    /// Last line concerned.
    pub line_end: u64,
    /// How sure the reviewer is, from 0 to 1.
    pub confidence: f64,
    /// What to do about it.
    pub recommendation: String,
}

/// A whole adversarial review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdversarialReview {
    /// The verdict.
    pub verdict: Verdict,
    /// A short summary.
    pub summary: String,
    /// The findings, as the reviewer listed them.
    pub findings: Vec<Finding>,
    /// What to do next.
    pub next_steps: Vec<String>,
}

impl AdversarialReview {
    /// The findings sorted by severity (worst first), then by confidence (highest first),
    /// then by file and line.
    pub fn sorted_findings(&self) -> Vec<&Finding> {
        let mut out: Vec<&Finding> = self.findings.iter().collect();
        out.sort_by(|a, b| {
            a.severity
                .cmp(&b.severity)
                .then(b.confidence.total_cmp(&a.confidence))
                .then(a.file.cmp(&b.file))
                .then(a.line_start.cmp(&b.line_start))
        });
        out
    }
}

/// Why an answer is not a valid adversarial review.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
#[non_exhaustive]
pub struct SchemaMismatch {
    /// Every problem found, `path: problem`, joined by "; ".
    pub reason: String,
}

/// Checks `answer` against [`output_schema`] and reads it. A Markdown code fence around the
/// JSON is tolerated.
pub fn parse(answer: &str) -> Result<AdversarialReview, SchemaMismatch> {
    let text = strip_fence(answer);
    let value: Value = serde_json::from_str(text).map_err(|e| SchemaMismatch {
        reason: format!("the answer is not JSON ({e})"),
    })?;
    let mut problems = Vec::new();
    validate(&value, &output_schema(), "", &mut problems);
    if !problems.is_empty() {
        return Err(SchemaMismatch {
            reason: problems.join("; "),
        });
    }
    serde_json::from_value(value).map_err(|e| SchemaMismatch {
        reason: e.to_string(),
    })
}

fn strip_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// Checks `value` against the subset of JSON Schema used here; appends `path: problem`
/// lines to `problems` (at most 20).
fn validate(value: &Value, schema: &Value, path: &str, problems: &mut Vec<String>) {
    const MAX_PROBLEMS: usize = 20;
    if problems.len() >= MAX_PROBLEMS {
        return;
    }
    let here = if path.is_empty() { "(answer)" } else { path };
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        };
        if !ok {
            problems.push(format!("{here}: expected {ty}, got {}", describe(value)));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        problems.push(format!(
            "{here}: {value} is not one of {}",
            names.join(", ")
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            problems.push(format!("{here}: {n} is below the minimum {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            problems.push(format!("{here}: {n} is above the maximum {max}"));
        }
    }
    if let Some(object) = value.as_object() {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(key) {
                problems.push(format!("{}: missing", join(key)));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (key, sub) in props {
                if let Some(v) = object.get(key) {
                    validate(v, sub, &join(key), problems);
                }
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item, schema, &format!("{path}[{i}]"), problems);
        }
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Renders a review for people: the verdict, the summary, the findings sorted by severity,
/// the next steps.
pub fn render(review: &AdversarialReview) -> String {
    let mut out = format!("Verdict: {}\n", review.verdict);
    if !review.summary.trim().is_empty() {
        out.push('\n');
        out.push_str(review.summary.trim());
        out.push('\n');
    }
    let findings = review.sorted_findings();
    out.push('\n');
    if findings.is_empty() {
        out.push_str("No findings.\n");
    } else {
        out.push_str(&format!("Findings ({}):\n", findings.len()));
        for (i, f) in findings.iter().enumerate() {
            let lines = if f.line_end > f.line_start {
                format!("{}-{}", f.line_start, f.line_end)
            } else {
                f.line_start.to_string()
            };
            out.push_str(&format!(
                "\n{}. [{}] {} ({}:{}, confidence {:.2})\n",
                i + 1,
                f.severity,
                f.title.trim(),
                f.file,
                lines,
                f.confidence
            ));
            for line in f.body.trim().lines() {
                out.push_str(&format!("   {line}\n"));
            }
            if !f.recommendation.trim().is_empty() {
                out.push_str(&format!("   Recommendation: {}\n", f.recommendation.trim()));
            }
        }
    }
    if !review.next_steps.is_empty() {
        out.push_str("\nNext steps:\n");
        for step in &review.next_steps {
            out.push_str(&format!("- {}\n", step.trim()));
        }
    }
    out
}

/// Renders an answer that did not match the schema: the reason, then the answer as it came.
pub fn render_mismatch(answer: &str, reason: &str) -> String {
    let mut out = format!(
        "The answer does not follow the adversarial-review schema ({reason}); it is shown as it came:\n\n"
    );
    out.push_str(answer.trim_end());
    out.push('\n');
    out
}

/// The prompt of an adversarial review of `target` (a description of what is reviewed, such
/// as "the uncommitted changes"), with the change itself (`diff`, already bounded by the
/// caller) and the user's optional focus.
pub fn prompt(target: &str, diff: &str, focus: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "You are an adversarial code reviewer. Try hard to break the change below: look for \
         bugs, regressions, security holes, race conditions, data loss, unhandled errors and \
         missing tests. Do not praise; report only real, specific problems, each with the file \
         and lines, your confidence (0 to 1) and a concrete recommendation. You may inspect the \
         repository with read-only commands. Do not modify any file.\n\n",
    );
    out.push_str(&format!("Review target: {target}.\n"));
    if !focus.trim().is_empty() {
        out.push_str(&format!("Focus: {}\n", focus.trim()));
    }
    out.push_str(
        "\nAnswer with JSON only, following the given schema: verdict \"approve\" when nothing \
         needs attention, else \"needs-attention\"; severity is one of critical, high, medium, \
         low.\n",
    );
    if !diff.trim().is_empty() {
        out.push_str("\n<diff>\n");
        out.push_str(diff.trim_end());
        out.push_str("\n</diff>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: &str, title: &str, confidence: f64) -> Value {
        json!({"severity": severity, "title": title, "body": "why\nmore", "file": "src/a.rs",
               "line_start": 3, "line_end": 7, "confidence": confidence, "recommendation": "do it"})
    }

    #[test]
    fn valid_answers_are_sorted_by_severity_then_confidence() {
        let answer = json!({"verdict": "needs-attention", "summary": "s",
            "findings": [finding("low", "L", 0.9), finding("high", "H1", 0.4),
                         finding("critical", "C", 0.1), finding("high", "H2", 0.8),
                         finding("medium", "M", 0.5)],
            "next_steps": ["one", "two"]});
        let review = parse(&answer.to_string()).unwrap();
        let order: Vec<&str> = review
            .sorted_findings()
            .iter()
            .map(|f| f.title.as_str())
            .collect();
        assert_eq!(order, ["C", "H2", "H1", "M", "L"]);
        let text = render(&review);
        assert!(
            text.contains("1. [critical] C (src/a.rs:3-7, confidence 0.10)"),
            "{text}"
        );
        assert!(
            text.contains("   why\n   more\n   Recommendation: do it\n"),
            "{text}"
        );
        assert!(text.ends_with("Next steps:\n- one\n- two\n"), "{text}");
    }

    #[test]
    fn every_problem_is_named() {
        let answer = json!({"verdict": "ok", "findings": [
            {"severity": "urgent", "title": 3, "body": "", "file": "f", "line_start": -1,
             "line_end": 1.5, "confidence": 2, "recommendation": ""}], "next_steps": "x"});
        let err = parse(&answer.to_string()).unwrap_err().reason;
        for part in [
            "verdict: \"ok\" is not one of approve, needs-attention",
            "summary: missing",
            "findings[0].severity: \"urgent\" is not one of critical, high, medium, low",
            "findings[0].title: expected string, got an integer",
            "findings[0].line_start: -1 is below the minimum 0",
            "findings[0].line_end: expected integer, got a fractional number",
            "findings[0].confidence: 2 is above the maximum 1",
            "next_steps: expected array, got a string",
        ] {
            assert!(err.contains(part), "{part} not in {err}");
        }
        assert!(
            parse("[1]")
                .unwrap_err()
                .reason
                .contains("(answer): expected object")
        );
    }

    #[test]
    fn fences_are_tolerated() {
        let inner = r#"{"verdict":"approve","summary":"","findings":[],"next_steps":[]}"#;
        assert!(parse(&format!("```json\n{inner}\n```")).is_ok());
        assert!(parse(&format!("```\n{inner}\n```\n")).is_ok());
        assert_eq!(strip_fence("```"), "");
    }
}

/// The examples that documented this module when it was public API of codex-agent.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn example_1() {
        use crate::adversarial::{parse, render};
        let answer = r#"{"verdict":"needs-attention","summary":"One bug.","findings":[
          {"severity":"low","title":"Typo","body":"b","file":"a.rs","line_start":1,"line_end":1,"confidence":0.5,"recommendation":"fix"},
          {"severity":"critical","title":"Crash","body":"b","file":"b.rs","line_start":3,"line_end":4,"confidence":0.9,"recommendation":"guard"}],
          "next_steps":["add a test"]}"#;
        let review = parse(answer).unwrap();
        let text = render(&review);
        assert!(text.find("Crash").unwrap() < text.find("Typo").unwrap());
    }

    #[test]
    fn example_2() {
        let schema = crate::adversarial::output_schema();
        assert_eq!(schema["required"][0], "verdict");
    }

    #[test]
    fn example_3() {
        let review = crate::adversarial::parse(
            r#"{"verdict":"approve","summary":"","findings":[],"next_steps":[]}"#,
        )
        .unwrap();
        assert!(review.sorted_findings().is_empty());
    }

    #[test]
    fn example_4() {
        let err = crate::adversarial::parse(r#"{"verdict":"maybe"}"#).unwrap_err();
        assert!(err.to_string().contains("verdict"));
    }

    #[test]
    fn example_5() {
        use crate::adversarial::parse;
        let err = parse(r#"{"verdict":"approve","summary":"ok","findings":[{"severity":"urgent"}],"next_steps":[]}"#).unwrap_err();
        assert!(
            err.to_string().contains(
                r#"findings[0].severity: "urgent" is not one of critical, high, medium, low"#
            ),
            "{err}"
        );
        assert!(
            parse("not json")
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
    }

    #[test]
    fn example_6() {
        let review = crate::adversarial::parse(
            r#"{"verdict":"approve","summary":"Looks right.","findings":[],"next_steps":[]}"#,
        )
        .unwrap();
        let text = crate::adversarial::render(&review);
        assert!(text.starts_with("Verdict: approve\n"));
        assert!(text.contains("No findings."));
    }

    #[test]
    fn example_7() {
        let text = crate::adversarial::render_mismatch("hello", "the answer is not JSON");
        assert!(text.contains("the answer is not JSON") && text.ends_with("hello\n"));
    }

    #[test]
    fn example_8() {
        let p = crate::adversarial::prompt(
            "the uncommitted changes",
            "diff --git a/x b/x",
            "error handling",
        );
        assert!(p.contains("error handling") && p.contains("diff --git"));
    }
}
