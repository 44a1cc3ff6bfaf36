//! codex-bridge backend over one-shot `codex exec --json` processes.
