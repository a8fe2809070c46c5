//! Installing a checked package with the platform's own installer, run by
//! the service (it has the privileges; the user is never asked).
//!
//! - Linux: `.deb` with `dpkg -i` (the package's dependencies are those of
//!   the version it replaces), `.rpm` with `rpm -U --oldpackage` (a pinned
//!   rollback is an older package).
//! - Windows: `msiexec /i FILE /qn /norestart`.
//! - macOS: `installer -pkg FILE -target /`.
//!
//! The package's own scripts restart the service into the new binary.
//!
//! Under systemd (`INVOCATION_ID` set) the service itself is sandboxed
//! (`ProtectSystem=strict`, one capability, no new privileges), so an
//! installer started from it could not write `/usr`. There the installer
//! runs as a transient unit of its own, outside the sandbox:
//! `systemd-run --wait --collect --quiet --unit sallyport-update-PID …`;
//! it also outlives the service's restart by the package's scripts. (Not
//! exercised in CI: its containers have no systemd as PID 1.)

use std::path::Path;
use std::time::Duration;

/// How long an installer may run.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// The command line that installs `file` on this OS; an error for a
/// package kind this OS does not install.
pub fn command(file: &Path) -> Result<(String, Vec<String>), String> {
    let path = file.display().to_string();
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let (program, args): (&str, Vec<String>) = match (std::env::consts::OS, ext) {
        ("linux", "deb") => ("dpkg", vec!["-i".into(), path]),
        ("linux", "rpm") => ("rpm", vec!["-U".into(), "--oldpackage".into(), path]),
        ("windows", "msi") => (
            "msiexec",
            vec!["/i".into(), path, "/qn".into(), "/norestart".into()],
        ),
        ("macos", "pkg") => (
            "/usr/sbin/installer",
            vec!["-pkg".into(), path, "-target".into(), "/".into()],
        ),
        (os, ext) => return Err(format!("no installer for a .{ext} package on {os}")),
    };
    Ok((program.to_owned(), args))
}

/// Runs the installer for `file` and waits for it; the error carries its
/// exit status and the end of its output.
pub async fn run(file: &Path) -> Result<(), String> {
    let (program, args) = command(file)?;
    let under_systemd = cfg!(target_os = "linux")
        && std::env::var_os("INVOCATION_ID").is_some()
        && Path::new("/run/systemd/system").exists();
    let (program, args) = if under_systemd {
        let mut wrapped = vec![
            "--wait".to_owned(),
            "--collect".to_owned(),
            "--quiet".to_owned(),
            "--unit".to_owned(),
            format!("sallyport-update-{}", std::process::id()),
            program,
        ];
        wrapped.extend(args);
        ("systemd-run".to_owned(), wrapped)
    } else {
        (program, args)
    };
    let child = tokio::process::Command::new(&program)
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(INSTALL_TIMEOUT, child)
        .await
        .map_err(|_| format!("{program} did not finish within {INSTALL_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr);
    let tail: String = text
        .chars()
        .rev()
        .take(500)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!("{program} {}: {}", output.status, tail.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_os_has_its_installer() {
        let deb = command(Path::new(
            "/var/lib/sallyport/updates/sallyport_0.2.0_amd64.deb",
        ));
        let msi = command(Path::new("sallyport-0.2.0.msi"));
        if cfg!(target_os = "linux") {
            assert_eq!(deb.unwrap().0, "dpkg");
            assert!(msi.is_err());
        }
        if cfg!(windows) {
            let (program, args) = msi.unwrap();
            assert_eq!(program, "msiexec");
            assert!(args.contains(&"/qn".to_owned()));
        }
    }
}
