//! Who may use a tunnel's local listeners: its TCP forwards and its SOCKS5
//! listener sit on loopback, where every local user's processes can
//! connect. Without a check, one user could reach the applications behind
//! another user's tunnel, with that user's grant. So each accepted
//! connection is traced back to the process at its other end, and only the
//! tunnel process's own user (the agent runs as the signed-in user) gets
//! through ([`LocalAccess::SameUser`], the default).
//!
//! How the owner is found is per OS:
//! - Linux (`linux.rs`): the uid of the client's socket in `/proc/net/tcp`
//!   or `/proc/net/tcp6` (parsed by the pure [`proc_net`]).
//! - Windows (`windows.rs`): the owning PID from `GetExtendedTcpTable`,
//!   then that process's token user (SID), compared with this process's.
//! - Elsewhere (macOS included, `unsupported.rs`): there is no lookup yet,
//!   so `SameUser` refuses every connection (fail closed) and says why; a
//!   deployment that accepts the risk must choose [`LocalAccess::Anyone`]
//!   explicitly.
//!
//! A UDP forward has no connection: the sender of each new flow (a new
//! source address) is traced the same way, through the UDP tables, before
//! its first datagram enters the tunnel ([`UdpSenders`]).
//!
//! Whenever the owner cannot be determined (no row, a socket already
//! closed, an OS error) the connection is refused: unknown is not pass.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

pub mod proc_net;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

#[cfg(not(any(target_os = "linux", windows)))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows)))]
use unsupported as os;

/// Which local processes may use a tunnel's TCP forwards and SOCKS5
/// listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LocalAccess {
    /// Only processes running as the tunnel process's own user; a
    /// connection whose owner cannot be determined is refused. On OSes
    /// without an owner lookup (macOS today) this refuses everything.
    #[default]
    SameUser,
    /// Any local process, as a plain loopback listener would. For tests
    /// and demos, or a single-user machine whose operator accepts that any
    /// local account could use the tunnel.
    Anyone,
}

/// Why a local connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Linux: the client's socket belongs to another uid.
    #[error("the connecting process runs as uid {peer}, not as the tunnel's uid {own}")]
    OtherUid {
        /// The client socket's owner.
        peer: u32,
        /// This process's effective uid.
        own: u32,
    },
    /// Windows: the owning process runs as another user (SID).
    #[error("the connecting process (pid {pid}) runs as another user than the tunnel")]
    OtherUser {
        /// The process that owns the client's socket.
        pid: u32,
    },
    /// The socket tables did not name an owner.
    #[error("cannot tell which process connected: {0}")]
    Lookup(#[from] proc_net::Miss),
    /// Reading the socket table or the process's identity failed.
    #[error("cannot determine who connected: {what}: {source}")]
    Io {
        /// What was being read.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// This OS has no owner lookup (yet).
    #[error(
        "this OS offers no owner lookup for local connections, so only LocalAccess::Anyone \
         could accept them"
    )]
    Unsupported,
}

impl LocalAccess {
    /// Whether the connection from `client` (the accepted stream's
    /// `peer_addr`) to `listener` (its `local_addr`) may use the tunnel.
    /// Blocking: it reads the OS's socket tables.
    pub fn check(self, client: SocketAddr, listener: SocketAddr) -> Result<(), Refusal> {
        match self {
            LocalAccess::Anyone => Ok(()),
            LocalAccess::SameUser => os::check_same_user(client, listener),
        }
    }

    /// Whether the UDP datagram from `sender` to the forward on `listener`
    /// may start a flow. Blocking: it reads the OS's socket tables.
    pub fn check_udp(self, sender: SocketAddr, listener: SocketAddr) -> Result<(), Refusal> {
        match self {
            LocalAccess::Anyone => Ok(()),
            LocalAccess::SameUser => os::check_udp_sender(sender, listener),
        }
    }

    /// Whether accepted connections must wait for a lookup.
    pub(crate) fn needs_lookup(self) -> bool {
        self != LocalAccess::Anyone
    }
}

/// The stream back if this policy admits its peer; otherwise it is reset at
/// once (SO_LINGER 0, so the client sees the refusal and no byte it sent is
/// read) and the reason logged. The lookup runs on the blocking pool so the
/// tunnel's loop never waits for it.
pub(crate) async fn admit(access: LocalAccess, stream: TcpStream, what: &str) -> Option<TcpStream> {
    if !access.needs_lookup() {
        return Some(stream);
    }
    let (client, listener) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(c), Ok(l)) => (c, l),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(what, error = %e, "local connection refused: its addresses are unknown");
            let _ = stream.set_zero_linger();
            return None;
        }
    };
    let verdict = tokio::task::spawn_blocking(move || access.check(client, listener)).await;
    match verdict {
        Ok(Ok(())) => Some(stream),
        Ok(Err(refusal)) => {
            tracing::warn!(what, %client, reason = %refusal, "local connection refused");
            let _ = stream.set_zero_linger();
            None
        }
        Err(e) => {
            tracing::warn!(what, %client, error = %e, "local connection refused: the owner lookup failed");
            let _ = stream.set_zero_linger();
            None
        }
    }
}

/// How long a refused UDP sender stays refused without a new lookup, so a
/// sender in a loop does not make the tunnel read the socket tables per
/// datagram.
const UDP_REFUSAL_MEMORY: Duration = Duration::from_secs(10);

/// At most this many refused senders are remembered; beyond, the oldest
/// half is forgotten (they are looked up again if they come back).
const UDP_REFUSALS_KEPT: usize = 1024;

/// The admission of UDP senders on one forward: a new source address is
/// looked up once when its first datagram arrives (inline: reading the
/// UDP table takes tens of microseconds, and only a new flow pays it);
/// admitted ones become flows, refused ones are remembered for a while.
#[derive(Debug)]
pub(crate) struct UdpSenders {
    access: LocalAccess,
    refused: HashMap<SocketAddr, Instant>,
}

impl UdpSenders {
    pub(crate) fn new(access: LocalAccess) -> Self {
        Self {
            access,
            refused: HashMap::new(),
        }
    }

    /// Whether a new flow from `sender` to the forward on `listener` may
    /// open.
    pub(crate) fn admit(&mut self, sender: SocketAddr, listener: SocketAddr, now: Instant) -> bool {
        if !self.access.needs_lookup() {
            return true;
        }
        if let Some(at) = self.refused.get(&sender) {
            if now.saturating_duration_since(*at) < UDP_REFUSAL_MEMORY {
                return false;
            }
            self.refused.remove(&sender);
        }
        match self.access.check_udp(sender, listener) {
            Ok(()) => true,
            Err(refusal) => {
                tracing::warn!(%sender, reason = %refusal, "UDP datagram refused at a forward");
                if self.refused.len() >= UDP_REFUSALS_KEPT {
                    let mut ages: Vec<Instant> = self.refused.values().copied().collect();
                    ages.sort_unstable();
                    let cut = ages[ages.len() / 2];
                    self.refused.retain(|_, at| *at > cut);
                }
                self.refused.insert(sender, now);
                false
            }
        }
    }
}
