//! Parsers for macOS sources (compiled on every OS).
//!
//! One module per signal. Each exposes `parse_*` functions (raw text in,
//! typed value out, [`ParseError`] when the text is not what the tool
//! prints) and, where turning the parsed value into a [`crate::Check`] holds
//! a decision worth testing, a pure `*_check` function. The collectors in
//! `collect/macos.rs` only run the commands and call these, so every pass /
//! fail rule for macOS is tested on any OS.
//!
//! The collectors run every tool with `LC_ALL=C`, so the English wording is
//! what these parsers match; anything else is `unparseable`, never a guess.

pub mod defaults;
pub mod enrollment;
pub mod filevault;
pub mod firewall;
pub mod gatekeeper;
pub mod identity;
pub mod platform_security;
pub mod screen_lock;
pub mod sip;
pub mod software_update;
pub mod sw_vers;
pub mod xprotect;

use super::ParseError;

/// Splits a `Key: value` line (either side trimmed); `None` without a colon.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    Some((key.trim(), value.trim()))
}

/// The first non-empty line, trimmed; for error messages and evidence.
fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// At most `max` characters of `text` (cut on a character boundary), so an
/// error or evidence line never carries a whole garbage output.
fn clip(text: &str, max: usize) -> String {
    let mut clipped: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        clipped.push('…');
    }
    clipped
}

/// A parse error that quotes (the start of) the first line found.
fn unexpected(source: &'static str, expected: &str, text: &str) -> ParseError {
    let found = first_line(text);
    if found.is_empty() {
        ParseError::new(source, format!("expected {expected}, got empty output"))
    } else {
        ParseError::new(
            source,
            format!("expected {expected}, got {:?}", clip(found, 60)),
        )
    }
}
