//! The diagnostics bundle's connectivity check against the broker: each
//! step of reaching it, in order, so helpdesk sees where it breaks — name
//! resolution, the TCP connection, the TLS handshake (with the
//! certificate chain the broker presented: subjects, issuers, expiry), an
//! unauthenticated `GET /v1/config`, and the clock skew from the broker's
//! `Date` header (a skewed clock breaks tokens and attestations).
//!
//! The TLS step verifies the chain exactly as the agent does (the OS trust
//! store, the broker's host name); the chain is recorded before the
//! verdict, so an untrusted certificate is still described. Nothing is
//! sent over a connection whose certificate was refused, and no request
//! carries a token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use time::OffsetDateTime;
use url::Url;

/// Each step may take this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    Ok,
    /// It failed; the later steps were not tried.
    Failed,
    /// Not applicable (plain HTTP to loopback has no TLS) or not reached.
    Skipped,
}

/// One step: its outcome, what was seen, how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Ok, failed, skipped.
    pub outcome: Outcome,
    /// What was seen, or why it failed.
    pub detail: String,
    /// Wall time of the step.
    pub millis: u64,
}

impl Step {
    fn skipped(detail: impl Into<String>) -> Step {
        Step {
            outcome: Outcome::Skipped,
            detail: detail.into(),
            millis: 0,
        }
    }
}

/// One certificate the broker presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateSummary {
    /// Its subject (RFC 4514).
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// When it expires (RFC 3339).
    pub not_after: String,
    /// Days left until then (negative: expired).
    pub days_left: i64,
}

/// The whole check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The broker's URL.
    pub broker: String,
    /// When the check ran (RFC 3339).
    pub checked_at: String,
    /// Name resolution.
    pub dns: Step,
    /// The TCP connection to the first address.
    pub tcp: Step,
    /// The TLS handshake and chain verification.
    pub tls: Step,
    /// The chain as presented, leaf first (empty without TLS).
    pub certificates: Vec<CertificateSummary>,
    /// `GET /v1/config`.
    pub http: Step,
    /// The broker's clock minus this machine's, in seconds, from its
    /// `Date` header (1 s resolution).
    pub clock_skew_seconds: Option<i64>,
}

/// Runs every step against `broker`.
pub async fn check(broker: &Url, http: &reqwest::Client) -> Report {
    let now = OffsetDateTime::now_utc();
    let mut report = Report {
        broker: broker.to_string(),
        checked_at: super::runtime::rfc3339(now),
        dns: Step::skipped("not reached"),
        tcp: Step::skipped("not reached"),
        tls: Step::skipped("not reached"),
        certificates: Vec::new(),
        http: Step::skipped("not reached"),
        clock_skew_seconds: None,
    };
    let (Some(host), Some(port)) = (broker.host_str(), broker.port_or_known_default()) else {
        report.dns = failed(Instant::now(), "the broker URL has no host".to_owned());
        return report;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();

    let started = Instant::now();
    let addresses =
        match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
            .await
        {
            Ok(Ok(found)) => found.collect::<Vec<SocketAddr>>(),
            Ok(Err(e)) => {
                report.dns = failed(started, format!("cannot resolve {host}: {e}"));
                return report;
            }
            Err(_) => {
                report.dns = failed(
                    started,
                    format!("no answer for {host} within {STEP_TIMEOUT:?}"),
                );
                return report;
            }
        };
    let Some(first) = addresses.first().copied() else {
        report.dns = failed(started, format!("{host} has no address"));
        return report;
    };
    let listed: Vec<String> = addresses.iter().map(|a| a.ip().to_string()).collect();
    report.dns = ok(started, format!("{host} → {}", listed.join(", ")));

    let started = Instant::now();
    let tcp = match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(first)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            report.tcp = failed(started, format!("cannot connect to {first}: {e}"));
            return report;
        }
        Err(_) => {
            report.tcp = failed(
                started,
                format!("no connection to {first} within {STEP_TIMEOUT:?}"),
            );
            return report;
        }
    };
    report.tcp = ok(started, format!("connected to {first}"));

    if broker.scheme() == "https" {
        let started = Instant::now();
        let (step, chain) = tls_step(tcp, &host).await;
        report.tls = Step {
            millis: elapsed_ms(started),
            ..step
        };
        report.certificates = chain.iter().filter_map(|der| summarize(der, now)).collect();
        if report.tls.outcome != Outcome::Ok {
            return report;
        }
    } else {
        drop(tcp);
        report.tls = Step::skipped("plain HTTP (allowed only to a broker on loopback)");
    }

    let started = Instant::now();
    let url = match broker.join(broker::api::paths::CONFIG) {
        Ok(url) => url,
        Err(e) => {
            report.http = failed(started, format!("bad URL: {e}"));
            return report;
        }
    };
    match tokio::time::timeout(STEP_TIMEOUT, http.get(url).send()).await {
        Ok(Ok(response)) => {
            let status = response.status();
            let date = response
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let answered_at = OffsetDateTime::now_utc();
            report.clock_skew_seconds = date.as_deref().and_then(|d| clock_skew(d, answered_at));
            let detail = format!(
                "GET {} → {status}{}",
                broker::api::paths::CONFIG,
                date.map(|d| format!(", Date: {d}")).unwrap_or_default()
            );
            report.http = if status.is_success() {
                ok(started, detail)
            } else {
                failed(started, detail)
            };
        }
        Ok(Err(e)) => report.http = failed(started, format!("{e}")),
        Err(_) => report.http = failed(started, format!("no answer within {STEP_TIMEOUT:?}")),
    }
    report
}

fn ok(started: Instant, detail: String) -> Step {
    Step {
        outcome: Outcome::Ok,
        detail,
        millis: elapsed_ms(started),
    }
}

fn failed(started: Instant, detail: String) -> Step {
    Step {
        outcome: Outcome::Failed,
        detail,
        millis: elapsed_ms(started),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The broker's clock minus `local`, from an HTTP `Date` header. Pure.
pub fn clock_skew(date_header: &str, local: OffsetDateTime) -> Option<i64> {
    let broker = httpdate::parse_http_date(date_header).ok()?;
    let broker = OffsetDateTime::from(broker);
    Some((broker - local).whole_seconds())
}

/// Subject, issuer and expiry of one DER certificate; `None` if it does
/// not parse.
pub fn summarize(der: &[u8], now: OffsetDateTime) -> Option<CertificateSummary> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.to_datetime();
    Some(CertificateSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: super::runtime::rfc3339(not_after),
        days_left: (not_after - now).whole_days(),
    })
}

/// The TLS handshake over `tcp`, verified as the agent verifies; returns
/// the step and the chain presented (recorded even when it is refused).
async fn tls_step(tcp: tokio::net::TcpStream, host: &str) -> (Step, Vec<Vec<u8>>) {
    let start = Instant::now();
    let verifier = match Recording::with_native_roots() {
        Ok(v) => Arc::new(v),
        Err(e) => return (failed(start, e), Vec::new()),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| {
        b.dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth()
    });
    let config = match config {
        Ok(config) => config,
        Err(e) => return (failed(start, format!("TLS setup: {e}")), Vec::new()),
    };
    let name = match ServerName::try_from(host.to_owned()) {
        Ok(name) => name,
        Err(e) => return (failed(start, format!("{host}: {e}")), Vec::new()),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, tcp)).await;
    let chain = verifier.chain();
    let step = match result {
        Ok(Ok(stream)) => {
            let (_, session) = stream.get_ref();
            let version = session
                .protocol_version()
                .map_or_else(|| "TLS".to_owned(), |v| format!("{v:?}"));
            ok(start, format!("{version}, certificate trusted for {host}"))
        }
        Ok(Err(e)) => failed(start, format!("handshake refused: {e}")),
        Err(_) => failed(start, format!("no handshake within {STEP_TIMEOUT:?}")),
    };
    (step, chain)
}

/// The agent's own verification (webpki over the OS trust store), which
/// also keeps the chain it was shown.
#[derive(Debug)]
struct Recording {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    chain: Mutex<Vec<Vec<u8>>>,
}

impl Recording {
    fn with_native_roots() -> Result<Recording, String> {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A root the OS lists but webpki cannot use is skipped, as
            // reqwest does.
            let _ = roots.add(cert);
        }
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| format!("no usable trust store: {e}"))?;
        Ok(Recording {
            inner,
            chain: Mutex::new(Vec::new()),
        })
    }

    fn chain(&self) -> Vec<Vec<u8>> {
        self.chain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.chain.lock().unwrap_or_else(PoisonError::into_inner) = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn skew_is_the_brokers_clock_minus_ours() {
        let local = datetime!(2026-12-03 10:42:00 UTC);
        assert_eq!(clock_skew("Thu, 03 Dec 2026 10:42:30 GMT", local), Some(30));
        assert_eq!(
            clock_skew("Thu, 03 Dec 2026 10:40:00 GMT", local),
            Some(-120)
        );
        assert_eq!(clock_skew("yesterday", local), None);
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert_eq!(
            summarize(b"not a certificate", OffsetDateTime::UNIX_EPOCH),
            None
        );
    }
}
