//! Sallyport posture engine.
//!
//! Measures the health of this device ([`collect`]), and evaluates a Rego
//! policy over the measurements ([`policy`]). A measurement that cannot be
//! made is `unknown` with its reason — never a guessed pass.
//!
//! Layout: [`check`] and [`report`] are the data model; [`parse`] holds pure
//! parsers for every OS (compiled everywhere, tested on captured outputs);
//! [`collect`] holds the per-OS shims that feed them through [`probe`].

pub mod attestation;
pub mod cache;
pub mod check;
pub mod collect;
pub mod dpop;
pub mod parse;
pub mod pending;
pub mod policy;
pub mod probe;
pub mod report;

pub use check::{Check, CheckId, Status, Unknown, UnknownKind};
pub use report::{Platform, Report};
