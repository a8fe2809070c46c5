//! `defaults read DOMAIN KEY` output for a single scalar value.
//!
//! `defaults` prints the value alone on stdout. When the key is not set it
//! exits 1 and says so on stderr; that is a fact ("not configured, the
//! system default applies"), not a failure, so it is recognised separately.

use super::{ParseError, unexpected};

/// An integer value, e.g. `600` for `com.apple.screensaver idleTime`.
pub fn parse_defaults_integer(source: &'static str, text: &str) -> Result<i64, ParseError> {
    let trimmed = text.trim();
    if trimmed.lines().count() != 1 {
        return Err(unexpected(source, "one integer", text));
    }
    trimmed
        .parse::<i64>()
        .map_err(|_| unexpected(source, "an integer", text))
}

/// A string value on one line, e.g. `2024-06-04 08:06:27 +0000`.
pub fn parse_defaults_string(source: &'static str, text: &str) -> Result<String, ParseError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.lines().count() != 1 {
        return Err(unexpected(source, "one value on one line", text));
    }
    Ok(trimmed.to_owned())
}

/// True when `defaults read` reported that the key (or the whole domain) is
/// not set: `The domain/default pair of (com.apple.screensaver, idleTime) does
/// not exist`.
pub fn is_missing_default(stderr: &str) -> bool {
    stderr.contains("does not exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_missing_keys() {
        assert_eq!(parse_defaults_integer("`defaults`", "600\n"), Ok(600));
        assert!(parse_defaults_integer("`defaults`", "600\n700\n").is_err());
        assert!(parse_defaults_integer("`defaults`", "").is_err());
        assert!(is_missing_default(
            "\n2024-06-04 08:06:27.934 defaults[1:2] \nThe domain/default pair of (com.apple.screensaver, idleTime) does not exist\n"
        ));
    }
}
