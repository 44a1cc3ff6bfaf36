//! JSON-RPC 2.0 client for `codex app-server` (stdio, WebSocket, unix socket), approvals, tower integration and the resident broker.
