//! How codex is signed in, and which features that allows.
//!
//! | feature                          | ChatGPT sign-in | API key | other provider | none |
//! |----------------------------------|-----------------|---------|----------------|------|
//! | CLI, IDE and app-server runs     | yes             | yes     | yes            | no*  |
//! | Fast Mode (`service_tier=fast`)  | yes             | no      | no             | no   |
//! | rate-limit reads                 | yes             | no      | no             | no   |
//! | cloud features (tasks, GitHub…)  | yes             | no      | no             | no   |
//! | newest models at launch          | yes             | later   | n/a            | no   |
//!
//! [`AuthMode::require`] turns a "no" into a typed [`Error::FeatureUnavailable`].
//!
//! \* "none" is what `codex login status` says when nothing is stored, and that is no proof
//! that a run will fail: codex also takes keys from its environment and refreshes an expired
//! session by itself. So no entry point refuses a run up front because of it (it logs a
//! warning at most); when codex does reject the credentials, the run ends in
//! [`Error::AuthRejected`] with codex's own message ([`is_auth_rejection`]). Refused up front
//! is only what is certain: Fast Mode with an API key or another provider
//! ([`AuthMode::rules_out`]).
//!
//! Which sign-in applies depends on the configured model provider: a provider that needs no
//! OpenAI login (a `model_providers` entry without `requires_openai_auth = true`, the built-in
//! `ollama`, `lmstudio` and `amazon-bedrock`, `--oss`) is [`AuthMode::OtherProvider`], whatever
//! `codex login status` says. [`AuthContext`] describes a run (its `CODEX_HOME`, `-c`
//! overrides, `--profile`, `--oss`) and [`AuthContext::model_provider`] reads the provider it
//! selects; `CodexBinary::auth` is the one detection every entry point uses.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::{ConfigOverride, TaskSpec};

/// How codex is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuthMode {
    /// Signed in with a ChatGPT account.
    #[serde(rename = "chatgpt")]
    ChatGpt {
        /// The subscription plan (`plus`, `pro`, `team`...), when known.
        plan: Option<String>,
        /// The account e-mail, when known.
        email: Option<String>,
    },
    /// An OpenAI API key is stored.
    ApiKey,
    /// A custom model provider that needs no OpenAI sign-in.
    OtherProvider {
        /// The provider id from `config.toml`.
        name: String,
    },
    /// No credentials.
    None,
}

/// Something whose availability depends on how codex is signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Feature {
    /// One-shot `codex exec` runs.
    CliRun,
    /// IDE extension runs.
    IdeRun,
    /// Runs through `codex app-server`.
    AppServerRun,
    /// Fast Mode (the priority service tier).
    FastMode,
    /// Reading the account's rate limits (`account/rateLimits/read`).
    RateLimits,
    /// Codex Cloud tasks and integrations (GitHub, Slack).
    Cloud,
    /// Access to new models on the day they launch.
    NewestModels,
}

impl Feature {
    /// Every feature, for tables and tests.
    pub const ALL: [Feature; 7] = [
        Feature::CliRun,
        Feature::IdeRun,
        Feature::AppServerRun,
        Feature::FastMode,
        Feature::RateLimits,
        Feature::Cloud,
        Feature::NewestModels,
    ];

    /// What the user can do to get this feature.
    pub fn how_to_enable(self) -> &'static str {
        match self {
            Feature::CliRun | Feature::IdeRun | Feature::AppServerRun => {
                "sign in with `codex login` (ChatGPT) or store an API key with `codex login --with-api-key`"
            }
            Feature::FastMode | Feature::RateLimits | Feature::Cloud | Feature::NewestModels => {
                "sign in with ChatGPT: run `codex login`"
            }
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Feature::CliRun => "running codex exec",
            Feature::IdeRun => "IDE runs",
            Feature::AppServerRun => "running the app-server",
            Feature::FastMode => "Fast Mode",
            Feature::RateLimits => "reading rate limits",
            Feature::Cloud => "Codex Cloud",
            Feature::NewestModels => "day-one access to new models",
        })
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMode::ChatGpt {
                plan: Some(plan), ..
            } => {
                write!(f, "signed in with ChatGPT ({plan} plan)")
            }
            AuthMode::ChatGpt { plan: None, .. } => f.write_str("signed in with ChatGPT"),
            AuthMode::ApiKey => f.write_str("signed in with an API key"),
            AuthMode::OtherProvider { name } => write!(f, "using the model provider {name:?}"),
            AuthMode::None => f.write_str("not signed in"),
        }
    }
}

impl AuthMode {
    /// Whether `feature` is available under this sign-in.
    pub fn allows(&self, feature: Feature) -> bool {
        match (self, feature) {
            (AuthMode::ChatGpt { .. }, _) => true,
            (AuthMode::None, _) => false,
            (AuthMode::ApiKey | AuthMode::OtherProvider { .. }, f) => {
                matches!(f, Feature::CliRun | Feature::IdeRun | Feature::AppServerRun)
            }
        }
    }

    /// Whether `feature` is certainly unavailable under this sign-in: not allowed, and not
    /// merely [`AuthMode::None`] (which codex may overcome with a key from its environment or
    /// a refreshed session). Only these are refused before codex runs.
    pub fn rules_out(&self, feature: Feature) -> bool {
        !self.allows(feature) && *self != AuthMode::None
    }

    /// `Ok` when `feature` is available, else the typed error that says how to get it.
    ///
    /// Entry points do not call this for runs ([`Feature::CliRun`], ...): a codex that
    /// `codex login status` reports as signed out may still run (see the module docs).
    pub fn require(&self, feature: Feature) -> Result<()> {
        if self.allows(feature) {
            return Ok(());
        }
        if *self == AuthMode::None
            && matches!(
                feature,
                Feature::CliRun | Feature::IdeRun | Feature::AppServerRun
            )
        {
            return Err(Error::NotLoggedIn);
        }
        Err(Error::FeatureUnavailable {
            feature,
            auth: self.clone(),
        })
    }

    /// Reads the output of `codex login status` (codex prints it on stderr; some versions
    /// on stdout, so pass both) and its exit code.
    ///
    /// Known wordings: `Not logged in` (exit 1); `Logged in using ChatGPT`; `Logged in using
    /// an API key - sk-...` (up to 0.163.0); `API key configured - sk-...` (from 0.164.0).
    /// Unrecognised output under exit 0 is reported as `None` rather than guessed.
    pub fn from_login_status(output: &str, exit_code: Option<i32>) -> Option<AuthMode> {
        let text = output.to_ascii_lowercase();
        if text.contains("not logged in") {
            return Some(AuthMode::None);
        }
        if text.contains("chatgpt") {
            return Some(AuthMode::ChatGpt {
                plan: None,
                email: None,
            });
        }
        if text.contains("api key") {
            return Some(AuthMode::ApiKey);
        }
        if exit_code == Some(1) {
            return Some(AuthMode::None);
        }
        None
    }
}

/// Whether codex's message for a failed turn says that the model provider rejected (or
/// never got) the credentials: an HTTP 401 (`unexpected status 401 Unauthorized: ...`), a
/// missing `env_key` variable (`Missing environment variable: `NAME`.`), a session that could
/// not be refreshed (`... Please sign in again.`), `not logged in`.
///
/// The wordings are those of codex 0.154.0 to 0.169.0 (`codex exec` prints no structured
/// error kind; the app-server's `codexErrorInfo` is read by `codex-asp` first).
pub fn is_auth_rejection(message: &str) -> bool {
    let text = message.to_ascii_lowercase();
    [
        "401 unauthorized",
        "status 401",
        "missing environment variable",
        "not logged in",
        "sign in again",
        "log in again",
        "could not be refreshed",
        "refresh token",
        "incorrect api key",
        "invalid api key",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The model providers built into codex, and whether each needs an OpenAI sign-in. Codex
/// refuses (0.169.0) or ignores (older versions) `model_providers` entries with these ids.
const BUILT_IN_PROVIDERS: [(&str, bool); 4] = [
    ("openai", true),
    ("ollama", false),
    ("lmstudio", false),
    ("amazon-bedrock", false),
];

/// The provider id codex uses when `model_provider` is not set.
const DEFAULT_PROVIDER: &str = "openai";

/// The provider id reported for `--oss` when no OSS provider is configured (codex itself
/// then refuses to start and says how to choose one).
const UNCONFIGURED_OSS: &str = "oss";

/// The model provider a run selects, as far as sign-in goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelProvider {
    /// The provider id (`openai`, `ollama`, a key of `model_providers`).
    pub id: String,
    /// Whether it needs an OpenAI sign-in (ChatGPT or a stored API key).
    pub requires_openai_auth: bool,
}

/// What decides the model provider of a codex run, and so how it authenticates: the
/// environment of the codex process (its `CODEX_HOME`), the `-c` overrides, `--profile`,
/// `--oss` and `--local-provider`.
///
/// ```
/// use codex_core::auth::AuthContext;
/// let ctx = AuthContext::new()
///     .env("CODEX_HOME", "/srv/codex-home")
///     .config("model_provider", "ollama");
/// assert_eq!(ctx.codex_home().unwrap(), std::path::Path::new("/srv/codex-home"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct AuthContext {
    /// Variables set for the codex process, in order (a `CODEX_HOME` here wins over this
    /// process's).
    pub env: Vec<(String, String)>,
    /// Variables removed from the codex process's environment.
    pub env_remove: Vec<String>,
    /// `-c key=value` overrides, in order.
    pub config: Vec<ConfigOverride>,
    /// `--profile NAME`.
    pub profile: Option<String>,
    /// `--oss`.
    pub oss: bool,
    /// `--local-provider ID` (with `--oss`).
    pub local_provider: Option<String>,
}

impl AuthContext {
    /// A run with this process's environment and no overrides.
    pub fn new() -> Self {
        AuthContext::default()
    }

    /// The context of a task: its environment variables and config overrides.
    pub fn for_spec(spec: &TaskSpec) -> Self {
        AuthContext {
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            config: spec.config.clone(),
            ..AuthContext::default()
        }
    }

    /// Sets an environment variable of the codex process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets several environment variables of the codex process.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Removes a variable from the codex process's environment.
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// Adds a `-c key=value` override.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.config.push(ConfigOverride {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Adds several overrides.
    pub fn overrides(mut self, overrides: impl IntoIterator<Item = ConfigOverride>) -> Self {
        self.config.extend(overrides);
        self
    }

    /// Selects a profile (`--profile NAME`).
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// Runs with `--oss`.
    pub fn oss(mut self, yes: bool) -> Self {
        self.oss = yes;
        self
    }

    /// Chooses the OSS provider (`--local-provider ID`).
    pub fn local_provider(mut self, id: impl Into<String>) -> Self {
        self.local_provider = Some(id.into());
        self
    }

    /// The value the codex process sees for `key`: set here, removed here, or inherited.
    pub fn var(&self, key: &str) -> Option<String> {
        if let Some((_, v)) = self.env.iter().rev().find(|(k, _)| k == key) {
            return Some(v.clone());
        }
        if self.env_remove.iter().any(|k| k == key) {
            return None;
        }
        std::env::var(key).ok()
    }

    /// The `CODEX_HOME` of the codex process: `$CODEX_HOME`, else `~/.codex`.
    pub fn codex_home(&self) -> Option<PathBuf> {
        match self.var("CODEX_HOME").filter(|v| !v.is_empty()) {
            Some(home) => Some(PathBuf::from(home)),
            None => self
                .var("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(dirs::home_dir)
                .map(|home| home.join(".codex")),
        }
    }

    /// The model provider this run selects, read from `$CODEX_HOME/config.toml`, the
    /// `--profile` file `$CODEX_HOME/<name>.config.toml` (and, for older codex versions, the
    /// `[profiles.<name>]` table selected by `--profile` or `profile = "<name>"`), the `-c`
    /// overrides and `--oss`.
    ///
    /// `None` when that cannot be told: an unreadable or malformed config file, or a provider
    /// id that is neither built in nor configured (codex reports those itself when it runs).
    /// Managed (system) and project-level configuration layers are not read.
    pub fn model_provider(&self) -> Option<ModelProvider> {
        let home = self.codex_home()?;
        let config = read_optional(&home.join("config.toml"))?;
        let profile = match &self.profile {
            Some(name) => read_optional(&profile_file(&home, name))?,
            None => None,
        };
        resolve_model_provider(
            config.as_deref().unwrap_or_default(),
            profile.as_deref(),
            self,
        )
    }
}

fn profile_file(home: &Path, name: &str) -> PathBuf {
    home.join(format!("{name}.config.toml"))
}

/// `Some(None)` for a missing file, `Some(Some(text))` for a readable one, `None` otherwise.
fn read_optional(path: &Path) -> Option<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(None),
        Err(e) => {
            tracing::debug!("cannot read {}: {e}", path.display());
            None
        }
    }
}

/// The model provider selected by the text of `config.toml`, the text of the `--profile`
/// file (when there is one) and the rest of `ctx` (its `-c` overrides, profile, `--oss`).
/// The files themselves are not read: see [`AuthContext::model_provider`].
///
/// `None` when a text is not valid TOML or the provider id is neither built in nor
/// configured.
///
/// ```
/// use codex_core::auth::{AuthContext, resolve_model_provider};
/// let config = "model_provider = \"local\"\n[model_providers.local]\nbase_url = \"http://127.0.0.1:8080/v1\"\n";
/// let p = resolve_model_provider(config, None, &AuthContext::new()).unwrap();
/// assert_eq!(p.id, "local");
/// assert!(!p.requires_openai_auth);
/// let p = resolve_model_provider(config, None, &AuthContext::new().config("model_provider", "openai")).unwrap();
/// assert!(p.requires_openai_auth);
/// ```
pub fn resolve_model_provider(
    config_toml: &str,
    profile_toml: Option<&str>,
    ctx: &AuthContext,
) -> Option<ModelProvider> {
    let mut merged: toml::Table = parse_table(config_toml)?;
    if let Some(text) = profile_toml {
        merge_tables(&mut merged, parse_table(text)?);
    }
    for o in &ctx.config {
        let Some(value) = json_to_toml(&o.value) else {
            continue;
        };
        set_dotted(&mut merged, &o.key, value);
    }
    // older codex versions: `profile = "name"` (or `--profile name`) selects `[profiles.name]`,
    // whose settings win over the top-level ones
    let legacy_name = ctx.profile.clone().or_else(|| {
        merged
            .get("profile")
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    });
    let legacy = legacy_name.as_deref().and_then(|name| {
        merged
            .get("profiles")
            .and_then(toml::Value::as_table)
            .and_then(|profiles| profiles.get(name))
            .and_then(toml::Value::as_table)
    });
    let setting = |key: &str| -> Option<String> {
        legacy
            .and_then(|t| t.get(key))
            .or_else(|| merged.get(key))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    };
    let id = if ctx.oss {
        match ctx
            .local_provider
            .clone()
            .or_else(|| setting("oss_provider"))
        {
            Some(id) => id,
            None => {
                return Some(ModelProvider {
                    id: UNCONFIGURED_OSS.to_owned(),
                    requires_openai_auth: false,
                });
            }
        }
    } else {
        setting("model_provider").unwrap_or_else(|| DEFAULT_PROVIDER.to_owned())
    };
    if let Some((_, requires)) = BUILT_IN_PROVIDERS.iter().find(|(b, _)| *b == id) {
        return Some(ModelProvider {
            id,
            requires_openai_auth: *requires,
        });
    }
    let entry = merged
        .get("model_providers")
        .and_then(toml::Value::as_table)
        .and_then(|providers| providers.get(&id))
        .and_then(toml::Value::as_table)?;
    // codex's default for a configured provider is `false`
    let requires_openai_auth = entry
        .get("requires_openai_auth")
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    Some(ModelProvider {
        id,
        requires_openai_auth,
    })
}

fn parse_table(text: &str) -> Option<toml::Table> {
    match text.parse::<toml::Table>() {
        Ok(table) => Some(table),
        Err(e) => {
            tracing::debug!("codex configuration is not valid TOML: {e}");
            None
        }
    }
}

/// Lays `top` over `base`: tables merge key by key, anything else is replaced.
fn merge_tables(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge_tables(b, t),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets `a.b.c = value`, creating (or replacing non-table values with) tables on the way.
fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut current = table;
    for part in parts {
        let slot = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !slot.is_table() {
            *slot = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = slot else {
            return;
        };
        current = next;
    }
    current.insert(last.to_owned(), value);
}

/// JSON as TOML; `None` for a null anywhere (TOML has none).
fn json_to_toml(value: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match value {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => {
            toml::Value::Array(items.iter().map(json_to_toml).collect::<Option<Vec<_>>>()?)
        }
        J::Object(map) => {
            let mut table = toml::Table::new();
            for (k, v) in map {
                table.insert(k.clone(), json_to_toml(v)?);
            }
            toml::Value::Table(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_matrix() {
        let chatgpt = AuthMode::ChatGpt {
            plan: Some("pro".into()),
            email: None,
        };
        for f in Feature::ALL {
            assert!(chatgpt.allows(f), "{f}");
            assert!(!AuthMode::None.allows(f), "{f}");
        }
        assert!(AuthMode::ApiKey.allows(Feature::CliRun));
        assert!(AuthMode::ApiKey.allows(Feature::AppServerRun));
        assert!(!AuthMode::ApiKey.allows(Feature::FastMode));
        assert!(!AuthMode::ApiKey.allows(Feature::RateLimits));
        assert!(!AuthMode::ApiKey.allows(Feature::Cloud));
    }

    #[test]
    fn errors_name_the_fix() {
        let e = AuthMode::ApiKey
            .require(Feature::FastMode)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Fast Mode") && e.contains("codex login"), "{e}");
        let e = AuthMode::None.require(Feature::CliRun).unwrap_err();
        assert!(matches!(e, Error::NotLoggedIn));
        assert!(e.to_string().contains("codex login"));
    }

    #[test]
    fn login_status_wordings() {
        assert_eq!(
            AuthMode::from_login_status("Not logged in\n", Some(1)),
            Some(AuthMode::None)
        );
        assert_eq!(
            AuthMode::from_login_status("API key configured - sk-te***st\n", Some(0)),
            Some(AuthMode::ApiKey)
        );
        assert_eq!(
            AuthMode::from_login_status("Logged in using an API key - sk-x\n", Some(0)),
            Some(AuthMode::ApiKey)
        );
        assert!(matches!(
            AuthMode::from_login_status("Logged in using ChatGPT\n", Some(0)),
            Some(AuthMode::ChatGpt { .. })
        ));
        assert_eq!(AuthMode::from_login_status("???", Some(0)), None);
    }
    const MOCK: &str = "model_provider = \"mock\"\n[model_providers.mock]\nbase_url = \"http://127.0.0.1:1/v1\"\nrequires_openai_auth = false\n[model_providers.gated]\nbase_url = \"http://127.0.0.1:2/v1\"\nrequires_openai_auth = true\n[model_providers.plain]\nbase_url = \"http://127.0.0.1:3/v1\"\n";

    fn provider(config: &str, profile: Option<&str>, ctx: &AuthContext) -> Option<(String, bool)> {
        resolve_model_provider(config, profile, ctx).map(|p| (p.id, p.requires_openai_auth))
    }

    fn p(id: &str, requires: bool) -> Option<(String, bool)> {
        Some((id.to_owned(), requires))
    }

    #[test]
    fn provider_from_config_toml() {
        let ctx = AuthContext::new();
        assert_eq!(provider("", None, &ctx), p("openai", true));
        assert_eq!(
            provider("model = \"gpt-5.5\"", None, &ctx),
            p("openai", true)
        );
        assert_eq!(provider(MOCK, None, &ctx), p("mock", false));
        // a configured provider needs no OpenAI login unless it says so
        let plain = MOCK.replace("model_provider = \"mock\"", "model_provider = \"plain\"");
        assert_eq!(provider(&plain, None, &ctx), p("plain", false));
        let gated = MOCK.replace("model_provider = \"mock\"", "model_provider = \"gated\"");
        assert_eq!(provider(&gated, None, &ctx), p("gated", true));
        for (id, requires) in [
            ("ollama", false),
            ("lmstudio", false),
            ("amazon-bedrock", false),
            ("openai", true),
        ] {
            let text = format!("model_provider = \"{id}\"");
            assert_eq!(provider(&text, None, &ctx), p(id, requires), "{id}");
        }
        // built-ins are not overridden by an entry of the same id
        let text =
            "model_provider = \"openai\"\n[model_providers.openai]\nrequires_openai_auth = false\n";
        assert_eq!(provider(text, None, &ctx), p("openai", true));
        // unknown id, malformed file: cannot tell
        assert_eq!(provider("model_provider = \"nosuch\"", None, &ctx), None);
        assert_eq!(provider("this is [not toml", None, &ctx), None);
    }

    #[test]
    fn overrides_and_profiles() {
        // -c model_provider=...
        let ctx = AuthContext::new().config("model_provider", "gated");
        assert_eq!(provider(MOCK, None, &ctx), p("gated", true));
        // -c on a nested key, and a whole provider table as a JSON object
        let ctx = AuthContext::new().config("model_providers.mock.requires_openai_auth", true);
        assert_eq!(provider(MOCK, None, &ctx), p("mock", true));
        let ctx = AuthContext::new().config("model_provider", "fresh").config(
            "model_providers.fresh",
            serde_json::json!({"base_url": "http://127.0.0.1:4/v1", "retries": [1, 2]}),
        );
        assert_eq!(provider("", None, &ctx), p("fresh", false));
        // a null override is skipped
        let ctx = AuthContext::new().config("model_provider", serde_json::Value::Null);
        assert_eq!(provider(MOCK, None, &ctx), p("mock", false));
        // --profile NAME layers NAME.config.toml (codex 0.169.0), overrides still win
        let ctx = AuthContext::new().profile("work");
        assert_eq!(
            provider(MOCK, Some("model_provider = \"gated\""), &ctx),
            p("gated", true)
        );
        let ctx = AuthContext::new()
            .profile("work")
            .config("model_provider", "ollama");
        assert_eq!(
            provider(MOCK, Some("model_provider = \"gated\""), &ctx),
            p("ollama", false)
        );
        assert_eq!(provider(MOCK, Some("oops = "), &ctx), None);
        // older versions: `profile = "x"` / --profile x select [profiles.x], which wins
        let legacy =
            format!("profile = \"work\"\n{MOCK}\n[profiles.work]\nmodel_provider = \"gated\"\n");
        assert_eq!(
            provider(&legacy, None, &AuthContext::new()),
            p("gated", true)
        );
        let ctx = AuthContext::new().config("profile", "none-such");
        assert_eq!(provider(&legacy, None, &ctx), p("mock", false));
        let tables = format!("{MOCK}\n[profiles.home]\nmodel_provider = \"openai\"\n");
        let ctx = AuthContext::new().profile("home");
        assert_eq!(provider(&tables, None, &ctx), p("openai", true));
        let ctx = AuthContext::new().config("profile", "home");
        assert_eq!(provider(&tables, None, &ctx), p("openai", true));
    }

    #[test]
    fn oss_selects_the_local_provider() {
        let ctx = AuthContext::new().oss(true);
        // none configured: codex refuses by itself, but needs no OpenAI login either way
        assert_eq!(provider(MOCK, None, &ctx), p("oss", false));
        assert_eq!(
            provider("oss_provider = \"lmstudio\"", None, &ctx),
            p("lmstudio", false)
        );
        let ctx = AuthContext::new().oss(true).local_provider("ollama");
        assert_eq!(
            provider("oss_provider = \"lmstudio\"", None, &ctx),
            p("ollama", false)
        );
        // an oss_provider naming a configured provider is looked up like any other
        let text = format!("oss_provider = \"gated\"\n{MOCK}");
        assert_eq!(
            provider(&text, None, &AuthContext::new().oss(true)),
            p("gated", true)
        );
        let text = format!("{MOCK}\n[profiles.p]\noss_provider = \"ollama\"\n");
        let ctx = AuthContext::new().oss(true).profile("p");
        assert_eq!(provider(&text, None, &ctx), p("ollama", false));
        // without --oss the oss_provider setting is not used
        assert_eq!(
            provider("oss_provider = \"ollama\"", None, &AuthContext::new()),
            p("openai", true)
        );
    }

    #[test]
    fn model_provider_reads_the_home_of_the_context() {
        let home = tempfile::tempdir().unwrap();
        let ctx = AuthContext::new().env("CODEX_HOME", home.path().to_string_lossy());
        assert_eq!(ctx.codex_home().as_deref(), Some(home.path()));
        // no config.toml: the default provider
        assert_eq!(ctx.model_provider().unwrap().id, "openai");
        std::fs::write(home.path().join("config.toml"), MOCK).unwrap();
        let found = ctx.model_provider().unwrap();
        assert_eq!(
            (found.id.as_str(), found.requires_openai_auth),
            ("mock", false)
        );
        std::fs::write(
            home.path().join("work.config.toml"),
            "model_provider = \"gated\"\n",
        )
        .unwrap();
        let found = ctx.clone().profile("work").model_provider().unwrap();
        assert_eq!(found.id, "gated");
        // a missing profile file adds nothing
        assert_eq!(
            ctx.clone().profile("other").model_provider().unwrap().id,
            "mock"
        );
        std::fs::write(home.path().join("config.toml"), "[[[").unwrap();
        assert_eq!(ctx.model_provider(), None);
        // a later setting wins; a removed CODEX_HOME falls back to ~/.codex
        let ctx = AuthContext::new()
            .env("CODEX_HOME", "/a")
            .env("CODEX_HOME", "/b");
        assert_eq!(ctx.codex_home().unwrap(), Path::new("/b"));
        let ctx = AuthContext::new()
            .env_remove("CODEX_HOME")
            .env("HOME", "/home/someone");
        assert_eq!(ctx.codex_home().unwrap(), Path::new("/home/someone/.codex"));
    }

    #[test]
    fn auth_rejections_are_recognised_by_codex_wording() {
        for message in [
            "unexpected status 401 Unauthorized: mock HTTP status 401, url: http://127.0.0.1:1/v1/responses",
            "Missing environment variable: `OPENAI_API_KEY`.",
            "unexpected status 401: Your access token could not be refreshed because you have since logged out or signed in to another account. Please sign in again.",
            "Not logged in",
        ] {
            assert!(is_auth_rejection(message), "{message}");
        }
        for message in [
            "stream disconnected before completion",
            "exceeded retry limit, last status: 429 Too Many Requests",
            "We’re currently experiencing high demand, which may cause temporary errors.",
            "unexpected status 400 Bad Request: {\"error\":\"bad\"}",
        ] {
            assert!(!is_auth_rejection(message), "{message}");
        }
    }

    #[test]
    fn only_certain_refusals() {
        assert!(AuthMode::ApiKey.rules_out(Feature::FastMode));
        assert!(AuthMode::OtherProvider { name: "x".into() }.rules_out(Feature::FastMode));
        assert!(!AuthMode::None.rules_out(Feature::FastMode));
        assert!(!AuthMode::None.rules_out(Feature::CliRun));
        assert!(!AuthMode::ApiKey.rules_out(Feature::CliRun));
    }
}
