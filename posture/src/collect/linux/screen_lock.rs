//! GNOME screen lock, read as the desktop user.
//!
//! `gsettings` without the user's session bus prints the schema defaults
//! (lock enabled), which would be a false pass; so without a desktop session
//! the check is `unknown`, not a guess.

use std::sync::Arc;

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::collect::{CheckFuture, Context, boxed};
use crate::parse::linux::gsettings::{self, GnomeLock};
use crate::probe;

const GNOME_LIKE: &[&str] = &["GNOME", "UNITY", "UBUNTU", "BUDGIE", "CINNAMON", "POP"];

pub(super) fn screen_lock(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::ScreenLock;
        let desktop = std::env::var("XDG_CURRENT_DESKTOP").unwrap_or_default();
        let has_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some();
        if desktop.is_empty() || !has_bus {
            return Check::unknown(
                id,
                Unknown::new(
                    UnknownKind::NotApplicable,
                    "no desktop session (XDG_CURRENT_DESKTOP or the session bus is missing): run as the signed-in desktop user",
                ),
            );
        }
        let upper = desktop.to_ascii_uppercase();
        if !GNOME_LIKE.iter().any(|d| upper.contains(d)) {
            return Check::unknown(
                id,
                Unknown::new(
                    UnknownKind::SourceMissing,
                    format!("desktop {desktop} is not supported yet (GNOME-based desktops are)"),
                ),
            );
        }
        let read = |schema: &'static str, key: &'static str| {
            let timeout = context.command_timeout;
            async move { probe::run_ok("gsettings", &["get", schema, key], timeout).await }
        };
        let (enabled, idle, delay) = tokio::join!(
            read("org.gnome.desktop.screensaver", "lock-enabled"),
            read("org.gnome.desktop.session", "idle-delay"),
            read("org.gnome.desktop.screensaver", "lock-delay"),
        );
        let parsed = (|| -> Result<GnomeLock, Unknown> {
            Ok(GnomeLock {
                lock_enabled: gsettings::parse_gsettings_bool(&enabled?.stdout)?,
                idle_delay: gsettings::parse_gsettings_uint(&idle?.stdout)?,
                lock_delay: gsettings::parse_gsettings_uint(&delay?.stdout)?,
            })
        })();
        let lock = match parsed {
            Ok(lock) => lock,
            Err(reason) => return Check::unknown(id, reason),
        };
        let evidence = format!(
            "ran `gsettings get` as this user: lock-enabled={} idle-delay={} lock-delay={}",
            lock.lock_enabled, lock.idle_delay, lock.lock_delay
        );
        match lock.timeout_seconds() {
            Some(seconds) => Check::pass(id, format!("locks after {seconds} s idle"))
                .fact("enabled", true)
                .fact("timeout_seconds", seconds)
                .evidence(evidence),
            None => Check::fail(id, "the screen never locks by itself")
                .fact("enabled", false)
                .evidence(evidence)
                .remediation("Settings → Privacy → Screen Lock: turn on Automatic Screen Lock and set Blank Screen Delay to 5 minutes or less."),
        }
    })
}
