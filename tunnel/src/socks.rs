//! SOCKS5 (RFC 1928), CONNECT only, with either no authentication or
//! username/password (RFC 1929) — as a pure parser.
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
const METHOD_USER_PASS: u8 = 0x02;
const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
/// Version byte of the RFC 1929 sub-negotiation (not the SOCKS version).
const AUTH_VERSION: u8 = 0x01;
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
    /// A username/password request (RFC 1929) with another version byte.
    #[error("not a SOCKS5 username/password request (version byte {0:#04x})")]
    AuthVersion(u8),
}

/// The client's method selection. `Ok(None)`: need more bytes.
/// `Ok(Some((consumed, no_auth_offered)))`.
pub fn parse_greeting(buf: &[u8]) -> Result<Option<(usize, bool)>, SocksError> {
    Ok(parse_offer(buf)?.map(|(end, offer)| (end, offer.no_auth)))
}

/// The authentication methods a client offered that this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// 0x00, no authentication.
    pub no_auth: bool,
    /// 0x02, username/password (RFC 1929).
    pub user_pass: bool,
}

/// The client's method selection, with every method this server knows.
/// `Ok(None)`: need more bytes.
pub fn parse_offer(buf: &[u8]) -> Result<Option<(usize, Offer)>, SocksError> {
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
    let offer = Offer {
        no_auth: methods.contains(&METHOD_NO_AUTH),
        user_pass: methods.contains(&METHOD_USER_PASS),
    };
    Ok(Some((end, offer)))
}

/// The method the server picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// No authentication.
    NoAuth,
    /// Username/password sub-negotiation follows (RFC 1929).
    UserPass,
}

/// Pick the method for an offer. When the tunnel has a credential only
/// username/password is acceptable: offering "no authentication" as well
/// must not let a client skip it. `None` means "no acceptable methods".
pub fn choose_method(offer: Offer, credential_required: bool) -> Option<Method> {
    if credential_required {
        offer.user_pass.then_some(Method::UserPass)
    } else {
        offer.no_auth.then_some(Method::NoAuth)
    }
}

/// The server's answer to the greeting for a choice from [`choose_method`].
pub fn choice_reply(choice: Option<Method>) -> [u8; 2] {
    [
        VERSION,
        match choice {
            Some(Method::NoAuth) => METHOD_NO_AUTH,
            Some(Method::UserPass) => METHOD_USER_PASS,
            None => METHOD_NONE_ACCEPTABLE,
        },
    ]
}

/// The username and password a client sent (RFC 1929), borrowed from the
/// read buffer. Debug leaves the password out, so logging one by mistake
/// does not leak it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserPass<'a> {
    /// The username, 0..=255 bytes (not necessarily UTF-8).
    pub username: &'a [u8],
    /// The password, 0..=255 bytes.
    pub password: &'a [u8],
}

impl std::fmt::Debug for UserPass<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPass")
            .field("username", &String::from_utf8_lossy(self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The username/password request: version 0x01, ULEN, UNAME, PLEN, PASSWD.
/// Both lengths are one byte, so neither field can exceed 255 bytes; every
/// slice is taken with a bounds check. `Ok(None)`: need more bytes.
pub fn parse_user_pass(buf: &[u8]) -> Result<Option<(usize, UserPass<'_>)>, SocksError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != AUTH_VERSION {
        return Err(SocksError::AuthVersion(ver));
    }
    let Some(&ulen) = buf.get(1) else {
        return Ok(None);
    };
    let uend = 2 + usize::from(ulen);
    let Some(username) = buf.get(2..uend) else {
        return Ok(None);
    };
    let Some(&plen) = buf.get(uend) else {
        return Ok(None);
    };
    let pend = uend + 1 + usize::from(plen);
    let Some(password) = buf.get(uend + 1..pend) else {
        return Ok(None);
    };
    Ok(Some((pend, UserPass { username, password })))
}

/// Whether the client's username and password are the expected ones, in
/// constant time (for equal lengths): a local process probing the listener
/// must not learn the password byte by byte from response times. Both
/// fields are always compared, so a right username is not told apart from
/// a wrong one either.
pub fn credentials_match(got: UserPass<'_>, username: &[u8], password: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let user_ok = got.username.ct_eq(username);
    let pass_ok = got.password.ct_eq(password);
    (user_ok & pass_ok).into()
}

/// The answer to the username/password request: status 0 is success, any
/// other value failure, after which the server closes the connection.
pub fn user_pass_reply(accepted: bool) -> [u8; 2] {
    [AUTH_VERSION, if accepted { 0x00 } else { 0x01 }]
}

/// The server's method choice when no credential is configured.
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
    fn offers_and_choices() {
        assert_eq!(parse_offer(&[5, 1]), Ok(None));
        let both = Offer {
            no_auth: true,
            user_pass: true,
        };
        assert_eq!(parse_offer(&[5, 3, 0, 1, 2]), Ok(Some((5, both))));
        let no_auth_only = Offer {
            no_auth: true,
            user_pass: false,
        };
        assert_eq!(parse_offer(&[5, 1, 0]), Ok(Some((3, no_auth_only))));
        assert_eq!(parse_offer(&[4, 1, 0]), Err(SocksError::Version(4)));
        // With a credential, only username/password; never a fallback.
        assert_eq!(choose_method(both, true), Some(Method::UserPass));
        assert_eq!(choose_method(no_auth_only, true), None);
        assert_eq!(choose_method(both, false), Some(Method::NoAuth));
        assert_eq!(choose_method(Offer::default(), false), None);
        assert_eq!(choice_reply(Some(Method::UserPass)), [5, 2]);
        assert_eq!(choice_reply(Some(Method::NoAuth)), [5, 0]);
        assert_eq!(choice_reply(None), [5, 0xff]);
    }

    #[test]
    fn user_pass() {
        let msg = [1, 3, b'b', b'o', b'b', 2, b'p', b'w', 9];
        let (used, got) = parse_user_pass(&msg).unwrap().unwrap();
        assert_eq!(used, 8);
        assert_eq!(got.username, b"bob");
        assert_eq!(got.password, b"pw");
        for cut in 0..8 {
            assert_eq!(parse_user_pass(&msg[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(parse_user_pass(&[5, 0, 0]), Err(SocksError::AuthVersion(5)));
        // Empty fields parse (and then fail the comparison).
        let (used, empty) = parse_user_pass(&[1, 0, 0]).unwrap().unwrap();
        assert_eq!(
            (used, empty.username, empty.password),
            (3, &[][..], &[][..])
        );
        // The longest fields: 255 bytes each.
        let mut long = vec![1, 255];
        long.extend([b'u'; 255]);
        long.push(255);
        long.extend([b'p'; 255]);
        let (used, got) = parse_user_pass(&long).unwrap().unwrap();
        assert_eq!(
            (used, got.username.len(), got.password.len()),
            (513, 255, 255)
        );

        assert!(credentials_match(got, &[b'u'; 255], &[b'p'; 255]));
        let right = UserPass {
            username: b"bob",
            password: b"pw",
        };
        assert!(credentials_match(right, b"bob", b"pw"));
        assert!(!credentials_match(right, b"bob", b"px"));
        assert!(!credentials_match(right, b"bob", b"pw2"));
        assert!(!credentials_match(right, b"eve", b"pw"));
        assert!(!credentials_match(empty, b"bob", b"pw"));
        assert_eq!(user_pass_reply(true), [1, 0]);
        assert_ne!(user_pass_reply(false)[1], 0);
        assert!(!format!("{right:?}").contains("pw"));
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
            if let Ok(Some((n, _))) = parse_offer(&bytes) {
                prop_assert!(n <= bytes.len());
            }
            if let Ok(Some((n, got))) = parse_user_pass(&bytes) {
                prop_assert!(n <= bytes.len());
                prop_assert!(got.username.len() <= 255 && got.password.len() <= 255);
                prop_assert_eq!(n, 3 + got.username.len() + got.password.len());
                let _ = credentials_match(got, b"user", b"password");
            }
            if let Ok(Some((n, _))) = parse_request(&bytes) {
                prop_assert!(n <= bytes.len());
            }
        }
    }
}
