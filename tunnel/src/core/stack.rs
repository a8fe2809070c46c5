//! The smoltcp TCP/IP stack of one tunnel (client) or one peer (gateway).
//!
//! Each instance is a separate `Interface` + `SocketSet`, so no state is ever
//! shared between two applications' tunnels, even inside the gateway.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use super::buffers;
use super::device::QueueDevice;
use crate::config::StackOptions;

/// Datagrams buffered per in-tunnel UDP socket, each way.
const UDP_PACKETS: usize = 256;
/// Payload bytes buffered per in-tunnel UDP socket, each way.
const UDP_BYTES: usize = 256 * 1024;

pub(crate) struct Stack {
    iface: Interface,
    pub(crate) device: QueueDevice,
    pub(crate) sockets: SocketSet<'static>,
    epoch: Instant,
    opts: StackOptions,
    /// Sockets that were reset and are freed after the next flush (so the
    /// RST is emitted before the socket disappears).
    pub(crate) poll_aborted: Vec<SocketHandle>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("sockets", &self.sockets.iter().count())
            .finish_non_exhaustive()
    }
}

pub(crate) fn to_smol(addr: IpAddr) -> IpAddress {
    match addr {
        IpAddr::V4(a) => IpAddress::Ipv4(a),
        IpAddr::V6(a) => IpAddress::Ipv6(a),
    }
}

pub(crate) fn from_smol(addr: IpAddress) -> IpAddr {
    match addr {
        IpAddress::Ipv4(a) => IpAddr::V4(a),
        IpAddress::Ipv6(a) => IpAddr::V6(a),
    }
}

pub(crate) fn endpoint(addr: SocketAddr) -> IpEndpoint {
    IpEndpoint::new(to_smol(addr.ip()), addr.port())
}

pub(crate) fn socket_addr(ep: IpEndpoint) -> SocketAddr {
    SocketAddr::new(from_smol(ep.addr), ep.port)
}

impl Stack {
    /// A stack that owns `own` (the client's tunnel address). With
    /// `any_ip`, it accepts packets for any destination (the gateway side,
    /// where the destinations are the granted targets, filtered beforehand).
    /// `own` must be unicast (checked by config validation).
    pub(crate) fn new(
        opts: &StackOptions,
        own: Option<IpAddr>,
        route_via: IpAddr,
        now: Instant,
    ) -> Self {
        let mut device = QueueDevice::new(opts.mtu);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = RandomState::new().hash_one(now);
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::from_micros(0));
        iface.update_ip_addrs(|addrs| {
            if let Some(own) = own {
                let prefix = if own.is_ipv4() { 32 } else { 128 };
                // Capacity is at least one address; nothing to do if full.
                let _ = addrs.push(IpCidr::new(to_smol(own), prefix));
            }
        });
        iface.set_any_ip(own.is_none());
        // Everything leaves through the tunnel: a default route per family.
        // With an IP medium the "via" address is never used for delivery.
        let routes = iface.routes_mut();
        match route_via {
            IpAddr::V4(v4) => {
                let _ = routes.add_default_ipv4_route(v4);
            }
            IpAddr::V6(v6) => {
                let _ = routes.add_default_ipv6_route(v6);
            }
        }
        Self {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            epoch: now,
            opts: opts.clone(),
            poll_aborted: Vec::new(),
        }
    }

    pub(crate) fn smol_now(&self, now: Instant) -> smoltcp::time::Instant {
        let micros = now.saturating_duration_since(self.epoch).as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// Let smoltcp process queued input and emit output.
    pub(crate) fn poll(&mut self, now: Instant) {
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.device, &mut self.sockets);
    }

    /// When smoltcp next needs `poll` (retransmits, delayed ACKs, ...).
    pub(crate) fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let t = self.smol_now(now);
        self.iface
            .poll_delay(t, &self.sockets)
            .map(|d| now + Duration::from_micros(d.total_micros()))
    }

    pub(crate) fn context(&mut self) -> &mut smoltcp::iface::Context {
        self.iface.context()
    }

    pub(crate) fn new_tcp_socket(&self) -> tcp::Socket<'static> {
        // Lazily committed: resident as far as used, unmapped when the
        // socket is freed (`core/buffers.rs`).
        let rx = tcp::SocketBuffer::new(buffers::zeroed(self.opts.tcp_buffer));
        let tx = tcp::SocketBuffer::new(buffers::zeroed(self.opts.tcp_buffer));
        let mut s = tcp::Socket::new(rx, tx);
        // Forwarded streams are already coalesced by the OS socket on the
        // other side; Nagle would only add latency.
        s.set_nagle_enabled(false);
        // Without congestion control smoltcp sends the peer's whole window
        // at once. Towards wireguard-go (its UDP socket keeps the kernel's
        // default 208 KiB receive buffer) such a burst lost 200-odd
        // datagrams, and smoltcp, which has no SACK, recovered by
        // retransmit timeouts that back off from 1 s: the interop test's
        // 1 MB echo took 3, 7 or 15 s. With Reno's slow start the loss is a
        // few datagrams at most, recovered in one timeout or none.
        s.set_congestion_control(tcp::CongestionControl::Reno);
        s.set_keep_alive(Some(smoltcp::time::Duration::from_secs(30)));
        s
    }

    pub(crate) fn new_udp_socket(&self) -> udp::Socket<'static> {
        let rx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            buffers::zeroed(UDP_BYTES),
        );
        let tx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            buffers::zeroed(UDP_BYTES),
        );
        udp::Socket::new(rx, tx)
    }

    pub(crate) fn add(&mut self, socket: impl smoltcp::socket::AnySocket<'static>) -> SocketHandle {
        self.sockets.add(socket)
    }

    pub(crate) fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    pub(crate) fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(h)
    }

    pub(crate) fn max_connections(&self) -> usize {
        self.opts.max_connections
    }
}
