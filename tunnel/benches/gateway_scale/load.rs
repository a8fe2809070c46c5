//! The load of the capacity cases (`capacity`, `backlog`): WireGuard peers
//! made with boringtun, not with this crate's client, each with a real
//! handshake with the gateway and data messages encrypted before any clock
//! starts, sent up to 45 to a system call (UDP GSO, as the tunnel client
//! sends). What they carry is UDP for a target that counts it.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use boringtun::noise::{Tunn, TunnResult};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg, setsockopt, sockopt,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};
use x25519_dalek::{PublicKey, StaticSecret};

/// UDP payload bytes of each datagram (an inner packet of 1,400 bytes,
/// under the default MTU of 1,420). The first four name the peer.
pub const PAYLOAD: usize = 1_372;
/// Most datagrams in one `sendmsg` (the kernel's UDP_MAX_SEGMENTS).
const GSO_SEGMENTS: usize = 64;
/// Most bytes in one: they must fit one IP packet (45 datagrams of 1,432).
const GSO_BYTES: usize = 65_000;

/// One peer of the load: its socket, its session and its datagrams.
pub struct LoadPeer {
    pub number: usize,
    socket: UdpSocket,
    tunn: Tunn,
    /// The inner IPv4/UDP packet every datagram carries.
    packet: Vec<u8>,
    /// Encrypted and not yet sent, all of one size (what GSO requires).
    datagrams: Vec<Vec<u8>>,
    next: usize,
}

impl LoadPeer {
    /// A real handshake with the gateway (granted already) from a socket of
    /// its own; `address` is the peer's inner address, `sink` the target.
    pub fn connect(
        number: usize,
        secret: StaticSecret,
        gw_public: PublicKey,
        address: Ipv4Addr,
        gateway: SocketAddr,
        sink: SocketAddr,
    ) -> LoadPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(gateway).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let index = u32::try_from(number).unwrap();
        let mut tunn = Tunn::new(secret, gw_public, None, None, index, None);
        let mut buf = vec![0u8; 2048];
        match tunn.format_handshake_initiation(&mut buf, false) {
            TunnResult::WriteToNetwork(d) => socket.send(d).unwrap(),
            _ => panic!("no handshake initiation"),
        };
        let mut response = vec![0u8; 2048];
        let n = socket.recv(&mut response).unwrap();
        let mut result = tunn.decapsulate(None, &response[..n], &mut buf);
        // The keepalive that confirms the session, then anything queued.
        while let TunnResult::WriteToNetwork(d) = result {
            socket.send(d).unwrap();
            result = tunn.decapsulate(None, &[], &mut buf);
        }
        assert!(tunn.time_since_last_handshake().is_some(), "no session");
        let SocketAddr::V4(sink) = sink else {
            panic!("the sink is IPv4")
        };
        let mut payload = vec![0x5a; PAYLOAD];
        payload[..4].copy_from_slice(&index.to_le_bytes());
        LoadPeer {
            number,
            socket,
            tunn,
            packet: udp_packet(address, 40_000, *sink.ip(), sink.port(), &payload),
            datagrams: Vec::new(),
            next: 0,
        }
    }

    /// Encrypt `n` more datagrams (untimed: before the clock starts).
    pub fn encrypt(&mut self, n: usize) {
        let mut out = vec![0u8; self.packet.len() + 64];
        for _ in 0..n {
            match self.tunn.encapsulate(&self.packet, &mut out) {
                TunnResult::WriteToNetwork(d) => self.datagrams.push(d.to_vec()),
                _ => panic!("not encrypted"),
            }
        }
    }

    /// Encrypted datagrams not yet sent.
    pub fn remaining(&self) -> usize {
        self.datagrams.len() - self.next
    }

    /// How many datagrams one `sendmsg` carries at most.
    pub fn per_send(&self) -> usize {
        let len = self.datagrams.first().map_or(1, Vec::len).max(1);
        GSO_SEGMENTS.min(GSO_BYTES / len)
    }

    /// Send the next `n` (at most `per_send`) in one `sendmsg`.
    pub fn send(&mut self, n: usize) {
        let batch = &self.datagrams[self.next..self.next + n];
        let iov: Vec<std::io::IoSlice<'_>> =
            batch.iter().map(|d| std::io::IoSlice::new(d)).collect();
        let segment = u16::try_from(batch[0].len()).unwrap();
        sendmsg::<()>(
            self.socket.as_raw_fd(),
            &iov,
            &[ControlMessage::UdpGsoSegments(&segment)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        self.next += n;
        if self.next == self.datagrams.len() {
            self.datagrams.clear();
            self.next = 0;
        }
    }
}

/// An IPv4/UDP packet with correct checksums.
fn udp_packet(
    src: Ipv4Addr,
    src_port: u16,
    dst: Ipv4Addr,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp = UdpRepr { src_port, dst_port };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let mut bytes = vec![0u8; ip.buffer_len() + ip.payload_len];
    let caps = ChecksumCapabilities::default();
    let mut packet = Ipv4Packet::new_unchecked(&mut bytes);
    ip.emit(&mut packet, &caps);
    let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(
        &mut datagram,
        &src.into(),
        &dst.into(),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    bytes
}

/// A UDP target on loopback for the load: a 4 MiB receive buffer, and like
/// the gateway's own socket it takes a burst sent with segmentation
/// offload as one read (UDP_GRO); with `stamped`, the kernel stamps each
/// arrival (SO_TIMESTAMPNS). Reads wait at most `timeout`.
pub fn target_socket(stamped: bool, timeout: Duration) -> UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    setsockopt(&socket, sockopt::UdpGroSegment, &true).unwrap();
    if stamped {
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true).unwrap();
    }
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(timeout)).unwrap();
    socket
}

/// What one read of a target socket with UDP_GRO brought.
pub struct Read {
    pub bytes: usize,
    /// The datagram size, if the kernel coalesced several.
    pub segment: Option<usize>,
    /// When the kernel received it, if the socket asked (SO_TIMESTAMPNS).
    pub at: Option<Duration>,
}

impl Read {
    /// The peer number of each datagram in `buf[..bytes]`.
    pub fn peers<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        buf[..self.bytes]
            .chunks(self.segment.unwrap_or(self.bytes).max(1))
            .filter_map(|d| d.get(..4))
            .map(|n| u32::from_le_bytes(n.try_into().unwrap()) as usize)
    }
}

/// One read of a target socket (blocking or not, as the socket is set).
pub fn recv_coalesced(
    socket: &UdpSocket,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> std::io::Result<Read> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty())?;
    let mut read = Read {
        bytes: msg.bytes,
        segment: None,
        at: None,
    };
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::UdpGroSegments(s) => read.segment = usize::try_from(s).ok(),
            ControlMessageOwned::ScmTimestampns(t) => {
                read.at = Some(Duration::from(t));
            }
            _ => {}
        }
    }
    Ok(read)
}

/// Space for the control messages `recv_coalesced` reads.
pub fn cmsg_space() -> Vec<u8> {
    nix::cmsg_space!(i32, nix::sys::time::TimeSpec)
}

/// CPU time of this process, in seconds.
pub fn process_cpu() -> f64 {
    cpu_seconds("/proc/self/stat")
}

/// CPU time of the calling thread, in seconds.
pub fn thread_cpu_self() -> f64 {
    thread_cpu(u64::from(nix::unistd::gettid().as_raw().unsigned_abs()))
}

/// CPU time (user and system) of thread `tid` of this process, in seconds.
pub fn thread_cpu(tid: u64) -> f64 {
    cpu_seconds(&format!("/proc/self/task/{tid}/stat"))
}

/// utime + stime of a `stat` file, in seconds (clock ticks of 10 ms).
fn cpu_seconds(path: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|w| w.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}
