//! BitLocker state of the system volume from `manage-bde -status C:`.
//!
//! `manage-bde` needs an elevated process: run without admin rights it prints
//! "ERROR: An attempt to access a required resource was denied." and exits
//! with `E_ACCESSDENIED`, which becomes `unknown` (`permission_denied`),
//! never "not encrypted".
//!
//! Its output is localized, labels and values alike. The parser therefore
//! - finds the percentage by shape (the only value that is a number followed
//!   by `%`; `100.0%` or `100,0%`/`100,0 %` by locale), and decides
//!   "encrypted" from it (100 % = fully encrypted, including "Used Space Only
//!   Encrypted");
//! - recognizes the protection status line and value in English, French
//!   ("État de la protection : Protection activée/désactivée") and German
//!   ("Schutzstatus: … aktiviert/deaktiviert"), on ASCII fragments only;
//! - keeps conversion status and method as raw text for evidence.
//!
//! "Fully Encrypted" with "Protection Off" is *suspended* BitLocker: the key
//! sits in clear on the disk, so it is not protection and fails.

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::parse::ParseError;

use super::fields::{Field, fields};
use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "`manage-bde -status`";

/// `E_ACCESSDENIED` as the `i32` exit code `manage-bde` returns.
const E_ACCESSDENIED: i32 = 0x8007_0005_u32 as i32;

/// The command the collector runs for the system drive (e.g. `C:`).
pub fn command(drive: &str) -> CommandLine {
    CommandLine::new("manage-bde.exe", &["-status", drive])
}

/// The system drive from the `SystemDrive` environment variable (`C:` when
/// it is missing or not a drive letter), so a Windows installed on `D:` is
/// checked on `D:`.
pub fn system_drive(env_value: Option<&str>) -> String {
    env_value
        .map(str::trim)
        .filter(|value| {
            let mut chars = value.chars();
            matches!((chars.next(), chars.next(), chars.next()), (Some(letter), Some(':'), None) if letter.is_ascii_alphabetic())
        })
        .map_or_else(|| "C:".to_owned(), str::to_ascii_uppercase)
}

/// The BitLocker state of one volume.
#[derive(Debug, Clone, PartialEq)]
pub struct BitLockerStatus {
    /// The drive letter from the `Volume C: […]` line.
    pub volume: Option<String>,
    /// `Conversion Status` as printed (localized).
    pub conversion: Option<Seen<String>>,
    /// `Percentage Encrypted`, 0–100.
    pub percent_encrypted: Seen<f64>,
    /// `Encryption Method` as printed, e.g. `XTS-AES 256`, `None`.
    pub method: Option<Seen<String>>,
    /// `Protection Status`: on (`true`) or off.
    pub protection_on: Seen<bool>,
}

impl BitLockerStatus {
    /// Fully encrypted (100 %).
    pub fn encrypted(&self) -> bool {
        self.percent_encrypted.value >= 100.0
    }
}

/// The message, when the output or exit code says `manage-bde` was refused
/// (not elevated).
pub fn access_denied(code: Option<i32>, output: &str) -> Option<String> {
    let denied = code == Some(E_ACCESSDENIED) || super::mentions_access_denied(output);
    denied.then(|| {
        output
            .lines()
            .map(str::trim)
            .find(|line| super::mentions_access_denied(line))
            .unwrap_or_else(|| super::first_line(output))
            .to_owned()
    })
}

/// Parses `manage-bde -status <drive>` for one volume.
pub fn parse_bitlocker(text: &str) -> Result<BitLockerStatus, ParseError> {
    let all = fields(text);
    let percent_encrypted = all
        .iter()
        .find_map(|field| percentage(field.value).map(|pct| Seen::new(pct, field.line)))
        .ok_or_else(|| {
            ParseError::new(
                SOURCE_NAME,
                "no percentage line (e.g. \"Percentage Encrypted: 100.0%\")",
            )
        })?;
    let protection_field = all
        .iter()
        .find(|field| is_protection_label(field.key))
        .ok_or_else(|| ParseError::new(SOURCE_NAME, "no protection status line"))?;
    let protection_on = protection(protection_field.value)
        .map(|on| Seen::new(on, protection_field.line))
        .ok_or_else(|| {
            ParseError::new(
                SOURCE_NAME,
                format!(
                    "protection status not recognized: {:?}",
                    protection_field.value
                ),
            )
        })?;
    Ok(BitLockerStatus {
        volume: volume(text),
        conversion: raw_field(&all, is_conversion_label),
        percent_encrypted,
        method: raw_field(&all, is_method_label),
        protection_on,
    })
}

fn raw_field(all: &[Field<'_>], label: fn(&str) -> bool) -> Option<Seen<String>> {
    all.iter()
        .find(|field| label(field.key) && !field.value.is_empty())
        .map(|field| Seen::new(field.value.to_owned(), field.line))
}

/// "Protection Status" / "État de la protection" / "Schutzstatus"; not
/// "Key Protectors" / "Protecteurs de clés".
fn is_protection_label(key: &str) -> bool {
    let key = key.to_lowercase();
    key.contains("protection") || key.contains("schutzstatus")
}

/// "Conversion Status" / "État de la conversion" / "Konvertierungsstatus".
fn is_conversion_label(key: &str) -> bool {
    let key = key.to_lowercase();
    key.contains("conversion") || key.contains("konvertierung")
}

/// "Encryption Method" / "Méthode de chiffrement" / "Verschlüsselungsmethode".
fn is_method_label(key: &str) -> bool {
    let key = key.to_lowercase();
    key.contains("method") || key.contains("thode")
}

/// On/off from the protection value. "Off" first: "désactivée" and
/// "deaktiviert" contain the "on" words.
fn protection(value: &str) -> Option<bool> {
    let value = value.to_lowercase();
    if value.contains("protection off") || value.contains("deaktiv") || value.contains("sactiv") {
        Some(false)
    } else if value.contains("protection on") || value.contains("aktiv") || value.contains("activ")
    {
        Some(true)
    } else {
        None
    }
}

/// `100.0%`, `100,0%`, `45,2 %` → the number; anything else → `None`.
fn percentage(value: &str) -> Option<f64> {
    let number = value.trim().strip_suffix('%')?.trim().replace(',', ".");
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    number
        .parse::<f64>()
        .ok()
        .filter(|pct| (0.0..=100.0).contains(pct))
}

/// The drive letter of the first unindented line holding a `X:` token
/// (`Volume C: [Windows]`).
fn volume(text: &str) -> Option<String> {
    text.lines()
        .filter(|line| !line.starts_with(char::is_whitespace))
        .flat_map(str::split_whitespace)
        .map(|token| token.trim_matches(|c: char| c == '"' || c == '\''))
        .find(|token| {
            let mut chars = token.chars();
            matches!((chars.next(), chars.next(), chars.next()), (Some(letter), Some(':'), None) if letter.is_ascii_alphabetic())
        })
        .map(str::to_ascii_uppercase)
}

/// The `disk_encryption` check for the system drive `drive`, read by
/// `manage-bde`.
pub fn disk_encryption_check(status: &BitLockerStatus, drive: &str) -> Check {
    disk_encryption_check_from(status, drive, &command(drive))
}

/// The `disk_encryption` check for `drive`, with evidence naming `cmd`, the
/// command that produced `status` (CIM or `manage-bde`).
pub fn disk_encryption_check_from(
    status: &BitLockerStatus,
    drive: &str,
    cmd: &CommandLine,
) -> Check {
    let volume = status.volume.clone().unwrap_or_else(|| drive.to_owned());
    let method = status.method.as_ref().map(|m| m.value.clone());
    let pct = status.percent_encrypted.value;
    let check = match (status.encrypted(), status.protection_on.value) {
        (true, true) => Check::pass(
            CheckId::DiskEncryption,
            format!(
                "BitLocker on {volume} ({}), protection on",
                method.as_deref().unwrap_or("method not shown")
            ),
        ),
        (true, false) => Check::fail(
            CheckId::DiskEncryption,
            format!("BitLocker on {volume} is suspended (encrypted, protection off)"),
        )
        .remediation(
            "BitLocker is suspended, so the disk key is stored unprotected. Open Control Panel > \
             BitLocker Drive Encryption and select \"Resume protection\" (or restart if an update \
             suspended it for one reboot).",
        ),
        (false, _) => Check::fail(
            CheckId::DiskEncryption,
            format!("{volume} is not fully encrypted ({pct}% encrypted)"),
        )
        .remediation(
            "Turn on BitLocker for the system drive: Settings > Privacy & security > Device \
             encryption, or Control Panel > BitLocker Drive Encryption > Turn on BitLocker; keep \
             the PC on until encryption reaches 100%. Contact IT if the option is missing.",
        ),
    };
    let mut check = check
        .fact("encrypted", status.encrypted())
        .fact("protection_on", status.protection_on.value)
        .fact("volume", volume)
        .evidence(cmd.evidence(&status.percent_encrypted.line))
        .evidence(cmd.evidence(&status.protection_on.line));
    if let Some(method) = &status.method {
        check = check
            .fact("method", method.value.clone())
            .evidence(cmd.evidence(&method.line));
    }
    if let Some(conversion) = &status.conversion {
        check = check.evidence(cmd.evidence(&conversion.line));
    }
    // CIM answers in one JSON line that holds every fact: cite it once.
    check.evidence.dedup();
    check
}

/// The `disk_encryption` check when `manage-bde` was refused: it needs admin.
pub fn disk_encryption_denied(drive: &str, message: &str) -> Check {
    Check::unknown(
        CheckId::DiskEncryption,
        Unknown::new(
            UnknownKind::PermissionDenied,
            format!("manage-bde needs an elevated (administrator) process: {message}"),
        ),
    )
    .evidence(command(drive).evidence(message))
    .remediation(disk_encryption_remediation(drive))
}

/// The `disk_encryption` check when `manage-bde` could not answer.
pub fn disk_encryption_unknown(drive: &str, reason: Unknown) -> Check {
    Check::unknown(CheckId::DiskEncryption, reason)
        .evidence(command(drive).evidence_note("no usable output"))
        .remediation(disk_encryption_remediation(drive))
}

fn disk_encryption_remediation(drive: &str) -> String {
    format!(
        "BitLocker status can only be read with administrator rights. Run the Sallyport agent's \
         posture service elevated, or check by hand: open an administrator prompt and run \
         `manage-bde -status {drive}` (Protection Status must be \"Protection On\")."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_drive_defaults_to_c() {
        assert_eq!(system_drive(Some("d:")), "D:");
        assert_eq!(system_drive(Some("C:\\")), "C:");
        assert_eq!(system_drive(None), "C:");
    }

    #[test]
    fn percentages_in_both_decimal_styles() {
        assert_eq!(percentage("100.0%"), Some(100.0));
        assert_eq!(percentage("100,0%"), Some(100.0));
        assert_eq!(percentage("45,2 %"), Some(45.2));
        assert_eq!(percentage("126.45 GB"), None);
        assert_eq!(percentage("%"), None);
        assert_eq!(percentage("-5%"), None);
        assert_eq!(percentage("1.2.3%"), None);
    }

    #[test]
    fn protection_words_in_three_languages() {
        assert_eq!(protection("Protection On"), Some(true));
        assert_eq!(protection("Protection Off (2 reboots left)"), Some(false));
        assert_eq!(protection("Protection activée"), Some(true));
        assert_eq!(
            protection("Protection d\u{fffd}sactiv\u{fffd}e"),
            Some(false)
        );
        assert_eq!(protection("Der Schutz ist aktiviert."), Some(true));
        assert_eq!(protection("Der Schutz ist deaktiviert."), Some(false));
        assert_eq!(protection("Protection Unknown"), None);
    }

    #[test]
    fn access_denied_by_code_or_message() {
        assert!(access_denied(Some(E_ACCESSDENIED), "").is_some());
        assert_eq!(
            access_denied(
                Some(1),
                "x\r\nERROR: An attempt to access a required resource was denied.\r\n"
            )
            .as_deref(),
            Some("ERROR: An attempt to access a required resource was denied.")
        );
        assert_eq!(access_denied(Some(0), "Volume C: [Windows]"), None);
    }
}
