//! The demo's two Rego policies, written from this machine's own report.
//!
//! The demo must show a *compliant* device first and then a policy change
//! that this very machine fails — on any machine, without guessing. So both
//! policies are derived from the report collected at start (pure functions,
//! tested without I/O):
//!
//! - the **baseline** requires every check that passes here now, so the
//!   first verdict is compliant for a real reason, not an empty policy;
//! - the **tightened** policy adds one requirement this machine does not
//!   meet: a check that failed (preferred) or could not be determined; when
//!   every check passed, a minimum OS version one major release above the
//!   one observed; failing that, a check this platform does not measure.

use posture::check::{CheckId, Status};
use posture::report::Report;

/// Which checks to prefer when tightening: the ones people recognise.
const PREFERENCE: [CheckId; 15] = [
    CheckId::DiskEncryption,
    CheckId::Firewall,
    CheckId::ScreenLock,
    CheckId::SecureBoot,
    CheckId::Antivirus,
    CheckId::Tpm,
    CheckId::RebootPending,
    CheckId::SecurityUpdates,
    CheckId::Enrollment,
    CheckId::LastUpdate,
    CheckId::Sip,
    CheckId::Gatekeeper,
    CheckId::DeviceIdentity,
    CheckId::OsVersion,
    CheckId::AgentVersion,
];

/// One requirement this machine does not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tightening {
    /// Require `check` to pass. `status` is what this machine reported
    /// (`None`: not measured at all).
    Require {
        /// The check.
        check: CheckId,
        /// Its status here (`Fail` or `Unknown`), `None` when not collected.
        status: Option<Status>,
        /// What this machine reported, for the narration.
        summary: String,
    },
    /// Require an OS major version above the one observed.
    MinOsVersion {
        /// The OS as reported (`Debian GNU/Linux 12`).
        name: String,
        /// The observed major version.
        observed: u64,
        /// The new minimum (`observed + 1`).
        minimum: u64,
    },
}

impl Tightening {
    /// The check the new rule is about (and that the agent's reason names).
    pub fn check(&self) -> CheckId {
        match self {
            Tightening::Require { check, .. } => *check,
            Tightening::MinOsVersion { .. } => CheckId::OsVersion,
        }
    }

    /// Why this machine fails it, in plain words.
    pub fn why(&self) -> String {
        match self {
            Tightening::Require {
                status: Some(Status::Fail),
                summary,
                ..
            } => format!("this machine fails it: {summary}"),
            Tightening::Require {
                status: Some(_),
                summary,
                ..
            } => format!("this machine cannot show it: {summary}"),
            Tightening::Require { status: None, .. } => {
                "this machine does not measure it at all".to_owned()
            }
            Tightening::MinOsVersion {
                name,
                observed,
                minimum,
            } => format!("{name} is major version {observed}; the new minimum is {minimum}"),
        }
    }
}

/// The checks that pass in `report`: what the baseline policy requires.
pub fn passing(report: &Report) -> Vec<CheckId> {
    report
        .checks
        .iter()
        .filter(|c| c.status == Status::Pass)
        .map(|c| c.id)
        .collect()
}

/// A requirement `report` does not meet, chosen as the module docs say;
/// `None` only if every one of the checks was measured, passed, and the OS
/// version has no numeric major part.
pub fn choose_tightening(report: &Report) -> Option<Tightening> {
    for wanted in [Status::Fail, Status::Unknown] {
        for id in PREFERENCE {
            if let Some(check) = report.check(id)
                && check.status == wanted
            {
                return Some(Tightening::Require {
                    check: id,
                    status: Some(wanted),
                    summary: check.summary.clone(),
                });
            }
        }
    }
    if let Some(os) = report.check(CheckId::OsVersion)
        && let Some(major) = os
            .observed
            .get("version_parts")
            .and_then(|parts| parts.get(0))
            .and_then(serde_json::Value::as_u64)
    {
        let name = os
            .observed
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("The operating system");
        let version = os
            .observed
            .get("version")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        return Some(Tightening::MinOsVersion {
            name: format!("{name} {version}").trim().to_owned(),
            observed: major,
            minimum: major.saturating_add(1),
        });
    }
    PREFERENCE
        .into_iter()
        .find(|id| report.check(*id).is_none())
        .map(|check| Tightening::Require {
            check,
            status: None,
            summary: String::new(),
        })
}

/// A Rego set literal of check names.
fn rego_set(ids: &[CheckId]) -> String {
    if ids.is_empty() {
        return "set()".to_owned();
    }
    let names: Vec<String> = ids
        .iter()
        .map(|id| format!("\"{}\"", id.as_str()))
        .collect();
    format!("{{{}}}", names.join(", "))
}

/// The policy text: `required` must pass, plus `tightening` when given.
///
/// Messages come from the report at evaluation time (`summary`,
/// `remediation`), so nothing from the machine is pasted into Rego source.
pub fn rego(required: &[CheckId], tightening: Option<&Tightening>) -> String {
    let mut required: Vec<CheckId> = required.to_vec();
    let mut min_os = None;
    match tightening {
        Some(Tightening::Require { check, .. }) if !required.contains(check) => {
            required.push(*check);
        }
        Some(Tightening::MinOsVersion { minimum, .. }) => min_os = Some(*minimum),
        _ => {}
    }
    let mut text = format!(
        r#"# DEMO ONLY: written by `sallyport demo` from this machine's own report.
package sallyport.posture

import rego.v1

required := {}

violations contains v if {{
	some id in required
	not input.checks[id]
	v := {{
		"check": id,
		"message": sprintf("%s is not measured on this device", [id]),
		"remediation": "Use a device where Sallyport can measure it (demo policy).",
	}}
}}

violations contains v if {{
	some id in required
	c := input.checks[id]
	c.status != "pass"
	v := {{
		"check": id,
		"message": c.summary,
		"remediation": object.get(c, "remediation", "Contact IT."),
	}}
}}
"#,
        rego_set(&required)
    );
    if let Some(minimum) = min_os {
        text.push_str(&format!(
            r#"
violations contains v if {{
	c := input.checks.os_version
	not c.observed.version_parts[0] >= {minimum}
	v := {{
		"check": "os_version",
		"message": sprintf("%s %s is older than the minimum major version {minimum}", [object.get(c.observed, "name", "the OS"), object.get(c.observed, "version", "")]),
		"remediation": "Upgrade the operating system.",
	}}
}}
"#
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use posture::check::{Check, Unknown, UnknownKind};
    use posture::policy::Policy;
    use posture::report::{Platform, Report};

    use super::*;

    fn report(checks: Vec<Check>) -> Report {
        Report {
            collected_at: time::OffsetDateTime::UNIX_EPOCH,
            platform: Platform::Linux,
            agent_version: "0.1.0".to_owned(),
            duration_ms: 1,
            checks,
        }
    }

    fn os(major: u64) -> Check {
        Check::pass(CheckId::OsVersion, "Debian 12")
            .fact("name", "Debian GNU/Linux")
            .fact("version", major.to_string())
            .fact("version_parts", serde_json::json!([major]))
    }

    fn violations(rego: &str, report: &Report) -> Vec<String> {
        let policy = Policy::from_source("demo.rego", rego).unwrap();
        policy
            .evaluate(report)
            .unwrap()
            .violations
            .into_iter()
            .map(|v| v.check)
            .collect()
    }

    #[test]
    fn baseline_requires_what_passes_and_is_compliant() {
        let r = report(vec![
            os(12),
            Check::fail(CheckId::Firewall, "no firewall rules loaded"),
            Check::pass(CheckId::AgentVersion, "0.1.0"),
        ]);
        let required = passing(&r);
        assert_eq!(required, vec![CheckId::OsVersion, CheckId::AgentVersion]);
        assert!(violations(&rego(&required, None), &r).is_empty());
    }

    #[test]
    fn tightening_prefers_a_failed_check_and_the_policy_fails_it() {
        let r = report(vec![
            os(12),
            Check::unknown(
                CheckId::ScreenLock,
                Unknown::new(UnknownKind::NotApplicable, "no desktop"),
            ),
            Check::fail(CheckId::SecurityUpdates, "72 pending"),
            Check::fail(CheckId::DiskEncryption, "/dev/vda is not encrypted"),
        ]);
        let t = choose_tightening(&r).unwrap();
        assert_eq!(t.check(), CheckId::DiskEncryption);
        assert!(t.why().contains("/dev/vda"), "{}", t.why());
        let rego = rego(&passing(&r), Some(&t));
        assert_eq!(violations(&rego, &r), vec!["disk_encryption".to_owned()]);
    }

    #[test]
    fn an_unknown_check_is_used_when_nothing_fails() {
        let r = report(vec![
            os(12),
            Check::unknown(
                CheckId::ScreenLock,
                Unknown::new(UnknownKind::NotApplicable, "no desktop"),
            ),
        ]);
        let t = choose_tightening(&r).unwrap();
        assert_eq!(t.check(), CheckId::ScreenLock);
        assert_eq!(
            violations(&rego(&passing(&r), Some(&t)), &r),
            vec!["screen_lock".to_owned()]
        );
    }

    #[test]
    fn when_everything_passes_the_os_minimum_goes_above_this_one() {
        let r = report(vec![os(12), Check::pass(CheckId::Firewall, "nftables")]);
        let t = choose_tightening(&r).unwrap();
        assert_eq!(
            t,
            Tightening::MinOsVersion {
                name: "Debian GNU/Linux 12".to_owned(),
                observed: 12,
                minimum: 13
            }
        );
        let strict = rego(&passing(&r), Some(&t));
        assert_eq!(violations(&strict, &r), vec!["os_version".to_owned()]);
        // The same rule accepts a machine that already has the newer major.
        let newer = report(vec![os(13), Check::pass(CheckId::Firewall, "nftables")]);
        assert!(violations(&strict, &newer).is_empty());
    }

    #[test]
    fn without_an_os_version_a_check_this_platform_lacks_is_required() {
        let r = report(vec![Check::pass(CheckId::AgentVersion, "0.1.0")]);
        let t = choose_tightening(&r).unwrap();
        assert_eq!(t.check(), CheckId::DiskEncryption);
        assert_eq!(
            violations(&rego(&passing(&r), Some(&t)), &r),
            vec!["disk_encryption".to_owned()]
        );
    }

    #[test]
    fn an_empty_report_gives_a_valid_empty_baseline() {
        let r = report(Vec::new());
        assert!(violations(&rego(&passing(&r), None), &r).is_empty());
    }
}
