//! `sallyportd`, the device side of Sallyport's privilege split: it owns
//! the device key, measures posture with its privileges, and signs
//! attestations and DPoP proofs for the unprivileged agent, which never
//! sees the private key.

pub mod keys;
