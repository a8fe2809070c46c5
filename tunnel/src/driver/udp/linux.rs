//! UDP segmentation / receive offload (`UDP_SEGMENT`, `UDP_GRO`) on Linux.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, getsockopt, recvmsg, sendmsg,
    setsockopt, sockopt,
};

/// Turn on GRO and probe for GSO: (gso, gro). Kernels before 4.18 (GSO) or
/// 5.0 (GRO) simply say no, and the socket works without them.
pub(super) fn enable_offloads(socket: &socket2::Socket) -> (bool, bool) {
    let gso = getsockopt(socket, sockopt::UdpGsoSegment).is_ok();
    let gro = setsockopt(socket, sockopt::UdpGroSegment, &true).is_ok();
    (gso, gro)
}

/// Let several sockets bind the same address; the kernel spreads incoming
/// datagrams over them by 4-tuple.
pub(super) fn set_reuse_port(socket: &socket2::Socket) -> io::Result<()> {
    setsockopt(socket, sockopt::ReusePort, &true).map_err(io::Error::from)
}

/// Space for the GRO control message.
pub(super) fn cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!(i32)
}

/// Most datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS).
pub(super) const MAX_SEGMENTS: usize = 64;

/// One `sendmsg` carrying the datagrams of `batch` (one iovec each), cut by
/// the kernel into `segment`-byte datagrams to `to`.
pub(super) fn send_gso(
    socket: &impl AsRawFd,
    batch: &[Vec<u8>],
    segment: usize,
    to: SocketAddr,
) -> io::Result<()> {
    let seg = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let addr = SockaddrStorage::from(to);
    let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS];
    let n = batch.len().min(MAX_SEGMENTS);
    for (slot, d) in iov.iter_mut().zip(batch) {
        *slot = IoSlice::new(d);
    }
    sendmsg(
        socket.as_raw_fd(),
        &iov[..n],
        &[ControlMessage::UdpGsoSegments(&seg)],
        MsgFlags::empty(),
        Some(&addr),
    )?;
    Ok(())
}

/// One `recvmsg`: (bytes, segment size if the kernel coalesced, source).
pub(super) fn recv_gro(
    socket: &impl AsRawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, Option<usize>, SocketAddr)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty())?;
    let mut segment = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::UdpGroSegments(s) = c {
                segment = usize::try_from(s).ok();
            }
        }
    }
    let from = msg.address.and_then(|a| {
        if let Some(v4) = a.as_sockaddr_in() {
            Some(SocketAddr::from(*v4))
        } else {
            a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
        }
    });
    let from = from.ok_or_else(|| io::Error::other("datagram without a source address"))?;
    Ok((msg.bytes, segment, from))
}
