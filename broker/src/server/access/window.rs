//! Time windows (`decision.window` in `sallyport.access`): is an application
//! open now, until when, and when does it open again. Pure: the instant and
//! the zone are passed in. The broker does this arithmetic, not the policy,
//! so the grant's end and the reopening time are right across midnight,
//! weekends and daylight-saving changes whoever writes the Rego.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::input::weekday_name;

/// A window as the policy writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Opening time, `HH:MM` (or `HH:MM:SS`), local.
    pub from: String,
    /// Closing time, `HH:MM` (or `HH:MM:SS`), local; later than `from` (no
    /// overnight windows).
    pub to: String,
    /// The days it opens on (`mon` .. `sun`); every day when absent.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// IANA zone; the broker's `[access] time_zone` when absent.
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// Where `now` falls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    /// Open; it closes at this instant (Unix seconds).
    Open {
        /// Unix seconds.
        closes_at: i64,
    },
    /// Closed; it opens at this instant (Unix seconds), if ever.
    Closed {
        /// Unix seconds; `None` when `days` is empty.
        opens_at: Option<i64>,
    },
}

/// A window that cannot be used: the policy is wrong, and the broker refuses
/// (fails closed) rather than guessing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the access policy's window is invalid: {0}")]
pub struct WindowError(String);

/// A window, parsed.
#[derive(Debug, Clone)]
pub struct Window {
    from: Time,
    to: Time,
    days: Vec<Weekday>,
    tz: TimeZone,
}

impl Window {
    /// Parses `spec`; `default_tz` when it names no zone.
    pub fn parse(spec: &WindowSpec, default_tz: &TimeZone) -> Result<Self, WindowError> {
        let from = hh_mm(&spec.from)?;
        let to = hh_mm(&spec.to)?;
        if from >= to {
            return Err(WindowError(format!(
                "from {} must be earlier than to {} (split an overnight window in two apps or days)",
                spec.from, spec.to
            )));
        }
        let days = match &spec.days {
            None => ALL_DAYS.to_vec(),
            Some(names) => names
                .iter()
                .map(|n| day(n))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let tz = match &spec.time_zone {
            None => default_tz.clone(),
            Some(name) => {
                TimeZone::get(name).map_err(|e| WindowError(format!("time zone {name:?}: {e}")))?
            }
        };
        Ok(Window { from, to, days, tz })
    }

    /// Open or closed at `now` (Unix seconds), with the next boundary.
    pub fn state(&self, now: i64) -> WindowState {
        let Ok(ts) = jiff::Timestamp::from_second(now) else {
            return WindowState::Closed { opens_at: None };
        };
        let here = ts.to_zoned(self.tz.clone());
        let today = here.date();
        let time = here.time();
        if self.days.contains(&today.weekday()) && time >= self.from && time < self.to {
            return WindowState::Open {
                closes_at: self.instant(today, self.to).unwrap_or(now),
            };
        }
        let mut date = today;
        for offset in 0..=7 {
            if offset > 0 {
                match date.tomorrow() {
                    Ok(next) => date = next,
                    Err(_) => break,
                }
            }
            if !self.days.contains(&date.weekday()) || (offset == 0 && time >= self.from) {
                continue;
            }
            if let Some(at) = self.instant(date, self.from)
                && at > now
            {
                return WindowState::Closed { opens_at: Some(at) };
            }
        }
        WindowState::Closed { opens_at: None }
    }

    /// The user's sentence: "Git server is available 07:00–20:00 (Europe/Paris)".
    pub fn describe(&self, app_name: &str) -> String {
        let days = if self.days.len() == 7 {
            String::new()
        } else {
            let names: Vec<&str> = self.days.iter().map(|d| weekday_name(*d)).collect();
            format!(" on {}", names.join(", "))
        };
        format!(
            "{app_name} is available {}–{}{days} ({})",
            clock(self.from),
            clock(self.to),
            self.tz.iana_name().unwrap_or("UTC")
        )
    }

    /// "07:00", or "Mon 07:00" when `at` is not within the next 24 hours of `now`.
    pub fn when(&self, at: i64, now: i64) -> String {
        let Ok(ts) = jiff::Timestamp::from_second(at) else {
            return at.to_string();
        };
        let z = ts.to_zoned(self.tz.clone());
        if at - now < 86_400 {
            clock(z.time())
        } else {
            format!("{} {}", z.strftime("%a"), clock(z.time()))
        }
    }

    /// `date` at `time` in the zone, as Unix seconds. A time a DST change
    /// skips resolves to the instant after the gap (jiff's "compatible").
    fn instant(&self, date: Date, time: Time) -> Option<i64> {
        date.to_datetime(time)
            .to_zoned(self.tz.clone())
            .ok()
            .map(|z| z.timestamp().as_second())
    }
}

const ALL_DAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

/// `HH:MM`, or `HH:MM:SS` when the seconds are not zero.
fn clock(t: Time) -> String {
    if t.second() == 0 {
        t.strftime("%H:%M").to_string()
    } else {
        t.strftime("%H:%M:%S").to_string()
    }
}

fn hh_mm(text: &str) -> Result<Time, WindowError> {
    let bad = || WindowError(format!("{text:?} is not HH:MM or HH:MM:SS"));
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    let num = |p: &str| p.parse::<i8>().map_err(|_| bad());
    let (h, m) = (num(parts[0])?, num(parts[1])?);
    let s = match parts.get(2) {
        Some(p) => num(p)?,
        None => 0,
    };
    if (h, m, s) == (24, 0, 0) {
        // "24:00": the end of the day.
        return Time::new(23, 59, 59, 999_999_999).map_err(|_| bad());
    }
    Time::new(h, m, s, 0).map_err(|_| bad())
}

fn day(name: &str) -> Result<Weekday, WindowError> {
    ALL_DAYS
        .iter()
        .copied()
        .find(|d| weekday_name(*d).eq_ignore_ascii_case(name))
        .ok_or_else(|| WindowError(format!("{name:?} is not a day (mon .. sun)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").unwrap()
    }

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    fn window(from: &str, to: &str, days: Option<&[&str]>) -> Window {
        Window::parse(
            &WindowSpec {
                from: from.into(),
                to: to.into(),
                days: days.map(|d| d.iter().map(|s| (*s).to_owned()).collect()),
                time_zone: None,
            },
            &paris(),
        )
        .unwrap()
    }

    #[test]
    fn inside_it_closes_at_the_local_end() {
        let w = window("07:00", "20:00", None);
        // Thursday 2026-12-03 10:42 Paris = 09:42Z; closes 20:00 Paris = 19:00Z.
        assert_eq!(
            w.state(at("2026-12-03T09:42:00Z")),
            WindowState::Open {
                closes_at: at("2026-12-03T19:00:00Z")
            }
        );
    }

    #[test]
    fn outside_it_names_the_next_opening() {
        let w = window("07:00", "20:00", None);
        // 21:00 Paris: opens tomorrow 07:00 Paris = 06:00Z.
        assert_eq!(
            w.state(at("2026-12-03T20:00:00Z")),
            WindowState::Closed {
                opens_at: Some(at("2026-12-04T06:00:00Z"))
            }
        );
        // 05:00 Paris: opens today at 07:00.
        assert_eq!(
            w.state(at("2026-12-03T04:00:00Z")),
            WindowState::Closed {
                opens_at: Some(at("2026-12-03T06:00:00Z"))
            }
        );
        // The closing instant itself is outside.
        assert!(matches!(
            w.state(at("2026-12-03T19:00:00Z")),
            WindowState::Closed { .. }
        ));
    }

    #[test]
    fn working_days_skip_the_weekend() {
        let w = window("07:00", "20:00", Some(&["mon", "tue", "wed", "thu", "fri"]));
        // Friday 2026-12-04 21:00 Paris: next is Monday 2026-12-07 07:00.
        let s = w.state(at("2026-12-04T20:00:00Z"));
        assert_eq!(
            s,
            WindowState::Closed {
                opens_at: Some(at("2026-12-07T06:00:00Z"))
            }
        );
        assert_eq!(
            w.when(at("2026-12-07T06:00:00Z"), at("2026-12-04T20:00:00Z")),
            "Mon 07:00"
        );
        assert!(w.describe("Git").contains("on mon, tue, wed, thu, fri"));
    }

    #[test]
    fn daylight_saving_moves_the_utc_instant() {
        let w = window("07:00", "20:00", None);
        // Summer: 20:00 CEST is 18:00Z.
        assert_eq!(
            w.state(at("2026-07-01T08:00:00Z")),
            WindowState::Open {
                closes_at: at("2026-07-01T18:00:00Z")
            }
        );
        // The night of the spring change (2026-03-29): 07:00 CEST is 05:00Z.
        assert_eq!(
            w.state(at("2026-03-28T22:00:00Z")),
            WindowState::Closed {
                opens_at: Some(at("2026-03-29T05:00:00Z"))
            }
        );
    }

    #[test]
    fn bad_windows_are_refused() {
        let tz = paris();
        let spec = |from: &str, to: &str| WindowSpec {
            from: from.into(),
            to: to.into(),
            days: None,
            time_zone: None,
        };
        assert!(Window::parse(&spec("20:00", "07:00"), &tz).is_err());
        assert!(Window::parse(&spec("7:00", "20:00"), &tz).is_err());
        assert!(Window::parse(&spec("07:00", "25:00"), &tz).is_err());
        assert!(Window::parse(&spec("00:00", "24:00"), &tz).is_ok());
        assert!(Window::parse(&spec("07:00:61", "20:00"), &tz).is_err());
        assert!(Window::parse(&spec("07:00:00:00", "20:00"), &tz).is_err());
        let precise = Window::parse(&spec("07:00:30", "07:01"), &tz).unwrap();
        assert_eq!(
            precise.describe("Git"),
            "Git is available 07:00:30–07:01 (Europe/Paris)"
        );
        let mut s = spec("07:00", "20:00");
        s.days = Some(vec!["someday".into()]);
        assert!(Window::parse(&s, &tz).is_err());
        s.days = None;
        s.time_zone = Some("Nowhere/Else".into());
        assert!(Window::parse(&s, &tz).is_err());
        s.days = Some(vec![]);
        s.time_zone = None;
        let never = Window::parse(&s, &tz).unwrap();
        assert_eq!(
            never.state(at("2026-12-03T09:42:00Z")),
            WindowState::Closed { opens_at: None }
        );
    }
}
