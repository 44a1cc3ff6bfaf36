//! Every error of codex-cli-backend tells each cause once, alone and inside the codex-core
//! error it becomes at the `Backend` boundary.

use std::error::Error as StdError;

use codex_core::error_chain;

use super::*;

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

#[test]
fn exec_errors_tell_each_cause_once() {
    let io = |t: &str| std::io::Error::other(t.to_owned());
    let temp = Error::TempFile {
        what: "output schema",
        path: "/tmp/x.json".into(),
        source: io("CAUSE-temp"),
    };
    assert_told_once(&temp, "CAUSE-temp");
    assert_eq!(
        error_chain(&temp),
        "output schema temp file /tmp/x.json: CAUSE-temp"
    );
    let core: codex_core::Error = temp.into();
    assert_told_once(&core, "CAUSE-temp");
    assert_told_once(&core, "output schema temp file");
    let path = Error::Path {
        path: "rel".into(),
        source: io("CAUSE-path"),
    };
    assert_told_once(&path, "CAUSE-path");
    let core: codex_core::Error = path.into();
    assert_told_once(&core, "CAUSE-path");
    let no_source: codex_core::Error = Error::NoBinary.into();
    assert_told_once(&no_source, "no codex binary was given");
}
