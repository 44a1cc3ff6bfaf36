//! Every error of codex-agent tells each cause once: a message never
//! repeats its source's text, and [`codex_core::ErrorChain`] renders the chain once.

use std::error::Error as StdError;

use crate::jobs::StoreError;
use codex_core::error_chain;

use super::*;

/// `cause` appears exactly once whether the chain is printed naively (each level's message
/// joined, as anyhow's `{:#}` does) or with [`codex_core::ErrorChain`].
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

/// Checks `err` alone and inside an `anyhow::Error` (how a binary carries it).
fn check(err: Error, cause: &str) {
    assert_told_once(&err, cause);
    let any = anyhow::Error::from(err).context("running the task");
    assert_told_once(any.as_ref(), cause);
    assert_eq!(format!("{any:#}"), error_chain(any.as_ref()));
}

fn io(text: &str) -> std::io::Error {
    std::io::Error::other(text.to_owned())
}

#[test]
fn agent_errors_tell_each_cause_once() {
    use codex_core::Error as E;
    let not_found = || E::NotFound {
        looked_at: "CODEX_BIN=/no/such/codex".into(),
    };
    // issue 14: "codex not found" was printed (and stored) twice
    check(Error::from(not_found()), "codex not found");
    assert_eq!(
        error_chain(&Error::from(not_found())),
        format!("Codex did not run: {}", not_found())
    );
    // issue 10: the version probe's text was printed twice
    let probe = || E::VersionProbe {
        program: "/x/codex".into(),
        detail: "unexpected output CAUSE-probe".into(),
    };
    check(
        Error::before_turn(Some(BackendKind::Exec), probe()),
        "CAUSE-probe",
    );
    check(Error::from(probe()), "could not read the codex version");
    let spawn = || E::Spawn {
        program: "/x/codex".into(),
        source: io("CAUSE-spawn"),
    };
    check(
        Error::before_turn(Some(BackendKind::AppServer), spawn()),
        "CAUSE-spawn",
    );
    check(
        Error::before_turn(
            Some(BackendKind::Broker),
            E::io("reading", io("CAUSE-lost")),
        ),
        "CAUSE-lost",
    );
    check(
        Error::before_turn(None, E::backend(BackendKind::Exec, "CAUSE-backend")),
        "CAUSE-backend",
    );
    check(
        Error::TurnIncomplete {
            backend: BackendKind::AppServer,
            thread_id: None,
            turn_id: None,
            source: Some(Box::new(E::backend(BackendKind::AppServer, "CAUSE-mid"))),
        },
        "CAUSE-mid",
    );
    let outside = E::OutsideWorkspace {
        path: "/elsewhere".into(),
        roots: vec!["/w".into()],
    };
    let refused = Error::before_turn(None, outside);
    let chain = error_chain(&refused);
    assert!(
        chain.starts_with("refused before starting Codex: "),
        "{chain}"
    );
    check(refused, "--add-dir");
    check(
        Error::from(StoreError::Io {
            context: "writing".into(),
            source: io("CAUSE-store"),
        }),
        "CAUSE-store",
    );
}
