//! **DEMO ONLY.** The "internal application" the demo protects: one small
//! web page on loopback. In a real deployment it would sit on a private
//! network that only the gateway reaches; here the gateway's target is
//! 127.0.0.1, and the demo only ever fetches it through the tunnel.
//!
//! Each page carries a request counter, so a fetch shows it really reached
//! the application (and a stale or cached answer would show).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

/// The page's heading; the demo prints what it actually fetched.
pub const HEADING: &str = "Hello from the Sallyport demo application";

/// A running demo application.
#[derive(Debug)]
pub struct DemoApp {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DemoApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DemoApp {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/", get(page))
            .with_state(served.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(DemoApp { addr, served, task })
    }

    /// Where it listens (the gateway's target).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many pages it has served.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

async fn page(State(served): State<Arc<AtomicU64>>) -> Html<String> {
    let n = served.fetch_add(1, Ordering::SeqCst) + 1;
    Html(format!(
        "<!doctype html><title>Sallyport demo application</title>\
         <h1>{HEADING}</h1>\
         <p>You reached this page through a WireGuard tunnel that Sallyport opened \
         because your identity and this device's posture were verified.</p>\
         <p id=\"request\">Request #{n}</p>"
    ))
}

/// What a fetched page says: its heading and request number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSummary {
    /// The `<h1>` text.
    pub heading: String,
    /// The request counter, when present.
    pub request: Option<u64>,
}

/// Reads the heading and request number out of a fetched page (pure).
pub fn summarize(html: &str) -> Option<PageSummary> {
    let heading = html.split("<h1>").nth(1)?.split("</h1>").next()?.trim();
    let request = html.split("Request #").nth(1).and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    Some(PageSummary {
        heading: heading.to_owned(),
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_reads_heading_and_counter() {
        let html = format!("<h1>{HEADING}</h1><p id=\"request\">Request #42</p>");
        assert_eq!(
            summarize(&html),
            Some(PageSummary {
                heading: HEADING.to_owned(),
                request: Some(42)
            })
        );
        assert_eq!(summarize("no heading here"), None);
    }
}
