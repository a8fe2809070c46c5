//! One entry of the timeline, and the pure parts around it: parsing the
//! stored lines, choosing a period, describing a posture change, and the
//! one-line rendering helpdesk reads ("10:42 wiki: tunnel closed: …").

use posture::check::Status;
use posture::report::Report;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What kind of event an entry is, so the History view and
/// `sallyport history` can group and colour them, and helpdesk can filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Signed in or out, a session that needs a new sign-in, a refresh.
    Session,
    /// A posture collection: its results, and what changed.
    Posture,
    /// The broker's verdict on this device.
    Verdict,
    /// A grant issued or refused.
    Grant,
    /// The access policy denied an application.
    Access,
    /// The access policy asked for a fresh (stronger) sign-in.
    StepUp,
    /// An application's tunnel came up.
    TunnelUp,
    /// An application's tunnel went down.
    TunnelDown,
    /// A revocation: a grant, a session, a device.
    Revocation,
    /// Enrolment and approval of this device.
    Enrolment,
    /// The broker's availability and its catalogue.
    Broker,
    /// A message shown to the user.
    Notice,
    /// The device service's updater: available, installing, updated,
    /// refused and why.
    Update,
}

impl Kind {
    /// The word the CLI prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Posture => "posture",
            Kind::Verdict => "verdict",
            Kind::Grant => "grant",
            Kind::Access => "access",
            Kind::StepUp => "step-up",
            Kind::TunnelUp => "tunnel-up",
            Kind::TunnelDown => "tunnel-down",
            Kind::Revocation => "revocation",
            Kind::Enrolment => "enrolment",
            Kind::Broker => "broker",
            Kind::Notice => "notice",
            Kind::Update => "update",
        }
    }
}

/// One event, as stored (one JSON line) and as the front ends see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What kind of event.
    pub kind: Kind,
    /// The application it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// What happened, in a few words ("tunnel closed").
    pub what: String,
    /// Why, when there is a reason ("disk encryption is off").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Longest `what` or `reason` kept: an entry is a line, not a log dump.
const MAX_TEXT: usize = 1000;

impl Entry {
    /// An entry of `kind` saying `what`, at `at`.
    pub fn new(at: OffsetDateTime, kind: Kind, what: impl Into<String>) -> Entry {
        Entry {
            at,
            kind,
            app: None,
            what: clip(what.into()),
            reason: None,
        }
    }

    /// The same, about `app`.
    pub fn app(mut self, app: impl Into<String>) -> Entry {
        self.app = Some(app.into());
        self
    }

    /// The same, with its reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Entry {
        self.reason = Some(clip(reason.into()));
        self
    }

    /// One line: `HH:MM:SS app: what: reason` in UTC with the date when
    /// `with_date`.
    pub fn line(&self, with_date: bool) -> String {
        let format = if with_date {
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z")
        } else {
            time::macros::format_description!("[hour]:[minute]:[second]")
        };
        let at = self.at.format(&format).unwrap_or_default();
        let mut line = format!("{at} {:<11} ", self.kind.as_str());
        if let Some(app) = &self.app {
            line.push_str(app);
            line.push_str(": ");
        }
        line.push_str(&self.what);
        if let Some(reason) = &self.reason {
            line.push_str(": ");
            line.push_str(reason);
        }
        line
    }
}

/// `text` cut to [`MAX_TEXT`] bytes at a character boundary.
fn clip(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The entries of a stored timeline (one JSON object per line); a line
/// that does not parse (a torn last write, a hand edit) is skipped, never
/// fatal. Pure.
pub fn parse_lines(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Parses `--since`: an RFC 3339 time, or a span back from `now` such as
/// `90s`, `30m`, `2h`, `7d`. Pure.
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(at);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: give a unit (s, m, h or d) or an RFC 3339 time"))?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| {
        format!("{text:?}: expected a number then s, m, h or d, or an RFC 3339 time")
    })?;
    let per_unit: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(per_unit)
        .and_then(|secs| now.checked_sub(time::Duration::seconds(secs)))
        .ok_or_else(|| format!("{text:?}: too far back"))
}

/// What changed between two posture reports, one phrase per check whose
/// status moved ("disk_encryption pass → fail"), in the report's order.
/// Against no previous report, every check that is not a pass (the first
/// collection after a start says what is wrong). Pure.
pub fn posture_changes(before: Option<&Report>, after: &Report) -> Vec<String> {
    after
        .checks
        .iter()
        .filter_map(|check| {
            let was = before.and_then(|b| b.check(check.id)).map(|c| c.status);
            match was {
                Some(was) if was == check.status => None,
                Some(was) => Some(format!("{} {was} → {}", check.id.as_str(), check.status)),
                None if check.status == Status::Pass => None,
                None => Some(format!("{} {}", check.id.as_str(), check.status)),
            }
        })
        .collect()
}

/// "3 pass, 1 fail, 1 unknown" for a report. Pure.
pub fn posture_counts(report: &Report) -> String {
    format!(
        "{} pass, {} fail, {} unknown",
        report.count(Status::Pass),
        report.count(Status::Fail),
        report.count(Status::Unknown)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn entries_round_trip_and_bad_lines_are_skipped() {
        let e = Entry::new(
            datetime!(2026-12-03 10:42:00 UTC),
            Kind::TunnelDown,
            "tunnel closed",
        )
        .app("wiki")
        .reason("disk encryption is off");
        let stored = format!(
            "{}\n{{\"torn\n\n{}\n",
            serde_json::to_string(&e).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
        assert_eq!(parse_lines(&stored), vec![e.clone(), e.clone()]);
        assert_eq!(
            e.line(false),
            "10:42:00 tunnel-down wiki: tunnel closed: disk encryption is off"
        );
        assert!(e.line(true).starts_with("2026-12-03 10:42:00Z "));
    }

    #[test]
    fn long_text_is_clipped_at_a_character() {
        let e = Entry::new(OffsetDateTime::UNIX_EPOCH, Kind::Notice, "é".repeat(2000));
        assert!(e.what.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(e.what.ends_with('…'));
    }

    #[test]
    fn since_takes_a_time_or_a_span() {
        let now = datetime!(2026-12-03 12:00:00 UTC);
        assert_eq!(
            parse_since("2h", now).unwrap(),
            datetime!(2026-12-03 10:00:00 UTC)
        );
        assert_eq!(
            parse_since("7d", now).unwrap(),
            datetime!(2026-11-26 12:00:00 UTC)
        );
        assert_eq!(
            parse_since("2026-12-03T10:42:00Z", now).unwrap(),
            datetime!(2026-12-03 10:42:00 UTC)
        );
        for bad in [
            "",
            "2",
            "2w",
            "h",
            "yesterday",
            "99999999999999999999s",
            "9223372036854775807d",
            "9223372036854775807s",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in ".{0,300}") {
            let _ = parse_lines(&text);
            let _ = parse_since(&text, OffsetDateTime::UNIX_EPOCH);
        }
    }
}
