//! Event decoding throughput: our decoders against plain `serde_json::Value` parsing of the
//! same lines.
//!
//! Two corpora, each a recording repeated until it reaches a few MB:
//!
//! - **exec**: every line of `tests/fixtures/exec/*.jsonl` (real `codex exec --json`
//!   output), decoded by [`codex_cli_backend::decode_line`] (and, as an extra row, by
//!   [`codex_cli_backend::decode_all`] over the whole buffer, framing included);
//! - **app-server**: every server notification of `codex-asp/tests/fixtures/*.jsonl` (real
//!   `codex app-server` transcripts), each taken verbatim as one line, decoded into a
//!   [`ServerNotification`] by [`ServerNotification::from_json`] (typed params straight from
//!   the text; `Raw` and errors through `ServerNotification::from_parts`). Extra rows show
//!   the `Value` + `from_parts` path alone (`serde_json::from_str::<ServerNotification>`) and
//!   what the connection does with every notification frame it receives: `Value` parse, then
//!   [`codex_asp::Notification::new`].
//!
//! Within a pass the decoders take turns on 64 KB blocks of the corpus (in a rotating order);
//! a decoder's figure is the corpus size over the sum of its fastest time on each block (see
//! `measure`), so that load from other processes, which only ever adds time, drops out.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use codex_asp::Notification;
use codex_asp::protocol::ServerNotification;
use codex_core::Event;
use serde_json::Value;

/// Lines to decode, repeated to a target size.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// `exec` or `app-server`.
    pub name: &'static str,
    /// What the lines are.
    pub source: String,
    /// The lines (without line endings).
    pub lines: Vec<String>,
    /// How many distinct lines were read from the fixtures.
    pub distinct: usize,
    /// The total size, line endings included.
    pub bytes: usize,
}

impl Corpus {
    fn repeated(name: &'static str, source: String, distinct: Vec<String>, target: usize) -> Self {
        let one: usize = distinct.iter().map(|l| l.len() + 1).sum();
        let copies = target.div_ceil(one.max(1)).max(1);
        let mut lines = Vec::with_capacity(distinct.len() * copies);
        for _ in 0..copies {
            lines.extend(distinct.iter().cloned());
        }
        Corpus {
            name,
            source,
            distinct: distinct.len(),
            bytes: one * copies,
            lines,
        }
    }

    /// The lines joined with `\n` (a recorded stream).
    pub fn joined(&self) -> Vec<u8> {
        join(&self.lines)
    }

    /// The corpus cut into blocks of about `target` bytes (whole lines).
    pub fn blocks(&self, target: usize) -> Vec<Block> {
        let mut out = Vec::new();
        let mut lines = Vec::new();
        let mut bytes = 0;
        for line in &self.lines {
            bytes += line.len() + 1;
            lines.push(line.clone());
            if bytes >= target {
                out.push(Block::new(std::mem::take(&mut lines)));
                bytes = 0;
            }
        }
        if !lines.is_empty() {
            out.push(Block::new(lines));
        }
        out
    }
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// A slice of a corpus that every decoder works through in turn before the next one.
#[derive(Debug, Clone)]
pub struct Block {
    /// The lines.
    pub lines: Vec<String>,
    /// The same, joined with `\n`.
    pub joined: Vec<u8>,
}

impl Block {
    fn new(lines: Vec<String>) -> Block {
        Block {
            joined: join(&lines),
            lines,
        }
    }
}

/// The size of the blocks the decoders take turns on.
pub const BLOCK_BYTES: usize = 64 * 1024;

fn jsonl_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no *.jsonl in {}", dir.display()));
    }
    Ok(files)
}

/// Every non-blank line of `dir/*.jsonl` (recorded `codex exec --json` output), repeated to
/// at least `target_bytes`.
///
/// # Errors
/// When the folder cannot be read or holds no recording.
pub fn exec_corpus(dir: &Path, target_bytes: usize) -> Result<Corpus, String> {
    let files = jsonl_files(dir)?;
    let mut distinct = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        distinct.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    Ok(Corpus::repeated(
        "exec",
        format!(
            "{} lines of {} files in {}",
            distinct.len(),
            files.len(),
            dir.display()
        ),
        distinct,
        target_bytes,
    ))
}

/// The server notifications of the app-server transcripts in `dir/*.jsonl` (lines
/// `{"dir":"in","msg":{...}}` whose message has a method and no id), each message's text
/// taken verbatim, repeated to at least `target_bytes`.
///
/// # Errors
/// When the folder cannot be read or holds no notification.
pub fn asp_corpus(dir: &Path, target_bytes: usize) -> Result<Corpus, String> {
    const PREFIX: &str = r#"{"dir":"in","msg":"#;
    let files = jsonl_files(dir)?;
    let mut distinct = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        for line in text.lines() {
            let Some(msg) = line
                .trim()
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.strip_suffix('}'))
            else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(msg) else {
                continue;
            };
            if value.get("method").is_some() && value.get("id").is_none() {
                distinct.push(msg.to_owned());
            }
        }
    }
    if distinct.is_empty() {
        return Err(format!("no server notification in {}", dir.display()));
    }
    Ok(Corpus::repeated(
        "app-server",
        format!(
            "{} notifications of {} transcripts in {}",
            distinct.len(),
            files.len(),
            dir.display()
        ),
        distinct,
        target_bytes,
    ))
}

/// One decoder's throughput over a corpus.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// What was measured.
    pub label: String,
    /// MB/s (10^6 bytes): the corpus size over the sum of the fastest time on each block.
    pub mb_per_s: f64,
    /// Every whole pass, MB/s.
    pub passes: Vec<f64>,
}

/// The decoding results of one corpus.
#[derive(Debug, Clone)]
pub struct DecodeResult {
    /// The corpus name.
    pub corpus: &'static str,
    /// Where its lines come from.
    pub source: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// How many lines.
    pub lines: usize,
    /// `serde_json::from_str::<Value>` per line.
    pub value: Throughput,
    /// Our decoder per line.
    pub ours: Throughput,
    /// Informational rows.
    pub extra: Vec<Throughput>,
    /// Lines our decoder could not decode into a known shape (`Undecodable` events, or
    /// typed notifications that fell back to `Raw` with a parse error): should be 0.
    pub failures: usize,
}

impl DecodeResult {
    /// Our throughput over `Value`'s (≥ 1 means at least as fast).
    pub fn speedup(&self) -> f64 {
        self.ours.mb_per_s / self.value.mb_per_s.max(f64::MIN_POSITIVE)
    }
}

type Pass<'a> = (&'a str, Box<dyn Fn(&Block) + 'a>);

/// Runs every decoder over the corpus `passes` times. Within a pass the decoders take turns
/// block by block (in a rotating order). A decoder's throughput is the corpus size over the
/// sum, across blocks, of its fastest time on each block: a block takes a fraction of a
/// millisecond, so a preemption by another process lands on one decoder's block now and then
/// and only ever adds time; the fastest of several passes is the time the decoding itself
/// takes. The median pass is kept too (`passes`, whole-pass throughput).
fn measure(corpus: &Corpus, passes: usize, decoders: &[Pass<'_>]) -> Vec<Throughput> {
    let blocks = corpus.blocks(BLOCK_BYTES);
    let n = decoders.len();
    // one untimed pass each, to fault in the allocator's pages
    for block in &blocks {
        for (_, f) in decoders {
            f(block);
        }
    }
    let mut best = vec![vec![f64::INFINITY; blocks.len()]; n];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); n];
    for pass in 0..passes.max(1) {
        let mut secs = vec![0.0f64; n];
        for (b, block) in blocks.iter().enumerate() {
            for k in 0..n {
                let i = (k + b + pass) % n;
                let start = Instant::now();
                (decoders[i].1)(block);
                let t = start.elapsed().as_secs_f64();
                secs[i] += t;
                best[i][b] = best[i][b].min(t);
            }
        }
        for i in 0..n {
            runs[i].push(corpus.bytes as f64 / secs[i].max(1e-9) / 1e6);
        }
    }
    decoders
        .iter()
        .zip(runs)
        .zip(best)
        .map(|(((label, _), passes), best)| Throughput {
            label: (*label).to_owned(),
            mb_per_s: corpus.bytes as f64 / best.iter().sum::<f64>().max(1e-9) / 1e6,
            passes,
        })
        .collect()
}

fn value_pass(block: &Block) {
    for line in &block.lines {
        black_box(serde_json::from_str::<Value>(black_box(line)).ok());
    }
}

/// Measures the exec corpus: `Value` vs [`codex_cli_backend::decode_line`], and
/// [`codex_cli_backend::decode_all`] over the joined stream.
pub fn bench_exec(corpus: &Corpus, passes: usize) -> DecodeResult {
    let failures = corpus
        .lines
        .iter()
        .filter(|l| {
            matches!(
                codex_cli_backend::decode_line(l),
                Event::Undecodable { .. } | Event::Unknown { .. }
            )
        })
        .count();
    let decoders: Vec<Pass<'_>> = vec![
        ("serde_json::Value per line", Box::new(value_pass)),
        (
            "codex_cli_backend::decode_line per line",
            Box::new(|b: &Block| {
                for line in &b.lines {
                    black_box(codex_cli_backend::decode_line(black_box(line)));
                }
            }),
        ),
        (
            "codex_cli_backend::decode_all (framing + decode of each 64 KB block, its events kept)",
            Box::new(|b: &Block| {
                black_box(codex_cli_backend::decode_all(black_box(&b.joined)));
            }),
        ),
        (
            "the same with Value: split each block into lines, Value per line, all kept",
            Box::new(|b: &Block| {
                let values: Vec<Value> = black_box(&b.joined)
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .filter_map(|l| serde_json::from_slice(l).ok())
                    .collect();
                black_box(values);
            }),
        ),
    ];
    let mut results = measure(corpus, passes, &decoders).into_iter();
    let value = results.next().expect("three decoders");
    let ours = results.next().expect("three decoders");
    DecodeResult {
        corpus: corpus.name,
        source: corpus.source.clone(),
        bytes: corpus.bytes,
        lines: corpus.lines.len(),
        value,
        ours,
        extra: results.collect(),
        failures,
    }
}

/// Measures the app-server corpus: `Value` vs decoding into [`ServerNotification`], and the
/// connection's per-frame path (`Value`, then [`Notification::new`]).
pub fn bench_asp(corpus: &Corpus, passes: usize) -> DecodeResult {
    let failures = corpus
        .lines
        .iter()
        .filter(|l| match ServerNotification::from_json(l) {
            Ok(n) => n.parse_error().is_some(),
            Err(_) => true,
        })
        .count();
    let decoders: Vec<Pass<'_>> = vec![
        ("serde_json::Value per line", Box::new(value_pass)),
        (
            "ServerNotification::from_json per line (method borrowed first, typed params straight from the text)",
            Box::new(|b: &Block| {
                for line in &b.lines {
                    black_box(ServerNotification::from_json(black_box(line)).ok());
                }
            }),
        ),
        (
            "serde_json::from_str::<ServerNotification> per line (Value, then from_parts)",
            Box::new(|b: &Block| {
                for line in &b.lines {
                    black_box(serde_json::from_str::<ServerNotification>(black_box(line)).ok());
                }
            }),
        ),
        (
            "connection path: Value, then Notification::new (typed + raw params + ids)",
            Box::new(|b: &Block| {
                for line in &b.lines {
                    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(black_box(line))
                    else {
                        continue;
                    };
                    let method = match obj.remove("method") {
                        Some(Value::String(m)) => m,
                        _ => continue,
                    };
                    let params = obj.remove("params").unwrap_or(Value::Null);
                    black_box(Notification::new(method, params));
                }
            }),
        ),
    ];
    let mut results = measure(corpus, passes, &decoders).into_iter();
    let value = results.next().expect("three decoders");
    let ours = results.next().expect("three decoders");
    DecodeResult {
        corpus: corpus.name,
        source: corpus.source.clone(),
        bytes: corpus.bytes,
        lines: corpus.lines.len(),
        value,
        ours,
        extra: results.collect(),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> std::path::PathBuf {
        crate::pinned::workspace_root()
    }

    #[test]
    fn corpora_come_from_the_fixtures() {
        let exec = exec_corpus(&workspace().join("tests/fixtures/exec"), 10_000).unwrap();
        assert!(exec.bytes >= 10_000);
        assert!(exec.distinct > 10);
        assert_eq!(exec.lines.len() % exec.distinct, 0);
        let asp = asp_corpus(&workspace().join("codex-asp/tests/fixtures"), 10_000).unwrap();
        assert!(asp.distinct > 10);
        assert!(
            asp.lines
                .iter()
                .all(|l| l.starts_with('{') && l.ends_with('}'))
        );
        assert_eq!(asp.joined().len(), asp.bytes);
    }

    #[test]
    fn every_recorded_line_decodes() {
        let exec = exec_corpus(&workspace().join("tests/fixtures/exec"), 1).unwrap();
        let r = bench_exec(&exec, 1);
        assert_eq!(r.failures, 0);
        assert!(r.value.mb_per_s > 0.0 && r.ours.mb_per_s > 0.0);
        assert_eq!(r.extra.len(), 2);
        let asp = asp_corpus(&workspace().join("codex-asp/tests/fixtures"), 1).unwrap();
        let r = bench_asp(&asp, 1);
        assert_eq!(r.failures, 0);
        assert_eq!(r.extra.len(), 2);
    }
}
