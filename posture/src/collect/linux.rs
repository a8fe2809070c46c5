//! Linux collectors: thin shims over `crate::parse::linux`.
//!
//! Each reads the least privileged source that answers; when only root could
//! answer and we are not root, the check says so (`unknown`,
//! `permission_denied`) instead of reading "no access" as "off".

mod antivirus;
mod disk;
mod firewall;
mod screen_lock;
mod system;
mod updates;

use super::{CheckId, Collector};

pub(crate) fn collectors() -> Vec<(CheckId, Collector)> {
    vec![
        (CheckId::OsVersion, system::os_version),
        (CheckId::SecurityUpdates, updates::security_updates),
        (CheckId::LastUpdate, updates::last_update),
        (CheckId::RebootPending, system::reboot_pending),
        (CheckId::DiskEncryption, disk::disk_encryption),
        (CheckId::Firewall, firewall::firewall),
        (CheckId::ScreenLock, screen_lock::screen_lock),
        (CheckId::Antivirus, antivirus::antivirus),
        (CheckId::SecureBoot, system::secure_boot),
        (CheckId::DeviceIdentity, system::device_identity),
        (CheckId::Tpm, system::tpm),
        (CheckId::Enrollment, system::enrollment),
        (CheckId::AgentVersion, super::agent_version),
    ]
}
