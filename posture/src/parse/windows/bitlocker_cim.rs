//! BitLocker state of the system volume from CIM (the
//! `Win32_EncryptableVolume` class and its `GetConversionStatus` method),
//! printed by PowerShell as JSON.
//!
//! Why this is the first source and `manage-bde` only the fallback: CIM
//! answers in numbers (documented enumerations), not in the display
//! language, so a Japanese or Polish Windows reads exactly like an English
//! one. `manage-bde`'s text parser ([`super::bitlocker`]) knows English,
//! French and German only. Both need an elevated process (the device
//! service runs as LocalSystem); a refused CIM query makes the collector
//! fall back, and the evidence says why.
//!
//! ```json
//! {"DriveLetter":"C:","ProtectionStatus":1,"ConversionStatus":1,"EncryptionPercentage":100,"EncryptionMethod":7}
//! ```
//!
//! - `ProtectionStatus`: 0 off, 1 on, 2 unknown (the volume is locked);
//! - `ConversionStatus`: 0 fully decrypted, 1 fully encrypted, 2 encryption
//!   in progress, 3 decryption in progress, 4 encryption paused,
//!   5 decryption paused;
//! - `EncryptionMethod`: 0 none, 1 AES-128 with diffuser, 2 AES-256 with
//!   diffuser, 3 AES-128, 4 AES-256, 5 hardware, 6 XTS-AES-128,
//!   7 XTS-AES-256.

use serde::Deserialize;

use crate::parse::ParseError;

use super::bitlocker::BitLockerStatus;
use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "`Win32_EncryptableVolume` (CIM)";

/// The PowerShell that prints the JSON above for `drive` (e.g. `C:`).
fn script(drive: &str) -> String {
    format!(
        "$ErrorActionPreference = 'Stop'; \
         $v = Get-CimInstance -Namespace 'root/cimv2/Security/MicrosoftVolumeEncryption' \
         -ClassName Win32_EncryptableVolume -Filter \"DriveLetter='{drive}'\"; \
         if (-not $v) {{ throw 'no encryptable volume {drive}' }}; \
         $c = $v | Invoke-CimMethod -MethodName GetConversionStatus; \
         [pscustomobject]@{{ DriveLetter = $v.DriveLetter; ProtectionStatus = [int]$v.ProtectionStatus; \
         ConversionStatus = [int]$c.ConversionStatus; EncryptionPercentage = [int]$c.EncryptionPercentage; \
         EncryptionMethod = [int]$v.EncryptionMethod }} | ConvertTo-Json -Compress"
    )
}

/// The command the collector runs first for the system drive `drive`.
pub fn command(drive: &str) -> CommandLine {
    CommandLine::powershell(&script(drive))
}

/// The JSON object, as PowerShell prints it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Volume {
    drive_letter: Option<String>,
    protection_status: u32,
    conversion_status: u32,
    encryption_percentage: u32,
    encryption_method: u32,
}

/// `ConversionStatus` in words.
fn conversion_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "Fully Decrypted",
        1 => "Fully Encrypted",
        2 => "Encryption in Progress",
        3 => "Decryption in Progress",
        4 => "Encryption Paused",
        5 => "Decryption Paused",
        _ => return None,
    })
}

/// `EncryptionMethod` in words.
fn method_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "None",
        1 => "AES 128 with Diffuser",
        2 => "AES 256 with Diffuser",
        3 => "AES 128",
        4 => "AES 256",
        5 => "Hardware Encryption",
        6 => "XTS-AES 128",
        7 => "XTS-AES 256",
        _ => return None,
    })
}

/// Parses the JSON into the same status `manage-bde`'s parser gives, so
/// one rule decides pass or fail whichever source answered.
pub fn parse_bitlocker_cim(text: &str) -> Result<BitLockerStatus, ParseError> {
    let line = text.trim();
    let volume: Volume = serde_json::from_str(line)
        .map_err(|e| ParseError::new(SOURCE_NAME, format!("not the expected JSON: {e}")))?;
    let protection_on = match volume.protection_status {
        0 => false,
        1 => true,
        2 => {
            return Err(ParseError::new(
                SOURCE_NAME,
                "ProtectionStatus 2: the volume is locked, its protection cannot be read",
            ));
        }
        other => {
            return Err(ParseError::new(
                SOURCE_NAME,
                format!("ProtectionStatus {other} is not a documented value"),
            ));
        }
    };
    let conversion = conversion_name(volume.conversion_status).ok_or_else(|| {
        ParseError::new(
            SOURCE_NAME,
            format!(
                "ConversionStatus {} is not a documented value",
                volume.conversion_status
            ),
        )
    })?;
    if volume.encryption_percentage > 100 {
        return Err(ParseError::new(
            SOURCE_NAME,
            format!(
                "EncryptionPercentage {} is over 100",
                volume.encryption_percentage
            ),
        ));
    }
    let method = method_name(volume.encryption_method).map_or_else(
        || format!("method {}", volume.encryption_method),
        str::to_owned,
    );
    Ok(BitLockerStatus {
        volume: volume.drive_letter.map(|d| d.to_ascii_uppercase()),
        conversion: Some(Seen::new(conversion.to_owned(), line)),
        percent_encrypted: Seen::new(f64::from(volume.encryption_percentage), line),
        method: Some(Seen::new(method, line)),
        protection_on: Seen::new(protection_on, line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_asks_for_the_drive_and_prints_json() {
        let cmd = command("D:");
        let script = cmd.args.last().unwrap();
        assert!(script.contains("DriveLetter='D:'"), "{script}");
        assert!(script.contains("ConvertTo-Json -Compress"), "{script}");
        assert_eq!(cmd.program, "powershell.exe");
    }

    #[test]
    fn documented_codes_have_names_and_others_do_not() {
        assert_eq!(conversion_name(4), Some("Encryption Paused"));
        assert_eq!(conversion_name(6), None);
        assert_eq!(method_name(7), Some("XTS-AES 256"));
        assert_eq!(method_name(8), None);
    }
}
