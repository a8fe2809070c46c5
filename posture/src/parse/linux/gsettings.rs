//! `gsettings get` values (GVariant text format) for the GNOME screen lock.

use super::super::ParseError;

const SOURCE: &str = "`gsettings get`";

/// `true` / `false`.
pub fn parse_gsettings_bool(text: &str) -> Result<bool, ParseError> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ParseError::new(
            SOURCE,
            format!("expected true/false, got {other:.40}"),
        )),
    }
}

/// `uint32 300` (or a bare `300`).
pub fn parse_gsettings_uint(text: &str) -> Result<u32, ParseError> {
    let text = text.trim();
    let number = text.strip_prefix("uint32 ").unwrap_or(text);
    number
        .trim()
        .parse::<u32>()
        .map_err(|_| ParseError::new(SOURCE, format!("expected uint32, got {text:.40}")))
}

/// The GNOME lock settings combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GnomeLock {
    /// `org.gnome.desktop.screensaver lock-enabled`.
    pub lock_enabled: bool,
    /// `org.gnome.desktop.session idle-delay`, seconds; 0 = never idle.
    pub idle_delay: u32,
    /// `org.gnome.desktop.screensaver lock-delay`, seconds after blanking.
    pub lock_delay: u32,
}

impl GnomeLock {
    /// Seconds of inactivity until the screen is locked; `None` when it never
    /// locks by itself (lock disabled, or the session never goes idle).
    pub fn timeout_seconds(self) -> Option<u64> {
        (self.lock_enabled && self.idle_delay > 0)
            .then(|| u64::from(self.idle_delay) + u64::from(self.lock_delay))
    }
}
