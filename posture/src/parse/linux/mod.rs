//! Parsers for Linux sources (compiled on every OS).

pub mod apt;
pub mod block;
pub mod dnf;
pub mod firewall;
pub mod gsettings;
pub mod identity;
pub mod kernel;
pub mod os_release;
pub mod realm;
pub mod secure_boot;
