//! OS identity, reboot state, Secure Boot, machine identifiers, TPM, realm.

use std::path::Path;
use std::sync::Arc;

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::collect::{CheckFuture, Context, boxed};
use crate::parse::linux::{identity, kernel, os_release, realm, secure_boot};
use crate::probe;

const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

pub(super) fn os_version(_context: Arc<Context>) -> CheckFuture {
    boxed(async {
        let (path, text) = match probe::read_text("/etc/os-release") {
            Ok(text) => ("/etc/os-release", text),
            Err(first) => match probe::read_text("/usr/lib/os-release") {
                Ok(text) => ("/usr/lib/os-release", text),
                Err(_) => return Check::unknown(CheckId::OsVersion, first.into()),
            },
        };
        let release = match os_release::parse_os_release(&text) {
            Ok(release) => release,
            Err(err) => return Check::unknown(CheckId::OsVersion, err.into()),
        };
        let kernel = probe::read_text("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .ok();
        let display = release.pretty_name.clone().unwrap_or_else(|| {
            format!(
                "{} {}",
                release.name,
                release.version_id.as_deref().unwrap_or("")
            )
        });
        let mut check = Check::pass(
            CheckId::OsVersion,
            match &kernel {
                Some(k) => format!("{display}, kernel {k}"),
                None => display.clone(),
            },
        )
        .fact("platform_id", release.id.clone())
        .fact("name", release.name.clone())
        .fact("version", release.version_id.clone().unwrap_or_default())
        .fact("version_parts", release.version_parts())
        .fact("id_like", release.id_like.clone())
        .evidence(format!(
            "read {path}: ID={} VERSION_ID={}",
            release.id,
            release.version_id.as_deref().unwrap_or("(none)")
        ));
        if let Some(codename) = &release.codename {
            check = check.fact("build", codename.clone());
        }
        if let Some(k) = kernel {
            check = check
                .fact("kernel", k.clone())
                .evidence(format!("read /proc/sys/kernel/osrelease: {k}"));
        }
        check
    })
}

pub(super) fn reboot_pending(_context: Arc<Context>) -> CheckFuture {
    boxed(async {
        let id = CheckId::RebootPending;
        if let Ok(packages) = probe::read_text("/run/reboot-required.pkgs")
            .or_else(|_| probe::read_text("/run/reboot-required").map(|_| String::new()))
        {
            let list: Vec<&str> = packages.lines().filter(|l| !l.is_empty()).collect();
            return Check::fail(id, "a reboot is required to finish installing updates")
                .fact("reboot_pending", true)
                .evidence(format!(
                    "/run/reboot-required exists; packages: {}",
                    if list.is_empty() {
                        "(not listed)".to_owned()
                    } else {
                        list.join(", ")
                    }
                ))
                .remediation("Restart the computer to finish installing updates.");
        }
        let running = match probe::read_text("/proc/sys/kernel/osrelease") {
            Ok(k) => k.trim().to_owned(),
            Err(err) => return Check::unknown(id, err.into()),
        };
        let names: Vec<String> = match std::fs::read_dir("/boot") {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(err) => return Check::unknown(id, probe::io_error("/boot", &err).into()),
        };
        let installed = kernel::installed_kernels(names.iter().map(String::as_str));
        if !installed.contains(&running) {
            return Check::unknown(
                id,
                Unknown::new(
                    UnknownKind::NotApplicable,
                    format!(
                        "the running kernel {running} is not one of the installed kernels ({}): it is supplied from outside (VM or container host), and /run/reboot-required is absent",
                        if installed.is_empty() {
                            "none under /boot".to_owned()
                        } else {
                            installed.join(", ")
                        }
                    ),
                ),
            );
        }
        match kernel::newest_kernel(&installed) {
            Some(newest) if newest != running => {
                Check::fail(id, format!("kernel {newest} installed, {running} running"))
                    .fact("reboot_pending", true)
                    .evidence(format!("newest /boot/vmlinuz-{newest} is newer than the running {running}"))
                    .remediation("Restart the computer to run the updated kernel.")
            }
            _ => Check::pass(id, "no reboot pending")
                .fact("reboot_pending", false)
                .evidence(format!("running kernel {running} is the newest under /boot; /run/reboot-required absent")),
        }
    })
}

pub(super) fn secure_boot(_context: Arc<Context>) -> CheckFuture {
    boxed(async {
        let id = CheckId::SecureBoot;
        if !Path::new("/sys/firmware/efi").exists() {
            return Check::fail(id, "legacy BIOS boot: Secure Boot is not available")
                .fact("enabled", false)
                .fact("firmware", "bios")
                .evidence("/sys/firmware/efi is absent (booted without UEFI)")
                .remediation(
                    "Boot in UEFI mode with Secure Boot enabled in the firmware settings.",
                );
        }
        let from_var = probe::read_bytes(SECURE_BOOT_VAR)
            .map_err(Unknown::from)
            .and_then(|bytes| secure_boot::parse_secure_boot_efivar(&bytes).map_err(Unknown::from))
            .map(|on| {
                (
                    on,
                    format!("read {SECURE_BOOT_VAR}: value byte {}", u8::from(on)),
                )
            });
        let decided = match from_var {
            Ok(decided) => Ok(decided),
            Err(var_err) => {
                match probe::run_ok("mokutil", &["--sb-state"], probe::COMMAND_TIMEOUT).await {
                    Ok(out) => match secure_boot::parse_mokutil_sb_state(&out.stdout) {
                        Ok(secure_boot::MokutilState::Enabled) => Ok((
                            true,
                            "ran `mokutil --sb-state`: SecureBoot enabled".to_owned(),
                        )),
                        Ok(_) => Ok((
                            false,
                            format!("ran `mokutil --sb-state`: {}", out.stdout.trim()),
                        )),
                        Err(err) => Err(Unknown::from(err)),
                    },
                    Err(_) => Err(var_err),
                }
            }
        };
        match decided {
            Ok((true, evidence)) => Check::pass(id, "Secure Boot enabled")
                .fact("enabled", true)
                .fact("firmware", "uefi")
                .evidence(evidence),
            Ok((false, evidence)) => Check::fail(id, "Secure Boot disabled")
                .fact("enabled", false)
                .fact("firmware", "uefi")
                .evidence(evidence)
                .remediation("Enable Secure Boot in the UEFI firmware settings."),
            Err(reason) => Check::unknown(id, reason),
        }
    })
}

pub(super) fn device_identity(_context: Arc<Context>) -> CheckFuture {
    boxed(async {
        let id = CheckId::DeviceIdentity;
        let machine_id = match probe::read_text("/etc/machine-id")
            .map_err(Unknown::from)
            .and_then(|t| identity::parse_machine_id(&t).map_err(Unknown::from))
        {
            Ok(machine_id) => machine_id,
            Err(reason) => return Check::unknown(id, reason),
        };
        let (serial, serial_evidence) = match probe::read_text("/sys/class/dmi/id/product_serial") {
            Ok(text) => match identity::real_serial(&text) {
                Some(serial) => (
                    Some(serial),
                    "read /sys/class/dmi/id/product_serial".to_owned(),
                ),
                None => (
                    None,
                    format!(
                        "/sys/class/dmi/id/product_serial holds a placeholder ({:?})",
                        text.trim()
                    ),
                ),
            },
            Err(err) => (None, format!("serial not read: {err}")),
        };
        Check::pass(
            id,
            format!("machine id {}…", machine_id.get(..8).unwrap_or(&machine_id)),
        )
        .fact("machine_id", machine_id)
        .fact("serial", serial)
        .evidence("read /etc/machine-id (note: cloned images share it)")
        .evidence(serial_evidence)
    })
}

pub(super) fn tpm(_context: Arc<Context>) -> CheckFuture {
    boxed(async {
        let id = CheckId::Tpm;
        let class = Path::new("/sys/class/tpm/tpm0");
        if !class.exists() {
            return Check::fail(id, "no TPM found")
                .fact("present", false)
                .evidence("/sys/class/tpm/tpm0 is absent")
                .remediation(
                    "Enable the TPM in the firmware settings, or use a device with a TPM 2.0.",
                );
        }
        let version = probe::read_text(class.join("tpm_version_major"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        Check::pass(id, format!("TPM {version} present").replace("  ", " "))
            .fact("present", true)
            .fact("version", version.clone())
            .evidence(format!(
                "/sys/class/tpm/tpm0 exists; tpm_version_major={version:?}; /dev/tpmrm0 {}",
                if Path::new("/dev/tpmrm0").exists() {
                    "present"
                } else {
                    "absent"
                }
            ))
    })
}

pub(super) fn enrollment(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::Enrollment;
        let out = match probe::run_ok("realm", &["list"], context.command_timeout).await {
            Ok(out) => out,
            Err(err) => {
                return Check::unknown(
                    id,
                    Unknown::new(
                        Unknown::from(err.clone()).kind,
                        format!(
                            "{err}: realmd is how a Linux machine is joined to a directory; without it membership cannot be read"
                        ),
                    ),
                );
            }
        };
        let realms = realm::parse_realm_list(&out.stdout);
        match realms.iter().find(|r| r.joined()) {
            Some(joined) => Check::pass(id, format!("joined to {}", joined.name))
                .fact("enrolled", true)
                .fact("kind", "realm")
                .evidence(format!(
                    "ran `realm list`: {} configured: {}",
                    joined.name, joined.configured
                )),
            None => Check::fail(id, "not joined to a directory domain")
                .fact("enrolled", false)
                .evidence(format!(
                    "ran `realm list`: {} realm(s), none configured",
                    realms.len()
                ))
                .remediation("Ask IT to enrol this computer (realm join)."),
        }
    })
}
