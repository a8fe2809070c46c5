//! The broker's files at rest: its database and the gateway's WireGuard
//! private key. Both are readable by the broker's account only (0600), in
//! a directory others cannot write to; the key lives in its own file, not
//! in the database, so a copy of the database (a backup, a support bundle)
//! does not carry the key that lets anyone impersonate the gateway.

use std::path::{Path, PathBuf};

use tunnel::PrivateKey;

use super::service::StartError;
use super::store::Store;

/// Where the gateway key lives: `gateway.key` next to the database.
pub fn gateway_key_path(database: &Path) -> PathBuf {
    database.with_file_name("gateway.key")
}

/// Makes the database's directory (0700) when missing, refuses one others
/// may write to, and creates the database file 0600 (tightening an older,
/// broader one). SQLite gives its `-wal` and `-shm` files the database's mode.
pub fn prepare_database(path: &Path) -> Result<(), StartError> {
    prepare_directory(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
        let err = |what: String| StartError::Listen(what);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let mode = file
            .metadata()
            .map_err(|e| err(format!("{}: {e}", path.display())))?
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the database was readable by others; made it 0600");
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
        }
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(meta) = std::fs::metadata(&side)
                && meta.mode() & 0o077 != 0
            {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| err(format!("{}: {e}", side.display())))?;
            }
        }
    }
    Ok(())
}

/// Makes the directory of the broker's state files (the SQLite database,
/// `gateway.key`), named by the database path: 0700 when missing, and
/// refused when others may write to it. On PostgreSQL only the key lives
/// there.
pub fn prepare_directory(database: &Path) -> Result<(), StartError> {
    let err = |what: String| StartError::Listen(what);
    let dir = match database.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
        match std::fs::metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
            }
            Err(e) => return Err(err(format!("{}: {e}", dir.display()))),
            Ok(meta) if meta.mode() & 0o022 != 0 => {
                return Err(err(format!(
                    "{} may be written by other accounts (mode {:o}): keep the broker's database in a directory only its account writes to (0700)",
                    dir.display(),
                    meta.mode() & 0o7777
                )));
            }
            Ok(_) => {}
        }
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The gateway's private key from its 0600 file; made on first start. A key
/// an older broker kept in the database moves to the file (the database row
/// is then deleted), so agents' grants naming the gateway stay valid.
pub fn gateway_key(store: &dyn Store, path: &Path) -> Result<PrivateKey, StartError> {
    let err = |what: String| StartError::Listen(format!("gateway key {}: {what}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt as _;
                let mode = std::fs::metadata(path)
                    .map_err(|e| err(e.to_string()))?
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(err(format!(
                        "readable by other accounts (mode {:o}); chmod 600 it, and replace the key if others may have read it",
                        mode & 0o777
                    )));
                }
            }
            PrivateKey::from_base64(text.trim()).map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = match store.take_meta("gateway_private_key")? {
                Some(old) => old,
                None => PrivateKey::generate().to_base64().to_string(),
            };
            let key = PrivateKey::from_base64(text.trim()).map_err(|e| err(e.to_string()))?;
            write_private(path, &text).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes `text` to a new file only the owner may read, atomically (also
/// for `sallyport-gateway keygen`).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("key.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let _ = std::fs::remove_file(&tmp);
    let mut file = options.open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    #[test]
    fn the_database_and_its_directory_are_private() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("state/broker.db");
        prepare_database(&db).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        assert_eq!(mode(&db), 0o600);
        // An older, broader database is tightened.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare_database(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        // A directory others may write to is refused.
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare_database(&shared.join("broker.db")).unwrap_err();
        assert!(e.to_string().contains("only its account writes to"), "{e}");
    }

    #[test]
    fn the_state_directory_alone_is_made_private_for_a_postgres_broker() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("state/broker.db");
        prepare_directory(&db).unwrap();
        let mode = std::fs::metadata(db.parent().unwrap()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(!db.exists(), "no SQLite file is made");
        std::fs::set_permissions(db.parent().unwrap(), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert!(
            prepare_directory(&db).is_err(),
            "a shared directory is refused"
        );
    }

    #[test]
    fn the_gateway_key_moves_out_of_the_database_into_a_private_file() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("broker.db");
        prepare_database(&db).unwrap();
        let store = crate::server::store::SqliteStore::open(&db).unwrap();
        let old = PrivateKey::generate();
        let old_text = old.to_base64().to_string();
        store
            .meta_or_insert("gateway_private_key", &old_text)
            .unwrap();
        let path = gateway_key_path(&db);
        let key = gateway_key(&store, &path).unwrap();
        assert_eq!(key.public_key(), old.public_key(), "the same gateway");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(store.take_meta("gateway_private_key").unwrap(), None);
        // Later starts read the file.
        assert_eq!(
            gateway_key(&store, &path).unwrap().public_key(),
            old.public_key()
        );
        // A key file others can read is refused.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(gateway_key(&store, &path).is_err());
    }
}
