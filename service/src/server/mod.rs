//! The service's state and its answer to each request, independent of the
//! transport: the Unix socket (`server/unix.rs`) and the demo's in-process
//! link ([`crate::client::DeviceService::in_process`]) both call
//! [`Service::handle`] with the caller as the kernel reported it ([`Peer`]).
//!
//! Every signed token is built here from the service's own values: the
//! posture it measured, its clock, a fresh `jti`, the caller's uid. The
//! request only chooses the nonce, subject and audience of an EAT, and the
//! method, URL, token hash and WireGuard key of a DPoP proof, all of which
//! the broker checks against its own state.
//!
//! Recovery: before each use the key is checked ([`KeyBackend::check`]);
//! when it is gone (file deleted, TPM cleared) a new one is made in the
//! same store, logged, and reported in [`DeviceInfo::key_replaced_at`].
//! The new key has a new device id, so the broker sees an unknown device
//! and the agent enrols it again, through the broker's approval path (or,
//! in `hardware` mode, with the new key's TPM evidence).
//!
//! Which store: [`Backend`]. `auto` takes the TPM when this build has it
//! (feature `tpm`) and one answers at the configured TCTI, else the
//! software key, and logs which; every EAT says which
//! (`key_assurance`).

mod connection;
#[cfg(unix)]
pub mod unix;
#[cfg(windows)]
pub mod windows;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use posture::attestation::{EatClaims, MAX_EAT_LIFETIME_SECS, sign_eat};
use posture::dpop::{DpopClaims, htu, new_jti};
use posture::report::Report;
use time::OffsetDateTime;

use broker::api::KeyAttestation;

use crate::keys::signer::BackendSigner;
use crate::keys::software::SoftwareKey;
use crate::keys::{KeyBackend, KeyError};
use crate::protocol::{DeviceInfo, ErrorCode, Request, Response};

/// How long a signed EAT is valid.
pub const EAT_LIFETIME_SECS: i64 = 120;
/// The `swname` of EATs the service signs.
pub const SWNAME: &str = "sallyportd";

/// Which key store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The root-only software key file.
    Software,
    /// A TPM 2.0 at [`TpmConfig::tcti`]; an error when this build has no
    /// TPM support (feature `tpm`) or no TPM answers: an administrator who
    /// asked for hardware gets hardware or a failed start, never a quiet
    /// software key.
    Tpm,
    /// The best available: the TPM when built with feature `tpm` and one
    /// answers, else the software key (logged, and reported as such in
    /// every EAT).
    Auto,
}

impl Backend {
    /// The name `--backend` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Software => "software",
            Backend::Tpm => "tpm",
            Backend::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "software" => Ok(Backend::Software),
            "tpm" => Ok(Backend::Tpm),
            "auto" => Ok(Backend::Auto),
            other => Err(format!(
                "unknown key backend {other:?} (expected software, tpm or auto)"
            )),
        }
    }
}

/// Whether this build can hold the key in a TPM (feature `tpm`, Linux).
pub const TPM_SUPPORTED: bool = cfg!(all(feature = "tpm", target_os = "linux"));

/// The TPM the key lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmConfig {
    /// The tpm2-tss TCTI: `device:/dev/tpmrm0` (the kernel's resource
    /// manager, shared with other TPM users), or `swtpm:host=...,port=...`
    /// for a software TPM.
    pub tcti: String,
    /// The persistent handle the key is kept at.
    pub persistent_handle: u32,
}

/// The TCTI `sallyportd` uses unless told otherwise.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// The persistent handle of the device key: one in the owner range
/// (`0x81000000..=0x817FFFFF`) that the TCG's registry leaves to
/// applications.
pub const DEFAULT_TPM_HANDLE: u32 = 0x8100_5A01;

impl Default for TpmConfig {
    fn default() -> Self {
        TpmConfig {
            tcti: DEFAULT_TCTI.to_owned(),
            persistent_handle: DEFAULT_TPM_HANDLE,
        }
    }
}

/// How the service is set up.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The key store.
    pub backend: Backend,
    /// The software key's file.
    pub key_path: PathBuf,
    /// The TPM (backends `tpm` and `auto`).
    pub tpm: TpmConfig,
    /// How posture is collected (its cache lives in the service's
    /// root-owned cache directory).
    pub collect: posture::collect::Options,
    /// A measured report is reused for this long before measuring again.
    pub posture_max_age: Duration,
}

/// Who is calling, as the kernel says (`SO_PEERCRED`, or the pipe
/// client's process token on Windows), never as claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The caller's uid (Unix); `None` on Windows, which has SIDs instead.
    pub uid: Option<u32>,
    /// The caller's account: its name on Unix when it resolves, its SID
    /// (`S-1-5-21-…`) on Windows.
    pub user: Option<String>,
}

impl Peer {
    /// The peer `uid`, with its account name looked up.
    pub fn from_uid(uid: u32) -> Self {
        Peer {
            uid: Some(uid),
            user: user_name(uid),
        }
    }

    /// The peer whose account is `sid` (Windows).
    pub fn from_sid(sid: String) -> Self {
        Peer {
            uid: None,
            user: Some(sid),
        }
    }
}

#[cfg(unix)]
fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

#[cfg(not(unix))]
fn user_name(_uid: u32) -> Option<String> {
    None
}

/// The device service.
#[derive(Debug)]
pub struct Service {
    config: ServiceConfig,
    key: Mutex<Arc<dyn KeyBackend>>,
    key_replaced_at: Mutex<Option<OffsetDateTime>>,
    /// The current key's evidence, made once per key: the qualifying data
    /// is the device id, not a nonce, so it does not go stale, and every
    /// user's agent asks for it at each enrolment.
    evidence: Mutex<Option<(String, KeyAttestation)>>,
    posture: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>>,
    /// The updater, when this service checks for updates.
    updater: Option<Arc<crate::updater::Updater>>,
}

/// Opens the configured key store (creating the key when there is none).
pub fn open_backend(config: &ServiceConfig) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let software = || -> Result<Arc<dyn KeyBackend>, KeyError> {
        Ok(Arc::new(SoftwareKey::load_or_create(&config.key_path)?))
    };
    match config.backend {
        Backend::Software => software(),
        Backend::Tpm => open_tpm(&config.tpm),
        Backend::Auto if !TPM_SUPPORTED => {
            tracing::info!("key store: software (this sallyportd is built without TPM support)");
            software()
        }
        Backend::Auto => match open_tpm(&config.tpm) {
            // Only "no TPM here" falls back: a TPM that answers but fails
            // is an error to fix, not a reason to change the device's key.
            Err(KeyError::Unavailable { reason, .. }) => {
                tracing::warn!(
                    tcti = %config.tpm.tcti,
                    %reason,
                    "key store: software (no usable TPM)"
                );
                software()
            }
            other => other,
        },
    }
}

#[cfg(all(feature = "tpm", target_os = "linux"))]
fn open_tpm(tpm: &TpmConfig) -> Result<Arc<dyn KeyBackend>, KeyError> {
    use crate::keys::tpm::TpmKey;
    let key = match TpmKey::load(&tpm.tcti, tpm.persistent_handle) {
        Err(KeyError::Gone(why)) => {
            tracing::info!(
                tcti = %tpm.tcti,
                handle = %format_args!("{:#010x}", tpm.persistent_handle),
                %why,
                "no device key in the TPM (first start, or the TPM was cleared): making one"
            );
            TpmKey::load_or_create(&tpm.tcti, tpm.persistent_handle)?
        }
        other => other?,
    };
    tracing::info!(tcti = %tpm.tcti, "key store: TPM 2.0");
    Ok(Arc::new(key))
}

#[cfg(not(all(feature = "tpm", target_os = "linux")))]
fn open_tpm(_tpm: &TpmConfig) -> Result<Arc<dyn KeyBackend>, KeyError> {
    Err(KeyError::Unavailable {
        backend: "tpm",
        reason: "this sallyportd was built without TPM support (cargo feature `tpm`, Linux \
                 only); use --backend software or auto, or a build with it"
            .to_owned(),
    })
}

impl Service {
    /// Opens the key store (creating the key on first start).
    pub fn open(config: ServiceConfig) -> Result<Self, KeyError> {
        let key = open_backend(&config)?;
        tracing::info!(
            device_id = %key.public_jwk().thumbprint(),
            key_assurance = key.assurance().as_str(),
            "device key ready"
        );
        Ok(Service {
            config,
            key: Mutex::new(key),
            key_replaced_at: Mutex::new(None),
            evidence: Mutex::new(None),
            posture: tokio::sync::Mutex::new(None),
            updater: None,
        })
    }

    /// Answers `UpdateStatus` from `updater` (which the caller runs).
    pub fn with_updater(mut self, updater: Arc<crate::updater::Updater>) -> Self {
        self.updater = Some(updater);
        self
    }

    /// The key to sign with: the current one if it is still there, else a
    /// new one (recovery, see the module docs).
    pub fn key(&self) -> Result<Arc<dyn KeyBackend>, KeyError> {
        let mut key = self.key.lock().unwrap_or_else(|e| e.into_inner());
        match key.check() {
            Ok(()) => Ok(key.clone()),
            Err(KeyError::Gone(why)) => {
                let old = key.public_jwk().thumbprint();
                let new = open_backend(&self.config)?;
                tracing::warn!(
                    reason = %why,
                    old_device_id = %old,
                    new_device_id = %new.public_jwk().thumbprint(),
                    "the device key was lost; made a new one, which must be enrolled and approved again"
                );
                *key = new.clone();
                *self
                    .key_replaced_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(OffsetDateTime::now_utc());
                Ok(new)
            }
            Err(other) => Err(other),
        }
    }

    /// The device's identity (after the recovery check).
    pub fn device_info(&self) -> Result<DeviceInfo, KeyError> {
        let key = self.key()?;
        let replaced = *self
            .key_replaced_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(DeviceInfo {
            device_id: key.public_jwk().thumbprint(),
            public_jwk: key.public_jwk().clone(),
            key_assurance: key.assurance().as_str().to_owned(),
            key_replaced_at: replaced.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    /// The current key's hardware evidence (after the recovery check), with
    /// its device id; `None` for a key that has none (software).
    pub fn key_attestation(&self) -> Result<(String, Option<KeyAttestation>), KeyError> {
        let key = self.key()?;
        let device_id = key.public_jwk().thumbprint();
        let mut cached = self.evidence.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, evidence)) = cached.as_ref()
            && *id == device_id
        {
            return Ok((device_id, Some(evidence.clone())));
        }
        let evidence = key.key_attestation()?;
        *cached = evidence.clone().map(|e| (device_id.clone(), e));
        Ok((device_id, evidence))
    }

    /// TPM2_ActivateCredential of the broker's challenge (base64url in and
    /// out); a malformed challenge is a bad request, a key store without an
    /// attestation key or a TPM that cannot activate it a key error.
    fn activate_credential(&self, blob: &str, secret: &str) -> Result<String, Refusal> {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
        let decode = |field: &str, text: &str| {
            B64URL.decode(text).map_err(|_| Refusal {
                code: ErrorCode::BadRequest,
                message: format!("{field} is not base64url"),
            })
        };
        let (blob, secret) = (
            decode("credential_blob", blob)?,
            decode("encrypted_secret", secret)?,
        );
        let key = self.key().map_err(key_error)?;
        let recovered = key.activate_credential(&blob, &secret).map_err(key_error)?;
        tracing::info!(device_id = %key.public_jwk().thumbprint(), "activated the broker's credential");
        Ok(B64URL.encode(recovered))
    }

    /// The latest report, measured again when older than the configured age.
    pub async fn posture(&self) -> Arc<Report> {
        let mut cached = self.posture.lock().await;
        if let Some((at, report)) = cached.as_ref()
            && at.elapsed() < self.config.posture_max_age
        {
            return report.clone();
        }
        let report = Arc::new(posture::collect::collect(&self.config.collect).await);
        *cached = Some((Instant::now(), report.clone()));
        report
    }

    /// Answers one request from `peer`.
    pub async fn handle(&self, peer: &Peer, request: Request) -> Response {
        let result = match request {
            Request::DeviceInfo => self
                .device_info()
                .map(Response::DeviceInfo)
                .map_err(key_error),
            Request::KeyAttestation => self
                .key_attestation()
                .map(|(device_id, evidence)| {
                    let note = evidence.is_none().then(|| NO_EVIDENCE.to_owned());
                    Response::KeyAttestation {
                        device_id,
                        evidence: evidence.map(Box::new),
                        note,
                    }
                })
                .map_err(key_error),
            Request::ActivateCredential {
                credential_blob,
                encrypted_secret,
            } => self
                .activate_credential(&credential_blob, &encrypted_secret)
                .map(|secret| Response::CredentialActivated { secret }),
            Request::Posture => Ok(Response::Posture {
                report: Box::new((*self.posture().await).clone()),
            }),
            Request::UpdateStatus => Ok(Response::UpdateStatus {
                status: match &self.updater {
                    Some(updater) => updater.status(),
                    None => crate::updater::UpdateStatus {
                        running: env!("CARGO_PKG_VERSION").to_owned(),
                        phase: crate::updater::Phase::Off,
                        last_check: None,
                        recent: Vec::new(),
                    },
                },
            }),
            Request::Attest {
                nonce,
                sub,
                audience,
            } => self.attest(peer, &nonce, &sub, &audience).await,
            Request::SignDpop {
                method,
                url,
                ath,
                wg_pub,
            } => self.sign_dpop(&method, &url, &ath, wg_pub),
        };
        result.unwrap_or_else(|e| Response::Error {
            code: e.code,
            message: e.message,
        })
    }

    async fn attest(
        &self,
        peer: &Peer,
        nonce: &str,
        sub: &str,
        audience: &str,
    ) -> Result<Response, Refusal> {
        let report = self.posture().await;
        let key = self.key().map_err(key_error)?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = EatClaims::for_jwk(
            key.public_jwk(),
            nonce,
            audience,
            sub,
            (*report).clone(),
            now,
            EAT_LIFETIME_SECS.min(MAX_EAT_LIFETIME_SECS),
        );
        claims.swname = SWNAME.to_owned();
        claims.swversion = env!("CARGO_PKG_VERSION").to_owned();
        claims.key_assurance = Some(key.assurance().as_str().to_owned());
        claims.local_uid = peer.uid;
        claims.local_user = peer.user.clone();
        let eat = sign_eat(&BackendSigner(key.as_ref()), &claims).map_err(internal)?;
        let device_id = key.public_jwk().thumbprint();
        tracing::info!(%device_id, local_uid = ?peer.uid, local_user = ?peer.user, "signed an attestation");
        Ok(Response::Attestation { eat, device_id })
    }

    fn sign_dpop(
        &self,
        method: &str,
        url: &str,
        ath: &str,
        wg_pub: Option<String>,
    ) -> Result<Response, Refusal> {
        let key = self.key().map_err(key_error)?;
        let claims = DpopClaims {
            jti: new_jti(),
            htm: method.to_owned(),
            htu: htu(url).to_owned(),
            iat: OffsetDateTime::now_utc().unix_timestamp(),
            ath: ath.to_owned(),
            wg_pub,
        };
        let proof =
            posture::dpop::sign_proof(&BackendSigner(key.as_ref()), &claims).map_err(internal)?;
        Ok(Response::DpopProof {
            proof,
            device_id: key.public_jwk().thumbprint(),
        })
    }
}

/// The [`Response::KeyAttestation`] note of a key without evidence.
pub const NO_EVIDENCE: &str =
    "software key: no hardware evidence (the broker's hardware enrolment mode refuses it)";

/// A request the service could not answer (becomes [`Response::Error`]).
#[derive(Debug)]
struct Refusal {
    code: ErrorCode,
    message: String,
}

fn key_error(e: KeyError) -> Refusal {
    tracing::error!(error = %e, "device key unavailable");
    Refusal {
        code: ErrorCode::KeyUnavailable,
        message: e.to_string(),
    }
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "signing failed");
    Refusal {
        code: ErrorCode::Internal,
        message: e.to_string(),
    }
}
