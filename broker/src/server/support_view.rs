//! `sallyport-broker admin device CODE` as text: the broker's side of
//! "why was I blocked at 10:42?", one line per event, in time order, so
//! helpdesk can read it next to the user's `sallyport history`. Pure.

use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::api::DeviceSupport;

fn at(t: OffsetDateTime) -> String {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

/// The device's enrolment, then its verdicts, grants and audit rows merged
/// in time order.
pub fn render(found: &DeviceSupport) -> String {
    let d = &found.device;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Device  {} (support code {})\nUser    {}\nName    {}\nStatus  {:?}, enrolled {}{}",
        d.device_id,
        found.support_code,
        d.user,
        d.name.as_deref().unwrap_or("-"),
        d.status,
        at(d.enrolled_at),
        d.approved_at
            .map(|t| format!(", approved {}", at(t)))
            .unwrap_or_default()
    );
    if let Some(revoked) = &found.revoked {
        let _ = writeln!(out, "Revoked {revoked}");
    }
    let mut events: Vec<(OffsetDateTime, u8, String)> = Vec::new();
    for v in &found.verdicts {
        let what = if v.compliant {
            "compliant".to_owned()
        } else {
            let failed: Vec<String> = v
                .violations
                .iter()
                .map(|x| format!("{}: {}", x.check, x.message))
                .collect();
            format!("NOT compliant — {}", failed.join("; "))
        };
        events.push((
            v.evaluated_at,
            0,
            format!("verdict     {what} (until {})", at(v.valid_until)),
        ));
    }
    for g in &found.grants {
        events.push((
            g.created_at,
            1,
            format!("grant       {} {} opened", g.id, g.app),
        ));
        if let Some(closed) = g.closed_at {
            events.push((
                closed,
                2,
                format!(
                    "grant       {} {} closed: {}",
                    g.id,
                    g.app,
                    g.close_reason.as_deref().unwrap_or("-")
                ),
            ));
        }
    }
    for a in &found.audit {
        let problem = a
            .problem
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        events.push((
            a.at,
            3,
            format!(
                "audit #{:<4} {} {}{problem}: {}",
                a.seq, a.action, a.outcome, a.reason
            ),
        ));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let _ = writeln!(
        out,
        "\n{} verdicts, {} grants, {} audit rows (newest kept: 50, 100, 200)",
        found.verdicts.len(),
        found.grants.len(),
        found.audit.len()
    );
    for (t, _, line) in events {
        let _ = writeln!(out, "{} {line}", at(t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        AdminDevice, AuditEntry, DeviceStatus, GrantRecord, VerdictRecord, Violation,
    };
    use time::macros::datetime;

    #[test]
    fn events_are_merged_in_time_order() {
        let found = DeviceSupport {
            device: AdminDevice {
                device_id: "Xy3k9QpAzzzz".into(),
                user: "alice".into(),
                name: Some("laptop".into()),
                status: DeviceStatus::Active,
                enrolled_at: datetime!(2026-12-03 09:00:00 UTC),
                approved_at: None,
            },
            support_code: "Xy3k 9QpA".into(),
            revoked: None,
            verdicts: vec![VerdictRecord {
                evaluated_at: datetime!(2026-12-03 10:42:00 UTC),
                compliant: false,
                violations: vec![Violation {
                    check: "disk_encryption".into(),
                    message: "disk encryption is off".into(),
                    remediation: String::new(),
                }],
                valid_until: datetime!(2026-12-03 10:52:00 UTC),
                policy_digest: "p".into(),
            }],
            grants: vec![GrantRecord {
                id: "g1".into(),
                app: "wiki".into(),
                created_at: datetime!(2026-12-03 10:00:00 UTC),
                expires_at: datetime!(2026-12-03 11:00:00 UTC),
                closed_at: Some(datetime!(2026-12-03 10:42:00 UTC)),
                close_reason: Some("device no longer compliant".into()),
            }],
            audit: vec![AuditEntry {
                seq: 7,
                at: datetime!(2026-12-03 10:41:59 UTC),
                action: "attest".into(),
                outcome: "deny".into(),
                reason: "disk_encryption".into(),
                ..AuditEntry::default()
            }],
        };
        let text = render(&found);
        let lines: Vec<&str> = text.lines().collect();
        let order: Vec<usize> = [
            "grant       g1 wiki opened",
            "audit #7    attest deny",
            "verdict     NOT compliant — disk_encryption: disk encryption is off",
            "grant       g1 wiki closed: device no longer compliant",
        ]
        .iter()
        .map(|needle| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} missing from\n{text}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.contains("support code Xy3k 9QpA"));
    }
}
