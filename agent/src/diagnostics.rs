//! The helpdesk bundle: one zip with everything needed to understand why a
//! device is (not) allowed in, and nothing that would let anyone else in.
//!
//! What goes in: the posture report with evidence and remediation, the
//! timeline (what was decided and why, 7 days), tunnel status, the
//! settings with managed and locked keys marked, the recent logs (the
//! agent's, and the device service's when readable), versions, and a
//! connectivity check against the broker (`crate::connectivity`). What
//! never goes in: tokens, keys, authorization codes. The agent never hands
//! secrets to this module in the first place; [`redact`] is the second
//! line, applied to every file, so a secret that slipped into a log line
//! is still cut out.
//!
//! The bundle is bounded: each file at [`MAX_FILE_BYTES`] (its start cut,
//! the newest kept), the logs at [`MAX_LOG_BYTES`] each, so a helpdesk
//! mailbox never gets a 1 GB attachment.

use std::io::Write;
use std::path::Path;

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

pub use logfiles::{REDACTED, redact};

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

/// Largest file in the bundle, in bytes (before compression).
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;

/// The newest bytes of each log set the bundle carries.
pub const MAX_LOG_BYTES: u64 = 512 * 1024;

/// `text` cut to its last `max` bytes (at a line start when there is one),
/// with a first line saying so. Pure.
pub fn keep_end(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    let tail = tail.find('\n').map_or(tail, |i| &tail[i + 1..]);
    format!("[{} earlier bytes cut]\n{tail}", text.len() - tail.len())
}

/// The versions file: this build, the OS, the broker.
fn versions(broker: Option<&str>) -> String {
    format!(
        "sallyport {}\nos: {} {} ({})\nbroker: {}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        sysinfo::System::long_os_version().unwrap_or_else(|_| "version unknown".to_owned()),
        broker.unwrap_or("(not configured)")
    )
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
    /// Adds a text file (its start cut beyond [`MAX_FILE_BYTES`]).
    pub fn text(&mut self, name: &str, text: impl Into<String>) -> &mut Self {
        self.entries.push(Entry {
            name: name.to_owned(),
            text: keep_end(text.into(), MAX_FILE_BYTES),
        });
        self
    }

    /// The parts every bundle carries, from this machine: versions, the
    /// settings with who set each key (managed keys marked locked), the
    /// recent logs of the agent (`logs_dir`) and of the device service.
    pub fn machine_parts(&mut self, broker: Option<&str>, logs_dir: Option<&Path>) -> &mut Self {
        self.text("versions.txt", versions(broker));
        match crate::config::load() {
            Ok(effective) => {
                let view =
                    crate::config::view::describe(&effective, crate::config::schema::Os::current());
                self.json("settings.json", &view)
            }
            Err(e) => self.text("settings.error.txt", e.to_string()),
        };
        if let Some(dir) = logs_dir {
            self.log("logs/agent.log", dir, crate::logs::AGENT);
            self.log("logs/app.log", dir, crate::logs::APP);
        }
        let service_dir = crate::logs::service_dir();
        self.log("logs/sallyportd.log", &service_dir, crate::logs::SERVICE);
        self
    }

    /// The newest [`MAX_LOG_BYTES`] of a log set, or why it is missing.
    fn log(&mut self, name: &str, dir: &Path, set: &str) -> &mut Self {
        match logfiles::recent(dir, set, MAX_LOG_BYTES) {
            Ok(text) if text.is_empty() => self.text(
                &format!("{name}.missing.txt"),
                format!("no log in {}", dir.display()),
            ),
            Ok(text) => self.text(name, text),
            Err(e) => self.text(
                &format!("{name}.missing.txt"),
                format!("cannot read the log in {}: {e}", dir.display()),
            ),
        }
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
            support_code: None,
            update: None,
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
