//! Parsers for Windows sources (compiled on every OS).
//!
//! Each signal has its own module with:
//! - `command()`: the exact command line the collector runs (kept here, as
//!   data, so the collector and the evidence quote the same thing);
//! - `parse_*`: raw text in, typed value out, [`ParseError`](crate::parse::ParseError)
//!   when the text is not the shape the tool prints;
//! - `*_check`: the pure "parsed value → [`Check`](crate::check::Check)"
//!   mapping, so the pass/fail rules are unit-tested without Windows.
//!
//! Sources are chosen for stable, unlocalized output: `reg query` (value names
//! and types are never translated), PowerShell objects printed by property
//! name, and numeric/boolean fields. Where only localized text exists
//! (`manage-bde`), the parser matches English plus French (and German
//! keywords) on ASCII fragments only: console tools write to a pipe in the OEM
//! code page, which [`crate::probe`] decodes lossily as UTF-8, so accented
//! letters arrive as U+FFFD.

pub mod antivirus;
pub mod bitlocker;
pub mod bitlocker_cim;
pub mod command;
pub mod defender;
pub mod device_identity;
pub mod enrollment;
pub mod fields;
pub mod firewall;
pub mod last_update;
pub mod os_version;
pub mod reboot_pending;
pub mod registry;
pub mod screen_lock;
pub mod secure_boot;
pub mod security_center;
pub mod security_updates;
pub mod tpm;

pub use command::CommandLine;

/// A parsed value together with the raw line it was read from, so a check
/// can quote the line that decided it in its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen<T> {
    /// The typed value.
    pub value: T,
    /// The raw line (trimmed) that held it.
    pub line: String,
}

impl<T> Seen<T> {
    /// `value`, read from `line`.
    pub fn new(value: T, line: &str) -> Self {
        Seen {
            value,
            line: line.trim().to_owned(),
        }
    }
}

/// True when a tool's message says access was refused, in English, French or
/// German, or as the HRESULT `E_ACCESSDENIED` (0x80070005). Matches ASCII
/// fragments only, because accented letters may arrive mangled (see module docs).
pub fn mentions_access_denied(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.contains("access is denied")
        || lower.contains("access denied")
        || lower.contains("0x80070005")
        || lower.contains("access a required resource was denied")
        || (lower.contains("zugriff") && lower.contains("verweigert"))
        || (lower.contains("acc") && lower.contains("refus"))
}

/// The first non-empty line of `text`, trimmed (for error details).
pub fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("")
}
