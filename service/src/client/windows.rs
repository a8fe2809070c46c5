//! The pipe client on Windows, with its identity check: the process
//! serving the pipe must run as the service's account (LocalSystem unless
//! configured), by its token's SID, so a user process that took the pipe's
//! name cannot impersonate the service.

use std::os::windows::io::AsRawHandle as _;
use std::path::Path;

use super::ClientError;
use super::lines::exchange;
use crate::protocol::{Request, Response};
use crate::win_security::{End, Sid, open_pipe_client, peer_user, same};

pub(super) async fn call(
    path: &Path,
    service_sid: &str,
    request: &Request,
) -> Result<Response, ClientError> {
    let shown = path.display().to_string();
    let impostor = |reason: String| ClientError::Impostor {
        path: shown.clone(),
        reason,
    };
    let pipe = open_pipe_client(path)
        .await
        .map_err(|e| ClientError::NotRunning {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    let expected = Sid::parse(service_sid).map_err(|e| {
        impostor(format!(
            "the service account {service_sid:?} is not a SID: {e}"
        ))
    })?;
    let serving = peer_user(pipe.as_raw_handle(), End::Server)
        .map_err(|e| impostor(format!("the serving process's account is unknown: {e}")))?;
    if !same(&serving, &expected) {
        return Err(impostor(format!(
            "the process serving the pipe runs as {serving}, not as the service's account {service_sid}"
        )));
    }
    let (read, write) = tokio::io::split(pipe);
    exchange(read, write, request).await
}
