//! Sallyport's data plane: one userspace WireGuard tunnel per protected
//! application, with no TUN device and no admin rights.
//!
//! - [`core`] is the sans-IO heart: boringtun for WireGuard, smoltcp for the
//!   TCP/IP stack inside the tunnel, and the grant policy. It takes packets
//!   and `now`, and returns packets and deadlines.
//! - [`client`] and [`gateway`] are the tokio drivers that own the sockets:
//!   the client's local TCP/UDP forwards and SOCKS5 listener, the gateway's
//!   UDP socket and its connections to the real targets.
//! - [`local_owner`] decides which local processes may use a client's
//!   listeners: by default only the tunnel process's own user's.
//!
//! See `README.md` in this crate for the packet path and how enforcement works.

pub mod client;
pub mod config;
pub mod core;
mod driver;
pub mod gateway;
pub mod key;
pub mod local_owner;
pub mod socks;

pub use client::{Tunnel, TunnelError, TunnelHandle, TunnelStatus};
pub use config::{
    GatewayConfig, PeerGrant, Protocol, SocksCredential, SocksPassword, StackOptions, Target,
    TunnelConfig,
};
pub use core::gateway::{LimitRefusals, PeerStatus};
pub use core::{CloseReason, DropCounters, HandshakeState};
pub use gateway::{Gateway, GatewayError, GatewayHandle, GatewayStatus};
pub use key::{KeyError, PrivateKey, PublicKey};
pub use local_owner::LocalAccess;
