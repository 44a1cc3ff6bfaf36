//! Every error of codex-asp (and of its broker) tells each cause once, alone and inside the
//! codex-core error it becomes at the `Backend` boundary.

use std::error::Error as StdError;

use codex_core::error_chain;

use super::*;
use crate::broker;

/// `cause` appears exactly once whether the chain is printed naively (each level's message
/// joined) or with [`codex_core::ErrorChain`].
fn assert_told_once(err: &(dyn StdError + 'static), cause: &str) {
    let mut parts = vec![err.to_string()];
    let mut next = err.source();
    while let Some(c) = next {
        parts.push(c.to_string());
        next = c.source();
    }
    let naive = parts.join(": ");
    assert_eq!(naive.matches(cause).count(), 1, "naive chain: {naive}");
    let chain = error_chain(err);
    assert_eq!(chain.matches(cause).count(), 1, "chain: {chain}");
}

/// Checks `err` alone and as the codex-core error of the app-server backend.
fn check(err: Error, cause: &str) {
    assert_told_once(&err, cause);
    let core: codex_core::Error = err.into();
    assert_told_once(&core, cause);
}

fn io(text: &str) -> std::io::Error {
    std::io::Error::other(text.to_owned())
}

fn json_error() -> serde_json::Error {
    serde_json::from_str::<u32>("CAUSE").unwrap_err()
}

#[test]
fn asp_errors_tell_each_cause_once() {
    check(
        Error::WebSocket {
            url: "ws://127.0.0.1:1".into(),
            source: Box::new(tokio_tungstenite::tungstenite::Error::ConnectionClosed),
        },
        "Connection closed normally",
    );
    let decode_text = json_error().to_string();
    check(
        Error::Encode {
            method: "thread/start".into(),
            source: json_error(),
        },
        &decode_text,
    );
    check(
        Error::Decode {
            method: "thread/start".into(),
            source: json_error(),
        },
        &decode_text,
    );
    check(Error::io("reading", io("CAUSE-io")), "CAUSE-io");
    check(
        Error::Launch(codex_core::Error::Spawn {
            program: "codex".into(),
            source: io("CAUSE-launch"),
        }),
        "CAUSE-launch",
    );
    // a closed connection renders its reason's whole chain in its own message
    check(
        Error::closed(CloseReason::failed(
            "reading failed",
            codex_core::Error::io("reading stdout", io("CAUSE-closed")),
        )),
        "CAUSE-closed",
    );
    let err = Error::closed(CloseReason::failed(
        "reading failed",
        codex_core::Error::io("reading stdout", io("CAUSE-closed")),
    ));
    assert_eq!(
        err.to_string(),
        "the connection to codex app-server is closed: reading failed: reading stdout: CAUSE-closed"
    );
}

#[test]
fn broker_errors_tell_each_cause_once() {
    let cases = [
        (
            broker::Error::Spawn {
                program: "/x/codex-broker".into(),
                source: io("CAUSE-spawn"),
            },
            "CAUSE-spawn",
        ),
        (
            broker::Error::Io {
                context: "opening the log".into(),
                source: io("CAUSE-io"),
            },
            "CAUSE-io",
        ),
        (
            broker::Error::Asp(Error::io("connecting", io("CAUSE-asp"))),
            "CAUSE-asp",
        ),
        (
            broker::Error::from(codex_core::Error::Spawn {
                program: "codex".into(),
                source: io("CAUSE-core"),
            }),
            "CAUSE-core",
        ),
    ];
    for (err, cause) in cases {
        assert_told_once(&err, cause);
        let asp: Error = err.into();
        assert_told_once(&asp, cause);
        let core: codex_core::Error = asp.into();
        assert_told_once(&core, cause);
    }
    let spawn = broker::Error::Spawn {
        program: "/x/codex-broker".into(),
        source: io("CAUSE-spawn"),
    };
    assert_eq!(
        error_chain(&spawn),
        "could not start /x/codex-broker: CAUSE-spawn"
    );
}
