//! `sallyportd`, the device side of Sallyport's privilege split: it owns
//! the device key, measures posture with its privileges, and signs
//! attestations and DPoP proofs for the unprivileged agent, which never
//! sees the private key.
//!
//! - [`keys`]: where the key lives ([`keys::KeyBackend`]; the software
//!   fallback in [`keys::software`], the TPM behind feature `tpm`, CNG's
//!   Platform Crypto Provider on Windows (`keys::ncrypt`) and the Secure
//!   Enclave on macOS (`keys::secure_enclave`)).
//! - [`protocol`]: the local API's messages (pure, size-bounded).
//! - [`server`]: the service's answers ([`server::Service`]) and its Unix
//!   socket (`server::unix`).
//! - [`client`]: the agent's side, with its check of who answers.
//! - [`updater`]: the signed update feed, checked and installed with the
//!   platform's installer, under IT's policy.
//! - `win_security` (Windows): named pipes with an explicit DACL, and the
//!   account (SID) of the process at the other end; shared by the service
//!   and the agent's control pipe. It and `keys::ncrypt` (CNG's calls,
//!   kept with their backend) hold the only `unsafe` code on Windows.

pub mod client;
pub mod keys;
pub mod protocol;
pub mod server;
pub mod updater;
#[cfg(windows)]
pub mod win_security;
