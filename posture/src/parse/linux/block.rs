//! Which block device holds `/`, and whether anything under it is dm-crypt.
//!
//! The check is about the *system volume*: the device under `/`, not "any
//! disk". `/proc/self/mountinfo` names the source of `/`; `lsblk -s` walks
//! from it down to the disks; a `crypt` node is confirmed by its device-mapper
//! uuid, because dm-verity and dm-integrity also look like mapper devices
//! but do not encrypt.

use super::super::ParseError;

const MOUNTINFO: &str = "/proc/self/mountinfo";
const LSBLK: &str = "`lsblk -s -n -r`";

/// The filesystem mounted at `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    /// The mount source (`/dev/vda`, `/dev/mapper/vg-root`, `overlay`).
    pub source: String,
    /// The filesystem type (`ext4`, `btrfs`, `overlay`).
    pub fstype: String,
}

impl RootMount {
    /// True when the source is a block device we can walk.
    pub fn is_block_device(&self) -> bool {
        self.source.starts_with("/dev/")
    }
}

/// The last mount on `/` in mountinfo (later mounts shadow earlier ones).
///
/// Line shape: `id parent major:minor root mountpoint options [optional…] - fstype source superopts`.
pub fn parse_root_mount(mountinfo: &str) -> Result<RootMount, ParseError> {
    let mut root = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut left_fields = left.split_whitespace();
        let mount_point = left_fields.nth(4);
        if mount_point != Some("/") {
            continue;
        }
        let mut right_fields = right.split_whitespace();
        if let (Some(fstype), Some(source)) = (right_fields.next(), right_fields.next()) {
            root = Some(RootMount {
                source: unescape_octal(source),
                fstype: fstype.to_owned(),
            });
        }
    }
    root.ok_or_else(|| ParseError::new(MOUNTINFO, "no mount on /"))
}

/// mountinfo escapes space, tab, newline and backslash as `\040` etc.
fn unescape_octal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let code = after.get(..3).and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &after[3..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One node on the path from the root device down to a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockNode {
    /// Kernel name as lsblk prints it (`root_crypt`, `sda3`).
    pub name: String,
    /// lsblk TYPE (`disk`, `part`, `lvm`, `crypt`, `raid1`, `loop`).
    pub kind: String,
    /// Kernel device name (`dm-0`) when KNAME was asked for; the key into
    /// `/sys/class/block/<kname>/dm/uuid`.
    pub kname: Option<String>,
}

/// Parses `lsblk -s -n -r -o NAME,TYPE[,KNAME] <dev>`: the device first, then
/// its ancestors. Names are escaped by lsblk in raw mode (`\x20`).
pub fn parse_lsblk_chain(text: &str) -> Result<Vec<BlockNode>, ParseError> {
    let mut nodes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(name), Some(kind), kname, None) => nodes.push(BlockNode {
                name: name.to_owned(),
                kind: kind.to_owned(),
                kname: kname.map(str::to_owned),
            }),
            _ => {
                return Err(ParseError::new(
                    LSBLK,
                    format!("unexpected line: {line:.80}"),
                ));
            }
        }
    }
    if nodes.is_empty() {
        return Err(ParseError::new(LSBLK, "no devices listed"));
    }
    Ok(nodes)
}

/// What a device-mapper target really is, from `/sys/block/dm-N/dm/uuid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmKind {
    /// LUKS1 dm-crypt.
    Luks1,
    /// LUKS2 dm-crypt.
    Luks2,
    /// Plain dm-crypt (no header).
    Plain,
    /// dm-crypt under another label (BitLocker via cryptsetup, TCRYPT...).
    OtherCrypt,
    /// dm-verity: integrity of a read-only image, not encryption.
    Verity,
    /// dm-integrity: integrity tags, not encryption.
    Integrity,
    /// LVM or anything else.
    Other,
}

impl DmKind {
    /// True for the kinds that encrypt data at rest.
    pub fn encrypts(self) -> bool {
        matches!(
            self,
            DmKind::Luks1 | DmKind::Luks2 | DmKind::Plain | DmKind::OtherCrypt
        )
    }

    /// A short name for the evidence and the `method` fact.
    pub fn label(self) -> &'static str {
        match self {
            DmKind::Luks1 => "LUKS1",
            DmKind::Luks2 => "LUKS2",
            DmKind::Plain => "plain dm-crypt",
            DmKind::OtherCrypt => "dm-crypt",
            DmKind::Verity => "dm-verity",
            DmKind::Integrity => "dm-integrity",
            DmKind::Other => "device-mapper",
        }
    }
}

/// Classifies a dm uuid such as `CRYPT-LUKS2-<hex>-<name>`.
pub fn classify_dm_uuid(uuid: &str) -> DmKind {
    let uuid = uuid.trim();
    if uuid.starts_with("CRYPT-LUKS1-") {
        DmKind::Luks1
    } else if uuid.starts_with("CRYPT-LUKS2-") {
        DmKind::Luks2
    } else if uuid.starts_with("CRYPT-PLAIN-") {
        DmKind::Plain
    } else if uuid.starts_with("CRYPT-VERITY-") {
        DmKind::Verity
    } else if uuid.starts_with("CRYPT-INTEGRITY-") {
        DmKind::Integrity
    } else if uuid.starts_with("CRYPT-") {
        DmKind::OtherCrypt
    } else {
        DmKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape_octal(r"/dev/my\040disk"), "/dev/my disk");
        assert_eq!(unescape_octal(r"a\b"), r"a\b");
        assert_eq!(unescape_octal("\\"), "\\");
    }

    #[test]
    fn verity_and_integrity_are_not_encryption() {
        assert!(!classify_dm_uuid("CRYPT-VERITY-abc-root").encrypts());
        assert!(!classify_dm_uuid("CRYPT-INTEGRITY-abc-x").encrypts());
        assert!(classify_dm_uuid("CRYPT-LUKS2-aaaa-ctest1").encrypts());
        assert!(!classify_dm_uuid("LVM-abcdef").encrypts());
    }
}
