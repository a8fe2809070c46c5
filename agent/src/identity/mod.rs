//! Sign-in (docs/ARCHITECTURE.md flow 1): OIDC with enforced MFA, tokens only in the
//! OS keyring.
//!
//! Pure parts, tested without sockets or clocks:
//! - [`validate`]: ID token validation (OIDC Core 3.1.3.7),
//! - [`mfa`]: does the token show a second factor, recently enough,
//! - [`callback`]: the loopback redirect request,
//! - [`device`]: RFC 8628 polling,
//! - [`session`]: the session state machine and RFC 9470 challenges.
//!
//! Thin I/O drivers: [`client`] (HTTP to the IdP), [`loopback`] (the
//! one-shot redirect listener), [`browser`] (the system browser), [`store`]
//! (the OS keyring) and [`manager`] (ties them to the CLI and supervisor);
//! [`last_sign_in`] remembers where the CLI signed in (no secrets).

pub mod browser;
pub mod callback;
pub mod client;
pub mod device;
pub mod last_sign_in;
pub mod loopback;
pub mod manager;
pub mod mfa;
pub mod session;
pub mod store;
pub mod validate;

use std::time::Duration;

use url::Url;

pub use client::IdentityClient;
pub use manager::{Identity, WhoAmI};

/// How the agent talks to the IdP. Set by IT (managed configuration) or,
/// for now, by `sallyport login --issuer ... --client-id ...` / environment.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The issuer URL; discovery starts here. HTTPS, except loopback.
    pub issuer: Url,
    /// The public client id registered for Sallyport.
    pub client_id: String,
    /// Scopes to request.
    pub scopes: Vec<String>,
    /// `acr_values` to request (what IT's IdP calls MFA).
    pub acr_values: Vec<String>,
    /// `max_age` to request and the oldest accepted `auth_time`.
    pub max_auth_age: Option<Duration>,
    /// What counts as a second factor.
    pub mfa: mfa::MfaPolicy,
    /// RFC 8707 resource to request access tokens for (the broker).
    pub resource: Option<String>,
    /// Allowed clock difference with the IdP.
    pub clock_skew: Duration,
    /// One HTTP request to the IdP may take this long.
    pub http_timeout: Duration,
    /// The user has this long to finish signing in.
    pub login_timeout: Duration,
    /// Refresh this long before the access token expires.
    pub refresh_margin: Duration,
}

impl IdentityConfig {
    /// Defaults for `issuer` and `client_id`.
    pub fn new(issuer: Url, client_id: impl Into<String>) -> Self {
        Self {
            issuer,
            client_id: client_id.into(),
            scopes: ["openid", "profile", "email", "offline_access"]
                .map(str::to_owned)
                .to_vec(),
            acr_values: Vec::new(),
            max_auth_age: None,
            mfa: mfa::MfaPolicy::default(),
            resource: None,
            clock_skew: Duration::from_secs(60),
            http_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(300),
            refresh_margin: Duration::from_secs(60),
        }
    }

    /// The MFA policy with `max_auth_age` applied.
    pub fn mfa_policy(&self) -> mfa::MfaPolicy {
        mfa::MfaPolicy {
            max_auth_age: self.max_auth_age.map(secs),
            ..self.mfa.clone()
        }
    }

    /// The keyring account name of this issuer + client.
    pub fn store_account(&self) -> String {
        format!(
            "{}|{}",
            self.issuer.as_str().trim_end_matches('/'),
            self.client_id
        )
    }
}

pub(crate) fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Whether `url` may be used without TLS: loopback only (tests, local IdPs).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Requires HTTPS, except for loopback.
pub fn require_secure(url: &Url, what: &str) -> Result<(), IdentityError> {
    if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url)) {
        Ok(())
    } else {
        Err(IdentityError::Insecure {
            what: what.to_owned(),
            url: url.to_string(),
        })
    }
}

/// Everything sign-in can fail with, in words a user (or IT) can act on.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Missing or wrong settings.
    #[error("sign-in is not configured correctly: {0}")]
    Config(String),
    /// An IdP URL without TLS.
    #[error("the {what} {url} does not use HTTPS; refusing to send credentials over it")]
    Insecure {
        /// Which URL.
        what: String,
        /// The URL.
        url: String,
    },
    /// The IdP could not be reached or answered nonsense.
    #[error("cannot reach the identity provider at {url} ({what}): {message}")]
    Unreachable {
        /// Which step.
        what: &'static str,
        /// Where.
        url: String,
        /// Details.
        message: String,
    },
    /// The IdP took too long.
    #[error(
        "the identity provider at {url} did not answer within {seconds} s ({what}); try again later or ask IT whether it is down"
    )]
    Timeout {
        /// Which step.
        what: &'static str,
        /// Where.
        url: String,
        /// The limit.
        seconds: u64,
    },
    /// The IdP answered with something that is not what the protocol says.
    #[error("the identity provider sent an invalid {what}: {message}")]
    BadResponse {
        /// Which document.
        what: &'static str,
        /// Details.
        message: String,
    },
    /// Discovery named another issuer (mix-up / misconfiguration).
    #[error(
        "the identity provider's metadata names issuer {found:?}, but Sallyport is configured for {expected:?}"
    )]
    IssuerMismatch {
        /// Configured.
        expected: String,
        /// Advertised.
        found: String,
    },
    /// The IdP refused a request with an OAuth error.
    #[error("the identity provider refused the {what}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// Which request.
        what: &'static str,
        /// OAuth error code.
        error: String,
        /// Description.
        description: Option<String>,
    },
    /// The ID token failed validation.
    #[error(transparent)]
    Token(#[from] validate::TokenError),
    /// No second factor, or too old.
    #[error(transparent)]
    Mfa(#[from] mfa::MfaError),
    /// The redirect went wrong.
    #[error(transparent)]
    Callback(#[from] callback::CallbackError),
    /// The device flow ended without tokens.
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    /// The user did not finish in time.
    #[error("the sign-in was not completed within {seconds} s; run `sallyport login` again")]
    LoginTimedOut {
        /// The limit.
        seconds: u64,
    },
    /// The IdP does not offer a needed endpoint.
    #[error("the identity provider does not offer {0}")]
    Unsupported(&'static str),
    /// The system browser could not be opened.
    #[error(
        "cannot open a web browser ({0}); open the address above by hand, or use `sallyport login --no-browser`"
    )]
    Browser(String),
    /// The loopback listener could not start.
    #[error("cannot listen for the sign-in redirect on 127.0.0.1: {0}")]
    Listener(String),
    /// The keyring failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Nothing stored.
    #[error("not signed in; run `sallyport login`")]
    NotSignedIn,
    /// Tokens held but unusable.
    #[error("{0}")]
    NeedsReauth(session::ReauthReason),
}

impl IdentityError {
    /// Whether this failure is the IdP rejecting a grant (as opposed to a
    /// network problem worth retrying).
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            IdentityError::Unreachable { .. } | IdentityError::Timeout { .. }
        )
    }
}
