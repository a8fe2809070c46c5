//! Two broker replicas on one PostgreSQL database (a throwaway cluster of
//! this test's own, whichever store the rest of the suite runs on): a
//! device enrolled at one is known at the other, a nonce issued by one is
//! spent once whichever replica sees it, and grants asked of both at once
//! never share a tunnel address (the database's unique index decides; the
//! loser picks another address).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use broker::api::{self, ProblemType};
use common::*;

/// Rounds of two grant requests at once.
const ROUNDS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_devices_nonces_and_the_address_pool() {
    let cluster = support::postgres::Cluster::start();
    let url = cluster.create_database("replicas");
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = |dir: &tempfile::TempDir| {
        config(&issuer.url, &db_path(dir.path()), echo)
            .with(|c| c.server.database_url = Some(url.clone()))
    };
    let a = start_broker(&replica(&dir_a)).await;
    let b = start_broker(&replica(&dir_b)).await;
    let http = reqwest::Client::new();
    let client = |base: String| Client {
        http: http.clone(),
        base,
        token: issuer.token("alice"),
        key: None,
        clock: None,
    };

    // Enrolled and attested at A; B knows the device.
    let at_a = TestDevice::new(client(a.base_url()), "alice");
    assert_eq!(at_a.enrol().await.status(), 201);
    let at_b = TestDevice {
        api: client(b.base_url()).with_key(&at_a.key),
        key: at_a.key.clone(),
        user: "alice".into(),
    };
    let verdict = at_a.attest(healthy_report()).await;
    assert!(verdict.compliant);

    // A nonce from A, spent at B, cannot be spent again at A.
    let claims = at_a.claims(healthy_report()).await;
    let eat = at_a.key.sign_eat(&claims).unwrap();
    assert_eq!(at_b.submit(eat.clone()).await.status(), 200);
    expect_problem(at_a.submit(eat).await, ProblemType::NonceReplayed).await;

    // Grants asked of both replicas at once: each replica picks the lowest
    // free address, so they often collide (without the retry in
    // `service::grants` this test fails most runs), and every grant still
    // gets its own. 24 grants: under the default 32 open grants per user.
    let mut addresses = HashSet::new();
    for _ in 0..ROUNDS {
        let (ka, kb) = (
            tunnel::PrivateKey::generate().public_key(),
            tunnel::PrivateKey::generate().public_key(),
        );
        let (ra, rb) = tokio::join!(
            at_a.request_grant("echo", &ka),
            at_b.request_grant("echo", &kb)
        );
        for r in [ra, rb] {
            assert_eq!(r.status(), 201);
            let grant: api::Grant = r.json().await.unwrap();
            assert!(
                addresses.insert(grant.client_address.clone()),
                "{} handed out twice",
                grant.client_address
            );
        }
    }
    assert_eq!(addresses.len(), 2 * ROUNDS);

    // One WireGuard key, one open grant, across replicas too.
    let key = tunnel::PrivateKey::generate().public_key();
    assert_eq!(at_a.request_grant("echo", &key).await.status(), 201);
    expect_problem(
        at_b.request_grant("echo", &key).await,
        ProblemType::WireguardKeyInUse,
    )
    .await;

    a.shutdown().await;
    b.shutdown().await;
}
