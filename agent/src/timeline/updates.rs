//! The device service's updater as timeline entries. The service keeps its
//! recent events with their own times (`UpdateStatus::recent`); the agent
//! and `sallyport history` turn the ones they have not recorded yet into
//! entries, so a refused feed is in the timeline even when it happened
//! between two polls or while no agent ran.

use service::updater::{Phase, UpdateEvent, UpdateStatus};
use time::OffsetDateTime;

use super::{Entry, Kind};

/// The entries for `status`'s events newer than `after` (the newest update
/// entry already recorded), oldest first.
pub fn update_entries(status: &UpdateStatus, after: Option<OffsetDateTime>) -> Vec<Entry> {
    status
        .recent
        .iter()
        .filter(|event| after.is_none_or(|seen| event.at > seen))
        .map(|event| update_entry(event, &status.running))
        .collect()
}

/// The newest update entry among `entries`: where [`update_entries`]
/// resumes.
pub fn newest_update<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Option<OffsetDateTime> {
    entries
        .into_iter()
        .filter(|e| e.kind == Kind::Update)
        .map(|e| e.at)
        .max()
}

/// One event as an entry ("update refused: the download's SHA-256 is …").
pub fn update_entry(event: &UpdateEvent, running: &str) -> Entry {
    let entry = |what: String| Entry::new(event.at, Kind::Update, what);
    match &event.phase {
        Phase::Off => entry("updates off".to_owned()),
        Phase::UpToDate => entry(format!("up to date ({running})")),
        Phase::Available { version, required } => entry(format!(
            "update available: {version}{}",
            if *required { " (required)" } else { "" }
        )),
        Phase::Installing { version } => entry(format!("installing {version}")),
        Phase::Updated { from, to } => entry(format!("updated from {from} to {to}")),
        Phase::Refused { reason } => entry("update refused".to_owned()).reason(reason.clone()),
        Phase::Failed { reason } => entry("update failed".to_owned()).reason(reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn status(events: &[(OffsetDateTime, Phase)]) -> UpdateStatus {
        UpdateStatus {
            running: "0.1.0".into(),
            phase: events.last().map_or(Phase::Off, |(_, p)| p.clone()),
            last_check: None,
            recent: events
                .iter()
                .map(|(at, phase)| UpdateEvent {
                    at: *at,
                    phase: phase.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn only_events_newer_than_the_last_recorded_become_entries() {
        let t0 = datetime!(2026-12-03 10:00 UTC);
        let refused = |reason: &str| Phase::Refused {
            reason: reason.into(),
        };
        let s = status(&[
            (t0, refused("bad signature on the manifest")),
            (
                t0 + time::Duration::minutes(1),
                refused("the signing key \"b\" was revoked: lost"),
            ),
            (t0 + time::Duration::minutes(2), Phase::UpToDate),
        ]);
        let all = update_entries(&s, None);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].at, t0, "the service's time, not the agent's");
        assert_eq!(all[0].kind, Kind::Update);
        assert_eq!(all[0].what, "update refused");
        assert_eq!(
            all[1].reason.as_deref(),
            Some("the signing key \"b\" was revoked: lost")
        );
        assert_eq!(all[2].what, "up to date (0.1.0)");
        let seen = newest_update(&all[..2]);
        let rest = update_entries(&s, seen);
        assert_eq!(rest, all[2..].to_vec(), "nothing recorded twice");
        assert!(update_entries(&s, newest_update(&all)).is_empty());
    }
}
