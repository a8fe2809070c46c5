//! `profiles status -type enrollment`: MDM enrolment.
//!
//! ```text
//! Enrolled via DEP: Yes
//! MDM enrollment: Yes (User Approved)
//! MDM server: https://mdm.example.com/mdm/server
//! ```
//!
//! `MDM enrollment: Yes` without "(User Approved)" is still enrolled, but the
//! MDM may not manage everything (kernel extensions, privacy settings); the
//! evidence says so.

use crate::check::{Check, CheckId};

use super::{ParseError, key_value, unexpected};

const SOURCE: &str = "`profiles status -type enrollment`";

/// The `MDM enrollment:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdmEnrollment {
    /// Not enrolled.
    No,
    /// Enrolled, not user approved.
    Yes,
    /// Enrolled and user approved (or enrolled through DEP, which implies it).
    UserApproved,
}

/// What `profiles` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// `Enrolled via DEP:` (Automated Device Enrollment), when printed.
    pub via_dep: Option<bool>,
    /// `MDM enrollment:`.
    pub mdm: MdmEnrollment,
    /// `MDM server:`, when printed.
    pub server: Option<String>,
    /// The raw `MDM enrollment:` line.
    pub line: String,
}

/// Parses `profiles status -type enrollment`. The `MDM enrollment:` line is
/// required; `Enrolled via DEP:` and `MDM server:` are optional.
pub fn parse_profiles_enrollment(text: &str) -> Result<Enrollment, ParseError> {
    let mut via_dep = None;
    let mut mdm = None;
    let mut server = None;
    for line in text.lines().map(str::trim) {
        match key_value(line) {
            Some(("Enrolled via DEP", value)) => {
                via_dep = match value {
                    "Yes" => Some(true),
                    "No" => Some(false),
                    _ => {
                        return Err(ParseError::new(
                            SOURCE,
                            format!("unknown DEP value in {line:?}"),
                        ));
                    }
                };
            }
            Some(("MDM enrollment", value)) if mdm.is_none() => {
                let parsed = match value {
                    "No" => MdmEnrollment::No,
                    "Yes" => MdmEnrollment::Yes,
                    "Yes (User Approved)" => MdmEnrollment::UserApproved,
                    _ => {
                        return Err(ParseError::new(
                            SOURCE,
                            format!("unknown MDM value in {line:?}"),
                        ));
                    }
                };
                mdm = Some((parsed, line.to_owned()));
            }
            Some(("MDM server", url)) if !url.is_empty() => server = Some(url.to_owned()),
            _ => {}
        }
    }
    let (mdm, line) = mdm.ok_or_else(|| unexpected(SOURCE, "an \"MDM enrollment:\" line", text))?;
    Ok(Enrollment {
        via_dep,
        mdm,
        server,
        line,
    })
}

/// The `enrollment` check: enrolled in any MDM passes with kind `mdm`.
pub fn enrollment_check(enrollment: &Enrollment) -> Check {
    let id = CheckId::Enrollment;
    let mut evidence = format!("ran {SOURCE}: {:?}", enrollment.line);
    if let Some(dep) = enrollment.via_dep {
        evidence.push_str(if dep {
            ", enrolled via DEP"
        } else {
            ", not via DEP"
        });
    }
    if let Some(server) = &enrollment.server {
        evidence.push_str(&format!(", server {server}"));
    }
    match enrollment.mdm {
        MdmEnrollment::No => Check::fail(id, "not enrolled in an MDM")
            .fact("enrolled", false)
            .evidence(evidence)
            .remediation("Enrol this Mac in your organisation's device management: ask IT for the enrolment link or profile (System Settings → Privacy & Security → Profiles)."),
        MdmEnrollment::Yes => Check::pass(id, "enrolled in an MDM (not user approved)")
            .fact("enrolled", true)
            .fact("kind", "mdm")
            .evidence(evidence)
            .evidence("the enrolment is not user approved: the MDM cannot manage every setting; approve it in System Settings → Privacy & Security → Profiles"),
        MdmEnrollment::UserApproved => Check::pass(id, "enrolled in an MDM (user approved)")
            .fact("enrolled", true)
            .fact("kind", "mdm")
            .evidence(evidence),
    }
}
