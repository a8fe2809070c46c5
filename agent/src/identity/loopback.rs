//! The one-shot loopback listener for the authorization redirect
//! (RFC 8252 §7.3, §8.3).
//!
//! Bound to 127.0.0.1 only (never 0.0.0.0, never `localhost`, which may
//! resolve elsewhere), on a port the OS picks, for one login: it closes after
//! the first callback that carries this login's `state`, or at the timeout.
//! Requests to other paths (a browser's `/favicon.ico`) get a 404 and do not
//! end the login. Decisions are made by the pure [`super::callback`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use super::IdentityError;
use super::callback::{CallbackDecision, decide, response_for};
use crate::secrets::Secret;

/// The largest request head read from the browser.
const MAX_HEAD: usize = 16 * 1024;
/// How long one connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound listener waiting for one redirect.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds 127.0.0.1 on an ephemeral port.
    pub async fn bind() -> Result<Self, IdentityError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|err| IdentityError::Listener(err.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|err| IdentityError::Listener(err.to_string()))?;
        Ok(Self { listener, addr })
    }

    /// The port chosen.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn redirect_uri(&self, path: &str) -> Result<Url, IdentityError> {
        Url::parse(&format!("http://127.0.0.1:{}{path}", self.port()))
            .map_err(|err| IdentityError::Listener(err.to_string()))
    }

    /// Waits for the callback and returns the authorization code. Consumes
    /// the listener: the socket is closed when this returns.
    pub async fn wait(
        self,
        path: &str,
        state: &Secret,
        issuer: &str,
        require_iss: bool,
        timeout: Duration,
    ) -> Result<Secret, IdentityError> {
        let work = async {
            loop {
                let (stream, peer) = self
                    .listener
                    .accept()
                    .await
                    .map_err(|err| IdentityError::Listener(err.to_string()))?;
                if !peer.ip().is_loopback() {
                    continue;
                }
                let Some(request_line) = read_request_line(&stream).await else {
                    continue;
                };
                let decision = decide(&request_line, path, state, issuer, require_iss);
                let response = response_for(&decision);
                respond(stream, response).await;
                match decision {
                    CallbackDecision::Code(code) => return Ok(code),
                    CallbackDecision::Fail(err) => return Err(IdentityError::Callback(err)),
                    CallbackDecision::Ignore(err) => {
                        tracing::debug!(reason = %err, "ignored a request to the sign-in listener");
                    }
                    CallbackDecision::Reject(err) => {
                        tracing::warn!(reason = %err, "refused a callback that is not this sign-in's; still waiting for it");
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(IdentityError::LoginTimedOut {
                seconds: timeout.as_secs(),
            }),
        }
    }
}

/// Reads the head of one request and returns its request line.
async fn read_request_line(stream: &TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 2048];
        loop {
            stream.readable().await.ok()?;
            let n = match stream.try_read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return None,
            };
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_HEAD {
                break;
            }
        }
        Some(())
    };
    tokio::time::timeout(READ_TIMEOUT, read).await.ok()??;
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().map(str::to_owned)
}

async fn respond(mut stream: TcpStream, response: String) {
    let _ = tokio::time::timeout(READ_TIMEOUT, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Drain a little so the browser sees the response, not a reset.
        let mut sink = [0u8; 512];
        let _ = stream.read(&mut sink).await;
    })
    .await;
}
