//! IT's update policy as the managed settings state it (`update.mode`,
//! `update.pin`, `update.window`), parsed and checked. Pure.

use semver::Version;

/// `update.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Never check.
    Off,
    /// Check and tell the user; install only when they (or IT) ask.
    Notify,
    /// Check and install within the window.
    Auto,
}

impl Mode {
    /// The setting's value; anything else is an error naming the choices.
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "off" => Ok(Mode::Off),
            "notify" => Ok(Mode::Notify),
            "auto" => Ok(Mode::Auto),
            other => Err(format!(
                "update.mode {other:?}: expected off, notify or auto"
            )),
        }
    }
}

/// `update.pin`: a SemVer version.
pub fn parse_pin(text: &str) -> Result<Version, String> {
    Version::parse(text.trim()).map_err(|e| format!("update.pin {text:?}: {e}"))
}

/// `update.window`: local hours when `auto` may install, `HH:MM-HH:MM`,
/// wrapping past midnight when the end is before the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallWindow {
    /// Minutes after midnight it opens.
    pub from: u16,
    /// Minutes after midnight it closes (exclusive).
    pub to: u16,
}

impl InstallWindow {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<InstallWindow, String> {
        let bad = || format!("update.window {text:?}: expected HH:MM-HH:MM, e.g. 02:00-05:00");
        let (from, to) = text.trim().split_once('-').ok_or_else(bad)?;
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (from, to) = (minutes(from).ok_or_else(bad)?, minutes(to).ok_or_else(bad)?);
        if from == to {
            return Err(format!("update.window {text:?}: an empty window"));
        }
        Ok(InstallWindow { from, to })
    }

    /// Whether local time `t` is inside the window.
    pub fn contains(&self, t: time::Time) -> bool {
        let now = u16::from(t.hour()) * 60 + u16::from(t.minute());
        if self.from < self.to {
            (self.from..self.to).contains(&now)
        } else {
            now >= self.from || now < self.to
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::time;

    #[test]
    fn modes_pins_and_windows_parse() {
        assert_eq!(Mode::parse("auto"), Ok(Mode::Auto));
        assert!(Mode::parse("sometimes").is_err());
        assert_eq!(parse_pin("0.1.0").unwrap(), Version::new(0, 1, 0));
        assert!(parse_pin("latest").is_err());
        let night = InstallWindow::parse("02:00-05:00").unwrap();
        assert!(night.contains(time!(02:00)));
        assert!(night.contains(time!(04:59)));
        assert!(!night.contains(time!(05:00)));
        assert!(!night.contains(time!(12:00)));
        let wrap = InstallWindow::parse("22:30-01:00").unwrap();
        assert!(wrap.contains(time!(23:00)));
        assert!(wrap.contains(time!(00:30)));
        assert!(!wrap.contains(time!(01:00)));
        assert!(!wrap.contains(time!(22:00)));
        for bad in [
            "",
            "2-5",
            "02:00",
            "25:00-01:00",
            "02:60-03:00",
            "02:00-02:00",
            "x:00-01:00",
        ] {
            assert!(InstallWindow::parse(bad).is_err(), "{bad}");
        }
    }
}
