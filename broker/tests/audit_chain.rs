//! `sallyport-broker audit verify` on a real broker's database: intact
//! after real decisions, and each kind of tampering done with sqlite3
//! straight on the file (around the broker and its triggers) is named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn verify(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport-broker"))
        .args(["--config", config.to_str().unwrap(), "audit", "verify"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// SQL run on a copy of the database, around the broker: the append-only
/// triggers are dropped first, as an attacker with the file would.
fn tampered(db: &Path, dir: &Path, name: &str, sql: &str) -> std::path::PathBuf {
    let copy = dir.join(format!("{name}.db"));
    std::fs::copy(db, &copy).unwrap();
    let conn = rusqlite_free_exec(&copy, sql);
    assert!(conn, "sqlite3 failed on {name}");
    copy
}

/// sqlite3 through Python's stdlib module (no extra tool to install).
fn rusqlite_free_exec(db: &Path, sql: &str) -> bool {
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.commit()\n";
    Command::new("python3")
        .args(["-c", script, db.to_str().unwrap(), sql])
        .status()
        .unwrap()
        .success()
}

fn config_for(dir: &Path, db: &Path, base: &str) -> std::path::PathBuf {
    let path = dir.join(format!(
        "{}.toml",
        db.file_stem().unwrap().to_str().unwrap()
    ));
    let text = base.replace("__DB__", db.to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_changed_deleted_and_reordered_rows() {
    let env = Env::start().await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    device.attest(healthy_report()).await;
    for _ in 0..3 {
        let wg = tunnel::PrivateKey::generate().public_key();
        assert_eq!(device.request_grant("echo", &wg).await.status(), 201);
        assert_eq!(device.request_grant("nope", &wg).await.status(), 404);
    }
    let log = env.audit().await;
    assert!(log.len() >= 8, "{log:#?}");
    assert!(
        log.iter()
            .all(|e| e.hash.as_ref().is_some_and(|h| h.len() == 64))
    );

    let db = db_path(env.dir.path());
    let work = tempfile::tempdir().unwrap();
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"__DB__\"\n[oidc]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\nclient_id = \"sallyport-desktop\"\n[gateway]\nlisten = \"127.0.0.1:0\"\n",
        env.issuer.url
    );
    // The live database (WAL and all) verifies.
    let (ok, text) = verify(&config_for(work.path(), &db, &base));
    assert!(ok, "{text}");
    assert!(text.contains("audit log intact"), "{text}");
    assert!(
        text.contains(log.last().unwrap().hash.as_deref().unwrap()),
        "{text}"
    );

    // A checkpointed copy to tamper with.
    let clean = work.path().join("clean.db");
    assert!(rusqlite_free_exec(
        &db,
        &format!("VACUUM INTO '{}';", clean.display())
    ));
    let drop = "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;";
    for (name, sql, words) in [
        (
            "changed",
            format!("{drop} UPDATE audit SET reason = 'nothing happened' WHERE seq = 3;"),
            "row 3 was changed",
        ),
        (
            "deleted",
            format!("{drop} DELETE FROM audit WHERE seq = 4;"),
            "rows between 3 and 5 are missing",
        ),
        (
            "renumbered",
            format!(
                "{drop} DELETE FROM audit WHERE seq = 4; UPDATE audit SET seq = seq - 1 WHERE seq > 4;"
            ),
            "row 4 does not follow row 3",
        ),
        (
            "reordered",
            format!(
                "{drop} UPDATE audit SET seq = -1 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 6; UPDATE audit SET seq = 6 WHERE seq = -1;"
            ),
            "row 5 does not follow row 4",
        ),
    ] {
        let copy = tampered(&clean, work.path(), name, &sql);
        let (ok, text) = verify(&config_for(work.path(), &copy, &base));
        assert!(!ok, "{name}: tampering went unnoticed: {text}");
        assert!(text.contains("TAMPERED"), "{name}: {text}");
        assert!(text.contains(words), "{name}: expected {words:?} in {text}");
    }
}
