//! `sallyport demo`: the whole product on one machine, with nothing else
//! installed. Everything here is demo-only and loopback-only.

pub mod issuer;
