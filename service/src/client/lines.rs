//! One request line out, one reply line back, over whatever carries it
//! (the Unix socket, the Windows pipe), bounded in size and time.

use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};

use super::ClientError;
use crate::protocol::{MAX_RESPONSE_LINE, Request, Response, parse_response, to_line};

/// How long one exchange may take (an EAT may wait for a posture run).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `request` and reads its reply.
pub(super) async fn exchange<R, W>(
    read: R,
    mut write: W,
    request: &Request,
) -> Result<Response, ClientError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let exchange = async {
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
