//! Every error of codex-core tells each cause once: a message never repeats its source's
//! text, and [`ErrorChain`] renders the whole chain with each cause once.

use std::error::Error as StdError;

use super::*;

/// Each level's own message, naively joined (no deduplication): what any chain printer
/// (anyhow's `{:#}`, a `caused by:` loop) would show.
fn naive_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut next = err.source();
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    parts.join(": ")
}

/// `cause` appears exactly once in the naive chain and in [`ErrorChain`]'s rendering.
pub(crate) fn assert_told_once(err: &(dyn StdError + 'static), cause: &str) {
    let naive = naive_chain(err);
    assert_eq!(naive.matches(cause).count(), 1, "naive chain: {naive}");
    let chain = error_chain(err);
    assert_eq!(chain.matches(cause).count(), 1, "chain: {chain}");
    assert_eq!(chain, naive, "nothing to deduplicate in our own errors");
}

fn io(text: &str) -> std::io::Error {
    std::io::Error::other(text.to_owned())
}

#[test]
fn core_errors_tell_each_cause_once() {
    let spawn = Error::Spawn {
        program: "/usr/bin/codex".into(),
        source: io("CAUSE-spawn"),
    };
    assert_told_once(&spawn, "CAUSE-spawn");
    assert_eq!(
        error_chain(&spawn),
        "could not start codex at /usr/bin/codex: CAUSE-spawn"
    );
    assert_told_once(&Error::io("reading", io("CAUSE-io")), "CAUSE-io");
    assert_told_once(
        &Error::backend(BackendKind::AppServer, "CAUSE-backend"),
        "CAUSE-backend",
    );
    // a backend error whose own error has a source
    let nested = Error::backend(
        BackendKind::Exec,
        Error::Spawn {
            program: "codex".into(),
            source: io("CAUSE-nested"),
        },
    );
    assert_told_once(&nested, "CAUSE-nested");
    assert_told_once(&nested, "could not start codex");
    // errors without a source are their message
    let not_found = Error::NotFound {
        looked_at: "CODEX_BIN=/no/such/codex".into(),
    };
    assert_told_once(&not_found, "codex not found");
    assert_eq!(error_chain(&not_found), not_found.to_string());
}

/// An error of another crate that embeds its source in its message.
#[derive(Debug)]
struct Embeds(std::io::Error);

impl std::fmt::Display for Embeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IO error: {}", self.0)
    }
}

impl StdError for Embeds {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn the_chain_does_not_repeat_a_foreign_error_that_embeds_its_source() {
    let err = Error::backend(BackendKind::AppServer, Embeds(io("CAUSE-foreign")));
    let chain = error_chain(&err);
    assert_eq!(chain, "app-server backend: IO error: CAUSE-foreign");
    assert_eq!(format!("{}", ErrorChain(&err)), chain);
    // an empty top message is not followed by a dangling separator
    let empty = Error::io("", io("CAUSE"));
    assert_eq!(error_chain(&empty), "CAUSE");
    // a message that merely ends like its cause is not taken for one that embeds it
    let err = Error::io(
        "stopped on the app-server backend",
        io("app-server backend"),
    );
    assert_eq!(
        error_chain(&err),
        "stopped on the app-server backend: app-server backend"
    );
}

#[test]
fn exit_summaries_name_the_signal() {
    assert_eq!(ExitSummary::Code(7).to_string(), "exit code 7");
    assert_eq!(ExitSummary::Signal(11).to_string(), "signal 11, SIGSEGV");
    assert_eq!(ExitSummary::Signal(9).to_string(), "signal 9, SIGKILL");
    // a number that is no signal is still rendered
    assert_eq!(ExitSummary::Signal(250).to_string(), "signal 250");
}
