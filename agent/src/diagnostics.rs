//! The helpdesk bundle: one zip with everything needed to understand why a
//! device is (not) allowed in, and nothing that would let anyone else in.
//!
//! What goes in: the posture report with evidence and remediation, the
//! verdict history with reasons, tunnel status, the effective settings and
//! which keys are locked, recent logs, versions. What never goes in: tokens,
//! keys, authorization codes. The agent never hands secrets to this module
//! in the first place; [`redact`] is the second line, applied to every file,
//! so a secret that slipped into a log line is still cut out.

use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

/// Why the bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DiagnosticsError {
    /// Creating or writing the file failed.
    #[error("cannot write {path}: {detail}")]
    Write {
        /// The bundle path.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

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

/// The status as the bundle carries it: each tunnel's SOCKS5 password
/// replaced by [`REDACTED`] (the username stays, so helpdesk can match it
/// against an application's proxy settings). The status view is the one
/// place the agent itself holds a secret for the user, so it is cut here,
/// before [`redact`] ever sees it.
pub fn without_socks_passwords(
    mut status: crate::control::view::StatusView,
) -> crate::control::view::StatusView {
    for tunnel in &mut status.tunnels {
        if tunnel.socks_password.is_some() {
            tunnel.socks_password = Some(REDACTED.to_owned());
        }
    }
    status
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name inside the zip.
    pub name: String,
    /// Its text (redacted when written).
    pub text: String,
}

/// The bundle's contents, collected by the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    /// The files, in order.
    pub entries: Vec<Entry>,
}

impl Bundle {
    /// Adds a text file.
    pub fn text(&mut self, name: &str, text: impl Into<String>) -> &mut Self {
        self.entries.push(Entry {
            name: name.to_owned(),
            text: text.into(),
        });
        self
    }

    /// Adds a value as pretty JSON.
    pub fn json<T: serde::Serialize>(&mut self, name: &str, value: &T) -> &mut Self {
        let text = serde_json::to_string_pretty(value)
            .unwrap_or_else(|e| format!("(could not serialise: {e})"));
        self.text(name, text)
    }

    /// Writes the zip (owner-only permissions), redacting every file, and a
    /// `README.txt` listing what is inside.
    pub fn write_zip(&self, path: &Path) -> Result<(), DiagnosticsError> {
        let fail = |detail: String| DiagnosticsError::Write {
            path: path.display().to_string(),
            detail,
        };
        let file = create_private(path).map_err(|e| fail(e.to_string()))?;
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        let mut readme = String::from(
            "Sallyport diagnostics bundle. Secrets (tokens, keys, codes) are redacted.\n\nFiles:\n",
        );
        for entry in &self.entries {
            readme.push_str(&format!("- {}\n", entry.name));
        }
        let files = std::iter::once(("README.txt", readme)).chain(
            self.entries
                .iter()
                .map(|e| (e.name.as_str(), redact(&e.text))),
        );
        for (name, text) in files {
            zip.start_file(name, options)
                .map_err(|e| fail(e.to_string()))?;
            zip.write_all(text.as_bytes())
                .map_err(|e| fail(e.to_string()))?;
        }
        zip.finish().map_err(|e| fail(e.to_string()))?;
        Ok(())
    }
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
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

    #[test]
    fn the_zip_holds_every_file_redacted_and_is_private() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.zip");
        let mut bundle = Bundle::default();
        bundle
            .json("posture.json", &serde_json::json!({"firewall": "pass"}))
            .text(
                "agent.log",
                format!("refreshed session, id_token={JWT}\nok\n"),
            );
        bundle.write_zip(&path).unwrap();

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["README.txt", "agent.log", "posture.json"]);
        let mut log = String::new();
        archive
            .by_name("agent.log")
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        assert!(!log.contains(JWT), "{log}");
        assert!(log.contains("id_token=[redacted]"), "{log}");
    }

    fn status_with_socks_password(password: &str) -> crate::control::view::StatusView {
        use crate::control::view::*;
        StatusView {
            identity: IdentityView::SignedOut,
            verdict: None,
            tunnels: vec![TunnelView {
                app: "wiki".into(),
                state: TunnelState::Up,
                reason: None,
                forwards: Vec::new(),
                socks: Some("127.0.0.1:40124".into()),
                socks_username: Some("sp-AbCdEfGh".into()),
                socks_password: Some(password.into()),
                bytes_in: 0,
                bytes_out: 0,
                last_handshake: None,
                expires_at: None,
            }],
            posture_collected_at: None,
            enrolment: EnrolmentView::default(),
            broker_unreachable: None,
        }
    }

    #[test]
    fn the_socks_password_never_reaches_the_zip() {
        use std::io::Read;
        const PASSWORD: &str = "Zq8_kP2-vW9xYr4tLm7nBc3dFg6hJs1a";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.zip");
        let status = status_with_socks_password(PASSWORD);
        let mut bundle = Bundle::default();
        // As the agent writes it, and (the second line of defence) as a
        // status that slipped through unredacted, e.g. into a log.
        bundle
            .json("status.json", &without_socks_passwords(status.clone()))
            .json("leaked.json", &status)
            .text("agent.log", format!("status {}", serde_json::json!(status)));
        bundle.write_zip(&path).unwrap();
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).unwrap();
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            assert!(!text.contains(PASSWORD), "{:?}: {text}", file.name());
        }
        let mut status_json = String::new();
        archive
            .by_name("status.json")
            .unwrap()
            .read_to_string(&mut status_json)
            .unwrap();
        assert!(status_json.contains("sp-AbCdEfGh"), "{status_json}");
        assert!(
            status_json.contains(r#""socks_password": "[redacted]""#),
            "{status_json}"
        );
    }
}
