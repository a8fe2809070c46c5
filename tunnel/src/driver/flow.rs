//! The plain UDP sockets beside the WireGuard one: the client's local UDP
//! forwards and the gateway's connected sockets to UDP targets.
//!
//! Both drivers read these the same way (until the socket runs dry, then
//! register for its wakeup) and forget an idle flow after the same time, so
//! that lives here once. What a datagram means stays with each side.

use std::io;
use std::task::Context;
use std::time::Duration;

use tokio::net::UdpSocket;

/// Idle UDP flows are forgotten after this: on the client one per local
/// source address, on the gateway one per (peer, target, in-tunnel source).
pub(crate) const FLOW_IDLE: Duration = Duration::from_secs(120);

/// Receive from `socket` into `buf` with `recv` (`try_recv_from`, or
/// `try_recv` on a connected socket) and hand each datagram to `handle`, for
/// at most `limit` tries. Stops when the socket runs dry (registering for
/// its wakeup) or fails. Returns whether any datagram arrived.
pub(crate) fn recv_each<A>(
    socket: &UdpSocket,
    buf: &mut [u8],
    cx: &mut Context<'_>,
    limit: usize,
    mut recv: impl FnMut(&UdpSocket, &mut [u8]) -> io::Result<(usize, A)>,
    mut handle: impl FnMut(A, &[u8]),
) -> bool {
    let mut progress = false;
    for _ in 0..limit {
        match recv(socket, buf) {
            Ok((n, from)) => {
                progress = true;
                handle(from, &buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if socket.poll_recv_ready(cx).is_ready() {
                    continue;
                }
                break;
            }
            Err(_) => break,
        }
    }
    progress
}
