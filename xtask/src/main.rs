//! codex-bridge automation.
fn main() {}
