//! The audit log's one writer: a thread of its own, so appending (a
//! transaction synced to disk, chained to the row before it) never runs on
//! the async workers that serve requests and the embedded gateway. It
//! shares the store (on SQLite its one connection: one writer, no lock
//! contention between two connections; on PostgreSQL its pool). Callers wait for the outcome (under
//! `block_in_place` on the multi-threaded runtime, which moves the worker's
//! other tasks away meanwhile): an action that must not happen unrecorded
//! learns that its row was not written and fails closed.
//!
//! Rows that queue up while one is written go in the next transaction
//! together (group commit): appends are serialised by the hash chain, and
//! with one synced commit per row the log's disk latency capped the whole
//! broker's request rate (`cargo bench -p broker --bench fleet`).

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

/// Most rows one transaction takes. Under a burst of requests the queue
/// holds as many rows as requests wait on the log; a bound keeps one
/// transaction (and the lock on the log's tail) short.
const MAX_BATCH: usize = 256;

/// Appends the batch in one transaction and answers each caller: its own
/// entry, or (all or none being written) the failure.
fn write_batch(store: &dyn Store, batch: Vec<(Job, Reply)>) {
    let entries: Vec<(NewAudit<'_>, i64)> = batch
        .iter()
        .map(|(job, _)| {
            (
                NewAudit {
                    action: &job.action,
                    outcome: &job.outcome,
                    user: job.user.as_deref(),
                    device_id: job.device_id.as_deref(),
                    problem: job.problem.as_deref(),
                    reason: &job.reason,
                    decision: job.decision.as_ref(),
                },
                job.now,
            )
        })
        .collect();
    match store.audit_many(&entries) {
        Ok(stored) => {
            for ((_, reply), entry) in batch.iter().zip(stored) {
                let _ = reply.send(Ok(entry));
            }
        }
        Err(e) => {
            let why = e.to_string();
            for (_, reply) in &batch {
                let _ = reply.send(Err(StoreError::Io(format!(
                    "the audit row could not be written: {why}"
                ))));
            }
        }
    }
}

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
                while let Ok(first) = rx.recv() {
                    // Group commit: every row already queued goes in the
                    // same transaction (one wait for the disk for all).
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    write_batch(&*store, batch);
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

    #[test]
    fn rows_from_many_callers_at_once_are_each_answered_with_their_own_row() {
        let dir = tempfile::tempdir().unwrap();
        let main: Arc<dyn Store> =
            Arc::new(crate::server::store::SqliteStore::open(&dir.path().join("b.db")).unwrap());
        let writer = Arc::new(AuditWriter::start(main.clone()).unwrap());
        let callers: Vec<_> = (0..16)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| {
                            let reason = format!("caller {t} row {i}");
                            let e = writer
                                .write(
                                    &NewAudit {
                                        action: "attest",
                                        outcome: "allow",
                                        reason: &reason,
                                        ..NewAudit::default()
                                    },
                                    7,
                                )
                                .unwrap();
                            assert_eq!(e.reason, reason, "a caller got another's row");
                            e.seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<i64> = callers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
        let rows = main.audit_chain().unwrap();
        assert!(super::super::audit_chain::verify(rows).is_ok());
    }
}
