//! Protocol-neutral core of codex-bridge: tasks, events, policies, auth, jobs, and the one place that launches codex.
