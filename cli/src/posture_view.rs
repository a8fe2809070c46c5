//! How a posture report and its policy evaluation are shown to a person.
//!
//! Pure: takes the report and evaluation, returns text. The CLI prints it;
//! the tray app will show the same facts in its own widgets.

use std::fmt::Write as _;

use posture::policy::Evaluation;
use posture::{Report, Status};
use serde::Serialize;

/// What `sallyport posture --json` prints.
#[derive(Debug, Serialize)]
pub struct PostureOutput<'a> {
    /// The measured checks.
    pub report: &'a Report,
    /// The policy used (file name).
    pub policy: &'a str,
    /// The policy's verdict.
    pub evaluation: &'a Evaluation,
    /// With `--check`: the checks the verdict is restricted to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_checks: Option<&'a [String]>,
}

/// The evaluation restricted to the violations of `checks` (`--check`).
///
/// Why: the policy judges a whole device. Given a report of a few checks it
/// also flags every other required check as "not measured on this device",
/// which is true of the run, not of the device, and would fail the exit
/// code of every `--check` run. So a partial run is judged only on what it
/// measured. A violation of a check asked for that the collector could not
/// measure (not supported here) still counts: that one is about the run's
/// own subject.
pub fn restrict_to(evaluation: Evaluation, checks: &[String]) -> Evaluation {
    let violations: Vec<_> = evaluation
        .violations
        .into_iter()
        .filter(|v| checks.contains(&v.check))
        .collect();
    Evaluation {
        compliant: violations.is_empty(),
        violations,
    }
}

/// The process exit code the CLI uses for a verdict: 0 compliant, 1 not.
pub fn exit_code(evaluation: &Evaluation) -> u8 {
    if evaluation.compliant { 0 } else { 1 }
}

const OBSERVED_WIDTH: usize = 56;
const REMEDIATION_WIDTH: usize = 60;

/// Renders the table of checks followed by the policy verdict; `only` names
/// the checks the verdict was restricted to ([`restrict_to`]).
pub fn render_table(
    report: &Report,
    policy: &str,
    evaluation: &Evaluation,
    only: Option<&[String]>,
) -> String {
    let mut out = String::new();
    let collected = report
        .collected_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Sallyport {} posture of this device ({:?}), collected {collected} in {} ms\n",
        report.agent_version, report.platform, report.duration_ms
    );
    let id_width = report
        .checks
        .iter()
        .map(|c| c.id.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:id_width$}  {:8} {:OBSERVED_WIDTH$}  REMEDIATION",
        "CHECK", "STATUS", "OBSERVED"
    );
    for check in &report.checks {
        let violated = evaluation.for_check(check.id.as_str()).next().is_some();
        let status = match (check.status, violated) {
            (Status::Pass, true) => "pass*".to_owned(),
            (status, _) => status.to_string(),
        };
        let remediation = evaluation
            .for_check(check.id.as_str())
            .next()
            .map(|v| v.remediation.as_str())
            .or(check.remediation.as_deref())
            .filter(|_| check.status != Status::Pass || violated)
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{:id_width$}  {:8} {:OBSERVED_WIDTH$}  {}",
            check.id.as_str(),
            status,
            clip(&check.summary, OBSERVED_WIDTH),
            clip(remediation, REMEDIATION_WIDTH)
        );
    }
    let _ = writeln!(out);
    let policy = match only {
        Some(checks) => format!("{policy} (only {})", checks.join(", ")),
        None => policy.to_owned(),
    };
    if evaluation.compliant {
        let _ = writeln!(out, "Policy {policy}: COMPLIANT");
    } else {
        let _ = writeln!(
            out,
            "Policy {policy}: NOT COMPLIANT ({} violation{})",
            evaluation.violations.len(),
            if evaluation.violations.len() == 1 {
                ""
            } else {
                "s"
            }
        );
        for violation in &evaluation.violations {
            let _ = writeln!(out, "  x {}: {}", violation.check, violation.message);
            let _ = writeln!(out, "      fix: {}", violation.remediation);
        }
    }
    if report.checks.iter().any(|c| c.status == Status::Pass)
        && evaluation.violations.iter().any(|v| {
            report
                .checks
                .iter()
                .any(|c| c.id.as_str() == v.check && c.status == Status::Pass)
        })
    {
        let _ = writeln!(
            out,
            "\n* measured in place, but below what the policy requires"
        );
    }
    out
}

/// Cuts `text` to `width` characters, marking the cut.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posture::Platform;
    use posture::check::{Check, CheckId};
    use posture::policy::Violation;
    use time::OffsetDateTime;

    fn report() -> Report {
        Report {
            collected_at: OffsetDateTime::UNIX_EPOCH,
            platform: Platform::Linux,
            agent_version: "0.1.0".into(),
            duration_ms: 7,
            checks: vec![
                Check::pass(CheckId::Firewall, "nftables: inbound traffic filtered"),
                Check::pass(CheckId::ScreenLock, "locks after 1800 s idle"),
                Check::fail(CheckId::DiskEncryption, "/dev/vda is not encrypted")
                    .remediation("Encrypt the system disk"),
            ],
        }
    }

    #[test]
    fn table_shows_each_check_and_the_violations_with_fixes() {
        let evaluation = Evaluation {
            compliant: false,
            violations: vec![
                Violation {
                    check: "disk_encryption".into(),
                    message: "/dev/vda is not encrypted".into(),
                    remediation: "Encrypt the system disk".into(),
                },
                Violation {
                    check: "screen_lock".into(),
                    message: "locks after 1800 s".into(),
                    remediation: "Lock within 15 minutes".into(),
                },
            ],
        };
        let text = render_table(&report(), "default.rego", &evaluation, None);
        assert!(text.contains("firewall"), "{text}");
        assert!(
            text.contains("pass*"),
            "policy-violated pass is marked: {text}"
        );
        assert!(text.contains("NOT COMPLIANT (2 violations)"), "{text}");
        assert!(text.contains("fix: Encrypt the system disk"), "{text}");
        assert_eq!(exit_code(&evaluation), 1);
    }

    #[test]
    fn compliant_table_and_exit_code() {
        let evaluation = Evaluation {
            compliant: true,
            violations: vec![],
        };
        let text = render_table(&report(), "p.rego", &evaluation, None);
        assert!(text.contains("Policy p.rego: COMPLIANT"));
        assert_eq!(exit_code(&evaluation), 0);
    }

    #[test]
    fn a_partial_run_is_judged_only_on_the_checks_asked_for() {
        let violation = |check: &str, message: &str| Violation {
            check: check.into(),
            message: message.into(),
            remediation: "Update Sallyport, or contact IT if this persists.".into(),
        };
        let evaluation = Evaluation {
            compliant: false,
            violations: vec![
                violation(
                    "disk_encryption",
                    "disk_encryption was not measured on this device",
                ),
                violation("firewall", "inbound traffic is not filtered"),
                violation("tpm", "tpm was not measured on this device"),
            ],
        };
        let only = vec!["firewall".to_owned()];
        let restricted = restrict_to(evaluation.clone(), &only);
        assert_eq!(
            restricted.violations,
            vec![evaluation.violations[1].clone()]
        );
        assert!(!restricted.compliant);
        let text = render_table(&report(), "default.rego", &restricted, Some(&only));
        assert!(
            text.contains("Policy default.rego (only firewall): NOT COMPLIANT (1 violation)"),
            "{text}"
        );
        assert!(!text.contains("not measured"), "{text}");
        // Nothing wrong with what was measured: compliant, exit 0.
        let only = vec!["screen_lock".to_owned()];
        let restricted = restrict_to(evaluation, &only);
        assert!(restricted.compliant);
        assert_eq!(exit_code(&restricted), 0);
    }

    #[test]
    fn clip_marks_the_cut() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
