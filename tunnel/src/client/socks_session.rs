//! The I/O half of the client's SOCKS5 listener; parsing and the grant
//! decision are pure and live in `crate::socks`.
//!
//! A session has two parts on two schedules. Negotiation (greeting, method,
//! request) runs in a short-lived task of its own, so a slow or silent
//! client cannot stall the tunnel. The final reply waits for the in-tunnel
//! connect, so the driver sends it from its loop through the held bridge.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use smoltcp::socket::tcp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{SocksCredential, Target};
use crate::driver::bridge::{Connect, Step, TcpBridge};
use crate::local_owner::{self, LocalAccess};
use crate::socks::{self, Reply};

/// How long a SOCKS client has to send its request.
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Negotiate with a freshly accepted SOCKS client in its own task, once
/// `access` admits the process that connected (a refused one is reset
/// before a byte of it is read) and, with a `credential`, the client
/// authenticated with it. An allowed request comes back on `granted` for
/// the driver to connect.
pub(super) fn spawn(
    stream: TcpStream,
    access: LocalAccess,
    credential: Option<Arc<SocksCredential>>,
    targets: Vec<Target>,
    granted: mpsc::Sender<(TcpStream, Target)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(stream) = local_owner::admit(access, stream, "the SOCKS5 listener").await else {
            return;
        };
        let negotiated = tokio::time::timeout(
            NEGOTIATION_TIMEOUT,
            negotiate(stream, credential.as_deref(), &targets),
        )
        .await;
        if let Ok(Some(pair)) = negotiated {
            let _ = granted.send(pair).await;
        }
    })
}

/// Tell a SOCKS client whose request the tunnel refused locally (e.g. the
/// connection limit) that it failed, without making the loop wait for it.
pub(super) fn refuse(stream: TcpStream) {
    let reply = socks::encode_reply(Reply::GeneralFailure, unspecified());
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.write_all(&reply).await;
    });
}

/// For a held bridge: once the in-tunnel connect has an outcome, queue the
/// final reply and release the bridge. `Continue(progress)` means the bridge
/// can be pumped now; `Break` is this turn's result for it (still waiting,
/// or a failure reply still being written, or done).
pub(super) fn reply_once_connected(
    bridge: &mut TcpBridge,
    socket: &tcp::Socket<'_>,
    cx: &mut Context<'_>,
) -> ControlFlow<Step, bool> {
    match bridge.connect_state(socket) {
        Connect::Pending => ControlFlow::Break(Step::Running(false)),
        Connect::Established => {
            let bound = socket
                .local_endpoint()
                .map(crate::core::stack::socket_addr)
                .unwrap_or_else(unspecified);
            bridge.release_with_prefix(socks::encode_reply(Reply::Succeeded, bound));
            ControlFlow::Continue(true)
        }
        Connect::Failed => {
            // Refused by the target (RST) or no answer in time.
            bridge
                .release_with_prefix(socks::encode_reply(Reply::ConnectionRefused, unspecified()));
            if matches!(bridge.flush_prefix(cx), Ok(false)) {
                return ControlFlow::Break(Step::Running(true));
            }
            ControlFlow::Break(Step::Finished { progress: true })
        }
    }
}

/// The "no address" a SOCKS reply carries when there is none to give.
fn unspecified() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

/// Read from `stream` into `buf` until `parse` has a whole message, then
/// drop its bytes from `buf`. `None`: the client closed, sent too much, or
/// broke the protocol (logged at debug; `what` names the message).
async fn read_message<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    what: &str,
    parse: impl Fn(&[u8]) -> Result<Option<(usize, T)>, socks::SocksError>,
) -> Option<T> {
    let mut chunk = [0u8; 512];
    loop {
        match parse(buf) {
            Ok(Some((used, message))) => {
                buf.drain(..used);
                return Some(message);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "bad SOCKS5 {what}");
                return None;
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 4096 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Run the SOCKS5 handshake up to the request. Refusals are answered here;
/// an allowed request is handed to the driver, which sends the final reply
/// once the in-tunnel connect has succeeded or failed.
async fn negotiate(
    mut stream: TcpStream,
    credential: Option<&SocksCredential>,
    targets: &[Target],
) -> Option<(TcpStream, Target)> {
    let mut buf = Vec::with_capacity(512);
    let offer = read_message(&mut stream, &mut buf, "greeting", socks::parse_offer).await?;
    let choice = socks::choose_method(offer, credential.is_some());
    stream.write_all(&socks::choice_reply(choice)).await.ok()?;
    match (choice, credential) {
        (None, _) => {
            tracing::info!(
                ?offer,
                "SOCKS client refused: it offered no acceptable authentication method"
            );
            let _ = stream.shutdown().await;
            return None;
        }
        (Some(socks::Method::UserPass), Some(credential)) => {
            // The parsed request borrows `buf`; only the verdict leaves
            // this block, so the secret is never copied or logged.
            let (used, accepted) = {
                let mut chunk = [0u8; 512];
                loop {
                    match socks::parse_user_pass(&buf) {
                        Ok(Some((used, got))) => {
                            break (
                                used,
                                socks::credentials_match(
                                    got,
                                    credential.username.as_bytes(),
                                    credential.password.expose().as_bytes(),
                                ),
                            );
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "bad SOCKS5 username/password request");
                            return None;
                        }
                    }
                    let n = stream.read(&mut chunk).await.ok()?;
                    if n == 0 || buf.len() > 4096 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            };
            zeroize::Zeroize::zeroize(&mut buf[..used]);
            buf.drain(..used);
            stream
                .write_all(&socks::user_pass_reply(accepted))
                .await
                .ok()?;
            if !accepted {
                tracing::info!("SOCKS client refused: wrong username or password");
                let _ = stream.shutdown().await;
                return None;
            }
        }
        // A username/password choice is only made with a credential.
        (Some(socks::Method::UserPass), None) => return None,
        (Some(socks::Method::NoAuth), _) => {}
    }
    let request = read_message(&mut stream, &mut buf, "request", socks::parse_request).await?;
    match socks::decide(&request, targets) {
        Ok(target) => Some((stream, target)),
        Err(reply) => {
            tracing::info!(
                ?request,
                ?reply,
                "SOCKS request refused: not in this application's grant"
            );
            let _ = stream
                .write_all(&socks::encode_reply(reply, unspecified()))
                .await;
            let _ = stream.shutdown().await;
            None
        }
    }
}
