//! The socket client on Unix, with its two identity checks: the socket
//! file's owner and the peer's uid (`SO_PEERCRED`) must both be the
//! service's account. The first stops a look-alike socket at another path
//! an administrator mistyped into a shared directory; the second is the
//! one that matters, since it names the process that actually answers.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use tokio::net::UnixStream;

use super::ClientError;
use super::lines::exchange;
use crate::protocol::{Request, Response};

pub(super) async fn call(
    path: &Path,
    service_uid: u32,
    request: &Request,
) -> Result<Response, ClientError> {
    let shown = path.display().to_string();
    let not_running = |reason: String| ClientError::NotRunning {
        path: shown.clone(),
        reason,
    };
    let impostor = |reason: String| ClientError::Impostor {
        path: shown.clone(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| not_running(e.to_string()))?;
    if meta.uid() != service_uid {
        return Err(impostor(format!(
            "the socket is owned by uid {}, not by the service's uid {service_uid}",
            meta.uid()
        )));
    }
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| not_running(e.to_string()))?;
    let peer = stream
        .peer_cred()
        .map_err(|e| impostor(format!("no peer credentials: {e}")))?;
    if peer.uid() != service_uid {
        return Err(impostor(format!(
            "the process answering runs as uid {}, not as the service's uid {service_uid}",
            peer.uid()
        )));
    }
    let (read, write) = stream.into_split();
    exchange(read, write, request).await
}
