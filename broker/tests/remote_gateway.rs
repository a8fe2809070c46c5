//! A separate gateway (`sallyport-gateway`, the real binary) serving an app
//! for the broker: the grant names it, its tunnels carry traffic, a
//! revocation at the broker ends them, and it resynchronises its full peer
//! set when it restarts (grants opened and closed while it was down
//! included) and when its broker comes back after it had failed closed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::api;
use broker::server::remote_gateways::GatewayEntry;
use common::*;

/// The gateway's sync credential.
const TOKEN: &str = "edge-gateway-credential-for-tests";
/// How long a tunnel may take to carry traffic once its peer is due at
/// the gateway (a first handshake the gateway missed is retried after 5 s).
const TUNNEL_UP_WITHIN: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `sallyport-gateway` process, killed on drop (its log shown when the
/// test is failing).
struct GatewayProcess {
    child: Child,
    log: PathBuf,
}

impl GatewayProcess {
    fn start(config: &Path, log: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_sallyport-gateway"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            log: log.to_owned(),
        }
    }

    /// Kills it at once (no goodbye to anyone).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- sallyport-gateway log ----\n{log}");
        }
    }
}

/// The gateway's files in `dir`: key (made by `keygen`, whose printed
/// public key is returned), credential, configuration.
fn gateway_files(dir: &Path, listen: SocketAddr, broker: &str, grace: u64) -> (PathBuf, String) {
    let key = dir.join("gateway.key");
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport-gateway"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // keygen leaves an existing key alone.
    let again = Command::new(env!("CARGO_BIN_EXE_sallyport-gateway"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\nprivate_key_file = {key:?}\nbrokers = [\"{broker}\"]\ntoken_file = {:?}\ndisconnected_grace_seconds = {grace}\n",
            dir.join("token")
        ),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_sallyport-gateway"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    (config, public)
}

/// The broker's configuration with app `echo` served by gateway `edge`.
fn with_edge(
    config: support::broker::BrokerConfig,
    endpoint: SocketAddr,
    public_key: &str,
) -> support::broker::BrokerConfig {
    let digest = ring::digest::digest(&ring::digest::SHA256, TOKEN.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let public_key = public_key.to_owned();
    config.with(move |c| {
        c.gateways.push(GatewayEntry {
            id: "edge".into(),
            endpoint: endpoint.to_string(),
            public_key,
            token_sha256: hex,
        });
        c.apps[0].gateways = vec!["edge".into()];
    })
}

/// The `gateway-sync` audit rows so far (one per sync stream opened).
async fn syncs(admin: &Client) -> Vec<api::AuditEntry> {
    let rows: Vec<api::AuditEntry> = admin
        .get(&format!("{}?limit=1000", api::paths::ADMIN_AUDIT))
        .await
        .json()
        .await
        .unwrap();
    rows.into_iter()
        .filter(|r| r.action == "gateway-sync" && r.outcome == "allow")
        .collect()
}

/// Waits for the `n`th sync stream; returns its audit text.
async fn nth_sync(admin: &Client, n: usize) -> String {
    let started = Instant::now();
    loop {
        let rows = syncs(admin).await;
        if rows.len() >= n {
            return rows[n - 1].reason.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not connect (sync #{n})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether an echo through `tunnel` answers within 2 s.
async fn echo_once(tunnel: &tunnel::TunnelHandle, grant: &api::Grant) -> bool {
    let forward = tunnel
        .forward_addr(&grant.targets[0].parse().unwrap())
        .unwrap();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), echo_through(forward, b"ping")).await,
        Ok(Ok(ref v)) if v == b"ping"
    )
}

/// Waits until echo through `tunnel` works.
async fn carries(tunnel: &tunnel::TunnelHandle, grant: &api::Grant) {
    let started = Instant::now();
    while !echo_once(tunnel, grant).await {
        assert!(
            started.elapsed() < TUNNEL_UP_WITHIN,
            "grant {}: no traffic through the separate gateway",
            grant.id
        );
    }
}

/// Waits until echo through `tunnel` stops working.
async fn stops(tunnel: &tunnel::TunnelHandle, grant: &api::Grant) {
    let started = Instant::now();
    while echo_once(tunnel, grant).await {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "grant {}: traffic still passes",
            grant.id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn grant(device: &TestDevice) -> (api::Grant, tunnel::PrivateKey) {
    let wg = tunnel::PrivateKey::generate();
    let r = device.request_grant("echo", &wg.public_key()).await;
    assert_eq!(r.status(), 201);
    (r.json().await.unwrap(), wg)
}

async fn revoke_grant(admin: &Client, id: &str) {
    let r = admin
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                grant_id: Some(id.to_owned()),
                reason: "test".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_gateway_serves_its_app_and_resynchronises_after_a_restart() {
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let (dir, gw_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let api_port = free_tcp_port();
    let broker_url = format!("http://127.0.0.1:{api_port}");
    let gw_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (gw_config, gw_public) = gateway_files(gw_dir.path(), gw_addr, &broker_url, 30);
    let broker = start_broker(&with_edge(
        config(&issuer.url, &db_path(dir.path()), echo)
            .with(move |c| c.server.listen = format!("127.0.0.1:{api_port}").parse().unwrap()),
        gw_addr,
        &gw_public,
    ))
    .await;
    let api_for = |token: String| Client {
        http: reqwest::Client::new(),
        base: broker.base_url(),
        token,
        key: None,
        clock: None,
    };
    let admin = api_for(ADMIN_TOKEN.to_owned());
    let log = gw_dir.path().join("gateway.log");
    let gateway = GatewayProcess::start(&gw_config, &log);
    assert!(nth_sync(&admin, 1).await.contains("0 peer(s)"));

    let device = TestDevice::new(api_for(issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    assert!(device.attest(healthy_report()).await.compliant);

    // The grant names the separate gateway, and its tunnel goes through it.
    let (g1, wg1) = grant(&device).await;
    assert_eq!(g1.gateway.id.as_deref(), Some("edge"));
    assert_eq!(g1.gateway.endpoint, gw_addr.to_string());
    assert_eq!(g1.gateway.public_key, gw_public);
    assert!(
        broker.gateway_status().unwrap().peers.is_empty(),
        "the embedded gateway holds no peer of a separate gateway's app"
    );
    let t1 = tunnel::Tunnel::start(tunnel_config(&g1, wg1))
        .await
        .unwrap();
    carries(&t1, &g1).await;
    let (g2, wg2) = grant(&device).await;
    let t2 = tunnel::Tunnel::start(tunnel_config(&g2, wg2))
        .await
        .unwrap();
    carries(&t2, &g2).await;

    // A revocation at the broker ends the tunnel at the separate gateway.
    revoke_grant(&admin, &g2.id).await;
    stops(&t2, &g2).await;
    t2.shutdown().await;

    // The gateway dies. Meanwhile one grant opens and one closes.
    gateway.kill();
    let (g3, wg3) = grant(&device).await;
    let (g4, wg4) = grant(&device).await;
    revoke_grant(&admin, &g4.id).await;

    // Back: the full set is g1 and g3, and only they pass traffic.
    let gateway = GatewayProcess::start(&gw_config, &log);
    let resync = nth_sync(&admin, 2).await;
    assert!(resync.contains("2 peer(s)"), "{resync}");
    carries(&t1, &g1).await;
    let t3 = tunnel::Tunnel::start(tunnel_config(&g3, wg3))
        .await
        .unwrap();
    carries(&t3, &g3).await;
    let t4 = tunnel::Tunnel::start(tunnel_config(&g4, wg4))
        .await
        .unwrap();
    assert!(
        !echo_once(&t4, &g4).await,
        "a grant closed while the gateway was down"
    );

    // A wrong credential is refused, and audited.
    let r = reqwest::Client::new()
        .get(format!("{broker_url}{}", api::paths::GATEWAY_SYNC))
        .bearer_auth("not-the-credential")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    drop(gateway);
    for t in [t1, t3, t4] {
        t.shutdown().await;
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cut_off_from_its_broker_fails_closed_and_recovers() {
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let (dir, gw_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let api_port = free_tcp_port();
    let broker_url = format!("http://127.0.0.1:{api_port}");
    let gw_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Two seconds' grace: the gateway drops its peers soon after the
    // broker goes.
    let (gw_config, gw_public) = gateway_files(gw_dir.path(), gw_addr, &broker_url, 2);
    let broker_config = with_edge(
        config(&issuer.url, &db_path(dir.path()), echo)
            .with(move |c| c.server.listen = format!("127.0.0.1:{api_port}").parse().unwrap()),
        gw_addr,
        &gw_public,
    );
    let broker = start_broker(&broker_config).await;
    let api_for = |token: String| Client {
        http: reqwest::Client::new(),
        base: broker_url.clone(),
        token,
        key: None,
        clock: None,
    };
    let admin = api_for(ADMIN_TOKEN.to_owned());
    let gateway = GatewayProcess::start(&gw_config, &gw_dir.path().join("gateway.log"));
    nth_sync(&admin, 1).await;
    let device = TestDevice::new(api_for(issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    assert!(device.attest(healthy_report()).await.compliant);
    let (g1, wg1) = grant(&device).await;
    let t1 = tunnel::Tunnel::start(tunnel_config(&g1, wg1))
        .await
        .unwrap();
    carries(&t1, &g1).await;

    // The broker goes: after the grace period the gateway drops the peer
    // (it could not hear a revocation).
    broker.shutdown().await;
    stops(&t1, &g1).await;

    // The broker comes back (same state, same address): the gateway
    // reconnects, takes the full set, and the tunnel carries again.
    let broker = start_broker(&broker_config).await;
    nth_sync(&admin, 2).await;
    carries(&t1, &g1).await;
    t1.shutdown().await;
    drop(gateway);
    broker.shutdown().await;
}

// Replicas: the gateway follows replica A; a grant made at replica B
// reaches it through the relay, and so does B's revocation of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_made_at_another_replica_reaches_the_gateway() {
    let cluster = support::postgres::Cluster::start();
    let url = cluster.create_database("edge");
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let (dir_a, dir_b, gw_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let api_port = free_tcp_port();
    let gw_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (gw_config, gw_public) = gateway_files(
        gw_dir.path(),
        gw_addr,
        &format!("http://127.0.0.1:{api_port}"),
        30,
    );
    let replica = |dir: &Path, listen: Option<u16>| {
        let url = url.clone();
        with_edge(
            config(&issuer.url, &db_path(dir), echo).with(move |c| {
                c.server.database_url = Some(url);
                if let Some(port) = listen {
                    c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
                }
            }),
            gw_addr,
            &gw_public,
        )
    };
    let a = start_broker(&replica(dir_a.path(), Some(api_port))).await;
    let b = start_broker(&replica(dir_b.path(), None)).await;
    let at = |base: String, token: String| Client {
        http: reqwest::Client::new(),
        base,
        token,
        key: None,
        clock: None,
    };
    let _gateway = GatewayProcess::start(&gw_config, &gw_dir.path().join("gateway.log"));
    nth_sync(&at(a.base_url(), ADMIN_TOKEN.to_owned()), 1).await;

    let device = TestDevice::new(at(b.base_url(), issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    assert!(device.attest(healthy_report()).await.compliant);
    let (g1, wg1) = grant(&device).await;
    assert_eq!(g1.gateway.id.as_deref(), Some("edge"));
    let t1 = tunnel::Tunnel::start(tunnel_config(&g1, wg1))
        .await
        .unwrap();
    carries(&t1, &g1).await;
    revoke_grant(&at(b.base_url(), ADMIN_TOKEN.to_owned()), &g1.id).await;
    stops(&t1, &g1).await;
    t1.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}
