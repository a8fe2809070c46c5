//! Durable state in SQLite (rusqlite, bundled): devices, nonces, verdicts,
//! grants, user revocations, the gateway key, and an append-only audit log.
//!
//! Columns added after the first release (device status and approval, the
//! policy digest a grant was decided under, cleared user revocations) are
//! added to an older database at open by [`Store::open`], with defaults that
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

use super::eat::{EnrolledKey, NonceAnswer};
use super::grants::StoredVerdict;
use crate::api::{
    AdminDevice, AuditEntry, DeviceStatus, DeviceSupport, GrantRecord, VerdictRecord, Violation,
};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored JSON column could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The audit writer thread could not be started or has stopped.
    #[error("audit writer: {0}")]
    Io(String),
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
    ("audit", "decision", "TEXT"),
    ("audit", "prev_hash", "TEXT"),
    ("audit", "hash", "TEXT"),
];

/// An enrolled device row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Key material and binding.
    pub key: EnrolledKey,
    /// When enrolled.
    pub enrolled_at: i64,
    /// Waiting for an administrator's approval (and not revoked).
    pub pending: bool,
    /// When an administrator approved it.
    pub approved_at: Option<i64>,
    /// The agent's label (host name).
    pub name: Option<String>,
}

impl DeviceRow {
    /// Revoked, pending or active, in that order of precedence.
    pub fn status(&self) -> DeviceStatus {
        if self.key.revoked {
            DeviceStatus::Revoked
        } else if self.pending {
            DeviceStatus::Pending
        } else {
            DeviceStatus::Active
        }
    }

    /// The device as the admin API lists it.
    pub fn admin_view(&self) -> AdminDevice {
        AdminDevice {
            device_id: self.key.device_id.clone(),
            user: self.key.user.clone(),
            name: self.name.clone(),
            status: self.status(),
            enrolled_at: time::OffsetDateTime::from_unix_timestamp(self.enrolled_at)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            approved_at: self
                .approved_at
                .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok()),
        }
    }
}

/// The rules a new key is enrolled under (existing keys are not re-judged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewDeviceRules {
    /// Starts pending (approval mode) rather than active.
    pub pending: bool,
    /// Most devices, pending or active, one user may have.
    pub max_devices_per_user: u32,
}

/// What enrolling a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolment {
    /// A new device.
    Created(DeviceRow),
    /// The same key for the same user again (idempotent).
    Existing(DeviceRow),
    /// The key belongs to another user.
    Conflict,
    /// The user is revoked and no administrator has cleared it.
    UserRevoked,
    /// The user already has this many devices (pending or active).
    QuotaExceeded(u32),
}

/// A grant row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// Id.
    pub id: String,
    /// Device.
    pub device_id: String,
    /// User.
    pub user: String,
    /// App id.
    pub app: String,
    /// WireGuard public key (base64).
    pub wg_public_key: String,
    /// Tunnel address.
    pub client_address: Ipv4Addr,
    /// `ip:port/proto` strings.
    pub targets: Vec<String>,
    /// Created.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// SHA-256 (hex) of the policy its verdict was made under.
    pub policy_digest: String,
    /// Set when a time window of the access policy ends the grant: the
    /// user's reason, given when it is closed at expiry.
    pub ends_reason: Option<String>,
    /// When that window opens again (Unix seconds).
    pub reopens_at: Option<i64>,
    /// The access policy's input the grant was allowed on (JSON), so a
    /// reloaded access policy can judge the open grants again.
    pub access_input: Option<String>,
}

/// The latest verdict with its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictRow {
    /// For whom it was made.
    pub user: String,
    /// The decision.
    pub verdict: StoredVerdict,
    /// What the attestation said about the device (JSON object:
    /// `platform`, `key_assurance`, `checks`), for the access policy.
    pub facts: String,
}

/// A user's session revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRevocation {
    /// Sign-ins at or before this (Unix seconds) are refused.
    pub revoked_at: i64,
    /// Every sign-in is refused until an administrator clears it.
    pub until_cleared: bool,
}

/// A new audit entry.
#[derive(Debug, Clone, Default)]
pub struct NewAudit<'a> {
    /// Action.
    pub action: &'a str,
    /// `allow` / `deny`.
    pub outcome: &'a str,
    /// User.
    pub user: Option<&'a str>,
    /// Device.
    pub device_id: Option<&'a str>,
    /// Problem type slug for denials.
    pub problem: Option<&'a str>,
    /// Reason.
    pub reason: &'a str,
    /// What decided a grant (app, source, reasons, digests).
    pub decision: Option<&'a AuditDecision>,
}

/// An audit entry completed with the decision details stored beside it.
trait WithDecision {
    fn with_decision(self, d: AuditDecision) -> Self;
}

impl WithDecision for AuditEntry {
    fn with_decision(self, d: AuditDecision) -> Self {
        AuditEntry {
            app: d.app,
            source_ip: d.source_ip,
            reasons: d.reasons,
            input_digest: d.input_digest,
            policy_digest: d.policy_digest,
            access_policy_digest: d.access_policy_digest,
            admin: d.admin,
            ..self
        }
    }
}

/// What an access decision was made on, kept with its audit row.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditDecision {
    /// The application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The caller's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The policy's reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// SHA-256 of the access policy's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
    /// SHA-256 of the posture policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// SHA-256 of the access policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_policy_digest: Option<String>,
    /// The administrator who acted (admin calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
}

/// The database. Cheap operations under one mutex: the broker's write rate
/// is a few per device per minute.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// A stored Unix time as a date.
fn timestamp(at: i64) -> Result<time::OffsetDateTime, StoreError> {
    time::OffsetDateTime::from_unix_timestamp(at).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
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

    /// A value from `meta`, or `init()` stored under `key` on first use.
    pub fn meta_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        let conn = self.conn();
        if let Some(v) = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?
        {
            return Ok(v);
        }
        let value = init();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(value)
    }

    /// Removes and returns a value from `meta` (a secret moving out of the
    /// database).
    pub fn take_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
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
    pub fn enrol(
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
    pub fn approve_device(
        &self,
        device_id: &str,
        now: i64,
    ) -> Result<Option<DeviceRow>, StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE devices SET status = 'active', approved_at = ?2 WHERE device_id = ?1 AND status = 'pending' AND revoked_at IS NULL",
            params![device_id, now],
        )?;
        device_in(&conn, device_id)
    }

    /// Every device, oldest enrolment first; only those in `status` when given.
    pub fn devices(&self, status: Option<DeviceStatus>) -> Result<Vec<DeviceRow>, StoreError> {
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
    pub fn forget_revoked_device(&self, device_id: &str) -> Result<Option<bool>, StoreError> {
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
    pub fn device(&self, device_id: &str) -> Result<Option<DeviceRow>, StoreError> {
        device_in(&self.conn(), device_id)
    }

    /// Records a fresh nonce for `user`.
    pub fn issue_nonce(
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
    pub fn outstanding_nonces(&self, user: &str, now: i64) -> Result<u32, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM nonces WHERE user = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![user, now],
            |r| r.get(0),
        )?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Consumes `nonce` for `user` atomically: exactly one caller ever gets
    /// [`NonceAnswer::Consumed`] (no TOCTOU between check and use).
    pub fn consume_nonce(
        &self,
        nonce: &str,
        user: &str,
        now: i64,
    ) -> Result<NonceAnswer, StoreError> {
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
    pub fn insert_verdict(
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
    pub fn latest_verdict(&self, device_id: &str) -> Result<Option<VerdictRow>, StoreError> {
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
    pub fn used_addresses(&self) -> Result<HashSet<Ipv4Addr>, StoreError> {
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
    pub fn key_in_use(&self, wg_public_key: &str) -> Result<bool, StoreError> {
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

    /// Stores an open grant.
    pub fn insert_grant(&self, g: &GrantRow) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO grants (id, device_id, user, app, wg_public_key, client_address, targets, created_at, expires_at, policy_digest, ends_reason, reopens_at, access_input) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![g.id, g.device_id, g.user, g.app, g.wg_public_key, g.client_address.to_string(), json(&g.targets), g.created_at, g.expires_at, g.policy_digest, g.ends_reason, g.reopens_at, g.access_input],
        )?;
        Ok(())
    }

    fn grants_where(
        &self,
        clause: &str,
        arg: &dyn rusqlite::ToSql,
    ) -> Result<Vec<GrantRow>, StoreError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT id, device_id, user, app, wg_public_key, client_address, targets, created_at, expires_at, policy_digest, ends_reason, reopens_at, access_input FROM grants WHERE closed_at IS NULL AND {clause} ORDER BY created_at"
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
                (ends_reason, reopens_at, access_input),
            ) = row?;
            out.push(GrantRow {
                id,
                device_id,
                user,
                app,
                wg_public_key,
                client_address: addr
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("address {addr:?}")))?,
                targets: parse_json(&targets)?,
                created_at,
                expires_at,
                policy_digest,
                ends_reason,
                reopens_at,
                access_input,
            });
        }
        Ok(out)
    }

    /// Every open grant.
    pub fn open_grants(&self) -> Result<Vec<GrantRow>, StoreError> {
        self.grants_where("1 = ?1", &1)
    }

    /// Open grants of a device.
    pub fn open_grants_of_device(&self, device_id: &str) -> Result<Vec<GrantRow>, StoreError> {
        self.grants_where("device_id = ?1", &device_id)
    }

    /// Open grants whose verdict was made under another policy than `digest`.
    pub fn open_grants_not_under(&self, digest: &str) -> Result<Vec<GrantRow>, StoreError> {
        self.grants_where("policy_digest <> ?1", &digest)
    }

    /// The open grant holding this WireGuard key (at most one: the
    /// `grants_open_key` index), to name whose tunnel a gateway peer is.
    pub fn open_grant_by_key(&self, wg_public_key: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(self
            .grants_where("wg_public_key = ?1", &wg_public_key)?
            .into_iter()
            .next())
    }

    /// Open grants of a user.
    pub fn open_grants_of_user(&self, user: &str) -> Result<Vec<GrantRow>, StoreError> {
        self.grants_where("user = ?1", &user)
    }

    /// An open grant.
    pub fn open_grant(&self, id: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(self.grants_where("id = ?1", &id)?.into_iter().next())
    }

    /// Closes a grant; false if it was not open.
    pub fn close_grant(&self, id: &str, now: i64, reason: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE grants SET closed_at = ?2, close_reason = ?3 WHERE id = ?1 AND closed_at IS NULL",
            params![id, now, reason],
        )? == 1)
    }

    /// Closes and returns every open grant whose expiry has passed (with
    /// its window's reason when a time window ended it).
    pub fn expire_grants(&self, now: i64) -> Result<Vec<GrantRow>, StoreError> {
        let due = self.grants_where("expires_at <= ?1", &now)?;
        for g in &due {
            self.close_grant(&g.id, now, g.ends_reason.as_deref().unwrap_or("expired"))?;
        }
        Ok(due)
    }

    /// Whether `network` was seen for `user` before; records it when not.
    pub fn remember_network(
        &self,
        user: &str,
        network: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO user_networks (user, network, first_seen) VALUES (?1, ?2, ?3)",
            params![user, network, now],
        )?;
        Ok(inserted == 0)
    }

    /// Whether `network` was seen for `user` (read only).
    pub fn knows_network(&self, user: &str, network: &str) -> Result<bool, StoreError> {
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
    pub fn denied_grants_since(&self, user: &str, since: i64) -> Result<u32, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM audit WHERE user = ?1 AND at >= ?2 AND action = 'grant' AND outcome = 'deny'",
            params![user, since],
            |r| r.get(0),
        )?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Marks a device revoked; false if unknown.
    pub fn revoke_device(
        &self,
        device_id: &str,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE devices SET revoked_at = ?2, revoke_reason = ?3 WHERE device_id = ?1 AND revoked_at IS NULL",
            params![device_id, now, reason],
        )?;
        Ok(changed == 1 || self.device(device_id)?.is_some())
    }

    /// Revokes a user's sessions as of `now`; with `until_cleared`, also
    /// every later sign-in until [`Store::clear_user_revocation`]. A plain
    /// revocation never lifts an until-cleared one.
    pub fn revoke_user(
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
    pub fn user_revocation(&self, user: &str) -> Result<Option<UserRevocation>, StoreError> {
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
    pub fn clear_user_revocation(&self, user: &str, now: i64) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE user_revocations
             SET revoked_at = CASE WHEN until_cleared = 1 THEN MAX(revoked_at, ?2) ELSE revoked_at END,
                 until_cleared = 0, cleared_at = ?2
             WHERE user = ?1 AND cleared_at IS NULL",
            params![user, now],
        )?;
        Ok(changed == 1)
    }

    /// Appends to the audit log, chained to the row before it (see
    /// [`super::audit_chain`]); returns the entry as stored (with its `seq`
    /// and `hash`). One transaction, under the connection's lock, so two
    /// rows can never chain to the same predecessor.
    pub fn audit(&self, e: &NewAudit<'_>, now: i64) -> Result<AuditEntry, StoreError> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first (waiting up to the busy
        // timeout). The audit writer has a connection of its own, and a
        // deferred transaction that reads and then writes could not wait
        // for another connection's write to finish (SQLITE_BUSY at once).
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (last_seq, prev): (i64, String) = tx
            .query_row(
                "SELECT seq, COALESCE(hash, '') FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, String::new()));
        let seq = last_seq + 1;
        let decision = e.decision.map(json);
        let row = super::audit_chain::ChainRow {
            seq,
            at: now,
            action: e.action.to_owned(),
            outcome: e.outcome.to_owned(),
            user: e.user.map(str::to_owned),
            device_id: e.device_id.map(str::to_owned),
            problem: e.problem.map(str::to_owned),
            reason: e.reason.to_owned(),
            decision: decision.clone(),
            prev_hash: Some(prev.clone()),
            hash: None,
        };
        let hash = super::audit_chain::row_hash(&prev, &row);
        tx.execute(
            "INSERT INTO audit (seq, at, action, outcome, user, device_id, problem, reason, decision, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![seq, now, e.action, e.outcome, e.user, e.device_id, e.problem, e.reason, decision, prev, hash],
        )?;
        tx.commit()?;
        let d = e.decision.cloned().unwrap_or_default();
        Ok(AuditEntry {
            seq,
            at: time::OffsetDateTime::from_unix_timestamp(now)
                .map_err(|err| StoreError::Corrupt(err.to_string()))?,
            action: e.action.to_owned(),
            outcome: e.outcome.to_owned(),
            user: e.user.map(str::to_owned),
            device_id: e.device_id.map(str::to_owned),
            problem: e.problem.map(str::to_owned),
            reason: e.reason.to_owned(),
            hash: Some(hash),
            ..AuditEntry::default()
        }
        .with_decision(d))
    }

    /// Every audit row as the chain sees it, in `seq` order, for
    /// `sallyport-broker audit verify`.
    pub fn audit_chain(&self) -> Result<Vec<super::audit_chain::ChainRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at, action, outcome, user, device_id, problem, reason, decision, prev_hash, hash FROM audit ORDER BY seq ASC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(super::audit_chain::ChainRow {
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

    /// The latest `limit` audit entries, oldest first.
    pub fn audit_recent(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = self.audit_query("1 = ?1 ORDER BY seq DESC", &1, limit)?;
        out.reverse();
        Ok(out)
    }

    /// Up to `limit` entries with `seq > after`, oldest first: a cursor a
    /// SIEM can resume from.
    pub fn audit_since(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_query("seq > ?1 ORDER BY seq ASC", &after, limit)
    }

    /// The latest `limit` audit entries naming `device_id`, oldest first.
    pub fn audit_of_device(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = self.audit_query("device_id = ?1 ORDER BY seq DESC", &device_id, limit)?;
        out.reverse();
        Ok(out)
    }

    /// Devices whose id starts with `prefix`, ignoring ASCII case (a
    /// support code read out over the phone loses its case).
    pub fn devices_by_prefix(&self, prefix: &str) -> Result<Vec<DeviceRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE lower(substr(device_id, 1, length(?1))) = lower(?1) ORDER BY enrolled_at, device_id LIMIT 20"
        ))?;
        let rows = stmt.query_map([prefix], device_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The broker's side of every device whose id starts with `prefix`
    /// (case ignored), for helpdesk: enrolment, the latest 50 verdicts, 100
    /// grants and 200 audit rows naming it.
    pub fn device_support(&self, prefix: &str) -> Result<Vec<DeviceSupport>, StoreError> {
        self.devices_by_prefix(prefix)?
            .iter()
            .map(|row| {
                let id = &row.key.device_id;
                Ok(DeviceSupport {
                    device: row.admin_view(),
                    support_code: crate::api::support_code(id),
                    revoked: self.device_revocation(id)?.map(|(at, reason)| {
                        let at = timestamp(at)
                            .ok()
                            .and_then(|t| {
                                t.format(&time::format_description::well_known::Rfc3339)
                                    .ok()
                            })
                            .unwrap_or_default();
                        format!("{at}: {reason}")
                    }),
                    verdicts: self.verdict_history(id, 50)?,
                    grants: self.grant_history(id, 100)?,
                    audit: self.audit_of_device(id, 200)?,
                })
            })
            .collect()
    }

    /// When and why `device_id` was revoked, if it was.
    pub fn device_revocation(&self, device_id: &str) -> Result<Option<(i64, String)>, StoreError> {
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
    pub fn verdict_history(
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
    pub fn grant_history(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<GrantRecord>, StoreError> {
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

    fn audit_query(
        &self,
        clause: &str,
        arg: &dyn rusqlite::ToSql,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
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
                    at: time::OffsetDateTime::from_unix_timestamp(at)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
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
        Ok(out)
    }
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

    const OPEN: NewDeviceRules = NewDeviceRules {
        pending: false,
        max_devices_per_user: 5,
    };

    fn key(user: &str) -> EnrolledKey {
        EnrolledKey {
            device_id: "dev1".into(),
            user: user.into(),
            sec1: vec![4; 65],
            ueid: "u".into(),
            revoked: false,
        }
    }

    #[test]
    fn nonce_is_single_use_and_bound_to_its_user() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("b.db")).unwrap();
        s.issue_nonce("n1", "alice", 100, 160).unwrap();
        assert_eq!(
            s.consume_nonce("n1", "bob", 110).unwrap(),
            NonceAnswer::Unknown
        );
        assert_eq!(
            s.consume_nonce("n1", "alice", 110).unwrap(),
            NonceAnswer::Consumed
        );
        assert_eq!(
            s.consume_nonce("n1", "alice", 111).unwrap(),
            NonceAnswer::AlreadyUsed
        );
        s.issue_nonce("n2", "alice", 100, 160).unwrap();
        assert_eq!(
            s.consume_nonce("n2", "alice", 160).unwrap(),
            NonceAnswer::Expired
        );
        assert_eq!(
            s.consume_nonce("zz", "alice", 110).unwrap(),
            NonceAnswer::Unknown
        );
    }

    #[test]
    fn enrolment_binds_a_key_to_one_user() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("b.db")).unwrap();
        assert!(matches!(
            s.enrol(&key("alice"), "{}", None, 1, OPEN).unwrap(),
            Enrolment::Created(_)
        ));
        assert!(matches!(
            s.enrol(&key("alice"), "{}", None, 2, OPEN).unwrap(),
            Enrolment::Existing(_)
        ));
        assert_eq!(
            s.enrol(&key("bob"), "{}", None, 3, OPEN).unwrap(),
            Enrolment::Conflict
        );
        assert!(s.revoke_device("dev1", 4, "lost").unwrap());
        assert!(s.device("dev1").unwrap().unwrap().key.revoked);
    }

    #[test]
    fn user_revocations_hold_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("b.db")).unwrap();
        assert_eq!(s.user_revocation("alice").unwrap(), None);
        assert!(!s.clear_user_revocation("alice", 1).unwrap());
        s.revoke_user("alice", 10, "r", true).unwrap();
        // A later plain revocation moves the cut-off but keeps the block.
        s.revoke_user("alice", 20, "r", false).unwrap();
        let r = s.user_revocation("alice").unwrap().unwrap();
        assert_eq!((r.revoked_at, r.until_cleared), (20, true));
        assert!(s.clear_user_revocation("alice", 30).unwrap());
        let r = s.user_revocation("alice").unwrap().unwrap();
        assert_eq!((r.revoked_at, r.until_cleared), (30, false));
        assert!(
            !s.clear_user_revocation("alice", 40).unwrap(),
            "a cleared revocation is not cleared again (and its cut-off does not move)"
        );
        assert_eq!(s.user_revocation("alice").unwrap().unwrap().revoked_at, 30);
    }

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
        let s = Store::open(&path).unwrap();
        let r = s.user_revocation("bob").unwrap().unwrap();
        assert_eq!((r.revoked_at, r.until_cleared), (5, false));
        drop(s);
        assert!(Store::open(&path).is_ok(), "migrating twice is a no-op");
    }

    #[test]
    fn audit_is_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("b.db")).unwrap();
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
    fn grants_expire_and_free_their_address() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("b.db")).unwrap();
        let g = GrantRow {
            id: "g1".into(),
            device_id: "d".into(),
            user: "alice".into(),
            app: "wiki".into(),
            wg_public_key: "k".into(),
            client_address: Ipv4Addr::new(100, 64, 0, 2),
            targets: vec!["10.0.0.1:80/tcp".into()],
            created_at: 10,
            expires_at: 20,
            policy_digest: "p1".into(),
            ends_reason: None,
            reopens_at: None,
            access_input: None,
        };
        s.insert_grant(&g).unwrap();
        assert!(s.key_in_use("k").unwrap());
        assert_eq!(s.open_grants_of_user("alice").unwrap(), vec![g.clone()]);
        assert!(s.expire_grants(19).unwrap().is_empty());
        assert_eq!(s.expire_grants(20).unwrap(), vec![g]);
        assert!(s.used_addresses().unwrap().is_empty());
        assert!(!s.close_grant("g1", 21, "x").unwrap());
    }

    #[test]
    fn networks_denials_and_the_audit_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("b.db")).unwrap();
        assert!(!s.knows_network("alice", "192.0.2.0/24").unwrap());
        assert!(!s.remember_network("alice", "192.0.2.0/24", 5).unwrap());
        assert!(s.remember_network("alice", "192.0.2.0/24", 6).unwrap());
        assert!(s.knows_network("alice", "192.0.2.0/24").unwrap());
        assert!(!s.knows_network("bob", "192.0.2.0/24").unwrap());
        let decision = AuditDecision {
            app: Some("wiki".into()),
            reasons: vec!["closed".into()],
            input_digest: Some("ab".into()),
            ..AuditDecision::default()
        };
        for (at, outcome) in [(10, "deny"), (20, "deny"), (30, "allow")] {
            s.audit(
                &NewAudit {
                    action: "grant",
                    outcome,
                    user: Some("alice"),
                    reason: "r",
                    decision: Some(&decision),
                    ..NewAudit::default()
                },
                at,
            )
            .unwrap();
        }
        assert_eq!(s.denied_grants_since("alice", 0).unwrap(), 2);
        assert_eq!(s.denied_grants_since("alice", 15).unwrap(), 1);
        assert_eq!(s.denied_grants_since("bob", 0).unwrap(), 0);
        let after_first = s.audit_since(1, 10).unwrap();
        assert_eq!(
            after_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(after_first[0].app.as_deref(), Some("wiki"));
        assert_eq!(after_first[0].reasons, vec!["closed".to_owned()]);
        assert_eq!(s.audit_since(3, 10).unwrap(), vec![]);
        assert_eq!(s.audit_recent(2).unwrap()[1].seq, 3);
    }

    #[test]
    fn new_keys_respect_the_quota_and_an_uncleared_user_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("b.db")).unwrap();
        let rules = NewDeviceRules {
            pending: true,
            max_devices_per_user: 1,
        };
        let with_id = |id: &str| EnrolledKey {
            device_id: id.into(),
            ..key("alice")
        };
        let Enrolment::Created(row) = s.enrol(&with_id("d1"), "{}", None, 1, rules).unwrap() else {
            panic!("first device refused");
        };
        assert_eq!(row.status(), DeviceStatus::Pending);
        assert_eq!(
            s.enrol(&with_id("d2"), "{}", None, 2, rules).unwrap(),
            Enrolment::QuotaExceeded(1)
        );
        // The existing key is not a new device.
        assert!(matches!(
            s.enrol(&with_id("d1"), "{}", None, 3, rules).unwrap(),
            Enrolment::Existing(_)
        ));
        // A revoked device frees its place.
        s.revoke_device("d1", 4, "lost").unwrap();
        s.revoke_user("alice", 4, "left", false).unwrap();
        assert_eq!(
            s.enrol(&with_id("d2"), "{}", None, 5, rules).unwrap(),
            Enrolment::UserRevoked
        );
        assert!(s.clear_user_revocation("alice", 6).unwrap());
        assert!(!s.clear_user_revocation("alice", 6).unwrap());
        assert_eq!(
            s.user_revocation("alice").unwrap().map(|r| r.revoked_at),
            Some(4),
            "old tokens stay refused"
        );
        assert!(matches!(
            s.enrol(&with_id("d2"), "{}", None, 7, rules).unwrap(),
            Enrolment::Created(_)
        ));
        let approved = s.approve_device("d2", 8).unwrap().unwrap();
        assert_eq!(
            (approved.status(), approved.approved_at),
            (DeviceStatus::Active, Some(8))
        );
        assert_eq!(s.devices(Some(DeviceStatus::Pending)).unwrap(), vec![]);
        assert_eq!(s.forget_revoked_device("d2").unwrap(), Some(false));
        assert_eq!(s.forget_revoked_device("d1").unwrap(), Some(true));
        assert_eq!(s.device("d1").unwrap(), None);
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
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.device("old").unwrap().unwrap().status(),
            DeviceStatus::Active
        );
    }
}
