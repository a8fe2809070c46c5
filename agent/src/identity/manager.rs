//! Ties the IdP client, the keyring and the session state machine together
//! for the CLI (`login`, `logout`, `whoami`) and the supervisor.
//!
//! Only facts about the session leave this module ([`WhoAmI`],
//! [`SessionState`]); tokens go to the keyring and, for the broker client,
//! out of [`Identity::access_token`] as a [`Secret`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use super::client::{AuthOverrides, DevicePrompt, IdentityClient, LoginResult, Tokens};
use super::session::{
    Command, Event, ReauthReason, Session, SessionInfo, SessionState, StepUpChallenge, Time,
};
use super::store::SecretStore;
use super::validate::IdTokenClaims;
use super::{IdentityConfig, IdentityError, secs};
use crate::secrets::Secret;

/// Stored format version.
const STORED_VERSION: u32 = 1;

/// What `sallyport whoami` shows. Never holds a token.
#[derive(Debug, Clone, Serialize)]
pub struct WhoAmI {
    /// Who.
    pub user: String,
    /// The IdP's subject id.
    pub subject: String,
    /// The IdP.
    pub issuer: String,
    /// The second factor of the last sign-in.
    pub mfa_method: String,
    /// When the user last authenticated (Unix seconds).
    pub auth_time: Option<i64>,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
    /// Whether the session renews itself.
    pub can_refresh: bool,
    /// The session state now.
    pub state: SessionState,
    /// Which keyring holds the tokens.
    pub keyring: &'static str,
}

/// What goes into the keyring (one item, chunked by the store).
struct Stored {
    info: SessionInfo,
    claims: IdTokenClaims,
    tokens: Tokens,
}

#[derive(Serialize)]
struct StoredRef<'a> {
    v: u32,
    info: &'a SessionInfo,
    claims: &'a IdTokenClaims,
    access_token: &'a str,
    refresh_token: Option<&'a str>,
    id_token: &'a str,
    expires_at: i64,
}

#[derive(Deserialize)]
struct StoredOwned {
    v: u32,
    info: SessionInfo,
    claims: IdTokenClaims,
    access_token: Secret,
    refresh_token: Option<Secret>,
    id_token: Secret,
    expires_at: i64,
}

/// The wall clock, which the session machine is fed (its call contract).
fn wall_clock() -> Time {
    Time::now_utc()
}

/// The signed-in (or not) identity of this agent.
#[derive(Debug, Clone)]
pub struct Identity {
    config: IdentityConfig,
    store: Arc<dyn SecretStore>,
}

impl Identity {
    /// An identity for `config`, with tokens in `store`.
    pub fn new(config: IdentityConfig, store: Arc<dyn SecretStore>) -> Self {
        Self { config, store }
    }

    /// The configuration.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    fn session_machine(&self) -> Session {
        Session::new(
            secs(self.config.refresh_margin),
            self.config.max_auth_age.map(secs),
        )
    }

    fn info_for(&self, result: &LoginResult) -> SessionInfo {
        SessionInfo {
            issuer: result.claims.iss.clone(),
            subject: result.claims.sub.clone(),
            user: result.claims.display_user(),
            mfa_method: result.mfa.method.clone(),
            auth_time: result.claims.auth_time,
            expires_at: result.tokens.expires_at,
            can_refresh: result.tokens.refresh_token.is_some(),
        }
    }

    fn save(&self, stored: &Stored) -> Result<(), IdentityError> {
        let json = serde_json::to_string(&StoredRef {
            v: STORED_VERSION,
            info: &stored.info,
            claims: &stored.claims,
            access_token: stored.tokens.access_token.expose(),
            refresh_token: stored.tokens.refresh_token.as_ref().map(Secret::expose),
            id_token: stored.tokens.id_token.expose(),
            expires_at: stored.tokens.expires_at,
        })
        .map_err(|err| IdentityError::Config(format!("cannot encode the session: {err}")))?;
        self.store
            .set(&self.config.store_account(), &Secret::new(json))?;
        Ok(())
    }

    fn load(&self) -> Result<Option<Stored>, IdentityError> {
        let Some(blob) = self.store.get(&self.config.store_account())? else {
            return Ok(None);
        };
        let owned: StoredOwned = serde_json::from_str(blob.expose()).map_err(|_| {
            super::store::StoreError::Corrupt(
                "the session is not in the expected format".to_owned(),
            )
        })?;
        if owned.v != STORED_VERSION {
            return Err(super::store::StoreError::Corrupt(format!(
                "unknown session format version {}",
                owned.v
            ))
            .into());
        }
        Ok(Some(Stored {
            info: owned.info,
            claims: owned.claims,
            tokens: Tokens {
                access_token: owned.access_token,
                refresh_token: owned.refresh_token,
                id_token: owned.id_token,
                expires_at: owned.expires_at,
            },
        }))
    }

    fn store_login(&self, result: LoginResult) -> Result<WhoAmI, IdentityError> {
        let stored = Stored {
            info: self.info_for(&result),
            claims: result.claims,
            tokens: result.tokens,
        };
        self.save(&stored)?;
        Ok(self.whoami_of(&stored, wall_clock()))
    }

    /// Browser sign-in (authorization code + PKCE); stores the tokens.
    pub async fn login_browser(
        &self,
        open: &(dyn Fn(&Url) -> Result<(), String> + Sync),
        overrides: &AuthOverrides,
    ) -> Result<WhoAmI, IdentityError> {
        let client = IdentityClient::discover(self.config.clone()).await?;
        let result = client.login_browser(open, overrides).await?;
        self.store_login(result)
    }

    /// Device sign-in (RFC 8628); stores the tokens.
    pub async fn login_device(
        &self,
        show: &(dyn Fn(&DevicePrompt) + Sync),
    ) -> Result<WhoAmI, IdentityError> {
        let client = IdentityClient::discover(self.config.clone()).await?;
        let result = client.login_device(show).await?;
        self.store_login(result)
    }

    /// RFC 9470 step-up: a browser sign-in with the challenge's
    /// `acr_values` / `max_age`.
    pub async fn step_up(
        &self,
        challenge: &StepUpChallenge,
        open: &(dyn Fn(&Url) -> Result<(), String> + Sync),
    ) -> Result<WhoAmI, IdentityError> {
        let overrides = AuthOverrides {
            acr_values: (!challenge.acr_values.is_empty()).then(|| challenge.acr_values.clone()),
            max_age: challenge.max_age,
        };
        self.login_browser(open, &overrides).await
    }

    fn whoami_of(&self, stored: &Stored, now: Time) -> WhoAmI {
        let mut session = self.session_machine();
        session.handle(now, Event::SignedIn(stored.info.clone()));
        WhoAmI {
            user: stored.info.user.clone(),
            subject: stored.info.subject.clone(),
            issuer: stored.info.issuer.clone(),
            mfa_method: stored.info.mfa_method.clone(),
            auth_time: stored.info.auth_time,
            expires_at: stored.info.expires_at,
            can_refresh: stored.info.can_refresh,
            state: session.state(now),
            keyring: self.store.backend_name(),
        }
    }

    /// Who is signed in, from the keyring alone (no network).
    pub fn whoami(&self) -> Result<Option<WhoAmI>, IdentityError> {
        Ok(self
            .load()?
            .map(|stored| self.whoami_of(&stored, wall_clock())))
    }

    /// The session state the supervisor watches, at `now` (wall-clock Unix
    /// seconds, as the stored facts are). An instant `Time` cannot hold (a
    /// caller's nonsense) counts as the end of time, which no session
    /// outlives: fail closed.
    pub fn state(&self, now: i64) -> Result<SessionState, IdentityError> {
        let now =
            Time::from_unix_timestamp(now).unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
        Ok(match self.load()? {
            None => SessionState::SignedOut,
            Some(stored) => self.whoami_of(&stored, now).state,
        })
    }

    /// A valid access token for the broker, refreshing it first when it is
    /// due. Fails with [`IdentityError::NeedsReauth`] when only a new
    /// (MFA) sign-in helps.
    pub async fn access_token(&self) -> Result<Secret, IdentityError> {
        let Some(stored) = self.load()? else {
            return Err(IdentityError::NotSignedIn);
        };
        let now = wall_clock();
        let mut session = self.session_machine();
        let commands = session.handle(now, Event::SignedIn(stored.info.clone()));
        for command in commands {
            match command {
                Command::Refresh => {
                    let stored = self.refresh_stored(stored).await?;
                    return Ok(stored.tokens.access_token);
                }
                Command::PromptLogin(reason) => return Err(IdentityError::NeedsReauth(reason)),
                Command::DeleteTokens => {}
            }
        }
        match session.state(now) {
            SessionState::Valid { .. } => Ok(stored.tokens.access_token),
            SessionState::NeedsReauth { reason } => Err(IdentityError::NeedsReauth(reason)),
            SessionState::SignedOut => Err(IdentityError::NotSignedIn),
        }
    }

    /// Renews the stored tokens now (refresh grant).
    pub async fn refresh(&self) -> Result<WhoAmI, IdentityError> {
        let Some(stored) = self.load()? else {
            return Err(IdentityError::NotSignedIn);
        };
        let stored = self.refresh_stored(stored).await?;
        Ok(self.whoami_of(&stored, wall_clock()))
    }

    async fn refresh_stored(&self, stored: Stored) -> Result<Stored, IdentityError> {
        let client = IdentityClient::discover(self.config.clone()).await?;
        match client.refresh(&stored.tokens, &stored.claims).await {
            Ok((tokens, claims)) => {
                let mut info = stored.info.clone();
                info.expires_at = tokens.expires_at;
                info.can_refresh = tokens.refresh_token.is_some();
                info.auth_time = claims.auth_time;
                let new = Stored {
                    info,
                    claims,
                    tokens,
                };
                self.save(&new)?;
                Ok(new)
            }
            Err(err @ IdentityError::Refused { .. }) => {
                // The IdP rejected the grant (revoked, reused, expired):
                // these tokens are dead, delete them.
                self.store.delete(&self.config.store_account())?;
                Err(IdentityError::NeedsReauth(ReauthReason::RefreshRejected {
                    message: err.to_string(),
                }))
            }
            Err(err) => Err(err),
        }
    }

    /// Signs out: revokes the refresh token and returns the IdP's logout
    /// URL when it offers them (best effort: the IdP may be down), and
    /// always deletes the local tokens.
    pub async fn logout(&self) -> Result<Option<Url>, IdentityError> {
        let Some(stored) = self.load().ok().flatten() else {
            self.store.delete(&self.config.store_account())?;
            return Ok(None);
        };
        let end_session = match IdentityClient::discover(self.config.clone()).await {
            Ok(client) => match client.logout(&stored.tokens).await {
                Ok(url) => url,
                Err(err) => {
                    tracing::warn!(error = %err, "IdP logout failed; deleting local tokens anyway");
                    None
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "IdP unreachable at logout; deleting local tokens anyway");
                None
            }
        };
        self.store.delete(&self.config.store_account())?;
        Ok(end_session)
    }
}
