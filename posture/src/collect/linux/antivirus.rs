//! Antivirus / EDR on Linux: ClamAV or Microsoft Defender for Endpoint.

use std::path::Path;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::check::{Check, CheckId};
use crate::collect::{CheckFuture, Context, boxed};
use crate::probe;

const CLAMAV_DBS: &[&str] = &["/var/lib/clamav/daily.cld", "/var/lib/clamav/daily.cvd"];

pub(super) fn antivirus(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::Antivirus;
        if let Ok(out) = probe::run_ok(
            "mdatp",
            &["health", "--field", "healthy"],
            context.command_timeout,
        )
        .await
        {
            let healthy = out.stdout.trim() == "true";
            let check = if healthy {
                Check::pass(id, "Microsoft Defender for Endpoint healthy")
            } else {
                Check::fail(id, "Microsoft Defender for Endpoint reports unhealthy")
                    .remediation("Run `mdatp health` and fix what it reports, or contact IT.")
            };
            return check
                .fact("present", true)
                .fact("running", healthy)
                .fact("product", "Microsoft Defender for Endpoint")
                .evidence(format!(
                    "ran `mdatp health --field healthy`: {}",
                    out.stdout.trim()
                ));
        }
        let db = CLAMAV_DBS.iter().find_map(|p| {
            let modified = std::fs::metadata(p).ok()?.modified().ok()?;
            Some((*p, modified))
        });
        let Some((db_path, modified)) = db else {
            return Check::fail(id, "no antivirus found")
                .fact("present", false)
                .evidence("looked for Microsoft Defender for Endpoint (mdatp) and ClamAV signatures (/var/lib/clamav/daily.c[vl]d)")
                .remediation("Install the endpoint protection IT provides (or ClamAV: `sudo apt-get install clamav-daemon clamav-freshclam`).");
        };
        let age_days = (context.now - OffsetDateTime::from(modified))
            .whole_days()
            .max(0);
        let running = probe::run(
            "systemctl",
            &["is-active", "clamav-daemon"],
            context.command_timeout,
        )
        .await
        .ok()
        .map(|o| o.stdout.trim() == "active");
        let freshclam = Path::new("/var/run/clamav/freshclam.pid").exists()
            || Path::new("/run/clamav/freshclam.pid").exists();
        let check = match running {
            Some(true) => Check::pass(
                id,
                format!("ClamAV running, signatures {age_days} day(s) old"),
            ),
            Some(false) => Check::fail(id, "ClamAV installed but its daemon is not running")
                .remediation(
                    "Start it: `sudo systemctl enable --now clamav-daemon clamav-freshclam`.",
                ),
            None => Check::unknown(
                id,
                crate::check::Unknown::new(
                    crate::check::UnknownKind::SourceMissing,
                    "ClamAV signatures found, but whether its daemon runs cannot be read without systemd",
                ),
            ),
        };
        check
            .fact("present", true)
            .fact("running", running)
            .fact("product", "ClamAV")
            .fact("signature_age_days", age_days)
            .evidence(format!(
                "{db_path} modified {age_days} day(s) ago; freshclam pid file {}",
                if freshclam { "present" } else { "absent" }
            ))
    })
}
