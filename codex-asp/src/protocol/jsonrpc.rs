//! JSON-RPC pieces of the protocol: request ids, error objects and error codes.
//!
//! codex speaks JSON-RPC 2.0 **without** the `"jsonrpc": "2.0"` field (sending it is
//! tolerated). Over stdio every message is one JSON object on one line.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

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
}
