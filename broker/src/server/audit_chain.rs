//! The audit log as a hash chain (pure): every row's `hash` is SHA-256 over
//! the previous row's hash and the row's own fields, so changing, deleting
//! or reordering a row breaks the chain at that row, and
//! `sallyport-broker audit verify` says where.
//!
//! What it cannot show alone: rows cut off the end. The head hash is in
//! every record a SIEM receives (`hash`), so a SIEM that kept them notices
//! a log that ends early or forks; `audit verify` prints the head to compare.

use serde::Serialize;

/// One stored row, as the chain sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    /// Sequence number.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Action.
    pub action: String,
    /// `allow` / `deny`.
    pub outcome: String,
    /// User.
    pub user: Option<String>,
    /// Device.
    pub device_id: Option<String>,
    /// Problem slug.
    pub problem: Option<String>,
    /// Reason.
    pub reason: String,
    /// The decision details as stored (JSON text).
    pub decision: Option<String>,
    /// The previous row's hash as stored (empty for the first chained row).
    pub prev_hash: Option<String>,
    /// This row's hash as stored; `None` for rows written before the chain.
    pub hash: Option<String>,
}

#[derive(Serialize)]
struct Hashed<'a> {
    prev: &'a str,
    seq: i64,
    at: i64,
    action: &'a str,
    outcome: &'a str,
    user: Option<&'a str>,
    device_id: Option<&'a str>,
    problem: Option<&'a str>,
    reason: &'a str,
    decision: Option<&'a str>,
}

/// The hash of `row` after `prev` (hex): SHA-256 over a JSON object of
/// both, so no field can bleed into the next.
pub fn row_hash(prev: &str, row: &ChainRow) -> String {
    let text = serde_json::to_vec(&Hashed {
        prev,
        seq: row.seq,
        at: row.at,
        action: &row.action,
        outcome: &row.outcome,
        user: row.user.as_deref(),
        device_id: row.device_id.as_deref(),
        problem: row.problem.as_deref(),
        reason: &row.reason,
        decision: row.decision.as_deref(),
    })
    .unwrap_or_default();
    super::config::to_hex(ring::digest::digest(&ring::digest::SHA256, &text).as_ref())
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Rows checked.
    pub rows: u64,
    /// Rows before the chain began (written by a broker without it), not checked.
    pub unchained: u64,
    /// The last row's hash.
    pub head: Option<String>,
    /// The last row's seq.
    pub last_seq: Option<i64>,
}

/// Where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// The row's content does not give its hash: it was changed.
    #[error("row {seq} was changed after it was written (its hash does not match its content)")]
    Changed {
        /// The row.
        seq: i64,
    },
    /// Sequence numbers jump: rows between were deleted.
    #[error("rows between {after} and {next} are missing (deleted)")]
    Missing {
        /// The last row before the gap.
        after: i64,
        /// The first row after it.
        next: i64,
    },
    /// The row does not follow the row before it: deleted, reordered or
    /// copied from elsewhere.
    #[error("row {seq} does not follow row {previous} (rows deleted, reordered or inserted)")]
    Unlinked {
        /// The row.
        seq: i64,
        /// The row before it.
        previous: i64,
    },
    /// A row without a hash after the chain began.
    #[error("row {seq} has no hash although earlier rows do (written around the broker)")]
    Unhashed {
        /// The row.
        seq: i64,
    },
}

/// Checks `rows` (in `seq` order): each chained row's hash matches its
/// content and the previous row's hash, and no `seq` is skipped.
pub fn verify(rows: impl IntoIterator<Item = ChainRow>) -> Result<Verified, Broken> {
    let mut out = Verified {
        rows: 0,
        unchained: 0,
        head: None,
        last_seq: None,
    };
    for row in rows {
        if let Some(last) = out.last_seq
            && row.seq != last + 1
        {
            return Err(Broken::Missing {
                after: last,
                next: row.seq,
            });
        }
        match (&row.hash, &out.head) {
            (None, None) => out.unchained += 1,
            (None, Some(_)) => return Err(Broken::Unhashed { seq: row.seq }),
            (Some(hash), head) => {
                let prev = head.clone().unwrap_or_default();
                if row.prev_hash.as_deref().unwrap_or_default() != prev {
                    return Err(Broken::Unlinked {
                        seq: row.seq,
                        previous: out.last_seq.unwrap_or(0),
                    });
                }
                if row_hash(&prev, &row) != *hash {
                    return Err(Broken::Changed { seq: row.seq });
                }
                out.head = Some(hash.clone());
                out.rows += 1;
            }
        }
        out.last_seq = Some(row.seq);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainRow> {
        let mut prev = String::new();
        (1..=n)
            .map(|seq| {
                let mut row = ChainRow {
                    seq,
                    at: 1000 + seq,
                    action: "grant".into(),
                    outcome: if seq % 2 == 0 { "allow" } else { "deny" }.into(),
                    user: Some("alice".into()),
                    device_id: None,
                    problem: None,
                    reason: format!("row {seq}"),
                    decision: Some(r#"{"app":"wiki"}"#.into()),
                    prev_hash: Some(prev.clone()),
                    hash: None,
                };
                let hash = row_hash(&prev, &row);
                row.hash = Some(hash.clone());
                prev = hash;
                row
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(5);
        let v = verify(rows.clone()).unwrap();
        assert_eq!((v.rows, v.unchained, v.last_seq), (5, 0, Some(5)));
        assert_eq!(v.head, rows[4].hash);
        assert_eq!(verify(Vec::new()).unwrap().rows, 0);
    }

    #[test]
    fn a_changed_row_is_found() {
        let mut rows = chain(5);
        rows[2].reason = "nothing happened".into();
        assert_eq!(verify(rows).unwrap_err(), Broken::Changed { seq: 3 });
        let mut rows = chain(5);
        rows[1].outcome = "deny".into();
        assert_eq!(verify(rows).unwrap_err(), Broken::Changed { seq: 2 });
        let mut rows = chain(5);
        rows[3].decision = None;
        assert_eq!(verify(rows).unwrap_err(), Broken::Changed { seq: 4 });
    }

    #[test]
    fn a_deleted_row_is_found() {
        let mut rows = chain(5);
        rows.remove(2);
        assert_eq!(
            verify(rows).unwrap_err(),
            Broken::Missing { after: 2, next: 4 }
        );
        // Deleted and renumbered to hide the gap: the link breaks.
        let mut rows = chain(5);
        rows.remove(2);
        for row in &mut rows[2..] {
            row.seq -= 1;
        }
        assert_eq!(
            verify(rows).unwrap_err(),
            Broken::Unlinked {
                seq: 3,
                previous: 2
            }
        );
    }

    #[test]
    fn reordered_rows_are_found() {
        let mut rows = chain(5);
        rows.swap(1, 2);
        let (a, b) = (rows[1].seq, rows[2].seq);
        rows[1].seq = b;
        rows[2].seq = a;
        assert!(verify(rows).is_err());
        // Contents swapped, seqs kept.
        let mut rows = chain(5);
        let (r1, r2) = (rows[1].reason.clone(), rows[2].reason.clone());
        rows[1].reason = r2;
        rows[2].reason = r1;
        assert_eq!(verify(rows).unwrap_err(), Broken::Changed { seq: 2 });
    }

    #[test]
    fn rows_from_before_the_chain_are_counted_not_checked() {
        let mut rows = chain(3);
        let mut old = rows[0].clone();
        old.hash = None;
        old.prev_hash = None;
        let mut legacy = vec![
            ChainRow {
                seq: 1,
                ..old.clone()
            },
            ChainRow { seq: 2, ..old },
        ];
        let mut prev = String::new();
        for (i, row) in rows.iter_mut().enumerate() {
            row.seq = 3 + i64::try_from(i).unwrap();
            row.prev_hash = Some(prev.clone());
            let h = row_hash(&prev, row);
            row.hash = Some(h.clone());
            prev = h;
        }
        legacy.extend(rows.clone());
        let v = verify(legacy.clone()).unwrap();
        assert_eq!((v.unchained, v.rows), (2, 3));
        // An unhashed row after the chain began is not "legacy".
        legacy[3].hash = None;
        assert_eq!(verify(legacy).unwrap_err(), Broken::Unhashed { seq: 4 });
    }
}
