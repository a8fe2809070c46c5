//! The loopback redirect, RFC 8252 §7.3: parsing the browser's request to
//! `http://127.0.0.1:<port>/callback` and the pages it gets back.
//!
//! Pure: the listener (`loopback.rs`) hands over the request head and sends
//! back what [`CallbackDecision`] says.

use crate::secrets::Secret;

/// Why a callback request does not complete the login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Not a GET request line.
    #[error("the sign-in callback was not a well-formed GET request")]
    Malformed,
    /// Another path (a browser's `/favicon.ico`, a probe).
    #[error("request for {0:?}, not the sign-in callback path")]
    WrongPath(String),
    /// No `state`.
    #[error("the sign-in callback carries no state; it did not come from this sign-in")]
    MissingState,
    /// `state` differs: a forged, stale or replayed callback (CSRF).
    #[error(
        "the sign-in callback's state does not match this sign-in (stale, replayed or forged); sign in again"
    )]
    StateMismatch,
    /// The IdP said no (`error=access_denied`, ...).
    #[error("the identity provider refused the sign-in: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Provider {
        /// OAuth error code.
        error: String,
        /// Its description.
        description: Option<String>,
    },
    /// No `code`.
    #[error("the sign-in callback carries no authorization code")]
    MissingCode,
    /// RFC 9207 `iss` differs from the issuer we talked to (mix-up attack).
    #[error("the sign-in callback came from issuer {found:?}, not {expected:?} (mix-up defence)")]
    IssuerMismatch {
        /// Our issuer.
        expected: String,
        /// What the callback says.
        found: String,
    },
}

/// What the listener should do with one request.
#[derive(Debug)]
pub enum CallbackDecision {
    /// The login's authorization code: answer with the success page, close.
    Code(Secret),
    /// Not for us (wrong path/method): answer 404 and keep listening.
    Ignore(CallbackError),
    /// A callback without this login's `state` (or with duplicated
    /// parameters): answer with the error page and keep listening. It did
    /// not come from this sign-in, so it must not end it: any local process
    /// or web page can send a request to the loopback port, and letting it
    /// abort the user's sign-in would make sign-in trivially deniable.
    Reject(CallbackError),
    /// A callback for this login that fails it: answer with the error page, close.
    Fail(CallbackError),
}

/// Parses the request line of one request to the loopback listener.
///
/// `expected_iss` is checked when the callback carries `iss` (RFC 9207);
/// when the IdP advertises `authorization_response_iss_parameter_supported`
/// the driver passes `require_iss = true` and a missing `iss` fails.
pub fn decide(
    request_line: &str,
    path: &str,
    state: &Secret,
    expected_iss: &str,
    require_iss: bool,
) -> CallbackDecision {
    let mut words = request_line.split_ascii_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return CallbackDecision::Ignore(CallbackError::Malformed);
    };
    if method != "GET" {
        return CallbackDecision::Ignore(CallbackError::Malformed);
    }
    let (req_path, query) = target.split_once('?').unwrap_or((target, ""));
    if req_path != path {
        return CallbackDecision::Ignore(CallbackError::WrongPath(
            req_path.chars().take(100).collect(),
        ));
    }
    let mut code = None;
    let mut got_state = None;
    let mut error = None;
    let mut description = None;
    let mut iss = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "code" => &mut code,
            "state" => &mut got_state,
            "error" => &mut error,
            "error_description" => &mut description,
            "iss" => &mut iss,
            _ => continue,
        };
        if slot.is_some() {
            // Duplicate parameters are an attack surface; refuse them (but
            // only a request proven to be ours may end the sign-in).
            return CallbackDecision::Reject(CallbackError::Malformed);
        }
        *slot = Some(value.into_owned());
    }
    let Some(got_state) = got_state.map(Secret::new) else {
        return CallbackDecision::Reject(CallbackError::MissingState);
    };
    if !state.ct_eq(got_state.expose()) {
        return CallbackDecision::Reject(CallbackError::StateMismatch);
    }
    match &iss {
        Some(found) if found != expected_iss => {
            return CallbackDecision::Fail(CallbackError::IssuerMismatch {
                expected: expected_iss.to_owned(),
                found: found.clone(),
            });
        }
        None if require_iss => {
            return CallbackDecision::Fail(CallbackError::IssuerMismatch {
                expected: expected_iss.to_owned(),
                found: "(none)".to_owned(),
            });
        }
        _ => {}
    }
    if let Some(error) = error {
        return CallbackDecision::Fail(CallbackError::Provider {
            error: error.chars().take(100).collect(),
            description: description.map(|d| d.chars().take(300).collect()),
        });
    }
    match code {
        Some(code) if !code.is_empty() => CallbackDecision::Code(Secret::new(code)),
        _ => CallbackDecision::Fail(CallbackError::MissingCode),
    }
}

/// The HTTP response for a decision. The success page tells the user to go
/// back to the app; no token or code is echoed.
pub fn response_for(decision: &CallbackDecision) -> String {
    let (status, title, body) = match decision {
        CallbackDecision::Code(_) => (
            "200 OK",
            "Signed in",
            "You are signed in to Sallyport. You can close this tab and return to the app."
                .to_owned(),
        ),
        CallbackDecision::Ignore(_) => ("404 Not Found", "Not found", "Not found.".to_owned()),
        CallbackDecision::Fail(err) | CallbackDecision::Reject(err) => (
            "400 Bad Request",
            "Sign-in failed",
            format!(
                "Sallyport could not complete the sign-in: {}. Return to the app to try again.",
                html_escape(&err.to_string())
            ),
        ),
    };
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title} - Sallyport</title></head><body><h1>{title}</h1><p>{body}</p></body></html>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{html}",
        html.len()
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://idp.example";

    fn run(line: &str) -> CallbackDecision {
        decide(line, "/callback", &Secret::new("st-1".into()), ISS, false)
    }

    #[test]
    fn good_callback_yields_code() {
        let d = run("GET /callback?code=abc&state=st-1&iss=https%3A%2F%2Fidp.example HTTP/1.1");
        assert!(matches!(d, CallbackDecision::Code(ref c) if c.expose() == "abc"));
        assert!(response_for(&d).contains("return to the app"));
        assert!(!response_for(&d).contains("abc"));
    }

    #[test]
    fn wrong_path_and_method_are_ignored() {
        assert!(matches!(
            run("GET /favicon.ico HTTP/1.1"),
            CallbackDecision::Ignore(CallbackError::WrongPath(_))
        ));
        assert!(matches!(
            run("GET /callback/x?code=a&state=st-1 HTTP/1.1"),
            CallbackDecision::Ignore(CallbackError::WrongPath(_))
        ));
        assert!(matches!(
            run("POST /callback?code=a&state=st-1 HTTP/1.1"),
            CallbackDecision::Ignore(CallbackError::Malformed)
        ));
        assert!(matches!(
            run(""),
            CallbackDecision::Ignore(CallbackError::Malformed)
        ));
        assert!(response_for(&run("GET /x HTTP/1.1")).starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn a_callback_without_this_logins_state_is_rejected_not_fatal() {
        assert!(matches!(
            run("GET /callback?code=a HTTP/1.1"),
            CallbackDecision::Reject(CallbackError::MissingState)
        ));
        assert!(matches!(
            run("GET /callback?code=a&state=st-0 HTTP/1.1"),
            CallbackDecision::Reject(CallbackError::StateMismatch)
        ));
        assert!(matches!(
            run("GET /callback?code=a&state=st-1&state=st-1 HTTP/1.1"),
            CallbackDecision::Reject(CallbackError::Malformed)
        ));
        assert!(response_for(&run("GET /callback?code=a HTTP/1.1")).starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn provider_errors_and_missing_code() {
        let d = run("GET /callback?error=access_denied&error_description=nope&state=st-1 HTTP/1.1");
        assert!(
            matches!(d, CallbackDecision::Fail(CallbackError::Provider { ref error, .. }) if error == "access_denied")
        );
        assert!(response_for(&d).contains("access_denied"));
        assert!(matches!(
            run("GET /callback?state=st-1 HTTP/1.1"),
            CallbackDecision::Fail(CallbackError::MissingCode)
        ));
        // A forged error must still carry the right state to end the login.
        assert!(matches!(
            run("GET /callback?error=access_denied&state=zz HTTP/1.1"),
            CallbackDecision::Reject(CallbackError::StateMismatch)
        ));
    }

    #[test]
    fn issuer_mix_up_defence() {
        assert!(matches!(
            run("GET /callback?code=a&state=st-1&iss=https%3A%2F%2Fevil HTTP/1.1"),
            CallbackDecision::Fail(CallbackError::IssuerMismatch { .. })
        ));
        let strict = decide(
            "GET /callback?code=a&state=st-1 HTTP/1.1",
            "/callback",
            &Secret::new("st-1".into()),
            ISS,
            true,
        );
        assert!(matches!(
            strict,
            CallbackDecision::Fail(CallbackError::IssuerMismatch { .. })
        ));
    }

    #[test]
    fn error_page_escapes_html() {
        let d = run("GET /callback?error=%3Cscript%3E&state=st-1 HTTP/1.1");
        let page = response_for(&d);
        assert!(!page.contains("<script>"));
    }
}
