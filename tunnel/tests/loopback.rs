//! This crate's client against this crate's gateway on loopback: several
//! applications at once, each reaching only its own targets.

// Setup helpers below panic on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tunnel::{
    CloseReason, Gateway, GatewayConfig, GatewayHandle, HandshakeState, PeerGrant, PrivateKey,
    StackOptions, Target, Tunnel, TunnelConfig, TunnelHandle,
};

async fn gateway() -> GatewayHandle {
    Gateway::start(GatewayConfig {
        private_key: PrivateKey::generate(),
        listen: "127.0.0.1:0".parse().unwrap(),
        stack: StackOptions::default(),
    })
    .await
    .unwrap()
}

fn client_config(gw: &GatewayHandle, n: u8, targets: Vec<Target>, ttl: Duration) -> TunnelConfig {
    let addr: IpAddr = format!("100.64.0.{n}").parse().unwrap();
    let mut cfg = TunnelConfig::new(
        gw.local_addr(),
        gw.public_key(),
        addr,
        targets,
        SystemTime::now() + ttl,
    );
    cfg.local_access = local_access();
    cfg
}

fn grant_for(cfg: &TunnelConfig, targets: Vec<Target>, ttl: Duration) -> PeerGrant {
    PeerGrant {
        public_key: cfg.private_key.public_key(),
        client_address: cfg.client_address,
        targets,
        expires_at: SystemTime::now() + ttl,
    }
}

/// Start a client whose grant equals its config.
async fn app(gw: &GatewayHandle, n: u8, targets: Vec<Target>) -> TunnelHandle {
    let ttl = Duration::from_secs(600);
    let cfg = client_config(gw, n, targets.clone(), ttl);
    gw.add_peer(grant_for(&cfg, targets, ttl)).await.unwrap();
    Tunnel::start(cfg).await.unwrap()
}

/// Read until EOF or error; true if the connection ended (reset or closed)
/// within the timeout.
async fn ends_within(mut s: TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_applications_each_reach_only_their_own_targets() {
    let gw = gateway().await;
    let echo: Vec<SocketAddr> = [
        tcp_echo("127.0.0.1:0").await,
        tcp_echo("127.0.0.1:0").await,
        tcp_echo("127.0.0.1:0").await,
    ]
    .to_vec();
    let udp = udp_echo("127.0.0.1:0").await;
    let targets: Vec<Target> = echo.iter().map(|a| Target::tcp(*a)).collect();
    let a = app(&gw, 2, vec![targets[0], Target::udp(udp)]).await;
    let b = app(&gw, 3, vec![targets[1]]).await;
    let c = app(&gw, 4, vec![targets[2]]).await;

    // Each application's forward works, concurrently, with enough data to
    // need many windows.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let (ra, rb, rc) = tokio::join!(
        echo_via(a.forward_addr(&targets[0]).unwrap(), &payload),
        echo_via(b.forward_addr(&targets[1]).unwrap(), &payload),
        echo_via(c.forward_addr(&targets[2]).unwrap(), &payload),
    );
    assert!(
        ra == payload && rb == payload && rc == payload,
        "echo corrupted"
    );

    // UDP forward.
    let reply = udp_roundtrip(a.forward_addr(&Target::udp(udp)).unwrap(), b"ping over udp").await;
    assert_eq!(reply, b"ping over udp");

    // SOCKS of A: its own target works, B's is refused with "not allowed by
    // ruleset", a UDP-only target too.
    let (code, s) = socks_connect(a.socks_addr().unwrap(), echo[0]).await;
    assert_eq!(code, 0x00);
    assert_eq!(echo_roundtrip(s, b"via socks").await, b"via socks");
    let (code, _) = socks_connect(a.socks_addr().unwrap(), echo[1]).await;
    assert_eq!(code, 0x02, "A reached B's target through SOCKS");
    let (code, _) = socks_connect(b.socks_addr().unwrap(), echo[0]).await;
    assert_eq!(code, 0x02, "B reached A's target through SOCKS");
    let (code, _) = socks_connect(a.socks_addr().unwrap(), udp).await;
    assert_eq!(code, 0x02);

    let st = a.status();
    assert!(
        matches!(st.handshake, HandshakeState::Established { .. }),
        "{st:?}"
    );
    assert!(st.last_handshake.is_some());
    assert!(
        st.bytes_out >= payload.len() as u64 && st.bytes_in >= payload.len() as u64,
        "{st:?}"
    );
    let gs = gw.status();
    assert_eq!(gs.peers.len(), 3);
    assert_eq!(gs.dropped.not_granted, 0);
    assert_eq!(gs.dropped.bad_source, 0);

    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_enforces_the_grant_even_if_the_client_asks_for_more() {
    let gw = gateway().await;
    let mine = Target::tcp(tcp_echo("127.0.0.1:0").await);
    let theirs = Target::tcp(tcp_echo("127.0.0.1:0").await);
    let ttl = Duration::from_secs(600);
    // A tampered client: its local config lists a target its grant lacks.
    let cfg = client_config(&gw, 2, vec![mine, theirs], ttl);
    gw.add_peer(grant_for(&cfg, vec![mine], ttl)).await.unwrap();
    let t = Tunnel::start(cfg).await.unwrap();
    assert_eq!(echo_via(t.forward_addr(&mine).unwrap(), b"ok").await, b"ok");

    let mut s = TcpStream::connect(t.forward_addr(&theirs).unwrap())
        .await
        .unwrap();
    // The gateway drops the SYN; nothing ever comes back.
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_millis(1500), s.read(&mut buf)).await;
    assert!(r.is_err(), "got an answer from an ungranted target: {r:?}");
    eventually("the gateway to count the ungranted packets", || {
        gw.status().dropped.not_granted >= 1
    })
    .await;
    t.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_resets_open_connections_and_frees_listeners() {
    let gw = gateway().await;
    let target = Target::tcp(tcp_echo("127.0.0.1:0").await);
    let t = app(&gw, 2, vec![target]).await;
    let fwd = t.forward_addr(&target).unwrap();
    let socks = t.socks_addr().unwrap();
    let s = open_echo(fwd).await;
    eventually("the connection to show in the status", || {
        t.status().open_connections == 1
    })
    .await;
    t.shutdown().await;
    assert!(
        ends_within(s, Duration::from_secs(2)).await,
        "connection survived shutdown"
    );
    // The listeners are gone.
    assert!(
        TcpStream::connect(fwd).await.is_err(),
        "forward still listening"
    );
    assert!(
        TcpStream::connect(socks).await.is_err(),
        "SOCKS still listening"
    );
    // And the gateway saw the reset: no connection is left open for the peer.
    eventually("the gateway to free the connection", || {
        gw.status().peers.iter().all(|p| p.open_connections == 0)
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_expiry_closes_the_tunnel() {
    let gw = gateway().await;
    let target = Target::tcp(tcp_echo("127.0.0.1:0").await);
    let cfg = client_config(&gw, 2, vec![target], Duration::from_secs(2));
    gw.add_peer(grant_for(&cfg, vec![target], Duration::from_secs(600)))
        .await
        .unwrap();
    let mut t = Tunnel::start(cfg).await.unwrap();
    let s = open_echo(t.forward_addr(&target).unwrap()).await;
    assert!(
        ends_within(s, Duration::from_secs(5)).await,
        "connection survived expiry"
    );
    assert_eq!(t.closed().await, Some(CloseReason::Expired));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_removal_and_expiry_reset_the_peer() {
    let gw = gateway().await;
    let target = Target::tcp(tcp_echo("127.0.0.1:0").await);
    let ttl = Duration::from_secs(600);

    // Removal.
    let t = app(&gw, 2, vec![target]).await;
    let fwd = t.forward_addr(&target).unwrap();
    let s = TcpStream::connect(fwd).await.unwrap();
    let (mut r, mut w) = s.into_split();
    tokio::io::AsyncWriteExt::write_all(&mut w, b"abc")
        .await
        .unwrap();
    let mut b3 = [0u8; 3];
    tokio::time::timeout(IO_TIMEOUT, r.read_exact(&mut b3))
        .await
        .unwrap()
        .unwrap();
    assert!(gw.remove_peer(t.status().public_key).await.unwrap());
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 16];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "connection survived removal of the peer");
    // New connections no longer get through.
    let mut s2 = TcpStream::connect(fwd).await.unwrap();
    let mut buf = [0u8; 1];
    let r2 = tokio::time::timeout(Duration::from_millis(800), s2.read(&mut buf)).await;
    assert!(!matches!(r2, Ok(Ok(n)) if n > 0), "data after removal");
    t.shutdown().await;

    // Expiry at the gateway.
    let cfg = client_config(&gw, 3, vec![target], ttl);
    gw.add_peer(grant_for(&cfg, vec![target], Duration::from_secs(2)))
        .await
        .unwrap();
    let t = Tunnel::start(cfg).await.unwrap();
    assert_eq!(echo_via(t.forward_addr(&target).unwrap(), b"y").await, b"y");
    eventually("the gateway to drop the expired peer", || {
        gw.status().peers.is_empty()
    })
    .await;
    t.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_gateway_shows_as_handshake_timeout() {
    // A UDP socket that never answers stands in for an unreachable gateway.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target: Target = "127.0.0.1:9/tcp".parse().unwrap();
    let mut cfg = TunnelConfig::new(
        silent.local_addr().unwrap(),
        PrivateKey::generate().public_key(),
        "100.64.0.2".parse().unwrap(),
        vec![target],
        SystemTime::now() + Duration::from_secs(60),
    );
    cfg.handshake_timeout = Duration::from_millis(800);
    let t = Tunnel::start(cfg).await.unwrap();
    assert_eq!(t.status().handshake, HandshakeState::Pending);
    eventually("a handshake timeout", || {
        matches!(t.status().handshake, HandshakeState::TimedOut { .. })
    })
    .await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_peer_update_revokes_a_target() {
    let gw = gateway().await;
    let one = Target::tcp(tcp_echo("127.0.0.1:0").await);
    let two = Target::tcp(tcp_echo("127.0.0.1:0").await);
    let ttl = Duration::from_secs(600);
    let cfg = client_config(&gw, 2, vec![one, two], ttl);
    let grant = grant_for(&cfg, vec![one, two], ttl);
    gw.add_peer(grant.clone()).await.unwrap();
    let t = Tunnel::start(cfg).await.unwrap();
    assert_eq!(echo_via(t.forward_addr(&two).unwrap(), b"2").await, b"2");
    let s = open_echo(t.forward_addr(&two).unwrap()).await;
    gw.update_peer(PeerGrant {
        targets: vec![one],
        ..grant
    })
    .await
    .unwrap();
    assert!(
        ends_within(s, Duration::from_secs(3)).await,
        "revoked connection survived"
    );
    assert_eq!(echo_via(t.forward_addr(&one).unwrap(), b"1").await, b"1");
    t.shutdown().await;
    gw.shutdown().await;
}

/// An echo server that counts the connections it accepted, to show that a
/// refused SOCKS client never reached it.
async fn counting_echo() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = l.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (bound, count)
}

/// A SOCKS5 greeting offering `methods`; returns the stream and the
/// server's method choice.
async fn socks_greet(socks: SocketAddr, methods: &[u8]) -> (TcpStream, u8) {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(socks).await.unwrap();
    let mut hello = vec![5, methods.len() as u8];
    hello.extend_from_slice(methods);
    s.write_all(&hello).await.unwrap();
    let mut m = [0u8; 2];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut m))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m[0], 5);
    (s, m[1])
}

/// RFC 1929 username/password on a stream that chose method 0x02; returns
/// the status byte (0 = accepted).
async fn socks_login(s: &mut TcpStream, user: &str, pass: &str) -> u8 {
    use tokio::io::AsyncWriteExt;
    let mut msg = vec![1, user.len() as u8];
    msg.extend_from_slice(user.as_bytes());
    msg.push(pass.len() as u8);
    msg.extend_from_slice(pass.as_bytes());
    s.write_all(&msg).await.unwrap();
    let mut r = [0u8; 2];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r[0], 1);
    r[1]
}

/// A CONNECT request for `target` after authentication; returns the reply
/// code and the stream.
async fn socks_request(mut s: TcpStream, target: SocketAddr) -> (u8, TcpStream) {
    use tokio::io::AsyncWriteExt;
    let SocketAddr::V4(v4) = target else {
        panic!("IPv4 target expected")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 10];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    (reply[1], s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_with_a_credential_admits_only_clients_that_present_it() {
    use std::sync::atomic::Ordering;
    let gw = gateway().await;
    let (echo, reached) = counting_echo().await;
    let targets = vec![Target::tcp(echo)];
    let ttl = Duration::from_secs(600);
    let mut cfg = client_config(&gw, 9, targets.clone(), ttl);
    cfg.socks_auth = Some(tunnel::SocksCredential {
        username: "app-9".into(),
        password: tunnel::SocksPassword::new("s3cret-per-tunnel"),
    });
    gw.add_peer(grant_for(&cfg, targets, ttl)).await.unwrap();
    let t = Tunnel::start(cfg).await.unwrap();
    let socks = t.socks_addr().unwrap();

    // A client that offers only "no authentication" gets 0xFF and is closed.
    let (s, method) = socks_greet(socks, &[0]).await;
    assert_eq!(
        method, 0xff,
        "no-auth accepted although a credential is set"
    );
    assert!(ends_within(s, Duration::from_secs(5)).await);

    // Offering both does not let a client skip the password.
    let (mut s, method) = socks_greet(socks, &[0, 2]).await;
    assert_eq!(method, 2);
    // Wrong password: a non-zero status, then the connection closes.
    assert_ne!(socks_login(&mut s, "app-9", "wrong").await, 0);
    assert!(ends_within(s, Duration::from_secs(5)).await);
    // Wrong username, right password: refused too.
    let (mut s, _) = socks_greet(socks, &[2]).await;
    assert_ne!(socks_login(&mut s, "app-8", "s3cret-per-tunnel").await, 0);
    assert!(ends_within(s, Duration::from_secs(5)).await);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "a refused client reached the target"
    );

    // The right credential reaches the target.
    let (mut s, method) = socks_greet(socks, &[2]).await;
    assert_eq!(method, 2);
    assert_eq!(socks_login(&mut s, "app-9", "s3cret-per-tunnel").await, 0);
    let (code, s) = socks_request(s, echo).await;
    assert_eq!(code, 0x00);
    assert_eq!(echo_roundtrip(s, b"authenticated").await, b"authenticated");
    assert_eq!(reached.load(Ordering::SeqCst), 1);

    t.shutdown().await;
    gw.shutdown().await;
}

/// The gateway's per-peer limits refuse what is beyond them and count each
/// refusal in that peer's status, which is what the broker audits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tunnel_limits_refuse_and_are_counted_per_peer() {
    let gw = Gateway::start(GatewayConfig {
        private_key: PrivateKey::generate(),
        listen: "127.0.0.1:0".parse().unwrap(),
        stack: StackOptions {
            // The UDP target's in-tunnel socket takes one place, so one TCP
            // connection fits.
            max_connections: 2,
            max_udp_flows: 1,
            ..StackOptions::default()
        },
    })
    .await
    .unwrap();
    let tcp = Target::tcp(tcp_echo("127.0.0.1:0").await);
    let udp = Target::udp(udp_echo("127.0.0.1:0").await);
    let a = app(&gw, 2, vec![tcp, udp]).await;
    let refused = |gw: &GatewayHandle| gw.status().peers[0].refused;

    let _held = open_echo(a.forward_addr(&tcp).unwrap()).await;
    assert_eq!(
        udp_roundtrip(a.forward_addr(&udp).unwrap(), b"one").await,
        b"one"
    );
    assert_eq!(refused(&gw), tunnel::LimitRefusals::default());

    // A second connection: accepted locally, its SYN refused at the gateway.
    let mut second = TcpStream::connect(a.forward_addr(&tcp).unwrap())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut second, b"x")
        .await
        .unwrap();
    // A second UDP flow (another local source): dropped at the gateway.
    let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    other
        .send_to(b"two", a.forward_addr(&udp).unwrap())
        .await
        .unwrap();
    eventually("both refusals counted on the peer", || {
        let r = refused(&gw);
        r.connections >= 1 && r.udp_flows >= 1
    })
    .await;
    let mut buf = [0u8; 8];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.recv_from(&mut buf))
            .await
            .is_err(),
        "the refused flow got a reply"
    );
    assert_eq!(gw.status().dropped.over_limit, {
        let r = refused(&gw);
        r.connections + r.udp_flows
    });
}

/// A gateway with two workers (two sockets on one port, `SO_REUSEPORT`):
/// peers of both workers reach their own targets and only those, whichever
/// worker the kernel hands their datagrams to, the status lists them all,
/// and their data messages arrive at their own worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_serve_every_peer_with_its_own_grant() {
    use tunnel::core::Shard;
    let gw = Gateway::start_with_workers(
        GatewayConfig {
            private_key: PrivateKey::generate(),
            listen: "127.0.0.1:0".parse().unwrap(),
            stack: StackOptions::default(),
        },
        2,
    )
    .await
    .unwrap();
    let ttl = Duration::from_secs(600);
    let forbidden = Target::tcp(tcp_echo("127.0.0.1:0").await);
    // Three peers of each worker, each granted its own echo target; each
    // also asks for `forbidden`, which no grant has.
    let mut apps = Vec::new();
    let mut per_shard = [0usize; 2];
    let mut n = 2u8;
    while per_shard != [3, 3] {
        let own = Target::tcp(tcp_echo("127.0.0.1:0").await);
        let cfg = client_config(&gw, n, vec![own, forbidden], ttl);
        let shard = Shard::of_key(&cfg.private_key.public_key(), 2) as usize;
        if per_shard[shard] == 3 {
            continue;
        }
        per_shard[shard] += 1;
        n += 1;
        gw.add_peer(grant_for(&cfg, vec![own], ttl)).await.unwrap();
        apps.push((Tunnel::start(cfg).await.unwrap(), own));
    }
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 13) as u8).collect();
    for (t, own) in &apps {
        let got = echo_via(t.forward_addr(own).unwrap(), &payload).await;
        assert!(got == payload, "echo corrupted");
    }
    // The owners drop the SYNs to `forbidden`: nothing ever comes back.
    let mut tries = Vec::new();
    for (t, _) in &apps {
        let s = TcpStream::connect(t.forward_addr(&forbidden).unwrap())
            .await
            .unwrap();
        tries.push(s);
    }
    eventually("every owner to count its peer's ungranted SYN", || {
        gw.status().dropped.not_granted >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for s in &tries {
        let mut buf = [0u8; 8];
        let r = s.try_read(&mut buf);
        assert!(
            r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "got an answer from an ungranted target: {r:?}"
        );
    }
    let gs = gw.status();
    assert_eq!(gs.peers.len(), 6);
    assert!(gs.dropped.not_granted >= 6, "{:?}", gs.dropped);
    for p in &gs.peers {
        assert!(p.bytes_in >= payload.len() as u64, "{p:?}");
    }
    // Each of the six sent some 150 data messages, and the kernel hashes
    // about half of all datagrams to the wrong socket by 4-tuple. The BPF
    // steering (`driver::udp`) hands data messages straight to their
    // owner, so only handshake initiations (one or two per peer) are
    // passed between the workers.
    #[cfg(target_os = "linux")]
    assert!(
        gs.handed_over <= 12,
        "{} datagrams went to the wrong worker",
        gs.handed_over
    );
    for (t, _) in apps {
        t.shutdown().await;
    }
    gw.shutdown().await;
}

/// A burst of datagrams on a new UDP flow reaches the target whole: every
/// datagram, in order, with its own boundaries. The gateway sends a flow's
/// burst with one system call (segmentation offload), and a new flow's
/// socket used to refuse its first datagrams until tokio's reactor had seen
/// it writable, which lost the start of every burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_new_udp_flow_arrives_whole() {
    let gw = gateway().await;
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = Target::udp(sink.local_addr().unwrap());
    let t = app(&gw, 2, vec![target]).await;
    eventually("the handshake", || {
        matches!(t.status().handshake, HandshakeState::Established { .. })
    })
    .await;
    // 30 of one size, a shorter one (which ends a batch), then 9 more.
    let sizes: Vec<usize> = (0..40)
        .map(|i| match i {
            30 => 200,
            _ => 1000,
        })
        .collect();
    let app_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let forward = t.forward_addr(&target).unwrap();
    for (i, len) in sizes.iter().enumerate() {
        let datagram = vec![u8::try_from(i).unwrap(); *len];
        app_socket.send_to(&datagram, forward).await.unwrap();
    }
    let mut buf = vec![0u8; 65536];
    for (i, len) in sizes.iter().enumerate() {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sink.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("datagram {i} of {} never arrived", sizes.len()))
            .unwrap();
        assert_eq!(n, *len, "datagram {i}: wrong size");
        assert!(
            buf[..n].iter().all(|b| usize::from(*b) == i),
            "datagram {i}: wrong bytes (out of order or mixed)"
        );
    }
    assert_eq!(gw.status().dropped.queue_full, 0);
    t.shutdown().await;
    gw.shutdown().await;
}
