//! `fdesetup status`: FileVault on the startup volume.
//!
//! APFS reports every volume as "encrypted" even with FileVault off (the
//! key is then stored in the clear), so the only trustworthy answer is
//! `fdesetup`'s first line. Shapes it prints:
//!
//! ```text
//! FileVault is On.
//! FileVault is Off.
//! FileVault is On.
//! Encryption in progress: Percent completed = 35.2
//! FileVault is On.
//! Decryption in progress: Percent completed = 64.0
//! FileVault is Off.
//! Deferred enablement appears to be active for user 'alice'.
//! ```
//!
//! Decision: only a plain `FileVault is On.` passes. While encryption runs,
//! part of the disk is still readable without the password; while
//! decryption runs, protection is being removed; deferred enablement only
//! takes effect at the user's next logout. All three are "not protected
//! (yet)" and fail, with a remediation that says what to wait for or do.

use crate::check::{Check, CheckId};

use super::{ParseError, unexpected};

const SOURCE: &str = "`fdesetup status`";

/// The FileVault state, most decisive first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileVaultStatus {
    /// On and fully encrypted.
    On,
    /// Off, nothing pending.
    Off,
    /// Turned on, the disk is still being encrypted.
    Encrypting,
    /// Being turned off, the disk is being decrypted.
    Decrypting,
    /// Will be turned on at the next logout of `user`.
    DeferredEnablement {
        /// The user named in the message, when it names one.
        user: Option<String>,
    },
}

/// What `fdesetup status` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVault {
    /// The decided state.
    pub status: FileVaultStatus,
    /// The raw lines that decided it (the `FileVault is …` line, then any
    /// in-progress / deferred line), for evidence.
    pub deciding_lines: Vec<String>,
}

/// Parses `fdesetup status`. The first non-empty line must be exactly
/// `FileVault is On.` or `FileVault is Off.`; other lines only refine it.
pub fn parse_fdesetup_status(text: &str) -> Result<FileVault, ParseError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let head = lines.next().unwrap_or("");
    let on = match head {
        "FileVault is On." => true,
        "FileVault is Off." => false,
        _ => {
            return Err(unexpected(
                SOURCE,
                "\"FileVault is On.\" or \"FileVault is Off.\" first",
                text,
            ));
        }
    };
    let mut status = if on {
        FileVaultStatus::On
    } else {
        FileVaultStatus::Off
    };
    let mut deciding_lines = vec![head.to_owned()];
    for line in lines {
        let refined = if line.starts_with("Encryption in progress")
            || line.starts_with("Encryption paused")
        {
            FileVaultStatus::Encrypting
        } else if line.starts_with("Decryption in progress")
            || line.starts_with("Decryption paused")
        {
            FileVaultStatus::Decrypting
        } else if line.starts_with("Deferred enablement appears to be active") {
            FileVaultStatus::DeferredEnablement {
                user: quoted_user(line),
            }
        } else {
            // e.g. "FileVault master keychain appears to be installed."
            continue;
        };
        if status == FileVaultStatus::On || status == FileVaultStatus::Off {
            status = refined;
            deciding_lines.push(line.to_owned());
        }
    }
    Ok(FileVault {
        status,
        deciding_lines,
    })
}

/// `… for user 'alice'.` → `alice`.
fn quoted_user(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("for user '")?;
    let (user, _) = rest.split_once('\'')?;
    (!user.is_empty()).then(|| user.to_owned())
}

/// The `disk_encryption` check. `method`/`volume` are set only when
/// FileVault is (being) applied to the startup volume.
pub fn disk_encryption_check(vault: &FileVault) -> Check {
    let id = CheckId::DiskEncryption;
    let check = match &vault.status {
        FileVaultStatus::On => Check::pass(id, "FileVault is on"),
        FileVaultStatus::Off => Check::fail(id, "FileVault is off").remediation(
            "Turn on FileVault: System Settings → Privacy & Security → FileVault → Turn On, and store the recovery key the way IT asks.",
        ),
        FileVaultStatus::Encrypting => Check::fail(id, "FileVault is on but the disk is still being encrypted")
            .remediation("Keep the Mac awake and on power until FileVault finishes encrypting (System Settings → Privacy & Security → FileVault shows the progress), then check again."),
        FileVaultStatus::Decrypting => Check::fail(id, "FileVault is being turned off (disk decrypting)")
            .remediation("FileVault is being turned off. Turn it back on: System Settings → Privacy & Security → FileVault → Turn On."),
        FileVaultStatus::DeferredEnablement { user } => Check::fail(
            id,
            "FileVault is scheduled to turn on at the next logout, not on yet",
        )
        .remediation(format!(
            "Log out{} and log back in (or restart), and enter the password when asked: FileVault turns on then.",
            user.as_ref().map(|u| format!(" of the account '{u}'")).unwrap_or_default()
        )),
    };
    let check = check
        .fact("encrypted", vault.status == FileVaultStatus::On)
        .evidence(format!(
            "ran {SOURCE}: {}",
            vault
                .deciding_lines
                .iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
                .join(" + ")
        ));
    let check = check.fact("volume", "/");
    let applied = matches!(
        vault.status,
        FileVaultStatus::On | FileVaultStatus::Encrypting | FileVaultStatus::Decrypting
    );
    if applied {
        check.fact("method", "FileVault")
    } else {
        check
    }
}
