//! Sallyport's access broker.
//!
//! [`api`] holds the wire types of every v1 call (always compiled, serde
//! only, so the agent can depend on it without pulling a server in). The
//! reference broker — HTTP server, SQLite state and WireGuard gateway — sits
//! behind the `server` feature in [`server`]; so is [`gateway_node`], the
//! separate gateway (`sallyport-gateway`) that takes its peers from it.

pub mod api;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "server")]
pub mod gateway_node;
