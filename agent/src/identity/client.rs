//! The HTTP driver: discovery, JWKS, authorization code + PKCE, device
//! grant, refresh, revocation. Every decision is delegated to the pure
//! modules; this file only moves bytes, with bounded time and size.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use oauth2::{
    AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope, TokenUrl,
    basic::BasicClient,
};
use serde::Deserialize;
use url::Url;

use super::device::{DevicePoller, PollOutcome, PollStep, outcome_for_error};
use super::loopback::Listener;
use super::mfa::{MfaEvidence, check_auth_age, check_mfa};
use super::validate::{DEFAULT_ALGORITHMS, Expectations, IdTokenClaims, TokenError};
use super::{IdentityConfig, IdentityError, require_secure, secs, validate};
use crate::secrets::Secret;

/// The largest IdP response we read.
const MAX_BODY: usize = 1024 * 1024;
/// The oldest `iat` accepted for a token we just received.
const MAX_IAT_AGE: i64 = 600;
/// The path of the loopback redirect.
pub const CALLBACK_PATH: &str = "/callback";

/// The IdP's metadata (RFC 8414 / OIDC Discovery), the fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    /// Must equal the configured issuer exactly.
    pub issuer: String,
    /// Where the browser goes.
    pub authorization_endpoint: Url,
    /// Where codes become tokens.
    pub token_endpoint: Url,
    /// The signing keys.
    pub jwks_uri: Url,
    /// RFC 8628.
    #[serde(default)]
    pub device_authorization_endpoint: Option<Url>,
    /// RP-initiated logout.
    #[serde(default)]
    pub end_session_endpoint: Option<Url>,
    /// RFC 7009.
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    /// PKCE methods.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}

/// Tokens from one login or refresh. Debug redacts every token.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Bearer token for the broker.
    pub access_token: Secret,
    /// For silent renewal, when the IdP issued one.
    pub refresh_token: Option<Secret>,
    /// The ID token (kept for `id_token_hint` at logout).
    pub id_token: Secret,
    /// Access token expiry, Unix seconds.
    pub expires_at: i64,
}

/// A completed, validated, MFA-checked login.
#[derive(Debug, Clone)]
pub struct LoginResult {
    /// The tokens.
    pub tokens: Tokens,
    /// The validated ID token claims.
    pub claims: IdTokenClaims,
    /// The second factor shown.
    pub mfa: MfaEvidence,
}

/// Extra authorization parameters, e.g. from an RFC 9470 step-up challenge.
#[derive(Debug, Clone, Default)]
pub struct AuthOverrides {
    /// Replaces the configured `acr_values`.
    pub acr_values: Option<Vec<String>>,
    /// Replaces the configured `max_age`.
    pub max_age: Option<u64>,
}

/// What the user must see to finish a device sign-in.
#[derive(Debug, Clone)]
pub struct DevicePrompt {
    /// The code to type.
    pub user_code: String,
    /// Where to type it.
    pub verification_uri: String,
    /// A link with the code filled in, when offered.
    pub verification_uri_complete: Option<String>,
    /// Seconds until the code expires.
    pub expires_in: u64,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Secret,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    id_token: Option<Secret>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAuthBody {
    device_code: Secret,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

/// The answer of a form POST: success body, or an OAuth error.
enum Posted<T> {
    Ok(T),
    OAuthError(ErrorBody),
}

/// Talks to one IdP. Create with [`IdentityClient::discover`].
#[derive(Debug)]
pub struct IdentityClient {
    config: IdentityConfig,
    http: reqwest::Client,
    metadata: ProviderMetadata,
    keys: Mutex<Vec<Jwk>>,
    jwks_fetches: AtomicUsize,
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl IdentityClient {
    /// Fetches the IdP's metadata and keys.
    pub async fn discover(config: IdentityConfig) -> Result<Self, IdentityError> {
        require_secure(&config.issuer, "issuer")?;
        if config.client_id.is_empty() {
            return Err(IdentityError::Config("the client id is empty".to_owned()));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            // Never follow redirects from the IdP's API endpoints (SSRF, mix-up).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sallyport/", env!("CARGO_PKG_VERSION")));
        if super::is_loopback(&config.issuer) {
            // A loopback issuer is on this machine: never through a proxy.
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|err| IdentityError::Config(format!("HTTP client: {err}")))?;
        let metadata = discover_metadata(&http, &config).await?;
        let client = Self {
            config,
            http,
            metadata,
            keys: Mutex::new(Vec::new()),
            jwks_fetches: AtomicUsize::new(0),
        };
        client.refresh_keys().await?;
        Ok(client)
    }

    /// The configuration.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// The discovered metadata.
    pub fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    /// How often the JWKS was fetched (tests check the single refetch).
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    async fn refresh_keys(&self) -> Result<Vec<Jwk>, IdentityError> {
        self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
        let url = self.metadata.jwks_uri.clone();
        let body = get_bytes(&self.http, &url, "key set (JWKS)", self.config.http_timeout).await?;
        let keys = validate::parse_jwks(&body).map_err(|message| IdentityError::BadResponse {
            what: "key set (JWKS)",
            message,
        })?;
        if keys.is_empty() {
            return Err(IdentityError::BadResponse {
                what: "key set (JWKS)",
                message: "it holds no usable signing key".to_owned(),
            });
        }
        if let Ok(mut cached) = self.keys.lock() {
            cached.clone_from(&keys);
        }
        Ok(keys)
    }

    /// Validates an ID token against the IdP's keys; an unknown `kid`
    /// refetches the JWKS once (key rotation), then fails closed.
    pub async fn validate_id_token(
        &self,
        id_token: &Secret,
        nonce: Option<&str>,
        access_token: Option<&Secret>,
    ) -> Result<IdTokenClaims, IdentityError> {
        let expect = Expectations {
            issuer: &self.metadata.issuer,
            client_id: &self.config.client_id,
            extra_audiences: &[],
            nonce,
            access_token: access_token.map(Secret::expose),
            algorithms: DEFAULT_ALGORITHMS,
            skew: secs(self.config.clock_skew),
            max_iat_age: MAX_IAT_AGE,
            now: now_unix(),
        };
        let cached = self.keys.lock().map(|k| k.clone()).unwrap_or_default();
        match validate::validate_id_token(id_token.expose(), &cached, &expect) {
            Err(TokenError::UnknownKey { kid }) => {
                tracing::info!(%kid, "unknown signing key; refetching the JWKS once");
                let keys = self.refresh_keys().await?;
                let expect = Expectations {
                    now: now_unix(),
                    ..expect
                };
                Ok(validate::validate_id_token(
                    id_token.expose(),
                    &keys,
                    &expect,
                )?)
            }
            other => Ok(other?),
        }
    }

    /// The checks every login's ID token passes: full validation, then the
    /// MFA policy (second factor shown, `auth_time` recent enough).
    pub async fn check_login_token(
        &self,
        id_token: &Secret,
        nonce: Option<&str>,
        access_token: Option<&Secret>,
    ) -> Result<(IdTokenClaims, MfaEvidence), IdentityError> {
        let claims = self
            .validate_id_token(id_token, nonce, access_token)
            .await?;
        let mfa = check_mfa(&claims, &self.config.mfa_policy(), now_unix())?;
        Ok((claims, mfa))
    }

    /// Validates the token response of a login and applies the MFA policy.
    async fn finish_login(
        &self,
        body: TokenBody,
        nonce: Option<&Secret>,
        overrides: &AuthOverrides,
        started: i64,
    ) -> Result<LoginResult, IdentityError> {
        let tokens = tokens_from(&body, None)?;
        let (claims, mfa) = self
            .check_login_token(
                &tokens.id_token,
                nonce.map(Secret::expose),
                Some(&tokens.access_token),
            )
            .await?;
        let now = now_unix();
        if let Some(max_age) = overrides.max_age {
            // Step-up asked for a fresh authentication: auth_time must be
            // no older than the request (+ skew), whatever the policy says.
            let allowed = i64::try_from(max_age)
                .unwrap_or(i64::MAX)
                .max(now - started)
                .saturating_add(secs(self.config.clock_skew));
            check_auth_age(claims.auth_time, Some(allowed), now)?;
        }
        tracing::info!(sub = %claims.sub, method = %mfa.method, "sign-in validated");
        Ok(LoginResult {
            tokens,
            claims,
            mfa,
        })
    }

    fn oauth_client(
        &self,
        redirect: Option<&Url>,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        IdentityError,
    > {
        let client = BasicClient::new(ClientId::new(self.config.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(
                self.metadata.authorization_endpoint.clone(),
            ))
            .set_token_uri(TokenUrl::from_url(self.metadata.token_endpoint.clone()));
        Ok(match redirect {
            Some(url) => client.set_redirect_uri(RedirectUrl::from_url(url.clone())),
            None => client,
        })
    }

    /// Authorization code + PKCE (S256) in the system browser with a
    /// one-shot loopback redirect (RFC 8252). `open` shows the URL to the
    /// user: it opens the browser (or, in tests, drives the login).
    pub async fn login_browser(
        &self,
        open: &(dyn Fn(&Url) -> Result<(), String> + Sync),
        overrides: &AuthOverrides,
    ) -> Result<LoginResult, IdentityError> {
        let started = now_unix();
        let listener = Listener::bind().await?;
        let redirect = listener.redirect_uri(CALLBACK_PATH)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random();
        let nonce = Secret::new(CsrfToken::new_random().secret().clone());
        let client = self.oauth_client(Some(&redirect))?;
        let state_for_url = state.clone();
        let mut request = client
            .authorize_url(move || state_for_url)
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.expose());
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let acr_values = overrides
            .acr_values
            .clone()
            .unwrap_or_else(|| self.config.acr_values.clone());
        if !acr_values.is_empty() {
            request = request.add_extra_param("acr_values", acr_values.join(" "));
        }
        let max_age = overrides
            .max_age
            .or(self.config.max_auth_age.map(|d| d.as_secs()));
        if let Some(max_age) = max_age {
            request = request.add_extra_param("max_age", max_age.to_string());
        }
        if let Some(resource) = &self.config.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let (auth_url, _) = request.url();
        open(&auth_url).map_err(IdentityError::Browser)?;
        let state = Secret::new(state.secret().clone());
        let code = listener
            .wait(
                CALLBACK_PATH,
                &state,
                &self.metadata.issuer,
                self.metadata
                    .authorization_response_iss_parameter_supported
                    .unwrap_or(false),
                self.config.login_timeout,
            )
            .await?;
        let verifier = Secret::new(verifier.secret().clone());
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", redirect.as_str()),
            ("client_id", self.config.client_id.as_str()),
            ("code_verifier", verifier.expose()),
        ];
        if let Some(resource) = &self.config.resource {
            form.push(("resource", resource));
        }
        let body = match self
            .post_form::<TokenBody>(&self.metadata.token_endpoint, &form, "token response")
            .await?
        {
            Posted::Ok(body) => body,
            Posted::OAuthError(err) => return Err(refused("sign-in (code exchange)", err)),
        };
        self.finish_login(body, Some(&nonce), overrides, started)
            .await
    }

    /// RFC 8628 device authorization grant: `show` displays the code; then
    /// polls honouring `interval` and `slow_down` until `expires_in`.
    pub async fn login_device(
        &self,
        show: &(dyn Fn(&DevicePrompt) + Sync),
    ) -> Result<LoginResult, IdentityError> {
        let started = now_unix();
        let endpoint = self.metadata.device_authorization_endpoint.clone().ok_or(
            IdentityError::Unsupported(
                "the device sign-in (RFC 8628 device authorization endpoint)",
            ),
        )?;
        require_secure(&endpoint, "device authorization endpoint")?;
        let scope = self.config.scopes.join(" ");
        let acr = self.config.acr_values.join(" ");
        let max_age = self.config.max_auth_age.map(|d| d.as_secs().to_string());
        let mut form = vec![
            ("client_id", self.config.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        if !acr.is_empty() {
            form.push(("acr_values", &acr));
        }
        if let Some(max_age) = &max_age {
            form.push(("max_age", max_age));
        }
        if let Some(resource) = &self.config.resource {
            form.push(("resource", resource));
        }
        let device = match self
            .post_form::<DeviceAuthBody>(&endpoint, &form, "device authorization response")
            .await?
        {
            Posted::Ok(body) => body,
            Posted::OAuthError(err) => return Err(refused("device sign-in", err)),
        };
        show(&DevicePrompt {
            user_code: device.user_code.clone(),
            verification_uri: device.verification_uri.clone(),
            verification_uri_complete: device.verification_uri_complete.clone(),
            expires_in: device.expires_in,
        });
        let issued = Instant::now();
        let mut poller = DevicePoller::new(device.expires_in, device.interval);
        let mut step = poller.start();
        let poll_form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device.device_code.expose()),
            ("client_id", self.config.client_id.as_str()),
        ];
        loop {
            match step {
                PollStep::WaitThenPoll(wait) => tokio::time::sleep(wait).await,
                PollStep::Stop(err) => return Err(err.into()),
                PollStep::Done => {
                    return Err(IdentityError::BadResponse {
                        what: "device flow",
                        message: "finished without tokens".to_owned(),
                    });
                }
            }
            let outcome = self
                .post_form::<TokenBody>(&self.metadata.token_endpoint, &poll_form, "token response")
                .await;
            let elapsed = issued.elapsed();
            step = match outcome {
                Ok(Posted::Ok(body)) => {
                    return self
                        .finish_login(body, None, &AuthOverrides::default(), started)
                        .await;
                }
                Ok(Posted::OAuthError(err)) => {
                    poller.on_outcome(outcome_for_error(&err.error), elapsed)
                }
                // A transient network error while polling: keep polling
                // until the code expires (the poller bounds it).
                Err(err @ (IdentityError::Unreachable { .. } | IdentityError::Timeout { .. })) => {
                    tracing::warn!(error = %err, "device flow poll failed; retrying");
                    poller.on_outcome(PollOutcome::Pending, elapsed)
                }
                Err(err) => return Err(err),
            };
        }
    }

    /// Renews tokens with the refresh token. A rotated refresh token
    /// replaces the old one; a new ID token must be for the same user.
    pub async fn refresh(
        &self,
        tokens: &Tokens,
        previous: &IdTokenClaims,
    ) -> Result<(Tokens, IdTokenClaims), IdentityError> {
        let refresh_token = tokens
            .refresh_token
            .as_ref()
            .ok_or(IdentityError::NeedsReauth(
                super::session::ReauthReason::Expired,
            ))?;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", self.config.client_id.as_str()),
        ];
        if let Some(resource) = &self.config.resource {
            form.push(("resource", resource));
        }
        let body = match self
            .post_form::<TokenBody>(&self.metadata.token_endpoint, &form, "token response")
            .await?
        {
            Posted::Ok(body) => body,
            Posted::OAuthError(err) => return Err(refused("session renewal (refresh)", err)),
        };
        let new = tokens_from(&body, Some(tokens))?;
        let claims = if body.id_token.is_some() {
            let mut claims = self
                .validate_id_token(&new.id_token, None, Some(&new.access_token))
                .await?;
            if claims.sub != previous.sub {
                return Err(IdentityError::BadResponse {
                    what: "refreshed ID token",
                    message: "it names a different user".to_owned(),
                });
            }
            // Refresh does not re-authenticate: keep the original evidence
            // when the new token omits it.
            if claims.amr.is_none() {
                claims.amr.clone_from(&previous.amr);
            }
            if claims.acr.is_none() {
                claims.acr.clone_from(&previous.acr);
            }
            if claims.auth_time.is_none() {
                claims.auth_time = previous.auth_time;
            }
            claims
        } else {
            previous.clone()
        };
        check_mfa(&claims, &self.config.mfa_policy(), now_unix())?;
        Ok((new, claims))
    }

    /// Revokes the refresh token (RFC 7009) when the IdP offers revocation,
    /// and returns the RP-initiated logout URL when it offers one.
    pub async fn logout(&self, tokens: &Tokens) -> Result<Option<Url>, IdentityError> {
        if let (Some(endpoint), Some(refresh)) =
            (&self.metadata.revocation_endpoint, &tokens.refresh_token)
        {
            require_secure(endpoint, "revocation endpoint")?;
            let form = [
                ("token", refresh.expose()),
                ("token_type_hint", "refresh_token"),
                ("client_id", self.config.client_id.as_str()),
            ];
            let response = self.http.post(endpoint.clone()).form(&form).send().await;
            match response {
                Ok(r) if r.status().is_success() => tracing::info!("refresh token revoked"),
                Ok(r) => tracing::warn!(status = %r.status(), "refresh token revocation refused"),
                Err(err) => tracing::warn!(error = %err, "refresh token revocation failed"),
            }
        }
        Ok(self.metadata.end_session_endpoint.clone().map(|mut url| {
            url.query_pairs_mut()
                .append_pair("client_id", &self.config.client_id)
                .append_pair("id_token_hint", tokens.id_token.expose());
            url
        }))
    }

    async fn post_form<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        what: &'static str,
    ) -> Result<Posted<T>, IdentityError> {
        require_secure(url, "token endpoint")?;
        let response = self
            .http
            .post(url.clone())
            .header("accept", "application/json")
            .form(form)
            .send()
            .await
            .map_err(|err| http_error(&err, url, what, self.config.http_timeout))?;
        let status = response.status();
        let body = read_limited(response, url, what, self.config.http_timeout).await?;
        if status.is_success() {
            return serde_json::from_slice::<T>(&body)
                .map(Posted::Ok)
                .map_err(|_| IdentityError::BadResponse {
                    what,
                    message: format!("HTTP {status} with a body that is not the expected JSON"),
                });
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(err) => Ok(Posted::OAuthError(err)),
            Err(_) => Err(IdentityError::BadResponse {
                what,
                message: format!("HTTP {status} without an OAuth error"),
            }),
        }
    }
}

fn refused(what: &'static str, err: ErrorBody) -> IdentityError {
    IdentityError::Refused {
        what,
        error: err.error.chars().take(100).collect(),
        description: err.error_description.map(|d| d.chars().take(300).collect()),
    }
}

fn tokens_from(body: &TokenBody, previous: Option<&Tokens>) -> Result<Tokens, IdentityError> {
    if let Some(kind) = &body.token_type
        && !kind.eq_ignore_ascii_case("bearer")
        && !kind.eq_ignore_ascii_case("dpop")
    {
        return Err(IdentityError::BadResponse {
            what: "token response",
            message: format!("unexpected token type {kind:?}"),
        });
    }
    let id_token = match (&body.id_token, previous) {
        (Some(token), _) => token.clone(),
        (None, Some(previous)) => previous.id_token.clone(),
        (None, None) => {
            return Err(IdentityError::BadResponse {
                what: "token response",
                message: "no ID token (is the `openid` scope allowed for this client?)".to_owned(),
            });
        }
    };
    let lifetime = i64::try_from(body.expires_in.unwrap_or(300)).unwrap_or(300);
    Ok(Tokens {
        access_token: body.access_token.clone(),
        refresh_token: body
            .refresh_token
            .clone()
            .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
        id_token,
        expires_at: now_unix().saturating_add(lifetime),
    })
}

fn http_error(
    err: &reqwest::Error,
    url: &Url,
    what: &'static str,
    timeout: Duration,
) -> IdentityError {
    let url = without_query(url);
    if err.is_timeout() {
        IdentityError::Timeout {
            what,
            url,
            seconds: timeout.as_secs(),
        }
    } else {
        // reqwest's Display names the URL; ours has no secrets in the
        // path, and the query was stripped above.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            message = format!("{message}: {inner}");
            source = inner.source();
        }
        IdentityError::Unreachable { what, url, message }
    }
}

fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

async fn read_limited(
    mut response: reqwest::Response,
    url: &Url,
    what: &'static str,
    timeout: Duration,
) -> Result<Vec<u8>, IdentityError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| http_error(&err, url, what, timeout))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(IdentityError::BadResponse {
                what,
                message: "the response is too large".to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn get_bytes(
    http: &reqwest::Client,
    url: &Url,
    what: &'static str,
    timeout: Duration,
) -> Result<Vec<u8>, IdentityError> {
    require_secure(url, what)?;
    let response = http
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|err| http_error(&err, url, what, timeout))?;
    let status = response.status();
    if !status.is_success() {
        return Err(IdentityError::Unreachable {
            what,
            url: without_query(url),
            message: format!("HTTP {status}"),
        });
    }
    read_limited(response, url, what, timeout).await
}

/// OIDC discovery, falling back to RFC 8414's well-known path.
async fn discover_metadata(
    http: &reqwest::Client,
    config: &IdentityConfig,
) -> Result<ProviderMetadata, IdentityError> {
    let issuer = config.issuer.as_str().trim_end_matches('/');
    let oidc = Url::parse(&format!("{issuer}/.well-known/openid-configuration"))
        .map_err(|err| IdentityError::Config(format!("issuer URL: {err}")))?;
    let body = match get_bytes(http, &oidc, "discovery", config.http_timeout).await {
        Ok(body) => body,
        Err(IdentityError::Unreachable { message, .. }) if message.contains("404") => {
            // RFC 8414 §3: insert the well-known segment before the path.
            let mut rfc8414 = config.issuer.clone();
            let path = rfc8414.path().trim_end_matches('/').to_owned();
            rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
            get_bytes(http, &rfc8414, "discovery", config.http_timeout).await?
        }
        Err(err) => return Err(err),
    };
    let metadata: ProviderMetadata =
        serde_json::from_slice(&body).map_err(|err| IdentityError::BadResponse {
            what: "discovery document",
            message: format!("not OpenID provider metadata ({err})"),
        })?;
    check_metadata(&metadata, config)?;
    Ok(metadata)
}

/// The rules a discovery document must follow (pure).
pub fn check_metadata(
    metadata: &ProviderMetadata,
    config: &IdentityConfig,
) -> Result<(), IdentityError> {
    // OIDC Discovery 4.3: the issuer must be identical to the one we asked.
    let configured = config.issuer.as_str();
    if metadata.issuer != configured && metadata.issuer != configured.trim_end_matches('/') {
        return Err(IdentityError::IssuerMismatch {
            expected: configured.to_owned(),
            found: metadata.issuer.clone(),
        });
    }
    require_secure(&metadata.authorization_endpoint, "authorization endpoint")?;
    require_secure(&metadata.token_endpoint, "token endpoint")?;
    require_secure(&metadata.jwks_uri, "key set (JWKS) URL")?;
    if let Some(methods) = &metadata.code_challenge_methods_supported
        && !methods.iter().any(|m| m == "S256")
    {
        return Err(IdentityError::Unsupported("PKCE with S256"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(issuer: &str, endpoint: &str) -> ProviderMetadata {
        serde_json::from_value(serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{endpoint}/auth"),
            "token_endpoint": format!("{endpoint}/token"),
            "jwks_uri": format!("{endpoint}/jwks"),
            "code_challenge_methods_supported": ["S256"],
        }))
        .unwrap()
    }

    fn config(issuer: &str) -> IdentityConfig {
        IdentityConfig::new(Url::parse(issuer).unwrap(), "c")
    }

    #[test]
    fn metadata_rules() {
        let c = config("https://idp.example");
        assert!(check_metadata(&meta("https://idp.example", "https://idp.example"), &c).is_ok());
        assert!(matches!(
            check_metadata(&meta("https://evil.example", "https://idp.example"), &c),
            Err(IdentityError::IssuerMismatch { .. })
        ));
        assert!(matches!(
            check_metadata(&meta("https://idp.example", "http://idp.example"), &c),
            Err(IdentityError::Insecure { .. })
        ));
        let mut plain_only = meta("https://idp.example", "https://idp.example");
        plain_only.code_challenge_methods_supported = Some(vec!["plain".into()]);
        assert!(matches!(
            check_metadata(&plain_only, &c),
            Err(IdentityError::Unsupported(_))
        ));
        let local = config("http://127.0.0.1:8080");
        assert!(
            check_metadata(
                &meta("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
                &local
            )
            .is_ok()
        );
    }

    #[test]
    fn tokens_debug_redacts() {
        let tokens = Tokens {
            access_token: Secret::new("AT-SECRET".into()),
            refresh_token: Some(Secret::new("RT-SECRET".into())),
            id_token: Secret::new("ID-SECRET".into()),
            expires_at: 0,
        };
        let text = format!("{tokens:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
