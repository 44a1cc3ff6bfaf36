//! Proof of execution: [`Verified`] outcomes, built only from the events of a [`Run`].
//!
//! A [`Witness`] folds the events the caller reads from a [`Run`] (it does not trust the
//! backend's [`TurnOutcome`] alone), and concludes with a [`Verified`] outcome only when:
//!
//! - a thread started (and, on resume, it is the thread we asked for);
//! - our turn started, and its terminal *completed* event arrived for that very turn (same
//!   turn id on the app-server; on `codex exec`, which reports no turn ids, the one
//!   `turn.completed` of the process we spawned);
//! - the backend's own [`TurnOutcome`] agrees (same backend, thread and turn).
//!
//! The final message is the last agent message among the items completed *inside* our turn;
//! items seen before our turn started (an earlier turn's) are never used. Anything else is a
//! typed [`Error`].

use std::path::PathBuf;
use std::time::Duration;

use codex_core::{
    BackendKind, CodexVersion, Event, FailureKind, Item, ItemDetails, Run, ThreadId, TurnId,
    TurnOutcome, Usage,
};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, UnverifiedReason};

/// The proven outcome of a delegated turn: Codex ran it, and this is what it produced.
///
/// Its fields are private and it has no public constructor (nor `Deserialize`, nor
/// `Default`): the only way to get one is to let this crate observe a backend's [`Run`] up to
/// the completed event of the turn it started.
///
/// ```no_run
/// # async fn demo(delegate: codex_agent::Delegate) -> codex_agent::Result<()> {
/// let verified = delegate.run(codex_agent::DelegateRequest::new("explain src/main.rs")).await?;
/// println!(
///     "{} (codex {}) thread {} turn {:?}: {}",
///     verified.backend(),
///     verified.codex_version(),
///     verified.thread_id(),
///     verified.turn_id(),
///     verified.final_message().unwrap_or("(no message)")
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verified {
    backend: BackendKind,
    #[serde(serialize_with = "ser_version")]
    codex_version: CodexVersion,
    thread_id: ThreadId,
    turn_id: Option<TurnId>,
    items: Vec<Item>,
    final_message: Option<String>,
    usage: Option<Usage>,
    touched_files: Vec<PathBuf>,
    resumed: bool,
    job_id: Option<String>,
}

fn ser_version<S: serde::Serializer>(
    v: &CodexVersion,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Verified {
    /// The backend that ran the turn.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// if v.backend() == codex_core::BackendKind::Exec { println!("ran through codex exec"); }
    /// # }
    /// ```
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The version of the codex that ran it.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// println!("codex {}", v.codex_version());
    /// # }
    /// ```
    pub fn codex_version(&self) -> &CodexVersion {
        &self.codex_version
    }

    /// The thread (resume it with `Continuation::Resume`).
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// let next = codex_agent::DelegateRequest::new("now add tests")
    ///     .continue_with(codex_agent::Continuation::Resume(v.thread_id().clone()));
    /// # let _ = next; }
    /// ```
    pub fn thread_id(&self) -> &ThreadId {
        &self.thread_id
    }

    /// The turn id, when the backend reports one (the app-server does, `codex exec` does not).
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// if let Some(turn) = v.turn_id() { println!("turn {turn}"); }
    /// # }
    /// ```
    pub fn turn_id(&self) -> Option<&TurnId> {
        self.turn_id.as_ref()
    }

    /// Every item completed inside the turn, in order.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// for item in v.items() { println!("{}", item.details.kind_name()); }
    /// # }
    /// ```
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The turn's last agent message.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// println!("{}", v.final_message().unwrap_or("(no message)"));
    /// # }
    /// ```
    pub fn final_message(&self) -> Option<&str> {
        self.final_message.as_deref()
    }

    /// Token usage, when reported.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// if let Some(u) = v.usage() { println!("{} output tokens", u.output_tokens); }
    /// # }
    /// ```
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    /// Files the turn created, changed or removed, in first-touched order.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// for path in v.touched_files() { println!("{}", path.display()); }
    /// # }
    /// ```
    pub fn touched_files(&self) -> &[PathBuf] {
        &self.touched_files
    }

    /// Whether the turn continued an existing thread.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// println!("{}", if v.resumed() { "continued" } else { "new thread" });
    /// # }
    /// ```
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The job that recorded the run, when one did.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// if let Some(id) = v.job_id() { println!("job {id}"); }
    /// # }
    /// ```
    pub fn job_id(&self) -> Option<&str> {
        self.job_id.as_deref()
    }

    /// The commands the turn ran, with their exit codes.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// for (cmd, code) in v.commands() { println!("{cmd}: {code:?}"); }
    /// # }
    /// ```
    pub fn commands(&self) -> Vec<(&str, Option<i32>)> {
        self.items
            .iter()
            .filter_map(|i| match &i.details {
                ItemDetails::CommandExecution {
                    command, exit_code, ..
                } => Some((command.as_str(), *exit_code)),
                _ => None,
            })
            .collect()
    }

    /// The turn's reasoning summaries, joined.
    ///
    /// ```
    /// # fn demo(v: &codex_agent::Verified) {
    /// println!("{}", v.reasoning_summary().unwrap_or_default());
    /// # }
    /// ```
    pub fn reasoning_summary(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .items
            .iter()
            .filter_map(|i| match &i.details {
                ItemDetails::Reasoning { text } if !text.trim().is_empty() => Some(text.as_str()),
                _ => None,
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }

    pub(crate) fn set_job_id(&mut self, id: Option<String>) {
        self.job_id = id;
    }
}

fn touched(items: &[Item]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for item in items {
        if let ItemDetails::FileChange { changes, .. } = &item.details {
            for c in changes {
                if !out.contains(&c.path) {
                    out.push(c.path.clone());
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum End {
    Completed(Option<Usage>),
    Failed(String, FailureKind),
    Interrupted,
}

/// Whether the fold should go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Keep reading.
    Continue,
    /// Our turn ended; stop reading and ask for the outcome.
    Ended,
}

/// The fold over a run's events that decides whether the run is proven.
#[derive(Debug)]
pub(crate) struct Witness {
    backend: BackendKind,
    strict_turn_ids: bool,
    expected_thread: Option<ThreadId>,
    thread_id: Option<ThreadId>,
    turn_started: bool,
    turn_id: Option<TurnId>,
    items: Vec<Item>,
    end: Option<End>,
    ignored_items: usize,
}

impl Witness {
    /// A witness for a turn started on `backend`; `resumed` is the thread we asked to resume.
    pub(crate) fn new(backend: BackendKind, resumed: Option<ThreadId>) -> Self {
        Witness {
            backend,
            // the app-server reports turn ids; `codex exec` does not
            strict_turn_ids: !matches!(backend, BackendKind::Exec),
            expected_thread: resumed,
            thread_id: None,
            turn_started: false,
            turn_id: None,
            items: Vec::new(),
            end: None,
            ignored_items: 0,
        }
    }

    pub(crate) fn thread_id(&self) -> Option<&ThreadId> {
        self.thread_id.as_ref()
    }

    fn unverified(&self, reason: UnverifiedReason) -> Error {
        Error::Unverified {
            backend: self.backend,
            reason,
        }
    }

    /// Folds one event.
    pub(crate) fn observe(&mut self, event: &Event) -> Result<Step> {
        if self.end.is_some() {
            return Ok(Step::Ended);
        }
        match event {
            Event::ThreadStarted { thread_id } => {
                let expected = self.thread_id.as_ref().or(self.expected_thread.as_ref());
                if let Some(expected) = expected
                    && expected != thread_id
                {
                    return Err(self.unverified(UnverifiedReason::ForeignThread {
                        expected: expected.clone(),
                        got: thread_id.clone(),
                    }));
                }
                self.thread_id = Some(thread_id.clone());
            }
            Event::TurnStarted { turn_id } => {
                if self.turn_started {
                    if turn_id.is_some() && *turn_id != self.turn_id {
                        return Err(self.unverified(UnverifiedReason::ForeignTurn {
                            expected: self.turn_id.clone(),
                            got: turn_id.clone(),
                        }));
                    }
                } else {
                    if self.strict_turn_ids && turn_id.is_none() {
                        return Err(self.unverified(UnverifiedReason::MissingTurnId));
                    }
                    self.turn_started = true;
                    self.turn_id = turn_id.clone();
                }
            }
            Event::ItemCompleted { item } => {
                if self.turn_started {
                    self.items.push(item.clone());
                } else {
                    self.ignored_items += 1;
                    tracing::debug!(
                        item = item.details.kind_name(),
                        "item completed before our turn started; not part of the outcome"
                    );
                }
            }
            Event::TurnCompleted { turn_id, usage } => {
                self.check_terminal(turn_id)?;
                if self.thread_id.is_none() {
                    return Err(self.unverified(UnverifiedReason::NoThread));
                }
                self.end = Some(End::Completed(*usage));
                return Ok(Step::Ended);
            }
            Event::TurnFailed {
                turn_id,
                message,
                kind,
            } => {
                self.check_terminal(turn_id)?;
                self.end = Some(End::Failed(message.clone(), *kind));
                return Ok(Step::Ended);
            }
            Event::TurnInterrupted { turn_id } => {
                self.check_terminal(turn_id)?;
                self.end = Some(End::Interrupted);
                return Ok(Step::Ended);
            }
            Event::Error { message } => {
                tracing::warn!(backend = %self.backend, "codex reported an error: {message}");
            }
            Event::Undecodable { reason, .. } => {
                tracing::warn!(backend = %self.backend, "undecodable codex output: {reason}");
            }
            _ => {}
        }
        Ok(Step::Continue)
    }

    fn check_terminal(&mut self, turn_id: &Option<TurnId>) -> Result<()> {
        if !self.turn_started {
            return Err(self.unverified(UnverifiedReason::TerminalBeforeTurnStarted));
        }
        match (&self.turn_id, turn_id) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                Err(self.unverified(UnverifiedReason::ForeignTurn {
                    expected: Some(ours.clone()),
                    got: Some(theirs.clone()),
                }))
            }
            (Some(ours), None) if self.strict_turn_ids => {
                Err(self.unverified(UnverifiedReason::ForeignTurn {
                    expected: Some(ours.clone()),
                    got: None,
                }))
            }
            (None, Some(theirs)) => {
                // only where ids are optional (exec): the terminal event names the turn
                self.turn_id = Some(theirs.clone());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Concludes from the folded events and the backend's own outcome.
    pub(crate) fn conclude(
        self,
        outcome: codex_core::Result<TurnOutcome>,
        codex_version: CodexVersion,
        resumed: bool,
    ) -> Result<Verified> {
        let backend = self.backend;
        match self.end.clone() {
            None => Err(self.no_terminal(outcome)),
            Some(End::Failed(message, FailureKind::Auth)) => Err(Error::AuthRejected {
                backend: Some(backend),
                thread_id: self.thread_id,
                turn_id: self.turn_id,
                message,
            }),
            Some(End::Failed(message, _)) => Err(Error::TurnFailed {
                backend,
                thread_id: self.thread_id,
                turn_id: self.turn_id,
                message,
            }),
            Some(End::Interrupted) => Err(Error::Cancelled {
                thread_id: self.thread_id,
            }),
            Some(End::Completed(usage)) => {
                let Some(thread_id) = self.thread_id.clone() else {
                    return Err(self.unverified(UnverifiedReason::NoThread));
                };
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        return Err(self.unverified(UnverifiedReason::OutcomeDisagrees {
                            detail: format!(
                                "the events show a completed turn, the backend reported: {}",
                                codex_core::ErrorChain(&e)
                            ),
                        }));
                    }
                };
                if outcome.backend != backend {
                    return Err(self.unverified(UnverifiedReason::ForeignBackend {
                        expected: backend,
                        got: outcome.backend,
                    }));
                }
                if outcome.thread_id != thread_id {
                    return Err(self.unverified(UnverifiedReason::OutcomeDisagrees {
                        detail: format!(
                            "the events are of thread {thread_id}, the outcome of thread {}",
                            outcome.thread_id
                        ),
                    }));
                }
                if let (Some(ours), Some(theirs)) = (&self.turn_id, &outcome.turn_id)
                    && ours != theirs
                {
                    return Err(self.unverified(UnverifiedReason::OutcomeDisagrees {
                        detail: format!(
                            "the events are of turn {ours}, the outcome of turn {theirs}"
                        ),
                    }));
                }
                if self.ignored_items > 0 {
                    tracing::debug!(
                        ignored = self.ignored_items,
                        "items from before our turn were left out of the outcome"
                    );
                }
                let final_message = self.items.iter().rev().find_map(|i| match &i.details {
                    ItemDetails::AgentMessage { text } => Some(text.clone()),
                    _ => None,
                });
                if final_message != outcome.final_message {
                    tracing::debug!(
                        "the backend's final message differs from our turn's; using our turn's"
                    );
                }
                Ok(Verified {
                    backend,
                    codex_version,
                    thread_id,
                    turn_id: self.turn_id,
                    touched_files: touched(&self.items),
                    items: self.items,
                    final_message,
                    usage: usage.or(outcome.usage),
                    resumed,
                    job_id: None,
                })
            }
        }
    }

    /// Why a stream that ended without our terminal event proves nothing.
    fn no_terminal(self, outcome: codex_core::Result<TurnOutcome>) -> Error {
        let backend = self.backend;
        let err = match outcome {
            Ok(_) => return self.unverified(UnverifiedReason::NoTerminalEvent),
            Err(e) => e,
        };
        let thread_id = self.thread_id.clone();
        match err {
            codex_core::Error::Timeout {
                after,
                thread_id: t,
            } => Error::Timeout {
                after,
                thread_id: t.or(thread_id),
            },
            codex_core::Error::Cancelled { thread_id: t } => Error::Cancelled {
                thread_id: t.or(thread_id),
            },
            codex_core::Error::TurnFailed {
                thread_id: t,
                turn_id,
                message,
            } if self.turn_started => Error::TurnFailed {
                backend,
                thread_id: t.or(thread_id),
                turn_id: turn_id.or(self.turn_id),
                message,
            },
            codex_core::Error::AuthRejected {
                thread_id: t,
                turn_id,
                message,
            } => Error::AuthRejected {
                backend: Some(backend),
                thread_id: t.or(thread_id),
                turn_id: turn_id.or(self.turn_id),
                message,
            },
            codex_core::Error::NotLoggedIn => Error::NotLoggedIn,
            other if self.turn_started => Error::TurnIncomplete {
                backend,
                thread_id,
                turn_id: self.turn_id,
                source: Some(Box::new(other)),
            },
            other => match Error::before_turn(Some(backend), other) {
                // a turn failure reported without a turn start is still no proof of a run
                Error::TurnFailed { message, .. } => Error::ConnectionLost {
                    backend,
                    source: Some(Box::new(codex_core::Error::TurnFailed {
                        thread_id,
                        turn_id: None,
                        message,
                    })),
                },
                mapped => mapped,
            },
        }
    }
}

/// A hook told of every event as the witness reads it (job progress, logging).
pub(crate) trait EventHook: Send {
    /// Called for each event before it is folded.
    fn event(&mut self, event: &Event) -> impl std::future::Future<Output = ()> + Send;
}

/// A hook that does nothing.
#[cfg(test)]
pub(crate) struct NoHook;

#[cfg(test)]
impl EventHook for NoHook {
    async fn event(&mut self, _event: &Event) {}
}

/// How long we wait for a backend's outcome once its event stream has ended.
const OUTCOME_GRACE: Duration = Duration::from_secs(30);

/// Reads `run` to its end through `witness`, honouring `cancel` and `deadline`, and concludes.
pub(crate) async fn observe_run(
    mut run: Run,
    mut witness: Witness,
    deadline: Option<(Instant, Duration)>,
    cancel: &CancellationToken,
    hook: &mut impl EventHook,
    codex_version: CodexVersion,
) -> Result<Verified> {
    if run.backend() != witness.backend {
        run.cancel();
        let got = run.backend();
        return Err(witness.unverified(UnverifiedReason::ForeignBackend {
            expected: witness.backend,
            got,
        }));
    }
    let resumed = witness.expected_thread.is_some();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                run.cancel();
                return Err(Error::Cancelled { thread_id: witness.thread_id().cloned() });
            }
            () = codex_core::util::sleep_until(deadline.map(|(at, _)| at)) => {
                run.cancel();
                let after = deadline.map(|(_, d)| d).unwrap_or_default();
                return Err(Error::Timeout { after, thread_id: witness.thread_id().cloned() });
            }
            event = run.next_event() => {
                let Some(event) = event else { break };
                hook.event(&event).await;
                match witness.observe(&event) {
                    Ok(Step::Continue) => {}
                    // our turn is over: what follows is not part of it; the outcome closes
                    // the stream and must come promptly
                    Ok(Step::Ended) => break,
                    Err(e) => {
                        run.cancel();
                        return Err(e);
                    }
                }
            }
        }
    }
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => {
            run.cancel();
            return Err(Error::Cancelled { thread_id: witness.thread_id().cloned() });
        }
        outcome = tokio::time::timeout(OUTCOME_GRACE, run.outcome()) => match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err(codex_core::Error::backend(
                witness.backend,
                "the backend did not report an outcome after its events ended",
            )),
        },
    };
    witness.conclude(outcome, codex_version, resumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeBackend, Script, agent_message, completed, started, thread, turn};
    use codex_core::Backend;

    fn version() -> CodexVersion {
        CodexVersion::new(0, 169, 0)
    }

    async fn witness(backend: &FakeBackend, resume: Option<ThreadId>) -> Result<Verified> {
        let spec = codex_core::TaskSpec::new("x");
        let run = match &resume {
            Some(t) => backend.resume(t, spec).await,
            None => backend.start(spec).await,
        }
        .map_err(|e| Error::before_turn(Some(backend.kind()), e))?;
        let witness = Witness::new(backend.kind(), resume);
        observe_run(
            run,
            witness,
            None,
            &CancellationToken::new(),
            &mut NoHook,
            version(),
        )
        .await
    }

    #[tokio::test]
    async fn completed_turn_is_verified() {
        let fake = FakeBackend::new(BackendKind::AppServer).script(Script::events(vec![
            thread("t-1"),
            turn(Some("u-1")),
            started(agent_message("m0", "working")),
            completed(agent_message("m0", "done")),
            Event::TurnCompleted {
                turn_id: Some("u-1".into()),
                usage: Some(Usage::new(10, 0, 5, 0)),
            },
        ]));
        let v = witness(&fake, None).await.unwrap();
        assert_eq!(v.backend(), BackendKind::AppServer);
        assert_eq!(v.thread_id().as_str(), "t-1");
        assert_eq!(v.turn_id().map(TurnId::as_str), Some("u-1"));
        assert_eq!(v.final_message(), Some("done"));
        assert_eq!(v.usage().map(|u| u.output_tokens), Some(5));
        assert_eq!(v.codex_version(), &version());
        assert!(!v.resumed());
    }

    #[tokio::test]
    async fn exec_turn_without_ids_is_verified() {
        let fake = FakeBackend::new(BackendKind::Exec).script(Script::events(vec![
            thread("t-9"),
            turn(None),
            completed(agent_message("m", "ok")),
            Event::TurnCompleted {
                turn_id: None,
                usage: None,
            },
        ]));
        let v = witness(&fake, None).await.unwrap();
        assert_eq!(v.turn_id(), None);
        assert_eq!(v.final_message(), Some("ok"));
    }

    #[tokio::test]
    async fn failed_turn_is_an_error_without_result() {
        let fake = FakeBackend::new(BackendKind::AppServer).script(Script::events(vec![
            thread("t-1"),
            turn(Some("u-1")),
            completed(agent_message("m", "partial answer")),
            Event::TurnFailed {
                turn_id: Some("u-1".into()),
                message: "model overloaded".into(),
                kind: FailureKind::Other,
            },
        ]));
        match witness(&fake, None).await {
            Err(Error::TurnFailed {
                message, thread_id, ..
            }) => {
                assert_eq!(message, "model overloaded");
                assert_eq!(thread_id.map(|t| t.0), Some("t-1".to_owned()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_turn_failed_for_credentials_is_auth_rejected_with_codex_text() {
        let fake = FakeBackend::new(BackendKind::Exec).script(Script::events(vec![
            thread("t-1"),
            turn(None),
            Event::TurnFailed {
                turn_id: None,
                message: "Missing environment variable: `KEY`.".into(),
                kind: FailureKind::Auth,
            },
        ]));
        match witness(&fake, None).await {
            Err(err @ Error::AuthRejected { .. }) => {
                let Error::AuthRejected {
                    backend,
                    thread_id,
                    message,
                    ..
                } = &err
                else {
                    unreachable!()
                };
                assert_eq!(*backend, Some(BackendKind::Exec));
                assert_eq!(message, "Missing environment variable: `KEY`.");
                assert_eq!(thread_id.as_ref().map(|t| t.as_str()), Some("t-1"));
                assert!(err.to_string().contains("`KEY`"), "{err}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn stream_without_terminal_event_is_an_error() {
        // the process died mid-turn
        let fake = FakeBackend::new(BackendKind::Exec).script(Script::events(vec![
            thread("t-1"),
            turn(None),
            completed(agent_message("m", "I did it")),
        ]));
        match witness(&fake, None).await {
            Err(Error::TurnIncomplete { thread_id, .. }) => {
                assert_eq!(thread_id.map(|t| t.0).as_deref(), Some("t-1"));
            }
            other => panic!("{other:?}"),
        }
        // nothing at all: the connection was lost before the turn started
        let fake = FakeBackend::new(BackendKind::AppServer).script(Script::events(vec![]));
        assert!(matches!(
            witness(&fake, None).await,
            Err(Error::ConnectionLost { .. })
        ));
    }

    #[tokio::test]
    async fn backend_success_without_terminal_event_is_not_trusted() {
        // a backend outcome claiming success cannot stand in for the terminal event
        let (mut sink, run) = Run::channel(BackendKind::Exec, 8);
        for e in [
            thread("t-1"),
            turn(None),
            Event::TurnCompleted {
                turn_id: None,
                usage: None,
            },
        ] {
            sink.emit(e).await;
        }
        sink.finish(|| codex_core::Error::Cancelled { thread_id: None });
        let claimed = run.wait().await;
        assert!(claimed.is_ok());
        let mut w = Witness::new(BackendKind::Exec, None);
        w.observe(&thread("t-1")).unwrap();
        w.observe(&turn(None)).unwrap();
        w.observe(&completed(agent_message("m", "I did it")))
            .unwrap();
        match w.conclude(claimed, version(), false) {
            Err(Error::Unverified {
                reason: UnverifiedReason::NoTerminalEvent,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn terminal_event_of_another_turn_is_an_error() {
        let fake = FakeBackend::new(BackendKind::AppServer).script(Script::events(vec![
            thread("t-1"),
            turn(Some("u-1")),
            completed(agent_message("m", "not ours")),
            Event::TurnCompleted {
                turn_id: Some("u-0".into()),
                usage: None,
            },
        ]));
        match witness(&fake, None).await {
            Err(Error::Unverified {
                reason: UnverifiedReason::ForeignTurn { expected, got },
                ..
            }) => {
                assert_eq!(expected.map(|t| t.0).as_deref(), Some("u-1"));
                assert_eq!(got.map(|t| t.0).as_deref(), Some("u-0"));
            }
            other => panic!("{other:?}"),
        }
        // an app-server terminal event without a turn id does not prove our turn either
        let fake = FakeBackend::new(BackendKind::Broker).script(Script::events(vec![
            thread("t-1"),
            turn(Some("u-1")),
            Event::TurnCompleted {
                turn_id: None,
                usage: None,
            },
        ]));
        assert!(matches!(
            witness(&fake, None).await,
            Err(Error::Unverified { .. })
        ));
        // nor does a turn start without an id
        let fake = FakeBackend::new(BackendKind::AppServer).script(Script::events(vec![
            thread("t-1"),
            turn(None),
            Event::TurnCompleted {
                turn_id: None,
                usage: None,
            },
        ]));
        assert!(matches!(
            witness(&fake, None).await,
            Err(Error::Unverified {
                reason: UnverifiedReason::MissingTurnId,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn earlier_turn_message_is_not_used() {
        let fake = FakeBackend::new(BackendKind::AppServer).script(Script::events(vec![
            thread("t-1"),
            // replayed history of the resumed thread
            completed(agent_message("old", "answer of an earlier turn")),
            turn(Some("u-2")),
            Event::TurnCompleted {
                turn_id: Some("u-2".into()),
                usage: None,
            },
        ]));
        let v = witness(&fake, Some("t-1".into())).await.unwrap();
        assert_eq!(v.final_message(), None);
        assert!(v.items().is_empty());
        assert!(v.resumed());
    }

    #[tokio::test]
    async fn text_without_a_thread_is_an_error() {
        let fake = FakeBackend::new(BackendKind::Exec).script(Script::events(vec![
            turn(None),
            completed(agent_message("m", "Codex executed it")),
            Event::TurnCompleted {
                turn_id: None,
                usage: None,
            },
        ]));
        match witness(&fake, None).await {
            Err(Error::Unverified {
                reason: UnverifiedReason::NoThread,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // and a terminal event before any turn started
        let fake = FakeBackend::new(BackendKind::Exec).script(Script::events(vec![
            thread("t"),
            completed(agent_message("m", "Codex executed it")),
            Event::TurnCompleted {
                turn_id: None,
                usage: None,
            },
        ]));
        assert!(matches!(
            witness(&fake, None).await,
            Err(Error::Unverified {
                reason: UnverifiedReason::TerminalBeforeTurnStarted,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn resumed_thread_must_be_ours() {
        let fake = FakeBackend::new(BackendKind::AppServer).script(Script::events(vec![
            thread("t-other"),
            turn(Some("u")),
            Event::TurnCompleted {
                turn_id: Some("u".into()),
                usage: None,
            },
        ]));
        assert!(matches!(
            witness(&fake, Some("t-1".into())).await,
            Err(Error::Unverified {
                reason: UnverifiedReason::ForeignThread { .. },
                ..
            })
        ));
    }

    #[tokio::test]
    async fn outcome_must_agree() {
        let fake = FakeBackend::new(BackendKind::AppServer).script(
            Script::events(vec![
                thread("t-1"),
                turn(Some("u-1")),
                Event::TurnCompleted {
                    turn_id: Some("u-1".into()),
                    usage: None,
                },
            ])
            .outcome_error("exit code 1"),
        );
        assert!(matches!(
            witness(&fake, None).await,
            Err(Error::Unverified {
                reason: UnverifiedReason::OutcomeDisagrees { .. },
                ..
            })
        ));
        let fake = FakeBackend::new(BackendKind::AppServer).script(
            Script::events(vec![thread("t-1"), turn(Some("u-1"))]).run_kind(BackendKind::Exec),
        );
        assert!(matches!(
            witness(&fake, None).await,
            Err(Error::Unverified {
                reason: UnverifiedReason::ForeignBackend { .. },
                ..
            })
        ));
    }

    #[tokio::test]
    async fn timeout_and_cancel_are_typed() {
        let fake = FakeBackend::new(BackendKind::Exec)
            .script(Script::events(vec![thread("t-1"), turn(None)]).hang())
            .script(Script::events(vec![thread("t-2"), turn(None)]).hang());
        let spec = codex_core::TaskSpec::new("x");
        let run = fake.start(spec.clone()).await.unwrap();
        let d = Duration::from_millis(50);
        let err = observe_run(
            run,
            Witness::new(BackendKind::Exec, None),
            Some((Instant::now() + d, d)),
            &CancellationToken::new(),
            &mut NoHook,
            version(),
        )
        .await
        .unwrap_err();
        match err {
            Error::Timeout { after, thread_id } => {
                assert_eq!(after, d);
                assert_eq!(thread_id.map(|t| t.0).as_deref(), Some("t-1"));
            }
            other => panic!("{other:?}"),
        }
        let run = fake.start(spec).await.unwrap();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.cancel();
        });
        let err = observe_run(
            run,
            Witness::new(BackendKind::Exec, None),
            None,
            &cancel,
            &mut NoHook,
            version(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
    }
}
