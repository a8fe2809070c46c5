//! The `antivirus` check from its two Windows sources.
//!
//! Microsoft Defender is asked first (precise: running mode, real-time
//! protection, signature age). When Defender is not the active antivirus
//! (passive, EDR block, not running) or cannot be asked, another product is
//! expected to be registered with Security Center, which is asked next. On
//! Windows Server there is no Security Center: a server with a third-party
//! antivirus is `unknown`, not a guessed pass or fail.

use crate::check::{Check, CheckId, Unknown};

use super::defender::{DefenderStatus, defender_check, failed_note, not_primary_note};
use super::security_center::{self, AvProduct, security_center_check};

/// Whether the collector must also ask Security Center.
pub fn needs_security_center(defender: &Result<DefenderStatus, Unknown>) -> bool {
    !matches!(defender, Ok(status) if status.is_primary())
}

/// The `antivirus` check. `security_center` is `None` when it was not asked
/// (only needed when [`needs_security_center`] says so).
pub fn antivirus_check(
    defender: &Result<DefenderStatus, Unknown>,
    security_center: Option<&Result<Vec<AvProduct>, Unknown>>,
) -> Check {
    if let Ok(status) = defender
        && status.is_primary()
    {
        return defender_check(status);
    }
    let defender_note = match defender {
        Ok(status) => not_primary_note(status),
        Err(reason) => failed_note(reason),
    };
    match security_center {
        Some(Ok(products)) => security_center_check(products).evidence(defender_note),
        Some(Err(sc_reason)) => {
            let reason = match defender {
                Ok(_) => Unknown::new(
                    sc_reason.kind,
                    format!(
                        "Microsoft Defender is not the active antivirus and Security Center could \
                         not be read ({})",
                        sc_reason.detail
                    ),
                ),
                Err(defender_reason) => Unknown::new(
                    defender_reason.kind,
                    format!(
                        "{}; Security Center could not be read either ({})",
                        defender_reason.detail, sc_reason.detail
                    ),
                ),
            };
            unknown(reason)
                .evidence(defender_note)
                .evidence(security_center::failed_note(sc_reason))
        }
        None => {
            let reason = match defender {
                Ok(_) => Unknown::new(
                    crate::check::UnknownKind::SourceMissing,
                    "Microsoft Defender is not the active antivirus and no other source was asked",
                ),
                Err(reason) => reason.clone(),
            };
            unknown(reason).evidence(defender_note)
        }
    }
}

fn unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::Antivirus, reason).remediation(
        "The antivirus state could not be read. Open Windows Security > Virus & threat protection \
         and check that an antivirus is on and up to date; contact IT if nothing is listed.",
    )
}
