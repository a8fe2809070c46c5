//! The Sallyport agent: identity, posture, the broker client and the tunnel
//! supervisor — what the `sallyport` CLI runs, and what the tray app hosts
//! in-process ([`host`]) when no agent is running.

pub mod broker_client;
/// The settings (the `sallyport-settings` crate, shared with the device
/// service): schema, user file and managed configuration merged.
pub use settings as config;
pub mod connectivity;
pub mod control;
pub mod device_key;
/// The device service's library (client, protocol, and its code for the
/// in-process link), re-exported so front ends and tests name one crate.
pub use service as device_service;
pub mod diagnostics;
pub mod host;
pub mod identity;
pub mod logs;
pub mod runtime;
pub mod secrets;
pub mod supervisor;
pub mod timeline;
pub mod triggers;
