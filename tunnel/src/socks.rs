//! SOCKS5 (RFC 1928), CONNECT only, no authentication — as a pure parser.
//!
//! Written here rather than taken from a crate: the SOCKS crates on
//! crates.io bundle their own networking and DNS, while Sallyport needs only
//! the three messages below and must decide every request against the grant
//! itself. The listener is bound to 127.0.0.1 and connects only to the
//! application's TCP targets; everything else gets the matching reply code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{Protocol, Target};

const VERSION: u8 = 5;
const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
const CMD_CONNECT: u8 = 0x01;
const ATYP_V4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_V6: u8 = 0x04;

/// Reply codes (RFC 1928 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    /// succeeded
    Succeeded = 0x00,
    /// general SOCKS server failure
    GeneralFailure = 0x01,
    /// connection not allowed by ruleset — a destination outside the grant
    NotAllowed = 0x02,
    /// network unreachable — the tunnel is down
    NetworkUnreachable = 0x03,
    /// host unreachable — a name that is not an IP literal (no DNS in the tunnel)
    HostUnreachable = 0x04,
    /// connection refused — the target reset the connection
    ConnectionRefused = 0x05,
    /// TTL expired — the connect timed out
    TtlExpired = 0x06,
    /// command not supported — BIND and UDP ASSOCIATE
    CommandNotSupported = 0x07,
    /// address type not supported
    AddressTypeNotSupported = 0x08,
}

/// A protocol violation by the SOCKS client: close without a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocksError {
    /// Not SOCKS version 5.
    #[error("not a SOCKS5 client (version byte {0:#04x})")]
    Version(u8),
    /// Malformed message.
    #[error("malformed SOCKS5 message")]
    Malformed,
}

/// The client's method selection. `Ok(None)`: need more bytes.
/// `Ok(Some((consumed, no_auth_offered)))`.
pub fn parse_greeting(buf: &[u8]) -> Result<Option<(usize, bool)>, SocksError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(SocksError::Version(ver));
    }
    let Some(&n) = buf.get(1) else {
        return Ok(None);
    };
    let end = 2 + usize::from(n);
    let Some(methods) = buf.get(2..end) else {
        return Ok(None);
    };
    Ok(Some((end, methods.contains(&METHOD_NO_AUTH))))
}

/// The server's method choice.
pub fn method_reply(no_auth_offered: bool) -> [u8; 2] {
    [
        VERSION,
        if no_auth_offered {
            METHOD_NO_AUTH
        } else {
            METHOD_NONE_ACCEPTABLE
        },
    ]
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// CONNECT to an address.
    Connect(SocketAddr),
    /// CONNECT to a domain name (and port).
    ConnectDomain(String, u16),
    /// Any other command (BIND, UDP ASSOCIATE, unknown).
    Unsupported(u8),
    /// An address type that does not exist.
    BadAddressType(u8),
}

/// The client's request. `Ok(None)`: need more bytes.
pub fn parse_request(buf: &[u8]) -> Result<Option<(usize, Request)>, SocksError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(SocksError::Version(buf[0]));
    }
    if buf[2] != 0 {
        return Err(SocksError::Malformed);
    }
    let cmd = buf[1];
    let (addr_len, host): (usize, Option<IpAddr>) = match buf[3] {
        ATYP_V4 => {
            let Some(b) = buf.get(4..8) else {
                return Ok(None);
            };
            (4, Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))))
        }
        ATYP_V6 => {
            let Some(b) = buf.get(4..20) else {
                return Ok(None);
            };
            let mut octets = [0u8; 16];
            octets.copy_from_slice(b);
            (16, Some(IpAddr::V6(Ipv6Addr::from(octets))))
        }
        ATYP_DOMAIN => {
            let Some(&n) = buf.get(4) else {
                return Ok(None);
            };
            (1 + usize::from(n), None)
        }
        other => return Ok(Some((4, Request::BadAddressType(other)))),
    };
    let end = 4 + addr_len + 2;
    let Some(rest) = buf.get(4..end) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([rest[addr_len], rest[addr_len + 1]]);
    if cmd != CMD_CONNECT {
        return Ok(Some((end, Request::Unsupported(cmd))));
    }
    let request = match host {
        Some(ip) => Request::Connect(SocketAddr::new(ip, port)),
        None => {
            let name =
                std::str::from_utf8(&rest[1..addr_len]).map_err(|_| SocksError::Malformed)?;
            Request::ConnectDomain(name.to_owned(), port)
        }
    };
    Ok(Some((end, request)))
}

/// Decide a request against the grant: the target to connect to, or the
/// reply that refuses it.
pub fn decide<'a>(
    request: &Request,
    targets: impl IntoIterator<Item = &'a Target>,
) -> Result<Target, Reply> {
    let addr = match request {
        Request::Connect(addr) => *addr,
        // A literal IP written as a name is still an IP.
        Request::ConnectDomain(name, port) => match name.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, *port),
            Err(_) => return Err(Reply::HostUnreachable),
        },
        Request::Unsupported(_) => return Err(Reply::CommandNotSupported),
        Request::BadAddressType(_) => return Err(Reply::AddressTypeNotSupported),
    };
    let wanted = Target {
        addr,
        proto: Protocol::Tcp,
    };
    if targets.into_iter().any(|t| *t == wanted) {
        Ok(wanted)
    } else {
        Err(Reply::NotAllowed)
    }
}

/// Encode a reply with the given bound address.
pub fn encode_reply(reply: Reply, bound: SocketAddr) -> Vec<u8> {
    let mut out = vec![VERSION, reply as u8, 0];
    match bound.ip() {
        IpAddr::V4(v4) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greeting() {
        assert_eq!(parse_greeting(&[5]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 2]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 2, 0]), Ok(Some((4, true))));
        assert_eq!(parse_greeting(&[5, 1, 2]), Ok(Some((3, false))));
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(SocksError::Version(4)));
        assert_eq!(method_reply(false), [5, 0xff]);
    }

    #[test]
    fn requests() {
        let v4 = [5, 1, 0, 1, 10, 0, 0, 5, 1, 187];
        assert_eq!(
            parse_request(&v4),
            Ok(Some((
                10,
                Request::Connect("10.0.0.5:443".parse().unwrap())
            )))
        );
        for cut in 0..v4.len() {
            assert_eq!(parse_request(&v4[..cut]), Ok(None));
        }
        let name = [5, 1, 0, 3, 3, b'a', b'b', b'c', 0, 80];
        assert_eq!(
            parse_request(&name),
            Ok(Some((10, Request::ConnectDomain("abc".into(), 80))))
        );
        let udp = [5, 3, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_request(&udp), Ok(Some((10, Request::Unsupported(3)))));
        assert_eq!(
            parse_request(&[5, 1, 0, 9]),
            Ok(Some((4, Request::BadAddressType(9))))
        );
    }

    #[test]
    fn decisions() {
        let granted: Target = "10.0.0.5:443/tcp".parse().unwrap();
        let targets = [granted, "10.0.0.6:53/udp".parse().unwrap()];
        let ok = Request::Connect("10.0.0.5:443".parse().unwrap());
        assert_eq!(decide(&ok, &targets), Ok(granted));
        let lit = Request::ConnectDomain("10.0.0.5".into(), 443);
        assert_eq!(decide(&lit, &targets), Ok(granted));
        let other_port = Request::Connect("10.0.0.5:444".parse().unwrap());
        assert_eq!(decide(&other_port, &targets), Err(Reply::NotAllowed));
        // A UDP target is not reachable with CONNECT.
        let udp_as_tcp = Request::Connect("10.0.0.6:53".parse().unwrap());
        assert_eq!(decide(&udp_as_tcp, &targets), Err(Reply::NotAllowed));
        let name = Request::ConnectDomain("intranet.example".into(), 443);
        assert_eq!(decide(&name, &targets), Err(Reply::HostUnreachable));
        assert_eq!(
            decide(&Request::Unsupported(3), &targets),
            Err(Reply::CommandNotSupported)
        );
        assert_eq!(
            encode_reply(Reply::NotAllowed, "0.0.0.0:0".parse().unwrap()),
            vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_greeting(&bytes);
            if let Ok(Some((n, _))) = parse_request(&bytes) {
                prop_assert!(n <= bytes.len());
            }
        }
    }
}
