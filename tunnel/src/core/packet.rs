//! Just enough parsing of inner IP packets to enforce a grant before the
//! packet reaches the TCP/IP stack: addresses, transport, ports, and whether a
//! TCP segment opens a connection. Uses smoltcp's checked wire parsers, so
//! any truncated or inconsistent header is rejected rather than trusted.

use std::net::IpAddr;

use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

use crate::config::Protocol;

/// The parts of an inner packet the policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Protocol,
    pub src_port: u16,
    pub dst_port: u16,
    /// A TCP SYN without ACK: someone is opening a connection.
    pub syn: bool,
}

/// Why a packet was not even considered by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unparsable {
    /// Not a well-formed IPv4/IPv6 packet with a TCP or UDP header.
    Malformed,
    /// Well-formed but not TCP/UDP (ICMP, fragments, extension headers):
    /// nothing in a grant allows it.
    Unsupported,
}

pub(crate) fn inspect(packet: &[u8]) -> Result<Flow, Unparsable> {
    let version = packet
        .first()
        .map(|b| b >> 4)
        .ok_or(Unparsable::Malformed)?;
    let (src, dst, proto, payload) = match version {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).map_err(|_| Unparsable::Malformed)?;
            if !ip.verify_checksum() {
                return Err(Unparsable::Malformed);
            }
            if ip.more_frags() || ip.frag_offset() != 0 {
                return Err(Unparsable::Unsupported);
            }
            let header_len = usize::from(ip.header_len());
            let total_len = usize::from(ip.total_len());
            let payload = packet
                .get(header_len..total_len)
                .ok_or(Unparsable::Malformed)?;
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                ip.next_header(),
                payload,
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).map_err(|_| Unparsable::Malformed)?;
            let payload_len = usize::from(ip.payload_len());
            let payload = packet
                .get(40..40 + payload_len)
                .ok_or(Unparsable::Malformed)?;
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                ip.next_header(),
                payload,
            )
        }
        _ => return Err(Unparsable::Malformed),
    };
    match proto {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| Unparsable::Malformed)?;
            Ok(Flow {
                src,
                dst,
                proto: Protocol::Tcp,
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                syn: tcp.syn() && !tcp.ack(),
            })
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(payload).map_err(|_| Unparsable::Malformed)?;
            Ok(Flow {
                src,
                dst,
                proto: Protocol::Udp,
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                syn: false,
            })
        }
        _ => Err(Unparsable::Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Repr, UdpRepr};

    fn udp_packet(src: Ipv4Address, dst: Ipv4Address, sport: u16, dport: u16) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: sport,
            dst_port: dport,
        };
        let payload = b"hi";
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; ip.buffer_len() + ip.payload_len];
        let caps = ChecksumCapabilities::default();
        let mut pkt = Ipv4Packet::new_unchecked(&mut buf);
        ip.emit(&mut pkt, &caps);
        let mut u = UdpPacket::new_unchecked(pkt.payload_mut());
        udp.emit(
            &mut u,
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        );
        buf
    }

    #[test]
    fn reads_udp_flow() {
        let p = udp_packet(
            Ipv4Address::new(10, 0, 0, 2),
            Ipv4Address::new(10, 0, 0, 9),
            5000,
            53,
        );
        let f = inspect(&p).unwrap();
        assert_eq!(f.src, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(f.dst_port, 53);
        assert_eq!(f.proto, Protocol::Udp);
        // Any truncation is rejected, never read past.
        for cut in 0..p.len() {
            assert!(inspect(&p[..cut]).is_err(), "accepted {cut} bytes");
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = inspect(&bytes);
        }
    }
}
