//! Prompt shaping: a [`PromptPlan`] of tagged blocks, picked per [`Intent`] by a [`Recipe`].
//!
//! Everything here is pure and deterministic: the same inputs always render the same text.
//!
//! ## Rendered format
//!
//! A plan is a set of blocks, each of one [`BlockKind`]. [`PromptPlan::render`] writes them in
//! the fixed order of [`BlockKind`] (task, context, then the contracts, the output contract
//! last), each as an XML-ish section:
//!
//! ```text
//! <task>
//! Fix the failing test in src/parse.rs.
//! </task>
//!
//! <branch>
//! The work is on branch `fix/parse`.
//! </branch>
//!
//! <follow_through>
//! ...
//! </follow_through>
//! ```
//!
//! Sections are separated by one blank line; block texts are trimmed; the tag of each kind is
//! [`BlockKind::tag`]. Two exceptions:
//!
//! - a *raw-task* plan ([`Intent::Free`], and every resume plan) writes the task text bare,
//!   without its tags, followed by any other blocks as usual;
//! - a plan whose whole text was replaced ([`PromptPlan::replace_text`]) renders exactly that
//!   text.
//!
//! ```
//! use codex_agent::prompt::{BlockKind, Context, Intent, Recipe};
//! let mut plan = Recipe::new(Intent::Fix).write(true).plan("make `cargo test` pass", &Context::default());
//! assert!(plan.render().starts_with("<task>\nmake `cargo test` pass\n</task>"));
//! plan.remove_block(BlockKind::ResearchMode);
//! plan.set_block(BlockKind::OutputContract, "Reply with one line.");
//! assert!(plan.render().ends_with("<output_contract>\nReply with one line.\n</output_contract>"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the delegated task is for; picks the blocks of the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Intent {
    /// Find the root cause of a problem: root cause, evidence, smallest next step.
    Diagnose,
    /// Make a narrow fix: summary, touched files, verification, risks.
    #[default]
    Fix,
    /// Review a change down to the root causes of its problems.
    Review,
    /// Research a question and recommend an option.
    Research,
    /// Send the task nearly raw: the task text and any context, no contracts.
    Free,
}

impl Intent {
    /// Every intent, in declaration order.
    ///
    /// ```
    /// assert_eq!(codex_agent::prompt::Intent::ALL.len(), 5);
    /// ```
    pub const ALL: [Intent; 5] = [
        Intent::Diagnose,
        Intent::Fix,
        Intent::Review,
        Intent::Research,
        Intent::Free,
    ];

    /// The kebab-case name (`diagnose`, `fix`, `review`, `research`, `free`).
    ///
    /// ```
    /// assert_eq!(codex_agent::prompt::Intent::Research.as_str(), "research");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Diagnose => "diagnose",
            Intent::Fix => "fix",
            Intent::Review => "review",
            Intent::Research => "research",
            Intent::Free => "free",
        }
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Intent {
    type Err = String;

    /// Parses a kebab-case name.
    ///
    /// ```
    /// use codex_agent::prompt::Intent;
    /// assert_eq!("review".parse::<Intent>(), Ok(Intent::Review));
    /// assert!("nope".parse::<Intent>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, String> {
        Intent::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown intent {s:?}; expected one of: diagnose, fix, review, research, free"
                )
            })
    }
}

/// The shape of the answer asked for in the output contract.
///
/// ```
/// use codex_agent::prompt::{BlockKind, Context, Intent, OutputStyle, Recipe};
/// let p = Recipe::new(Intent::Review).style(OutputStyle::Structured).plan("x", &Context::default());
/// assert!(p.block(BlockKind::OutputContract).unwrap().contains("## Verdict"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OutputStyle {
    /// Headed sections, one per part of the answer (the default).
    #[default]
    Structured,
    /// A few plain lines, outcome first.
    Compact,
}

/// The kinds of prompt blocks. The declaration order is the rendering order.
///
/// ```
/// use codex_agent::prompt::BlockKind;
/// assert!(BlockKind::Task < BlockKind::OutputContract);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlockKind {
    /// The task itself.
    Task,
    /// Context: the branch the work is on.
    Branch,
    /// Context: files relevant to the task.
    Files,
    /// Context: a failing command and its output.
    FailingCommand,
    /// Research mode: investigate and compare before recommending.
    ResearchMode,
    /// Follow-through default: act without asking when the next step is clear.
    FollowThrough,
    /// Missing-context gating: ask rather than guess.
    MissingContext,
    /// Action safety: touch only what the task needs.
    ActionSafety,
    /// Grounding and citation rules (`path:line`).
    Grounding,
    /// Completeness contract.
    Completeness,
    /// Verification loop.
    VerificationLoop,
    /// The output contract: the shape of the answer.
    OutputContract,
}

impl BlockKind {
    /// Every kind, in rendering order.
    pub const ALL: [BlockKind; 12] = [
        BlockKind::Task,
        BlockKind::Branch,
        BlockKind::Files,
        BlockKind::FailingCommand,
        BlockKind::ResearchMode,
        BlockKind::FollowThrough,
        BlockKind::MissingContext,
        BlockKind::ActionSafety,
        BlockKind::Grounding,
        BlockKind::Completeness,
        BlockKind::VerificationLoop,
        BlockKind::OutputContract,
    ];

    /// The tag the block is rendered in (`task`, `failing_command`, `output_contract`...).
    ///
    /// ```
    /// assert_eq!(codex_agent::prompt::BlockKind::VerificationLoop.tag(), "verification_loop");
    /// ```
    pub fn tag(self) -> &'static str {
        match self {
            BlockKind::Task => "task",
            BlockKind::Branch => "branch",
            BlockKind::Files => "files",
            BlockKind::FailingCommand => "failing_command",
            BlockKind::ResearchMode => "research_mode",
            BlockKind::FollowThrough => "follow_through",
            BlockKind::MissingContext => "missing_context",
            BlockKind::ActionSafety => "action_safety",
            BlockKind::Grounding => "grounding",
            BlockKind::Completeness => "completeness",
            BlockKind::VerificationLoop => "verification_loop",
            BlockKind::OutputContract => "output_contract",
        }
    }

    /// Whether this is a context block (branch, files, failing command).
    ///
    /// ```
    /// use codex_agent::prompt::BlockKind;
    /// assert!(BlockKind::Files.is_context() && !BlockKind::Grounding.is_context());
    /// ```
    pub fn is_context(self) -> bool {
        matches!(
            self,
            BlockKind::Branch | BlockKind::Files | BlockKind::FailingCommand
        )
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// How many trailing lines of a failing command's output go into the prompt.
pub const FAILING_OUTPUT_MAX_LINES: usize = 120;
/// How many trailing bytes (at most) of a failing command's output go into the prompt.
pub const FAILING_OUTPUT_MAX_BYTES: usize = 12 * 1024;

/// A command that fails, and what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailingCommand {
    /// The command line.
    pub command: String,
    /// Its output (stdout and stderr). Only the tail goes into the prompt.
    pub output: String,
}

impl FailingCommand {
    /// A failing command and its output.
    ///
    /// ```
    /// let f = codex_agent::prompt::FailingCommand::new("cargo test", "test a ... FAILED");
    /// assert_eq!(f.command, "cargo test");
    /// ```
    pub fn new(command: impl Into<String>, output: impl Into<String>) -> Self {
        FailingCommand {
            command: command.into(),
            output: output.into(),
        }
    }
}

/// Optional context for the prompt: relevant files, the branch, a failing command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Context {
    /// Files relevant to the task (Codex reads them itself).
    pub files: Vec<PathBuf>,
    /// The branch the work is on.
    pub branch: Option<String>,
    /// A command that fails, with its output.
    pub failing_command: Option<FailingCommand>,
}

impl Context {
    /// Adds a relevant file.
    ///
    /// ```
    /// let ctx = codex_agent::prompt::Context::default().file("src/lib.rs").branch("main");
    /// assert_eq!(ctx.files.len(), 1);
    /// ```
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }

    /// Sets the branch.
    ///
    /// ```
    /// let ctx = codex_agent::prompt::Context::default().branch("feat/x");
    /// assert_eq!(ctx.branch.as_deref(), Some("feat/x"));
    /// ```
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = Some(branch.into());
        self
    }

    /// Sets the failing command and its output.
    ///
    /// ```
    /// let ctx = codex_agent::prompt::Context::default().failing_command("make", "error: x");
    /// assert!(ctx.failing_command.is_some());
    /// ```
    pub fn failing_command(
        mut self,
        command: impl Into<String>,
        output: impl Into<String>,
    ) -> Self {
        self.failing_command = Some(FailingCommand::new(command, output));
        self
    }

    /// Whether no context was given.
    ///
    /// ```
    /// assert!(codex_agent::prompt::Context::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.branch.is_none() && self.failing_command.is_none()
    }

    /// The context blocks this context renders to.
    fn blocks(&self) -> Vec<(BlockKind, String)> {
        let mut out = Vec::new();
        if let Some(branch) = self
            .branch
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            out.push((
                BlockKind::Branch,
                format!("The work is on branch `{branch}`."),
            ));
        }
        if !self.files.is_empty() {
            let mut text = String::from(
                "Files relevant to the task (relative paths are relative to the workspace root); read them before acting:",
            );
            for file in &self.files {
                text.push_str("\n- ");
                text.push_str(&file.display().to_string());
            }
            out.push((BlockKind::Files, text));
        }
        if let Some(failing) = &self.failing_command {
            out.push((BlockKind::FailingCommand, render_failing(failing)));
        }
        out
    }
}

fn render_failing(failing: &FailingCommand) -> String {
    let (tail, cut) = output_tail(&failing.output);
    let what = if cut {
        format!("Its output (last {} lines):", tail.lines().count())
    } else {
        "Its output:".to_owned()
    };
    let fence = fence_for(&tail);
    format!(
        "This command fails:\n$ {}\n{what}\n{fence}\n{}\n{fence}",
        failing.command.trim(),
        tail.trim_end()
    )
}

/// The last lines of `output`, bounded in lines and bytes; and whether anything was cut.
fn output_tail(output: &str) -> (String, bool) {
    let lines: Vec<&str> = output.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut bytes = 0usize;
    for line in lines.iter().rev() {
        if kept.len() == FAILING_OUTPUT_MAX_LINES
            || bytes + line.len() + 1 > FAILING_OUTPUT_MAX_BYTES
        {
            break;
        }
        bytes += line.len() + 1;
        kept.push(line);
    }
    kept.reverse();
    let cut = kept.len() < lines.len();
    (kept.join("\n"), cut)
}

/// A code fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let mut longest = 0usize;
    let mut run = 0usize;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// A change a caller makes to a recipe's prompt.
///
/// ```
/// use codex_agent::prompt::{BlockKind, PromptOverride};
/// let req = codex_agent::DelegateRequest::new("x")
///     .prompt_override(PromptOverride::Replace(BlockKind::OutputContract, "One line.".into()));
/// assert!(req.prompt().ends_with("<output_contract>\nOne line.\n</output_contract>"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PromptOverride {
    /// Sets a block's text (adding the block if the recipe has none of that kind).
    Replace(BlockKind, String),
    /// Removes a block.
    Remove(BlockKind),
    /// Replaces the whole rendered text.
    Whole(String),
}

/// A prompt made of blocks, rendered deterministically (see the [module docs](self)).
///
/// ```
/// use codex_agent::prompt::{BlockKind, Context, Intent, PromptPlan, Recipe};
/// let plan = Recipe::new(Intent::Diagnose).plan("why does login fail?", &Context::default());
/// assert!(plan.block(BlockKind::OutputContract).unwrap().contains("Root cause"));
/// let resume = PromptPlan::resume("now add a test", &Context::default());
/// assert_eq!(resume.render(), "now add a test");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptPlan {
    intent: Intent,
    blocks: BTreeMap<BlockKind, String>,
    raw_task: bool,
    whole: Option<String>,
}

impl PromptPlan {
    /// A plan of only the task (rendered bare) and `context`: what is sent on resume, where
    /// the contracts of the first turn still hold and are not sent again.
    ///
    /// ```
    /// use codex_agent::prompt::{Context, PromptPlan};
    /// let plan = PromptPlan::resume("also update the docs", &Context::default().branch("x"));
    /// assert!(plan.render().starts_with("also update the docs\n\n<branch>"));
    /// ```
    pub fn resume(instruction: &str, context: &Context) -> Self {
        let mut plan = PromptPlan {
            intent: Intent::Free,
            blocks: BTreeMap::new(),
            raw_task: true,
            whole: None,
        };
        plan.blocks.insert(BlockKind::Task, instruction.to_owned());
        plan.blocks.extend(context.blocks());
        plan
    }

    /// The intent the plan was made for ([`Intent::Free`] for resume plans).
    ///
    /// ```
    /// use codex_agent::prompt::{Context, Intent, Recipe};
    /// assert_eq!(Recipe::new(Intent::Review).plan("x", &Context::default()).intent(), Intent::Review);
    /// ```
    pub fn intent(&self) -> Intent {
        self.intent
    }

    /// The blocks, in rendering order.
    ///
    /// ```
    /// use codex_agent::prompt::{BlockKind, Context, Intent, Recipe};
    /// let plan = Recipe::new(Intent::Free).plan("x", &Context::default());
    /// assert_eq!(plan.blocks().map(|(k, _)| k).collect::<Vec<_>>(), [BlockKind::Task]);
    /// ```
    pub fn blocks(&self) -> impl Iterator<Item = (BlockKind, &str)> {
        self.blocks.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The text of one block.
    ///
    /// ```
    /// use codex_agent::prompt::{BlockKind, Context, Intent, Recipe};
    /// let plan = Recipe::new(Intent::Fix).plan("x", &Context::default());
    /// assert_eq!(plan.block(BlockKind::Task), Some("x"));
    /// ```
    pub fn block(&self, kind: BlockKind) -> Option<&str> {
        self.blocks.get(&kind).map(String::as_str)
    }

    /// Sets the text of a block, adding it if absent.
    ///
    /// ```
    /// use codex_agent::prompt::{BlockKind, Context, Intent, Recipe};
    /// let mut plan = Recipe::new(Intent::Free).plan("x", &Context::default());
    /// plan.set_block(BlockKind::Grounding, "Cite path:line.");
    /// assert_eq!(plan.render(), "x\n\n<grounding>\nCite path:line.\n</grounding>");
    /// ```
    pub fn set_block(&mut self, kind: BlockKind, text: impl Into<String>) -> &mut Self {
        self.blocks.insert(kind, text.into());
        self
    }

    /// Removes a block; returns its text.
    ///
    /// ```
    /// use codex_agent::prompt::{BlockKind, Context, Intent, Recipe};
    /// let mut plan = Recipe::new(Intent::Fix).plan("x", &Context::default());
    /// assert!(plan.remove_block(BlockKind::OutputContract).is_some());
    /// assert!(plan.block(BlockKind::OutputContract).is_none());
    /// ```
    pub fn remove_block(&mut self, kind: BlockKind) -> Option<String> {
        self.blocks.remove(&kind)
    }

    /// Replaces the whole rendered text: [`PromptPlan::render`] returns `text` verbatim.
    ///
    /// ```
    /// use codex_agent::prompt::{Context, Intent, Recipe};
    /// let mut plan = Recipe::new(Intent::Fix).plan("x", &Context::default());
    /// plan.replace_text("exactly this");
    /// assert_eq!(plan.render(), "exactly this");
    /// ```
    pub fn replace_text(&mut self, text: impl Into<String>) -> &mut Self {
        self.whole = Some(text.into());
        self
    }

    /// Whether the whole text was replaced.
    ///
    /// ```
    /// use codex_agent::prompt::{Context, PromptPlan};
    /// assert!(!PromptPlan::resume("x", &Context::default()).is_replaced());
    /// ```
    pub fn is_replaced(&self) -> bool {
        self.whole.is_some()
    }

    /// Applies one override.
    ///
    /// ```
    /// use codex_agent::prompt::{BlockKind, Context, Intent, PromptOverride, Recipe};
    /// let mut plan = Recipe::new(Intent::Review).plan("x", &Context::default());
    /// plan.apply(&PromptOverride::Remove(BlockKind::Completeness));
    /// assert!(plan.block(BlockKind::Completeness).is_none());
    /// ```
    pub fn apply(&mut self, change: &PromptOverride) -> &mut Self {
        match change {
            PromptOverride::Replace(kind, text) => self.set_block(*kind, text.clone()),
            PromptOverride::Remove(kind) => {
                self.remove_block(*kind);
                self
            }
            PromptOverride::Whole(text) => self.replace_text(text.clone()),
        }
    }

    /// The prompt text, as Codex will receive it.
    ///
    /// ```
    /// use codex_agent::prompt::{Context, Intent, Recipe};
    /// let text = Recipe::new(Intent::Research).plan("which queue?", &Context::default()).render();
    /// assert!(text.contains("<research_mode>"));
    /// ```
    pub fn render(&self) -> String {
        if let Some(whole) = &self.whole {
            return whole.clone();
        }
        let mut sections: Vec<String> = Vec::with_capacity(self.blocks.len());
        for (kind, text) in &self.blocks {
            let text = text.trim();
            if *kind == BlockKind::Task && self.raw_task {
                sections.push(text.to_owned());
            } else {
                let tag = kind.tag();
                sections.push(format!("<{tag}>\n{text}\n</{tag}>"));
            }
        }
        sections.join("\n\n")
    }
}

/// Picks and writes the blocks of a [`PromptPlan`] for an [`Intent`].
///
/// | intent     | blocks besides the task and context                                                                  |
/// |------------|------------------------------------------------------------------------------------------------------|
/// | `diagnose` | follow-through, missing context, action safety, grounding, completeness, verification, output       |
/// | `fix`      | follow-through, missing context, action safety, grounding, completeness, verification, output       |
/// | `review`   | missing context, action safety, grounding, completeness, output                                      |
/// | `research` | research mode, follow-through, missing context, action safety, grounding, output                     |
/// | `free`     | none (the task is sent bare)                                                                          |
///
/// ```
/// use codex_agent::prompt::{Context, Intent, OutputStyle, Recipe};
/// let plan = Recipe::new(Intent::Fix).write(true).style(OutputStyle::Compact)
///     .plan("fix the overflow in src/num.rs", &Context::default().branch("main"));
/// assert!(plan.render().contains("<branch>"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recipe {
    intent: Intent,
    write: bool,
    style: OutputStyle,
}

impl Recipe {
    /// The recipe of `intent`, read-only, structured output.
    ///
    /// ```
    /// let r = codex_agent::prompt::Recipe::new(codex_agent::prompt::Intent::Review);
    /// # let _ = r;
    /// ```
    pub fn new(intent: Intent) -> Self {
        Recipe {
            intent,
            write: false,
            style: OutputStyle::Structured,
        }
    }

    /// Whether Codex may change files (changes the action-safety block).
    ///
    /// ```
    /// use codex_agent::prompt::{BlockKind, Context, Intent, Recipe};
    /// let ro = Recipe::new(Intent::Fix).plan("x", &Context::default());
    /// assert!(ro.block(BlockKind::ActionSafety).unwrap().contains("read-only"));
    /// ```
    pub fn write(mut self, write: bool) -> Self {
        self.write = write;
        self
    }

    /// The shape of the answer.
    ///
    /// ```
    /// use codex_agent::prompt::{BlockKind, Context, Intent, OutputStyle, Recipe};
    /// let p = Recipe::new(Intent::Fix).style(OutputStyle::Compact).plan("x", &Context::default());
    /// assert!(p.block(BlockKind::OutputContract).unwrap().contains("at most"));
    /// ```
    pub fn style(mut self, style: OutputStyle) -> Self {
        self.style = style;
        self
    }

    /// Builds the plan for `task` with `context`.
    ///
    /// ```
    /// use codex_agent::prompt::{Context, Intent, Recipe};
    /// let plan = Recipe::new(Intent::Free).plan("  just this  ", &Context::default());
    /// assert_eq!(plan.render(), "just this");
    /// ```
    pub fn plan(&self, task: &str, context: &Context) -> PromptPlan {
        let mut blocks: BTreeMap<BlockKind, String> = BTreeMap::new();
        blocks.insert(BlockKind::Task, task.to_owned());
        blocks.extend(context.blocks());
        for kind in self.contract_blocks() {
            if let Some(text) = self.text(*kind) {
                blocks.insert(*kind, text);
            }
        }
        PromptPlan {
            intent: self.intent,
            blocks,
            raw_task: self.intent == Intent::Free,
            whole: None,
        }
    }

    fn contract_blocks(&self) -> &'static [BlockKind] {
        use BlockKind::*;
        match self.intent {
            Intent::Diagnose | Intent::Fix => &[
                FollowThrough,
                MissingContext,
                ActionSafety,
                Grounding,
                Completeness,
                VerificationLoop,
                OutputContract,
            ],
            Intent::Review => &[
                MissingContext,
                ActionSafety,
                Grounding,
                Completeness,
                OutputContract,
            ],
            Intent::Research => &[
                ResearchMode,
                FollowThrough,
                MissingContext,
                ActionSafety,
                Grounding,
                OutputContract,
            ],
            Intent::Free => &[],
        }
    }

    /// The recipe's text for a contract block.
    fn text(&self, kind: BlockKind) -> Option<String> {
        let text = match kind {
            BlockKind::FollowThrough => texts::FOLLOW_THROUGH,
            BlockKind::MissingContext => texts::MISSING_CONTEXT,
            BlockKind::ActionSafety if self.write => texts::ACTION_SAFETY_WRITE,
            BlockKind::ActionSafety => texts::ACTION_SAFETY_READ_ONLY,
            BlockKind::Grounding => texts::GROUNDING,
            BlockKind::ResearchMode => texts::RESEARCH_MODE,
            BlockKind::Completeness => match self.intent {
                Intent::Review => texts::COMPLETENESS_REVIEW,
                Intent::Diagnose => texts::COMPLETENESS_DIAGNOSE,
                _ => texts::COMPLETENESS,
            },
            BlockKind::VerificationLoop => match self.intent {
                Intent::Diagnose => texts::VERIFY_DIAGNOSE,
                _ => texts::VERIFY,
            },
            BlockKind::OutputContract => return self.output_contract(),
            _ => return None,
        };
        Some(text.to_owned())
    }

    fn output_contract(&self) -> Option<String> {
        let text = match (self.style, self.intent) {
            (_, Intent::Free) => return None,
            (OutputStyle::Structured, Intent::Diagnose) => texts::OUTPUT_DIAGNOSE,
            (OutputStyle::Structured, Intent::Fix) => texts::OUTPUT_FIX,
            (OutputStyle::Structured, Intent::Review) => texts::OUTPUT_REVIEW,
            (OutputStyle::Structured, Intent::Research) => texts::OUTPUT_RESEARCH,
            (OutputStyle::Compact, Intent::Diagnose) => texts::COMPACT_DIAGNOSE,
            (OutputStyle::Compact, Intent::Fix) => texts::COMPACT_FIX,
            (OutputStyle::Compact, Intent::Review) => texts::COMPACT_REVIEW,
            (OutputStyle::Compact, Intent::Research) => texts::COMPACT_RESEARCH,
        };
        Some(text.to_owned())
    }
}

/// The block texts. Short, imperative, addressed to the coding agent.
mod texts {
    pub(super) const FOLLOW_THROUGH: &str = "When the next step is clear and within the task, take it without asking. \
Do not stop to ask for confirmation or to offer options on routine choices: pick the sensible default, act, and state the choice in your answer.";

    pub(super) const MISSING_CONTEXT: &str = "If something you need is missing and you cannot find it in the workspace or by running read-only commands, stop and ask one specific question instead of guessing. \
Never invent file names, APIs, versions, or command output.";

    pub(super) const ACTION_SAFETY_WRITE: &str = "Change only what the task needs: no unrelated refactors, renames, reformatting, or dependency changes. \
Write only inside the workspace. \
Do not run destructive commands (deleting data, resetting or rewriting git history, force-pushing), and do not commit, push, or publish unless the task says so.";

    pub(super) const ACTION_SAFETY_READ_ONLY: &str = "This task is read-only: do not create, modify, or delete files, and do not run commands that change state (installs, commits, migrations, network writes). \
Read files and run read-only commands only.";

    pub(super) const GROUNDING: &str = "Base every claim about the code on what you read or ran in this session. \
Cite code as path:line (for example src/lib.rs:42), relative to the workspace root. \
Quote command output exactly. \
Label anything you infer but did not check as an assumption.";

    pub(super) const RESEARCH_MODE: &str = "Investigate before you recommend: read the relevant code, configuration, and documentation in the workspace. \
Where there is a choice, compare at least two options on correctness, risk, and effort. \
Keep facts you checked apart from judgement.";

    pub(super) const COMPLETENESS: &str = "Finish the whole task before you answer. \
Leave no placeholders, TODOs, or half-applied edits. \
If a part cannot be done, say which part, why, and what would unblock it.";

    pub(super) const COMPLETENESS_DIAGNOSE: &str = "Follow the problem to its root cause, not its first symptom. \
If several causes contribute, name each one. \
If you cannot reach the root cause, say how far you got and what blocked you.";

    pub(super) const COMPLETENESS_REVIEW: &str = "Review the whole change, not a sample. \
For each problem, trace it to its root cause rather than stopping at the symptom. \
Report every problem you find, not just the first.";

    pub(super) const VERIFY: &str = "Check your work before you answer: run the narrowest command that proves it (the failing test, the build, a linter, a reproduction). \
If it fails, fix the cause and run it again. \
Report each command you ran and its result; never claim a check passed unless you ran it.";

    pub(super) const VERIFY_DIAGNOSE: &str = "Confirm the cause before you report it: reproduce the failure, or run a command whose output shows the cause. \
Report each command you ran and its result. \
If you cannot reproduce the problem, say so and say what you tried.";

    pub(super) const OUTPUT_DIAGNOSE: &str = "Answer with these sections, in this order:
## Root cause
One or two sentences naming the defect and where it is (path:line).
## Evidence
The code and command output that prove it.
## Smallest next step
The single smallest change or check that would fix or confirm it.";

    pub(super) const OUTPUT_FIX: &str = "Answer with these sections, in this order:
## Summary
What was wrong and what you changed, in two or three sentences.
## Touched files
One line per file: its path and what changed in it.
## Verification
Each command you ran and its result.
## Risks
What could break, and anything left undone.";

    pub(super) const OUTPUT_REVIEW: &str = "Answer with these sections, in this order:
## Findings
One entry per problem, most severe first: severity (high, medium, low), path:line, what is wrong, and its root cause. Write \"No findings.\" if there are none.
## Root causes
Causes shared by several findings.
## Verdict
Whether the change is safe as it is, and what must change first if not.";

    pub(super) const OUTPUT_RESEARCH: &str = "Answer with these sections, in this order:
## Recommendation
The option you recommend, in one or two sentences.
## Options considered
Each option and its trade-offs.
## Evidence
What you read or ran to support this (path:line, commands).
## Open questions
What would change the recommendation.";

    pub(super) const COMPACT_DIAGNOSE: &str = "Answer in at most 8 plain lines, without headings: the root cause with its path:line first, then the evidence, then the smallest next step.";

    pub(super) const COMPACT_FIX: &str = "Answer in at most 8 plain lines, without headings: what you changed first, then the touched files, then how you verified it, then any risk.";

    pub(super) const COMPACT_REVIEW: &str = "Answer in at most 12 plain lines, without headings: one line per finding, most severe first (severity, path:line, problem, root cause), then a one-line verdict.";

    pub(super) const COMPACT_RESEARCH: &str = "Answer in at most 8 plain lines, without headings: the recommendation first, then the main trade-off, then the evidence, then open questions.";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_context() -> Context {
        Context::default()
            .branch("fix/parser-overflow")
            .file("src/parse.rs")
            .file("tests/parse.rs")
            .failing_command(
                "cargo test -p parser",
                "running 2 tests\ntest parse_small ... ok\ntest parse_big ... FAILED\n\nthread 'parse_big' panicked at src/parse.rs:88:17:\nattempt to add with overflow\n",
            )
    }

    #[test]
    fn every_recipe_is_pinned() {
        for intent in Intent::ALL {
            for write in [false, true] {
                let plan = Recipe::new(intent)
                    .write(write)
                    .plan("Make `cargo test -p parser` pass.", &Context::default());
                let name = format!("recipe_{}_{}", intent, if write { "write" } else { "read" });
                insta::assert_snapshot!(name, plan.render());
            }
            let compact = Recipe::new(intent)
                .write(true)
                .style(OutputStyle::Compact)
                .plan("Make `cargo test -p parser` pass.", &Context::default());
            insta::assert_snapshot!(format!("recipe_{intent}_compact"), compact.render());
        }
    }

    #[test]
    fn context_blocks_are_pinned() {
        let plan = Recipe::new(Intent::Fix)
            .write(true)
            .plan("Fix the overflow in the parser.", &sample_context());
        insta::assert_snapshot!("recipe_fix_with_context", plan.render());
        let free = Recipe::new(Intent::Free).plan("Fix the overflow.", &sample_context());
        insta::assert_snapshot!("recipe_free_with_context", free.render());
    }

    #[test]
    fn resume_plan_is_pinned() {
        let plan = PromptPlan::resume("Now add a regression test.", &sample_context());
        insta::assert_snapshot!("resume_with_context", plan.render());
    }

    #[test]
    fn resume_sends_only_the_new_instruction() {
        let plan = PromptPlan::resume("Now add a regression test.", &Context::default());
        assert_eq!(plan.render(), "Now add a regression test.");
        let plan = PromptPlan::resume("Now add a regression test.", &sample_context());
        let text = plan.render();
        assert!(
            text.starts_with("Now add a regression test.\n\n<branch>"),
            "{text}"
        );
        for kind in BlockKind::ALL {
            if !kind.is_context() && kind != BlockKind::Task {
                assert!(plan.block(kind).is_none(), "{kind}");
            }
        }
    }

    #[test]
    fn rendering_is_deterministic_and_ordered() {
        let a = Recipe::new(Intent::Fix)
            .write(true)
            .plan("t", &sample_context());
        let b = Recipe::new(Intent::Fix)
            .write(true)
            .plan("t", &sample_context());
        assert_eq!(a.render(), b.render());
        let text = a.render();
        let mut last = 0;
        for (kind, _) in a.blocks() {
            let at = text
                .find(&format!("<{}>", kind.tag()))
                .unwrap_or_else(|| panic!("{kind} missing"));
            assert!(at >= last, "{kind} out of order");
            last = at;
        }
    }

    #[test]
    fn overrides() {
        let mut plan = Recipe::new(Intent::Fix)
            .write(true)
            .plan("t", &Context::default());
        plan.apply(&PromptOverride::Replace(
            BlockKind::OutputContract,
            "One line.".into(),
        ));
        plan.apply(&PromptOverride::Remove(BlockKind::FollowThrough));
        plan.apply(&PromptOverride::Replace(
            BlockKind::Branch,
            "On main.".into(),
        ));
        let text = plan.render();
        assert!(
            text.ends_with("<output_contract>\nOne line.\n</output_contract>"),
            "{text}"
        );
        assert!(!text.contains("<follow_through>"));
        assert!(text.contains("</task>\n\n<branch>\nOn main.\n</branch>\n\n<missing_context>"));
        plan.apply(&PromptOverride::Whole("all of it".into()));
        assert_eq!(plan.render(), "all of it");
    }

    #[test]
    fn long_failing_output_is_cut_to_its_tail() {
        let output: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let ctx = Context::default().failing_command("make", output);
        let plan = Recipe::new(Intent::Diagnose).plan("t", &ctx);
        let block = plan.block(BlockKind::FailingCommand).unwrap_or_default();
        assert!(block.contains("(last 120 lines)"), "{block}");
        assert!(block.contains("line 499") && !block.contains("line 379\n"));
        let ctx = Context::default().failing_command("x", "has ``` fences");
        let block = Recipe::new(Intent::Free)
            .plan("t", &ctx)
            .block(BlockKind::FailingCommand)
            .unwrap_or_default()
            .to_owned();
        assert!(block.contains("````\nhas ``` fences\n````"), "{block}");
    }
}
