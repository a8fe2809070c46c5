//! What a tunnel is built from: the grant the broker hands out (flow 6 in
//! docs/ARCHITECTURE.md) plus local tuning.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::key::{PrivateKey, PublicKey};
use crate::local_owner::LocalAccess;

/// Transport protocol of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One destination an application may reach through its tunnel:
/// `ip:port/tcp` or `ip:port/udp` (IPv6 as `[::1]:port/tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// Address and port on the gateway's side.
    pub addr: SocketAddr,
    /// Transport protocol.
    pub proto: Protocol,
}

impl Target {
    /// A TCP target.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            addr,
            proto: Protocol::Tcp,
        }
    }

    /// A UDP target.
    pub fn udp(addr: SocketAddr) -> Self {
        Self {
            addr,
            proto: Protocol::Udp,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.proto)
    }
}

/// Why a target string or a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A per-tunnel or per-peer limit is zero.
    #[error("max_connections and max_udp_flows must be at least 1")]
    Limits,
    /// A target is not of the form `ip:port/tcp|udp`.
    #[error("target {0:?} is not of the form ip:port/tcp or ip:port/udp (e.g. 10.0.0.5:443/tcp)")]
    TargetSyntax(String),
    /// An address the TCP/IP stack cannot use as a unicast peer.
    #[error("{what} {addr} is not a unicast address; use the address from the grant")]
    NotUnicast {
        /// Which field.
        what: &'static str,
        /// The offending address.
        addr: IpAddr,
    },
    /// A target with port 0.
    #[error("target {0} has port 0; a target needs a concrete port")]
    PortZero(Target),
    /// The grant names no target at all.
    #[error("the grant has no targets; nothing could be reached through this tunnel")]
    NoTargets,
    /// The grant had already expired.
    #[error("the grant expired before the tunnel was started; request a new grant")]
    Expired,
    /// A SOCKS username or password that RFC 1929 cannot carry.
    #[error("the SOCKS5 username and password must each be 1 to 255 bytes")]
    SocksCredential,
    /// MTU outside what WireGuard and IP allow.
    #[error("mtu {0} is outside 576..=65440")]
    Mtu(usize),
}

impl FromStr for Target {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::TargetSyntax(s.to_owned());
        let (addr, proto) = s.rsplit_once('/').ok_or_else(bad)?;
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(bad()),
        };
        let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
        let target = Target { addr, proto };
        validate_target(&target)?;
        Ok(target)
    }
}

pub(crate) fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

pub(crate) fn validate_target(target: &Target) -> Result<(), ConfigError> {
    if !is_unicast(target.addr.ip()) {
        return Err(ConfigError::NotUnicast {
            what: "target",
            addr: target.addr.ip(),
        });
    }
    if target.addr.port() == 0 {
        return Err(ConfigError::PortZero(*target));
    }
    Ok(())
}

/// The MTU WireGuard uses by default (1500 minus IPv6 + UDP + WireGuard
/// overhead), so inner packets never fragment on an ordinary path.
pub const DEFAULT_MTU: usize = 1420;

/// Tuning of the in-tunnel TCP/IP stack. Defaults are chosen for throughput on
/// a desktop: large TCP buffers (window scaling kicks in above 64 KiB) so one
/// stream can fill a fast link.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Inner MTU (IP packet size inside the tunnel).
    pub mtu: usize,
    /// Receive and send buffer of each in-tunnel TCP connection, in bytes.
    pub tcp_buffer: usize,
    /// Most concurrent in-tunnel connections (TCP + UDP flows) per tunnel or
    /// per gateway peer; beyond it new ones are refused and counted.
    pub max_connections: usize,
    /// Most UDP flows one gateway peer may hold at once (each is an OS
    /// socket to its target, so this bounds the gateway's file descriptors
    /// per peer); a new flow beyond it is dropped until one idles out.
    pub max_udp_flows: usize,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            mtu: DEFAULT_MTU,
            tcp_buffer: 1024 * 1024,
            max_connections: 256,
            max_udp_flows: 64,
        }
    }
}

impl StackOptions {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(576..=65440).contains(&self.mtu) {
            return Err(ConfigError::Mtu(self.mtu));
        }
        if self.max_connections == 0 || self.max_udp_flows == 0 {
            return Err(ConfigError::Limits);
        }
        Ok(())
    }
}

/// A password for the SOCKS5 listener. Debug prints `<redacted>`, so a
/// config or status that is logged or put in a diagnostics bundle does not
/// carry it, and the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SocksPassword(zeroize::Zeroizing<String>);

impl SocksPassword {
    /// Wrap a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(password.into()))
    }

    /// The password itself: for the SOCKS comparison and for showing it to
    /// the user who owns the tunnel, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SocksPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The username and password (RFC 1929) a SOCKS5 client must present. The
/// owner check on the listener cannot tell two processes of the same user
/// apart (and admits everyone with [`LocalAccess::Anyone`]); a per-tunnel
/// secret narrows the listener to the application that was given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksCredential {
    /// The username, 1..=255 bytes.
    pub username: String,
    /// The password, 1..=255 bytes.
    pub password: SocksPassword,
}

impl SocksCredential {
    /// RFC 1929 carries each field with a one-byte length; an empty one
    /// would be a credential anyone could guess.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let ok = |s: &str| (1..=255).contains(&s.len());
        if ok(&self.username) && ok(self.password.expose()) {
            Ok(())
        } else {
            Err(ConfigError::SocksCredential)
        }
    }
}

/// Everything needed to bring up one application's tunnel (client side).
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// This tunnel's own key, generated for this application only.
    pub private_key: PrivateKey,
    /// Where the gateway listens (UDP).
    pub gateway_endpoint: SocketAddr,
    /// The gateway's WireGuard public key.
    pub gateway_public_key: PublicKey,
    /// The client's address inside the tunnel (from the grant).
    pub client_address: IpAddr,
    /// What the application may reach. The local listeners and the in-tunnel
    /// stack refuse everything else.
    pub targets: Vec<Target>,
    /// WireGuard persistent keepalive, seconds (keeps NAT state alive and
    /// lets a lost gateway show up as a handshake timeout while idle).
    pub persistent_keepalive: Option<u16>,
    /// The grant's expiry: the tunnel closes itself (fail closed) at this time.
    pub expires_at: SystemTime,
    /// Local port for the TCP/UDP forward of a target; targets not listed get
    /// an ephemeral port (reported in the status).
    pub forward_ports: HashMap<Target, u16>,
    /// Port of the SOCKS5 listener on 127.0.0.1 (`Some(0)` = ephemeral,
    /// `None` = no SOCKS listener).
    pub socks_port: Option<u16>,
    /// How long a handshake may stay unanswered before the status reports a
    /// timeout. WireGuard keeps retrying (REKEY_ATTEMPT_TIME is 90 s); this
    /// only decides when the user is told the gateway is unreachable.
    pub handshake_timeout: Duration,
    /// In-tunnel stack tuning.
    pub stack: StackOptions,
    /// Which local processes may use the TCP forwards and the SOCKS5
    /// listener. Loopback is shared by every user of the machine, so the
    /// default admits only this process's own user
    /// ([`LocalAccess::SameUser`], fail closed where the owner cannot be
    /// determined).
    pub local_access: LocalAccess,
    /// When set, the SOCKS5 listener accepts only clients that
    /// authenticate with this username and password (RFC 1929); a client
    /// that offers only "no authentication" is refused. `None` keeps the
    /// listener open to any process `local_access` admits.
    pub socks_auth: Option<SocksCredential>,
}

impl TunnelConfig {
    /// A config with defaults for everything the grant does not say: fresh
    /// key, ephemeral local ports, SOCKS on an ephemeral port, keepalive 25 s,
    /// local listeners for this process's user only.
    pub fn new(
        gateway_endpoint: SocketAddr,
        gateway_public_key: PublicKey,
        client_address: IpAddr,
        targets: Vec<Target>,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            private_key: PrivateKey::generate(),
            gateway_endpoint,
            gateway_public_key,
            client_address,
            targets,
            persistent_keepalive: Some(25),
            expires_at,
            forward_ports: HashMap::new(),
            socks_port: Some(0),
            handshake_timeout: Duration::from_secs(15),
            stack: StackOptions::default(),
            local_access: LocalAccess::default(),
            socks_auth: None,
        }
    }

    pub(crate) fn validate(&self, now: SystemTime) -> Result<(), ConfigError> {
        if !is_unicast(self.client_address) {
            return Err(ConfigError::NotUnicast {
                what: "client address",
                addr: self.client_address,
            });
        }
        if self.targets.is_empty() {
            return Err(ConfigError::NoTargets);
        }
        for t in &self.targets {
            validate_target(t)?;
        }
        if self.expires_at <= now {
            return Err(ConfigError::Expired);
        }
        if let Some(credential) = &self.socks_auth {
            credential.validate()?;
        }
        self.stack.validate()
    }
}

/// The gateway's own settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The gateway's WireGuard key.
    pub private_key: PrivateKey,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// In-tunnel stack tuning, applied to every peer.
    pub stack: StackOptions,
}

/// One client tunnel the gateway terminates: who (public key), from which
/// inner address, to which targets, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGrant {
    /// The client tunnel's public key.
    pub public_key: PublicKey,
    /// The only inner source address accepted from this peer.
    pub client_address: IpAddr,
    /// The only destinations this peer may reach.
    pub targets: Vec<Target>,
    /// When the gateway drops the peer (WireGuard has no revocation; removing
    /// the peer is the enforcement).
    pub expires_at: SystemTime,
}

impl PeerGrant {
    pub(crate) fn validate(&self, now: SystemTime) -> Result<(), ConfigError> {
        if !is_unicast(self.client_address) {
            return Err(ConfigError::NotUnicast {
                what: "client address",
                addr: self.client_address,
            });
        }
        for t in &self.targets {
            validate_target(t)?;
        }
        if self.expires_at <= now {
            return Err(ConfigError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t: Target = "10.0.0.5:443/tcp".parse().unwrap();
        assert_eq!(t, Target::tcp("10.0.0.5:443".parse().unwrap()));
        let t: Target = "[fd00::1]:53/UDP".parse().unwrap();
        assert_eq!(t, Target::udp("[fd00::1]:53".parse().unwrap()));
        assert_eq!(t.to_string(), "[fd00::1]:53/udp");
    }

    #[test]
    fn socks_password_is_redacted_and_lengths_checked() {
        let c = SocksCredential {
            username: "app".into(),
            password: SocksPassword::new("hunter2"),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("app") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(c.validate(), Ok(()));
        let empty = SocksCredential {
            password: SocksPassword::new(""),
            ..c.clone()
        };
        assert_eq!(empty.validate(), Err(ConfigError::SocksCredential));
        let long = SocksCredential {
            username: "u".repeat(256),
            ..c
        };
        assert_eq!(long.validate(), Err(ConfigError::SocksCredential));
    }

    #[test]
    fn rejects_bad_targets() {
        for bad in [
            "10.0.0.5:443",
            "10.0.0.5/tcp",
            "10.0.0.5:443/icmp",
            "host:443/tcp",
            "0.0.0.0:443/tcp",
            "224.0.0.1:5/udp",
            "10.0.0.5:0/tcp",
            "",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad} accepted");
        }
    }
}
