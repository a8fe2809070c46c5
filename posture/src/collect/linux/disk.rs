//! Encryption of the device that holds `/`.

use std::sync::Arc;

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::collect::{CheckFuture, Context, boxed};
use crate::parse::linux::block::{self, DmKind};
use crate::probe;

pub(super) fn disk_encryption(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::DiskEncryption;
        let root = match probe::read_text("/proc/self/mountinfo")
            .map_err(Unknown::from)
            .and_then(|t| block::parse_root_mount(&t).map_err(Unknown::from))
        {
            Ok(root) => root,
            Err(reason) => return Check::unknown(id, reason),
        };
        if !root.is_block_device() {
            return Check::unknown(
                id,
                Unknown::new(
                    UnknownKind::NotApplicable,
                    format!(
                        "/ is {} ({}), not a block device: the volume that backs it is outside this system's view (container or network root)",
                        root.source, root.fstype
                    ),
                ),
            );
        }
        let out = match probe::run_ok(
            "lsblk",
            &["-s", "-n", "-r", "-o", "NAME,TYPE,KNAME", &root.source],
            context.command_timeout,
        )
        .await
        {
            Ok(out) => out,
            Err(err) => return Check::unknown(id, err.into()),
        };
        let chain = match block::parse_lsblk_chain(&out.stdout) {
            Ok(chain) => chain,
            Err(err) => return Check::unknown(id, err.into()),
        };
        let path: Vec<String> = chain
            .iter()
            .map(|n| format!("{} ({})", n.name, n.kind))
            .collect();
        let evidence = format!(
            "/ is {} ({}); `lsblk -s` chain: {}",
            root.source,
            root.fstype,
            path.join(" → ")
        );
        let mut found_crypt = false;
        for node in chain.iter().filter(|n| n.kind == "crypt") {
            found_crypt = true;
            let Some(kname) = &node.kname else { continue };
            let uuid_path = format!("/sys/class/block/{kname}/dm/uuid");
            match probe::read_text(&uuid_path) {
                Ok(uuid) => {
                    let kind = block::classify_dm_uuid(&uuid);
                    if kind.encrypts() {
                        return Check::pass(id, format!("{} on {}", kind.label(), root.source))
                            .fact("encrypted", true)
                            .fact("method", kind.label())
                            .fact("volume", root.source.clone())
                            .evidence(evidence)
                            .evidence(format!("read {uuid_path}: {}", redact_uuid(&uuid)));
                    }
                    if matches!(kind, DmKind::Verity | DmKind::Integrity) {
                        found_crypt = false;
                    }
                }
                Err(err) => {
                    return Check::unknown(
                        id,
                        Unknown::new(
                            Unknown::from(err.clone()).kind,
                            format!(
                                "{} is a crypt device but its kind could not be confirmed: {err}",
                                node.name
                            ),
                        ),
                    )
                    .evidence(evidence);
                }
            }
        }
        if found_crypt {
            return Check::unknown(
                id,
                Unknown::new(
                    UnknownKind::Unparseable,
                    "crypt device without a kernel name to confirm it",
                ),
            )
            .evidence(evidence);
        }
        Check::fail(id, format!("{} is not encrypted", root.source))
            .fact("encrypted", false)
            .fact("volume", root.source.clone())
            .evidence(evidence)
            .remediation("Encrypt the system disk (LUKS; on most distributions this means reinstalling with \"Encrypt the disk\" selected). Ask IT for help.")
    })
}

/// Keeps the kind prefix of a dm uuid; the random part identifies the volume.
fn redact_uuid(uuid: &str) -> String {
    let parts: Vec<&str> = uuid.trim().splitn(3, '-').collect();
    match parts.as_slice() {
        [a, b, _] => format!("{a}-{b}-…"),
        _ => "…".to_owned(),
    }
}
