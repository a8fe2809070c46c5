//! The WireGuard UDP socket.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel socket buffer we ask for: a full in-tunnel TCP window of datagrams
/// must fit, or bursts are dropped before userspace sees them. The kernel
/// caps this at `net.core.{r,w}mem_max`; that is fine, it is a hint.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Most datagrams handled per wakeup before yielding to other tasks.
pub(crate) const BATCH: usize = 256;

/// Bind a non-blocking UDP socket with large buffers.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer only costs throughput.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}
