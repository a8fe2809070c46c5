//! Helpers shared by the integration tests: echo servers and clients.
//! Panicking on a setup failure is the point here, hence the allows.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Upper bound for one exchange. Generous on purpose: across wireguard-go in
/// a netns a lost SYN is retransmitted after 1, 3, 7, 15 s (smoltcp's RTO
/// backoff), and a loaded 2-core CI machine does lose the odd packet there.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Who may use the tunnels' local listeners in these tests. On Linux the
/// default (`SameUser`), so every test also exercises the owner check with
/// this process as the owner. On Windows the tests run under Wine, whose
/// `GetExtendedTcpTable` lists sockets without their owning PID, so the
/// owner is unknown and `SameUser` refuses (fail closed); the Windows check
/// is covered by `local_owner::windows`'s own tests instead.
pub fn local_access() -> tunnel::LocalAccess {
    if cfg!(windows) {
        tunnel::LocalAccess::Anyone
    } else {
        tunnel::LocalAccess::SameUser
    }
}

/// A TCP echo server on `addr`; returns the bound address.
pub async fn tcp_echo(addr: &str) -> SocketAddr {
    let l = TcpListener::bind(addr).await.unwrap();
    let bound = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    bound
}

/// A UDP echo server on `addr`.
pub async fn udp_echo(addr: &str) -> SocketAddr {
    let s = UdpSocket::bind(addr).await.unwrap();
    let bound = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
    bound
}

/// Write `payload` on a connected stream and read the same number of bytes
/// back (concurrently, so large payloads do not deadlock on full buffers).
pub async fn echo_roundtrip(stream: TcpStream, payload: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = stream.into_split();
    let to_send = payload.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        w
    });
    let mut got = vec![0u8; payload.len()];
    tokio::time::timeout(IO_TIMEOUT, r.read_exact(&mut got))
        .await
        .expect("echo timed out")
        .expect("echo read failed");
    let _w = writer.await.unwrap();
    got
}

/// Echo through a local TCP forward.
pub async fn echo_via(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    echo_roundtrip(stream, payload).await
}

/// One UDP request/response through a local UDP forward.
pub async fn udp_roundtrip(forward: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 65536];
    // UDP may be lost while the handshake completes: retry a few times.
    for _ in 0..20 {
        s.send_to(payload, forward).await.unwrap();
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(500), s.recv_from(&mut buf)).await
        {
            return buf[..n].to_vec();
        }
    }
    panic!("no UDP reply through {forward}");
}

/// SOCKS5 CONNECT to `target`; returns the reply code and, on success, the
/// stream ready for data.
pub async fn socks_connect(socks: SocketAddr, target: SocketAddr) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(socks).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0], "no-auth method not chosen");
    let mut req = vec![5, 1, 0];
    match target {
        SocketAddr::V4(v4) => {
            req.push(1);
            req.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            req.push(4);
            req.extend_from_slice(&v6.ip().octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut head = [0u8; 4];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut head))
        .await
        .expect("SOCKS reply timed out")
        .unwrap();
    let rest = if head[3] == 4 { 16 + 2 } else { 4 + 2 };
    let mut tail = vec![0u8; rest];
    s.read_exact(&mut tail).await.unwrap();
    (head[1], s)
}

/// Wait until `cond` holds, polling; panics with `what` after 10 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connect through a forward and prove the path works end to end (one byte
/// echoed), keeping the connection open.
pub async fn open_echo(addr: SocketAddr) -> TcpStream {
    let mut s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut b))
        .await
        .expect("echo timed out")
        .expect("echo failed");
    assert_eq!(&b, b"x");
    s
}
