//! `sallyport demo`: the whole product on one machine, with nothing else
//! installed. Everything here is demo-only and loopback-only.
//!
//! - [`run`]: the orchestration: the list of stages (what starts, in which
//!   order), and tearing it all down again;
//! - `stages`: one function per stage: what it does and what it shows;
//! - `embedded`: the reference broker and gateway in this process (`broker`
//!   feature `server`), which is why this is a crate of its own: the
//!   `sallyport` binary pulls it in only with its `demo` feature, and the
//!   agent library never contains a broker;
//! - `link`: the demo asking its in-process agent, and waiting on it;
//! - `fetch`: pages through the tunnel, the admin call;
//! - `socket`: `--keep-running` serving the agent's control socket;
//! - [`issuer`]: a demo-only OpenID issuer (password + TOTP);
//! - [`app`]: a demo-only web application behind the gateway;
//! - [`policy`]: the two Rego policies, written from this machine's report;
//! - [`signin`]: the demo playing the user's browser at sign-in;
//! - [`store`]: where the demo keeps tokens, away from the real sign-in;
//! - [`narrate`]: the numbered, plain-language narration.

pub mod app;
mod embedded;
mod fetch;
pub mod issuer;
mod link;
pub mod narrate;
pub mod policy;
pub mod run;
pub mod signin;
mod socket;
mod stages;
pub mod store;

pub use run::{DemoError, DemoOptions, run};
