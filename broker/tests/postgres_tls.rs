//! The PostgreSQL store over TLS, as it reaches a database on another
//! host: a throwaway cluster with `ssl=on` on a loopback port, its
//! certificate made by the `openssl` CLI for `localhost`. With that
//! certificate trusted (`[server] database_ca`) the store's connections
//! are encrypted (PostgreSQL's own `pg_stat_ssl` says so); with only the
//! public roots the connection is refused, not made in the clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker::server::store::{PostgresStore, Store as _, StoreError};

#[test]
fn the_store_reaches_postgresql_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::certs::self_signed_server(dir.path(), "DNS:localhost");
    let (cluster, port) = support::postgres::Cluster::start_with_tls(&cert, &key);
    let url = format!("host=localhost port={port} user=sallyport dbname=postgres sslmode=require");

    let store = PostgresStore::connect_with(&url, Some(&cert)).unwrap();
    assert!(store.meta_or_insert("probe", "1").is_ok());
    let encrypted = cluster
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'sallyport-broker' AND s.ssl",
        )
        .unwrap();
    assert_ne!(encrypted, "0", "no encrypted connection of the store");
    let clear = cluster
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'sallyport-broker' AND NOT s.ssl",
        )
        .unwrap();
    assert_eq!(clear, "0", "a connection of the store in the clear");
    drop(store);

    // Not trusted: refused, whatever the server offers.
    match PostgresStore::connect_with(&url, None) {
        Err(StoreError::Postgres(e)) => assert!(e.contains("certificate"), "{e}"),
        other => panic!("an untrusted server was accepted: {other:?}"),
    }
}
