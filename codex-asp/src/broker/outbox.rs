//! What waits to be written to one client, drained by that client's writer task.
//!
//! The writer takes everything the hub queued at once, so the hub's bounded channel does not
//! fill while the socket is slow; the backlog lives here instead. Once it holds
//! [`MERGE_AFTER`] lines, a text delta (one of [`COALESCED_METHODS`]) is appended to a queued
//! delta of the same stream when only other deltas were queued after it, as an
//! [`Overflow::CoalesceDeltas`](crate::Overflow::CoalesceDeltas) subscription does: a client
//! that reads slower than codex talks, but keeps up on average, gets all the text in fewer
//! notifications. A backlog of more than the client queue's length in lines, or of more than
//! [`MAX_COALESCED_BYTES`] of merged text, means the client does not keep up: it is
//! disconnected.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::connection::subscription::{
    COALESCED_METHODS, MAX_COALESCED_BYTES, MERGE_LOOKBACK, same_stream,
};
use crate::jsonrpc::Message;

/// From this many waiting lines on, deltas are merged.
pub(crate) const MERGE_AFTER: usize = 256;

/// A line for a client, from the hub.
pub(crate) enum Outgoing {
    /// A line to send as it is.
    Line(String),
    /// A text-delta notification: the line, and its method and params for merging.
    Delta {
        line: String,
        method: String,
        params: Map<String, Value>,
    },
}

impl Outgoing {
    /// A notification line; a text delta keeps its parts, for merging.
    pub(crate) fn notification(line: String, method: &str, params: Value) -> Outgoing {
        match params {
            Value::Object(params)
                if COALESCED_METHODS.contains(&method)
                    && params.get("delta").is_some_and(Value::is_string) =>
            {
                Outgoing::Delta {
                    line,
                    method: method.to_owned(),
                    params,
                }
            }
            _ => Outgoing::Line(line),
        }
    }
}

enum Entry {
    Out(Outgoing),
    /// Deltas of one stream merged: the first one's params with an empty `delta`, the text.
    Merged {
        method: String,
        params: Map<String, Value>,
        text: String,
    },
}

/// The backlog of one client.
pub(crate) struct Outbox {
    entries: VecDeque<Entry>,
    limit: usize,
    merged_bytes: usize,
    merged: u64,
}

impl Outbox {
    /// An outbox that holds at most `limit` lines.
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox {
            entries: VecDeque::new(),
            limit: limit.max(MERGE_AFTER),
            merged_bytes: 0,
            merged: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many deltas were merged so far.
    pub(crate) fn merged(&self) -> u64 {
        self.merged
    }

    /// Queues `out` (merging a delta into the backlog); `false` when the backlog is full.
    pub(crate) fn push(&mut self, out: Outgoing) -> bool {
        if self.entries.len() >= MERGE_AFTER
            && let Outgoing::Delta { method, params, .. } = &out
            && self.merge(method, params)
        {
            self.merged += 1;
            return true;
        }
        if self.entries.len() >= self.limit {
            return false;
        }
        self.entries.push_back(Entry::Out(out));
        true
    }

    fn merge(&mut self, method: &str, params: &Map<String, Value>) -> bool {
        let Some(delta) = params.get("delta").and_then(Value::as_str) else {
            return false;
        };
        if self.merged_bytes.saturating_add(delta.len()) > MAX_COALESCED_BYTES {
            return false;
        }
        for entry in self.entries.iter_mut().rev().take(MERGE_LOOKBACK) {
            let matches = match &*entry {
                Entry::Merged {
                    method: m,
                    params: p,
                    ..
                }
                | Entry::Out(Outgoing::Delta {
                    method: m,
                    params: p,
                    ..
                }) => m == method && same_stream(p, params),
                // never move text over another kind of line
                Entry::Out(Outgoing::Line(_)) => return false,
            };
            if !matches {
                continue;
            }
            if let Entry::Out(Outgoing::Delta {
                method: m,
                params: p,
                ..
            }) = entry
            {
                let mut p = std::mem::take(p);
                let first = match p.insert("delta".into(), Value::String(String::new())) {
                    Some(Value::String(first)) => first,
                    _ => String::new(),
                };
                self.merged_bytes += first.len();
                *entry = Entry::Merged {
                    method: std::mem::take(m),
                    params: p,
                    text: first,
                };
            }
            if let Entry::Merged { text, .. } = entry {
                text.push_str(delta);
                self.merged_bytes += delta.len();
                return true;
            }
            return false;
        }
        false
    }

    /// The next line to write.
    pub(crate) fn pop(&mut self) -> Option<String> {
        Some(match self.entries.pop_front()? {
            Entry::Out(Outgoing::Line(line) | Outgoing::Delta { line, .. }) => line,
            Entry::Merged {
                method,
                mut params,
                text,
            } => {
                self.merged_bytes = self.merged_bytes.saturating_sub(text.len());
                params.insert("delta".into(), Value::String(text));
                let message = Message::Notification {
                    method,
                    params: Value::Object(params),
                };
                match message.encode() {
                    Ok(line) => line,
                    Err(e) => {
                        tracing::warn!("could not encode merged deltas: {e}");
                        return self.pop();
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delta(item: &str, text: &str) -> Outgoing {
        let params = json!({"threadId": "t", "turnId": "u", "itemId": item, "delta": text});
        let line = Message::Notification {
            method: "item/agentMessage/delta".into(),
            params: params.clone(),
        }
        .encode()
        .unwrap();
        Outgoing::notification(line, "item/agentMessage/delta", params)
    }

    fn texts(outbox: &mut Outbox) -> Vec<Value> {
        std::iter::from_fn(|| outbox.pop())
            .map(|l| serde_json::from_str::<Value>(&l).unwrap())
            .collect()
    }

    #[test]
    fn deltas_merge_only_in_a_backlog_and_never_across_other_lines() {
        let mut outbox = Outbox::new(1000);
        for i in 0..MERGE_AFTER {
            assert!(outbox.push(delta("m", &format!("{i},"))));
        }
        // a backlog: these merge into the last queued delta of their item
        assert!(outbox.push(delta("r", "r0,")));
        assert!(outbox.push(delta("m", "a,")));
        assert!(outbox.push(delta("r", "r1,")));
        assert!(outbox.push(Outgoing::Line("{\"method\":\"item/completed\"}".into())));
        assert!(outbox.push(delta("m", "b,")));
        assert!(outbox.push(delta("m", "c,")));
        assert_eq!(outbox.merged(), 3);
        let lines = texts(&mut outbox);
        assert_eq!(lines.len(), MERGE_AFTER + 3);
        assert_eq!(
            lines[MERGE_AFTER - 1]["params"]["delta"],
            format!("{},a,", MERGE_AFTER - 1)
        );
        assert_eq!(lines[MERGE_AFTER]["params"]["delta"], "r0,r1,");
        assert_eq!(lines[MERGE_AFTER]["params"]["itemId"], "r");
        assert_eq!(lines[MERGE_AFTER + 1]["method"], "item/completed");
        assert_eq!(lines[MERGE_AFTER + 2]["params"]["delta"], "b,c,");
        assert_eq!(
            lines[MERGE_AFTER + 2]["params"],
            json!({"threadId": "t", "turnId": "u", "itemId": "m", "delta": "b,c,"})
        );
    }

    #[test]
    fn a_full_backlog_refuses() {
        let mut outbox = Outbox::new(MERGE_AFTER);
        for i in 0..MERGE_AFTER {
            assert!(outbox.push(Outgoing::Line(format!("{i}"))));
        }
        assert!(!outbox.push(Outgoing::Line("one more".into())));
        assert!(!outbox.push(delta("m", "x")));
    }
}
