//! Test support for codex-bridge: mock Responses API, CODEX_HOME helpers, pinned codex.
