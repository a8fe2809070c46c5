//! The audit log's one writer: a thread of its own, so appending (a
//! transaction synced to disk, chained to the row before it) never runs on
//! the async workers that serve requests and the embedded gateway. It
//! shares the store (on SQLite its one connection: one writer, no lock
//! contention between two connections; on PostgreSQL its pool). Callers wait for the outcome (under
//! `block_in_place` on the multi-threaded runtime, which moves the worker's
//! other tasks away meanwhile): an action that must not happen unrecorded
//! learns that its row was not written and fails closed.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use super::store::{AuditDecision, NewAudit, Store, StoreError};
use crate::api::AuditEntry;

/// An audit row to write, owned (it crosses to the writer thread).
#[derive(Debug, Clone, Default)]
struct Job {
    action: String,
    outcome: String,
    user: Option<String>,
    device_id: Option<String>,
    problem: Option<String>,
    reason: String,
    decision: Option<AuditDecision>,
    now: i64,
}

type Reply = mpsc::Sender<Result<AuditEntry, StoreError>>;

/// The handle requests use; the thread ends when it is dropped.
#[derive(Debug)]
pub struct AuditWriter {
    jobs: Mutex<mpsc::Sender<(Job, Reply)>>,
}

impl AuditWriter {
    /// Starts the writer thread over `store`.
    pub fn start(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<(Job, Reply)>();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                for (job, reply) in rx {
                    let entry = NewAudit {
                        action: &job.action,
                        outcome: &job.outcome,
                        user: job.user.as_deref(),
                        device_id: job.device_id.as_deref(),
                        problem: job.problem.as_deref(),
                        reason: &job.reason,
                        decision: job.decision.as_ref(),
                    };
                    let _ = reply.send(store.audit(&entry, job.now));
                }
            })
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Appends `entry` at `now` and waits for the outcome.
    pub fn write(&self, entry: &NewAudit<'_>, now: i64) -> Result<AuditEntry, StoreError> {
        let job = Job {
            action: entry.action.to_owned(),
            outcome: entry.outcome.to_owned(),
            user: entry.user.map(str::to_owned),
            device_id: entry.device_id.map(str::to_owned),
            problem: entry.problem.map(str::to_owned),
            reason: entry.reason.to_owned(),
            decision: entry.decision.cloned(),
            now,
        };
        let (reply, outcome) = mpsc::channel();
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send((job, reply))
            .map_err(|_| StoreError::Io("the audit writer has stopped".into()))?;
        let wait = || {
            outcome
                .recv()
                .map_err(|_| StoreError::Io("the audit writer has stopped".into()))?
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_by_the_writer_thread_in_order_and_chained() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        let main: Arc<dyn Store> = Arc::new(crate::server::store::SqliteStore::open(&db).unwrap());
        let writer = AuditWriter::start(main.clone()).unwrap();
        for i in 0..5 {
            let e = writer
                .write(
                    &NewAudit {
                        action: "grant",
                        outcome: "deny",
                        user: Some("alice"),
                        reason: &format!("row {i}"),
                        ..NewAudit::default()
                    },
                    100 + i,
                )
                .unwrap();
            assert_eq!(e.seq, i + 1);
        }
        // The request side reads what the writer wrote.
        let rows = main.audit_chain().unwrap();
        assert_eq!(rows.len(), 5);
        assert!(super::super::audit_chain::verify(rows).is_ok());
    }
}
