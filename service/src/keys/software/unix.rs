//! The software key file on Unix: created 0600 by this account in a 0700
//! directory, read only when still 0600-or-stricter and owned by this
//! account (`fstat` on the open file, so the check and the read are about
//! the same file).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::{Der, FileId};
use crate::keys::KeyError;

fn io(path: &Path, what: &str, e: std::io::Error) -> KeyError {
    KeyError::Unavailable {
        backend: "software",
        reason: format!("cannot {what} {}: {e}", path.display()),
    }
}

fn insecure(path: &Path, reason: String) -> KeyError {
    KeyError::Insecure {
        path: path.display().to_string(),
        reason,
    }
}

/// The key's bytes and file identity, `None` when there is no file.
pub(super) fn read_private(path: &Path) -> Result<Option<(Der, FileId)>, KeyError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, "open", e)),
    };
    let meta = file.metadata().map_err(|e| io(path, "stat", e))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_file() {
        return Err(insecure(path, "not a regular file".to_owned()));
    }
    if meta.uid() != me {
        return Err(insecure(
            path,
            format!(
                "owned by uid {}, not by the service's uid {me}; delete it to make a new key",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(insecure(
            path,
            format!(
                "readable or writable by group or others (mode {:o}); the key may have been copied: delete it to make a new one",
                meta.mode() & 0o777
            ),
        ));
    }
    let mut der = Vec::new();
    file.read_to_end(&mut der)
        .map_err(|e| io(path, "read", e))?;
    Ok(Some((Der::new(der), file_id_of(&meta))))
}

/// Writes `der` to `path` (0600, via a temporary file and a rename, so a
/// crash leaves either no key or a whole one); creates the directory 0700.
pub(super) fn write_private(path: &Path, der: &Der) -> Result<FileId, KeyError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io(dir, "create", e))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, "create", e))?;
    file.write_all(der.expose())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&tmp, "write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, "rename into", e))?;
    let meta = file.metadata().map_err(|e| io(path, "stat", e))?;
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

/// Device, inode and change time: a file made anew at the same path (whose
/// inode number may be reused) still differs in its change time.
fn file_id_of(meta: &std::fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    }
}
