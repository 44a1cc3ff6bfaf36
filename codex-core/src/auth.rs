//! How codex is signed in, and which features that allows.
//!
//! | feature                          | ChatGPT sign-in | API key | other provider | none |
//! |----------------------------------|-----------------|---------|----------------|------|
//! | CLI, IDE and app-server runs     | yes             | yes     | yes            | no   |
//! | Fast Mode (`service_tier=fast`)  | yes             | no      | no             | no   |
//! | rate-limit reads                 | yes             | no      | no             | no   |
//! | cloud features (tasks, GitHub…)  | yes             | no      | no             | no   |
//! | newest models at launch          | yes             | later   | n/a            | no   |
//!
//! [`AuthMode::require`] turns a "no" into a typed [`Error::FeatureUnavailable`] before any
//! request is made.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

    /// `Ok` when `feature` is available, else the typed error that says how to get it.
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
}
