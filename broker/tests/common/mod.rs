//! Shared helpers for the broker's HTTP tests: a test-controlled OpenID
//! issuer (discovery + JWKS over real HTTP, ES256 key the test holds), a TCP
//! echo target, a broker on loopback, and a device that enrols and attests.
//! Panicking on setup failure is the point here.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod oidc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use broker::api::{self, Problem, ProblemType};
use broker::server::{BrokerHandle, ManualClock};
use posture::attestation::{DeviceKey, EatClaims};
use posture::check::{Check, CheckId};
use posture::report::{Platform, Report};
use serde_json::json;
use support::broker::BrokerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const AUDIENCE: &str = "sallyport-broker";
pub use support::broker::ADMIN_TOKEN;

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The `acr` TestIssuer tokens carry by default (the test IdP's MFA value).
pub const ACR_MFA: &str = "urn:sallyport:acr:mfa";

/// A minimal OpenID issuer under the test's control: real HTTP discovery and
/// JWKS, tokens signed with an ES256 key the test holds. The published keys
/// can be changed ([`TestIssuer::publish`]) and their fetches counted.
pub struct TestIssuer {
    pub url: String,
    pub key: DeviceKey,
    pub kid: String,
    jwks: Arc<Mutex<serde_json::Value>>,
    jwks_fetches: Arc<AtomicUsize>,
    /// While set, the JWKS endpoint answers 503 (the IdP is down).
    down: Arc<std::sync::atomic::AtomicBool>,
}

/// A JWK set publishing `keys` as (key, kid).
pub fn jwk_set(keys: &[(&DeviceKey, &str)]) -> serde_json::Value {
    let keys: Vec<_> = keys
        .iter()
        .map(|(key, kid)| {
            json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                "x": key.public_jwk().x, "y": key.public_jwk().y,
            })
        })
        .collect();
    json!({ "keys": keys })
}

impl TestIssuer {
    pub async fn start() -> TestIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let key = DeviceKey::generate();
        let kid = "test-es256".to_owned();
        let jwks = Arc::new(Mutex::new(jwk_set(&[(&key, &kid)])));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (served, fetches, is_down) = (jwks.clone(), jwks_fetches.clone(), down.clone());
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "authorization_endpoint": format!("{url}/auth"),
            "token_endpoint": format!("{url}/token"),
        });
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let j = served.lock().unwrap().clone();
                    let down = is_down.load(Ordering::SeqCst);
                    async move {
                        use axum::response::IntoResponse as _;
                        if down {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                        } else {
                            axum::Json(j).into_response()
                        }
                    }
                }),
            );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestIssuer {
            url,
            key,
            kid,
            jwks,
            jwks_fetches,
            down,
        }
    }

    /// Takes the JWKS endpoint down (503) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Publishes exactly `keys` from now on (the issuer's own key included
    /// only if listed).
    pub fn publish(&self, keys: &[(&DeviceKey, &str)]) {
        *self.jwks.lock().unwrap() = jwk_set(keys);
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// An access token with these claims: iss/aud/iat/exp and an MFA sign-in
    /// now (`auth_time`, `amr` pwd+otp, `acr` [`ACR_MFA`], as the test IdP
    /// issues) filled in unless given; a `null` removes a claim.
    pub fn token_with(&self, sub: &str, extra: serde_json::Value) -> String {
        self.token_signed(&self.key, &self.kid, sub, extra)
    }

    /// [`TestIssuer::token_with`], signed by `key` under `kid`.
    pub fn token_signed(
        &self,
        key: &DeviceKey,
        kid: &str,
        sub: &str,
        extra: serde_json::Value,
    ) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.url, "sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + 600,
            "client_id": "sallyport-desktop",
            "auth_time": now, "amr": ["pwd", "otp"], "acr": ACR_MFA,
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        key.sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    pub fn token(&self, sub: &str) -> String {
        self.token_with(sub, json!({}))
    }
}

/// A TCP echo server; returns its address.
pub async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    bound
}

/// Sends `payload` to `addr` and reads the echo back.
pub async fn echo_through(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    let (mut r, mut w) = stream.into_split();
    let to_send = payload.to_vec();
    let writer = tokio::spawn(async move { w.write_all(&to_send).await.map(|()| w) });
    let mut got = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut got))
        .await
        .map_err(|_| std::io::Error::other("echo timed out"))??;
    let _w = writer.await.unwrap()?;
    Ok(got)
}

/// The broker's configuration for a test (the typed builder all suites
/// share): trusting `issuer`, one app `echo` in front of `echo`, verdicts
/// good for 600 s.
pub fn config(issuer: &str, db: &Path, echo: SocketAddr) -> BrokerConfig {
    BrokerConfig::new(issuer, db)
        .audience(AUDIENCE)
        .verdict_ttl(600)
        .app("echo", "Echo service", echo)
}

pub async fn start_broker(config: &BrokerConfig) -> BrokerHandle {
    config.start().await
}

/// A broker that decides every expiry on `clock`, which the test moves
/// instead of waiting.
pub async fn start_broker_with_clock(
    config: &BrokerConfig,
    clock: Arc<ManualClock>,
) -> BrokerHandle {
    broker::server::start_with_clock(config.settings(), clock)
        .await
        .unwrap()
}

pub struct Env {
    pub issuer: TestIssuer,
    pub echo: SocketAddr,
    pub dir: tempfile::TempDir,
    pub broker: BrokerHandle,
    pub http: reqwest::Client,
    /// The broker's clock when the test moves it (proofs are made on it).
    pub clock: Option<Arc<ManualClock>>,
}

impl Env {
    pub async fn start() -> Env {
        let issuer = TestIssuer::start().await;
        let echo = tcp_echo().await;
        let dir = tempfile::tempdir().unwrap();
        let broker = start_broker(&config(&issuer.url, &db_path(dir.path()), echo)).await;
        Env {
            issuer,
            echo,
            dir,
            broker,
            http: reqwest::Client::new(),
            clock: None,
        }
    }

    /// [`Env::start`] with the broker configuration changed by `change`.
    pub async fn start_with(change: impl FnOnce(BrokerConfig, &Path) -> BrokerConfig) -> Env {
        Self::start_with_clock(change, None).await
    }

    /// [`Env::start_with`], deciding every expiry on `clock` when given.
    pub async fn start_with_clock(
        change: impl FnOnce(BrokerConfig, &Path) -> BrokerConfig,
        clock: Option<Arc<ManualClock>>,
    ) -> Env {
        let issuer = TestIssuer::start().await;
        let echo = tcp_echo().await;
        let dir = tempfile::tempdir().unwrap();
        let config = change(config(&issuer.url, &db_path(dir.path()), echo), dir.path());
        let broker = match &clock {
            Some(clock) => start_broker_with_clock(&config, clock.clone()).await,
            None => start_broker(&config).await,
        };
        Env {
            issuer,
            echo,
            dir,
            broker,
            http: reqwest::Client::new(),
            clock,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.broker.base_url())
    }

    /// A minimal configuration file naming this broker's database, for the
    /// `sallyport-broker` subcommands that read it directly.
    pub fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("cli.toml");
        let db = db_path(self.dir.path());
        let url = support::broker::database_url_for(&db)
            .map(|url| format!("database_url = {url:?}\n"))
            .unwrap_or_default();
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = {:?}\n{url}[oidc]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\nclient_id = \"sallyport-desktop\"\n[gateway]\nlisten = \"127.0.0.1:0\"\n",
            db.display().to_string(),
            self.issuer.url
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn client(&self, token: &str) -> Client {
        Client {
            http: self.http.clone(),
            base: self.broker.base_url(),
            token: token.to_owned(),
            key: None,
            clock: self.clock.clone(),
        }
    }

    pub fn admin(&self) -> Client {
        self.client(ADMIN_TOKEN)
    }

    /// The audit log, via the admin API.
    pub async fn audit(&self) -> Vec<api::AuditEntry> {
        let r = self
            .admin()
            .get(&format!("{}?limit=1000", api::paths::ADMIN_AUDIT))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Asserts the latest denial in the audit log names `kind` and mentions
    /// `words`; returns that entry.
    pub async fn assert_audited(&self, kind: ProblemType, words: &str) -> api::AuditEntry {
        let log = self.audit().await;
        let hit = log
            .iter()
            .rev()
            .find(|e| e.problem.as_deref() == Some(kind.slug()));
        let hit = hit.unwrap_or_else(|| panic!("no audit entry for {kind}: {log:#?}"));
        assert_eq!(hit.outcome, "deny");
        assert!(
            hit.reason.to_lowercase().contains(&words.to_lowercase()),
            "audit reason {:?} does not say {words:?}",
            hit.reason
        );
        hit.clone()
    }
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("broker.db")
}

/// Makes the database of the broker whose state is in `dir` refuse new
/// audit rows matching `when` (a condition on `NEW`, the same in both SQL
/// dialects), next to the running broker: a real write failure. SQLite
/// through Python's sqlite3 module; PostgreSQL (when the suite runs on it)
/// through psql.
pub fn refuse_audit_rows(dir: &Path, when: &str) {
    let db = db_path(dir);
    if support::postgres::selected() {
        support::postgres::psql_for(
            &db,
            &format!(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit write failed'; END $$; \
                 CREATE TRIGGER audit_refuses BEFORE INSERT ON audit FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION refuse_audit();"
            ),
        )
        .unwrap();
        return;
    }
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.commit()\n";
    let sql = format!(
        "CREATE TRIGGER audit_refuses BEFORE INSERT ON audit WHEN {when} BEGIN SELECT RAISE(ABORT, 'audit write failed'); END;"
    );
    let ok = std::process::Command::new("python3")
        .args(["-c", script, db.to_str().unwrap(), &sql])
        .status()
        .unwrap()
        .success();
    assert!(ok, "sqlite3 could not add the trigger");
}

/// An API client. Without a device key it sends `Authorization: Bearer`
/// (admin calls, and the refusals of user calls without a proof); with one
/// it sends what the agent sends: `Authorization: DPoP` and a fresh proof
/// signed by the key for the method and URL (and a grant's WireGuard key),
/// with `iat` on `clock` when the broker runs on a [`ManualClock`].
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub key: Option<DeviceKey>,
    pub clock: Option<Arc<ManualClock>>,
}

/// How a request authenticates, for tests that craft it by hand.
pub enum Auth {
    /// `Authorization: Bearer <token>`, no proof.
    Bearer,
    /// `Authorization: DPoP <token>` and this `DPoP` header (none if `None`).
    Dpop(Option<String>),
}

impl Client {
    /// This client with `key` signing its proofs.
    pub fn with_key(&self, key: &DeviceKey) -> Client {
        Client {
            key: Some(key.clone()),
            ..self.clone()
        }
    }

    /// Now, on the broker's clock when the test moves one.
    pub fn now(&self) -> i64 {
        use broker::server::Clock as _;
        self.clock.as_ref().map_or_else(unix_now, |c| c.now())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The proof this client's key makes for `method` on `path`.
    pub fn proof(&self, method: &str, path: &str, wg_pub: Option<&str>) -> Option<String> {
        let key = self.key.as_ref()?;
        Some(
            posture::dpop::proof(
                key,
                method,
                &self.url(path),
                &self.token,
                self.now(),
                wg_pub,
            )
            .unwrap(),
        )
    }

    /// Sends `method` on `path` with `body` (JSON) and exactly `auth`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        auth: Auth,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, self.url(path));
        match auth {
            Auth::Bearer => req = req.bearer_auth(&self.token),
            Auth::Dpop(proof) => {
                req = req.header("authorization", format!("DPoP {}", self.token));
                if let Some(proof) = proof {
                    req = req.header("dpop", proof);
                }
            }
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.unwrap()
    }

    /// What the agent would send: a proof when this client has a key.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let wg_pub = body
            .as_ref()
            .filter(|_| path == api::paths::GRANTS)
            .and_then(|b| b["wireguard_public_key"].as_str());
        let auth = match self.proof(method.as_str(), path.split('?').next().unwrap(), wg_pub) {
            Some(proof) => Auth::Dpop(Some(proof)),
            None => Auth::Bearer,
        };
        self.send(method, path, body.as_ref(), auth).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post<T: serde::Serialize>(&self, path: &str, body: &T) -> reqwest::Response {
        let body = serde_json::to_value(body).unwrap();
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// Reads a problem reply, checking the media type.
pub async fn problem(r: reqwest::Response) -> Problem {
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let status = r.status().as_u16();
    assert_eq!(ct, api::PROBLEM_CONTENT_TYPE, "status {status}");
    let p: Problem = r.json().await.unwrap();
    assert_eq!(p.status, status);
    p
}

pub async fn expect_problem(r: reqwest::Response, kind: ProblemType) -> Problem {
    let p = problem(r).await;
    assert_eq!(p.kind(), Some(kind), "{p:#?}");
    p
}

/// The checks the default policy requires, all healthy.
pub fn healthy_report() -> Report {
    Report {
        collected_at: time::OffsetDateTime::now_utc(),
        platform: Platform::Linux,
        agent_version: "0.1.0".into(),
        duration_ms: 42,
        checks: vec![
            Check::pass(CheckId::OsVersion, "Debian 12")
                .fact("platform_id", "debian")
                .fact("name", "Debian GNU/Linux")
                .fact("version", "12")
                .fact("version_parts", vec![12]),
            Check::pass(CheckId::SecurityUpdates, "none pending")
                .fact("pending", 0)
                .fact("security_pending", 0)
                .fact("metadata_age_days", 1),
            Check::pass(CheckId::DiskEncryption, "LUKS2").fact("encrypted", true),
            Check::pass(CheckId::Firewall, "nftables").fact("enabled", true),
            Check::pass(CheckId::ScreenLock, "300 s")
                .fact("enabled", true)
                .fact("timeout_seconds", 300),
        ],
    }
}

/// The healthy report with the firewall off.
pub fn firewall_off_report() -> Report {
    let mut r = healthy_report();
    r.checks.retain(|c| c.id != CheckId::Firewall);
    r.checks.push(
        Check::fail(CheckId::Firewall, "no firewall is filtering")
            .fact("enabled", false)
            .remediation("Turn on the firewall."),
    );
    r
}

/// An agent-side device: key, user, API client.
pub struct TestDevice {
    pub key: DeviceKey,
    pub user: String,
    pub api: Client,
}

impl TestDevice {
    /// A new key, whose proofs `api` sends from now on.
    pub fn new(api: Client, user: &str) -> Self {
        let key = DeviceKey::generate();
        Self {
            api: api.with_key(&key),
            key,
            user: user.to_owned(),
        }
    }

    pub fn id(&self) -> String {
        self.key.kid()
    }

    pub async fn enrol(&self) -> reqwest::Response {
        self.api
            .post(
                api::paths::DEVICES,
                &api::EnrolRequest {
                    public_jwk: self.key.public_jwk().clone(),
                    name: Some("test-host".into()),
                    key_attestation: None,
                    activation_secret: None,
                },
            )
            .await
    }

    pub async fn nonce(&self) -> String {
        let r = self.api.post(api::paths::CHALLENGE, &json!({})).await;
        assert_eq!(r.status(), 200);
        let c: api::Challenge = r.json().await.unwrap();
        c.nonce
    }

    /// Claims for `report` over a fresh nonce.
    pub async fn claims(&self, report: Report) -> EatClaims {
        let nonce = self.nonce().await;
        EatClaims::new(
            &self.key,
            &nonce,
            AUDIENCE,
            &self.user,
            report,
            unix_now(),
            120,
        )
    }

    pub async fn submit(&self, eat: String) -> reqwest::Response {
        self.api
            .post(api::paths::ATTESTATIONS, &api::AttestationRequest { eat })
            .await
    }

    /// Challenge, sign, submit; returns the verdict.
    pub async fn attest(&self, report: Report) -> api::Verdict {
        let claims = self.claims(report).await;
        let r = self.submit(self.key.sign_eat(&claims).unwrap()).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    pub async fn request_grant(&self, app: &str, wg: &tunnel::PublicKey) -> reqwest::Response {
        self.api
            .post(
                api::paths::GRANTS,
                &api::GrantRequest {
                    app: app.into(),
                    device_id: self.id(),
                    wireguard_public_key: wg.to_string(),
                },
            )
            .await
    }
}

/// Fires `requests` grant requests for `device`, each on its own task,
/// while `end` runs; returns the ids of the grants the broker said it
/// opened, and checks that every refusal is one the race explains.
pub async fn race_grants<F>(
    device: &Arc<TestDevice>,
    requests: usize,
    end: F,
    allowed: &[ProblemType],
) -> Vec<String>
where
    F: std::future::Future<Output = ()>,
{
    let tasks: Vec<_> = (0..requests)
        .map(|_| {
            let device = device.clone();
            let wg = tunnel::PrivateKey::generate().public_key();
            tokio::spawn(async move { device.request_grant("echo", &wg).await })
        })
        .collect();
    end.await;
    let mut opened = Vec::new();
    for task in tasks {
        let r = task.await.unwrap();
        if r.status() == 201 {
            opened.push(r.json::<api::Grant>().await.unwrap().id);
        } else {
            let p = problem(r).await;
            assert!(
                p.kind().is_some_and(|k| allowed.contains(&k)),
                "unexpected refusal {p:#?}"
            );
        }
    }
    opened
}

/// After `delay`, revokes `user`'s sessions through `admin` (the ending
/// side of a grant race).
pub async fn revoke_user_after(admin: &Client, user: &str, delay: Duration) {
    tokio::time::sleep(delay).await;
    let r = admin
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                user: Some(user.to_owned()),
                reason: "race".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// The tunnel config an agent would build from a grant.
pub fn tunnel_config(grant: &api::Grant, key: tunnel::PrivateKey) -> tunnel::TunnelConfig {
    let expires: SystemTime =
        UNIX_EPOCH + Duration::from_secs(grant.expires_at.unix_timestamp() as u64);
    let mut cfg = tunnel::TunnelConfig::new(
        grant.gateway.endpoint.parse().unwrap(),
        grant.gateway.public_key.parse().unwrap(),
        grant.client_address.parse().unwrap(),
        grant.targets.iter().map(|t| t.parse().unwrap()).collect(),
        expires,
    );
    cfg.private_key = key;
    cfg.socks_port = None;
    cfg
}

/// Events from an SSE stream, parsed as they arrive.
pub struct EventStream {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<api::Event>,
}

impl EventStream {
    /// Opens `/v1/events` for the device; returns once the response headers
    /// are in (the broker has subscribed by then).
    pub async fn open(api: &Client, device_id: &str) -> EventStream {
        let mut r = api
            .get(&format!("{}?device_id={device_id}", api::paths::EVENTS))
            .await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = String::new();
            while let Ok(Some(chunk)) = r.chunk().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    for line in frame.lines() {
                        if let Some(data) = line.strip_prefix("data: ")
                            && let Ok(ev) = serde_json::from_str::<api::Event>(data)
                        {
                            let _ = tx.send(ev);
                        }
                    }
                }
            }
        });
        EventStream { rx }
    }

    pub async fn next(&mut self) -> api::Event {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("no event within 5 s")
            .expect("event stream closed")
    }

    /// Waits up to `within` for the broker to end the stream; panics on an
    /// event meanwhile or if it stays open.
    pub async fn closed_within(&mut self, within: Duration) {
        match tokio::time::timeout(within, self.rx.recv()).await {
            Ok(None) => {}
            Ok(Some(event)) => panic!("expected the stream to end, got {event:?}"),
            Err(_) => panic!("the event stream is still open after {within:?}"),
        }
    }

    /// Asserts the stream stays open (no end, no event) for `for_`.
    pub async fn open_for(&mut self, for_: Duration) {
        if let Ok(item) = tokio::time::timeout(for_, self.rx.recv()).await {
            panic!("expected the stream to stay open, got {item:?}");
        }
    }
}

/// An RFC 6750 / RFC 9470 `WWW-Authenticate: Bearer k="v", k=v` challenge
/// (or its RFC 9449 `DPoP` twin, for DPoP-bound calls) as a map (the scheme
/// under ""); panics on any other scheme.
pub fn bearer_challenge(r: &reqwest::Response) -> std::collections::HashMap<String, String> {
    let value = r
        .headers()
        .get("www-authenticate")
        .expect("no WWW-Authenticate header")
        .to_str()
        .unwrap()
        .to_owned();
    let (scheme, rest) = value
        .split_once(' ')
        .filter(|(scheme, _)| matches!(*scheme, "Bearer" | "DPoP"))
        .unwrap_or_else(|| panic!("not a Bearer or DPoP challenge: {value}"));
    let mut out = std::collections::HashMap::new();
    out.insert(String::new(), scheme.to_owned());
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            chars.by_ref().take_while(|c| *c != '"').collect()
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect()
        };
        out.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    out
}
