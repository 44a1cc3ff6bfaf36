//! Delegate tasks to Codex as a sub-agent with prompt shaping, background jobs and proof of execution.
