//! Choosing a backend: a small pure function over what is available and what the request
//! needs.
//!
//! Preference order: the shared app-server of the resident broker, then a private app-server,
//! then one-shot `codex exec`. `codex exec` forces the approval policy "never", so it is a
//! candidate only when the request needs no approvals (approval policy "never", or a preset
//! that never asks such as [`Preset::DangerFullAccess`](codex_core::Preset::DangerFullAccess)).
//! The result is an ordered list of candidates: if a backend cannot be reached at all (it
//! could not be spawned or connected to before the turn started), the next one is tried.

use codex_core::{ApprovalPolicy, BackendKind, TaskSpec};

use crate::error::{Error, Result};

/// What a request needs from a backend.
///
/// ```
/// use codex_agent::select::Requirements;
/// use codex_core::{ApprovalPolicy, TaskSpec};
/// let needs = Requirements::for_spec(&TaskSpec::new("x").approval(ApprovalPolicy::Never));
/// assert!(!needs.approvals);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Requirements {
    /// Codex may ask for approvals (the approval policy is not "never", or unknown).
    pub approvals: bool,
}

impl Requirements {
    /// What `spec` needs: approvals unless its policy is "never". An unset policy means
    /// codex's configured default, which may ask, so it counts as needing approvals.
    ///
    /// ```
    /// use codex_agent::select::Requirements;
    /// use codex_core::{Preset, TaskSpec};
    /// assert!(Requirements::for_spec(&TaskSpec::new("x").preset(Preset::FullAuto)).approvals);
    /// assert!(!Requirements::for_spec(&TaskSpec::new("x").preset(Preset::DangerFullAccess)).approvals);
    /// ```
    pub fn for_spec(spec: &TaskSpec) -> Self {
        Requirements {
            approvals: spec.approval != Some(ApprovalPolicy::Never),
        }
    }

    /// Requirements with approvals needed or not.
    ///
    /// ```
    /// assert!(codex_agent::select::Requirements::new(true).approvals);
    /// ```
    pub fn new(approvals: bool) -> Self {
        Requirements { approvals }
    }
}

/// The preference rank of a backend kind (lower is preferred).
fn rank(kind: BackendKind) -> u8 {
    match kind {
        BackendKind::Broker => 0,
        BackendKind::AppServer => 1,
        BackendKind::Exec => 2,
        _ => 3,
    }
}

/// Why `kind` cannot serve `needs`, if it cannot.
fn ruled_out(kind: BackendKind, needs: Requirements) -> Option<&'static str> {
    match kind {
        BackendKind::Exec if needs.approvals => Some(
            "exec cannot answer approvals (it forces the approval policy \"never\"); use approval policy never, or add an app-server backend",
        ),
        BackendKind::Broker | BackendKind::AppServer | BackendKind::Exec => None,
        _ => Some("unknown backend kind"),
    }
}

/// The backends to try, best first, among `available`, for `needs`.
///
/// ```
/// use codex_agent::select::{select_backends, Requirements};
/// use codex_core::BackendKind::*;
/// assert_eq!(select_backends(&[Exec, AppServer, Broker], Requirements::new(false)).unwrap(), [Broker, AppServer, Exec]);
/// assert_eq!(select_backends(&[Exec, AppServer], Requirements::new(true)).unwrap(), [AppServer]);
/// assert!(select_backends(&[Exec], Requirements::new(true)).is_err());
/// ```
pub fn select_backends(available: &[BackendKind], needs: Requirements) -> Result<Vec<BackendKind>> {
    let mut out: Vec<BackendKind> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for kind in available {
        if out.contains(kind) {
            continue;
        }
        match ruled_out(*kind, needs) {
            None => out.push(*kind),
            Some(why) => reasons.push(format!("{kind}: {why}")),
        }
    }
    out.sort_by_key(|k| rank(*k));
    if out.is_empty() {
        let reason = if available.is_empty() {
            "no backend is configured".to_owned()
        } else {
            reasons.join("; ")
        };
        return Err(Error::NoBackend { reason });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendKind::*;

    #[test]
    fn preference_and_fallback() {
        let no = Requirements::new(false);
        let yes = Requirements::new(true);
        assert_eq!(select_backends(&[Exec], no).unwrap(), [Exec]);
        assert_eq!(select_backends(&[Exec, Exec], no).unwrap(), [Exec]);
        assert_eq!(
            select_backends(&[AppServer, Exec], no).unwrap(),
            [AppServer, Exec]
        );
        assert_eq!(select_backends(&[Exec, Broker], yes).unwrap(), [Broker]);
        assert_eq!(
            select_backends(&[AppServer, Broker], yes).unwrap(),
            [Broker, AppServer]
        );
        let err = select_backends(&[Exec], yes).unwrap_err();
        assert!(err.to_string().contains("approval"), "{err}");
        let err = select_backends(&[], no).unwrap_err();
        assert!(
            err.to_string().contains("no backend is configured"),
            "{err}"
        );
    }

    #[test]
    fn requirements_follow_the_policy() {
        assert!(Requirements::for_spec(&TaskSpec::new("x")).approvals);
        for (policy, asks) in [
            (ApprovalPolicy::Never, false),
            (ApprovalPolicy::OnRequest, true),
            (ApprovalPolicy::OnFailure, true),
            (ApprovalPolicy::Untrusted, true),
        ] {
            assert_eq!(
                Requirements::for_spec(&TaskSpec::new("x").approval(policy)).approvals,
                asks
            );
        }
    }
}
