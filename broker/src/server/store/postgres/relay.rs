//! Messages between replicas through the database: each is a row of
//! `relayed` (so a follower that was disconnected reads what it missed by
//! id) plus a `NOTIFY` that wakes the followers at once.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{RELAY_LOCK, StoreError};

/// The `LISTEN`/`NOTIFY` channel.
const CHANNEL: &str = "sallyport_relay";
/// Rows kept behind the newest: enough for a follower that was away for a
/// database restart, small enough to stay a few hundred kilobytes.
const KEEP: i64 = 10_000;
/// Wait between attempts to reconnect the listener.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Appends `payload` and notifies, in one transaction: the notification is
/// sent at commit, when the row is visible to whoever it wakes.
pub(super) async fn append(pool: &Pool, payload: &str) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RELAY_LOCK])
        .await?;
    let row = tx
        .query_one(
            "INSERT INTO relayed (payload) VALUES ($1) RETURNING id",
            &[&payload],
        )
        .await?;
    let id: i64 = row.try_get(0)?;
    tx.execute("DELETE FROM relayed WHERE id <= $1", &[&(id - KEEP)])
        .await?;
    tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
    tx.commit().await?;
    Ok(())
}

/// Keeps a `LISTEN` connection open until `wake`'s receiver is dropped,
/// reconnecting after a failure, and wakes the follower on each
/// notification and after each (re)connection.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    wake: mpsc::Sender<()>,
) {
    while !wake.is_closed() {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                // The connection delivers notifications only while it is
                // polled, and the `LISTEN` below needs it polled too.
                let notified = wake.clone();
                let mut driver = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            // Full: a wake-up is already pending, which
                            // will read this message too.
                            Ok(AsyncMessage::Notification(_)) => {
                                let _ = notified.try_send(());
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "relay listener connection failed");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        let _ = wake.try_send(());
                        tokio::select! {
                            _ = &mut driver => {}
                            () = wake.closed() => {}
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "relay listener: LISTEN failed"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "relay listener cannot connect"),
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
            () = wake.closed() => {}
        }
    }
}
