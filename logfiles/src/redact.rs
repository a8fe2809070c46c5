//! The secret patterns every log line and every bundle file goes through:
//! JWTs, authorization headers, secret-named fields, OAuth codes in URLs,
//! PEM private keys, WireGuard private keys. Pure.

use std::sync::LazyLock;

use regex::Regex;

/// The replacement text for anything cut out.
pub const REDACTED: &str = "[redacted]";

/// Patterns of secrets and their replacements (`@` stands for [`REDACTED`]).
static PATTERNS: LazyLock<Vec<(Regex, String)>> = LazyLock::new(|| {
    let rules: [(&str, &str); 6] = [
        // A JWT (ID/access token, EAT, client assertion): three base64url parts.
        (
            r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            "@",
        ),
        // Authorization headers.
        (
            r"(?i)\b(bearer|basic|dpop)\s+[A-Za-z0-9._~+/=-]{8,}",
            "${1} @",
        ),
        // JSON / TOML / key=value fields that hold a secret (quotes kept, so
        // JSON stays JSON).
        (
            r#"(?i)("?(?:access_token|refresh_token|id_token|client_secret|private_key|privatekey|password|code_verifier|device_code|secret)"?\s*[:=]\s*)("?)[^",\s}&]+"?"#,
            "${1}${2}@${2}",
        ),
        // OAuth codes and state in redirect URLs.
        (r"([?&](?:code|state|code_verifier)=)[^&\s]+", "${1}@"),
        // PEM private keys.
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            "@",
        ),
        // A WireGuard `PrivateKey = ...` line (wg-quick format).
        (r"(?i)(PrivateKey\s*=\s*)[A-Za-z0-9+/]{42,43}=", "${1}@"),
    ];
    rules
        .into_iter()
        .filter_map(|(pattern, replacement)| {
            let re = Regex::new(pattern).ok()?;
            Some((re, replacement.replace('@', REDACTED)))
        })
        .collect()
});

/// `text` with every secret-looking value replaced by [`REDACTED`]. Pure.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for (re, replacement) in PATTERNS.iter() {
        out = re.replace_all(&out, replacement.as_str()).into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

    #[test]
    fn secrets_are_cut_and_context_is_kept() {
        let cases = [
            (format!("token {JWT} used"), "token [redacted] used"),
            (
                "Authorization: Bearer abcdefgh12345678".to_owned(),
                "Authorization: Bearer [redacted]",
            ),
            (
                r#"{"refresh_token": "rt-123456", "user": "alice"}"#.to_owned(),
                r#"{"refresh_token": "[redacted]", "user": "alice"}"#,
            ),
            (
                "GET /callback?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz HTTP/1.1".to_owned(),
                "GET /callback?code=[redacted]&state=[redacted] HTTP/1.1",
            ),
            (
                "PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=".to_owned(),
                "PrivateKey = [redacted]",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----".to_owned(),
                "[redacted]",
            ),
            (
                "firewall: pass (nft list ruleset)".to_owned(),
                "firewall: pass (nft list ruleset)",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(&input), expected, "input: {input}");
        }
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(PATTERNS.len(), 6);
    }
}
