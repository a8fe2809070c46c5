//! The pipe client on Windows, with its identity check: the process
//! serving the pipe must run as the service's account (LocalSystem unless
//! configured), by its token's SID, so a user process that took the pipe's
//! name cannot impersonate the service.

use std::os::windows::io::AsRawHandle as _;
use std::path::Path;
use std::time::Duration;

use tokio::net::windows::named_pipe::ClientOptions;

use super::ClientError;
use super::lines::exchange;
use crate::protocol::{Request, Response};
use crate::win_security::{End, Sid, peer_user, same};

/// ERROR_PIPE_BUSY: every instance is taken; retry shortly.
const ERROR_PIPE_BUSY: i32 = 231;

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
    let mut busy = 0;
    let pipe = loop {
        match ClientOptions::new().open(path) {
            Ok(pipe) => break pipe,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && busy < 40 => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(ClientError::NotRunning {
                    path: shown.clone(),
                    reason: e.to_string(),
                });
            }
        }
    };
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
