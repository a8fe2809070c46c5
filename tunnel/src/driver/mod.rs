//! Tokio plumbing shared by the client and the gateway drivers: moving bytes
//! between OS sockets and in-tunnel sockets, and the UDP socket setup.

pub(crate) mod bridge;
pub(crate) mod udp;
