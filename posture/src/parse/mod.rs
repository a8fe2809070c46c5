//! Pure parsers: raw text (or bytes) in, typed values out.
//!
//! Every parser for every OS is compiled and tested on every OS, against real
//! captured outputs under `posture/tests/fixtures/<os>/<signal>/`. They never
//! panic on any input (property-tested) and return [`ParseError`] when the
//! text is not what the source prints, so the check becomes `unknown`
//! (`unparseable`) instead of a guess.

pub mod linux;
pub mod macos;
pub mod windows;

use crate::check::{Unknown, UnknownKind};

/// The text did not have the shape the source is documented to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not parse {source_name}: {detail}")]
pub struct ParseError {
    /// The command or file the text came from, e.g. "`fdesetup status`".
    pub source_name: &'static str,
    /// What was expected and not found.
    pub detail: String,
}

impl ParseError {
    /// A parse error for `source_name`.
    pub fn new(source_name: &'static str, detail: impl Into<String>) -> Self {
        ParseError {
            source_name,
            detail: detail.into(),
        }
    }
}

impl From<ParseError> for Unknown {
    fn from(err: ParseError) -> Self {
        Unknown::new(UnknownKind::Unparseable, err.to_string())
    }
}
