//! The software key file on OSes whose access checks are not written yet
//! (Windows ACLs): the backend refuses, rather than trust a file it cannot
//! check. The Windows service is later work.

use std::path::Path;

use super::{Der, FileId};
use crate::keys::KeyError;

fn unavailable() -> KeyError {
    KeyError::Unavailable {
        backend: "software",
        reason: "the key file's access checks exist only on Unix so far".to_owned(),
    }
}

pub(super) fn read_private(_path: &Path) -> Result<Option<(Der, FileId)>, KeyError> {
    Err(unavailable())
}

pub(super) fn write_private(_path: &Path, _der: &Der) -> Result<FileId, KeyError> {
    Err(unavailable())
}

pub(super) fn file_id(_path: &Path) -> Result<Option<FileId>, KeyError> {
    Err(unavailable())
}
