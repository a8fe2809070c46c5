//! One connection's conversation, whatever carries it (the Unix socket,
//! the Windows named pipe): request lines in, reply lines out, each line
//! bounded, an idle connection closed, a malformed request answered with an
//! error (and the connection closed when the line was too long to trust
//! what follows).

use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};

use super::{Peer, Service};
use crate::protocol::{MAX_REQUEST_LINE, ProtocolError, parse_request, to_line};

/// An idle connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Answers `peer`'s requests on `read`/`write` until it hangs up, idles
/// out, or sends a line too long to trust.
pub(crate) async fn serve_lines<R, W>(read: R, mut write: W, peer: &Peer, service: &Service)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut read = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let limit = MAX_REQUEST_LINE as u64 + 1;
        let mut bounded = (&mut read).take(limit);
        let read_line = bounded.read_until(b'\n', &mut line);
        let n = match tokio::time::timeout(IDLE_TIMEOUT, read_line).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return,
        };
        if n == 0 {
            return;
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        let reply = if !complete && line.len() > MAX_REQUEST_LINE {
            Err(ProtocolError::TooLarge(MAX_REQUEST_LINE))
        } else {
            parse_request(&line)
        };
        let (reply, close) = match reply {
            Ok(request) => (service.handle(peer, request).await, false),
            Err(e) => {
                tracing::info!(uid = ?peer.uid, user = ?peer.user, error = %e, "refused a request");
                (e.response(), e.closes_connection())
            }
        };
        if write.write_all(&to_line(&reply)).await.is_err() || close {
            return;
        }
    }
}
