//! The one JSON-RPC model of this crate: request ids ([`RequestId`]), the error object
//! ([`JsonRpcError`]) with codex's [`error_codes`], and (crate-private) the message type that
//! the connection and the broker classify incoming frames into and encode outgoing ones from.
//!
//! codex speaks JSON-RPC 2.0 **without** the `"jsonrpc": "2.0"` member: this side accepts
//! messages with or without it and does not send it (codex tolerates it, but its own clients
//! do not send it). Messages may carry extra members (`emittedAtMs`), which are ignored. Over
//! stdio every message is one JSON object on one line.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

use crate::transport::GarbageReason;

/// A JSON-RPC request id: codex accepts strings and integers. The server's own requests
/// (approvals, ...) use integers counting from 0, independent of the client's ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// An integer id.
    Integer(i64),
    /// A string id.
    String(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Integer(i) => write!(f, "{i}"),
            Self::String(s) => f.write_str(s),
        }
    }
}

impl From<i64> for RequestId {
    fn from(value: i64) -> Self {
        Self::Integer(value)
    }
}

impl From<String> for RequestId {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<&str> for RequestId {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<&RequestId> for Value {
    fn from(id: &RequestId) -> Self {
        match id {
            RequestId::Integer(i) => Value::from(*i),
            RequestId::String(s) => Value::String(s.clone()),
        }
    }
}

/// JSON-RPC error codes seen from (or reserved by) codex app-server.
pub mod error_codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The request is invalid. **codex also uses this code for unknown methods, missing or
    /// malformed params, "Not initialized", "Already initialized", "no active turn to
    /// steer", "... requires experimentalApi capability" and for rejected business
    /// requests** (for example "codex account authentication required to read rate
    /// limits"); the message tells them apart.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Method not found (standard; codex 0.169.0 answers unknown methods with
    /// [`INVALID_REQUEST`] instead).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid params (standard; codex mostly uses [`INVALID_REQUEST`], but 0.171.0 answers
    /// a malformed `includedThreadIds` entry of `thread/list` with this code).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// "Server overloaded; retry later.": retry the same request with backoff.
    pub const SERVER_OVERLOADED: i64 = -32001;
}

/// The message of the -32600 error answered to any request sent before `initialize`.
pub const NOT_INITIALIZED_MESSAGE: &str = "Not initialized";
/// The message of the -32600 error answered to a second `initialize`.
pub const ALREADY_INITIALIZED_MESSAGE: &str = "Already initialized";

/// The `error` member of a JSON-RPC error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JsonRpcError {
    /// Error code (see [`error_codes`]).
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Optional extra data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl JsonRpcError {
    /// A new error object without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Sets the error's `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Reads an error object as received, leniently: a missing or non-integer `code` is 0, a
    /// non-string `message` is its JSON text, a `null` `data` is none, and a non-object error
    /// becomes code 0 with its JSON text as the message.
    fn from_received(error: Value) -> Self {
        let mut obj = match error {
            Value::Object(obj) => obj,
            other => return JsonRpcError::new(0, other.to_string()),
        };
        JsonRpcError {
            code: obj.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: match obj.remove("message") {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => String::new(),
            },
            data: obj.remove("data").filter(|d| !d.is_null()),
        }
    }

    /// `true` for -32001 "Server overloaded; retry later." (retryable with backoff).
    pub fn is_overloaded(&self) -> bool {
        self.code == error_codes::SERVER_OVERLOADED
    }

    /// `true` for the -32600 "Not initialized" answer to requests sent before `initialize`.
    pub fn is_not_initialized(&self) -> bool {
        self.code == error_codes::INVALID_REQUEST && self.message == NOT_INITIALIZED_MESSAGE
    }

    /// `true` when codex rejected the method name itself (-32600 "Invalid request: unknown
    /// variant `...`", or a standard -32601).
    pub fn is_unknown_method(&self) -> bool {
        self.code == error_codes::METHOD_NOT_FOUND
            || (self.code == error_codes::INVALID_REQUEST
                && self.message.contains("unknown variant"))
    }
}

impl fmt::Display for JsonRpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for JsonRpcError {}

/// One JSON-RPC message, in either direction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A request: the server's (approvals, ...) when received, ours when sent.
    Request {
        id: RequestId,
        method: String,
        /// `null` is sent as `{}`.
        params: Value,
    },
    /// A notification; `null` params are not sent.
    Notification { method: String, params: Value },
    /// An answer. The id is kept as received (a peer may send any JSON); an error without a
    /// request id (a parse error) has a `null` id.
    Response {
        id: Value,
        outcome: Result<Value, JsonRpcError>,
    },
}

impl Message {
    /// Parses one frame's text, leniently (see [`JsonRpcError`] for the error object): an
    /// object with a string `method` is a request (with a non-null id) or a notification;
    /// otherwise one with an `id` and an `error` or a `result` is a response.
    pub(crate) fn parse(text: &str) -> Result<Message, GarbageReason> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| GarbageReason::NotJson(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(GarbageReason::NotJsonRpc);
        };
        if let Some(Value::String(method)) = obj.get("method") {
            let method = method.clone();
            let params = obj.remove("params").unwrap_or(Value::Null);
            return match obj.remove("id") {
                None | Some(Value::Null) => Ok(Message::Notification { method, params }),
                Some(id) => match serde_json::from_value::<RequestId>(id) {
                    Ok(id) => Ok(Message::Request { id, method, params }),
                    Err(_) => Err(GarbageReason::NotJsonRpc),
                },
            };
        }
        let id = obj.remove("id").ok_or(GarbageReason::NotJsonRpc)?;
        if let Some(error) = obj.remove("error") {
            return Ok(Message::Response {
                id,
                outcome: Err(JsonRpcError::from_received(error)),
            });
        }
        match obj.remove("result") {
            Some(result) => Ok(Message::Response {
                id,
                outcome: Ok(result),
            }),
            None => Err(GarbageReason::NotJsonRpc),
        }
    }

    /// The answer `outcome` to the request `id`.
    pub(crate) fn response(id: &RequestId, outcome: Result<Value, JsonRpcError>) -> Message {
        Message::Response {
            id: id.into(),
            outcome,
        }
    }

    /// The message as one line of JSON (the one encoder of this crate).
    pub(crate) fn encode(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let empty = || Value::Object(serde_json::Map::new());
        match self {
            Message::Request { id, method, params } => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("id", id)?;
                map.serialize_entry("method", method)?;
                if params.is_null() {
                    map.serialize_entry("params", &empty())?;
                } else {
                    map.serialize_entry("params", params)?;
                }
                map.end()
            }
            Message::Notification { method, params } => {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("method", method)?;
                if !params.is_null() {
                    map.serialize_entry("params", params)?;
                }
                map.end()
            }
            Message::Response { id, outcome } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("id", id)?;
                match outcome {
                    Ok(result) => map.serialize_entry("result", result)?,
                    Err(error) => map.serialize_entry("error", error)?,
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_and_errors() {
        assert_eq!(
            serde_json::from_value::<RequestId>(json!(3)).unwrap(),
            RequestId::Integer(3)
        );
        assert_eq!(
            serde_json::from_value::<RequestId>(json!("a")).unwrap(),
            RequestId::from("a")
        );
        assert_eq!(serde_json::to_value(RequestId::from(7)).unwrap(), json!(7));
        let e: JsonRpcError =
            serde_json::from_value(json!({"code": -32600, "message": "Not initialized"})).unwrap();
        assert!(e.is_not_initialized());
        assert!(!e.is_overloaded());
        let e: JsonRpcError = serde_json::from_value(
            json!({"code": -32600, "message": "Invalid request: unknown variant `x/y`, expected one of"}),
        )
        .unwrap();
        assert!(e.is_unknown_method());
        assert!(JsonRpcError::new(-32001, "Server overloaded; retry later.").is_overloaded());
    }

    #[test]
    fn classifies_messages() {
        let parse = Message::parse;
        assert_eq!(
            parse(r#"{"id":0,"result":{"userAgent":"x"}}"#).unwrap(),
            Message::Response {
                id: json!(0),
                outcome: Ok(json!({"userAgent":"x"}))
            }
        );
        assert_eq!(
            parse(r#"{"error":{"code":-32600,"message":"Not initialized"},"id":0}"#).unwrap(),
            Message::Response {
                id: json!(0),
                outcome: Err(JsonRpcError::new(-32600, "Not initialized"))
            }
        );
        assert_eq!(
            parse(r#"{"id":1,"error":"boom"}"#).unwrap(),
            Message::Response {
                id: json!(1),
                outcome: Err(JsonRpcError::new(0, "\"boom\""))
            }
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","method":"turn/started","params":{"threadId":"t"},"emittedAtMs":1}"#)
                .unwrap(),
            Message::Notification {
                method: "turn/started".into(),
                params: json!({"threadId":"t"})
            }
        );
        assert_eq!(
            parse(r#"{"method":"item/fileChange/requestApproval","id":1,"params":{}}"#).unwrap(),
            Message::Request {
                id: RequestId::Integer(1),
                method: "item/fileChange/requestApproval".into(),
                params: json!({})
            }
        );
        assert!(matches!(parse("nope"), Err(GarbageReason::NotJson(_))));
        assert_eq!(parse("[1,2]"), Err(GarbageReason::NotJsonRpc));
        assert_eq!(parse(r#"{"id":3}"#), Err(GarbageReason::NotJsonRpc));
        assert_eq!(
            parse(r#"{"hello":"world"}"#),
            Err(GarbageReason::NotJsonRpc)
        );
    }

    #[test]
    fn encodes_messages() {
        let request = Message::Request {
            id: RequestId::Integer(4),
            method: "model/list".into(),
            params: Value::Null,
        };
        assert_eq!(
            request.encode().unwrap(),
            r#"{"id":4,"method":"model/list","params":{}}"#
        );
        let notification = Message::Notification {
            method: "initialized".into(),
            params: Value::Null,
        };
        assert_eq!(
            notification.encode().unwrap(),
            r#"{"method":"initialized"}"#
        );
        let error = Message::response(&RequestId::Integer(2), Err(JsonRpcError::new(-32601, "no")));
        assert_eq!(
            error.encode().unwrap(),
            r#"{"id":2,"error":{"code":-32601,"message":"no"}}"#
        );
        let with_data = Message::Response {
            id: Value::Null,
            outcome: Err(JsonRpcError::new(-32700, "bad").with_data(json!({"x": 1}))),
        };
        assert_eq!(
            with_data.encode().unwrap(),
            r#"{"id":null,"error":{"code":-32700,"message":"bad","data":{"x":1}}}"#
        );
        let result = Message::response(&RequestId::from("a"), Ok(json!({"ok": true})));
        assert_eq!(
            result.encode().unwrap(),
            r#"{"id":"a","result":{"ok":true}}"#
        );
        // what is encoded parses back to itself
        for message in [request, notification, error, with_data, result] {
            let back = Message::parse(&message.encode().unwrap()).unwrap();
            match (&message, &back) {
                (
                    Message::Request {
                        params: Value::Null,
                        ..
                    },
                    Message::Request { params, .. },
                ) => {
                    assert_eq!(params, &json!({}))
                }
                _ => assert_eq!(back, message),
            }
        }
    }
}
