//! The Sallyport agent: what the `sallyport` CLI (and later the tray app)
//! runs. For now it presents the posture engine; identity, the broker client
//! and the tunnel supervisor join it as their issues land.

pub mod broker_client;
pub mod config;
pub mod control;
pub mod demo;
pub mod device_key;
pub mod diagnostics;
pub mod identity;
pub mod posture_view;
pub mod runtime;
pub mod secrets;
pub mod status_view;
pub mod supervisor;
