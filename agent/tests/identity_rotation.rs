//! Signing-key rotation at the IdP (the success path of "an unknown `kid`
//! triggers one JWKS refetch"): the real test IdP rotates to a new RS256 key
//! while the agent's client still holds the JWKS it fetched at discovery;
//! the next real login's ID token names the new `kid`, the client refetches
//! the JWKS exactly once and accepts the token. The failure path (a `kid`
//! that stays unknown after the refetch) is in identity_negative.rs.

// Test code: a failed unwrap is the test failing, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use support::idp;

use std::time::Duration;

use agent::identity::client::{AuthOverrides, LoginResult};
use agent::identity::validate::token_kid;
use agent::identity::{IdentityClient, IdentityConfig};
use url::Url;

fn config(idp: &idp::Idp) -> IdentityConfig {
    let mut config = IdentityConfig::new(Url::parse(&idp.issuer).unwrap(), idp::CLIENT_ID);
    config.resource = Some(idp::BROKER_RESOURCE.to_owned());
    config.acr_values = vec!["urn:sallyport:acr:mfa".to_owned()];
    config.http_timeout = Duration::from_secs(10);
    config.login_timeout = Duration::from_secs(60);
    config
}

/// A browser login on `client` (the same client, so the same cached JWKS),
/// with the test playing the user (password + TOTP).
async fn login(client: &IdentityClient) -> LoginResult {
    let open = |url: &Url| {
        let url = url.to_string();
        tokio::spawn(async move {
            let page = idp::complete_browser_login(&url).await;
            let text = page.text().await.unwrap_or_default();
            assert!(text.contains("return to the app"), "callback page: {text}");
        });
        Ok(())
    };
    client
        .login_browser(&open, &AuthOverrides::default())
        .await
        .unwrap()
}

async fn published_kids(idp: &idp::Idp) -> Vec<String> {
    let jwks: serde_json::Value = reqwest::get(format!("{}/jwks", idp.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn rotated_signing_key_is_refetched_once_and_accepted() {
    let Some(mut idp) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let client = IdentityClient::discover(config(&idp)).await.unwrap();
    assert_eq!(client.jwks_fetches(), 1, "discovery fetches the JWKS once");

    // Before the rotation: signed with the key the client already holds.
    let before = login(&client).await;
    assert_eq!(
        token_kid(before.tokens.id_token.expose()).as_deref(),
        Some(idp::SIGNING_KID)
    );
    assert_eq!(client.jwks_fetches(), 1, "a known kid needs no refetch");

    // The IdP rotates: a new key, published next to the old one, signs from now on.
    let new_kid = idp.rotate_signing_key();
    assert_ne!(new_kid, idp::SIGNING_KID);
    let kids = published_kids(&idp).await;
    assert!(
        kids.contains(&new_kid) && kids.iter().any(|k| k == idp::SIGNING_KID),
        "{kids:?}"
    );

    // The client's cached JWKS lacks the new kid: one refetch, then accepted.
    let after = login(&client).await;
    assert_eq!(
        token_kid(after.tokens.id_token.expose()).as_deref(),
        Some(new_kid.as_str()),
        "the IdP did not sign with its new key"
    );
    assert_eq!(client.jwks_fetches(), 2, "exactly one JWKS refetch");
    assert_eq!(after.claims.sub, idp::USER);
    assert!(after.mfa.method.contains("otp"), "{:?}", after.mfa.method);

    // The refetched set is cached: tokens under the new and the old
    // (still published) kid both validate without another fetch.
    for result in [&after, &before] {
        client
            .validate_id_token(
                &result.tokens.id_token,
                result.claims.nonce.as_deref(),
                Some(&result.tokens.access_token),
            )
            .await
            .unwrap();
    }
    assert_eq!(client.jwks_fetches(), 2, "no refetch for cached keys");
}
