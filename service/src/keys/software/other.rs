//! The software key file on OSes with neither Unix modes nor Windows ACLs:
//! the backend refuses, rather than trust a file it cannot protect.

use std::path::Path;

use super::{Der, FileId};
use crate::keys::KeyError;

fn unavailable() -> KeyError {
    KeyError::Unavailable {
        backend: "software",
        reason: "no way to protect the key file on this OS".to_owned(),
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
