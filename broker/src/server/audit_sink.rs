//! Copies of every audit row for a SIEM: JSON lines appended to a file,
//! and/or RFC 5424 syslog messages (UDP or the local datagram socket).
//!
//! The database row is written first and is the record; the sinks are
//! copies, written by one background task so a slow disk or a dead syslog
//! server never holds up a request. The queue is bounded: when it is full
//! the copy is dropped, counted and logged, and a SIEM fills the gap from
//! `GET /v1/admin/audit?after=SEQ` (every row has its `seq`).
//!
//! The RFC 5424 line is formatted here (a pure function, tested below)
//! rather than by a syslog crate: the format is one line of fixed fields,
//! and the crates on offer bring their own transport and process naming.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::config::SyslogTarget;
use crate::api::AuditEntry;

/// How many rows may wait for the writer.
const QUEUE: usize = 8192;

/// The handle the broker sends rows to.
#[derive(Debug, Clone, Default)]
pub struct AuditSink {
    tx: Option<mpsc::Sender<AuditEntry>>,
    dropped: Arc<AtomicU64>,
}

/// Why a sink could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The JSON-lines file.
    #[error("audit.jsonl {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The syslog socket.
    #[error("audit.syslog: {0}")]
    Syslog(std::io::Error),
}

enum Syslog {
    Udp(std::net::UdpSocket, std::net::SocketAddr),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixDatagram, PathBuf),
}

impl AuditSink {
    /// No copies.
    pub fn none() -> Self {
        Self::default()
    }

    /// Opens the configured sinks (errors now, not at the first row) and
    /// starts the writer. Must run inside the tokio runtime.
    pub fn start(jsonl: Option<&Path>, syslog: Option<&SyslogTarget>) -> Result<Self, SinkError> {
        if jsonl.is_none() && syslog.is_none() {
            return Ok(Self::none());
        }
        let mut file = jsonl.map(open_jsonl).transpose()?;
        let mut syslog = syslog.map(open_syslog).transpose()?;
        let host = host_name();
        let (tx, mut rx) = mpsc::channel::<AuditEntry>(QUEUE);
        tokio::task::spawn_blocking(move || {
            while let Some(entry) = rx.blocking_recv() {
                let json = serde_json::to_string(&entry).unwrap_or_default();
                if let Some(f) = file.as_mut()
                    && let Err(e) = writeln!(f, "{json}").and_then(|()| f.flush())
                {
                    tracing::error!(error = %e, seq = entry.seq, "cannot append to audit.jsonl");
                }
                if let Some(s) = syslog.as_mut() {
                    let line = rfc5424(&entry, &json, &host, std::process::id());
                    let sent = match s {
                        Syslog::Udp(sock, to) => sock.send_to(line.as_bytes(), *to).map(drop),
                        #[cfg(unix)]
                        Syslog::Unix(sock, path) => sock.send_to(line.as_bytes(), path).map(drop),
                    };
                    if let Err(e) = sent {
                        tracing::warn!(error = %e, seq = entry.seq, "cannot send to audit.syslog");
                    }
                }
            }
        });
        Ok(Self {
            tx: Some(tx),
            dropped: Arc::default(),
        })
    }

    /// Queues a copy of `entry`; never waits.
    pub fn send(&self, entry: &AuditEntry) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(entry.clone()).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    seq = entry.seq,
                    "audit sink queue full: copies dropped (the database keeps every row; resume from GET /v1/admin/audit?after=SEQ)"
                );
            }
        }
    }
}

fn open_jsonl(path: &Path) -> Result<std::fs::File, SinkError> {
    let err = |source| SinkError::File {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Decisions name users and devices: readable by the broker's account only.
        options.mode(0o600);
    }
    options.open(path).map_err(err)
}

fn open_syslog(target: &SyslogTarget) -> Result<Syslog, SinkError> {
    match target {
        SyslogTarget::Udp(to) => {
            let bind: std::net::SocketAddr = if to.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = std::net::UdpSocket::bind(bind).map_err(SinkError::Syslog)?;
            Ok(Syslog::Udp(sock, *to))
        }
        #[cfg(unix)]
        SyslogTarget::Unix(path) => {
            let sock = std::os::unix::net::UnixDatagram::unbound().map_err(SinkError::Syslog)?;
            Ok(Syslog::Unix(sock, path.clone()))
        }
        #[cfg(not(unix))]
        SyslogTarget::Unix(_) => Err(SinkError::Syslog(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "unix: syslog sockets exist only on Unix",
        ))),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| printable(h.trim(), 255))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// Facility 13 ("log audit", RFC 5424 §6.2.1).
const FACILITY_LOG_AUDIT: u8 = 13;

/// The RFC 5424 message for `entry`: `<PRI>1 TIMESTAMP HOST APP PROCID
/// MSGID [SD] BOM JSON`. Severity 6 (informational) for an allow, 5
/// (notice) for a deny. The structured data uses the documentation
/// enterprise number 32473 (RFC 5612) until Sallyport has its own.
pub fn rfc5424(entry: &AuditEntry, json: &str, host: &str, pid: u32) -> String {
    let severity = if entry.outcome == "allow" { 6 } else { 5 };
    let pri = u16::from(FACILITY_LOG_AUDIT) * 8 + severity;
    let at = entry
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".to_owned());
    let msgid = match printable(&entry.action, 32) {
        m if m.is_empty() => "-".to_owned(),
        m => m,
    };
    let outcome = sd_escape(&entry.outcome);
    format!(
        "<{pri}>1 {at} {host} sallyport-broker {pid} {msgid} [sallyport@32473 seq=\"{}\" outcome=\"{outcome}\"] \u{feff}{json}",
        entry.seq
    )
}

/// Printable US-ASCII without spaces (RFC 5424 header fields), cut to `max`.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect()
}

/// A structured-data parameter value: `"`, `\` and `]` escaped (§6.3.3).
fn sd_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outcome: &str) -> AuditEntry {
        AuditEntry {
            seq: 42,
            at: time::OffsetDateTime::from_unix_timestamp(1_796_290_920).unwrap(),
            action: "grant".into(),
            outcome: outcome.into(),
            reason: "r".into(),
            ..AuditEntry::default()
        }
    }

    #[test]
    fn rfc5424_header_fields() {
        let e = entry("deny");
        let line = rfc5424(&e, "{\"seq\":42}", "host-1", 77);
        assert_eq!(
            line,
            "<109>1 2026-12-03T09:42:00Z host-1 sallyport-broker 77 grant [sallyport@32473 seq=\"42\" outcome=\"deny\"] \u{feff}{\"seq\":42}"
        );
        assert!(rfc5424(&entry("allow"), "{}", "h", 1).starts_with("<110>1 "));
        let mut odd = entry("a\"b]");
        odd.action = "grant now\n".into();
        let line = rfc5424(&odd, "{}", "h", 1);
        assert!(line.contains(" grantnow [sallyport@32473"), "{line}");
        assert!(line.contains("outcome=\"a\\\"b\\]\""), "{line}");
    }

    #[tokio::test]
    async fn both_sinks_receive_each_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let listener = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        listener
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let target = SyslogTarget::Udp(listener.local_addr().unwrap());
        let sink = AuditSink::start(Some(&path), Some(&target)).unwrap();
        sink.send(&entry("allow"));
        let mut buf = [0u8; 4096];
        let n = listener.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("<110>1 2026-12-03T09:42:00Z "), "{text}");
        assert!(text.ends_with("\"reason\":\"r\"}"), "{text}");
        // The file line was written before the datagram was sent.
        let lines = std::fs::read_to_string(&path).unwrap();
        let row: AuditEntry = serde_json::from_str(lines.trim()).unwrap();
        assert_eq!(row.seq, 42);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_missing_directory_is_an_error_at_start() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let e = AuditSink::start(Some(Path::new("/nonexistent/dir/a.jsonl")), None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/dir/a.jsonl"), "{e}");
    }
}
