//! Helpers for the workspace's property-based fuzz tests (`cargo xtask fuzz`), compiled only
//! for tests and with the `fuzzing` feature: not part of the library's API.
//!
//! - [`config`]: the proptest configuration, with the number of cases read from
//!   [`CASES_ENV`] (default [`DEFAULT_CASES`], small enough for every `cargo test`).
//! - [`mutated`]: inputs that reach deep into a decoder: recorded real JSON documents,
//!   mutated structurally (values replaced by odd ones of every JSON type, members removed,
//!   added or renamed, arrays and objects swapped, nodes wrapped in deep nesting) and then
//!   textually (truncated, bytes flipped or spliced, invalid UTF-8, JSON snippets such as
//!   `1e400` inserted, 100,000-deep nesting around the whole).
//! - [`Watchdog`]: turns a hang into a reported failure: a case that does not finish within
//!   its limit aborts the test process after printing the input it was working on.
//!
//! Reproduce a failure with `PROPTEST_RNG_SEED=N` (proptest's own variables apply).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

/// The environment variable holding the number of cases per fuzz target.
pub const CASES_ENV: &str = "CODEX_BRIDGE_FUZZ_CASES";

/// The number of cases per target when [`CASES_ENV`] is not set.
pub const DEFAULT_CASES: u32 = 256;

/// The number of cases per target: [`CASES_ENV`], else [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var(CASES_ENV)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The proptest configuration of a fuzz target: [`cases`] cases divided by `cost`, for
/// targets whose one case is a batch of many inputs (but never fewer than the default
/// number, so `cargo test` runs every target alike); no failure files in the source tree
/// (the failing input is printed, shrunk); proptest's `PROPTEST_*` variables apply.
pub fn config(cost: u32) -> Config {
    let cases = cases();
    Config {
        cases: (cases / cost.max(1)).max(cases.min(DEFAULT_CASES)).max(1),
        failure_persistence: None,
        // shrinking a failure found after a million cases must not take an hour
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// Bytes that may not be UTF-8, printed as lossy text.
#[derive(Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl Input {
    /// The bytes as text, invalid UTF-8 replaced.
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.lossy();
        if text.len() > 2000 {
            let mut end = 2000;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            write!(f, "{:?}… ({} bytes)", &text[..end], self.0.len())
        } else {
            write!(f, "{text:?}")
        }
    }
}

/// Strings that break naive code: empty, huge, control characters, quotes, path tricks.
pub fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z/._-]{0,12}",
        2 => any::<String>(),
        1 => Just(String::new()),
        1 => Just("../../x".to_owned()),
        1 => Just("/etc/passwd".to_owned()),
        1 => Just("a\u{0}b".to_owned()),
        1 => Just("\"\\\n\r\t".to_owned()),
        1 => Just("é🙂\u{FFFF}\u{202E}".to_owned()),
        1 => (1usize..20_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// Scalars of every JSON type, with the edges: huge and negative numbers, floats, `-0`.
pub fn odd_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-32600),
            Just(-32001),
            Just(i64::from(u32::MAX))
        ]
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(serde_json::json!(-0.0)),
        Just(serde_json::json!(0.5)),
        Just(serde_json::json!(1e300)),
        odd_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, nested up to `depth` levels, with [`odd_scalar`] leaves.
pub fn any_json(depth: u32) -> BoxedStrategy<Value> {
    odd_scalar()
        .prop_recursive(depth, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Member names: common protocol keys and random ones.
fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(&[
            "id", "type", "method", "params", "result", "error", "code", "message", "data",
            "jsonrpc", "item", "thread_id", "threadId", "turnId", "turn", "thread", "status",
            "usage", "text", "delta", "itemId", "requestId", "kind", "pid", "log_file",
        ][..])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,8}",
    ]
    .boxed()
}

/// One structural change to a JSON document; `at` picks the node (in pre-order, modulo
/// the number of nodes).
#[derive(Debug, Clone)]
enum Edit {
    Replace {
        at: u32,
        with: Value,
    },
    Remove {
        at: u32,
        which: u32,
    },
    Insert {
        at: u32,
        key: String,
        with: Value,
    },
    /// Strings become numbers, numbers strings, objects arrays and arrays objects.
    FlipType {
        at: u32,
    },
    Wrap {
        at: u32,
        depth: u16,
        array: bool,
    },
    /// Copies one member's value under another member's name.
    CopyMember {
        at: u32,
        from: u32,
        to: u32,
    },
}

/// One change to the document's text.
#[derive(Debug, Clone)]
enum TextEdit {
    Truncate {
        at: u32,
    },
    Flip {
        at: u32,
        byte: u8,
    },
    Insert {
        at: u32,
        snippet: Vec<u8>,
    },
    Remove {
        at: u32,
        len: u16,
    },
    /// Copies a slice of the text elsewhere (duplicate members, unbalanced brackets).
    Splice {
        from: u32,
        len: u16,
        to: u32,
    },
    /// Wraps the whole text in `depth` arrays.
    Nest {
        depth: u32,
    },
}

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        4 => (any::<u32>(), any_json(3)).prop_map(|(at, with)| Edit::Replace { at, with }),
        2 => (any::<u32>(), any::<u32>()).prop_map(|(at, which)| Edit::Remove { at, which }),
        2 => (any::<u32>(), key(), any_json(2)).prop_map(|(at, key, with)| Edit::Insert { at, key, with }),
        2 => any::<u32>().prop_map(|at| Edit::FlipType { at }),
        1 => (any::<u32>(), prop_oneof![1u16..8, 120u16..140], any::<bool>())
            .prop_map(|(at, depth, array)| Edit::Wrap { at, depth, array }),
        1 => (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(at, from, to)| Edit::CopyMember { at, from, to }),
    ]
    .boxed()
}

/// Text that JSON parsers trip on.
const SNIPPETS: &[&str] = &[
    "1e400",
    "-0",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "0.1e-400",
    "NaN",
    "\"\\ud800\"",
    "\\u0000",
    "\\",
    "\"",
    ",",
    ":",
    "{",
    "}",
    "[",
    "]",
    "null",
    "{}",
    "[]",
    "\"id\":0,",
    "\"id\":\"0\",",
    "\"method\":\"x\",",
    "\n",
    "\r\n",
    " ",
    "\u{FEFF}",
];

fn text_edit() -> BoxedStrategy<TextEdit> {
    prop_oneof![
        2 => any::<u32>().prop_map(|at| TextEdit::Truncate { at }),
        3 => (any::<u32>(), any::<u8>()).prop_map(|(at, byte)| TextEdit::Flip { at, byte }),
        3 => (any::<u32>(), prop_oneof![
            3 => prop::sample::select(SNIPPETS).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 1..8),
            1 => Just(vec![0xff]),
            1 => Just(vec![0xc3]),
            1 => Just(vec![0xed, 0xa0, 0x80]),
        ])
            .prop_map(|(at, snippet)| TextEdit::Insert { at, snippet }),
        2 => (any::<u32>(), 1u16..64).prop_map(|(at, len)| TextEdit::Remove { at, len }),
        2 => (any::<u32>(), 1u16..200, any::<u32>())
            .prop_map(|(from, len, to)| TextEdit::Splice { from, len, to }),
        1 => prop_oneof![Just(127u32), Just(128), Just(129), Just(1_000), Just(100_000)]
            .prop_map(|depth| TextEdit::Nest { depth }),
    ]
    .boxed()
}

fn count(v: &Value) -> u32 {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The JSON pointer of the `n`th node in pre-order (`n` below the node count).
fn pointer_of(v: &Value, n: &mut u32, out: &mut String) -> bool {
    if *n == 0 {
        return true;
    }
    *n -= 1;
    let len = out.len();
    let found = match v {
        Value::Array(a) => a.iter().enumerate().any(|(i, c)| {
            out.truncate(len);
            out.push('/');
            out.push_str(&i.to_string());
            pointer_of(c, n, out)
        }),
        Value::Object(o) => o.iter().any(|(k, c)| {
            out.truncate(len);
            out.push('/');
            out.push_str(&k.replace('~', "~0").replace('/', "~1"));
            pointer_of(c, n, out)
        }),
        _ => false,
    };
    if !found {
        out.truncate(len);
    }
    found
}

/// The node `at` (modulo the number of nodes) in pre-order.
fn node(doc: &mut Value, at: u32) -> Option<&mut Value> {
    let mut n = at % count(doc);
    let mut pointer = String::new();
    if !pointer_of(doc, &mut n, &mut pointer) {
        return None;
    }
    doc.pointer_mut(&pointer)
}

fn apply(doc: &mut Value, edit: Edit) {
    match edit {
        Edit::Replace { at, with } => {
            if let Some(n) = node(doc, at) {
                *n = with;
            }
        }
        Edit::Remove { at, which } => match node(doc, at) {
            None => {}
            Some(n) => match n {
                Value::Array(a) if !a.is_empty() => {
                    let i = which as usize % a.len();
                    a.remove(i);
                }
                Value::Object(o) if !o.is_empty() => {
                    let k = o.keys().nth(which as usize % o.len()).cloned();
                    if let Some(k) = k {
                        o.remove(&k);
                    }
                }
                other => *other = Value::Null,
            },
        },
        Edit::Insert { at, key, with } => match node(doc, at) {
            Some(Value::Object(o)) => {
                o.insert(key, with);
            }
            Some(Value::Array(a)) => a.push(with),
            Some(other) => *other = with,
            None => {}
        },
        Edit::FlipType { at } => {
            let Some(n) = node(doc, at) else { return };
            *n = match std::mem::take(n) {
                Value::String(s) => s
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(s.len())),
                Value::Number(x) => Value::String(x.to_string()),
                Value::Bool(b) => Value::from(u8::from(b)),
                Value::Null => Value::Object(Map::new()),
                Value::Array(a) => Value::Object(
                    a.into_iter()
                        .enumerate()
                        .map(|(i, v)| (i.to_string(), v))
                        .collect(),
                ),
                Value::Object(o) => Value::Array(o.into_iter().map(|(_, v)| v).collect()),
            };
        }
        Edit::Wrap { at, depth, array } => {
            let Some(n) = node(doc, at) else { return };
            let mut v = std::mem::take(n);
            for _ in 0..depth {
                v = if array {
                    Value::Array(vec![v])
                } else {
                    let mut m = Map::new();
                    m.insert("x".into(), v);
                    Value::Object(m)
                };
            }
            *n = v;
        }
        Edit::CopyMember { at, from, to } => {
            if let Some(Value::Object(o)) = node(doc, at)
                && !o.is_empty()
            {
                let len = o.len();
                let from = o.keys().nth(from as usize % len).cloned();
                let to = o.keys().nth(to as usize % len).cloned();
                if let (Some(from), Some(to)) = (from, to) {
                    let v = o.get(&from).cloned().unwrap_or(Value::Null);
                    o.insert(to, v);
                }
            }
        }
    }
}

fn apply_text(text: &mut Vec<u8>, edit: TextEdit) {
    let pos = |at: u32, len: usize| at as usize % (len + 1);
    match edit {
        TextEdit::Truncate { at } => {
            let at = pos(at, text.len());
            text.truncate(at);
        }
        TextEdit::Flip { at, byte } => {
            if !text.is_empty() {
                let at = at as usize % text.len();
                text[at] = byte;
            }
        }
        TextEdit::Insert { at, snippet } => {
            let at = pos(at, text.len());
            text.splice(at..at, snippet);
        }
        TextEdit::Remove { at, len } => {
            let at = pos(at, text.len());
            let end = (at + usize::from(len)).min(text.len());
            text.drain(at..end);
        }
        TextEdit::Splice { from, len, to } => {
            let from = pos(from, text.len());
            let end = (from + usize::from(len)).min(text.len());
            let piece = text[from..end].to_vec();
            let to = pos(to, text.len());
            text.splice(to..to, piece);
        }
        TextEdit::Nest { depth } => {
            let depth = depth as usize;
            let mut out = Vec::with_capacity(text.len() + 2 * depth);
            out.extend(std::iter::repeat_n(b'[', depth));
            out.append(text);
            out.extend(std::iter::repeat_n(b']', depth));
            *text = out;
        }
    }
}

/// Mutations of the documents of `corpus`, as text: sometimes the document as it is,
/// mostly with up to four structural [`Edit`]s, then (half of the time) up to three
/// textual ones. The result is often still valid JSON, of the expected shape but for one
/// detail, which is what reaches past a decoder's first check.
pub fn mutated(corpus: Arc<[Value]>) -> BoxedStrategy<Input> {
    let n = corpus.len().max(1);
    (
        0..n,
        prop::collection::vec(edit(), 0..4),
        prop_oneof![
            1 => Just(Vec::new()),
            1 => prop::collection::vec(text_edit(), 1..4),
        ],
    )
        .prop_map(move |(i, edits, text_edits)| {
            let mut doc = corpus.get(i).cloned().unwrap_or(Value::Null);
            for e in edits {
                apply(&mut doc, e);
            }
            let mut text = serde_json::to_vec(&doc).unwrap_or_default();
            for e in text_edits {
                apply_text(&mut text, e);
            }
            Input(text)
        })
        .boxed()
}

/// Random bytes, sometimes with many newlines (for line framings).
pub fn random_bytes(max_len: usize) -> BoxedStrategy<Input> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max_len),
        prop::collection::vec(
            prop_oneof![8 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'{'), 1 => Just(b'"')],
            0..max_len
        ),
    ]
    .prop_map(Input)
    .boxed()
}

/// Every line of every `*.jsonl` file in `dir` that is JSON, in file-name order.
pub fn jsonl_corpus(dir: &std::path::Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// How long one case may run before [`run`] calls it a hang: 60 s, or
/// `CODEX_BRIDGE_FUZZ_HANG_SECS` (to attach a debugger to a hung case, say).
pub fn hang_limit() -> Duration {
    let secs = std::env::var("CODEX_BRIDGE_FUZZ_HANG_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Runs the fuzz target `target`: [`config`]`(cost)` cases of `strategy` through `test`,
/// under a [`Watchdog`]; prints the number of cases and the rate on stderr; panics with the
/// (shrunk) failing input when a case fails or panics.
pub fn run<S, F>(target: &str, cost: u32, strategy: S, test: F)
where
    S: Strategy,
    S::Value: Clone + fmt::Debug + Send + 'static,
    F: Fn(S::Value) -> Result<(), TestCaseError>,
{
    let config = config(cost);
    let cases = config.cases;
    let dog = Watchdog::start(target, hang_limit());
    let started = Instant::now();
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        dog.feed(Box::new(value.clone()));
        test(value)
    });
    let elapsed = started.elapsed();
    #[allow(clippy::print_stderr)]
    if result.is_ok() {
        eprintln!(
            "fuzz target {target}: {cases} cases in {elapsed:.1?} ({:.0} cases/s): ok",
            f64::from(cases) / elapsed.as_secs_f64().max(1e-9),
        );
    } else {
        eprintln!("fuzz target {target}: FAILED after {elapsed:.1?} (shrinking included)");
    }
    if let Err(e) = result {
        panic!("fuzz target {target}: {e}");
    }
}

type Described = Box<dyn fmt::Debug + Send>;

/// Aborts the test process when a case runs longer than its limit (a hang), printing the
/// target and the input of that case. Feed it at the start of every case.
pub struct Watchdog {
    inner: Arc<DogState>,
}

struct DogState {
    target: String,
    limit: Duration,
    fed: AtomicU64,
    input: Mutex<Option<Described>>,
    done: AtomicBool,
}

impl Watchdog {
    /// Starts watching `target` (a thread that wakes up twice a second).
    pub fn start(target: &str, limit: Duration) -> Watchdog {
        let inner = Arc::new(DogState {
            target: target.to_owned(),
            limit,
            fed: AtomicU64::new(0),
            input: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        let state = inner.clone();
        std::thread::spawn(move || {
            let mut seen = u64::MAX;
            let mut since = Instant::now();
            while !state.done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let now = state.fed.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    since = Instant::now();
                } else if since.elapsed() > state.limit {
                    let input = match state.input.lock() {
                        Ok(slot) => format!("{:?}", slot.as_ref()),
                        Err(_) => "(unavailable)".to_owned(),
                    };
                    let cut: String = input.chars().take(4000).collect();
                    // the process is about to abort: this is the only report there will be
                    #[allow(clippy::print_stderr)]
                    {
                        eprintln!(
                            "fuzz target {}: HANG: a case ran longer than {:?}; its input: {cut}",
                            state.target, state.limit,
                        );
                    }
                    std::process::abort();
                }
            }
        });
        Watchdog { inner }
    }

    /// Marks the start of a case working on `input`.
    pub fn feed(&self, input: Described) {
        if let Ok(mut slot) = self.inner.input.lock() {
            *slot = Some(input);
        }
        self.inner.fed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.inner.done.store(true, Ordering::Relaxed);
    }
}

impl fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdog")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}
