//! The default store: one SQLite file (rusqlite, bundled), for a broker
//! that runs as one process.
//!
//! Columns added after the first release (device status and approval, the
//! policy digest a grant was decided under, cleared user revocations) are
//! added to an older database at open by [`SqliteStore::open`], with defaults that
//! keep its meaning: devices enrolled before enrolment modes existed are
//! active, and grants of unknown policy are treated as made under an old one.
//!
//! Every write is its own transaction with `synchronous=FULL` in WAL mode, so
//! a grant or revocation the API has confirmed survives a crash or restart.
//! The audit table refuses UPDATE and DELETE by trigger. Times are Unix
//! seconds.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AuditDecision, AuditRows, DeviceRow, Enrolment, GrantRow, NewAudit, NewDeviceRules, OpenGrants,
    Store, StoreError, Taken, UserRevocation, VerdictRow, WithDecision as _, address, chain_row,
    json, parse_json, stored_entry, timestamp,
};
use crate::api::{AuditEntry, DeviceStatus, GrantRecord, VerdictRecord, Violation};
use crate::server::audit_chain::ChainRow;
use crate::server::eat::{EnrolledKey, NonceAnswer};
use crate::server::grants::StoredVerdict;

/// The database. Cheap operations under one mutex: the broker's write rate
/// is a few per device per minute.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    jwk TEXT NOT NULL,
    sec1 BLOB NOT NULL,
    ueid TEXT NOT NULL,
    name TEXT,
    enrolled_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoke_reason TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    approved_at INTEGER
);
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    user TEXT NOT NULL,
    compliant INTEGER NOT NULL,
    violations TEXT NOT NULL,
    evaluated_at INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    policy_digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_device ON verdicts(device_id, id);
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    user TEXT NOT NULL,
    app TEXT NOT NULL,
    wg_public_key TEXT NOT NULL,
    client_address TEXT NOT NULL,
    targets TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    closed_at INTEGER,
    close_reason TEXT,
    policy_digest TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS grants_open_key ON grants(wg_public_key) WHERE closed_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS grants_open_addr ON grants(client_address) WHERE closed_at IS NULL;
CREATE TABLE IF NOT EXISTS user_revocations (
    user TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    until_cleared INTEGER NOT NULL DEFAULT 0,
    cleared_at INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    user TEXT,
    device_id TEXT,
    problem TEXT,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_user_at ON audit(user, at);
CREATE TABLE IF NOT EXISTS user_networks (
    user TEXT NOT NULL,
    network TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (user, network)
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// Columns later releases added: `(table, column, declaration)`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("devices", "status", "TEXT NOT NULL DEFAULT 'active'"),
    ("devices", "approved_at", "INTEGER"),
    ("grants", "policy_digest", "TEXT NOT NULL DEFAULT ''"),
    (
        "user_revocations",
        "until_cleared",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    ("user_revocations", "cleared_at", "INTEGER"),
    ("verdicts", "facts", "TEXT NOT NULL DEFAULT '{}'"),
    ("grants", "ends_reason", "TEXT"),
    ("grants", "reopens_at", "INTEGER"),
    ("grants", "access_input", "TEXT"),
    ("grants", "gateway", "TEXT"),
    ("audit", "decision", "TEXT"),
    ("audit", "prev_hash", "TEXT"),
    ("audit", "hash", "TEXT"),
];

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        for (table, column, declaration) in ADDED_COLUMNS {
            add_column_if_missing(&conn, table, column, declaration)?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Opens the database read-only, as it is (no schema change): for
    /// tools that inspect it, such as `audit verify`.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for SqliteStore {
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
            params![key, value],
        )?;
        Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?)
    }

    /// Removes and returns a value from `meta` (a secret moving out of the
    /// database).
    fn take_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        let value: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        if value.is_some() {
            conn.execute("DELETE FROM meta WHERE key = ?1", [key])?;
        }
        Ok(value)
    }

    /// Enrols `key` for its user. A key already enrolled is returned as it
    /// is (`rules` are for new keys); a new key is refused while its user's
    /// revocation stands uncleared or the user is at the quota. One
    /// transaction, so two enrolments at once cannot both take the last
    /// place of a quota.
    fn enrol(
        &self,
        key: &EnrolledKey,
        jwk_json: &str,
        name: Option<&str>,
        now: i64,
        rules: NewDeviceRules,
    ) -> Result<Enrolment, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing = device_in(&tx, &key.device_id)?;
        let out = match existing {
            Some(row) if row.key.user != key.user => Enrolment::Conflict,
            // A revoked key stays revoked: enrolling it again must not undo
            // an admin's decision (the caller refuses it; only clearing the
            // revocation lets the key in again).
            Some(row) => Enrolment::Existing(row),
            None => {
                let user_blocked = tx
                    .query_row(
                        "SELECT 1 FROM user_revocations WHERE user = ?1 AND cleared_at IS NULL",
                        [&key.user],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                let held: u32 = tx.query_row(
                    "SELECT COUNT(*) FROM devices WHERE user = ?1 AND revoked_at IS NULL",
                    [&key.user],
                    |r| r.get(0),
                )?;
                if user_blocked {
                    Enrolment::UserRevoked
                } else if held >= rules.max_devices_per_user {
                    Enrolment::QuotaExceeded(held)
                } else {
                    let status = if rules.pending { "pending" } else { "active" };
                    tx.execute(
                        "INSERT INTO devices (device_id, user, jwk, sec1, ueid, name, enrolled_at, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![key.device_id, key.user, jwk_json, key.sec1, key.ueid, name, now, status],
                    )?;
                    Enrolment::Created(DeviceRow {
                        key: key.clone(),
                        enrolled_at: now,
                        pending: rules.pending,
                        approved_at: None,
                        name: name.map(str::to_owned),
                    })
                }
            }
        };
        tx.commit()?;
        Ok(out)
    }

    /// Approves a pending, unrevoked device; its row afterwards (`None`:
    /// unknown). Approving an active device changes nothing.
    fn approve_device(&self, device_id: &str, now: i64) -> Result<Option<DeviceRow>, StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE devices SET status = 'active', approved_at = ?2 WHERE device_id = ?1 AND status = 'pending' AND revoked_at IS NULL",
            params![device_id, now],
        )?;
        device_in(&conn, device_id)
    }

    /// Every device, oldest enrolment first; only those in `status` when given.
    fn devices(&self, status: Option<DeviceStatus>) -> Result<Vec<DeviceRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY enrolled_at, device_id"
        ))?;
        let rows = stmt.query_map([], device_row)?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            if status.is_none_or(|s| s == row.status()) {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Forgets a revoked device and its verdicts, so that its key can be
    /// enrolled afresh (through the enrolment mode, with no old verdict to
    /// lean on). False when the device is not revoked; `None` when unknown.
    fn forget_revoked_device(&self, device_id: &str) -> Result<Option<bool>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(row) = device_in(&tx, device_id)? else {
            return Ok(None);
        };
        if !row.key.revoked {
            return Ok(Some(false));
        }
        tx.execute("DELETE FROM verdicts WHERE device_id = ?1", [device_id])?;
        tx.execute("DELETE FROM devices WHERE device_id = ?1", [device_id])?;
        tx.commit()?;
        Ok(Some(true))
    }

    /// The device with `device_id`.
    fn device(&self, device_id: &str) -> Result<Option<DeviceRow>, StoreError> {
        device_in(&self.conn(), device_id)
    }

    /// Records a fresh nonce for `user`.
    fn issue_nonce(
        &self,
        nonce: &str,
        user: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        // Keep used and expired nonces a day so a replay is named as such,
        // then let them go.
        conn.execute("DELETE FROM nonces WHERE expires_at < ?1", [now - 86_400])?;
        conn.execute(
            "INSERT INTO nonces (nonce, user, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![nonce, user, now, expires_at],
        )?;
        Ok(())
    }

    /// Unused, unexpired nonces `user` holds.
    fn outstanding_nonces(&self, user: &str, now: i64) -> Result<u32, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM nonces WHERE user = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![user, now],
            |r| r.get(0),
        )?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Consumes `nonce` for `user` atomically: exactly one caller ever gets
    /// [`NonceAnswer::Consumed`] (no TOCTOU between check and use).
    fn consume_nonce(&self, nonce: &str, user: &str, now: i64) -> Result<NonceAnswer, StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE nonces SET used_at = ?3 WHERE nonce = ?1 AND user = ?2 AND used_at IS NULL AND expires_at > ?3",
            params![nonce, user, now],
        )?;
        if n == 1 {
            return Ok(NonceAnswer::Consumed);
        }
        let row: Option<(Option<i64>, i64)> = conn
            .query_row(
                "SELECT used_at, expires_at FROM nonces WHERE nonce = ?1 AND user = ?2",
                params![nonce, user],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            None => NonceAnswer::Unknown,
            Some((Some(_), _)) => NonceAnswer::AlreadyUsed,
            Some((None, _)) => NonceAnswer::Expired,
        })
    }

    /// Stores a verdict.
    #[allow(clippy::too_many_arguments)]
    fn insert_verdict(
        &self,
        device_id: &str,
        user: &str,
        compliant: bool,
        violations: &[Violation],
        evaluated_at: i64,
        valid_until: i64,
        policy_digest: &str,
        facts: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO verdicts (device_id, user, compliant, violations, evaluated_at, valid_until, policy_digest, facts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![device_id, user, compliant, json(&violations), evaluated_at, valid_until, policy_digest, facts],
        )?;
        Ok(())
    }

    /// The device's latest verdict.
    fn latest_verdict(&self, device_id: &str) -> Result<Option<VerdictRow>, StoreError> {
        let row: Option<(String, bool, String, i64, String, String)> = self
            .conn()
            .query_row(
                "SELECT user, compliant, violations, valid_until, policy_digest, facts FROM verdicts WHERE device_id = ?1 ORDER BY id DESC LIMIT 1",
                [device_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?;
        row.map(
            |(user, compliant, violations, valid_until, policy_digest, facts)| {
                Ok(VerdictRow {
                    user,
                    facts,
                    verdict: StoredVerdict {
                        compliant,
                        violations: parse_json(&violations)?,
                        valid_until,
                        policy_digest,
                    },
                })
            },
        )
        .transpose()
    }

    /// Addresses of open grants.
    fn used_addresses(&self) -> Result<HashSet<Ipv4Addr>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT client_address FROM grants WHERE closed_at IS NULL")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = HashSet::new();
        for r in rows {
            if let Ok(a) = r?.parse() {
                out.insert(a);
            }
        }
        Ok(out)
    }

    /// Whether a WireGuard key has an open grant.
    fn key_in_use(&self, wg_public_key: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM grants WHERE wg_public_key = ?1 AND closed_at IS NULL",
                [wg_public_key],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn insert_grant(&self, g: &GrantRow) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO grants (id, device_id, user, app, wg_public_key, client_address, targets, created_at, expires_at, policy_digest, ends_reason, reopens_at, access_input, gateway) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![g.id, g.device_id, g.user, g.app, g.wg_public_key, g.client_address.to_string(), json(&g.targets), g.created_at, g.expires_at, g.policy_digest, g.ends_reason, g.reopens_at, g.access_input, g.gateway],
        ).map_err(taken)?;
        Ok(())
    }

    fn open_grants_where(&self, which: OpenGrants<'_>) -> Result<Vec<GrantRow>, StoreError> {
        let (clause, arg): (&str, &dyn rusqlite::ToSql) = match &which {
            OpenGrants::All => ("1 = ?1", &1),
            OpenGrants::Id(id) => ("id = ?1", id),
            OpenGrants::Device(device_id) => ("device_id = ?1", device_id),
            OpenGrants::User(user) => ("user = ?1", user),
            OpenGrants::Key(key) => ("wg_public_key = ?1", key),
            OpenGrants::NotUnder(digest) => ("policy_digest <> ?1", digest),
            OpenGrants::DueBy(now) => ("expires_at <= ?1", now),
            OpenGrants::Gateway(id) => ("gateway = ?1", id),
        };
        let conn = self.conn();
        let sql = format!(
            "SELECT id, device_id, user, app, wg_public_key, client_address, targets, created_at, expires_at, policy_digest, ends_reason, reopens_at, access_input, gateway FROM grants WHERE closed_at IS NULL AND {clause} ORDER BY created_at"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([arg], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, String>(9)?,
                (
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<i64>>(11)?,
                    r.get::<_, Option<String>>(12)?,
                    r.get::<_, Option<String>>(13)?,
                ),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                device_id,
                user,
                app,
                wg_public_key,
                addr,
                targets,
                created_at,
                expires_at,
                policy_digest,
                (ends_reason, reopens_at, access_input, gateway),
            ) = row?;
            out.push(GrantRow {
                id,
                device_id,
                user,
                app,
                wg_public_key,
                client_address: address(&addr)?,
                targets: parse_json(&targets)?,
                created_at,
                expires_at,
                policy_digest,
                ends_reason,
                reopens_at,
                access_input,
                gateway,
            });
        }
        Ok(out)
    }

    /// Closes a grant; false if it was not open.
    fn close_grant(&self, id: &str, now: i64, reason: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE grants SET closed_at = ?2, close_reason = ?3 WHERE id = ?1 AND closed_at IS NULL",
            params![id, now, reason],
        )? == 1)
    }

    /// Whether `network` was seen for `user` before; records it when not.
    fn remember_network(&self, user: &str, network: &str, now: i64) -> Result<bool, StoreError> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO user_networks (user, network, first_seen) VALUES (?1, ?2, ?3)",
            params![user, network, now],
        )?;
        Ok(inserted == 0)
    }

    /// Whether `network` was seen for `user` (read only).
    fn knows_network(&self, user: &str, network: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM user_networks WHERE user = ?1 AND network = ?2",
                params![user, network],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Grants denied to `user` since `since` (Unix seconds), from the audit log.
    fn denied_grants_since(&self, user: &str, since: i64) -> Result<u32, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM audit WHERE user = ?1 AND at >= ?2 AND action = 'grant' AND outcome = 'deny'",
            params![user, since],
            |r| r.get(0),
        )?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Marks a device revoked; false if unknown.
    fn revoke_device(&self, device_id: &str, now: i64, reason: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE devices SET revoked_at = ?2, revoke_reason = ?3 WHERE device_id = ?1 AND revoked_at IS NULL",
            params![device_id, now, reason],
        )?;
        Ok(changed == 1 || self.device(device_id)?.is_some())
    }

    /// Revokes a user's sessions as of `now`; with `until_cleared`, also
    /// every later sign-in until [`Store::clear_user_revocation`]. A plain
    /// revocation never lifts an until-cleared one.
    fn revoke_user(
        &self,
        user: &str,
        now: i64,
        reason: &str,
        until_cleared: bool,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO user_revocations (user, revoked_at, reason, until_cleared) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(user) DO UPDATE SET revoked_at = excluded.revoked_at, reason = excluded.reason,
                 until_cleared = MAX(until_cleared, excluded.until_cleared), cleared_at = NULL",
            params![user, now, reason, i64::from(until_cleared)],
        )?;
        Ok(())
    }

    /// The user's revocation, if any.
    fn user_revocation(&self, user: &str) -> Result<Option<UserRevocation>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT revoked_at, until_cleared FROM user_revocations WHERE user = ?1",
                [user],
                |r| {
                    Ok(UserRevocation {
                        revoked_at: r.get(0)?,
                        until_cleared: r.get::<_, i64>(1)? != 0,
                    })
                },
            )
            .optional()?)
    }

    /// Clears the user's revocation as of `now`; false when none was in
    /// force. Afterwards the user may enrol new devices again, and an
    /// until-cleared block is lifted: sign-ins after `now` are accepted.
    /// Tokens from sign-ins before `now` stay refused (made while the user
    /// was blocked, perhaps by whoever caused the block), so `revoked_at`
    /// moves to `now` for an until-cleared block and keeps its time
    /// otherwise.
    fn clear_user_revocation(&self, user: &str, now: i64) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE user_revocations
             SET revoked_at = CASE WHEN until_cleared = 1 THEN MAX(revoked_at, ?2) ELSE revoked_at END,
                 until_cleared = 0, cleared_at = ?2
             WHERE user = ?1 AND cleared_at IS NULL",
            params![user, now],
        )?;
        Ok(changed == 1)
    }

    fn audit_many(&self, entries: &[(NewAudit<'_>, i64)]) -> Result<Vec<AuditEntry>, StoreError> {
        // One transaction under the connection's lock: two rows can never
        // chain to the same predecessor.
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first (waiting up to the busy
        // timeout). The audit writer has a connection of its own, and a
        // deferred transaction that reads and then writes could not wait
        // for another connection's write to finish (SQLITE_BUSY at once).
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (mut seq, mut prev): (i64, String) = tx
            .query_row(
                "SELECT seq, COALESCE(hash, '') FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, String::new()));
        let mut stored = Vec::with_capacity(entries.len());
        for (e, now) in entries {
            seq += 1;
            let row = chain_row(e, seq, *now, &prev);
            let hash = crate::server::audit_chain::row_hash(&prev, &row);
            tx.execute(
                "INSERT INTO audit (seq, at, action, outcome, user, device_id, problem, reason, decision, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![seq, now, e.action, e.outcome, e.user, e.device_id, e.problem, e.reason, row.decision, prev, hash],
            )?;
            stored.push(stored_entry(e, seq, *now, hash.clone())?);
            prev = hash;
        }
        tx.commit()?;
        Ok(stored)
    }

    /// Every audit row as the chain sees it, in `seq` order, for
    /// `sallyport-broker audit verify`.
    fn audit_chain(&self) -> Result<Vec<ChainRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at, action, outcome, user, device_id, problem, reason, decision, prev_hash, hash FROM audit ORDER BY seq ASC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ChainRow {
                seq: r.get(0)?,
                at: r.get(1)?,
                action: r.get(2)?,
                outcome: r.get(3)?,
                user: r.get(4)?,
                device_id: r.get(5)?,
                problem: r.get(6)?,
                reason: r.get(7)?,
                decision: r.get(8)?,
                prev_hash: r.get(9)?,
                hash: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Devices whose id starts with `prefix`, ignoring ASCII case (a
    /// support code read out over the phone loses its case).
    fn devices_by_prefix(&self, prefix: &str) -> Result<Vec<DeviceRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE lower(substr(device_id, 1, length(?1))) = lower(?1) ORDER BY enrolled_at, device_id LIMIT 20"
        ))?;
        let rows = stmt.query_map([prefix], device_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When and why `device_id` was revoked, if it was.
    fn device_revocation(&self, device_id: &str) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT revoked_at, COALESCE(revoke_reason, '') FROM devices WHERE device_id = ?1 AND revoked_at IS NOT NULL",
                [device_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The latest `limit` verdicts of `device_id`, oldest first.
    fn verdict_history(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<VerdictRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT compliant, violations, evaluated_at, valid_until, policy_digest FROM verdicts WHERE device_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![device_id, limit], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (compliant, violations, evaluated_at, valid_until, policy_digest) = row?;
            out.push(VerdictRecord {
                evaluated_at: timestamp(evaluated_at)?,
                compliant,
                violations: parse_json(&violations)?,
                valid_until: timestamp(valid_until)?,
                policy_digest,
            });
        }
        out.reverse();
        Ok(out)
    }

    /// The latest `limit` grants of `device_id`, open or closed, oldest
    /// first.
    fn grant_history(&self, device_id: &str, limit: u32) -> Result<Vec<GrantRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, app, created_at, expires_at, closed_at, close_reason FROM grants WHERE device_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![device_id, limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, app, created_at, expires_at, closed_at, close_reason) = row?;
            out.push(GrantRecord {
                id,
                app,
                created_at: timestamp(created_at)?,
                expires_at: timestamp(expires_at)?,
                closed_at: closed_at.map(timestamp).transpose()?,
                close_reason,
            });
        }
        out.reverse();
        Ok(out)
    }

    fn audit_rows(&self, which: AuditRows<'_>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        // Newest first for "the latest n", turned around below.
        let (clause, arg, newest_first): (&str, &dyn rusqlite::ToSql, bool) = match &which {
            AuditRows::Recent => ("1 = ?1 ORDER BY seq DESC", &1, true),
            AuditRows::After(after) => ("seq > ?1 ORDER BY seq ASC", after, false),
            AuditRows::Device(device_id) => ("device_id = ?1 ORDER BY seq DESC", device_id, true),
        };
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT seq, at, action, outcome, user, device_id, problem, reason, decision, hash FROM audit WHERE {clause} LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![arg, limit], |r| {
            Ok((
                (r.get::<_, i64>(0)?, r.get::<_, i64>(1)?),
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, String>(7)?,
                (
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ((seq, at), action, outcome, user, device_id, problem, reason, (decision, hash)) =
                row?;
            let d: AuditDecision = match decision {
                Some(text) => parse_json(&text)?,
                None => AuditDecision::default(),
            };
            out.push(
                AuditEntry {
                    seq,
                    at: timestamp(at)?,
                    action,
                    outcome,
                    user,
                    device_id,
                    problem,
                    reason,
                    hash,
                    ..AuditEntry::default()
                }
                .with_decision(d),
            );
        }
        if newest_first {
            out.reverse();
        }
        Ok(out)
    }
}

/// A unique index's refusal as [`StoreError::Taken`]: which open grant
/// column it guards is in SQLite's message ("UNIQUE constraint failed:
/// grants.client_address").
fn taken(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, Some(message)) = &e
        && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    {
        if message.contains("grants.client_address") {
            return StoreError::Taken(Taken::Address);
        }
        if message.contains("grants.wg_public_key") {
            return StoreError::Taken(Taken::Key);
        }
    }
    StoreError::Sql(e)
}

const DEVICE_COLUMNS: &str =
    "device_id, user, sec1, ueid, enrolled_at, revoked_at, status, approved_at, name";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        key: EnrolledKey {
            device_id: r.get(0)?,
            user: r.get(1)?,
            sec1: r.get(2)?,
            ueid: r.get(3)?,
            revoked: r.get::<_, Option<i64>>(5)?.is_some(),
        },
        enrolled_at: r.get(4)?,
        // Anything but an explicit "active" is not active: unknown is not pass.
        pending: r.get::<_, String>(6)? != "active",
        approved_at: r.get(7)?,
        name: r.get(8)?,
    })
}

fn device_in(conn: &Connection, device_id: &str) -> Result<Option<DeviceRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"),
            [device_id],
            device_row,
        )
        .optional()?)
}

/// `ALTER TABLE … ADD COLUMN` unless the column exists (an older database).
fn add_column_if_missing(
    conn: &Connection,
    table: &str,
    column: &str,
    declaration: &str,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    for name in names {
        if name? == column {
            return Ok(());
        }
    }
    conn.execute_batch(&format!(
        "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_revocations_table_gains_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE user_revocations (user TEXT PRIMARY KEY, revoked_at INTEGER NOT NULL, reason TEXT NOT NULL);
                 INSERT INTO user_revocations VALUES ('bob', 5, 'old');",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let r = s.user_revocation("bob").unwrap().unwrap();
        assert_eq!((r.revoked_at, r.until_cleared), (5, false));
        drop(s);
        assert!(
            SqliteStore::open(&path).is_ok(),
            "migrating twice is a no-op"
        );
    }

    #[test]
    fn audit_is_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("b.db")).unwrap();
        s.audit(
            &NewAudit {
                action: "attest",
                outcome: "deny",
                reason: "r",
                ..Default::default()
            },
            5,
        )
        .unwrap();
        let conn = s.conn();
        assert!(conn.execute("UPDATE audit SET reason = 'x'", []).is_err());
        assert!(conn.execute("DELETE FROM audit", []).is_err());
        drop(conn);
        assert_eq!(s.audit_recent(10).unwrap()[0].reason, "r");
    }

    #[test]
    fn an_older_database_gains_the_new_columns_with_their_old_meaning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE devices (device_id TEXT PRIMARY KEY, user TEXT NOT NULL, jwk TEXT NOT NULL, sec1 BLOB NOT NULL, ueid TEXT NOT NULL, name TEXT, enrolled_at INTEGER NOT NULL, revoked_at INTEGER, revoke_reason TEXT);
                 INSERT INTO devices VALUES ('old', 'alice', '{}', x'04', 'u', NULL, 1, NULL, NULL);",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.device("old").unwrap().unwrap().status(),
            DeviceStatus::Active
        );
    }
}
