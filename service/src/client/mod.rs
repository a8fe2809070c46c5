//! The user side's way to the device service: the agent asks it for its
//! public key, for EATs and for DPoP proofs, and never holds the private
//! key. Two links, one API ([`DeviceService`]):
//!
//! - **Socket** (a real install): `sallyportd`'s Unix socket. Before it
//!   sends anything, the client checks who answers: the socket file must
//!   be owned by the service's account (root unless configured) and the
//!   process at the other end (`SO_PEERCRED`) must run as that account, so
//!   a user process squatting on the path cannot impersonate the service.
//! - **Pipe** (Windows): `sallyportd`'s named pipe; the process serving it
//!   must run as LocalSystem (its token's SID), for the same reason.
//! - **In process** (the demo, no admin rights): the service's own code,
//!   [`crate::server::Service`], called directly with this process's uid as
//!   the peer. The same claims are built and signed; only the privilege
//!   split is missing, and the demo says so.

mod lines;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

use std::path::PathBuf;
use std::sync::Arc;

use broker::api::KeyAttestation;
use posture::report::Report;

use crate::protocol::{DeviceInfo, ErrorCode, Request, Response};
use crate::server::{Peer, Service};

/// The environment variable that points the agent at a device service
/// socket.
pub const SOCKET_ENV: &str = "SALLYPORT_SERVICE_SOCKET";

/// Why the device service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error(
        "the Sallyport device service is not running ({path}: {reason}); ask IT to start sallyportd"
    )]
    NotRunning {
        /// The socket.
        path: String,
        /// Why.
        reason: String,
    },
    /// Whoever answers is not the device service.
    #[error("refusing the device service at {path}: {reason}")]
    Impostor {
        /// The socket.
        path: String,
        /// What did not match.
        reason: String,
    },
    /// The connection broke or the reply was not understood.
    #[error("the device service connection failed: {0}")]
    Io(String),
    /// The service refused the request.
    #[error("the device service refused ({code:?}): {message}")]
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The reply does not answer the request.
    #[error("the device service sent an unexpected reply")]
    Unexpected,
    /// This OS has no device service client yet.
    #[error("the device service is not supported on this OS yet")]
    Unsupported,
}

/// A signed token and the device id of the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The compact JWS.
    pub token: String,
    /// The signing key's thumbprint (changes when the key was replaced).
    pub device_id: String,
}

/// The device key's hardware evidence as the service gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvidence {
    /// The key the evidence is about.
    pub device_id: String,
    /// The evidence; `None` for a software key.
    pub evidence: Option<KeyAttestation>,
    /// Why there is none, from the service.
    pub note: Option<String>,
}

/// Where the device service is.
#[derive(Debug, Clone)]
pub enum DeviceService {
    /// `sallyportd` on a Unix socket, run by `service_uid`.
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The account the service must run as (0: root).
        service_uid: u32,
    },
    /// `sallyportd`'s named pipe (Windows), served by `service_sid`.
    #[cfg(windows)]
    Pipe {
        /// The pipe name (`\\.\pipe\sallyportd`).
        path: PathBuf,
        /// The account the service must run as (LocalSystem: `S-1-5-18`).
        service_sid: String,
    },
    /// The service's code in this process (the demo).
    InProcess(Arc<Service>),
}

impl DeviceService {
    /// The service at `path` (a socket on Unix, a pipe on Windows), which
    /// must run as root (Unix) or LocalSystem (Windows).
    pub fn socket(path: impl Into<PathBuf>) -> Self {
        #[cfg(windows)]
        {
            DeviceService::Pipe {
                path: path.into(),
                service_sid: crate::win_security::LOCAL_SYSTEM.to_owned(),
            }
        }
        #[cfg(not(windows))]
        {
            DeviceService::Socket {
                path: path.into(),
                service_uid: 0,
            }
        }
    }

    /// The service's code in this process.
    pub fn in_process(service: Arc<Service>) -> Self {
        DeviceService::InProcess(service)
    }

    /// One request, one reply; a refusal is [`ClientError::Refused`].
    pub async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let reply = match self {
            DeviceService::Socket { path, service_uid } => {
                call_socket(path, *service_uid, request).await?
            }
            #[cfg(windows)]
            DeviceService::Pipe { path, service_sid } => {
                windows::call(path, service_sid, request).await?
            }
            DeviceService::InProcess(service) => {
                service.handle(&in_process_peer(), request.clone()).await
            }
        };
        match reply {
            Response::Error { code, message } => Err(ClientError::Refused { code, message }),
            reply => Ok(reply),
        }
    }

    /// The device identity.
    pub async fn device_info(&self) -> Result<DeviceInfo, ClientError> {
        match self.call(&Request::DeviceInfo).await? {
            Response::DeviceInfo(info) => Ok(info),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// The device key's hardware evidence (for enrolment in the broker's
    /// `hardware` mode).
    pub async fn key_attestation(&self) -> Result<KeyEvidence, ClientError> {
        match self.call(&Request::KeyAttestation).await? {
            Response::KeyAttestation {
                device_id,
                evidence,
                note,
            } => Ok(KeyEvidence {
                device_id,
                evidence: evidence.map(|e| *e),
                note,
            }),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// TPM2_ActivateCredential of the broker's `hardware`-enrolment
    /// challenge: the secret for `EnrolRequest.activation_secret`.
    pub async fn activate_credential(
        &self,
        challenge: &broker::api::KeyActivation,
    ) -> Result<String, ClientError> {
        let request = Request::ActivateCredential {
            credential_blob: challenge.credential_blob.clone(),
            encrypted_secret: challenge.encrypted_secret.clone(),
        };
        match self.call(&request).await? {
            Response::CredentialActivated { secret } => Ok(secret),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// The service's latest posture report.
    pub async fn posture(&self) -> Result<Report, ClientError> {
        match self.call(&Request::Posture).await? {
            Response::Posture { report } => Ok(*report),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// What the service's updater last did.
    pub async fn update_status(&self) -> Result<crate::updater::UpdateStatus, ClientError> {
        match self.call(&Request::UpdateStatus).await? {
            Response::UpdateStatus { status } => Ok(status),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// An EAT for the broker's nonce, the user's subject and the audience.
    pub async fn attest(
        &self,
        nonce: &str,
        sub: &str,
        audience: &str,
    ) -> Result<Signed, ClientError> {
        let request = Request::Attest {
            nonce: nonce.to_owned(),
            sub: sub.to_owned(),
            audience: audience.to_owned(),
        };
        match self.call(&request).await? {
            Response::Attestation { eat, device_id } => Ok(Signed {
                token: eat,
                device_id,
            }),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// A DPoP proof for `method` on `url` with the access token whose hash
    /// is `ath`, bound to `wg_pub` for a grant.
    pub async fn sign_dpop(
        &self,
        method: &str,
        url: &str,
        ath: &str,
        wg_pub: Option<&str>,
    ) -> Result<Signed, ClientError> {
        let request = Request::SignDpop {
            method: method.to_owned(),
            url: url.to_owned(),
            ath: ath.to_owned(),
            wg_pub: wg_pub.map(str::to_owned),
        };
        match self.call(&request).await? {
            Response::DpopProof { proof, device_id } => Ok(Signed {
                token: proof,
                device_id,
            }),
            _ => Err(ClientError::Unexpected),
        }
    }
}

/// This process as the in-process service's caller.
#[cfg(unix)]
fn in_process_peer() -> Peer {
    Peer::from_uid(nix::unistd::geteuid().as_raw())
}

/// This process as the in-process service's caller.
#[cfg(windows)]
fn in_process_peer() -> Peer {
    match crate::win_security::current_user() {
        Ok(sid) => Peer::from_sid(sid.to_string()),
        Err(_) => Peer {
            uid: None,
            user: None,
        },
    }
}

/// This process as the in-process service's caller.
#[cfg(not(any(unix, windows)))]
fn in_process_peer() -> Peer {
    Peer {
        uid: None,
        user: None,
    }
}

#[cfg(unix)]
async fn call_socket(
    path: &std::path::Path,
    service_uid: u32,
    request: &Request,
) -> Result<Response, ClientError> {
    unix::call(path, service_uid, request).await
}

#[cfg(not(unix))]
async fn call_socket(
    _path: &std::path::Path,
    _service_uid: u32,
    _request: &Request,
) -> Result<Response, ClientError> {
    Err(ClientError::Unsupported)
}
