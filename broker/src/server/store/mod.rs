//! The broker's durable state: devices, nonces, verdicts, grants, user
//! revocations, networks seen, and an append-only, hash-chained audit log.
//!
//! One trait, [`Store`], with two backends: [`sqlite::SqliteStore`] (the
//! default: one file, one process) and [`postgres::PostgresStore`] (a
//! database the organisation already runs, shared by several broker
//! replicas). The broker holds an `Arc<dyn Store>`; [`open`] picks the
//! backend from the configuration ([`Database`]).
//!
//! The trait is synchronous, as the callers are: the service layer calls the
//! store from inside its request handlers, between decisions, and SQLite's
//! calls are microseconds. The PostgreSQL backend keeps that shape (see its
//! module for how it waits without blocking the async runtime's other
//! tasks or nesting runtimes), so neither the callers nor SQLite pay for an
//! async interface; the cost is a parked worker per query in flight.
//!
//! What must hold across replicas holds in the database, never in a
//! process's lock: a nonce is consumed by one conditional `UPDATE` (exactly
//! one caller sees it unused), and two open grants can never share a tunnel
//! address or a WireGuard key (partial unique indexes; the loser of a race
//! gets [`StoreError::Taken`] and allocates again). Times are Unix seconds.

pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use super::eat::{EnrolledKey, NonceAnswer};
use super::grants::StoredVerdict;
use crate::api::{
    AdminDevice, AuditEntry, DeviceStatus, DeviceSupport, GrantRecord, VerdictRecord, Violation,
};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// PostgreSQL said no (or could not be reached).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// A uniqueness rule refused the write: another open grant (perhaps
    /// made by another replica a moment before) holds this value.
    #[error("already taken by an open grant: {0}")]
    Taken(Taken),
    /// A stored JSON column could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The audit writer thread could not be started or has stopped.
    #[error("audit writer: {0}")]
    Io(String),
}

/// What an open grant already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Taken {
    /// The tunnel address.
    #[error("tunnel address")]
    Address,
    /// The WireGuard public key.
    #[error("WireGuard key")]
    Key,
}

/// Where the broker keeps its state (`[server] database`, `database_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`host=/run/postgresql dbname=sallyport`
    /// or `postgresql://user@host/db`).
    Postgres(String),
}

/// Opens (creating the schema if needed) the store `database` names.
pub fn open(database: &Database) -> Result<Arc<dyn Store>, StoreError> {
    open_with(database, None)
}

/// [`open`], trusting the CA certificates in `postgres_ca` (PEM) for a
/// PostgreSQL server reached over TLS (`[server] database_ca`).
pub fn open_with(
    database: &Database,
    postgres_ca: Option<&std::path::Path>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match database {
        Database::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        Database::Postgres(url) => Arc::new(PostgresStore::connect_with(url, postgres_ca)?),
    })
}

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
    /// The separate gateway (`[[gateways]] id`) holding its peer; `None`:
    /// the broker's embedded gateway.
    pub gateway: Option<String>,
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
pub(crate) trait WithDecision {
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

/// Which open grants a query lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenGrants<'a> {
    /// Every open grant.
    All,
    /// The one with this id.
    Id(&'a str),
    /// Of a device.
    Device(&'a str),
    /// Of a user.
    User(&'a str),
    /// Holding this WireGuard key.
    Key(&'a str),
    /// Decided under another posture policy than this digest.
    NotUnder(&'a str),
    /// Expiring at or before this time.
    DueBy(i64),
    /// Held by this separate gateway.
    Gateway(&'a str),
}

/// Which audit rows a query lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditRows<'a> {
    /// The latest ones.
    Recent,
    /// Those after this `seq`, oldest first (a SIEM's cursor).
    After(i64),
    /// The latest ones naming this device.
    Device(&'a str),
}

/// The broker's state, whichever database holds it. Methods are
/// synchronous (see the module documentation); every write that the API
/// confirms is committed before the method returns.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The value under `key` in `meta`, storing `value` there first when
    /// there is none (the first replica to store wins).
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Removes and returns a value from `meta` (a secret moving out of the
    /// database).
    fn take_meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Enrols `key` for its user. A key already enrolled is returned as it
    /// is (`rules` are for new keys); a new key is refused while its user's
    /// revocation stands uncleared or the user is at the quota. One
    /// transaction, serialised per user, so two enrolments at once cannot
    /// both take the last place of a quota.
    fn enrol(
        &self,
        key: &EnrolledKey,
        jwk_json: &str,
        name: Option<&str>,
        now: i64,
        rules: NewDeviceRules,
    ) -> Result<Enrolment, StoreError>;

    /// Approves a pending, unrevoked device; its row afterwards (`None`:
    /// unknown). Approving an active device changes nothing.
    fn approve_device(&self, device_id: &str, now: i64) -> Result<Option<DeviceRow>, StoreError>;

    /// Every device, oldest enrolment first; only those in `status` when given.
    fn devices(&self, status: Option<DeviceStatus>) -> Result<Vec<DeviceRow>, StoreError>;

    /// Forgets a revoked device and its verdicts, so that its key can be
    /// enrolled afresh (through the enrolment mode, with no old verdict to
    /// lean on). False when the device is not revoked; `None` when unknown.
    fn forget_revoked_device(&self, device_id: &str) -> Result<Option<bool>, StoreError>;

    /// The device with `device_id`.
    fn device(&self, device_id: &str) -> Result<Option<DeviceRow>, StoreError>;

    /// Records a fresh nonce for `user` (and lets nonces that expired a
    /// day ago go: until then a replay is named as such).
    fn issue_nonce(
        &self,
        nonce: &str,
        user: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Unused, unexpired nonces `user` holds.
    fn outstanding_nonces(&self, user: &str, now: i64) -> Result<u32, StoreError>;

    /// Consumes `nonce` for `user` atomically: exactly one caller ever gets
    /// [`NonceAnswer::Consumed`], on any replica (one conditional `UPDATE`,
    /// no check-then-use).
    fn consume_nonce(&self, nonce: &str, user: &str, now: i64) -> Result<NonceAnswer, StoreError>;

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
    ) -> Result<(), StoreError>;

    /// The device's latest verdict.
    fn latest_verdict(&self, device_id: &str) -> Result<Option<VerdictRow>, StoreError>;

    /// Addresses of open grants.
    fn used_addresses(&self) -> Result<HashSet<Ipv4Addr>, StoreError>;

    /// Whether a WireGuard key has an open grant.
    fn key_in_use(&self, wg_public_key: &str) -> Result<bool, StoreError>;

    /// Stores an open grant. [`StoreError::Taken`] when an open grant
    /// already holds its address or key (the database's unique indexes
    /// decide, so two replicas cannot both win).
    fn insert_grant(&self, g: &GrantRow) -> Result<(), StoreError>;

    /// Open grants, oldest first.
    fn open_grants_where(&self, which: OpenGrants<'_>) -> Result<Vec<GrantRow>, StoreError>;

    /// Closes a grant; false if it was not open.
    fn close_grant(&self, id: &str, now: i64, reason: &str) -> Result<bool, StoreError>;

    /// Whether `network` was seen for `user` before; records it when not.
    fn remember_network(&self, user: &str, network: &str, now: i64) -> Result<bool, StoreError>;

    /// Whether `network` was seen for `user` (read only).
    fn knows_network(&self, user: &str, network: &str) -> Result<bool, StoreError>;

    /// Grants denied to `user` since `since` (Unix seconds), from the audit log.
    fn denied_grants_since(&self, user: &str, since: i64) -> Result<u32, StoreError>;

    /// Marks a device revoked; false if unknown.
    fn revoke_device(&self, device_id: &str, now: i64, reason: &str) -> Result<bool, StoreError>;

    /// Revokes a user's sessions as of `now`; with `until_cleared`, also
    /// every later sign-in until [`Store::clear_user_revocation`]. A plain
    /// revocation never lifts an until-cleared one.
    fn revoke_user(
        &self,
        user: &str,
        now: i64,
        reason: &str,
        until_cleared: bool,
    ) -> Result<(), StoreError>;

    /// The user's revocation, if any.
    fn user_revocation(&self, user: &str) -> Result<Option<UserRevocation>, StoreError>;

    /// Clears the user's revocation as of `now`; false when none was in
    /// force. Afterwards the user may enrol new devices again, and an
    /// until-cleared block is lifted: sign-ins after `now` are accepted.
    /// Tokens from sign-ins before `now` stay refused (made while the user
    /// was blocked, perhaps by whoever caused the block), so `revoked_at`
    /// moves to `now` for an until-cleared block and keeps its time
    /// otherwise.
    fn clear_user_revocation(&self, user: &str, now: i64) -> Result<bool, StoreError>;

    /// Appends to the audit log, chained to the row before it (see
    /// [`super::audit_chain`]); returns the entry as stored (with its `seq`
    /// and `hash`). One transaction that holds the log's tail, so two rows
    /// (from any replica) can never chain to the same predecessor.
    fn audit(&self, e: &NewAudit<'_>, now: i64) -> Result<AuditEntry, StoreError> {
        self.audit_many(&[(e.clone(), now)])?
            .pop()
            .ok_or_else(|| StoreError::Io("the audit append returned no row".into()))
    }

    /// Appends `entries` in order (each with its time) in one transaction,
    /// each chained to the one before: one commit, and one wait for the
    /// disk, for all of them (the audit writer's group commit). All or
    /// none are written.
    fn audit_many(&self, entries: &[(NewAudit<'_>, i64)]) -> Result<Vec<AuditEntry>, StoreError>;

    /// Every audit row as the chain sees it, in `seq` order, for
    /// `sallyport-broker audit verify`.
    fn audit_chain(&self) -> Result<Vec<super::audit_chain::ChainRow>, StoreError>;

    /// Up to `limit` audit entries, oldest first.
    fn audit_rows(&self, which: AuditRows<'_>, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// Devices whose id starts with `prefix`, ignoring ASCII case (a
    /// support code read out over the phone loses its case); at most 20.
    fn devices_by_prefix(&self, prefix: &str) -> Result<Vec<DeviceRow>, StoreError>;

    /// When and why `device_id` was revoked, if it was.
    fn device_revocation(&self, device_id: &str) -> Result<Option<(i64, String)>, StoreError>;

    /// The latest `limit` verdicts of `device_id`, oldest first.
    fn verdict_history(
        &self,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<VerdictRecord>, StoreError>;

    /// The latest `limit` grants of `device_id`, open or closed, oldest
    /// first.
    fn grant_history(&self, device_id: &str, limit: u32) -> Result<Vec<GrantRecord>, StoreError>;

    /// Hands `payload` (a [`crate::server::relay`] message) to the other
    /// replicas sharing this database and wakes their followers. A single
    /// node has no one to tell: by default nothing happens.
    fn relay(&self, _payload: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Relayed messages after `after`, oldest first, at most `limit`.
    fn relayed_after(&self, _after: i64, _limit: u32) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(Vec::new())
    }

    /// The newest relayed message's id (0 when none): a replica that
    /// starts now follows from there.
    fn last_relayed(&self) -> Result<i64, StoreError> {
        Ok(0)
    }

    /// A wake-up whenever a replica relays a message, and one after every
    /// (re)connection of the listener (what was sent while it was away is
    /// read back by id, not lost). `None` when there is nothing to follow.
    fn follow_relayed(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        None
    }

    /// Every open grant.
    fn open_grants(&self) -> Result<Vec<GrantRow>, StoreError> {
        self.open_grants_where(OpenGrants::All)
    }

    /// Open grants of a device.
    fn open_grants_of_device(&self, device_id: &str) -> Result<Vec<GrantRow>, StoreError> {
        self.open_grants_where(OpenGrants::Device(device_id))
    }

    /// Open grants whose verdict was made under another policy than `digest`.
    fn open_grants_not_under(&self, digest: &str) -> Result<Vec<GrantRow>, StoreError> {
        self.open_grants_where(OpenGrants::NotUnder(digest))
    }

    /// The open grant holding this WireGuard key (at most one: the unique
    /// index on open grants' keys), to name whose tunnel a gateway peer is.
    fn open_grant_by_key(&self, wg_public_key: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(self
            .open_grants_where(OpenGrants::Key(wg_public_key))?
            .into_iter()
            .next())
    }

    /// Open grants of a user.
    fn open_grants_of_user(&self, user: &str) -> Result<Vec<GrantRow>, StoreError> {
        self.open_grants_where(OpenGrants::User(user))
    }

    /// An open grant.
    fn open_grant(&self, id: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(self
            .open_grants_where(OpenGrants::Id(id))?
            .into_iter()
            .next())
    }

    /// Closes and returns every open grant whose expiry has passed (with
    /// its window's reason when a time window ended it). A grant another
    /// replica closed meanwhile is not returned.
    fn expire_grants(&self, now: i64) -> Result<Vec<GrantRow>, StoreError> {
        let mut closed = Vec::new();
        for g in self.open_grants_where(OpenGrants::DueBy(now))? {
            if self.close_grant(&g.id, now, g.ends_reason.as_deref().unwrap_or("expired"))? {
                closed.push(g);
            }
        }
        Ok(closed)
    }

    /// The latest `limit` audit entries, oldest first.
    fn audit_recent(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_rows(AuditRows::Recent, limit)
    }

    /// Up to `limit` entries with `seq > after`, oldest first: a cursor a
    /// SIEM can resume from.
    fn audit_since(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_rows(AuditRows::After(after), limit)
    }

    /// The latest `limit` audit entries naming `device_id`, oldest first.
    fn audit_of_device(&self, device_id: &str, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_rows(AuditRows::Device(device_id), limit)
    }

    /// The broker's side of every device whose id starts with `prefix`
    /// (case ignored), for helpdesk: enrolment, the latest 50 verdicts, 100
    /// grants and 200 audit rows naming it.
    fn device_support(&self, prefix: &str) -> Result<Vec<DeviceSupport>, StoreError> {
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
}

/// The entry [`Store::audit`] stored: `e` at `now` with its `seq` and `hash`.
pub(crate) fn stored_entry(
    e: &NewAudit<'_>,
    seq: i64,
    now: i64,
    hash: String,
) -> Result<AuditEntry, StoreError> {
    let d = e.decision.cloned().unwrap_or_default();
    Ok(AuditEntry {
        seq,
        at: timestamp(now)?,
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

/// The chain row [`Store::audit`] hashes for `e` as row `seq` after `prev`.
pub(crate) fn chain_row(
    e: &NewAudit<'_>,
    seq: i64,
    now: i64,
    prev: &str,
) -> super::audit_chain::ChainRow {
    super::audit_chain::ChainRow {
        seq,
        at: now,
        action: e.action.to_owned(),
        outcome: e.outcome.to_owned(),
        user: e.user.map(str::to_owned),
        device_id: e.device_id.map(str::to_owned),
        problem: e.problem.map(str::to_owned),
        reason: e.reason.to_owned(),
        decision: e.decision.map(json),
        prev_hash: Some(prev.to_owned()),
        hash: None,
    }
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// A stored Unix time as a date.
pub(crate) fn timestamp(at: i64) -> Result<time::OffsetDateTime, StoreError> {
    time::OffsetDateTime::from_unix_timestamp(at).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A stored tunnel address.
pub(crate) fn address(text: &str) -> Result<Ipv4Addr, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("address {text:?}")))
}
