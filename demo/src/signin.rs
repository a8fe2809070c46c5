//! The demo plays the user's browser during sign-in, so it needs no browser
//! and no typing: it opens the demo issuer's sign-in page, fills in the demo
//! user's password and the authenticator code the demo printed, submits,
//! and follows the redirect to the agent's loopback callback — the same
//! HTTP a person's browser would send. The agent's real sign-in path
//! (discovery, PKCE, ID token validation, the MFA rule) runs unchanged.

use std::time::Duration;

use agent::identity::client::AuthOverrides;
use agent::identity::{Identity, WhoAmI};
use tokio::sync::oneshot;

use crate::issuer::{DEMO_PASSWORD, DEMO_USER};

/// The form's hidden fields (`name`, `value`), read from its HTML (pure).
pub fn hidden_fields(form: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for input in form.split("<input").skip(1) {
        let tag = input.split('>').next().unwrap_or_default();
        if !tag.contains("type=\"hidden\"") {
            continue;
        }
        let attr = |name: &str| {
            tag.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(|v| {
                    v.replace("&quot;", "\"")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&amp;", "&")
                })
        };
        if let (Some(name), Some(value)) = (attr("name"), attr("value")) {
            fields.push((name, value));
        }
    }
    fields
}

/// Fetches the sign-in page at `url`, submits it with the demo user's
/// password and `code`, and delivers the redirect to the agent's callback.
pub async fn play_browser(url: &str, code: &str) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let form = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("opening the sign-in page: {e}"))?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let mut fields = hidden_fields(&form);
    if fields.is_empty() {
        return Err("the sign-in page has no form".to_owned());
    }
    fields.push(("username".into(), DEMO_USER.into()));
    fields.push(("password".into(), DEMO_PASSWORD.into()));
    fields.push(("otp".into(), code.to_owned()));
    let action = url
        .split('?')
        .next()
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_owned();
    let reply = http
        .post(&action)
        .form(&fields)
        .send()
        .await
        .map_err(|e| format!("submitting the sign-in form: {e}"))?;
    let Some(location) = reply.headers().get(reqwest::header::LOCATION) else {
        return Err(format!(
            "the identity provider refused the sign-in ({})",
            reply.status()
        ));
    };
    let location = location.to_str().map_err(|e| e.to_string())?.to_owned();
    http.get(&location)
        .send()
        .await
        .map_err(|e| format!("returning to the agent: {e}"))?;
    Ok(())
}

/// Signs in through the agent's real browser flow, with the demo playing
/// the browser ([`play_browser`] with `code`); a refused form fails at once
/// instead of at the sign-in timeout.
pub async fn log_in(identity: &Identity, code: String) -> Result<WhoAmI, String> {
    let (fail_tx, fail_rx) = oneshot::channel::<String>();
    let fail_tx = std::sync::Mutex::new(Some(fail_tx));
    let open = move |url: &url::Url| {
        let url = url.to_string();
        let code = code.clone();
        let fail_tx = fail_tx.lock().ok().and_then(|mut s| s.take());
        tokio::spawn(async move {
            if let Err(e) = play_browser(&url, &code).await
                && let Some(tx) = fail_tx
            {
                let _ = tx.send(e);
            }
        });
        Ok(())
    };
    let overrides = AuthOverrides::default();
    tokio::select! {
        result = identity.login_browser(&open, &overrides) => result.map_err(|e| e.to_string()),
        Ok(reason) = fail_rx => Err(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_fields_are_read_and_unescaped() {
        let html = "<form><input type=\"hidden\" name=\"state\" value=\"a&amp;b&quot;c\">\
                    <input type=\"hidden\" name=\"nonce\" value=\"\">\
                    <label>Email <input name=\"username\"></label></form>";
        assert_eq!(
            hidden_fields(html),
            vec![
                ("state".to_owned(), "a&b\"c".to_owned()),
                ("nonce".to_owned(), String::new())
            ]
        );
    }
}
