//! UDP segmentation / receive offload (`UDP_SEGMENT`, `UDP_GRO`) on Linux.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::libc;
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

/// Deliver each WireGuard data message to the socket of the worker that owns
/// its peer, instead of by 4-tuple hash. The group's sockets are indexed in
/// bind order, which is the workers' shard order, and a peer's index is
/// allocated so that `index % count` is its owner (`core::gateway::Shard`).
/// Without this, with two workers half of all data messages arrive at the
/// wrong worker and cost a copy and a hand-over through a channel; with it,
/// only handshake initiations (which name no index) are handed over.
///
/// The classic BPF program runs on the UDP payload. It reads the receiver
/// index (little-endian, bytes 4..8 of a data message; the peer's index is
/// its upper 24 bits, bytes 5..8) and returns `index % count`. For anything
/// else it returns an out-of-range socket number, and the kernel falls back
/// to the 4-tuple hash. A payload too short to read makes the program
/// return 0: worker 0, which counts it malformed.
pub(super) fn steer_by_peer_index(socket: &socket2::Socket, count: u32) -> io::Result<()> {
    let mut program = steering_program(count);
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::other("BPF program too long"))?,
        filter: program.as_mut_ptr(),
    };
    setsockopt(socket, sockopt::AttachReusePortCbpf, &fprog).map_err(io::Error::from)
}

/// WireGuard's message type of transport data (its first byte).
const DATA_MESSAGE: u32 = 4;
/// Where a data message's receiver index starts.
const RECEIVER_INDEX: u32 = 4;

fn steering_program(count: u32) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LSH, BPF_MEM,
        BPF_MOD, BPF_OR, BPF_RET, BPF_ST, BPF_X,
    };
    let ins = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        // Every opcode above fits 16 bits.
        code: u16::try_from(code).unwrap_or(u16::MAX),
        jt,
        jf,
        k,
    };
    let load_byte = |offset: u32| ins(BPF_LD | BPF_B | BPF_ABS, 0, 0, offset);
    let index_bytes = RECEIVER_INDEX + 1;
    let steer = [
        // A = byte 7 << 16 | byte 6 << 8 | byte 5: the peer's index.
        load_byte(index_bytes + 2),
        ins(BPF_ALU | BPF_LSH | BPF_K, 0, 0, 16),
        ins(BPF_ST, 0, 0, 0),
        load_byte(index_bytes + 1),
        ins(BPF_ALU | BPF_LSH | BPF_K, 0, 0, 8),
        ins(BPF_LDX | BPF_MEM, 0, 0, 0),
        ins(BPF_ALU | BPF_OR | BPF_X, 0, 0, 0),
        ins(BPF_ST, 0, 0, 0),
        load_byte(index_bytes),
        ins(BPF_LDX | BPF_MEM, 0, 0, 0),
        ins(BPF_ALU | BPF_OR | BPF_X, 0, 0, 0),
        ins(BPF_ALU | BPF_MOD | BPF_K, 0, 0, count.max(1)),
        ins(BPF_RET | BPF_A, 0, 0, 0),
    ];
    let skip = u8::try_from(steer.len()).unwrap_or(u8::MAX);
    let mut program = vec![
        load_byte(0),
        // Not a data message: jump over the steering to "any socket".
        ins(BPF_JMP | BPF_JEQ | BPF_K, 0, skip, DATA_MESSAGE),
    ];
    program.extend(steer);
    program.push(ins(BPF_RET | BPF_K, 0, 0, u32::MAX));
    program
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
    let addr = SockaddrStorage::from(to);
    let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS];
    let n = batch.len().min(MAX_SEGMENTS);
    for (slot, d) in iov.iter_mut().zip(batch) {
        *slot = IoSlice::new(d);
    }
    send_segmented(socket, &iov[..n], segment, Some(&addr))
}

/// One `sendmsg` of `data` on a connected socket, cut by the kernel into
/// `segment`-byte datagrams (the last may be shorter).
pub(super) fn send_gso_connected(
    socket: &impl AsRawFd,
    data: &[u8],
    segment: usize,
) -> io::Result<()> {
    send_segmented(socket, &[IoSlice::new(data)], segment, None)
}

fn send_segmented(
    socket: &impl AsRawFd,
    iov: &[IoSlice<'_>],
    segment: usize,
    to: Option<&SockaddrStorage>,
) -> io::Result<()> {
    let seg = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    sendmsg(
        socket.as_raw_fd(),
        iov,
        &[ControlMessage::UdpGsoSegments(&seg)],
        MsgFlags::empty(),
        to,
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
