//! The software key file on Windows: in a directory, and a file, whose DACL
//! is replaced by LocalSystem + administrators only, protected from
//! inheritance (`win_security::PRIVATE_SDDL`). The DACL is enforced at
//! every read and write rather than checked, so a loosened ACL is
//! tightened before the key is used. A standard user can neither list the
//! directory nor open the file.

use std::io::{Read as _, Write as _};
use std::os::windows::fs::MetadataExt as _;
use std::path::Path;

use super::{Der, FileId};
use crate::keys::KeyError;
use crate::win_security::{PRIVATE_SDDL, SecurityDescriptor, protect_path};

fn io(path: &Path, what: &str, e: std::io::Error) -> KeyError {
    KeyError::Unavailable {
        backend: "software",
        reason: format!("cannot {what} {}: {e}", path.display()),
    }
}

fn private(path: &Path) -> Result<(), KeyError> {
    let descriptor =
        SecurityDescriptor::from_sddl(PRIVATE_SDDL).map_err(|e| io(path, "make the ACL for", e))?;
    protect_path(path, &descriptor).map_err(|e| io(path, "restrict the ACL of", e))
}

/// The key's bytes and file identity, `None` when there is no file.
pub(super) fn read_private(path: &Path) -> Result<Option<(Der, FileId)>, KeyError> {
    if !path.exists() {
        return Ok(None);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private(dir)?;
    }
    private(path)?;
    let mut file = std::fs::File::open(path).map_err(|e| io(path, "open", e))?;
    let meta = file.metadata().map_err(|e| io(path, "stat", e))?;
    if !meta.is_file() {
        return Err(KeyError::Insecure {
            path: path.display().to_string(),
            reason: "not a regular file".to_owned(),
        });
    }
    let mut der = Vec::new();
    file.read_to_end(&mut der)
        .map_err(|e| io(path, "read", e))?;
    Ok(Some((Der::new(der), file_id_of(&meta))))
}

/// Writes `der` to `path` through a temporary file (restricted before the
/// key is written into it) and a rename; creates and restricts the
/// directory.
pub(super) fn write_private(path: &Path, der: &Der) -> Result<FileId, KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, "create", e))?;
        private(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io(&tmp, "create", e))?;
    private(&tmp)?;
    file.write_all(der.expose())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&tmp, "write", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io(path, "rename into", e))?;
    private(path)?;
    let meta = std::fs::metadata(path).map_err(|e| io(path, "stat", e))?;
    Ok(file_id_of(&meta))
}

/// The identity of the file at `path` now, `None` when it is gone.
pub(super) fn file_id(path: &Path) -> Result<Option<FileId>, KeyError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(file_id_of(&meta))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, "stat", e)),
    }
}

/// Creation and last-write times: a key file made anew at the same path
/// has a new creation time.
fn file_id_of(meta: &std::fs::Metadata) -> FileId {
    FileId {
        dev: 0,
        ino: meta.creation_time(),
        ctime: (i64::try_from(meta.last_write_time()).unwrap_or(i64::MAX), 0),
    }
}
