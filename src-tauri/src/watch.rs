//! How often the app asks the agent, and what: the pure half of the tray's
//! watcher ([`crate::tray::watch`]).
//!
//! The app keeps the tray, the notifications and (when it exists) the
//! window in step with the agent by asking it for its `status`, a local
//! read the agent answers from memory. It asks every [`POLL_OPEN`] while the
//! window exists and every [`POLL_CLOSED`] while it does not, and at once
//! after a menu action or when the window opens or closes. The window never
//! polls: the watcher pushes every change to it ([`Update`]).
//!
//! The catalogue (`apps`) is different: the agent answers it by asking the
//! broker (a signed request, cached 10 s), so it is only asked when the
//! status changed in a way that can change it ([`apps_may_differ`]), after
//! an action, and otherwise every [`APPS_OPEN`] while the window shows
//! access decisions, or every [`APPS_CLOSED`] for the tray menu alone.
//! `scripts/bench-app-idle` measures what one status poll costs.

use std::time::Duration;

use agent::control::view::{AppView, IdentityView, StatusView};
use serde::Serialize;

/// Between two status polls while the window exists.
pub const POLL_OPEN: Duration = Duration::from_secs(2);
/// Between two status polls while there is no window (tray and
/// notifications only).
pub const POLL_CLOSED: Duration = Duration::from_secs(10);
/// The catalogue's age at which it is asked again while the window exists.
pub const APPS_OPEN: Duration = Duration::from_secs(60);
/// The same with no window.
pub const APPS_CLOSED: Duration = Duration::from_secs(600);

/// The wait before the next status poll.
pub fn poll_every(window: bool) -> Duration {
    if window { POLL_OPEN } else { POLL_CLOSED }
}

/// The largest age of the catalogue before it is asked again.
pub fn apps_every(window: bool) -> Duration {
    if window { APPS_OPEN } else { APPS_CLOSED }
}

/// Whether going from `before` to `after` may change the catalogue's
/// answer (who is signed in, the device's standing, which tunnels exist
/// and in what state). Byte counters, handshakes and the time posture was
/// collected do not.
pub fn apps_may_differ(before: Option<&StatusView>, after: &StatusView) -> bool {
    let Some(before) = before else {
        return true;
    };
    let who = |s: &StatusView| match &s.identity {
        IdentityView::Valid { user, .. } => Some(user.clone()),
        _ => None,
    };
    let tunnels = |s: &StatusView| {
        s.tunnels
            .iter()
            .map(|t| (t.app.clone(), t.state, t.reason.clone()))
            .collect::<Vec<_>>()
    };
    let compliant = |s: &StatusView| s.verdict.as_ref().map(|v| v.compliant);
    who(before) != who(after)
        || std::mem::discriminant(&before.identity) != std::mem::discriminant(&after.identity)
        || before.enrolment != after.enrolment
        || compliant(before) != compliant(after)
        || before.broker_unreachable.is_some() != after.broker_unreachable.is_some()
        || tunnels(before) != tunnels(after)
}

/// What the watcher pushes to the window (event [`EVENT`]); `ui/src/api.ts`
/// `AgentUpdate` mirrors it. `apps` is absent when it was not asked again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Update {
    /// The agent's status, or `None` with `error` set.
    pub status: Option<StatusView>,
    /// The catalogue when it was asked again.
    pub apps: Option<Vec<AppView>>,
    /// Why the agent could not be asked.
    pub error: Option<String>,
}

/// The event the window listens to.
pub const EVENT: &str = "agent";

/// What identifies the app's executable file on disk: a package update
/// replaces the file (a new inode, a new modification time), while this
/// process keeps running the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeStamp {
    /// The file's length.
    pub len: u64,
    /// Its modification time.
    pub modified: Option<std::time::SystemTime>,
    /// Its inode (Unix; 0 elsewhere).
    pub inode: u64,
}

impl ExeStamp {
    /// The stamp of the file at `path`; `None` when it cannot be read.
    pub fn of(path: &std::path::Path) -> Option<ExeStamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(ExeStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }
}

/// Whether the app should restart into a new version: the device service
/// says it updated Sallyport, and the app's own file was replaced since
/// this process started (so a service-only update, or one whose package
/// left the app alone, never makes it restart, let alone in a loop).
pub fn restart_for_update(
    status: &StatusView,
    at_start: Option<&ExeStamp>,
    now: Option<&ExeStamp>,
) -> bool {
    let updated = matches!(
        status.update.as_ref().map(|u| &u.phase),
        Some(agent::device_service::updater::Phase::Updated { .. })
    );
    updated && at_start.is_some() && now.is_some() && at_start != now
}

#[cfg(test)]
mod tests {
    use agent::control::view::TunnelState;

    use super::*;

    /// From JSON, as the agent sends it (fields the test does not care
    /// about take their defaults).
    fn status(user: Option<&str>, tunnel: Option<TunnelState>) -> StatusView {
        let identity = match user {
            Some(u) => serde_json::json!({
                "state": "valid", "user": u, "expires_at": "2026-11-23T18:00:00Z", "mfa": "otp"
            }),
            None => serde_json::json!({"state": "signed_out"}),
        };
        let tunnels: Vec<serde_json::Value> = tunnel
            .map(|state| {
                serde_json::json!({
                    "app": "wiki", "state": state, "reason": null, "forwards": [], "socks": null,
                    "bytes_in": 0, "bytes_out": 0, "last_handshake": null, "expires_at": null
                })
            })
            .into_iter()
            .collect();
        serde_json::from_value(serde_json::json!({
            "identity": identity,
            "verdict": {"compliant": true, "violations": [], "valid_until": "2026-11-23T11:00:00Z"},
            "tunnels": tunnels,
            "posture_collected_at": "2026-11-23T10:00:00Z",
            "enrolment": {"state": "enrolled", "device_id": "oKIy"}
        }))
        .unwrap()
    }

    #[test]
    fn the_app_restarts_only_when_updated_and_its_file_was_replaced() {
        use agent::device_service::updater::{Phase, UpdateStatus};
        let old = ExeStamp {
            len: 10,
            modified: None,
            inode: 1,
        };
        let new = ExeStamp {
            inode: 2,
            ..old.clone()
        };
        let mut s = status(Some("alice"), None);
        assert!(!restart_for_update(&s, Some(&old), Some(&new)), "no update");
        s.update = Some(UpdateStatus {
            running: "0.2.0".into(),
            phase: Phase::Updated {
                from: "0.1.0".into(),
                to: "0.2.0".into(),
            },
            last_check: None,
            recent: Vec::new(),
        });
        assert!(restart_for_update(&s, Some(&old), Some(&new)));
        assert!(
            !restart_for_update(&s, Some(&old), Some(&old)),
            "the app's file is the same"
        );
        assert!(!restart_for_update(&s, None, Some(&new)));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sallyport-app");
        std::fs::write(&file, b"old").unwrap();
        let before = ExeStamp::of(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, b"newer").unwrap();
        assert_ne!(
            Some(before),
            ExeStamp::of(&file),
            "a replaced file has a new stamp"
        );
    }

    #[test]
    fn the_window_is_kept_current_faster_than_the_tray_alone() {
        assert!(poll_every(true) < poll_every(false));
        assert!(apps_every(true) < apps_every(false));
        // Nothing asks faster than a person notices, nor than the agent's
        // own catalogue cache (10 s).
        assert!(poll_every(true) >= Duration::from_secs(1));
        assert!(apps_every(true) > Duration::from_secs(10));
    }

    #[test]
    fn counters_and_timestamps_do_not_ask_the_broker_again() {
        let before = status(Some("alice"), Some(TunnelState::Up));
        let mut after = before.clone();
        after.tunnels[0].bytes_in = 4096;
        after.tunnels[0].last_handshake = Some("2026-11-23T10:02:00Z".into());
        after.posture_collected_at = Some("2026-11-23T10:01:00Z".into());
        if let Some(v) = after.verdict.as_mut() {
            v.valid_until = "2026-11-23T11:15:00Z".into();
        }
        assert!(!apps_may_differ(Some(&before), &after));
    }

    #[test]
    fn sign_in_tunnels_and_compliance_do() {
        let base = status(Some("alice"), Some(TunnelState::Up));
        assert!(apps_may_differ(None, &base));
        assert!(apps_may_differ(
            Some(&base),
            &status(None, Some(TunnelState::Up))
        ));
        assert!(apps_may_differ(
            Some(&base),
            &status(Some("bob"), Some(TunnelState::Up))
        ));
        assert!(apps_may_differ(
            Some(&base),
            &status(Some("alice"), Some(TunnelState::Down))
        ));
        assert!(apps_may_differ(Some(&base), &status(Some("alice"), None)));
        let mut failing = base.clone();
        if let Some(v) = failing.verdict.as_mut() {
            v.compliant = false;
        }
        assert!(apps_may_differ(Some(&base), &failing));
        let mut unreachable = base.clone();
        unreachable.broker_unreachable = Some("access broker unreachable, retrying".into());
        assert!(apps_may_differ(Some(&base), &unreachable));
    }
}
