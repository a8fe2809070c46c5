//! `sallyportd`, the device side of Sallyport's privilege split: it owns
//! the device key, measures posture with its privileges, and signs
//! attestations and DPoP proofs for the unprivileged agent, which never
//! sees the private key.
//!
//! - [`keys`]: where the key lives ([`keys::KeyBackend`]; the software
//!   fallback in [`keys::software`], the TPM behind feature `tpm`).
//! - [`protocol`]: the local API's messages (pure, size-bounded).
//! - [`server`]: the service's answers ([`server::Service`]) and its Unix
//!   socket (`server::unix`).
//! - [`client`]: the agent's side, with its check of who answers.
//! - `win_security` (Windows): named pipes with an explicit DACL, and the
//!   account (SID) of the process at the other end; the only `unsafe` code
//!   on Windows, shared by the service and the agent's control pipe.

pub mod client;
pub mod keys;
pub mod protocol;
pub mod server;
#[cfg(windows)]
pub mod win_security;
