//! One front end's connection, whatever carries it (a Unix socket, a
//! Windows named pipe): read request lines, hand each to the runtime, write
//! its reply line. The transports only decide who may connect.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::{MAX_LINE, ProtocolError, Reply, Request, parse_request, to_line};

/// A request and where to send its reply; the agent's runtime receives these.
pub type Incoming = (Request, oneshot::Sender<Reply>);

/// How long the agent may take to answer one request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the control channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Filesystem or socket error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The socket or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The socket directory is not private to this user.
    #[error("{0} is not private to this user (owner or permissions); refusing to use it")]
    InsecureDirectory(String),
    /// Another agent already listens there.
    #[error("an agent is already running ({0})")]
    AlreadyRunning(String),
    /// No agent listens there.
    #[error("no agent is running ({0}); start it with `sallyport run`")]
    NotRunning(String),
    /// The agent's answer was not a reply.
    #[error("the agent answered something unexpected: {0}")]
    BadReply(String),
    /// The process serving the agent's pipe runs as another account.
    #[error(
        "{path} is served by another account ({owner}), not this user's agent; refusing to use it"
    )]
    Impostor {
        /// The pipe or socket.
        path: String,
        /// Who serves it.
        owner: String,
    },
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
    move |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Serves request lines until the client hangs up or sends too long a line.
pub(crate) async fn serve_lines<R, W>(read: R, mut write: W, handler: mpsc::Sender<Incoming>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        let reply = if !complete && line.len() > MAX_LINE {
            let reply = Reply::Error {
                message: ProtocolError::TooLong.to_string(),
            };
            let _ = write.write_all(&to_line(&reply)).await;
            return;
        } else {
            match parse_request(&line) {
                Ok(request) => ask(&handler, request).await,
                Err(e) => Reply::Error {
                    message: e.to_string(),
                },
            }
        };
        if write.write_all(&to_line(&reply)).await.is_err() {
            return;
        }
    }
}

async fn ask(handler: &mpsc::Sender<Incoming>, request: Request) -> Reply {
    let (tx, rx) = oneshot::channel();
    if handler.send((request, tx)).await.is_err() {
        return Reply::Error {
            message: "the agent is shutting down".to_owned(),
        };
    }
    match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
        Ok(Ok(reply)) => reply,
        _ => Reply::Error {
            message: "the agent did not answer in time".to_owned(),
        },
    }
}

/// Sends one request line and reads one reply line.
pub(crate) async fn exchange<R, W>(
    read: R,
    mut write: W,
    request: &Request,
) -> Result<Result<Reply, String>, std::io::Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    write.write_all(&to_line(request)).await?;
    let mut line = Vec::new();
    let limit = u64::try_from(16 * MAX_LINE).unwrap_or(u64::MAX);
    BufReader::new(read)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await?;
    Ok(serde_json::from_slice(&line).map_err(|e| e.to_string()))
}
