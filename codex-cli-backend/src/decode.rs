//! Decoding the JSONL stream of `codex exec --json` into [`codex_core::Event`]s.
//!
//! Two layers, both pure and unit-tested:
//!
//! - [`JsonlFraming`] cuts the byte stream into lines, bounded: a line longer than the
//!   limit (default [`DEFAULT_MAX_LINE_BYTES`]) becomes one [`Frame::TooLong`] and the rest of
//!   it is skipped without being buffered. Invalid UTF-8 is replaced, never an error.
//! - [`decode_line`] turns one line into one [`Event`]. It never fails and never panics:
//!   text that is not JSON becomes [`Event::Undecodable`] (text truncated to
//!   [`UNDECODABLE_TEXT_LIMIT`]), an unknown event type [`Event::Unknown`], an unknown item
//!   type [`ItemDetails::Unknown`], all carrying the raw JSON.
//!
//! The event types of codex 0.169.0: `thread.started{thread_id}`, `turn.started`,
//! `item.started|item.updated|item.completed{item}`, `turn.completed{usage}`,
//! `turn.failed{error{message}}` and `error{message}`. An `error` event is not terminal
//! (codex reports "Reconnecting... 1/5" and may still succeed).

use bytes::{Buf, BytesMut};
use codex_core::event::{FileChangeKind, FileUpdate, ItemStatus, TodoEntry};
use codex_core::{Event, FailureKind, Item, ItemDetails, Usage};
use futures::{Stream, StreamExt as _};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use tokio::io::AsyncRead;
use tokio_util::codec::{Decoder, FramedRead};

/// The default bound on one line of codex output: 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How much of an undecodable line an [`Event::Undecodable`] keeps: 4 KiB.
pub const UNDECODABLE_TEXT_LIMIT: usize = 4 * 1024;

/// One piece of the framed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its line ending, lossily decoded as UTF-8.
    Line(String),
    /// A line longer than the limit; its rest is being skipped.
    TooLong {
        /// The start of the line (at most [`UNDECODABLE_TEXT_LIMIT`] bytes).
        prefix: String,
        /// The limit it exceeded.
        limit: usize,
    },
}

impl Frame {
    /// The event this frame stands for: [`decode_line`] for a line, an
    /// [`Event::Undecodable`] with reason "line exceeds N bytes" for an over-long one.
    /// Blank lines stand for nothing.
    pub fn into_event(self) -> Option<Event> {
        match self {
            Frame::Line(line) if line.trim().is_empty() => None,
            Frame::Line(line) => Some(decode_line(&line)),
            Frame::TooLong { prefix, limit } => Some(Event::Undecodable {
                text: prefix,
                reason: format!("line exceeds {limit} bytes; the rest of it was skipped"),
            }),
        }
    }
}

/// A line framing for [`tokio_util::codec::FramedRead`] that never buffers more than the
/// limit (plus one read) and never errors on content.
#[derive(Debug, Clone)]
pub struct JsonlFraming {
    max: usize,
    /// How far the current buffer was already searched for a newline.
    scanned: usize,
    /// Skipping the rest of an over-long line.
    discarding: bool,
}

impl Default for JsonlFraming {
    fn default() -> Self {
        JsonlFraming::new(DEFAULT_MAX_LINE_BYTES)
    }
}

impl JsonlFraming {
    /// A framing that accepts lines of at most `max_line_bytes` bytes (at least 1).
    pub fn new(max_line_bytes: usize) -> Self {
        JsonlFraming {
            max: max_line_bytes.max(1),
            scanned: 0,
            discarding: false,
        }
    }
}

fn lossy_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

impl Decoder for JsonlFraming {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            if self.discarding {
                match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = false;
                        self.scanned = 0;
                        continue;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            // a newline at index `max` still ends a line of exactly `max` bytes
            let window = buf.len().min(self.max.saturating_add(1));
            let start = self.scanned.min(window);
            if let Some(off) = buf[start..window].iter().position(|b| *b == b'\n') {
                let line = buf.split_to(start + off + 1);
                self.scanned = 0;
                return Ok(Some(Frame::Line(lossy_line(&line[..line.len() - 1]))));
            }
            if buf.len() > self.max {
                // the over-long line may already end further on in the buffer
                let end = buf[window..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map(|off| window + off);
                // the prefix is of this line only, not of the lines after it
                let prefix =
                    truncate_lossy(&buf[..end.unwrap_or(buf.len())], UNDECODABLE_TEXT_LIMIT);
                match end {
                    Some(end) => buf.advance(end + 1),
                    None => {
                        buf.clear();
                        self.discarding = true;
                    }
                }
                self.scanned = 0;
                return Ok(Some(Frame::TooLong {
                    prefix,
                    limit: self.max,
                }));
            }
            self.scanned = buf.len();
            return Ok(None);
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        self.scanned = 0;
        if self.discarding {
            self.discarding = false;
            buf.clear();
            return Ok(None);
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let line = buf.split_to(buf.len());
        Ok(Some(Frame::Line(lossy_line(&line))))
    }
}

/// Decodes everything `reader` yields (a live stdout or a recorded file) with the same
/// framing and decoder as [`CliBackend`](crate::CliBackend): a stream of events that ends
/// at end of input or at the first read error (logged). Blank lines yield nothing.
pub fn decode_stream<R>(reader: R, max_line_bytes: usize) -> impl Stream<Item = Event> + Send
where
    R: AsyncRead + Send,
{
    FramedRead::new(reader, JsonlFraming::new(max_line_bytes))
        .take_while(|frame| {
            let go_on = match frame {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!("reading codex output: {e}");
                    false
                }
            };
            std::future::ready(go_on)
        })
        .filter_map(|frame| std::future::ready(frame.ok().and_then(Frame::into_event)))
}

/// Decodes a complete recording of `codex exec --json` output held in memory (lines of at
/// most [`DEFAULT_MAX_LINE_BYTES`]).
pub fn decode_all(bytes: &[u8]) -> Vec<Event> {
    let mut framing = JsonlFraming::default();
    let mut buf = BytesMut::from(bytes);
    let mut events = Vec::new();
    // the framing never fails on content; an error here could only come from a bug
    while let Ok(Some(frame)) = framing.decode_eof(&mut buf) {
        events.extend(frame.into_event());
    }
    events
}

/// The first `limit` bytes of `bytes` as text (cut at a character boundary), with `…` when
/// something was cut.
fn truncate_lossy(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned();
    if bytes.len() > limit {
        format!("{text}…")
    } else {
        text
    }
}

/// `text` cut to at most [`UNDECODABLE_TEXT_LIMIT`] bytes at a character boundary.
fn truncate_text(text: &str) -> String {
    if text.len() <= UNDECODABLE_TEXT_LIMIT {
        return text.to_owned();
    }
    let mut end = UNDECODABLE_TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn undecodable(line: &str, reason: impl Into<String>) -> Event {
    Event::Undecodable {
        text: truncate_text(line),
        reason: reason.into(),
    }
}

/// Decodes one line of `codex exec --json` output. Never fails: see the module docs.
///
/// The events of a normal turn (`thread.started`, `turn.started`, `item.*` of the known item
/// types, `turn.completed`) are deserialized straight from the text into typed structs
/// (the `type` tag borrowed, no intermediate [`Value`]); anything else, and any line the
/// typed pass does not take whole, goes through a [`Value`], with the same result.
pub fn decode_line(line: &str) -> Event {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return undecodable(line, "empty line");
    }
    if let Some(event) = fast::decode(trimmed) {
        return event;
    }
    decode_slow(trimmed, line)
}

/// What the typed pass and the [`Value`] path make of one line (`None` for a blank line),
/// for the fuzz tests, which check that they agree.
#[cfg(test)]
pub(crate) fn both_paths(line: &str) -> Option<(Option<Event>, Event)> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some((fast::decode(trimmed), decode_slow(trimmed, line)))
}

/// The general path: parse into a [`Value`], then decode.
fn decode_slow(trimmed: &str, line: &str) -> Event {
    match serde_json::from_str::<Value>(trimmed) {
        Ok(value) => decode_value(value, line),
        Err(e) => undecodable(line, format!("not JSON: {e}")),
    }
}

/// The typed single pass for the common events.
///
/// It returns `None` (and the caller takes the [`Value`] path) whenever the line is not one
/// of the common events or anything about it is unusual: an unexpected type, a missing
/// required field, a duplicate key, an unknown item type or status. So for every line it
/// decodes, it gives exactly what the [`Value`] path gives.
///
/// The item fields of every known item type are read into one struct. Each field has the
/// type and default of the per-type struct of the [`Value`] path (`parse::<CommandItem>`,
/// ...), except that fields some type requires are `Option`s here and checked when the
/// details are built. The line, its item and its usage must be JSON objects ([`MapOnly`]):
/// serde would also build a struct from an array, where the [`Value`] path sees no fields.
mod fast {
    use std::borrow::Cow;
    use std::fmt;
    use std::marker::PhantomData;

    use codex_core::event::{FileChangeKind, FileUpdate, TodoEntry};
    use codex_core::{Event, Item, ItemDetails, Usage};
    use serde::Deserialize;
    use serde::de::{Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};
    use serde_json::Value;

    use super::{ChangeEntry, Rest, TodoItem, status};

    /// `T` read from a JSON object only (an array is an error).
    struct MapOnly<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct ObjectVisitor<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
                type Value = T;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(MapAccessDeserializer::new(map))
                }
            }
            deserializer
                .deserialize_map(ObjectVisitor(PhantomData))
                .map(MapOnly)
        }
    }

    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(default, borrow)]
        thread_id: Option<Cow<'a, str>>,
        #[serde(default)]
        item: Option<MapOnly<ItemFields>>,
        #[serde(default)]
        usage: Option<MapOnly<UsageFields>>,
        #[serde(flatten)]
        _rest: Rest,
    }

    #[derive(Deserialize)]
    struct UsageFields {
        #[serde(default)]
        input_tokens: Option<u64>,
        #[serde(default)]
        cached_input_tokens: Option<u64>,
        #[serde(default)]
        output_tokens: Option<u64>,
        #[serde(default)]
        reasoning_output_tokens: Option<u64>,
        #[serde(flatten)]
        _rest: Rest,
    }

    #[derive(Deserialize)]
    struct ItemFields {
        #[serde(default)]
        id: Option<Value>,
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        command: Option<String>,
        #[serde(default)]
        aggregated_output: String,
        #[serde(default)]
        exit_code: Option<i32>,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        changes: Vec<ChangeEntry>,
        #[serde(default)]
        server: Option<String>,
        #[serde(default)]
        tool: Option<String>,
        #[serde(default)]
        arguments: Option<Value>,
        #[serde(default)]
        result: Option<Value>,
        #[serde(default)]
        error: Option<Value>,
        #[serde(default)]
        query: String,
        #[serde(default)]
        items: Vec<TodoItem>,
        #[serde(default)]
        message: Option<String>,
        #[serde(flatten)]
        _rest: Rest,
    }

    pub(super) fn decode(text: &str) -> Option<Event> {
        let MapOnly(line) = serde_json::from_str::<MapOnly<Line<'_>>>(text).ok()?;
        Some(match &*line.kind {
            "thread.started" => match line.thread_id {
                Some(id) if !id.is_empty() => Event::ThreadStarted {
                    thread_id: id.into_owned().into(),
                },
                _ => return None,
            },
            "turn.started" => Event::TurnStarted { turn_id: None },
            "turn.completed" => Event::TurnCompleted {
                turn_id: None,
                usage: line.usage.map(|MapOnly(u)| {
                    Usage::new(
                        u.input_tokens.unwrap_or(0),
                        u.cached_input_tokens.unwrap_or(0),
                        u.output_tokens.unwrap_or(0),
                        u.reasoning_output_tokens.unwrap_or(0),
                    )
                }),
            },
            kind @ ("item.started" | "item.updated" | "item.completed") => {
                let item = item(line.item?.0)?;
                match kind {
                    "item.started" => Event::ItemStarted { item },
                    "item.updated" => Event::ItemUpdated { item },
                    _ => Event::ItemCompleted { item },
                }
            }
            _ => return None,
        })
    }

    fn item(f: ItemFields) -> Option<Item> {
        let id = match f.id? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let details = match f.kind?.as_str() {
            "agent_message" => ItemDetails::AgentMessage { text: f.text? },
            "reasoning" => ItemDetails::Reasoning { text: f.text? },
            "user_message" => ItemDetails::UserMessage { text: f.text? },
            "command_execution" => ItemDetails::CommandExecution {
                command: f.command?,
                aggregated_output: f.aggregated_output,
                exit_code: f.exit_code,
                status: status(&f.status?)?,
            },
            "file_change" => {
                let status = status(&f.status?)?;
                let changes = f
                    .changes
                    .into_iter()
                    .map(|c| {
                        let kind = match c.kind.as_str() {
                            "add" => FileChangeKind::Add,
                            "delete" => FileChangeKind::Delete,
                            "update" => FileChangeKind::Update,
                            _ => return None,
                        };
                        Some(FileUpdate::new(c.path, kind))
                    })
                    .collect::<Option<Vec<_>>>()?;
                ItemDetails::FileChange { changes, status }
            }
            "mcp_tool_call" => ItemDetails::McpToolCall {
                server: f.server?,
                tool: f.tool?,
                arguments: f.arguments.filter(|v| !v.is_null()),
                result: f.result.filter(|v| !v.is_null()),
                error: super::error_message(f.error.as_ref()),
                status: status(&f.status?)?,
            },
            "web_search" => ItemDetails::WebSearch { query: f.query },
            "todo_list" => ItemDetails::TodoList {
                items: f
                    .items
                    .into_iter()
                    .map(|t| TodoEntry::new(t.text, t.completed))
                    .collect(),
            },
            "error" => ItemDetails::Error {
                message: f.message?,
            },
            _ => return None,
        };
        Some(Item::new(id, details))
    }
}

/// Decodes one parsed event object; `line` is the original text, for errors.
fn decode_value(value: Value, line: &str) -> Event {
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return undecodable(line, "not an event: no string `type` field");
    };
    match kind {
        "thread.started" => match value.get("thread_id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Event::ThreadStarted {
                thread_id: id.into(),
            },
            _ => undecodable(line, "thread.started without a thread_id"),
        },
        "turn.started" => Event::TurnStarted { turn_id: None },
        "item.started" | "item.updated" | "item.completed" => {
            let Some(raw) = value.get("item") else {
                return undecodable(line, format!("{kind} without an item"));
            };
            let item = match decode_item(raw) {
                Ok(item) => item,
                Err(reason) => return undecodable(line, format!("{kind}: {reason}")),
            };
            match kind {
                "item.started" => Event::ItemStarted { item },
                "item.updated" => Event::ItemUpdated { item },
                _ => Event::ItemCompleted { item },
            }
        }
        "turn.completed" => Event::TurnCompleted {
            turn_id: None,
            usage: value.get("usage").and_then(decode_usage),
        },
        "turn.failed" => {
            let message = error_message(value.get("error"))
                .unwrap_or_else(|| "the turn failed (codex gave no message)".to_owned());
            Event::TurnFailed {
                turn_id: None,
                kind: FailureKind::of_message(&message),
                message,
            }
        }
        "error" => Event::Error {
            message: value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| error_message(value.get("error")))
                .unwrap_or_else(|| value.to_string()),
        },
        other => Event::Unknown {
            kind: other.to_owned(),
            raw: value,
        },
    }
}

/// `{"message": "..."}` or a plain string.
fn error_message(error: Option<&Value>) -> Option<String> {
    match error? {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| Some(Value::Object(map.clone()).to_string())),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn decode_usage(usage: &Value) -> Option<Usage> {
    let obj = usage.as_object()?;
    let n = |key: &str| obj.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage::new(
        n("input_tokens"),
        n("cached_input_tokens"),
        n("output_tokens"),
        n("reasoning_output_tokens"),
    ))
}

/// Decodes an item; `Err` only when it is not an object with an id and a type. A known type
/// whose fields do not match becomes [`ItemDetails::Unknown`] with the raw item.
fn decode_item(raw: &Value) -> Result<Item, String> {
    let obj = raw.as_object().ok_or("the item is not an object")?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("the item has no id".to_owned()),
    };
    // early exec JSON used `item_type`
    let kind = obj
        .get("type")
        .or_else(|| obj.get("item_type"))
        .and_then(Value::as_str)
        .ok_or("the item has no type")?;
    let details = decode_details(kind, raw).unwrap_or_else(|| ItemDetails::Unknown {
        kind: kind.to_owned(),
        raw: raw.clone(),
    });
    Ok(Item::new(id, details))
}

fn parse<T: for<'de> Deserialize<'de>>(raw: &Value) -> Option<T> {
    T::deserialize(raw).ok()
}

fn status(s: &str) -> Option<ItemStatus> {
    Some(match s {
        "in_progress" => ItemStatus::InProgress,
        "completed" => ItemStatus::Completed,
        "failed" => ItemStatus::Failed,
        "declined" => ItemStatus::Declined,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct TextItem {
    text: String,
}

#[derive(Deserialize)]
struct CommandItem {
    command: String,
    #[serde(default)]
    aggregated_output: String,
    #[serde(default)]
    exit_code: Option<i32>,
    status: String,
}

/// Members the typed structs do not know, read as strictly as the [`Value`] path reads
/// them (number ranges, string escapes, serde_json's nesting limit) and dropped. Without
/// it serde skips them with `IgnoredAny`, which accepts `1e400` or 200 levels of
/// nesting, and the typed pass would decode lines the [`Value`] path refuses.
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(|()| Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Strict::deserialize(d).map(|_| ())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<Strict, Strict>()?.is_some() {}
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Rest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StrictVisitor).map(|()| Rest)
    }
}

/// The members a struct does not name (`#[serde(flatten)]`), checked by [`Strict`].
struct Rest;

#[derive(Deserialize)]
struct ChangeEntry {
    path: std::path::PathBuf,
    kind: String,
    #[serde(flatten)]
    _rest: Rest,
}

#[derive(Deserialize)]
struct FileChangeItem {
    #[serde(default)]
    changes: Vec<ChangeEntry>,
    status: String,
}

#[derive(Deserialize)]
struct McpItem {
    server: String,
    tool: String,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    status: String,
}

#[derive(Deserialize)]
struct WebSearchItem {
    #[serde(default)]
    query: String,
}

#[derive(Deserialize)]
struct TodoItem {
    text: String,
    #[serde(default)]
    completed: bool,
    #[serde(flatten)]
    _rest: Rest,
}

#[derive(Deserialize)]
struct TodoListItem {
    #[serde(default)]
    items: Vec<TodoItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    message: String,
}

fn decode_details(kind: &str, raw: &Value) -> Option<ItemDetails> {
    Some(match kind {
        "agent_message" => ItemDetails::AgentMessage {
            text: parse::<TextItem>(raw)?.text,
        },
        "reasoning" => ItemDetails::Reasoning {
            text: parse::<TextItem>(raw)?.text,
        },
        "user_message" => ItemDetails::UserMessage {
            text: parse::<TextItem>(raw)?.text,
        },
        "command_execution" => {
            let c: CommandItem = parse(raw)?;
            ItemDetails::CommandExecution {
                command: c.command,
                aggregated_output: c.aggregated_output,
                exit_code: c.exit_code,
                status: status(&c.status)?,
            }
        }
        "file_change" => {
            let f: FileChangeItem = parse(raw)?;
            let changes = f
                .changes
                .into_iter()
                .map(|c| {
                    let kind = match c.kind.as_str() {
                        "add" => FileChangeKind::Add,
                        "delete" => FileChangeKind::Delete,
                        "update" => FileChangeKind::Update,
                        _ => return None,
                    };
                    Some(FileUpdate::new(c.path, kind))
                })
                .collect::<Option<Vec<_>>>()?;
            ItemDetails::FileChange {
                changes,
                status: status(&f.status)?,
            }
        }
        "mcp_tool_call" => {
            let m: McpItem = parse(raw)?;
            ItemDetails::McpToolCall {
                server: m.server,
                tool: m.tool,
                arguments: m.arguments.filter(|v| !v.is_null()),
                result: m.result.filter(|v| !v.is_null()),
                error: error_message(m.error.as_ref()),
                status: status(&m.status)?,
            }
        }
        "web_search" => ItemDetails::WebSearch {
            query: parse::<WebSearchItem>(raw)?.query,
        },
        "todo_list" => ItemDetails::TodoList {
            items: parse::<TodoListItem>(raw)?
                .items
                .into_iter()
                .map(|t| TodoEntry::new(t.text, t.completed))
                .collect(),
        },
        "error" => ItemDetails::Error {
            message: parse::<ErrorItem>(raw)?.message,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decodes_the_turn_lifecycle() {
        assert_eq!(
            decode_line(r#"{"type":"thread.started","thread_id":"0199-abc"}"#),
            Event::ThreadStarted {
                thread_id: "0199-abc".into()
            }
        );
        assert_eq!(
            decode_line(r#"{"type":"turn.started"}"#),
            Event::TurnStarted { turn_id: None }
        );
        assert_eq!(
            decode_line(
                r#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":2,"output_tokens":5}}"#
            ),
            Event::TurnCompleted {
                turn_id: None,
                usage: Some(Usage::new(10, 2, 5, 0))
            }
        );
        assert_eq!(
            decode_line(r#"{"type":"turn.completed"}"#),
            Event::TurnCompleted {
                turn_id: None,
                usage: None
            }
        );
        assert_eq!(
            decode_line(r#"{"type":"turn.failed","error":{"message":"boom"}}"#),
            Event::TurnFailed {
                turn_id: None,
                message: "boom".into(),
                kind: FailureKind::Other,
            }
        );
        let line = r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: bad key, url: http://127.0.0.1:9/v1/responses"}}"#;
        assert!(matches!(
            decode_line(line),
            Event::TurnFailed {
                kind: FailureKind::Auth,
                ..
            }
        ));
        let e = decode_line(r#"{"type":"error","message":"Reconnecting... 1/5"}"#);
        assert_eq!(
            e,
            Event::Error {
                message: "Reconnecting... 1/5".into()
            }
        );
        assert!(!e.is_terminal());
    }

    fn item(line: Value) -> Item {
        match decode_line(&line.to_string()) {
            Event::ItemCompleted { item }
            | Event::ItemStarted { item }
            | Event::ItemUpdated { item } => item,
            other => panic!("not an item event: {other:?}"),
        }
    }

    #[test]
    fn decodes_every_item_kind() {
        let i = item(
            json!({"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"hi"}}),
        );
        assert_eq!(i.id, "item_0");
        assert_eq!(i.details, ItemDetails::AgentMessage { text: "hi".into() });

        let i = item(
            json!({"type":"item.completed","item":{"id":"item_1","type":"reasoning","text":"**thinking**"}}),
        );
        assert!(matches!(i.details, ItemDetails::Reasoning { .. }));

        let i = item(
            json!({"type":"item.started","item":{"id":"item_2","type":"command_execution",
            "command":"bash -lc 'echo hi'","aggregated_output":"","exit_code":null,"status":"in_progress"}}),
        );
        assert_eq!(
            i.details,
            ItemDetails::CommandExecution {
                command: "bash -lc 'echo hi'".into(),
                aggregated_output: String::new(),
                exit_code: None,
                status: ItemStatus::InProgress
            }
        );
        let i = item(
            json!({"type":"item.completed","item":{"id":"item_2","type":"command_execution",
            "command":"x","aggregated_output":"hi\n","exit_code":0,"status":"completed"}}),
        );
        assert!(matches!(
            i.details,
            ItemDetails::CommandExecution {
                exit_code: Some(0),
                status: ItemStatus::Completed,
                ..
            }
        ));
        let i = item(
            json!({"type":"item.completed","item":{"id":"item_2","type":"command_execution",
            "command":"x","aggregated_output":"","exit_code":null,"status":"declined"}}),
        );
        assert!(matches!(
            i.details,
            ItemDetails::CommandExecution {
                status: ItemStatus::Declined,
                ..
            }
        ));

        let i = item(
            json!({"type":"item.completed","item":{"id":"item_3","type":"file_change",
            "changes":[{"path":"/w/a.txt","kind":"add"},{"path":"/w/b.txt","kind":"update"},{"path":"/w/c","kind":"delete"}],
            "status":"completed"}}),
        );
        assert_eq!(
            i.details,
            ItemDetails::FileChange {
                changes: vec![
                    FileUpdate::new("/w/a.txt", FileChangeKind::Add),
                    FileUpdate::new("/w/b.txt", FileChangeKind::Update),
                    FileUpdate::new("/w/c", FileChangeKind::Delete),
                ],
                status: ItemStatus::Completed
            }
        );

        let i = item(
            json!({"type":"item.completed","item":{"id":"item_4","type":"mcp_tool_call",
            "server":"docs","tool":"search","arguments":{"q":"x"},
            "result":{"content":[{"type":"text","text":"r"}],"structured_content":null},
            "error":null,"status":"completed"}}),
        );
        match i.details {
            ItemDetails::McpToolCall {
                server,
                tool,
                arguments,
                result,
                error,
                status,
            } => {
                assert_eq!((server.as_str(), tool.as_str()), ("docs", "search"));
                assert_eq!(arguments, Some(json!({"q":"x"})));
                assert!(result.is_some());
                assert_eq!(error, None);
                assert_eq!(status, ItemStatus::Completed);
            }
            other => panic!("{other:?}"),
        }
        let i = item(
            json!({"type":"item.completed","item":{"id":"item_4","type":"mcp_tool_call",
            "server":"docs","tool":"search","error":{"message":"tool crashed"},"status":"failed"}}),
        );
        assert!(matches!(
            i.details,
            ItemDetails::McpToolCall { error: Some(ref e), status: ItemStatus::Failed, .. } if e == "tool crashed"
        ));

        let i = item(
            json!({"type":"item.completed","item":{"id":"item_5","type":"web_search","query":"rust tokio","action":{"type":"search"}}}),
        );
        assert_eq!(
            i.details,
            ItemDetails::WebSearch {
                query: "rust tokio".into()
            }
        );

        let i = item(
            json!({"type":"item.updated","item":{"id":"item_6","type":"todo_list",
            "items":[{"text":"a","completed":true},{"text":"b","completed":false}]}}),
        );
        assert_eq!(
            i.details,
            ItemDetails::TodoList {
                items: vec![TodoEntry::new("a", true), TodoEntry::new("b", false)]
            }
        );

        let i = item(
            json!({"type":"item.completed","item":{"id":"item_7","type":"error","message":"model not in catalog"}}),
        );
        assert_eq!(
            i.details,
            ItemDetails::Error {
                message: "model not in catalog".into()
            }
        );
    }

    #[test]
    fn unknown_shapes_keep_the_raw_json() {
        let raw = json!({"id":"item_9","type":"collab_tool_call","tool":"spawn","receiver_thread_ids":[]});
        let i = item(json!({"type":"item.completed","item": raw.clone()}));
        assert_eq!(
            i.details,
            ItemDetails::Unknown {
                kind: "collab_tool_call".into(),
                raw: raw.clone()
            }
        );
        // a known type with an unknown status
        let raw = json!({"id":"x","type":"command_execution","command":"c","aggregated_output":"","status":"paused"});
        let i = item(json!({"type":"item.completed","item": raw.clone()}));
        assert!(
            matches!(i.details, ItemDetails::Unknown { ref kind, .. } if kind == "command_execution")
        );
        // old `item_type`
        let i = item(
            json!({"type":"item.completed","item":{"id":"x","item_type":"agent_message","text":"t"}}),
        );
        assert_eq!(i.details, ItemDetails::AgentMessage { text: "t".into() });

        let ev = json!({"type":"thread.compacted","n":1});
        assert_eq!(
            decode_line(&ev.to_string()),
            Event::Unknown {
                kind: "thread.compacted".into(),
                raw: ev
            }
        );
    }

    #[test]
    fn garbage_is_undecodable_not_fatal() {
        for line in [
            "Reading prompt from stdin...",
            "{\"type\":",
            "[1,2,3]",
            "42",
            "{\"no_type\":true}",
            "{\"type\":\"thread.started\"}",
            "{\"type\":\"item.completed\"}",
            "{\"type\":\"item.completed\",\"item\":{\"type\":\"agent_message\"}}",
            "{\"type\":\"item.completed\",\"item\":\"str\"}",
            "   ",
        ] {
            assert!(
                matches!(decode_line(line), Event::Undecodable { .. }),
                "{line:?}"
            );
        }
        let long = "x".repeat(100_000);
        match decode_line(&long) {
            Event::Undecodable { text, reason } => {
                assert!(text.len() <= UNDECODABLE_TEXT_LIMIT + 3, "{}", text.len());
                assert!(reason.contains("not JSON"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // cut at a char boundary
        let long = "é".repeat(10_000);
        assert!(matches!(decode_line(&long), Event::Undecodable { .. }));
        // deep nesting hits serde_json's recursion limit, not the stack
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(decode_line(&deep), Event::Undecodable { .. }));
    }

    /// A small xorshift generator: deterministic "random" inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n.max(1)) as usize
        }
    }

    const SAMPLES: &[&str] = &[
        r#"{"type":"thread.started","thread_id":"t"}"#,
        r#"{"type":"item.completed","item":{"id":"i","type":"command_execution","command":"c","aggregated_output":"o","exit_code":1,"status":"failed"}}"#,
        r#"{"type":"item.completed","item":{"id":"i","type":"file_change","changes":[{"path":"p","kind":"add"}],"status":"completed"}}"#,
        r#"{"type":"item.updated","item":{"id":"i","type":"todo_list","items":[{"text":"a","completed":false}]}}"#,
        r#"{"type":"item.completed","item":{"id":"i","type":"mcp_tool_call","server":"s","tool":"t","status":"completed"}}"#,
        r#"{"type":"turn.completed","usage":{"input_tokens":1,"cached_input_tokens":0,"output_tokens":2}}"#,
        r#"{"type":"turn.failed","error":{"message":"m"}}"#,
    ];

    #[test]
    fn fuzz_decode_line_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            // random bytes, lossily decoded
            let len = rng.below(200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = decode_line(&String::from_utf8_lossy(&bytes));
            // mutated real events: truncated, with bytes flipped or spliced
            let sample = SAMPLES[rng.below(SAMPLES.len() as u64)].as_bytes().to_vec();
            let mut m = sample.clone();
            for _ in 0..rng.below(4) {
                let at = rng.below(m.len() as u64);
                match rng.below(3) {
                    0 => m[at] = rng.next() as u8,
                    1 => m.truncate(at),
                    _ => m.insert(at, b"{}[]\",:0n"[rng.below(9)]),
                }
                if m.is_empty() {
                    break;
                }
            }
            let _ = decode_line(&String::from_utf8_lossy(&m));
        }
    }

    /// Every real line, plus hand-picked odd ones.
    fn differential_corpus() -> Vec<String> {
        let mut lines: Vec<String> = SAMPLES.iter().map(|s| (*s).to_owned()).collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/exec");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("tests/fixtures/exec")
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            lines.extend(text.lines().map(str::to_owned));
        }
        lines.extend(
            [
                r#"["turn.started"]"#,
                r#"{"type":"turn.completed","usage":[1,2,3,4]}"#,
                r#"{"type":"turn.completed","usage":null}"#,
                r#"{"type":"turn.completed","usage":{"input_tokens":-1,"output_tokens":1.5}}"#,
                r#"{"type":"turn.completed","usage":{"input_tokens":null}}"#,
                r#"{"type":"turn.started","type":"turn.completed"}"#,
                r#"{"type":"thread.started","thread_id":""}"#,
                r#"{"type":"thread.started","thread_id":7}"#,
                r#"{"type":"thread.started","thread_id":"a\"b"}"#,
                r#"{"type":"turn.st\u0061rted"}"#,
                r#"{"type":"item.completed","item":[]}"#,
                r#"{"type":"item.completed","item":["i","agent_message","t"]}"#,
                r#"{"type":"item.completed","item":{"id":12,"type":"agent_message","text":"t"}}"#,
                r#"{"type":"item.completed","item":{"id":null,"type":"agent_message","text":"t"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":null,"item_type":"agent_message","text":"t"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","item_type":"agent_message","text":"t"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"agent_message","text":null}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"t","status":5}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"command_execution","command":"c","aggregated_output":null,"status":"completed"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"command_execution","command":"c","status":"completed"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"file_change","changes":[{"path":"p","kind":"rename"}],"status":"completed"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"file_change","changes":[["p","add"]],"status":"completed"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"mcp_tool_call","server":"s","tool":"t","error":"boom","arguments":null,"status":"failed"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"web_search"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"todo_list","items":null}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"error","message":"m","text":{}}}"#,
                r#"{"type":"item.completed","item":{"id":"i","type":"collab_tool_call"}}"#,
                r#"{"type":"item.completed","item":{"id":"i","id":"j","type":"reasoning","text":"t"}}"#,
                r#"{"type":"item.completed"}"#,
                r#"{"type":"turn.started"} trailing"#,
            ]
            .map(str::to_owned),
        );
        lines
    }

    /// Found by `cargo xtask fuzz`: the typed pass skipped members it does not read without
    /// checking them (nested past serde_json's recursion limit, numbers out of range) and
    /// decoded lines the [`Value`] path refuses.
    #[test]
    fn deeply_nested_skipped_members_decode_as_on_the_value_path() {
        for depth in [99, 100, 101, 126, 127, 128, 100_000] {
            let deep = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
            for line in [
                format!(r#"{{"type":"turn.completed","usage":{deep}}}"#),
                format!(r#"{{"type":"turn.started","x":{deep}}}"#),
                format!(
                    r#"{{"type":"item.completed","item":{{"id":"i","type":"reasoning","text":"t","x":{deep}}}}}"#
                ),
                format!(
                    r#"{{"type":"item.completed","item":{{"id":"i","type":"file_change","changes":[{{"path":"p","kind":"add","x":{deep}}}],"status":"completed"}}}}"#
                ),
            ] {
                assert_same(&line);
            }
        }
        // and numbers out of range or lone surrogates, found the same way
        for line in [
            r#"{"item":{"id":"i","text":"t","type":"user_message"},"turnId":[-1,-1000000000.0589688348390227e+300],"type":"item.started"}"#,
            r#"{"type":"item.completed","item":{"id":"i","type":"reasoning","text":"t","x":1e400}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":1,"x":-1e400}}"#,
            r#"{"type":"turn.started","x":"\ud800"}"#,
            r#"{"type":"item.completed","item":{"id":"i","type":"file_change","changes":[{"path":"p","kind":"add","x":1e400}],"status":"completed"}}"#,
            r#"{"type":"item.updated","item":{"id":"i","type":"todo_list","items":[{"text":"a","x":-1e400}]}}"#,
        ] {
            assert_same(line);
            assert!(
                matches!(decode_line(line), Event::Undecodable { .. }),
                "{line}"
            );
        }
        // brackets inside strings are not nesting
        let text = format!(
            r#"{{"type":"turn.started","x":"{}\"{}"}}"#,
            "[".repeat(200),
            "{".repeat(200)
        );
        assert!(fast::decode(&text).is_some());
        assert_same(&text);
    }

    fn assert_same(line: &str) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return;
        }
        let slow = decode_slow(trimmed, line);
        if let Some(typed) = fast::decode(trimmed) {
            assert_eq!(typed, slow, "the typed pass differs on {line}");
        }
        assert_eq!(decode_line(line), slow, "{line}");
    }

    #[test]
    fn the_typed_pass_agrees_with_the_value_path() {
        let corpus = differential_corpus();
        for line in &corpus {
            assert_same(line);
        }
        // the events of a normal turn take the typed pass
        for line in [
            SAMPLES[0], SAMPLES[1], SAMPLES[2], SAMPLES[3], SAMPLES[4], SAMPLES[5],
        ] {
            assert!(fast::decode(line).is_some(), "{line}");
        }
        // every member of every real event, replaced by values of every JSON type
        let replacements = [
            json!(null),
            json!([]),
            json!({}),
            json!(1),
            json!(-1),
            json!(1.5),
            json!("x"),
            json!(true),
            json!([{"path": "p", "kind": "add"}]),
            json!({"message": "m"}),
        ];
        let mut checked = 0;
        for line in &corpus {
            let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            for key in event.keys() {
                for r in &replacements {
                    let mut e = event.clone();
                    e.insert(key.clone(), r.clone());
                    assert_same(&Value::Object(e).to_string());
                    checked += 1;
                }
            }
            if let Some(Value::Object(item)) = event.get("item") {
                for key in item.keys().chain(["item_type".to_owned()].iter()) {
                    for r in &replacements {
                        let mut i = item.clone();
                        i.insert(key.clone(), r.clone());
                        let mut e = event.clone();
                        e.insert("item".into(), Value::Object(i));
                        assert_same(&Value::Object(e).to_string());
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
        // and byte-level mutations
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..20_000 {
            let sample = corpus[rng.below(corpus.len() as u64)].as_bytes().to_vec();
            let mut m = sample;
            for _ in 0..=rng.below(3) {
                if m.is_empty() {
                    break;
                }
                let at = rng.below(m.len() as u64);
                match rng.below(3) {
                    0 => m[at] = b"{}[]\",:0n -\\u"[rng.below(13)],
                    1 => {
                        m.remove(at);
                    }
                    _ => m.insert(at, b"{}[]\",:0n -\\"[rng.below(12)]),
                }
            }
            assert_same(&String::from_utf8_lossy(&m));
        }
    }

    fn frames(input: &[u8], max: usize, chunk: usize) -> Vec<Frame> {
        let mut codec = JsonlFraming::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
            assert!(
                buf.len() <= max + chunk,
                "buffered {} bytes with a limit of {max}",
                buf.len()
            );
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.into())
    }

    #[test]
    fn framing_splits_lines_in_any_chunking() {
        let input = b"a\r\nbb\n\nccc";
        for chunk in 1..=input.len() {
            assert_eq!(
                frames(input, 16, chunk),
                vec![line("a"), line("bb"), line(""), line("ccc")],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn framing_skips_over_long_lines_and_goes_on() {
        let mut input = Vec::new();
        input.extend_from_slice(b"ok1\n");
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend_from_slice(b"\nexactly10!\nok2\n");
        input.extend(std::iter::repeat_n(b'y', 50)); // over-long at EOF
        for chunk in [1, 3, 7, 64, 1000] {
            let got = frames(&input, 10, chunk);
            assert_eq!(got.len(), 5, "chunk {chunk}: {got:?}");
            assert_eq!(got[0], line("ok1"));
            assert!(
                matches!(&got[1], Frame::TooLong { prefix, limit: 10 } if prefix.starts_with("xxxxxxxxxx")),
                "{:?}",
                got[1]
            );
            assert_eq!(got[2], line("exactly10!"));
            assert_eq!(got[3], line("ok2"));
            assert!(matches!(&got[4], Frame::TooLong { .. }));
        }
        let ev = frames(&input, 10, 7)[1].clone().into_event().unwrap();
        assert!(
            matches!(&ev, Event::Undecodable { reason, .. } if reason.contains("exceeds 10 bytes")),
            "{ev:?}"
        );
    }

    /// Found by `cargo xtask fuzz`: the prefix of an over-long line held the lines after it
    /// when they had arrived in the same read.
    #[test]
    fn an_over_long_line_reports_its_own_start_only() {
        let input = b"xxxxxxxxxxxxxxx\r\nnext\n";
        for chunk in 1..=input.len() {
            let got = frames(input, 10, chunk);
            assert_eq!(got.len(), 2, "chunk {chunk}: {got:?}");
            match &got[0] {
                Frame::TooLong { prefix, limit: 10 } => {
                    assert!(
                        prefix.starts_with("xxxxxxxxxx"),
                        "chunk {chunk}: {prefix:?}"
                    );
                    assert!(!prefix.contains('\n'), "chunk {chunk}: {prefix:?}");
                }
                other => panic!("chunk {chunk}: {other:?}"),
            }
            assert_eq!(got[1], line("next"));
        }
    }

    #[test]
    fn framing_handles_invalid_utf8() {
        let got = frames(b"\xff\xfe{\"type\":\"x\"}\n\xc3\n", 100, 2);
        assert_eq!(got.len(), 2);
        assert!(matches!(
            got[0].clone().into_event(),
            Some(Event::Undecodable { .. })
        ));
        assert!(line("").into_event().is_none());
    }

    #[tokio::test]
    async fn fuzz_framing_with_random_bytes() {
        let mut rng = Rng(42);
        for round in 0..200 {
            let len = rng.below(5_000);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(20) == 0 {
                        b'\n'
                    } else {
                        rng.next() as u8
                    }
                })
                .collect();
            let max = 1 + rng.below(300);
            let chunk = 1 + rng.below(600);
            for f in frames(&bytes, max, chunk) {
                if let Frame::Line(l) = &f {
                    assert!(l.len() <= max * 3, "round {round}: line of {}", l.len());
                }
                let _ = f.into_event();
            }
            // and through FramedRead, as the backend uses it
            let reader = std::io::Cursor::new(bytes);
            let mut framed = FramedRead::new(reader, JsonlFraming::new(max));
            while let Some(f) = framed.next().await {
                let _ = f.unwrap().into_event();
            }
        }
    }

    #[tokio::test]
    async fn decode_all_and_decode_stream_agree() {
        let input = b"garbage\n{\"type\":\"thread.started\",\"thread_id\":\"t\"}\n\n{\"type\":\"turn.completed\"}";
        let all = decode_all(input);
        assert_eq!(all.len(), 3);
        assert!(matches!(all[0], Event::Undecodable { .. }));
        assert!(matches!(all[2], Event::TurnCompleted { .. }));
        let streamed: Vec<Event> = decode_stream(&input[..], 1024).collect().await;
        assert_eq!(streamed, all);
    }
}
