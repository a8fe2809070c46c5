//! TCP echo targets behind the gateway, and the probe that says whether
//! bytes flow through a tunnel's local address.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What [`echo_through`] sends.
const PROBE: &[u8] = b"through the sally port";

/// A TCP echo server on loopback, running on the current tokio runtime.
pub async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `payload` through `addr` on a fresh connection and reads back as
/// many bytes (3 s at most).
pub async fn round_trip(addr: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(payload).await.map_err(|e| e.to_string())?;
        let mut got = vec![0u8; payload.len()];
        s.read_exact(&mut got).await.map_err(|e| e.to_string())?;
        Ok(got)
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// One round trip through `addr`; `Err` when traffic does not flow.
pub async fn echo_through(addr: &str) -> Result<(), String> {
    if round_trip(addr, PROBE).await? == PROBE {
        Ok(())
    } else {
        Err("corrupted echo".to_owned())
    }
}
