//! Classifying incoming JSON-RPC messages and encoding outgoing ones.
//!
//! codex's app-server omits the `"jsonrpc"` member; this side accepts messages with or
//! without it, and does not send it (codex tolerates it, but its own clients do not send it).

use serde_json::{Map, Value};

use crate::protocol::RequestId;
use crate::transport::GarbageReason;

/// A JSON-RPC error object as received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

/// One incoming message.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// An answer to one of our requests.
    Response {
        id: Value,
        outcome: Result<Value, RpcError>,
    },
    /// A server-to-client request.
    Request {
        id: RequestId,
        method: String,
        params: Value,
    },
    /// A notification.
    Notification { method: String, params: Value },
}

/// Parses one frame's text.
pub(crate) fn parse(text: &str) -> Result<Incoming, GarbageReason> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| GarbageReason::NotJson(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(GarbageReason::NotJsonRpc);
    };
    if let Some(Value::String(method)) = obj.get("method") {
        let method = method.clone();
        let params = obj.remove("params").unwrap_or(Value::Null);
        return match obj.remove("id") {
            None | Some(Value::Null) => Ok(Incoming::Notification { method, params }),
            Some(id) => match serde_json::from_value::<RequestId>(id) {
                Ok(id) => Ok(Incoming::Request { id, method, params }),
                Err(_) => Err(GarbageReason::NotJsonRpc),
            },
        };
    }
    let id = obj.remove("id").ok_or(GarbageReason::NotJsonRpc)?;
    if let Some(error) = obj.remove("error") {
        return Ok(Incoming::Response {
            id,
            outcome: Err(parse_error(error)),
        });
    }
    match obj.remove("result") {
        Some(result) => Ok(Incoming::Response {
            id,
            outcome: Ok(result),
        }),
        None => Err(GarbageReason::NotJsonRpc),
    }
}

fn parse_error(error: Value) -> RpcError {
    let mut obj = match error {
        Value::Object(obj) => obj,
        other => {
            return RpcError {
                code: 0,
                message: other.to_string(),
                data: None,
            };
        }
    };
    RpcError {
        code: obj.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: match obj.remove("message") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        },
        data: obj.remove("data").filter(|d| !d.is_null()),
    }
}

/// `{"id":ID,"method":METHOD,"params":PARAMS}`; `null` params are sent as `{}`.
pub(crate) fn encode_request(id: i64, method: &str, params: &Value) -> serde_json::Result<String> {
    let params = match params {
        Value::Null => "{}".to_owned(),
        other => serde_json::to_string(other)?,
    };
    Ok(format!(
        r#"{{"id":{id},"method":{},"params":{params}}}"#,
        serde_json::to_string(method)?
    ))
}

/// `{"method":METHOD,"params":PARAMS}`, without `params` when it is `null`.
pub(crate) fn encode_notification(method: &str, params: &Value) -> serde_json::Result<String> {
    let mut obj = Map::new();
    obj.insert("method".into(), Value::String(method.to_owned()));
    if !params.is_null() {
        obj.insert("params".into(), params.clone());
    }
    serde_json::to_string(&obj)
}

/// `{"id":ID,"result":RESULT}`.
pub(crate) fn encode_result(id: &RequestId, result: &Value) -> serde_json::Result<String> {
    serde_json::to_string(&serde_json::json!({"id": id, "result": result}))
}

/// `{"id":ID,"error":{"code":..,"message":..,"data"?:..}}`.
pub(crate) fn encode_error(
    id: &RequestId,
    code: i64,
    message: &str,
    data: Option<&Value>,
) -> serde_json::Result<String> {
    let mut error = Map::new();
    error.insert("code".into(), code.into());
    error.insert("message".into(), message.into());
    if let Some(data) = data {
        error.insert("data".into(), data.clone());
    }
    serde_json::to_string(&serde_json::json!({"id": id, "error": error}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_messages() {
        assert_eq!(
            parse(r#"{"id":0,"result":{"userAgent":"x"}}"#).unwrap(),
            Incoming::Response {
                id: json!(0),
                outcome: Ok(json!({"userAgent":"x"}))
            }
        );
        assert_eq!(
            parse(r#"{"error":{"code":-32600,"message":"Not initialized"},"id":0}"#).unwrap(),
            Incoming::Response {
                id: json!(0),
                outcome: Err(RpcError {
                    code: -32600,
                    message: "Not initialized".into(),
                    data: None
                })
            }
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","method":"turn/started","params":{"threadId":"t"},"emittedAtMs":1}"#)
                .unwrap(),
            Incoming::Notification {
                method: "turn/started".into(),
                params: json!({"threadId":"t"})
            }
        );
        assert_eq!(
            parse(r#"{"method":"item/fileChange/requestApproval","id":1,"params":{}}"#).unwrap(),
            Incoming::Request {
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
        let text = encode_request(4, "model/list", &Value::Null).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"id":4,"method":"model/list","params":{}})
        );
        assert_eq!(
            encode_notification("initialized", &Value::Null).unwrap(),
            r#"{"method":"initialized"}"#
        );
        let text = encode_error(&RequestId::Integer(2), -32601, "no", None).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"id":2,"error":{"code":-32601,"message":"no"}})
        );
    }
}
