//! The floor: a minimal JSON-RPC client for `codex app-server`, written for the benchmark
//! with nothing but tokio and serde_json.
//!
//! It spawns `codex app-server` (in a process group of its own, killed on drop), writes one
//! JSON object per line on its stdin and reads lines from its stdout, parsing each into a
//! [`serde_json::Value`]. No pending-request table, no subscriptions, no typed protocol, no
//! second task: one request at a time, notifications looked at only to find the end of the
//! turn. Whatever codex-bridge's client spends above this is library overhead.

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::home::CodexHome;
use crate::procs::GroupGuard;

/// A running `codex app-server` driven by hand.
#[derive(Debug)]
pub struct RawAppServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
    next_id: u64,
    guard: GroupGuard,
}

impl RawAppServer {
    /// Spawns `codex app-server` with `home`'s environment (and `HOME=home_dir` when given)
    /// and performs the `initialize` handshake.
    ///
    /// # Errors
    /// When codex cannot be started or the handshake fails.
    pub async fn start(
        codex: &Path,
        home: &CodexHome,
        home_dir: Option<&Path>,
    ) -> Result<RawAppServer, String> {
        let mut command = tokio::process::Command::new(codex);
        if let Some(dir) = home_dir {
            command.env("HOME", dir);
        }
        home.apply_env(&mut command)
            .arg("app-server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", codex.display()))?;
        let guard = GroupGuard::new(child.id());
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut server = RawAppServer {
            child,
            stdin,
            stdout,
            line: String::new(),
            next_id: 0,
            guard,
        };
        server
            .request(
                "initialize",
                json!({"clientInfo": {"name": "codex-bridge-bench-raw", "version": "0.0.0"}}),
            )
            .await?;
        server.send(&json!({"method": "initialized"})).await?;
        Ok(server)
    }

    /// The process group (= the pid of the launcher) of the app-server.
    pub fn pgid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn send(&mut self, message: &Value) -> Result<(), String> {
        let mut text = serde_json::to_string(message).map_err(|e| e.to_string())?;
        text.push('\n');
        self.stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("writing to the app-server: {e}"))?;
        self.stdin
            .flush()
            .await
            .map_err(|e| format!("writing to the app-server: {e}"))
    }

    /// The next message from the app-server.
    async fn read(&mut self) -> Result<Value, String> {
        loop {
            self.line.clear();
            let n = self
                .stdout
                .read_line(&mut self.line)
                .await
                .map_err(|e| format!("reading from the app-server: {e}"))?;
            if n == 0 {
                return Err("the app-server closed its stdout".into());
            }
            if self.line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&self.line)
                .map_err(|e| format!("not JSON from the app-server: {e}"));
        }
    }

    /// Sends a request and reads until its answer (skipping notifications).
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"id": id, "method": method, "params": params}))
            .await?;
        loop {
            let message = self.read().await?;
            if message.get("method").is_some() {
                continue;
            }
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(error) = message.get("error") {
                    return Err(format!("{method} failed: {error}"));
                }
                return Ok(message.get("result").cloned().unwrap_or(Value::Null));
            }
        }
    }

    /// One turn on a new thread: `thread/start {cwd}`, `turn/start` with `prompt`, then read
    /// until that thread's `turn/completed`. Returns the last agent message.
    ///
    /// # Errors
    /// When a request fails, the connection ends, or the turn does not complete.
    pub async fn turn(&mut self, cwd: &Path, prompt: &str) -> Result<String, String> {
        let thread = self
            .request("thread/start", json!({"cwd": cwd.to_string_lossy()}))
            .await?;
        let thread_id = thread
            .pointer("/thread/id")
            .and_then(Value::as_str)
            .ok_or("thread/start answered no thread id")?
            .to_owned();
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({
            "id": id,
            "method": "turn/start",
            "params": {
                "threadId": thread_id,
                "input": [{"type": "text", "text": prompt, "text_elements": []}],
            },
        }))
        .await?;
        let mut answered = false;
        let mut completed: Option<Value> = None;
        let mut last_message = String::new();
        while !(answered && completed.is_some()) {
            let message = self.read().await?;
            match message.get("method").and_then(Value::as_str) {
                None => {
                    if message.get("id").and_then(Value::as_u64) == Some(id) {
                        if let Some(error) = message.get("error") {
                            return Err(format!("turn/start failed: {error}"));
                        }
                        answered = true;
                    }
                }
                Some(method) => {
                    let params = message.get("params").unwrap_or(&Value::Null);
                    if params.get("threadId").and_then(Value::as_str) != Some(&thread_id) {
                        continue;
                    }
                    match method {
                        "item/completed" => {
                            let item = params.get("item").unwrap_or(&Value::Null);
                            if item.get("type").and_then(Value::as_str) == Some("agentMessage") {
                                last_message = item
                                    .get("text")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned();
                            }
                        }
                        "turn/completed" => {
                            completed = Some(params.get("turn").cloned().unwrap_or(Value::Null))
                        }
                        _ => {}
                    }
                }
            }
        }
        let turn = completed.unwrap_or(Value::Null);
        match turn.get("status").and_then(Value::as_str) {
            Some("completed") => Ok(last_message),
            other => Err(format!("the turn ended {other:?}: {turn}")),
        }
    }

    /// Kills the app-server's process group now.
    pub fn kill(mut self) {
        self.guard.kill();
    }
}
