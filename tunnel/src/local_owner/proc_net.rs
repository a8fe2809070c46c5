//! Parsing Linux's `/proc/net/tcp` and `/proc/net/tcp6` (pure, built and
//! tested on every OS): which user owns the socket at the client's end of
//! an accepted loopback connection.
//!
//! A row looks like
//! `3: 0100007F:ADF0 0100007F:BC01 01 00000000:00000000 00:00000000 00000000 65534 0 1623082 …`:
//! slot, local and remote address, state, queues, timer, retransmits, uid,
//! timeout, inode. The kernel prints an IPv4 address as the raw `__be32`
//! formatted as a host-order `%08X` (so `127.0.0.1` reads `0100007F` on a
//! little-endian machine), an IPv6 address as four such 32-bit words, and
//! ports already converted to host order (`%04X`). Decoding therefore uses
//! the native byte order: the table is always read on the machine that
//! wrote it.
//!
//! Both ends of a loopback connection are in the table: the client's socket
//! (local = the client's address, remote = the listener's) and the socket
//! `accept` returned (the reverse, owned by the listener's process). Only
//! the first says who connected, so the direction matters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `TCP_TIME_WAIT` in the `st` column.
const TIME_WAIT: u8 = 0x06;

/// One parsed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The socket's own address.
    pub local: SocketAddr,
    /// Its peer's address.
    pub remote: SocketAddr,
    /// TCP state (`01` established, `0A` listen, `06` time-wait, …).
    pub state: u8,
    /// The owner's uid, as seen from the reader's user namespace.
    pub uid: u32,
    /// The socket's inode; 0 when no open file holds the socket any more.
    pub inode: u64,
}

/// Why a table did not name the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Miss {
    /// No row for this connection (yet).
    #[error("no socket from the client's address to the listener in the table")]
    NotFound,
    /// The client's socket is no longer held by any process (closed,
    /// orphaned or in TIME_WAIT); the kernel then prints uid 0, which says
    /// nothing about who connected.
    #[error("the client's socket is already closed, so its owner is unknown")]
    NoOwner,
    /// Several rows match with different owners.
    #[error("several sockets match the connection with different owners")]
    Ambiguous,
}

/// The uid owning the client's socket of the connection from `client` (the
/// accepted stream's `peer_addr`) to `listener` (its `local_addr`), from
/// the text of `/proc/net/tcp` or `/proc/net/tcp6`. IPv4-mapped IPv6
/// addresses (a dual-stack socket's view of an IPv4 peer) match their IPv4
/// form. Unparsable lines (the header included) are skipped.
pub fn owner_uid(table: &str, client: SocketAddr, listener: SocketAddr) -> Result<u32, Miss> {
    let (client, listener) = (canonical(client), canonical(listener));
    let mut found: Option<u32> = None;
    let mut closed = false;
    for row in table.lines().filter_map(parse_row) {
        if canonical(row.local) != client || canonical(row.remote) != listener {
            continue;
        }
        if row.inode == 0 || row.state == TIME_WAIT {
            closed = true;
            continue;
        }
        match found {
            Some(uid) if uid != row.uid => return Err(Miss::Ambiguous),
            _ => found = Some(row.uid),
        }
    }
    match found {
        Some(uid) => Ok(uid),
        None if closed => Err(Miss::NoOwner),
        None => Err(Miss::NotFound),
    }
}

/// The uid owning the UDP socket that sent a datagram from `sender` to a
/// forward listening on `listener`, from the text of `/proc/net/udp` or
/// `/proc/net/udp6` (the same columns as the TCP tables). UDP has no
/// connection, so the sender's socket is the one bound to `sender`'s port
/// on `sender`'s address or on the wildcard address, and either not
/// connected or connected to `listener`. Several such sockets (sockets
/// sharing a port with `SO_REUSEPORT`) under different owners are
/// ambiguous; the listener's own socket never matches, as its port is the
/// listener's.
pub fn udp_owner_uid(table: &str, sender: SocketAddr, listener: SocketAddr) -> Result<u32, Miss> {
    let (sender, listener) = (canonical(sender), canonical(listener));
    let mut found: Option<u32> = None;
    for row in table.lines().filter_map(parse_row) {
        let (local, remote) = (canonical(row.local), canonical(row.remote));
        let bound_here = local.1 == sender.1 && (local.0 == sender.0 || local.0.is_unspecified());
        let sends_here = remote.1 == 0 || remote == listener;
        if !bound_here || !sends_here || row.inode == 0 {
            continue;
        }
        match found {
            Some(uid) if uid != row.uid => return Err(Miss::Ambiguous),
            _ => found = Some(row.uid),
        }
    }
    found.ok_or(Miss::NotFound)
}

/// One data line of the table; `None` for the header or anything malformed.
pub fn parse_row(line: &str) -> Option<Row> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    slot.strip_suffix(':')?.parse::<u64>().ok()?;
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = hex_u8(fields.next()?)?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt
    let uid = fields.nth(3)?.parse::<u32>().ok()?;
    // timeout
    let inode = fields.nth(1)?.parse::<u64>().ok()?;
    Some(Row {
        local,
        remote,
        state,
        uid,
        inode,
    })
}

/// `ADDR:PORT` with ADDR 8 (IPv4) or 32 (IPv6) hex digits.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::try_from(hex_u32(port)?).ok()?;
    let ip: IpAddr = match addr.len() {
        8 => Ipv4Addr::from(hex_u32(addr)?.to_ne_bytes()).into(),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                let word = addr.get(i * 8..i * 8 + 8)?;
                chunk.copy_from_slice(&hex_u32(word)?.to_ne_bytes());
            }
            Ipv6Addr::from(octets).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Up to 8 hex digits, nothing else (no sign, no prefix).
fn hex_u32(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// Two hex digits.
fn hex_u8(text: &str) -> Option<u8> {
    if text.len() != 2 {
        return None;
    }
    u8::try_from(hex_u32(text)?).ok()
}

/// The address with an IPv4-mapped IPv6 address turned into IPv4 and the
/// scope id dropped, so both forms of the same loopback peer compare equal.
fn canonical(addr: SocketAddr) -> (IpAddr, u16) {
    (addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    // Captured on Linux 6.x (x86_64) with Python: a listener on
    // 127.0.0.1:48129 (0xBC01), a client running as uid 65534 from
    // 127.0.0.1:44528 (0xADF0), and a client that had already closed
    // (127.0.0.1:44544, TIME_WAIT, printed with uid 0 and inode 0).
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:BC01 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1622980 1 0000000043f38579 100 0 0 10 0
   2: 0100007F:BC01 0100007F:ADF0 01 00000000:00000000 00:00000000 00000000     0        0 1622982 1 0000000023c4843a 20 0 0 10 -1
   3: 0100007F:ADF0 0100007F:BC01 01 00000000:00000000 00:00000000 00000000 65534        0 1623082 2 00000000437a1122 20 0 0 10 -1
   4: 0100007F:AE00 0100007F:BC01 06 00000000:00000000 03:0000175C 00000000     0        0 0 3 0000000001677527
";

    // Captured on the same machine: listeners on [::1]:38039 (0x9497) and
    // [::]:50207 (0xC41F); a client [::1]:35800 (0x8BD8) to the first; an
    // AF_INET6 client connecting to the IPv4 listener 127.0.0.1:33773
    // (0x83ED) from [::ffff:127.0.0.1]:50358 (0xC4B6); and an AF_INET
    // client 127.0.0.1:50360 (0xC4B8) accepted by the dual-stack listener
    // (the accepted side prints the mapped form). The capture ran as root;
    // row 5's uid was edited from 0 to 1000 so the test can tell the
    // client's end from the accepted end.
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:C41F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1589372 1 000000001d7cd33b 100 0 0 10 0
   1: 00000000000000000000000001000000:9497 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1589369 1 000000007885c5a3 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:C4B6 0000000000000000FFFF00000100007F:83ED 01 00000000:00000000 00:00000000 00000000     0        0 1589375 2 00000000f117a62b 20 0 0 10 -1
   3: 0000000000000000FFFF00000100007F:C41F 0000000000000000FFFF00000100007F:C4B8 01 00000000:00000000 00:00000000 00000000     0        0 1589374 1 00000000837d29f4 20 0 0 10 -1
   4: 00000000000000000000000001000000:9497 00000000000000000000000001000000:8BD8 01 00000000:00000000 00:00000000 00000000     0        0 1589371 1 0000000070460dc6 20 0 0 10 -1
   5: 00000000000000000000000001000000:8BD8 00000000000000000000000001000000:9497 01 00000000:00000000 00:00000000 00000000  1000        0 1589370 2 000000002c4cd353 20 0 0 10 -1
";

    // Captured on Linux 6.x (x86_64) with Python: the forward listening on
    // 127.0.0.1:40000 (0x9C40, uid 1000); an unconnected sender bound to
    // 127.0.0.1:41000 (0xA028, uid 1000); a sender connected to the forward
    // from 127.0.0.1:42000 (0xA410, uid 1001); a wildcard-bound sender on
    // 0.0.0.0:43000 (0xA7F8, uid 1002); and two sockets sharing port
    // 44000 (0xABE0) with SO_REUSEPORT. The capture ran as root; the uids
    // were edited from 0 so the rows can be told apart.
    const UDP: &str = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1530: 0100007F:9C40 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 2005822 2 000000002174246a 0
 2530: 0100007F:A028 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 2005823 2 00000000ec5744be 0
 3530: 0100007F:A410 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1001        0 2005824 2 00000000d0d30b90 0
 4530: 00000000:A7F8 00000000:0000 07 00000000:00000000 00:00000000 00000000  1002        0 2005825 2 00000000b8385da7 0
 5530: 0100007F:ABE0 00000000:0000 07 00000000:00000000 00:00000000 00000000  1003        0 2005827 2 000000005d9d96fb 0
 5530: 0100007F:ABE0 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 2005826 2 000000000e65947a 0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn finds_the_sender_of_a_udp_datagram() {
        let fwd = addr("127.0.0.1:40000");
        assert_eq!(udp_owner_uid(UDP, addr("127.0.0.1:41000"), fwd), Ok(1000));
        assert_eq!(udp_owner_uid(UDP, addr("127.0.0.1:42000"), fwd), Ok(1001));
        // Bound to the wildcard address, seen from loopback.
        assert_eq!(udp_owner_uid(UDP, addr("127.0.0.1:43000"), fwd), Ok(1002));
        // A dual-stack view of the same sender.
        assert_eq!(
            udp_owner_uid(UDP, addr("[::ffff:127.0.0.1]:41000"), fwd),
            Ok(1000)
        );
        assert_eq!(
            udp_owner_uid(UDP, addr("127.0.0.1:44000"), fwd),
            Err(Miss::Ambiguous)
        );
        assert_eq!(
            udp_owner_uid(UDP, addr("127.0.0.1:45000"), fwd),
            Err(Miss::NotFound)
        );
        // Connected elsewhere: not the sender of this datagram.
        assert_eq!(
            udp_owner_uid(UDP, addr("127.0.0.1:42000"), addr("127.0.0.1:40001")),
            Err(Miss::NotFound)
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn decodes_captured_rows() {
        let rows: Vec<Row> = TCP.lines().filter_map(parse_row).collect();
        assert_eq!(rows.len(), 4, "header skipped, four sockets");
        assert_eq!(
            rows[2],
            Row {
                local: addr("127.0.0.1:44528"),
                remote: addr("127.0.0.1:48129"),
                state: 1,
                uid: 65534,
                inode: 1623082,
            }
        );
        assert_eq!(rows[0].remote, addr("0.0.0.0:0"));
        let rows: Vec<Row> = TCP6.lines().filter_map(parse_row).collect();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[1].local, addr("[::1]:38039"));
        assert_eq!(rows[2].local, addr("[::ffff:127.0.0.1]:50358"));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn finds_the_client_end_not_the_accepted_end() {
        let (client, listener) = (addr("127.0.0.1:44528"), addr("127.0.0.1:48129"));
        assert_eq!(owner_uid(TCP, client, listener), Ok(65534));
        // Swapped, the accepted socket (the listener's process, uid 0)
        // would answer: the direction is what makes the answer mean "who
        // connected".
        assert_eq!(owner_uid(TCP, listener, client), Ok(0));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv6_and_mapped_addresses() {
        assert_eq!(
            owner_uid(TCP6, addr("[::1]:35800"), addr("[::1]:38039")),
            Ok(1000)
        );
        // An AF_INET6 client of an IPv4 listener: the stream says
        // 127.0.0.1, the table says ::ffff:127.0.0.1.
        assert_eq!(
            owner_uid(TCP6, addr("127.0.0.1:50358"), addr("127.0.0.1:33773")),
            Ok(0)
        );
        // And the mapped form of the query matches an IPv4 row.
        assert_eq!(
            owner_uid(
                TCP,
                addr("[::ffff:127.0.0.1]:44528"),
                addr("[::ffff:127.0.0.1]:48129")
            ),
            Ok(65534)
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn closed_or_unknown_sockets_name_no_owner() {
        let listener = addr("127.0.0.1:48129");
        // TIME_WAIT prints uid 0: that must not read as root.
        assert_eq!(
            owner_uid(TCP, addr("127.0.0.1:44544"), listener),
            Err(Miss::NoOwner)
        );
        assert_eq!(
            owner_uid(TCP, addr("127.0.0.1:1"), listener),
            Err(Miss::NotFound)
        );
        assert_eq!(
            owner_uid(TCP6, addr("127.0.0.1:44528"), listener),
            Err(Miss::NotFound)
        );
        assert_eq!(
            owner_uid("", addr("127.0.0.1:1"), listener),
            Err(Miss::NotFound)
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn conflicting_rows_are_ambiguous() {
        let twice = format!(
            "{TCP}   9: 0100007F:ADF0 0100007F:BC01 01 00000000:00000000 00:00000000 00000000  1000        0 99 1\n"
        );
        assert_eq!(
            owner_uid(&twice, addr("127.0.0.1:44528"), addr("127.0.0.1:48129")),
            Err(Miss::Ambiguous)
        );
    }

    #[test]
    fn malformed_rows_are_skipped() {
        for bad in [
            "",
            "  sl  local_address rem_address   st",
            "   3: 0100007F:ADF0",
            "   3: 0100007G:ADF0 0100007F:BC01 01 0:0 0:0 0 1 0 5",
            "   3: 0100007F:ADF00 0100007F:BC01 01 0:0 0:0 0 1 0 5",
            "   3: +100007F:ADF0 0100007F:BC01 01 0:0 0:0 0 1 0 5",
            "   3: 0100007F:ADF0 0100007F:BC01 01 0:0 0:0 0 -1 0 5",
            "   3: 0100007F:ADF0 0100007F:BC01 01 0:0 0:0 0 1 0",
            "   x: 0100007F:ADF0 0100007F:BC01 01 0:0 0:0 0 1 0 5",
            "   3: 0100007F 0100007F:BC01 01 0:0 0:0 0 1 0 5",
            "   3: 0100007F:ADF0 0100007F:BC01 1 0:0 0:0 0 1 0 5",
            "   3: 0000000000000000FFFF00000100007:ADF0 0100007F:BC01 01 0:0 0:0 0 1 0 5",
            "   3: 0000000000000000FFFF0000010000é7:ADF0 0100007F:BC01 01 0:0 0:0 0 1 0 5",
        ] {
            assert_eq!(parse_row(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in ".{0,400}", a in any::<u16>(), b in any::<u16>()) {
            let _ = parse_row(&text);
            let _ = owner_uid(&text, SocketAddr::from(([127, 0, 0, 1], a)), SocketAddr::from(([127, 0, 0, 1], b)));
            let _ = udp_owner_uid(&text, SocketAddr::from(([127, 0, 0, 1], a)), SocketAddr::from(([127, 0, 0, 1], b)));
        }

        #[test]
        fn never_panics_on_mutated_rows(
            line in 0usize..10,
            at in any::<prop::sample::Index>(),
            junk in "[0-9A-Fa-f: \t\n\u{e9}-]{0,12}",
            cut in any::<prop::sample::Index>(),
        ) {
            let source: Vec<&str> = TCP.lines().chain(TCP6.lines()).chain(UDP.lines()).collect();
            let mut row = source[line % source.len()].to_owned();
            let mut i = at.index(row.len() + 1);
            while !row.is_char_boundary(i) { i -= 1; }
            row.insert_str(i, &junk);
            let mut j = cut.index(row.len() + 1);
            while !row.is_char_boundary(j) { j -= 1; }
            row.truncate(j);
            let _ = parse_row(&row);
            let _ = owner_uid(&row, "127.0.0.1:44528".parse().unwrap(), "127.0.0.1:48129".parse().unwrap());
            let _ = udp_owner_uid(&row, "127.0.0.1:41000".parse().unwrap(), "127.0.0.1:40000".parse().unwrap());
        }

        #[test]
        fn encoded_rows_decode_to_what_was_encoded(
            client in any::<SocketAddr>(),
            listener_port in any::<u16>(),
            uid in any::<u32>(),
            inode in 1u64..,
        ) {
            let listener = SocketAddr::new(client.ip(), listener_port);
            let line = format!(
                "  12: {} {} 01 00000000:00000000 00:00000000 00000000 {uid} 0 {inode} 1 0 20 0 0 10 -1",
                encode(client),
                encode(listener)
            );
            let row = parse_row(&line).unwrap();
            prop_assert_eq!(canonical(row.local), canonical(client));
            prop_assert_eq!(row.uid, uid);
            prop_assert_eq!(row.inode, inode);
            if canonical(client) != canonical(listener) {
                prop_assert_eq!(owner_uid(&line, client, listener), Ok(uid));
            }
        }
    }

    /// The kernel's encoding, for the round-trip property.
    fn encode(addr: SocketAddr) -> String {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
            IpAddr::V6(v6) => v6
                .octets()
                .chunks_exact(4)
                .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
                .collect(),
        };
        format!("{ip}:{:04X}", addr.port())
    }
}
