//! The store in PostgreSQL, for several broker replicas sharing one
//! database (`[server] database_url`).
//!
//! Driver: `tokio-postgres` (the maintained async driver; TCP or a Unix
//! socket) with a `deadpool-postgres` pool, which replaces a connection
//! that broke (a database restart, a failover) instead of failing every
//! later call. A server that is not on this host is reached over TLS,
//! required and verified ([`tls`]).
//!
//! Why a synchronous [`Store`] over an async driver: the broker's callers
//! are synchronous functions called from its request handlers (see
//! [`super`]). The pool and its connections live on a small runtime of the
//! store's own (one worker thread), and each call waits for its query there
//! (`PostgresStore::run`):
//! - on a worker of the broker's multi-threaded runtime, inside
//!   `block_in_place`, which hands that worker's other tasks to another
//!   worker and leaves the runtime's context, so the nested `block_on` is
//!   allowed and no other request stalls behind the query;
//! - on a current-thread runtime (`#[tokio::test]`, where `block_in_place`
//!   is not allowed), from a scoped thread, so no runtime is entered twice;
//! - outside any runtime (the audit writer's thread, the CLI), directly.
//!
//! The `postgres` crate (the sync wrapper) was not taken: it nests its own
//! runtime's `block_on` inside the caller's and panics there ("Cannot start
//! a runtime from within a runtime"), and it has no pool.
//!
//! Across replicas: the schema is created under an advisory lock (two
//! replicas starting at once do not race on `CREATE TABLE`); a nonce is
//! consumed by one conditional `UPDATE` (row locks make the second updater
//! see the first one's `used_at`); open grants' addresses and keys are
//! unique by partial index ([`StoreError::Taken`] for the loser); an
//! enrolment holds an advisory lock on its user for the quota check, and an
//! audit append one on the log's tail for the hash chain.

use std::collections::HashSet;
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    AuditDecision, AuditRows, DeviceRow, Enrolment, GrantRow, NewAudit, NewDeviceRules, OpenGrants,
    Store, StoreError, Taken, UserRevocation, VerdictRow, WithDecision as _, address, chain_row,
    json, parse_json, stored_entry, timestamp,
};
use crate::api::{AuditEntry, DeviceStatus, GrantRecord, VerdictRecord, Violation};
use crate::server::audit_chain::{ChainRow, row_hash};
use crate::server::eat::{EnrolledKey, NonceAnswer};
use crate::server::grants::StoredVerdict;

mod relay;
pub mod tls;

/// The schema, created when missing. `"user"` is quoted: a reserved word
/// in PostgreSQL. `grants.n` orders grants made in the same second as
/// SQLite's rowid does.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    "user" TEXT NOT NULL,
    jwk TEXT NOT NULL,
    sec1 BYTEA NOT NULL,
    ueid TEXT NOT NULL,
    name TEXT,
    enrolled_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoke_reason TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    approved_at BIGINT
);
CREATE INDEX IF NOT EXISTS devices_user ON devices("user");
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    "user" TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces(expires_at);
CREATE TABLE IF NOT EXISTS verdicts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id TEXT NOT NULL,
    "user" TEXT NOT NULL,
    compliant BOOLEAN NOT NULL,
    violations TEXT NOT NULL,
    evaluated_at BIGINT NOT NULL,
    valid_until BIGINT NOT NULL,
    policy_digest TEXT NOT NULL,
    facts TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS verdicts_device ON verdicts(device_id, id);
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    n BIGINT GENERATED ALWAYS AS IDENTITY,
    device_id TEXT NOT NULL,
    "user" TEXT NOT NULL,
    app TEXT NOT NULL,
    wg_public_key TEXT NOT NULL,
    client_address TEXT NOT NULL,
    targets TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at BIGINT,
    close_reason TEXT,
    policy_digest TEXT NOT NULL DEFAULT '',
    ends_reason TEXT,
    reopens_at BIGINT,
    access_input TEXT
);
ALTER TABLE grants ADD COLUMN IF NOT EXISTS gateway TEXT;
CREATE INDEX IF NOT EXISTS grants_open_gateway ON grants(gateway) WHERE closed_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS grants_open_key ON grants(wg_public_key) WHERE closed_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS grants_open_addr ON grants(client_address) WHERE closed_at IS NULL;
CREATE INDEX IF NOT EXISTS grants_device ON grants(device_id, created_at);
CREATE TABLE IF NOT EXISTS user_revocations (
    "user" TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    until_cleared BOOLEAN NOT NULL DEFAULT FALSE,
    cleared_at BIGINT
);
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    "user" TEXT,
    device_id TEXT,
    problem TEXT,
    reason TEXT NOT NULL,
    decision TEXT,
    prev_hash TEXT,
    hash TEXT
);
CREATE INDEX IF NOT EXISTS audit_user_at ON audit("user", at);
CREATE INDEX IF NOT EXISTS audit_device ON audit(device_id, seq);
CREATE TABLE IF NOT EXISTS user_networks (
    "user" TEXT NOT NULL,
    network TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY ("user", network)
);
CREATE TABLE IF NOT EXISTS relayed (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
DROP TRIGGER IF EXISTS audit_no_change ON audit;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
DROP TRIGGER IF EXISTS audit_no_truncate ON audit;
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
"#;

/// Advisory lock keys (transaction-scoped, so a crashed replica's lock
/// goes with its session): the schema, and the audit log's tail. An
/// enrolment locks `hashtext` of its user in the second key space.
const SCHEMA_LOCK: i64 = 0x5341_4c4c_5950_0001;
const AUDIT_LOCK: i64 = 0x5341_4c4c_5950_0002;
const ENROL_LOCK_SPACE: i32 = 0x5350_0003;
/// Held while a relayed message is appended, so ids commit in order and a
/// follower reading "after the last id I saw" skips none.
const RELAY_LOCK: i64 = 0x5341_4c4c_5950_0004;

/// Most connections one replica holds.
const POOL_SIZE: usize = 16;
/// How long a call waits for a connection (a database that is down fails
/// the call, and the API answers `internal`, rather than hanging).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The store in PostgreSQL. See the module documentation.
pub struct PostgresStore {
    pool: Pool,
    /// For the relay listener's own connection (`LISTEN` needs one that
    /// stays out of the pool). Its `Debug` redacts the password.
    config: tokio_postgres::Config,
    /// TLS for connections that leave this host (see [`tls`]).
    tls: MakeRustlsConnect,
    /// The store's own runtime; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool and TLS settings say nothing a reader needs; the
        // configuration's `Debug` redacts the password.
        f.debug_struct("PostgresStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's message (with its detail) rather than "db error".
        match e.as_db_error() {
            Some(db) => StoreError::Postgres(db.to_string()),
            // With its cause ("error performing TLS handshake" alone does
            // not say the certificate was not trusted).
            None => match std::error::Error::source(&e) {
                Some(cause) => StoreError::Postgres(format!("{e}: {cause}")),
                None => StoreError::Postgres(e.to_string()),
            },
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Postgres(format!("connection pool: {other}")),
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (`host=/run/postgresql dbname=sallyport` or
    /// `postgresql://user@host/db`) and creates the schema when missing.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, None)
    }

    /// [`PostgresStore::connect`], trusting the CA certificates in `ca`
    /// (PEM) besides the webpki roots for a server reached over TLS.
    pub fn connect_with(url: &str, ca: Option<&std::path::Path>) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Postgres(format!("database_url: {e}")))?;
        let mut config = tls::enforce(config)?;
        let tls = tls::connector(ca)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("sallyport-broker");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("store-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("the PostgreSQL store's runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                // A pooled connection is checked (a round trip) before each
                // use, so one that a database restart or failover cut is
                // replaced instead of failing the call that drew it.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Postgres(format!("connection pool: {e}")))?;
        let store = Self {
            pool,
            config,
            tls,
            runtime: Some(runtime),
        };
        store.run(async {
            let mut client = store.pool.get().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .await?;
            tx.batch_execute(SCHEMA).await?;
            tx.commit().await?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `work` on the store's runtime and waits for it, from wherever
    /// the caller is (see the module documentation).
    fn run<T: Send>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Io("the PostgreSQL store is closed".into()));
        };
        let wait = || runtime.block_on(work);
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            Ok(_) => std::thread::scope(|scope| match scope.spawn(wait).join() {
                Ok(out) => out,
                Err(panic) => std::panic::resume_unwind(panic),
            }),
            Err(_) => wait(),
        }
    }

    /// One statement's rows, on a pooled connection.
    fn query(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        self.run(async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query(&statement, args).await?)
        })
    }

    /// One statement's row count, on a pooled connection.
    fn execute(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.run(async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.execute(&statement, args).await?)
        })
    }

    /// The first row, if any.
    fn query_opt(
        &self,
        sql: &str,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Without waiting: the broker drops its store from async code, where
        // a runtime may not block to shut down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

const DEVICE_COLUMNS: &str =
    r#"device_id, "user", sec1, ueid, enrolled_at, revoked_at, status, approved_at, name"#;

const GRANT_COLUMNS: &str = r#"id, device_id, "user", app, wg_public_key, client_address, targets, created_at, expires_at, policy_digest, ends_reason, reopens_at, access_input, gateway"#;

fn device_row(r: &Row) -> Result<DeviceRow, StoreError> {
    Ok(DeviceRow {
        key: EnrolledKey {
            device_id: r.try_get(0)?,
            user: r.try_get(1)?,
            sec1: r.try_get(2)?,
            ueid: r.try_get(3)?,
            revoked: r.try_get::<_, Option<i64>>(5)?.is_some(),
        },
        enrolled_at: r.try_get(4)?,
        // Anything but an explicit "active" is not active: unknown is not pass.
        pending: r.try_get::<_, String>(6)? != "active",
        approved_at: r.try_get(7)?,
        name: r.try_get(8)?,
    })
}

fn grant_row(r: &Row) -> Result<GrantRow, StoreError> {
    Ok(GrantRow {
        id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        user: r.try_get(2)?,
        app: r.try_get(3)?,
        wg_public_key: r.try_get(4)?,
        client_address: address(r.try_get(5)?)?,
        targets: parse_json(r.try_get(6)?)?,
        created_at: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        policy_digest: r.try_get(9)?,
        ends_reason: r.try_get(10)?,
        reopens_at: r.try_get(11)?,
        access_input: r.try_get(12)?,
        gateway: r.try_get(13)?,
    })
}

async fn device_in(
    client: &impl GenericClient,
    device_id: &str,
) -> Result<Option<DeviceRow>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1");
    client
        .query_opt(&sql, &[&device_id])
        .await?
        .as_ref()
        .map(device_row)
        .transpose()
}

/// A unique index's refusal as [`StoreError::Taken`], by the index's name.
fn taken(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        match e.as_db_error().and_then(|db| db.constraint()) {
            Some("grants_open_addr") => return StoreError::Taken(Taken::Address),
            Some("grants_open_key") => return StoreError::Taken(Taken::Key),
            _ => {}
        }
    }
    e.into()
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Store for PostgresStore {
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )?;
        let row = self
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .ok_or_else(|| StoreError::Corrupt(format!("meta {key:?} vanished")))?;
        Ok(row.try_get(0)?)
    }

    fn take_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        // One statement: of two replicas taking it, one gets it.
        self.query_opt("DELETE FROM meta WHERE key = $1 RETURNING value", &[&key])?
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .transpose()
    }

    fn enrol(
        &self,
        key: &EnrolledKey,
        jwk_json: &str,
        name: Option<&str>,
        now: i64,
        rules: NewDeviceRules,
    ) -> Result<Enrolment, StoreError> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // Serialises enrolments of this user (on every replica) for the
            // quota count, and a new key against a concurrent enrolment of
            // the same key.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&ENROL_LOCK_SPACE, &key.user],
            )
            .await?;
            let out = match device_in(&tx, &key.device_id).await? {
                Some(row) if row.key.user != key.user => Enrolment::Conflict,
                // A revoked key stays revoked (see the SQLite store).
                Some(row) => Enrolment::Existing(row),
                None => {
                    let user_blocked = tx
                        .query_opt(
                            r#"SELECT 1 FROM user_revocations WHERE "user" = $1 AND cleared_at IS NULL"#,
                            &[&key.user],
                        )
                        .await?
                        .is_some();
                    let held: i64 = tx
                        .query_one(
                            r#"SELECT COUNT(*) FROM devices WHERE "user" = $1 AND revoked_at IS NULL"#,
                            &[&key.user],
                        )
                        .await?
                        .try_get(0)?;
                    let held = count(held);
                    if user_blocked {
                        Enrolment::UserRevoked
                    } else if held >= rules.max_devices_per_user {
                        Enrolment::QuotaExceeded(held)
                    } else {
                        let status = if rules.pending { "pending" } else { "active" };
                        tx.execute(
                            r#"INSERT INTO devices (device_id, "user", jwk, sec1, ueid, name, enrolled_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
                            &[&key.device_id, &key.user, &jwk_json, &key.sec1, &key.ueid, &name, &now, &status],
                        )
                        .await?;
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
            tx.commit().await?;
            Ok(out)
        })
    }

    fn approve_device(&self, device_id: &str, now: i64) -> Result<Option<DeviceRow>, StoreError> {
        self.execute(
            "UPDATE devices SET status = 'active', approved_at = $2 WHERE device_id = $1 AND status = 'pending' AND revoked_at IS NULL",
            &[&device_id, &now],
        )?;
        self.device(device_id)
    }

    fn devices(&self, status: Option<DeviceStatus>) -> Result<Vec<DeviceRow>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY enrolled_at, device_id");
        let mut out = Vec::new();
        for r in self.query(&sql, &[])? {
            let row = device_row(&r)?;
            if status.is_none_or(|s| s == row.status()) {
                out.push(row);
            }
        }
        Ok(out)
    }

    fn forget_revoked_device(&self, device_id: &str) -> Result<Option<bool>, StoreError> {
        self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let sql =
                format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1 FOR UPDATE");
            let Some(row) = tx.query_opt(&sql, &[&device_id]).await? else {
                return Ok(None);
            };
            if !device_row(&row)?.key.revoked {
                return Ok(Some(false));
            }
            tx.execute("DELETE FROM verdicts WHERE device_id = $1", &[&device_id])
                .await?;
            tx.execute("DELETE FROM devices WHERE device_id = $1", &[&device_id])
                .await?;
            tx.commit().await?;
            Ok(Some(true))
        })
    }

    fn relay(&self, payload: &str) -> Result<(), StoreError> {
        self.run(relay::append(&self.pool, payload))
    }

    fn relayed_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, String)>, StoreError> {
        self.query(
            "SELECT id, payload FROM relayed WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &i64::from(limit)],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }

    fn last_relayed(&self) -> Result<i64, StoreError> {
        let row = self.query_opt("SELECT COALESCE(MAX(id), 0) FROM relayed", &[])?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    fn follow_relayed(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        let runtime = self.runtime.as_ref()?;
        let (wake, woken) = tokio::sync::mpsc::channel(1);
        runtime.spawn(relay::listen(self.config.clone(), self.tls.clone(), wake));
        Some(woken)
    }

    fn device(&self, device_id: &str) -> Result<Option<DeviceRow>, StoreError> {
        self.run(async {
            let client = self.pool.get().await?;
            device_in(&client, device_id).await
        })
    }

    fn issue_nonce(
        &self,
        nonce: &str,
        user: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM nonces WHERE expires_at < $1",
            &[&(now - 86_400)],
        )?;
        self.execute(
            r#"INSERT INTO nonces (nonce, "user", issued_at, expires_at) VALUES ($1, $2, $3, $4)"#,
            &[&nonce, &user, &now, &expires_at],
        )?;
        Ok(())
    }

    fn outstanding_nonces(&self, user: &str, now: i64) -> Result<u32, StoreError> {
        let n: i64 = self
            .query(
                r#"SELECT COUNT(*) FROM nonces WHERE "user" = $1 AND used_at IS NULL AND expires_at > $2"#,
                &[&user, &now],
            )?
            .first()
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or(0);
        Ok(count(n))
    }

    fn consume_nonce(&self, nonce: &str, user: &str, now: i64) -> Result<NonceAnswer, StoreError> {
        // The second of two concurrent updaters waits for the first's row
        // lock, then re-reads `used_at` and matches nothing.
        let n = self.execute(
            r#"UPDATE nonces SET used_at = $3 WHERE nonce = $1 AND "user" = $2 AND used_at IS NULL AND expires_at > $3"#,
            &[&nonce, &user, &now],
        )?;
        if n == 1 {
            return Ok(NonceAnswer::Consumed);
        }
        let row = self.query_opt(
            r#"SELECT used_at FROM nonces WHERE nonce = $1 AND "user" = $2"#,
            &[&nonce, &user],
        )?;
        Ok(match row {
            None => NonceAnswer::Unknown,
            Some(r) if r.try_get::<_, Option<i64>>(0)?.is_some() => NonceAnswer::AlreadyUsed,
            Some(_) => NonceAnswer::Expired,
        })
    }

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
        self.execute(
            r#"INSERT INTO verdicts (device_id, "user", compliant, violations, evaluated_at, valid_until, policy_digest, facts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
            &[&device_id, &user, &compliant, &json(&violations), &evaluated_at, &valid_until, &policy_digest, &facts],
        )?;
        Ok(())
    }

    fn latest_verdict(&self, device_id: &str) -> Result<Option<VerdictRow>, StoreError> {
        let Some(r) = self.query_opt(
            r#"SELECT "user", compliant, violations, valid_until, policy_digest, facts FROM verdicts WHERE device_id = $1 ORDER BY id DESC LIMIT 1"#,
            &[&device_id],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(VerdictRow {
            user: r.try_get(0)?,
            facts: r.try_get(5)?,
            verdict: StoredVerdict {
                compliant: r.try_get(1)?,
                violations: parse_json(r.try_get(2)?)?,
                valid_until: r.try_get(3)?,
                policy_digest: r.try_get(4)?,
            },
        }))
    }

    fn used_addresses(&self) -> Result<HashSet<Ipv4Addr>, StoreError> {
        let mut out = HashSet::new();
        for r in self.query(
            "SELECT client_address FROM grants WHERE closed_at IS NULL",
            &[],
        )? {
            if let Ok(a) = r.try_get::<_, &str>(0)?.parse() {
                out.insert(a);
            }
        }
        Ok(out)
    }

    fn key_in_use(&self, wg_public_key: &str) -> Result<bool, StoreError> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM grants WHERE wg_public_key = $1 AND closed_at IS NULL",
                &[&wg_public_key],
            )?
            .is_some())
    }

    fn insert_grant(&self, g: &GrantRow) -> Result<(), StoreError> {
        let address = g.client_address.to_string();
        let targets = json(&g.targets);
        self.run(async {
            let client = self.pool.get().await?;
            client
                .execute(
                    r#"INSERT INTO grants (id, device_id, "user", app, wg_public_key, client_address, targets, created_at, expires_at, policy_digest, ends_reason, reopens_at, access_input, gateway) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"#,
                    &[&g.id, &g.device_id, &g.user, &g.app, &g.wg_public_key, &address, &targets, &g.created_at, &g.expires_at, &g.policy_digest, &g.ends_reason, &g.reopens_at, &g.access_input, &g.gateway],
                )
                .await
                .map_err(taken)?;
            Ok(())
        })
    }

    fn open_grants_where(&self, which: OpenGrants<'_>) -> Result<Vec<GrantRow>, StoreError> {
        let (clause, arg): (&str, Option<&(dyn ToSql + Sync)>) = match &which {
            OpenGrants::All => ("TRUE", None),
            OpenGrants::Id(id) => ("id = $1", Some(id)),
            OpenGrants::Device(device_id) => ("device_id = $1", Some(device_id)),
            OpenGrants::User(user) => (r#""user" = $1"#, Some(user)),
            OpenGrants::Key(key) => ("wg_public_key = $1", Some(key)),
            OpenGrants::NotUnder(digest) => ("policy_digest <> $1", Some(digest)),
            OpenGrants::DueBy(now) => ("expires_at <= $1", Some(now)),
            OpenGrants::Gateway(id) => ("gateway = $1", Some(id)),
        };
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE closed_at IS NULL AND {clause} ORDER BY created_at, n"
        );
        self.query(&sql, arg.as_slice())?
            .iter()
            .map(grant_row)
            .collect()
    }

    fn close_grant(&self, id: &str, now: i64, reason: &str) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE grants SET closed_at = $2, close_reason = $3 WHERE id = $1 AND closed_at IS NULL",
            &[&id, &now, &reason],
        )? == 1)
    }

    fn remember_network(&self, user: &str, network: &str, now: i64) -> Result<bool, StoreError> {
        let inserted = self.execute(
            r#"INSERT INTO user_networks ("user", network, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"#,
            &[&user, &network, &now],
        )?;
        Ok(inserted == 0)
    }

    fn knows_network(&self, user: &str, network: &str) -> Result<bool, StoreError> {
        Ok(self
            .query_opt(
                r#"SELECT 1 FROM user_networks WHERE "user" = $1 AND network = $2"#,
                &[&user, &network],
            )?
            .is_some())
    }

    fn denied_grants_since(&self, user: &str, since: i64) -> Result<u32, StoreError> {
        let n: i64 = self
            .query(
                r#"SELECT COUNT(*) FROM audit WHERE "user" = $1 AND at >= $2 AND action = 'grant' AND outcome = 'deny'"#,
                &[&user, &since],
            )?
            .first()
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or(0);
        Ok(count(n))
    }

    fn revoke_device(&self, device_id: &str, now: i64, reason: &str) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE devices SET revoked_at = $2, revoke_reason = $3 WHERE device_id = $1 AND revoked_at IS NULL",
            &[&device_id, &now, &reason],
        )?;
        Ok(changed == 1 || self.device(device_id)?.is_some())
    }

    fn revoke_user(
        &self,
        user: &str,
        now: i64,
        reason: &str,
        until_cleared: bool,
    ) -> Result<(), StoreError> {
        self.execute(
            r#"INSERT INTO user_revocations ("user", revoked_at, reason, until_cleared) VALUES ($1, $2, $3, $4)
             ON CONFLICT ("user") DO UPDATE SET revoked_at = excluded.revoked_at, reason = excluded.reason,
                 until_cleared = user_revocations.until_cleared OR excluded.until_cleared, cleared_at = NULL"#,
            &[&user, &now, &reason, &until_cleared],
        )?;
        Ok(())
    }

    fn user_revocation(&self, user: &str) -> Result<Option<UserRevocation>, StoreError> {
        self.query_opt(
            r#"SELECT revoked_at, until_cleared FROM user_revocations WHERE "user" = $1"#,
            &[&user],
        )?
        .map(|r| {
            Ok(UserRevocation {
                revoked_at: r.try_get(0)?,
                until_cleared: r.try_get(1)?,
            })
        })
        .transpose()
    }

    fn clear_user_revocation(&self, user: &str, now: i64) -> Result<bool, StoreError> {
        let changed = self.execute(
            r#"UPDATE user_revocations
             SET revoked_at = CASE WHEN until_cleared THEN GREATEST(revoked_at, $2) ELSE revoked_at END,
                 until_cleared = FALSE, cleared_at = $2
             WHERE "user" = $1 AND cleared_at IS NULL"#,
            &[&user, &now],
        )?;
        Ok(changed == 1)
    }

    fn audit_many(&self, entries: &[(NewAudit<'_>, i64)]) -> Result<Vec<AuditEntry>, StoreError> {
        let chained = self.run(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // Holds the log's tail until commit, on every replica.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
                .await?;
            let (mut seq, mut prev): (i64, String) = match tx
                .query_opt(
                    "SELECT seq, COALESCE(hash, '') FROM audit ORDER BY seq DESC LIMIT 1",
                    &[],
                )
                .await?
            {
                Some(r) => (r.try_get(0)?, r.try_get(1)?),
                None => (0, String::new()),
            };
            let insert = tx
                .prepare(r#"INSERT INTO audit (seq, at, action, outcome, "user", device_id, problem, reason, decision, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#)
                .await?;
            let mut chained = Vec::with_capacity(entries.len());
            for (e, now) in entries {
                seq += 1;
                let row = chain_row(e, seq, *now, &prev);
                let hash = row_hash(&prev, &row);
                tx.execute(
                    &insert,
                    &[&seq, now, &e.action, &e.outcome, &e.user, &e.device_id, &e.problem, &e.reason, &row.decision, &prev, &hash],
                )
                .await?;
                chained.push((seq, hash.clone()));
                prev = hash;
            }
            tx.commit().await?;
            Ok(chained)
        })?;
        entries
            .iter()
            .zip(chained)
            .map(|((e, now), (seq, hash))| stored_entry(e, seq, *now, hash))
            .collect()
    }

    fn audit_chain(&self) -> Result<Vec<ChainRow>, StoreError> {
        self.query(
            r#"SELECT seq, at, action, outcome, "user", device_id, problem, reason, decision, prev_hash, hash FROM audit ORDER BY seq ASC"#,
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(ChainRow {
                seq: r.try_get(0)?,
                at: r.try_get(1)?,
                action: r.try_get(2)?,
                outcome: r.try_get(3)?,
                user: r.try_get(4)?,
                device_id: r.try_get(5)?,
                problem: r.try_get(6)?,
                reason: r.try_get(7)?,
                decision: r.try_get(8)?,
                prev_hash: r.try_get(9)?,
                hash: r.try_get(10)?,
            })
        })
        .collect()
    }

    fn audit_rows(&self, which: AuditRows<'_>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::from(limit);
        // Newest first for "the latest n", turned around below.
        let (clause, args, newest_first): (&str, Vec<&(dyn ToSql + Sync)>, bool) = match &which {
            AuditRows::Recent => ("TRUE ORDER BY seq DESC LIMIT $1", vec![&limit], true),
            AuditRows::After(after) => (
                "seq > $1 ORDER BY seq ASC LIMIT $2",
                vec![after, &limit],
                false,
            ),
            AuditRows::Device(device_id) => (
                "device_id = $1 ORDER BY seq DESC LIMIT $2",
                vec![device_id, &limit],
                true,
            ),
        };
        let sql = format!(
            r#"SELECT seq, at, action, outcome, "user", device_id, problem, reason, decision, hash FROM audit WHERE {clause}"#
        );
        let mut out = self
            .query(&sql, &args)?
            .iter()
            .map(|r| {
                let decision: AuditDecision = match r.try_get::<_, Option<&str>>(8)? {
                    Some(text) => parse_json(text)?,
                    None => AuditDecision::default(),
                };
                Ok(AuditEntry {
                    seq: r.try_get(0)?,
                    at: timestamp(r.try_get(1)?)?,
                    action: r.try_get(2)?,
                    outcome: r.try_get(3)?,
                    user: r.try_get(4)?,
                    device_id: r.try_get(5)?,
                    problem: r.try_get(6)?,
                    reason: r.try_get(7)?,
                    hash: r.try_get(9)?,
                    ..AuditEntry::default()
                }
                .with_decision(decision))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if newest_first {
            out.reverse();
        }
        Ok(out)
    }

    fn devices_by_prefix(&self, prefix: &str) -> Result<Vec<DeviceRow>, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE lower(substr(device_id, 1, length($1))) = lower($1) ORDER BY enrolled_at, device_id LIMIT 20"
        );
        self.query(&sql, &[&prefix])?
            .iter()
            .map(device_row)
            .collect()
    }

    fn device_revocation(&self, device_id: &str) -> Result<Option<(i64, String)>, StoreError> {
        self.query_opt(
            "SELECT revoked_at, COALESCE(revoke_reason, '') FROM devices WHERE device_id = $1 AND revoked_at IS NOT NULL",
            &[&device_id],
        )?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
    }

    fn verdict_history(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<VerdictRecord>, StoreError> {
        let mut out = self
            .query(
                "SELECT compliant, violations, evaluated_at, valid_until, policy_digest FROM verdicts WHERE device_id = $1 ORDER BY id DESC LIMIT $2",
                &[&device_id, &i64::from(limit)],
            )?
            .iter()
            .map(|r| {
                Ok(VerdictRecord {
                    compliant: r.try_get(0)?,
                    violations: parse_json(r.try_get(1)?)?,
                    evaluated_at: timestamp(r.try_get(2)?)?,
                    valid_until: timestamp(r.try_get(3)?)?,
                    policy_digest: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    fn grant_history(&self, device_id: &str, limit: u32) -> Result<Vec<GrantRecord>, StoreError> {
        let mut out = self
            .query(
                "SELECT id, app, created_at, expires_at, closed_at, close_reason FROM grants WHERE device_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                &[&device_id, &i64::from(limit)],
            )?
            .iter()
            .map(|r| {
                Ok(GrantRecord {
                    id: r.try_get(0)?,
                    app: r.try_get(1)?,
                    created_at: timestamp(r.try_get(2)?)?,
                    expires_at: timestamp(r.try_get(3)?)?,
                    closed_at: r.try_get::<_, Option<i64>>(4)?.map(timestamp).transpose()?,
                    close_reason: r.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use support::postgres::Cluster;

    fn appended(store: &PostgresStore) -> AuditEntry {
        store
            .audit(
                &NewAudit {
                    action: "attest",
                    outcome: "deny",
                    reason: "r",
                    ..NewAudit::default()
                },
                5,
            )
            .unwrap()
    }

    #[test]
    fn the_audit_table_refuses_update_delete_and_truncate() {
        let cluster = Cluster::start();
        let store = PostgresStore::connect(&cluster.create_database("b")).unwrap();
        appended(&store);
        for sql in [
            "UPDATE audit SET reason = 'x'",
            "DELETE FROM audit",
            "TRUNCATE audit",
        ] {
            let e = cluster.psql("b", sql).unwrap_err();
            assert!(e.contains("append-only"), "{sql}: {e}");
        }
        assert_eq!(store.audit_recent(10).unwrap()[0].reason, "r");
        drop(store);
        let again = PostgresStore::connect(&cluster.url_of("b")).unwrap();
        assert_eq!(
            again.audit_recent(10).unwrap().len(),
            1,
            "connecting again keeps the schema and its rows"
        );
    }

    // The callers are synchronous code inside the broker's runtime: a call
    // (and the drop at shutdown) must work there without "a runtime within
    // a runtime" panics, on both flavours.
    #[tokio::test(flavor = "current_thread")]
    async fn a_call_from_a_current_thread_runtime_is_answered() {
        let cluster = Cluster::start();
        let store = PostgresStore::connect(&cluster.url()).unwrap();
        assert_eq!(appended(&store).seq, 1);
        drop(store);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_from_a_multi_thread_runtime_is_answered() {
        let cluster = Cluster::start();
        let store = PostgresStore::connect(&cluster.url()).unwrap();
        assert_eq!(appended(&store).seq, 1);
        drop(store);
    }

    #[test]
    fn after_a_database_restart_the_next_call_is_answered() {
        let cluster = Cluster::start();
        let store = PostgresStore::connect(&cluster.url()).unwrap();
        assert_eq!(appended(&store).seq, 1);
        cluster.restart();
        assert_eq!(appended(&store).seq, 2);
        assert_eq!(store.audit_chain().unwrap().len(), 2);
    }

    /// The next wake-up, or a panic after 10 s.
    async fn woken(wake: &mut tokio::sync::mpsc::Receiver<()>) {
        tokio::time::timeout(Duration::from_secs(10), wake.recv())
            .await
            .expect("no wake-up within 10 s")
            .expect("the listener stopped");
    }

    // One replica relays, another follows: woken once connected and again
    // per message, and after a database restart cut the listener, woken
    // again once it is back, with the message sent meanwhile readable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relayed_messages_wake_the_follower_and_survive_a_reconnection() {
        let cluster = Cluster::start();
        let url = cluster.url();
        let sender = PostgresStore::connect(&url).unwrap();
        let follower = PostgresStore::connect(&url).unwrap();
        let mut wake = follower.follow_relayed().unwrap();
        woken(&mut wake).await;
        let start = follower.last_relayed().unwrap();
        sender.relay("one").unwrap();
        woken(&mut wake).await;
        let read = follower.relayed_after(start, 10).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].1, "one");

        tokio::task::block_in_place(|| cluster.restart());
        sender.relay("two").unwrap();
        // Woken by the reconnection (or by the notification itself when
        // the listener was back in time): either way, "two" is there.
        woken(&mut wake).await;
        let after = follower.relayed_after(read[0].0, 10).unwrap();
        assert_eq!(
            after.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
            ["two"]
        );
        assert!(after[0].0 > read[0].0);
        drop(wake);
    }

    #[test]
    fn an_unreachable_database_is_an_error_not_a_hang_or_panic() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "host={} dbname=none connect_timeout=2",
            dir.path().display()
        );
        let e = PostgresStore::connect(&url).unwrap_err();
        assert!(matches!(e, StoreError::Postgres(_)), "{e}");
    }
}
