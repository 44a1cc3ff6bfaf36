//! Fuzz targets of this crate (`cargo xtask fuzz --target jsonrpc|connection`):
//!
//! - [`jsonrpc`]: classifying incoming JSON-RPC messages, the typed notifications and server
//!   requests, answers to server requests, and the mapping of a turn's notifications to core
//!   events;
//! - [`connection`]: the connection driver over the in-memory transport, fed answers with
//!   unknown, duplicate and mistyped ids, mistyped error objects, floods and garbage while
//!   calls are pending.
//!
//! Inputs are the recorded app-server transcripts (`tests/fixtures/*.jsonl` and
//! `../tests/fixtures/app-server/`), mutated by [`codex_core::fuzzing::mutated`].

use std::path::Path;
use std::sync::{Arc, OnceLock};

use codex_core::fuzzing;
use serde_json::Value;

mod connection;
mod jsonrpc;

/// Every message of the recorded transcripts, both directions.
fn corpus() -> Arc<[Value]> {
    static CORPUS: OnceLock<Arc<[Value]>> = OnceLock::new();
    CORPUS
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let mut docs: Vec<Value> = fuzzing::jsonl_corpus(&root.join("tests/fixtures"))
                .into_iter()
                .map(|line| match line.get("msg") {
                    Some(msg) => msg.clone(),
                    None => line,
                })
                .collect();
            docs.extend(fuzzing::jsonl_corpus(
                &root.join("../tests/fixtures/app-server"),
            ));
            docs.extend(
                [
                    r#"{"id":3,"error":{"code":-32001,"message":"Server overloaded; retry later.","data":{"retryAfterMs":10}}}"#,
                    r#"{"id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
                    r#"{"jsonrpc":"2.0","id":"s-1","method":"item/tool/requestUserInput","params":{"threadId":"t","turnId":"u","itemId":"i","questions":[]}}"#,
                    r#"{"id":4,"method":"mcpServer/elicitation/request","params":{"threadId":"t","serverName":"s","message":"m"}}"#,
                    r#"{"id":5,"method":"account/chatgptAuthTokens/refresh","params":{}}"#,
                ]
                .iter()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
            assert!(docs.len() > 150, "the recorded transcripts are missing");
            docs.into()
        })
        .clone()
}
