//! Fuzz target `exec-jsonl` (`cargo xtask fuzz --target exec-jsonl`): the JSONL framing and
//! the line decoder of `codex exec --json` output.
//!
//! Inputs: the recorded real output (`tests/fixtures/exec/*.jsonl`) plus one line of every
//! event and item type, mutated by [`codex_core::fuzzing::mutated`], and random bytes.
//! Properties: no panic, no hang; every line becomes exactly one event (an over-long one an
//! [`Event::Undecodable`]), of the kind the line's JSON says; the typed pass and the
//! [`Value`] path agree; framing does not depend on how the bytes are chunked and never
//! buffers much more than one line.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use codex_core::Event;
use codex_core::fuzzing::{self, Input};
use futures::StreamExt as _;
use proptest::prelude::*;
use serde_json::Value;
use tokio_util::codec::Decoder as _;

use crate::decode::{self, Frame, JsonlFraming, UNDECODABLE_TEXT_LIMIT, decode_line};

/// Lines of every event and item type the recordings may lack.
const EXTRA: &[&str] = &[
    r#"{"type":"item.completed","item":{"id":"i","type":"file_change","changes":[{"path":"p","kind":"add"},{"path":"q","kind":"update"}],"status":"completed"}}"#,
    r#"{"type":"item.updated","item":{"id":"i","type":"todo_list","items":[{"text":"a","completed":false}]}}"#,
    r#"{"type":"item.completed","item":{"id":"i","type":"mcp_tool_call","server":"s","tool":"t","arguments":{"a":1},"result":{"content":[]},"error":{"message":"m"},"status":"failed"}}"#,
    r#"{"type":"item.completed","item":{"id":"i","type":"web_search","query":"q"}}"#,
    r#"{"type":"item.completed","item":{"id":"i","type":"error","message":"m"}}"#,
    r#"{"type":"item.started","item":{"id":"i","type":"user_message","text":"t"}}"#,
    r#"{"type":"item.completed","item":{"id":7,"item_type":"agent_message","text":"t"}}"#,
    r#"{"type":"turn.completed","usage":{"input_tokens":1,"cached_input_tokens":0,"output_tokens":2,"reasoning_output_tokens":3}}"#,
    r#"{"type":"turn.failed","error":{"message":"m"}}"#,
    r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
    r#"{"type":"thread.compacted","n":1}"#,
];

fn corpus() -> Arc<[Value]> {
    static CORPUS: OnceLock<Arc<[Value]>> = OnceLock::new();
    CORPUS
        .get_or_init(|| {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/exec");
            let mut docs = fuzzing::jsonl_corpus(&dir);
            assert!(
                docs.len() > 40,
                "the recorded exec output is missing: {}",
                dir.display()
            );
            docs.extend(
                EXTRA
                    .iter()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
            docs.into()
        })
        .clone()
}

fn line() -> BoxedStrategy<Input> {
    prop_oneof![
        6 => fuzzing::mutated(corpus()),
        1 => fuzzing::random_bytes(400),
    ]
    .boxed()
}

const KNOWN: &[&str] = &[
    "thread.started",
    "turn.started",
    "item.started",
    "item.updated",
    "item.completed",
    "turn.completed",
    "turn.failed",
    "error",
];

/// What kind of event the line's own JSON asks for, checked against the decoder's answer.
fn check_kind(trimmed: &str, event: &Event) -> Result<(), TestCaseError> {
    let parsed = serde_json::from_str::<Value>(trimmed);
    let kind = parsed
        .as_ref()
        .ok()
        .and_then(|v| v.get("type"))
        .and_then(Value::as_str);
    match (kind, event) {
        (None, Event::Undecodable { .. }) => {}
        (None, other) => {
            return Err(TestCaseError::fail(format!(
                "a line without a string type became {other:?}"
            )));
        }
        (Some(k), Event::Unknown { kind, raw }) => {
            prop_assert!(!KNOWN.contains(&k), "known type {k} became Unknown");
            prop_assert_eq!(kind.as_str(), k);
            prop_assert_eq!(Some(raw), parsed.as_ref().ok());
        }
        (Some(k), ev) => {
            prop_assert!(KNOWN.contains(&k), "unknown type {k} became {ev:?}");
            let ok = match (k, ev) {
                (_, Event::Undecodable { .. }) => k.starts_with("item.") || k == "thread.started",
                ("thread.started", Event::ThreadStarted { .. })
                | ("turn.started", Event::TurnStarted { .. })
                | ("item.started", Event::ItemStarted { .. })
                | ("item.updated", Event::ItemUpdated { .. })
                | ("item.completed", Event::ItemCompleted { .. })
                | ("turn.completed", Event::TurnCompleted { .. })
                | ("turn.failed", Event::TurnFailed { .. })
                | ("error", Event::Error { .. }) => true,
                _ => false,
            };
            prop_assert!(ok, "type {k} became {ev:?}");
        }
    }
    Ok(())
}

#[test]
fn fuzz_exec_decode_line() {
    fuzzing::run("exec-jsonl/decode_line", 1, line(), |input| {
        let line = input.lossy();
        let event = decode_line(&line);
        if let Event::Undecodable { text, .. } = &event {
            prop_assert!(text.len() <= UNDECODABLE_TEXT_LIMIT + '…'.len_utf8());
        }
        match decode::both_paths(&line) {
            None => prop_assert!(
                matches!(event, Event::Undecodable { .. }),
                "a blank line became {:?}",
                event
            ),
            Some((typed, slow)) => {
                if let Some(typed) = typed {
                    prop_assert_eq!(&typed, &slow, "the typed pass differs from the Value path");
                }
                prop_assert_eq!(&event, &slow);
                check_kind(line.trim(), &event)?;
            }
        }
        Ok(())
    });
}

/// A stream of lines: mutated documents and random bytes, joined by `\n` or `\r\n`, now and
/// then an over-long line, cut into reads of random sizes.
#[derive(Debug, Clone)]
struct Stream {
    bytes: Input,
    max: usize,
    chunks: Vec<usize>,
}

fn stream() -> impl Strategy<Value = Stream> {
    (
        prop::collection::vec(
            (
                prop_oneof![
                    8 => line(),
                    1 => (1usize..6000).prop_map(|n| Input(vec![b'x'; n])),
                    1 => Just(Input(Vec::new())),
                ],
                prop_oneof![4 => Just(&b"\n"[..]), 1 => Just(&b"\r\n"[..]), 1 => Just(&b""[..])],
            ),
            0..12,
        ),
        prop_oneof![
            1usize..64,
            64usize..2048,
            Just(decode::DEFAULT_MAX_LINE_BYTES)
        ],
        prop::collection::vec(1usize..700, 1..8),
    )
        .prop_map(|(lines, max, chunks)| {
            let mut bytes = Vec::new();
            for (line, end) in lines {
                bytes.extend_from_slice(&line.0);
                bytes.extend_from_slice(end);
            }
            Stream {
                bytes: Input(bytes),
                max,
                chunks,
            }
        })
}

/// Frames `input` fed in reads of the given sizes (cycled), checking the buffer bound.
fn frames(input: &[u8], max: usize, chunks: &[usize]) -> Result<Vec<Frame>, TestCaseError> {
    let mut codec = JsonlFraming::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = codec
            .decode(&mut buf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        {
            out.push(f);
        }
        prop_assert!(
            buf.len() <= max + n,
            "buffered {} bytes with a limit of {max} and a read of {n}",
            buf.len()
        );
    }
    while let Some(f) = codec
        .decode_eof(&mut buf)
        .map_err(|e| TestCaseError::fail(e.to_string()))?
    {
        out.push(f);
    }
    Ok(out)
}

/// The frames the input must give, computed the simple way: one per line.
fn expected(input: &[u8], max: usize) -> Vec<Frame> {
    let mut segments: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    segments
        .into_iter()
        .map(|s| {
            if s.len() > max {
                Frame::TooLong {
                    prefix: String::new(),
                    limit: max,
                }
            } else {
                let s = s.strip_suffix(b"\r").unwrap_or(s);
                Frame::Line(String::from_utf8_lossy(s).into_owned())
            }
        })
        .collect()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

#[test]
fn fuzz_exec_framing() {
    fuzzing::run("exec-jsonl/framing", 1, stream(), |s| {
        let input = &s.bytes.0;
        let got = frames(input, s.max, &s.chunks)?;
        let want = expected(input, s.max);
        prop_assert_eq!(got.len(), want.len(), "one frame per line: {:?}", got);
        let mut lines = input.split(|b| *b == b'\n');
        for (g, w) in got.iter().zip(&want) {
            let segment = lines.next().unwrap_or_default();
            match (g, w) {
                (Frame::TooLong { prefix, limit }, Frame::TooLong { .. }) => {
                    prop_assert_eq!(*limit, s.max);
                    prop_assert!(prefix.len() <= UNDECODABLE_TEXT_LIMIT + '…'.len_utf8());
                    // the prefix is the start of that line, not of the next ones
                    let start = prefix.trim_end_matches('…').trim_end_matches('\u{FFFD}');
                    prop_assert!(
                        String::from_utf8_lossy(segment).starts_with(start),
                        "the prefix {prefix:?} is not the start of its line"
                    );
                }
                _ => prop_assert_eq!(g, w),
            }
        }
        // every non-blank line is one event, the same whichever way the bytes arrive
        let events: Vec<Event> = got.into_iter().filter_map(Frame::into_event).collect();
        if s.max == decode::DEFAULT_MAX_LINE_BYTES {
            prop_assert_eq!(&events, &decode::decode_all(input));
            let reader = ChunkedReader::new(input.clone(), s.chunks.clone());
            let streamed: Vec<Event> =
                runtime().block_on(decode::decode_stream(reader, s.max).collect());
            prop_assert_eq!(&events, &streamed);
        }
        Ok(())
    });
}

/// An `AsyncRead` that hands out its bytes in reads of the given sizes.
struct ChunkedReader {
    bytes: Vec<u8>,
    at: usize,
    chunks: Vec<usize>,
    next: usize,
}

impl ChunkedReader {
    fn new(bytes: Vec<u8>, chunks: Vec<usize>) -> Self {
        ChunkedReader {
            bytes,
            at: 0,
            chunks,
            next: 0,
        }
    }
}

impl tokio::io::AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let want = self.chunks[self.next % self.chunks.len()];
        self.next += 1;
        let n = want.min(buf.remaining()).min(self.bytes.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Nesting far past serde_json's recursion limit, in every place a line can hold a value:
/// an event, never a stack overflow.
#[test]
fn deep_nesting_is_an_event_not_a_stack_overflow() {
    let deep_array = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    for deep in [&deep_array, &deep_object] {
        for line in [
            deep.clone(),
            format!(r#"{{"type":"turn.completed","usage":{deep}}}"#),
            format!(
                r#"{{"type":"item.completed","item":{{"id":"i","type":"mcp_tool_call","server":"s","tool":"t","status":"completed","arguments":{deep}}}}}"#
            ),
            format!(r#"{{"type":"thread.compacted","x":{deep}}}"#),
            format!(r#"{{"type":"error","error":{deep}}}"#),
        ] {
            assert!(
                matches!(decode_line(&line), Event::Undecodable { .. }),
                "{}",
                &line[..80]
            );
        }
    }
}
