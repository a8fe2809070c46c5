//! The WireGuard UDP socket, with batched I/O where the OS offers it.
//!
//! On Linux, datagrams of one size to one destination are coalesced and
//! sent with one `sendmsg` using UDP generic segmentation offload
//! (`UDP_SEGMENT`), and received coalesced with `UDP_GRO`: one system call
//! per up to 64 datagrams instead of one each. Elsewhere, or if the kernel
//! refuses, every datagram is sent and received on its own.

use std::io;
use std::net::SocketAddr;
use std::task::Context;

use socket2::{Domain, Protocol, Socket, Type};
#[cfg(target_os = "linux")]
use tokio::io::Interest;
use tokio::net::UdpSocket;

#[cfg(target_os = "linux")]
mod linux;

/// Kernel socket buffer we ask for: a full in-tunnel TCP window of datagrams
/// must fit, or bursts are dropped before userspace sees them. The kernel
/// caps this at `net.core.{r,w}mem_max`; that is fine, it is a hint.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Most datagrams handled per wakeup before yielding to other tasks.
pub(crate) const BATCH: usize = 256;

/// Most datagrams coalesced into one send (the kernel's UDP_MAX_SEGMENTS).
#[cfg(target_os = "linux")]
const MAX_SEGMENTS: usize = linux::MAX_SEGMENTS;
#[cfg(not(target_os = "linux"))]
const MAX_SEGMENTS: usize = 1;
/// Most bytes in one coalesced send: it must fit one IP packet.
const MAX_BATCH_BYTES: usize = 65_000;
/// Receive buffer: a coalesced batch, or the largest single datagram.
const RECV_BUFFER: usize = crate::core::wg::MAX_DATAGRAM;

/// Where the driver's datagrams come from and their buffers go back to.
pub(crate) trait Outbox {
    /// The next datagram and its destination.
    fn next_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)>;
    /// A buffer whose datagram has been copied or sent.
    fn recycle(&mut self, buf: Vec<u8>);
}

/// The socket plus the batching state.
#[derive(Debug)]
pub(crate) struct UdpIo {
    socket: UdpSocket,
    /// Send with UDP_SEGMENT (cleared if the kernel refuses it).
    gso: bool,
    /// Receive with UDP_GRO (only Linux reads it).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    gro: bool,
    /// Datagrams waiting to be sent, all to `to` and all of `segment` bytes
    /// except the last (what GSO requires); sent straight from these
    /// buffers (one iovec each), so batching adds no copy.
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
    segment: usize,
    to: Option<SocketAddr>,
    /// A datagram that did not fit the current batch.
    held: Option<(SocketAddr, Vec<u8>)>,
    rx: Vec<u8>,
    #[cfg(target_os = "linux")]
    cmsg: Vec<u8>,
}

/// Whether a datagram of `len` bytes may join a batch of `count` datagrams
/// and `bytes` bytes cut at `segment`: the kernel sends all of a batch's
/// datagrams at that size except the last, which may be shorter (and then
/// closes the batch; the caller sees to that).
pub(crate) fn joins_batch(count: usize, bytes: usize, segment: usize, len: usize) -> bool {
    segment > 0 && len <= segment && count < MAX_SEGMENTS && bytes + len <= MAX_BATCH_BYTES
}

/// Send `data` on a connected socket as `segment`-byte datagrams (the last
/// may be shorter): one system call with segmentation offload on Linux,
/// unless `gso` is false or the kernel refuses it (then `gso` is cleared
/// and they go one by one). Never waits. Returns how many datagrams were
/// dropped because the socket would not take them.
pub(crate) fn send_segments(
    socket: &UdpSocket,
    data: &[u8],
    segment: usize,
    gso: &mut bool,
) -> usize {
    // Straight to the OS socket: tokio's `try_send` refuses until its
    // reactor has seen the socket writable, which dropped a new socket's
    // first datagrams.
    let os = socket2::SockRef::from(socket);
    let count = if segment == 0 {
        1
    } else {
        data.len().div_ceil(segment).max(1)
    };
    #[cfg(target_os = "linux")]
    if *gso && count > 1 {
        match linux::send_gso_connected(socket, data, segment) {
            Ok(()) => return 0,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return count,
            Err(e) => {
                tracing::debug!(error = %e, "UDP segmentation offload refused; sending datagrams one by one");
                *gso = false;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = gso;
    if count == 1 {
        return usize::from(os.send(data).is_err());
    }
    data.chunks(segment).filter(|d| os.send(d).is_err()).count()
}

/// Bind a non-blocking UDP socket with large buffers (and offloads on Linux).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpIo> {
    open(addr, false)?.register()
}

/// `count` sockets on one address with `SO_REUSEPORT` (Linux), one per
/// gateway worker, in shard order. A BPF program hands each data message to
/// the worker that owns its peer (`linux::steer_by_peer_index`); the kernel
/// hashes everything else by 4-tuple. Elsewhere (no load balancing of UDP
/// by `SO_REUSEPORT`) only one socket is bound. Each is registered with
/// its worker's runtime later ([`OpenSocket::register`]).
pub(crate) fn bind_workers(addr: SocketAddr, count: usize) -> io::Result<Vec<OpenSocket>> {
    if count <= 1 || !cfg!(target_os = "linux") {
        return Ok(vec![open(addr, false)?]);
    }
    let first = open(addr, true)?;
    // A port of 0 was chosen by the first bind; the others join it.
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(open(addr, true)?);
    }
    #[cfg(target_os = "linux")]
    {
        let count =
            u32::try_from(count).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // Best effort: without it the kernel hashes by 4-tuple and the
        // workers hand misdelivered datagrams to each other, which is
        // correct, only slower.
        if let Err(e) = linux::steer_by_peer_index(&all[0].socket, count) {
            tracing::warn!(error = %e, "cannot steer datagrams to their peer's worker");
        }
    }
    Ok(all)
}

/// A bound WireGuard socket not yet registered with a tokio runtime.
#[derive(Debug)]
pub(crate) struct OpenSocket {
    socket: Socket,
    gso: bool,
    gro: bool,
}

fn open(addr: SocketAddr, reuse_port: bool) -> io::Result<OpenSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(target_os = "linux")]
    if reuse_port {
        linux::set_reuse_port(&socket)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = reuse_port;
    // Best effort: a smaller buffer only costs throughput.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    #[cfg(target_os = "linux")]
    let (gso, gro) = linux::enable_offloads(&socket);
    #[cfg(not(target_os = "linux"))]
    let (gso, gro) = (false, false);
    tracing::debug!(gso, gro, "udp socket bound");
    Ok(OpenSocket { socket, gso, gro })
}

impl OpenSocket {
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable))
    }

    /// Hand the socket to the current tokio runtime's reactor.
    pub(crate) fn register(self) -> io::Result<UdpIo> {
        Ok(UdpIo {
            socket: UdpSocket::from_std(self.socket.into())?,
            gso: self.gso,
            gro: self.gro,
            batch: Vec::with_capacity(MAX_SEGMENTS),
            batch_bytes: 0,
            segment: 0,
            to: None,
            held: None,
            rx: vec![0u8; RECV_BUFFER],
            #[cfg(target_os = "linux")]
            cmsg: linux::cmsg_buffer(),
        })
    }
}

impl UdpIo {
    /// Send everything `out` has at once, one datagram per call and without
    /// waiting for the socket: the last datagrams (RSTs into the tunnel) of a
    /// driver that is closing. What does not fit the socket buffer is
    /// dropped, as UDP may; the buffers are not recycled (the core goes too).
    pub(crate) fn send_now(&self, out: &mut impl Outbox) {
        while let Some((to, d)) = out.next_datagram() {
            let _ = self.socket.try_send_to(&d, to);
        }
    }

    /// Receive up to [`BATCH`] datagrams, handing each to `handle`. Registers
    /// for a wakeup when the socket runs dry. Returns whether any arrived.
    pub(crate) fn recv(
        &mut self,
        cx: &mut Context<'_>,
        mut handle: impl FnMut(SocketAddr, &[u8]),
    ) -> bool {
        let mut progress = false;
        let mut count = 0;
        while count < BATCH {
            match self.recv_one() {
                Ok((n, segment, from)) => {
                    progress = true;
                    let data = &self.rx[..n];
                    match segment {
                        Some(seg) if seg > 0 && seg < n => {
                            for d in data.chunks(seg) {
                                count += 1;
                                handle(from, d);
                            }
                        }
                        _ => {
                            count += 1;
                            handle(from, data);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.socket.poll_recv_ready(cx).is_ready() {
                        continue;
                    }
                    break;
                }
                Err(e) => {
                    // e.g. ICMP port unreachable surfacing as ECONNREFUSED:
                    // the peer is down; the handshake timer will show it.
                    tracing::debug!(error = %e, "udp receive error");
                    break;
                }
            }
        }
        progress
    }

    /// (bytes, GRO segment size, source) of the next datagram or batch.
    fn recv_one(&mut self) -> io::Result<(usize, Option<usize>, SocketAddr)> {
        #[cfg(target_os = "linux")]
        if self.gro {
            let (socket, rx, cmsg) = (&self.socket, &mut self.rx, &mut self.cmsg);
            return socket.try_io(Interest::READABLE, || linux::recv_gro(socket, rx, cmsg));
        }
        let (n, from) = self.socket.try_recv_from(&mut self.rx)?;
        Ok((n, None, from))
    }

    /// Send everything `out` has, coalescing where possible. Registers for a
    /// wakeup when the socket is full. Returns whether anything was sent.
    pub(crate) fn send(&mut self, cx: &mut Context<'_>, out: &mut impl Outbox) -> bool {
        let mut progress = false;
        loop {
            if self.batch.is_empty() {
                self.fill(out);
                if self.batch.is_empty() {
                    return progress;
                }
            }
            match self.send_batch() {
                Ok(()) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.socket.poll_send_ready(cx).is_ready() {
                        continue;
                    }
                    return progress;
                }
                Err(e) if self.batch.len() > 1 => {
                    // The kernel or the route does not take segmentation
                    // offload: stop using it, send this batch one by one.
                    tracing::debug!(error = %e, "UDP segmentation offload refused; sending datagrams one by one");
                    self.gso = false;
                    self.send_singly();
                    progress = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, to = ?self.to, "udp send error; datagram dropped");
                }
            }
            for buf in self.batch.drain(..) {
                out.recycle(buf);
            }
            self.batch_bytes = 0;
        }
    }

    /// Take datagrams from `out` into the batch while they can share it.
    fn fill(&mut self, out: &mut impl Outbox) {
        while let Some((to, d)) = self.held.take().or_else(|| out.next_datagram()) {
            if self.batch.is_empty() {
                self.to = Some(to);
                self.segment = d.len();
            } else if !self.gso
                || self.to != Some(to)
                || !joins_batch(self.batch.len(), self.batch_bytes, self.segment, d.len())
            {
                self.held = Some((to, d));
                return;
            }
            // Only the last segment may be shorter.
            let last = d.len() < self.segment;
            self.batch_bytes += d.len();
            self.batch.push(d);
            if last {
                return;
            }
        }
    }

    fn send_batch(&self) -> io::Result<()> {
        let Some(to) = self.to else { return Ok(()) };
        #[cfg(target_os = "linux")]
        if self.batch.len() > 1 {
            let (socket, batch, segment) = (&self.socket, &self.batch, self.segment);
            return socket.try_io(Interest::WRITABLE, || {
                linux::send_gso(socket, batch, segment, to)
            });
        }
        match self.batch.first() {
            Some(d) => self.socket.try_send_to(d, to).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Fallback for a batch the kernel would not segment. A datagram that
    /// does not fit the socket buffer now is dropped, as UDP may.
    fn send_singly(&self) {
        let Some(to) = self.to else { return };
        for d in &self.batch {
            if let Err(e) = self.socket.try_send_to(d, to) {
                tracing::debug!(error = %e, %to, "udp send error; datagram dropped");
            }
        }
    }
}
