//! The data plane: SOCKS5 from local applications, and WireGuard datagrams
//! into the gateway core and the client core (sans-IO, real cryptography,
//! real smoltcp stacks).
//!
//! Two kinds of WireGuard input: raw datagrams (what anyone on the network
//! can send), and inner IP packets encrypted by a peer holding a valid
//! session (what an authenticated client can send the gateway, or a
//! gateway the client), which reach the packet filter and the TCP/IP stack.
//! Inner packets have their lengths and checksums repaired three times in
//! four, so mutations get past the checksum and into the parsers behind it.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::{Tunn, TunnResult};
use tunnel::core::{ClientCore, GatewayCore};
use tunnel::socks;
use tunnel::{PeerGrant, PrivateKey, PublicKey, StackOptions, Target, TunnelConfig};
use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};

use super::tokens;
use crate::Target as FuzzTarget;

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
const TARGET_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const GW_ENDPOINT: &str = "192.0.2.1:51820";
const CLIENT_ENDPOINT: &str = "198.51.100.2:40000";
const DATAGRAM: usize = 65535 + 32;

fn targets_granted() -> Vec<Target> {
    ["10.1.0.1:443/tcp", "10.1.0.1:53/udp"]
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1))
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Repairs the IPv4/IPv6 length fields and the IP, TCP and UDP checksums.
pub fn repair(p: &mut [u8]) {
    match p.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 || p.len() < ihl {
                return;
            }
            let total = p.len().min(0xffff);
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[10..12].copy_from_slice(&[0, 0]);
            let c = fold(sum16(&p[..ihl], 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&p[12..20]);
            pseudo.extend_from_slice(&[0, p[9]]);
            pseudo.extend_from_slice(&((total - ihl) as u16).to_be_bytes());
            let proto = p[9];
            transport_checksum(&mut p[ihl..total], proto, &pseudo);
        }
        Some(6) => {
            if p.len() < 40 {
                return;
            }
            let payload = (p.len() - 40).min(0xffff);
            p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(&p[8..40]);
            pseudo.extend_from_slice(&(payload as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, p[6]]);
            let proto = p[6];
            transport_checksum(&mut p[40..40 + payload], proto, &pseudo);
        }
        _ => {}
    }
}

fn transport_checksum(t: &mut [u8], proto: u8, pseudo: &[u8]) {
    let at = match proto {
        6 if t.len() >= 20 => 16,
        17 if t.len() >= 8 => {
            let len = t.len().min(0xffff) as u16;
            t[4..6].copy_from_slice(&len.to_be_bytes());
            6
        }
        _ => return,
    };
    t[at..at + 2].copy_from_slice(&[0, 0]);
    let mut c = fold(sum16(t, sum16(pseudo, 0)));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    t[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, transport: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(transport);
    repair(&mut p);
    p
}

fn tcp(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let offset = (20 + options.len()) / 4;
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push((offset as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(options);
    t.extend_from_slice(data);
    t
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(data);
    t
}

/// MSS, SACK permitted, timestamps, window scale (what Linux sends).
const SYN_OPTIONS: &[u8] = &[
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// Inner packets from the client side (client → granted target).
fn client_packets() -> Vec<Vec<u8>> {
    let (c, t) = (CLIENT_IP, TARGET_IP);
    vec![
        ipv4(c, t, 6, &tcp(40000, 443, 1000, 0, SYN, SYN_OPTIONS, &[])),
        ipv4(c, t, 6, &tcp(40000, 443, 1001, 5001, ACK | PSH, &[1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 1], b"GET / HTTP/1.1\r\n\r\n")),
        ipv4(c, t, 6, &tcp(40000, 443, 1001, 5001, ACK | FIN, &[], &[])),
        ipv4(c, t, 6, &tcp(40000, 443, 1001, 0, RST, &[], &[])),
        ipv4(c, t, 17, &udp(40001, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")),
        ipv4(c, t, 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
        ipv4(c, Ipv4Addr::new(10, 9, 9, 9), 6, &tcp(40000, 22, 1, 0, SYN, &[], &[])),
    ]
}

fn wg_dict() -> Vec<Vec<u8>> {
    vec![
        vec![1, 0, 0, 0],
        vec![2, 0, 0, 0],
        vec![3, 0, 0, 0],
        vec![4, 0, 0, 0],
        vec![0x45, 0],
        vec![0x46, 0],
        vec![0x60, 0, 0, 0],
        vec![2, 4, 0xff, 0xff],
        vec![3, 3, 14],
        vec![5, 10],
        vec![8, 10],
        vec![0, 0],
        vec![0xff, 0xff],
    ]
}

/// A gateway core with one peer, and that peer (a plain boringtun `Tunn`
/// holding the client's key) with its session up.
struct GatewayRig {
    gw: GatewayCore,
    peer: Tunn,
    now: Instant,
    from: SocketAddr,
    buf: Vec<u8>,
    /// Datagrams captured while setting up (seeds for the raw target).
    captured: Vec<Vec<u8>>,
    /// Gateway events seen (accepted connections, UDP flows, ...).
    events: u64,
}

impl GatewayRig {
    fn new() -> Option<Self> {
        let now = Instant::now();
        let mut gw = GatewayCore::new(PrivateKey::generate(), StackOptions::default(), now).ok()?;
        let secret = StaticSecret::random();
        let public = DalekPublic::from(&secret);
        let gw_public = DalekPublic::from(*gw.public_key().as_bytes());
        let grant = PeerGrant {
            public_key: PublicKey::from(public.to_bytes()),
            client_address: IpAddr::V4(CLIENT_IP),
            targets: targets_granted(),
            expires_at: SystemTime::now() + Duration::from_secs(86_400 * 30),
        };
        gw.add_peer(
            now,
            SystemTime::now(),
            grant,
            now + Duration::from_secs(86_400 * 30),
        )
        .ok()?;
        let mut rig = GatewayRig {
            gw,
            peer: Tunn::new(secret, gw_public, None, None, 1, None),
            now,
            from: addr(CLIENT_ENDPOINT),
            buf: vec![0; DATAGRAM],
            captured: Vec::new(),
            events: 0,
        };
        if let TunnResult::WriteToNetwork(d) =
            rig.peer.format_handshake_initiation(&mut rig.buf, false)
        {
            rig.captured.push(d.to_vec());
            rig.gw.handle_datagram(now, rig.from, d);
        }
        for _ in 0..4 {
            rig.gw.poll(now);
            while let Some((_, d)) = rig.gw.poll_transmit() {
                rig.captured.push(d.clone());
                let mut reply = None;
                if let TunnResult::WriteToNetwork(r) = rig.peer.decapsulate(None, &d, &mut rig.buf)
                {
                    reply = Some(r.to_vec());
                }
                while let Some(r) = reply.take() {
                    rig.captured.push(r.clone());
                    rig.gw.handle_datagram(now, rig.from, &r);
                    if let TunnResult::WriteToNetwork(n) =
                        rig.peer.decapsulate(None, &[], &mut rig.buf)
                    {
                        reply = Some(n.to_vec());
                    }
                }
                rig.gw.recycle(d);
            }
        }
        for p in client_packets() {
            if let TunnResult::WriteToNetwork(d) = rig.peer.encapsulate(&p, &mut rig.buf) {
                rig.captured.push(d.to_vec());
            }
        }
        Some(rig)
    }

    fn settle(&mut self) {
        self.gw.poll(self.now);
        while let Some((_, d)) = self.gw.poll_transmit() {
            self.gw.recycle(d);
        }
        while self.gw.poll_event().is_some() {
            self.events += 1;
        }
        self.now += Duration::from_millis(1);
    }

    fn inner(&mut self, packet: &[u8]) {
        if let TunnResult::WriteToNetwork(d) = self.peer.encapsulate(packet, &mut self.buf) {
            self.gw.handle_datagram(self.now, self.from, d);
        }
        self.settle();
    }

    fn raw(&mut self, datagram: &[u8]) {
        self.gw.handle_datagram(self.now, self.from, datagram);
        self.settle();
    }
}

/// A client core, its gateway played by a plain boringtun `Tunn`, the
/// session up and one TCP connection opening.
struct ClientRig {
    core: ClientCore,
    gateway: Tunn,
    now: Instant,
    gw_addr: SocketAddr,
    buf: Vec<u8>,
    /// The client's SYN (its port and sequence number make the seeds).
    syn: Option<Vec<u8>>,
    captured: Vec<Vec<u8>>,
}

impl ClientRig {
    fn new() -> Option<Self> {
        let now = Instant::now();
        let gw_secret = StaticSecret::random();
        let gw_public = DalekPublic::from(&gw_secret);
        let cfg = TunnelConfig::new(
            addr(GW_ENDPOINT),
            PublicKey::from(gw_public.to_bytes()),
            IpAddr::V4(CLIENT_IP),
            targets_granted(),
            SystemTime::now() + Duration::from_secs(86_400 * 30),
        );
        let client_public = DalekPublic::from(*cfg.private_key.public_key().as_bytes());
        let core = ClientCore::new(&cfg, now, now + Duration::from_secs(86_400 * 30)).ok()?;
        let mut rig = ClientRig {
            core,
            gateway: Tunn::new(gw_secret, client_public, None, None, 7, None),
            now,
            gw_addr: addr(GW_ENDPOINT),
            buf: vec![0; DATAGRAM],
            syn: None,
            captured: Vec::new(),
        };
        let target = targets_granted().first().copied()?;
        for round in 0..6 {
            if round == 2 {
                let _ = rig.core.tcp_connect(target);
            }
            rig.core.poll(now);
            while let Some(d) = rig.core.poll_transmit() {
                rig.captured.push(d.clone());
                let mut next = Some(d.clone());
                while let Some(datagram) = next.take() {
                    match rig.gateway.decapsulate(
                        Some(IpAddr::V4(CLIENT_IP)),
                        &datagram,
                        &mut rig.buf,
                    ) {
                        TunnResult::WriteToNetwork(r) => {
                            let r = r.to_vec();
                            rig.captured.push(r.clone());
                            rig.core.handle_datagram(now, rig.gw_addr, &r);
                            next = Some(Vec::new());
                        }
                        TunnResult::WriteToTunnelV4(p, _)
                            if p.get(33).is_some_and(|f| f & SYN != 0) =>
                        {
                            rig.syn = Some(p.to_vec());
                        }
                        _ => {}
                    }
                }
                rig.core.recycle(d);
            }
        }
        Some(rig)
    }

    /// Packets from the target back to the client's connection.
    fn packets(&self) -> Vec<Vec<u8>> {
        let (port, seq) = match &self.syn {
            Some(s) if s.len() >= 28 => (
                u16::from_be_bytes([s[20], s[21]]),
                u32::from_be_bytes([s[24], s[25], s[26], s[27]]),
            ),
            _ => (49152, 0),
        };
        let (t, c) = (TARGET_IP, CLIENT_IP);
        vec![
            ipv4(
                t,
                c,
                6,
                &tcp(
                    443,
                    port,
                    9000,
                    seq.wrapping_add(1),
                    SYN | ACK,
                    SYN_OPTIONS,
                    &[],
                ),
            ),
            ipv4(
                t,
                c,
                6,
                &tcp(
                    443,
                    port,
                    9001,
                    seq.wrapping_add(1),
                    ACK | PSH,
                    &[],
                    b"HTTP/1.1 200 OK\r\n\r\n",
                ),
            ),
            ipv4(
                t,
                c,
                6,
                &tcp(443, port, 9001, seq.wrapping_add(1), RST | ACK, &[], &[]),
            ),
            ipv4(t, c, 17, &udp(53, 49153, b"\x12\x34\x81\x80")),
        ]
    }

    fn settle(&mut self) {
        self.core.poll(self.now);
        while let Some(d) = self.core.poll_transmit() {
            self.core.recycle(d);
        }
        self.now += Duration::from_millis(1);
    }

    fn inner(&mut self, packet: &[u8]) {
        if let TunnResult::WriteToNetwork(d) = self.gateway.encapsulate(packet, &mut self.buf) {
            self.core.handle_datagram(self.now, self.gw_addr, d);
        }
        self.settle();
    }

    fn raw(&mut self, datagram: &[u8]) {
        self.core.handle_datagram(self.now, self.gw_addr, datagram);
        self.settle();
    }
}

/// Repairs the input three times in four (the input's last byte decides,
/// so the run stays deterministic).
fn maybe_repaired(input: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if input.last().is_some_and(|b| b % 4 != 0) {
        let mut p = input.to_vec();
        repair(&mut p);
        std::borrow::Cow::Owned(p)
    } else {
        std::borrow::Cow::Borrowed(input)
    }
}

fn socks_target() -> FuzzTarget {
    let seeds = vec![
        vec![5, 1, 0],
        vec![5, 2, 0, 2],
        vec![5, 1, 0, 1, 10, 1, 0, 1, 1, 187],
        vec![
            5, 1, 0, 3, 8, b'1', b'0', b'.', b'1', b'.', b'0', b'.', b'1', 1, 187,
        ],
        vec![
            5, 1, 0, 4, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 53,
        ],
        vec![5, 3, 0, 1, 0, 0, 0, 0, 0, 0],
        vec![1, 3, b'b', b'o', b'b', 2, b'p', b'w'],
    ];
    let granted = targets_granted();
    FuzzTarget {
        name: "SOCKS5 (tunnel::socks)",
        weight: 60,
        seeds,
        dict: tokens(&["\x05", "\x01", "\x03", "\x04", "\x00"]),
        run: Box::new(move |input| {
            let _ = socks::parse_greeting(input);
            let _ = socks::parse_offer(input);
            // The RFC 1929 username/password request, and the comparison
            // that follows it.
            if let Ok(Some((used, got))) = socks::parse_user_pass(input) {
                let _ = input.get(used..);
                let _ = socks::credentials_match(got, b"sp-user", b"password");
            }
            // A request is read after the greeting it follows, or alone.
            let rest = match socks::parse_greeting(input) {
                Ok(Some((used, _))) => input.get(used..).unwrap_or_default(),
                _ => input,
            };
            for buf in [input, rest] {
                if let Ok(Some((used, request))) = socks::parse_request(buf) {
                    let _ = buf.get(used..);
                    if let Ok(target) = socks::decide(&request, &granted) {
                        let _ = socks::encode_reply(socks::Reply::Succeeded, target.addr);
                    }
                }
            }
        }),
        note: None,
    }
}

pub(super) fn targets() -> Vec<FuzzTarget> {
    let mut out = vec![socks_target()];
    for inner in [false, true] {
        let name = if inner {
            "inner packets (authenticated) -> gateway"
        } else {
            "WireGuard datagrams -> gateway core"
        };
        let Some(mut rig) = GatewayRig::new() else {
            out.push(broken(name));
            continue;
        };
        let seeds = if inner {
            client_packets()
        } else {
            std::mem::take(&mut rig.captured)
        };
        let rig = Rc::new(RefCell::new(rig));
        let seen = rig.clone();
        out.push(FuzzTarget {
            name,
            weight: 40,
            seeds,
            dict: wg_dict(),
            run: Box::new(move |input| {
                let mut rig = rig.borrow_mut();
                if inner {
                    rig.inner(&maybe_repaired(input));
                } else {
                    rig.raw(input);
                }
            }),
            note: Some(Box::new(move || {
                let rig = seen.borrow();
                format!("events {}, {:?}", rig.events, rig.gw.dropped())
            })),
        });
    }
    for inner in [false, true] {
        let name = if inner {
            "inner packets (authenticated) -> client"
        } else {
            "WireGuard datagrams -> client core"
        };
        let Some(mut rig) = ClientRig::new() else {
            out.push(broken(name));
            continue;
        };
        let seeds = if inner {
            rig.packets()
        } else {
            std::mem::take(&mut rig.captured)
        };
        let rig = Rc::new(RefCell::new(rig));
        let seen = rig.clone();
        out.push(FuzzTarget {
            name,
            weight: 40,
            seeds,
            dict: wg_dict(),
            run: Box::new(move |input| {
                let mut rig = rig.borrow_mut();
                if inner {
                    rig.inner(&maybe_repaired(input));
                } else {
                    rig.raw(input);
                }
            }),
            note: Some(Box::new(move || {
                let rig = seen.borrow();
                let status = rig.core.status(rig.now);
                format!(
                    "handshake {:?}, bytes in {}, {:?}",
                    status.handshake, status.bytes_in, status.dropped
                )
            })),
        });
    }
    out
}

/// A target whose setup failed: every case reports it.
fn broken(name: &'static str) -> FuzzTarget {
    FuzzTarget {
        name,
        weight: 1,
        seeds: vec![Vec::new()],
        dict: Vec::new(),
        run: Box::new(move |_| panic!("{name}: the in-memory tunnel could not be set up")),
        note: None,
    }
}
