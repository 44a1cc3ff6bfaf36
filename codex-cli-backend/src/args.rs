//! Building the command line of `codex exec --json` from a [`TaskSpec`].
//!
//! [`build_args`] is a pure function of the probed [`Capabilities`], the task, the [`ThreadMode`]
//! (new thread or resume) and the paths of the temporary files ([`ArgFiles`]). It decides
//! every flag from the capabilities, never from a version number:
//!
//! | task asks for              | flag when accepted                 | otherwise                                              |
//! |----------------------------|------------------------------------|--------------------------------------------------------|
//! | JSONL events               | `--json`                           | `--experimental-json`, else an error                   |
//! | FullAuto preset            | `--full-auto`                      | `--sandbox workspace-write` + `-c approval_policy="on-request"` |
//! | sandbox mode               | `--sandbox MODE`                   | `-c sandbox_mode="MODE"` (`exec resume` of 0.169.0)     |
//! | approval policy            | `--ask-for-approval P`             | `-c approval_policy="P"` (`exec` has no `-a`)          |
//! | working directory          | `-C DIR` (and the process cwd)     | the process cwd only (`exec resume`)                   |
//! | extra writable directories | `--add-dir DIR`...                 | `-c sandbox_workspace_write.writable_roots=[...]`      |
//! | model                      | `-m MODEL`                         | `-c model="MODEL"`                                     |
//! | reasoning effort           | `-c model_reasoning_effort="E"`    |                                                        |
//! | service tier (Fast Mode)   | `-c service_tier="fast"`           |                                                        |
//! | config overrides           | `-c key=VALUE` (VALUE as TOML)     |                                                        |
//! | images                     | `-i FILE`...                       | an error                                               |
//! | output schema              | `--output-schema FILE`             | an error                                               |
//! | last-message file          | `-o FILE`                          | left out (it is only a fallback)                       |
//! | ephemeral thread           | `--ephemeral`                      | an error                                               |
//! | outside a git repository   | `--skip-git-repo-check`            | an error                                               |
//!
//! The prompt always goes on stdin: the argument list ends with `-- [THREAD_ID] -`. The `--`
//! keeps the multi-valued `-i` from swallowing the positional arguments.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use codex_core::{ApprovalPolicy, Capabilities, SandboxMode, TaskSpec, ThreadId};
use serde::Serialize as _;

use crate::error::{Command, Error, Result};

/// Whether a run starts a new thread or continues one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ThreadMode {
    /// `codex exec`: a new thread.
    New,
    /// `codex exec resume ID`: one more turn on an existing thread.
    Resume(ThreadId),
}

impl ThreadMode {
    /// The sub-command this mode runs.
    pub fn command(&self) -> Command {
        match self {
            ThreadMode::New => Command::Exec,
            ThreadMode::Resume(_) => Command::ExecResume,
        }
    }
}

/// Paths of the temporary files a run hands to codex.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct ArgFiles {
    /// The file holding the task's output schema (`--output-schema`); `None` when the task
    /// has none.
    pub output_schema: Option<PathBuf>,
    /// Where codex writes its last message (`-o`); `None` to leave it out.
    pub last_message: Option<PathBuf>,
}

impl ArgFiles {
    /// No files.
    pub fn none() -> Self {
        ArgFiles::default()
    }

    /// Sets the output-schema file.
    pub fn output_schema(mut self, path: impl Into<PathBuf>) -> Self {
        self.output_schema = Some(path.into());
        self
    }

    /// Sets the last-message file.
    pub fn last_message(mut self, path: impl Into<PathBuf>) -> Self {
        self.last_message = Some(path.into());
        self
    }
}

/// Which flags the sub-command of a [`ThreadMode`] accepts.
struct Accepts<'a> {
    caps: &'a Capabilities,
    command: Command,
}

impl Accepts<'_> {
    fn any(&self, flags: &[&str]) -> bool {
        flags.iter().any(|f| match self.command {
            Command::Exec => self.caps.exec_accepts(f),
            Command::ExecResume => self.caps.resume_accepts(f),
        })
    }

    fn require(&self, flags: &[&'static str], needed_for: &'static str) -> Result<()> {
        if self.any(flags) {
            Ok(())
        } else {
            Err(Error::UnsupportedFlag {
                command: self.command,
                flag: flags.last().copied().unwrap_or_default(),
                needed_for,
            })
        }
    }
}

/// The arguments of `codex` (after the program name) that run `spec` in `mode`.
///
/// Pure: reads no file and no environment. Paths are passed as given; the backend makes
/// them absolute first. The spec is expected to be valid ([`TaskSpec::validate`]).
///
/// # Errors
/// [`Error::UnsupportedFlag`] when the task needs a flag this codex lacks (images, output
/// schema, ephemeral threads, `--skip-git-repo-check`, JSON output),
/// [`Error::NullConfigValue`] / [`Error::BadConfigOverride`] for overrides that have no
/// TOML form.
pub(crate) fn build_args(
    caps: &Capabilities,
    spec: &TaskSpec,
    mode: &ThreadMode,
    files: &ArgFiles,
) -> Result<Vec<OsString>> {
    let cmd = Accepts {
        caps,
        command: mode.command(),
    };
    let mut args: Vec<OsString> = vec!["exec".into()];
    if let ThreadMode::Resume(_) = mode {
        args.push("resume".into());
    }

    // JSONL on stdout
    if cmd.any(&["--json"]) {
        args.push("--json".into());
    } else {
        cmd.require(&["--experimental-json"], "JSONL events (--json)")?;
        args.push("--experimental-json".into());
    }

    // sandbox and approvals
    let full_auto = spec.sandbox == Some(SandboxMode::WorkspaceWrite)
        && spec.approval == Some(ApprovalPolicy::OnRequest)
        && cmd.any(&["--full-auto"]);
    if full_auto {
        args.push("--full-auto".into());
    } else {
        if let Some(sandbox) = spec.sandbox {
            if cmd.any(&["--sandbox", "-s"]) {
                args.push("--sandbox".into());
                args.push(sandbox.as_str().into());
            } else {
                push_config(&mut args, "sandbox_mode", &toml_str(sandbox.as_str()));
            }
        }
        if let Some(approval) = spec.approval {
            if cmd.any(&["--ask-for-approval", "-a"]) {
                args.push("--ask-for-approval".into());
                args.push(approval.as_str().into());
            } else {
                push_config(&mut args, "approval_policy", &toml_str(approval.as_str()));
            }
        }
    }

    // where it runs and may write
    if let Some(cwd) = &spec.cwd
        && cmd.any(&["--cd", "-C"])
    {
        args.push("--cd".into());
        args.push(cwd.into());
    }
    if !spec.writable_dirs.is_empty() {
        if cmd.any(&["--add-dir"]) {
            for dir in &spec.writable_dirs {
                args.push("--add-dir".into());
                args.push(dir.into());
            }
        } else {
            let roots = spec
                .writable_dirs
                .iter()
                .map(|d| path_str(d, "sandbox_workspace_write.writable_roots"))
                .collect::<Result<Vec<_>>>()?;
            let value = serde_json::Value::from(roots);
            let rendered = toml_value("sandbox_workspace_write.writable_roots", &value)?;
            push_config(
                &mut args,
                "sandbox_workspace_write.writable_roots",
                &rendered,
            );
        }
    }
    if spec.skip_git_repo_check {
        cmd.require(
            &["--skip-git-repo-check"],
            "running outside a git repository",
        )?;
        args.push("--skip-git-repo-check".into());
    }

    // model
    if let Some(model) = &spec.model {
        if cmd.any(&["--model", "-m"]) {
            args.push("--model".into());
            args.push(model.into());
        } else {
            push_config(&mut args, "model", &toml_str(model));
        }
    }
    if let Some(effort) = spec.effort {
        push_config(
            &mut args,
            "model_reasoning_effort",
            &toml_str(effort.as_str()),
        );
    }
    if let Some(tier) = spec.service_tier {
        push_config(&mut args, "service_tier", &toml_str(tier.as_str()));
    }

    // the caller's overrides come last, so they win over ours
    for o in &spec.config {
        check_key(&o.key)?;
        let rendered = toml_value(&o.key, &o.value)?;
        push_config(&mut args, &o.key, &rendered);
    }

    if spec.ephemeral {
        cmd.require(&["--ephemeral"], "an ephemeral thread")?;
        args.push("--ephemeral".into());
    }
    if let Some(schema) = &files.output_schema {
        cmd.require(&["--output-schema"], "an output schema")?;
        args.push("--output-schema".into());
        args.push(schema.into());
    }
    if let Some(last) = &files.last_message
        && cmd.any(&["--output-last-message", "-o"])
    {
        args.push("--output-last-message".into());
        args.push(last.into());
    }
    if !spec.images.is_empty() {
        cmd.require(&["-i", "--image"], "images")?;
        for image in &spec.images {
            args.push("--image".into());
            args.push(image.into());
        }
    }

    // positionals: [THREAD_ID] and the prompt on stdin
    args.push("--".into());
    if let ThreadMode::Resume(id) = mode {
        args.push(id.as_str().into());
    }
    args.push("-".into());
    Ok(args)
}

fn push_config(args: &mut Vec<OsString>, key: &str, rendered_value: &str) {
    args.push("-c".into());
    args.push(format!("{key}={rendered_value}").into());
}

fn check_key(key: &str) -> Result<()> {
    let bad = |reason: &str| Error::BadConfigOverride {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if key.trim().is_empty() {
        return Err(bad("the key is empty"));
    }
    if key.contains('=') {
        return Err(bad("a key cannot contain `=`"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("a key cannot contain whitespace"));
    }
    if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
        return Err(bad("a dotted key needs a name between the dots"));
    }
    Ok(())
}

fn path_str(path: &Path, key: &str) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::BadConfigOverride {
            key: key.to_owned(),
            reason: format!("the path {} is not valid UTF-8", path.display()),
        })
}

/// A TOML basic string holding `s`.
fn toml_str(s: &str) -> String {
    // a string always renders; fall back to a hand-quoted form just in case
    toml_value("", &serde_json::Value::from(s)).unwrap_or_else(|_| format!("{s:?}"))
}

/// Renders a JSON value as a TOML value for `-c key=VALUE`: strings quoted and escaped,
/// arrays, inline tables. `key` names the override in errors.
///
/// # Errors
/// [`Error::NullConfigValue`] when the value is or contains `null`;
/// [`Error::BadConfigOverride`] when TOML cannot hold it (e.g. an integer above `i64::MAX`).
pub(crate) fn toml_value(key: &str, value: &serde_json::Value) -> Result<String> {
    if let Some(path) = find_null(value, "$".to_owned()) {
        return Err(Error::NullConfigValue {
            key: key.to_owned(),
            path,
        });
    }
    if let Some(path) = find_big_integer(value, "$".to_owned()) {
        return Err(Error::BadConfigOverride {
            key: key.to_owned(),
            reason: format!("the integer at {path} is beyond TOML's 64-bit signed range"),
        });
    }
    let mut out = String::new();
    value
        .serialize(toml::ser::ValueSerializer::new(&mut out))
        .map_err(|e| Error::BadConfigOverride {
            key: key.to_owned(),
            reason: format!("no TOML form: {e}"),
        })?;
    Ok(out)
}

fn find_big_integer(value: &serde_json::Value, at: String) -> Option<String> {
    match value {
        serde_json::Value::Number(n) if n.is_u64() && n.as_i64().is_none() => Some(at),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_big_integer(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| find_big_integer(v, format!("{at}.{k}"))),
        _ => None,
    }
}

fn find_null(value: &serde_json::Value, at: String) -> Option<String> {
    match value {
        serde_json::Value::Null => Some(at),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_null(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| find_null(v, format!("{at}.{k}"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use codex_core::{Preset, ReasoningEffort, ServiceTier};
    use serde_json::json;

    use super::*;

    /// `codex exec --help` / `codex exec resume --help` flags of 0.169.0 (abridged to the
    /// option lines the parser reads).
    const HELP_0_169_EXEC: &str = "
  -c, --config <key=value>
      --enable <FEATURE>
      --disable <FEATURE>
      --strict-config
  -i, --image <FILE>...
  -m, --model <MODEL>
      --oss
      --local-provider <OSS_PROVIDER>
  -p, --profile <CONFIG_PROFILE_V2>
  -s, --sandbox <SANDBOX_MODE>
      --approve-for-me
      --dangerously-bypass-approvals-and-sandbox
      --dangerously-bypass-hook-trust
  -C, --cd <DIR>
      --worktree
      --add-dir <DIR>
      --thread-source <SOURCE>
      --cyber-access-program <PROGRAM>
      --skip-git-repo-check
      --trust
      --ephemeral
      --ignore-user-config
      --ignore-rules
      --output-schema <FILE>
      --color <COLOR>
      --json
  -o, --output-last-message <FILE>
  -h, --help
  -V, --version
";
    const HELP_0_169_RESUME: &str = "
  -c, --config <key=value>
      --last
      --all
      --enable <FEATURE>
      --disable <FEATURE>
  -i, --image <FILE>
      --strict-config
  -m, --model <MODEL>
      --dangerously-bypass-approvals-and-sandbox
      --dangerously-bypass-hook-trust
      --worktree
      --thread-source <SOURCE>
      --cyber-access-program <PROGRAM>
      --skip-git-repo-check
      --trust
      --ephemeral
      --ignore-user-config
      --ignore-rules
      --output-schema <FILE>
      --json
  -o, --output-last-message <FILE>
  -h, --help
";
    /// The option lines of `codex exec --help` / `codex exec resume --help` of the real
    /// 0.100.0: `--full-auto` on both; `exec resume` has no `--sandbox`, `-C`, `--add-dir`,
    /// `-o` or `--output-schema`.
    const HELP_0_100_EXEC: &str = "
  -c, --config <key=value>
      --enable <FEATURE>
      --disable <FEATURE>
  -i, --image <FILE>...
  -m, --model <MODEL>
      --oss
      --local-provider <OSS_PROVIDER>
  -s, --sandbox <SANDBOX_MODE>
  -p, --profile <CONFIG_PROFILE>
      --full-auto
      --dangerously-bypass-approvals-and-sandbox
  -C, --cd <DIR>
      --skip-git-repo-check
      --add-dir <DIR>
      --ephemeral
      --output-schema <FILE>
      --color <COLOR>
      --json
  -o, --output-last-message <FILE>
  -h, --help
  -V, --version
";
    const HELP_0_100_RESUME: &str = "
  -c, --config <key=value>
      --last
      --all
      --enable <FEATURE>
      --disable <FEATURE>
  -i, --image <FILE>
  -m, --model <MODEL>
      --full-auto
      --dangerously-bypass-approvals-and-sandbox
      --skip-git-repo-check
      --ephemeral
      --json
  -h, --help
";

    fn caps_0_169() -> Capabilities {
        Capabilities::from_help(HELP_0_169_EXEC, HELP_0_169_RESUME)
    }

    fn caps_old() -> Capabilities {
        Capabilities::from_help(HELP_0_100_EXEC, HELP_0_100_RESUME)
    }

    fn render(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn args(caps: &Capabilities, spec: &TaskSpec, mode: &ThreadMode) -> Vec<String> {
        build_args(caps, spec, mode, &ArgFiles::none())
            .unwrap()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn resume() -> ThreadMode {
        ThreadMode::Resume("0199a213-81c0-7800-8aa1-bbab2a035a53".into())
    }

    fn presets() -> [(&'static str, TaskSpec); 4] {
        [
            ("no-preset", TaskSpec::new("p")),
            ("full-auto", TaskSpec::new("p").preset(Preset::FullAuto)),
            ("read-only", TaskSpec::new("p").preset(Preset::ReadOnly)),
            (
                "danger-full-access",
                TaskSpec::new("p").preset(Preset::DangerFullAccess),
            ),
        ]
    }

    #[test]
    fn presets_on_0_169_without_full_auto() {
        let caps = caps_0_169();
        for (name, spec) in presets() {
            let new = args(&caps, &spec, &ThreadMode::New);
            assert!(!new.contains(&"--full-auto".to_owned()), "{name}");
            insta::assert_snapshot!(format!("preset_0_169_new_{name}"), render_strs(&new));
            let res = args(&caps, &spec, &resume());
            assert!(!res.contains(&"--sandbox".to_owned()), "{name}");
            insta::assert_snapshot!(format!("preset_0_169_resume_{name}"), render_strs(&res));
        }
    }

    #[test]
    fn presets_on_an_old_cli_with_full_auto() {
        let caps = caps_old();
        for (name, spec) in presets() {
            insta::assert_snapshot!(
                format!("preset_0_100_new_{name}"),
                render_strs(&args(&caps, &spec, &ThreadMode::New))
            );
            insta::assert_snapshot!(
                format!("preset_0_100_resume_{name}"),
                render_strs(&args(&caps, &spec, &resume()))
            );
        }
        let full = args(
            &caps,
            &TaskSpec::new("p").preset(Preset::FullAuto),
            &ThreadMode::New,
        );
        assert!(full.contains(&"--full-auto".to_owned()));
        assert!(!full.iter().any(|a| a.contains("approval_policy")));
    }

    fn render_strs(args: &[String]) -> String {
        args.join("\n")
    }

    fn everything() -> TaskSpec {
        TaskSpec::new("p")
            .cwd("/work/repo")
            .writable_dir("/work/other")
            .writable_dir("/work/third dir")
            .model("gpt-5.5")
            .effort(ReasoningEffort::High)
            .service_tier(ServiceTier::Fast)
            .image("/img/a.png")
            .image("/img/b.png")
            .preset(Preset::FullAuto)
            .config("shell_environment_policy.inherit", "all")
            .config("sandbox_workspace_write.network_access", true)
            .config("tools", json!({"web_search": false, "view_image": true}))
            .config("notify", json!(["notify-send", "codex \"done\""]))
            .config("model_context_window", 200_000)
            .config("temperature", 0.5)
            .skip_git_repo_check(true)
            .ephemeral(true)
            .timeout(Duration::from_secs(5))
    }

    fn all_files() -> ArgFiles {
        ArgFiles::none()
            .output_schema("/tmp/x/schema.json")
            .last_message("/tmp/x/last-message.txt")
    }

    #[test]
    fn every_option_on_each_cli_and_mode() {
        for (caps_name, caps) in [("0_169", caps_0_169()), ("0_100", caps_old())] {
            for (mode_name, mode) in [("new", ThreadMode::New), ("resume", resume())] {
                let spec = everything();
                let result = build_args(&caps, &spec, &mode, &all_files());
                let text = match result {
                    Ok(a) => a
                        .iter()
                        .map(|x| x.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    Err(e) => format!("error: {e}"),
                };
                insta::assert_snapshot!(format!("everything_{caps_name}_{mode_name}"), text);
            }
        }
    }

    #[test]
    fn resume_on_0_100_leaves_out_what_it_lacks() {
        let files = ArgFiles::none().last_message("/tmp/x/last-message.txt");
        let a: Vec<String> = build_args(&caps_old(), &everything(), &resume(), &files)
            .unwrap()
            .into_iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect();
        assert!(a.contains(&"--full-auto".to_owned()));
        assert!(!a.contains(&"--output-last-message".to_owned()));
        assert!(!a.contains(&"--cd".to_owned()));
        assert!(
            a.contains(
                &"sandbox_workspace_write.writable_roots=[\"/work/other\", \"/work/third dir\"]"
                    .to_owned()
            ),
            "{a:?}"
        );
        insta::assert_snapshot!("everything_0_100_resume_without_schema", a.join("\n"));
    }

    #[test]
    fn prompt_is_stdin_after_double_dash() {
        let a = args(
            &caps_0_169(),
            &TaskSpec::new("p").image("/i.png"),
            &ThreadMode::New,
        );
        assert_eq!(&a[a.len() - 2..], ["--", "-"]);
        let a = args(&caps_0_169(), &TaskSpec::new("p"), &resume());
        assert_eq!(
            &a[a.len() - 3..],
            ["--", "0199a213-81c0-7800-8aa1-bbab2a035a53", "-"]
        );
        assert_eq!(&a[..3], ["exec", "resume", "--json"]);
        // the prompt never goes into argv
        let a = args(
            &caps_0_169(),
            &TaskSpec::new("secret words"),
            &ThreadMode::New,
        );
        assert!(!a.iter().any(|x| x.contains("secret")));
    }

    #[test]
    fn resume_on_0_169_uses_config_for_sandbox_and_dirs() {
        let spec = TaskSpec::new("p")
            .cwd("/w")
            .sandbox(SandboxMode::WorkspaceWrite)
            .writable_dir("/extra");
        let a = args(&caps_0_169(), &spec, &resume());
        assert!(
            a.contains(&"sandbox_mode=\"workspace-write\"".to_owned()),
            "{a:?}"
        );
        assert!(
            a.contains(&"sandbox_workspace_write.writable_roots=[\"/extra\"]".to_owned()),
            "{a:?}"
        );
        for flag in ["--sandbox", "-s", "--cd", "-C", "--add-dir"] {
            assert!(!a.contains(&flag.to_owned()), "{flag} in {a:?}");
        }
        let a = args(&caps_0_169(), &spec, &ThreadMode::New);
        for flag in ["--sandbox", "--cd", "--add-dir"] {
            assert!(a.contains(&flag.to_owned()), "{flag} missing in {a:?}");
        }
    }

    #[test]
    fn toml_values_are_quoted_and_escaped() {
        let cases = [
            (json!("o3"), "\"o3\""),
            (json!(true), "true"),
            (json!(42), "42"),
            (json!(-7), "-7"),
            (json!(0.25), "0.25"),
            (json!(["a", 1]), "[\"a\", 1]"),
            (json!({"b": 1, "a": "x"}), "{ a = \"x\", b = 1 }"),
            (json!([]), "[]"),
            (json!({}), "{}"),
        ];
        for (value, want) in cases {
            assert_eq!(toml_value("k", &value).unwrap(), want, "{value}");
        }
        // strings with quotes, backslashes and newlines must round-trip through TOML
        for s in [
            "say \"hi\"",
            "C:\\path\\x",
            "line1\nline2",
            "tab\there",
            "it's",
            "'''",
            "\"\"\"",
            "\u{7}bell",
            "ünïcödé ✓",
        ] {
            let rendered = toml_value("k", &json!(s)).unwrap();
            let doc: toml::Table = toml::from_str(&format!("k = {rendered}")).unwrap();
            assert_eq!(doc["k"].as_str(), Some(s), "{rendered}");
        }
        let nested = json!({"outer": {"inner": ["x", {"deep": "v\"q"}]}});
        let rendered = toml_value("k", &nested).unwrap();
        assert!(!rendered.contains('\n'), "{rendered}");
        let doc: toml::Table = toml::from_str(&format!("k = {rendered}")).unwrap();
        assert_eq!(doc["k"]["outer"]["inner"][1]["deep"].as_str(), Some("v\"q"));
    }

    #[test]
    fn null_is_an_error_naming_the_key() {
        let err = toml_value("features.x", &json!(null)).unwrap_err();
        assert!(
            matches!(&err, Error::NullConfigValue { key, path } if key == "features.x" && path == "$")
        );
        let err = build_args(
            &caps_0_169(),
            &TaskSpec::new("p").config("mcp_servers", json!({"a": {"args": [1, null]}})),
            &ThreadMode::New,
            &ArgFiles::none(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("mcp_servers") && msg.contains("$.a.args[1]"),
            "{msg}"
        );
    }

    #[test]
    fn out_of_range_integers_and_bad_keys_are_errors() {
        let err = toml_value("big", &json!(u64::MAX)).unwrap_err();
        assert!(matches!(err, Error::BadConfigOverride { .. }), "{err}");
        for key in ["a=b", "", "a b", ".a", "a..b"] {
            let spec = TaskSpec::new("p").config(key, 1);
            let err = build_args(&caps_0_169(), &spec, &ThreadMode::New, &ArgFiles::none());
            assert!(
                matches!(err, Err(Error::BadConfigOverride { .. })),
                "{key:?}: {err:?}"
            );
        }
    }

    #[test]
    fn missing_flags_are_named() {
        let bare = Capabilities::from_help("      --json\n  -c, --config <k=v>\n", "");
        let err = build_args(
            &bare,
            &TaskSpec::new("p").ephemeral(true),
            &ThreadMode::New,
            &ArgFiles::none(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedFlag {
                    flag: "--ephemeral",
                    command: Command::Exec,
                    ..
                }
            ),
            "{err}"
        );
        let err = build_args(
            &bare,
            &TaskSpec::new("p"),
            &ThreadMode::New,
            &ArgFiles::none().output_schema("/s.json"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--output-schema"), "{err}");
        let err = build_args(&bare, &TaskSpec::new("p"), &resume(), &ArgFiles::none()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedFlag {
                    command: Command::ExecResume,
                    ..
                }
            ),
            "{err}"
        );
        // the last-message file is only a fallback: silently left out
        let a = build_args(
            &bare,
            &TaskSpec::new("p").model("m"),
            &ThreadMode::New,
            &ArgFiles::none().last_message("/l.txt"),
        )
        .unwrap();
        assert_eq!(render(&a), "exec --json -c model=\"m\" -- -");
        // the older event flag
        let exp = Capabilities::from_help("      --experimental-json\n", "");
        let a = build_args(
            &exp,
            &TaskSpec::new("p"),
            &ThreadMode::New,
            &ArgFiles::none(),
        )
        .unwrap();
        assert_eq!(render(&a), "exec --experimental-json -- -");
    }

    #[test]
    fn caller_overrides_come_after_ours() {
        let spec = TaskSpec::new("p")
            .effort(ReasoningEffort::Low)
            .config("model_reasoning_effort", "high");
        let a = args(&caps_0_169(), &spec, &ThreadMode::New);
        let ours = a
            .iter()
            .position(|x| x == "model_reasoning_effort=\"low\"")
            .unwrap();
        let theirs = a
            .iter()
            .position(|x| x == "model_reasoning_effort=\"high\"")
            .unwrap();
        assert!(ours < theirs);
    }

    /// The example of `build_args`: 0.169.0's flags, a full-auto task, new and resumed.
    #[test]
    fn build_args_example() {
        use codex_core::{Capabilities, Preset, TaskSpec};
        // what `codex exec --help` / `codex exec resume --help` of 0.169.0 list (abridged)
        let caps = Capabilities::from_help(
            "  -c, --config <key=value>\n  -s, --sandbox <MODE>\n  -C, --cd <DIR>\n      --json\n",
            "  -c, --config <key=value>\n      --json\n",
        );
        let spec = TaskSpec::new("fix it")
            .cwd("/repo")
            .preset(Preset::FullAuto);
        let args = build_args(&caps, &spec, &ThreadMode::New, &ArgFiles::none()).unwrap();
        assert_eq!(
            args,
            [
                "exec",
                "--json",
                "--sandbox",
                "workspace-write",
                "-c",
                "approval_policy=\"on-request\"",
                "--cd",
                "/repo",
                "--",
                "-"
            ]
        );
        let args = build_args(
            &caps,
            &spec,
            &ThreadMode::Resume("t-1".into()),
            &ArgFiles::none(),
        )
        .unwrap();
        assert_eq!(
            args,
            [
                "exec",
                "resume",
                "--json",
                "-c",
                "sandbox_mode=\"workspace-write\"",
                "-c",
                "approval_policy=\"on-request\"",
                "--",
                "t-1",
                "-"
            ]
        );
    }
}
