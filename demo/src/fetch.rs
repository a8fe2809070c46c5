//! Fetching the demo application's page through the tunnel's local
//! forward, the way a browser on this machine would, and the admin call
//! that reloads the broker's policy. Both go straight to 127.0.0.1: the
//! client ignores `HTTP(S)_PROXY`, so a configured proxy cannot swallow a
//! loopback request (the agent's own clients do honour it; see
//! `run::proxy_warning`).

use std::time::Duration;

/// One fetch through the tunnel may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// A page fetched through the tunnel.
#[derive(Debug)]
pub(crate) struct Page {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The body as text.
    pub(crate) body: String,
}

/// A client for loopback calls: no proxy, short timeout.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// One GET of `http://local/` with a short timeout; the error is the
/// reason in a few words ("connection refused"), for the narration.
pub(crate) async fn fetch(local: &str) -> Result<Page, String> {
    let reply = http()
        .get(format!("http://{local}/"))
        .send()
        .await
        .map_err(|e| describe_fetch_error(&e))?;
    let status = reply.status().as_u16();
    let body = reply.text().await.map_err(|e| describe_fetch_error(&e))?;
    Ok(Page { status, body })
}

/// The innermost I/O reason of a failed fetch: "connection refused" says
/// more to the user than reqwest's "error sending request for url".
fn describe_fetch_error(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                _ => io.to_string(),
            };
        }
        source = err.source();
    }
    if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_described_as_refused() {
        // Bind then drop: the port is (almost certainly) closed right after.
        let addr = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr,
            Err(e) => panic!("cannot bind a loopback port: {e}"),
        };
        match fetch(&addr.to_string()).await {
            Ok(page) => panic!("fetched {} from a closed port", page.status),
            Err(reason) => assert_eq!(reason, "connection refused"),
        }
    }
}
