//! Two broker replicas on one PostgreSQL database (a throwaway cluster of
//! this test's own, whichever store the rest of the suite runs on): a
//! device enrolled at one is known at the other, a nonce issued by one is
//! spent once whichever replica sees it, and grants asked of both at once
//! never share a tunnel address (the database's unique index decides; the
//! loser picks another address). What an administrator does at one
//! replica reaches the tunnels and event streams of the other (relayed
//! through `LISTEN`/`NOTIFY`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::api::{self, ComplianceStatus, Event, ProblemType};
use broker::server::BrokerHandle;
use common::*;
use serde_json::json;

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

/// How long the other replica may take to act on a relayed message before
/// the test calls it lost (it takes milliseconds; this is for a loaded CI).
const RELAYED_WITHIN: Duration = Duration::from_secs(10);

/// Waits until `replica`'s gateway no longer holds a peer at `address`.
async fn peer_leaves(replica: &BrokerHandle, address: &str) {
    let started = Instant::now();
    while replica
        .gateway_status()
        .unwrap()
        .peers
        .iter()
        .any(|p| p.client_address.to_string() == address)
    {
        assert!(
            started.elapsed() < RELAYED_WITHIN,
            "the peer {address} is still at the other replica's gateway"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether echo through `tunnel` to `target` answers within 2 s.
async fn echo_works(tunnel: &tunnel::TunnelHandle, target: &str) -> bool {
    let forward = tunnel.forward_addr(&target.parse().unwrap()).unwrap();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), echo_through(forward, b"ping")).await,
        Ok(Ok(ref v)) if v == b"ping"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_admin_does_at_one_replica_reaches_the_tunnels_and_streams_of_another() {
    let cluster = support::postgres::Cluster::start();
    let url = cluster.create_database("fanout");
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let (dir_a, dir_b, shared) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // Replicas share their policy file, as a fleet's configuration
    // management would lay it out.
    let policy = shared.path().join("policy.rego");
    std::fs::write(&policy, posture::policy::DEFAULT_POLICY).unwrap();
    let replica = |dir: &Path| {
        config(&issuer.url, &db_path(dir), echo)
            .policy(&policy)
            .with(|c| c.server.database_url = Some(url.clone()))
    };
    let a = start_broker(&replica(dir_a.path())).await;
    let b = start_broker(&replica(dir_b.path())).await;
    let http = reqwest::Client::new();
    let client = |base: String, token: String| Client {
        http: http.clone(),
        base,
        token,
        key: None,
        clock: None,
    };
    let admin_at_b = client(b.base_url(), ADMIN_TOKEN.to_owned());

    // Alice's device does everything at A: its grant's peer is at A's
    // gateway, its event stream open at A.
    let alice = TestDevice::new(client(a.base_url(), issuer.token("alice")), "alice");
    assert_eq!(alice.enrol().await.status(), 201);
    assert!(alice.attest(healthy_report()).await.compliant);
    let wg = tunnel::PrivateKey::generate();
    let r = alice.request_grant("echo", &wg.public_key()).await;
    assert_eq!(r.status(), 201);
    let grant: api::Grant = r.json().await.unwrap();
    let tunnel = tunnel::Tunnel::start(tunnel_config(&grant, wg))
        .await
        .unwrap();
    assert!(echo_works(&tunnel, &grant.targets[0]).await);
    let mut events = EventStream::open(&alice.api, &alice.id()).await;

    // The administrator revokes the device at B.
    let r = admin_at_b
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                device_id: Some(alice.id()),
                reason: "laptop reported stolen".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status(), 200);
    let result: api::RevocationResult = r.json().await.unwrap();
    assert_eq!(result.grants_closed, vec![grant.id.clone()]);

    // A removes the peer, the tunnel carries nothing more, and the stream
    // at A hears why and ends.
    peer_leaves(&a, &grant.client_address).await;
    assert!(!echo_works(&tunnel, &grant.targets[0]).await);
    assert_eq!(
        events.next().await,
        Event::GrantRevoked {
            grant_id: grant.id.clone(),
            device_id: alice.id(),
            reason: "laptop reported stolen".into()
        }
    );
    match events.next().await {
        Event::DeviceComplianceChange { current_status, .. } => {
            assert_eq!(current_status, ComplianceStatus::NotCompliant)
        }
        other => panic!("unexpected {other:?}"),
    }
    events.closed_within(RELAYED_WITHIN).await;
    tunnel.shutdown().await;

    // Bob, also at A. A policy reloaded at B: A loads it too (its grant
    // requests are decided on it), and Bob's stream at A hears the change.
    let bob = TestDevice::new(client(a.base_url(), issuer.token("bob")), "bob");
    assert_eq!(bob.enrol().await.status(), 201);
    assert!(bob.attest(healthy_report()).await.compliant);
    let r = bob
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    assert_eq!(r.status(), 201);
    let bobs: api::Grant = r.json().await.unwrap();
    let mut events = EventStream::open(&bob.api, &bob.id()).await;
    std::fs::write(
        &policy,
        format!("{}\n# revised\n", posture::policy::DEFAULT_POLICY),
    )
    .unwrap();
    let r = admin_at_b
        .post(api::paths::ADMIN_POLICY_RELOAD, &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let reloaded: api::PolicyDocument = r.json().await.unwrap();
    peer_leaves(&a, &bobs.client_address).await;
    assert!(
        matches!(events.next().await, Event::GrantRevoked { grant_id, .. } if grant_id == bobs.id)
    );
    assert_eq!(
        events.next().await,
        Event::PolicyChanged {
            digest: reloaded.digest.clone()
        }
    );
    let at_a: api::PolicyDocument = bob.api.get(api::paths::POLICY).await.json().await.unwrap();
    assert_eq!(at_a.digest, reloaded.digest);

    a.shutdown().await;
    b.shutdown().await;
}

/// Rounds of grant requests at one replica racing a revocation at the
/// other, and requests per round.
const RACE_ROUNDS: usize = 12;
const RACE_REQUESTS: usize = 16;

// The enforcement lock orders a grant against a revocation within one
// process only. Across replicas the grant re-reads the facts once stored
// (`still_stands`): whichever replica wins each race, no grant opened at A
// outlives a revocation made at B, in the store or at A's gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_at_one_replica_never_outlive_a_revocation_at_another() {
    let cluster = support::postgres::Cluster::start();
    let url = cluster.create_database("race");
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = |dir: &Path| {
        config(&issuer.url, &db_path(dir), echo).with(|c| c.server.database_url = Some(url.clone()))
    };
    let a = start_broker(&replica(dir_a.path())).await;
    let b = start_broker(&replica(dir_b.path())).await;
    let http = reqwest::Client::new();
    let client = |base: String, token: String| Client {
        http: http.clone(),
        base,
        token,
        key: None,
        clock: None,
    };
    let mut opened_total = 0;
    for round in 0..RACE_ROUNDS {
        let user = format!("user-{round}");
        let device = Arc::new(TestDevice::new(
            client(a.base_url(), issuer.token(&user)),
            &user,
        ));
        assert_eq!(device.enrol().await.status(), 201);
        assert!(device.attest(healthy_report()).await.compliant);
        let admin_at_b = client(b.base_url(), ADMIN_TOKEN.to_owned());
        // Later each round: grants at A (a PostgreSQL round trip per read)
        // take longer than a revocation at B, so a fixed short delay could
        // let the revocation win every race.
        let revoke = revoke_user_after(
            &admin_at_b,
            &user,
            Duration::from_millis(2 + 5 * round as u64),
        );
        let opened = race_grants(
            &device,
            RACE_REQUESTS,
            revoke,
            &[ProblemType::SessionRevoked, ProblemType::WireguardKeyInUse],
        )
        .await;
        opened_total += opened.len();
        // Once A has acted on what B relayed, nothing is left at A.
        let started = Instant::now();
        while !a.gateway_status().unwrap().peers.is_empty() {
            assert!(
                started.elapsed() < RELAYED_WITHIN,
                "round {round}: {} peer(s) left at A's gateway",
                a.gateway_status().unwrap().peers.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = unix_now() + 2;
        let later = client(
            a.base_url(),
            issuer.token_with(&user, json!({"iat": after, "auth_time": after})),
        )
        .with_key(&device.key);
        for id in &opened {
            let r = later.delete(&format!("{}/{id}", api::paths::GRANTS)).await;
            assert_eq!(r.status(), 404, "round {round}: grant {id} is still open");
        }
    }
    assert!(
        opened_total > 0,
        "no grant request ever beat the revocation"
    );
    a.shutdown().await;
    b.shutdown().await;
}
