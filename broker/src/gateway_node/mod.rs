//! `sallyport-gateway`: a WireGuard gateway in its own process, placed in
//! the network segment of the apps it serves, that takes its peers from
//! the brokers (`[[gateways]]` on the broker side, see
//! [`crate::server::remote_gateways`]).
//!
//! It keeps one sync stream open to a broker (any replica: they relay
//! grants to each other) and installs what it says: a full peer set on
//! every (re)connection, then each change. It fails closed: once it has
//! been cut off from every broker for `disconnected_grace_seconds`, it
//! drops every peer (it would miss revocations), and takes them back from
//! the next full set.
//!
//! Layout: [`config`] (the file), [`peers`] (pure: what a sync line changes
//! at the gateway), [`lines`] (pure: the stream split into lines), [`run`]
//! (the I/O loop).

pub mod config;
pub mod lines;
pub mod peers;
pub mod run;

pub use config::NodeConfig;
pub use run::run;
