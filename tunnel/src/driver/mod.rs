//! Tokio plumbing shared by the client and the gateway drivers.
//!
//! Both sides are one task around a sans-IO core, and most of what that task
//! does is the same on either side: the poll loop and its WireGuard socket
//! (`poll_loop`, `udp`), moving bytes between OS sockets and in-tunnel
//! sockets (`bridge`), and reading plain UDP sockets (`flow`). Keeping it
//! here leaves `crate::client` and `crate::gateway` with only what differs.

pub(crate) mod bridge;
pub(crate) mod flow;
pub(crate) mod poll_loop;
pub(crate) mod ready;
pub(crate) mod udp;

pub(crate) use poll_loop::{Driver, Side};
