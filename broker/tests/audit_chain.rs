//! `sallyport-broker audit verify` on a real broker's database: intact
//! after real decisions, and each kind of tampering done straight in the
//! database (around the broker and its triggers: sqlite3 on a copy of the
//! file, or psql on a copy of the PostgreSQL database) is named.

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

/// A configuration naming the SQLite file `db`, or with `url` the
/// PostgreSQL database, for `audit verify`.
fn config_for(
    dir: &Path,
    name: &str,
    db: &Path,
    url: Option<&str>,
    base: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let url = url
        .map(|u| format!("database_url = {u:?}\n"))
        .unwrap_or_default();
    let text = base
        .replace("__DB__", db.to_str().unwrap())
        .replace("__URL__", &url);
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
    let url = support::broker::database_url_for(&db);
    let work = tempfile::tempdir().unwrap();
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"__DB__\"\n__URL__[oidc]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\nclient_id = \"sallyport-desktop\"\n[gateway]\nlisten = \"127.0.0.1:0\"\n",
        env.issuer.url
    );
    // The live database (WAL and all) verifies.
    let (ok, text) = verify(&config_for(work.path(), "live", &db, url.as_deref(), &base));
    assert!(ok, "{text}");
    assert!(text.contains("audit log intact"), "{text}");
    assert!(
        text.contains(log.last().unwrap().hash.as_deref().unwrap()),
        "{text}"
    );

    let postgres = support::postgres::selected();
    // Renumbering rows one by one would collide with PostgreSQL's unique
    // seq mid-statement: there, through negative numbers.
    let renumber = if postgres {
        "UPDATE audit SET seq = -seq WHERE seq > 4; UPDATE audit SET seq = -seq - 1 WHERE seq < 0;"
    } else {
        "UPDATE audit SET seq = seq - 1 WHERE seq > 4;"
    };
    let cases = [
        (
            "changed",
            "UPDATE audit SET reason = 'nothing happened' WHERE seq = 3;".to_owned(),
            "row 3 was changed",
        ),
        (
            "deleted",
            "DELETE FROM audit WHERE seq = 4;".to_owned(),
            "rows between 3 and 5 are missing",
        ),
        (
            "renumbered",
            format!("DELETE FROM audit WHERE seq = 4; {renumber}"),
            "row 4 does not follow row 3",
        ),
        (
            "reordered",
            "UPDATE audit SET seq = -1 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 6; UPDATE audit SET seq = 6 WHERE seq = -1;".to_owned(),
            "row 5 does not follow row 4",
        ),
    ];

    if postgres {
        // Copies by template need the database idle: the broker stops.
        env.broker.shutdown().await;
        for (name, sql, words) in &cases {
            let copy = support::postgres::copy_database(&db, name);
            let drop =
                "DROP TRIGGER audit_no_change ON audit; DROP TRIGGER audit_no_truncate ON audit;";
            support::postgres::shared()
                .psql(&copy, &format!("{drop} {sql}"))
                .unwrap();
            let url = support::postgres::shared().url_of(&copy);
            let (ok, text) = verify(&config_for(work.path(), name, &db, Some(&url), &base));
            assert!(!ok, "{name}: tampering went unnoticed: {text}");
            assert!(text.contains("TAMPERED"), "{name}: {text}");
            assert!(text.contains(words), "{name}: expected {words:?} in {text}");
        }
        return;
    }

    // A checkpointed copy to tamper with.
    let clean = work.path().join("clean.db");
    assert!(rusqlite_free_exec(
        &db,
        &format!("VACUUM INTO '{}';", clean.display())
    ));
    let drop = "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;";
    for (name, sql, words) in &cases {
        let copy = tampered(&clean, work.path(), name, &format!("{drop} {sql}"));
        let (ok, text) = verify(&config_for(work.path(), name, &copy, None, &base));
        assert!(!ok, "{name}: tampering went unnoticed: {text}");
        assert!(text.contains("TAMPERED"), "{name}: {text}");
        assert!(text.contains(words), "{name}: expected {words:?} in {text}");
    }
}
