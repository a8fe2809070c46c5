//! `sallyport demo`: the whole product on one machine, with nothing else
//! installed. Everything here is demo-only and loopback-only.
//!
//! - `run`: the orchestration (what starts, in which order, what is shown;
//!   feature `demo`, on by default: it embeds the reference broker);
//! - [`issuer`]: a demo-only OpenID issuer (password + TOTP);
//! - [`app`]: a demo-only web application behind the gateway;
//! - [`policy`]: the two Rego policies, written from this machine's report;
//! - [`signin`]: the demo playing the user's browser at sign-in;
//! - [`store`]: where the demo keeps tokens, away from the real sign-in;
//! - [`narrate`]: the numbered, plain-language narration.

pub mod app;
pub mod issuer;
pub mod narrate;
pub mod policy;
#[cfg(feature = "demo")]
pub mod run;
pub mod signin;
pub mod store;

#[cfg(feature = "demo")]
pub use run::{DemoError, DemoOptions, run};
