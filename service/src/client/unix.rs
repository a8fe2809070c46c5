//! The socket client on Unix, with its two identity checks: the socket
//! file's owner and the peer's uid (`SO_PEERCRED`) must both be the
//! service's account. The first stops a look-alike socket at another path
//! an administrator mistyped into a shared directory; the second is the
//! one that matters, since it names the process that actually answers.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

use super::ClientError;
use crate::protocol::{MAX_RESPONSE_LINE, Request, Response, parse_response, to_line};

/// How long one exchange may take (an EAT may wait for a posture run).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

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
    let exchange = async {
        let (read, mut write) = stream.into_split();
        write
            .write_all(&to_line(request))
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let mut line = Vec::new();
        BufReader::new(read)
            .take(MAX_RESPONSE_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?;
        if line.last() != Some(&b'\n') {
            return Err(ClientError::Io(
                "the reply was cut short or too long".to_owned(),
            ));
        }
        line.pop();
        parse_response(&line).map_err(|e| ClientError::Io(e.to_string()))
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| ClientError::Io(format!("no reply within {CALL_TIMEOUT:?}")))?
}
