//! Rust side of the test OpenID provider in `tests/idp/` (see its README).
//!
//! ```ignore
//! use support::idp;
//! let Some(idp) = idp::Idp::start(&idp::Options::default()) else { return };
//! ```
//!
//! `start` returns `None` when node or the npm packages are missing only on
//! a developer's laptop; under CI or as root it fails the test instead
//! ([`crate::prereq`]).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The test user.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "correct horse battery staple";
/// Its TOTP secret (base32, RFC 6238 SHA-1, 6 digits, 30 s).
pub const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";
/// The public client registered for Sallyport.
pub const CLIENT_ID: &str = "sallyport-desktop";
/// The broker's RFC 8707 resource indicator; access tokens carry `aud`
/// [`BROKER_AUDIENCE`].
pub const BROKER_RESOURCE: &str = "urn:sallyport:broker";
/// The `acr` the provider gives a password + one-time-code sign-in.
pub const ACR_MFA: &str = "urn:sallyport:acr:mfa";
/// `aud` of the JWT access tokens for the broker.
pub const BROKER_AUDIENCE: &str = "sallyport-broker";
/// `kid` of the provider's RS256 signing key (private PEM in keys/).
pub const SIGNING_KID: &str = "idp-rs256";

/// How to configure the provider.
#[derive(Debug, Clone)]
pub struct Options {
    /// Require the TOTP step (`false`: password only, `amr: ["pwd"]`).
    pub mfa: bool,
    /// With `mfa: false`: still ask for the one-time code when the client
    /// asks for the MFA acr (`acr_values`, as an RFC 9470 step-up does).
    pub mfa_on_request: bool,
    /// Access token lifetime, seconds.
    pub access_ttl: u64,
    /// ID token lifetime, seconds.
    pub id_ttl: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_ttl: u64,
    /// Device code lifetime, seconds.
    pub device_ttl: u64,
    /// More `--flag value` pairs for server.js.
    pub extra_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mfa: true,
            mfa_on_request: false,
            access_ttl: 300,
            id_ttl: 300,
            refresh_ttl: 86_400,
            device_ttl: 600,
            extra_args: Vec::new(),
        }
    }
}

/// A running provider; killed on drop.
#[derive(Debug)]
pub struct Idp {
    child: Child,
    stdin: ChildStdin,
    /// `http://127.0.0.1:<port>`.
    pub issuer: String,
    /// The port.
    pub port: u16,
    /// Later stdout lines (JSON events such as `{"event":"login",...}`).
    pub events: mpsc::Receiver<serde_json::Value>,
}

/// The `tests/idp` folder.
pub fn idp_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../idp"))
}

/// A PEM from `tests/idp/keys/`.
pub fn key_pem(name: &str) -> Vec<u8> {
    std::fs::read(idp_dir().join("keys").join(name)).unwrap()
}

impl Idp {
    /// Starts the provider, or returns `None` after printing why it cannot.
    pub fn start(options: &Options) -> Option<Idp> {
        let dir = idp_dir();
        if !dir.join("node_modules/oidc-provider").is_dir() {
            crate::prereq::missing(
                "tests/idp/node_modules is missing; run `npm install` in tests/idp (scripts/test does)",
            );
            return None;
        }
        let mut command = Command::new("node");
        command
            .current_dir(&dir)
            .arg("server.js")
            .args(["--port", "0"])
            .args([
                "--mfa",
                match (options.mfa, options.mfa_on_request) {
                    (true, _) => "on",
                    (false, false) => "off",
                    (false, true) => "optional",
                },
            ])
            .args(["--access-ttl", &options.access_ttl.to_string()])
            .args(["--id-ttl", &options.id_ttl.to_string()])
            .args(["--refresh-ttl", &options.refresh_ttl.to_string()])
            .args(["--device-ttl", &options.device_ttl.to_string()])
            .args(&options.extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("IDP_DEBUG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                crate::prereq::missing(&format!(
                    "cannot run node ({err}); install Node.js >= 20.19"
                ));
                return None;
            }
        };
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && tx.send(value).is_err()
                {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the test IdP did not start within 30 s");
        assert_eq!(first["event"], "listening", "{first}");
        Some(Idp {
            child,
            stdin,
            issuer: first["issuer"].as_str().unwrap().to_owned(),
            port: u16::try_from(first["port"].as_u64().unwrap()).unwrap(),
            events: rx,
        })
    }
}

impl Idp {
    /// Rotates the signing key (see README.md): a new RS256 key is published
    /// in front of the old ones and signs every later token. Returns its
    /// `kid`. Other events that arrive meanwhile are dropped.
    pub fn rotate_signing_key(&mut self) -> String {
        use std::io::Write as _;
        self.stdin.write_all(b"rotate\n").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let event = self
                .events
                .recv_timeout(Duration::from_secs(30))
                .expect("the test IdP did not rotate its key within 30 s");
            if event["event"] == "rotated" {
                return event["kid"].as_str().unwrap().to_owned();
            }
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The current TOTP code for a base32 secret (RFC 6238, SHA-1, 6 digits).
pub fn totp_now(secret_base32: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp_at(secret_base32, now)
}

/// The TOTP code at Unix time `unix`.
pub fn totp_at(secret_base32: &str, unix: u64) -> String {
    let key = base32_decode(secret_base32);
    let counter = (unix / 30).to_be_bytes();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key),
        &counter,
    );
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let code = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    format!("{:06}", code % 1_000_000)
}

fn base32_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').chars() {
        let value = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => panic!("bad base32"),
        };
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push(((bits >> count) & 0xff) as u8);
        }
    }
    out
}

/// The first `<form>` of an HTML page: its action and its named inputs.
pub fn first_form(html: &str) -> (String, Vec<(String, String)>) {
    let start = html.find("<form").expect("no form on the page");
    let end = html[start..]
        .find("</form>")
        .map_or(html.len(), |e| start + e);
    let form = &html[start..end];
    let tag_end = form.find('>').unwrap();
    let action = attr(&form[..tag_end], "action").unwrap_or_default();
    let mut inputs = Vec::new();
    let mut rest = form;
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..];
        let close = tag.find('>').unwrap_or(tag.len());
        let tag = &tag[..close];
        if let Some(name) = attr(tag, "name") {
            inputs.push((name, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[i + close..];
    }
    (unescape(&action), inputs)
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let mut search = tag;
    loop {
        let i = search.find(&needle)?;
        let preceded_by_space = i == 0 || search.as_bytes()[i - 1].is_ascii_whitespace();
        let value_start = i + needle.len();
        if preceded_by_space {
            let len = search[value_start..].find('"')?;
            return Some(unescape(&search[value_start..value_start + len]));
        }
        search = &search[value_start..];
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A "browser": an HTTP client with a cookie jar that follows redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(20))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn submit(
    browser: &reqwest::Client,
    page_url: &url::Url,
    html: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (action, inputs) = first_form(html);
    let target = page_url.join(&action).unwrap();
    let mut form: Vec<(String, String)> = inputs
        .into_iter()
        .filter(|(name, _)| !fields.iter().any(|(n, _)| n == name))
        .collect();
    form.extend(
        fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    browser.post(target).form(&form).send().await.unwrap()
}

/// Signs in at the provider's login page (password, then TOTP when the
/// provider asks for it), starting from `response` (a page showing the
/// login form). Returns the last response after all redirects.
pub async fn sign_in(
    browser: &reqwest::Client,
    response: reqwest::Response,
    password: &str,
    totp_secret: &str,
) -> reqwest::Response {
    let url = response.url().clone();
    let html = response.text().await.unwrap();
    assert!(
        html.contains("name=\"password\""),
        "no login form at {url}: {html}"
    );
    let response = submit(
        browser,
        &url,
        &html,
        &[("username", USER), ("password", password)],
    )
    .await;
    let url = response.url().clone();
    if !url.path().ends_with("/login") {
        return response; // no second step: redirected onwards
    }
    let html = response.text().await.unwrap();
    if !html.contains("name=\"otp\"") {
        panic!("unexpected page after the password at {url}: {html}");
    }
    let code = totp_now(totp_secret);
    submit(browser, &url, &html, &[("otp", &code)]).await
}

/// Plays the user in the system browser for an authorization URL: follows
/// it, signs in, and follows the redirect to the loopback callback.
/// Returns the final response (the agent's "return to the app" page).
pub async fn complete_browser_login(auth_url: &str) -> reqwest::Response {
    let browser = browser();
    let response = browser.get(auth_url).send().await.unwrap();
    sign_in(&browser, response, PASSWORD, TOTP_SECRET).await
}

/// Plays the user of the device flow: opens `verification_uri_complete`,
/// confirms the code, signs in. Returns the final page.
pub async fn complete_device_login(verification_uri_complete: &str) -> reqwest::Response {
    let browser = browser();
    // The provider answers with an auto-submitting form (xsrf + user_code).
    let response = browser.get(verification_uri_complete).send().await.unwrap();
    let url = response.url().clone();
    let html = response.text().await.unwrap();
    let response = submit(&browser, &url, &html, &[]).await;
    // Confirmation page: "confirm=yes".
    let url = response.url().clone();
    let html = response.text().await.unwrap();
    let response = submit(&browser, &url, &html, &[]).await;
    sign_in(&browser, response, PASSWORD, TOTP_SECRET).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn totp_rfc6238_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 s, secret "12345678901234567890".
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert_eq!(super::totp_at(secret, 59), "287082");
    }
}
