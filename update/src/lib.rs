//! Sallyport's signed update feed, as the device service reads it and the
//! release tool writes it.
//!
//! The trust chain has three levels, so the key that can change every
//! laptop never sits on a build machine:
//!
//! 1. **Root keys** (Ed25519), built into the binary ([`RootKey`]). They
//!    are kept offline and only sign statements about signing keys.
//! 2. **Signing keys**, each named by a root-signed [`KeyStatement`] that
//!    says when it is valid (short-lived: weeks). A root-signed
//!    [`Revocation`] in the feed withdraws one before its end.
//! 3. **The manifest** ([`Manifest`]): version, when it was issued, the
//!    lowest version still supported, and per platform the artifact's URL,
//!    SHA-256 and size — signed by a signing key.
//!
//! Every signed thing is a [`Signed`] envelope: the payload's exact JSON
//! bytes (base64url), who signed, the signature over those bytes. Nothing
//! is re-serialised before checking, so there is no canonical-JSON
//! question.
//!
//! Everything here is pure: [`verify_feed`] checks the chain at a given
//! time, [`decide`] says what the service does with a verified manifest
//! given the running version, IT's pin and the last manifest it accepted
//! (freeze attacks), and [`check_artifact`] checks a download. The service
//! does the I/O (`sallyportd`'s updater) and the release tool
//! (`sallyport-release`) the signing.

pub mod policy;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
pub use ed25519_dalek::SigningKey;
use ed25519_dalek::{Signature, Signer as _, Verifier as _, VerifyingKey};
use semver::Version;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The largest feed read, in bytes: a manifest is a few KiB.
pub const MAX_FEED_BYTES: usize = 1024 * 1024;

/// A root public key built into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootKey {
    /// Its name, as statements cite it.
    pub id: &'static str,
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
}

/// A payload with its signature: `payload` is base64url of the signed
/// bytes (JSON), `signer` the key id, `signature` base64url of the 64-byte
/// Ed25519 signature over the decoded payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// base64url of the exact JSON bytes signed.
    pub payload: String,
    /// The id of the key that signed.
    pub signer: String,
    /// base64url of the signature.
    pub signature: String,
}

/// A root's statement that a signing key may sign manifests for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatement {
    /// The signing key's id.
    pub id: String,
    /// base64url of its Ed25519 public key.
    pub public_key: String,
    /// Valid from.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Valid until.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// A root's statement that a signing key must no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked signing key's id.
    pub id: String,
    /// Why (for the audit line).
    pub reason: String,
}

/// One platform's package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Where to download it (https, or http to loopback for tests).
    pub url: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a release offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The release's version (SemVer).
    pub version: String,
    /// When it was signed: a manifest older than the last one accepted is
    /// refused (a replayed old feed must not freeze a fleet on old code).
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The lowest version still supported (informational: the tray says
    /// an update is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_version: Option<String>,
    /// Per platform ([`platform`]) its package.
    pub artifacts: BTreeMap<String, Artifact>,
}

/// The whole feed document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    /// Root-signed [`KeyStatement`]s.
    pub keys: Vec<Signed>,
    /// Root-signed [`Revocation`]s.
    #[serde(default)]
    pub revocations: Vec<Signed>,
    /// The [`Manifest`], signed by a signing key.
    pub manifest: Signed,
}

/// Why a feed or an artifact is refused. Each is a reason the audit line
/// and the tray can show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a feed, or larger than [`MAX_FEED_BYTES`].
    #[error("the update feed is malformed: {0}")]
    Malformed(String),
    /// A signature does not verify (tampered, or signed by another key).
    #[error("bad signature on {0}")]
    BadSignature(String),
    /// The manifest names a signing key no root vouches for here.
    #[error("the manifest's signing key {0:?} is not vouched for by a built-in root key")]
    UnknownKey(String),
    /// The signing key's validity does not cover now.
    #[error("the signing key {id:?} is not valid now (valid {not_before} to {not_after})")]
    SigningKeyExpired {
        /// The key.
        id: String,
        /// Valid from.
        not_before: String,
        /// Valid until.
        not_after: String,
    },
    /// A root revoked the signing key.
    #[error("the signing key {id:?} was revoked: {reason}")]
    SigningKeyRevoked {
        /// The key.
        id: String,
        /// The root's reason.
        reason: String,
    },
    /// The manifest is older than the last one accepted.
    #[error(
        "the manifest was issued {offered}, before the last one accepted ({seen}): a replayed old feed"
    )]
    Stale {
        /// Its `issued_at`.
        offered: String,
        /// The last accepted `issued_at`.
        seen: String,
    },
    /// The offered version is lower than the running one, and IT did not
    /// pin it.
    #[error(
        "the feed offers {offered}, lower than the running {running}; rollback needs IT to pin that version"
    )]
    Downgrade {
        /// Offered.
        offered: String,
        /// Running.
        running: String,
    },
    /// IT pinned another version than the feed offers.
    #[error("IT pinned version {pin}; the feed offers {offered}")]
    NotPinned {
        /// The pin.
        pin: String,
        /// Offered.
        offered: String,
    },
    /// Nothing for this platform.
    #[error("the release has no package for {0}")]
    NoArtifact(String),
    /// The download's size differs from the manifest's.
    #[error("the download is {got} bytes, the manifest says {want}")]
    SizeMismatch {
        /// Downloaded.
        got: u64,
        /// Signed.
        want: u64,
    },
    /// The download's SHA-256 differs from the manifest's.
    #[error("the download's SHA-256 is {got}, the manifest says {want}")]
    HashMismatch {
        /// Downloaded.
        got: String,
        /// Signed.
        want: String,
    },
}

fn malformed(what: &str, e: impl std::fmt::Display) -> Refusal {
    Refusal::Malformed(format!("{what}: {e}"))
}

/// The payload of `signed`, once its signature verifies with `key`.
fn open<T: DeserializeOwned>(
    signed: &Signed,
    key: &VerifyingKey,
    what: &str,
) -> Result<T, Refusal> {
    let payload = B64
        .decode(&signed.payload)
        .map_err(|e| malformed(what, e))?;
    let signature = B64
        .decode(&signed.signature)
        .map_err(|e| malformed(what, e))?;
    let signature =
        Signature::from_slice(&signature).map_err(|_| Refusal::BadSignature(what.to_owned()))?;
    key.verify(&payload, &signature)
        .map_err(|_| Refusal::BadSignature(what.to_owned()))?;
    serde_json::from_slice(&payload).map_err(|e| malformed(what, e))
}

fn root_key(roots: &[RootKey], id: &str, what: &str) -> Result<VerifyingKey, Refusal> {
    let root = roots.iter().find(|r| r.id == id).ok_or_else(|| {
        Refusal::BadSignature(format!("{what} (signer {id:?} is not a built-in root)"))
    })?;
    VerifyingKey::from_bytes(&root.public_key).map_err(|e| malformed("a built-in root key", e))
}

/// A manifest whose chain verified, with the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// The signing key's id.
    pub signing_key: String,
}

/// Checks the whole chain of `bytes` at `now`: every revocation is signed
/// by a root (a forged one refuses the feed: it was tampered with), the
/// manifest's signing key is vouched for by a root, valid now and not
/// revoked, and the manifest's signature verifies with it. Pure.
pub fn verify_feed(
    bytes: &[u8],
    roots: &[RootKey],
    now: OffsetDateTime,
) -> Result<Verified, Refusal> {
    if bytes.len() > MAX_FEED_BYTES {
        return Err(malformed(
            "the feed",
            format!("{} bytes is too large", bytes.len()),
        ));
    }
    let feed: Feed = serde_json::from_slice(bytes).map_err(|e| malformed("the feed", e))?;
    let mut revoked: BTreeMap<String, String> = BTreeMap::new();
    for signed in &feed.revocations {
        let key = root_key(roots, &signed.signer, "a key revocation")?;
        let r: Revocation = open(signed, &key, "a key revocation")?;
        revoked.insert(r.id, r.reason);
    }
    let signer = &feed.manifest.signer;
    let mut statement = None;
    for signed in &feed.keys {
        let key = root_key(roots, &signed.signer, "a signing-key statement")?;
        let s: KeyStatement = open(signed, &key, "a signing-key statement")?;
        if &s.id == signer {
            statement = Some(s);
        }
    }
    let statement = statement.ok_or_else(|| Refusal::UnknownKey(signer.clone()))?;
    if let Some(reason) = revoked.get(&statement.id) {
        return Err(Refusal::SigningKeyRevoked {
            id: statement.id,
            reason: reason.clone(),
        });
    }
    if now < statement.not_before || now > statement.not_after {
        return Err(Refusal::SigningKeyExpired {
            id: statement.id,
            not_before: rfc3339(statement.not_before),
            not_after: rfc3339(statement.not_after),
        });
    }
    let public = B64
        .decode(&statement.public_key)
        .map_err(|e| malformed("a signing key", e))?;
    let public: [u8; 32] = public
        .try_into()
        .map_err(|_| malformed("a signing key", "not 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&public).map_err(|e| malformed("a signing key", e))?;
    let manifest: Manifest = open(&feed.manifest, &key, "the manifest")?;
    Version::parse(&manifest.version).map_err(|e| malformed("the manifest's version", e))?;
    Ok(Verified {
        manifest,
        signing_key: statement.id,
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What the service does with a verified manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The running version is the offered one.
    UpToDate,
    /// Install `artifact` to reach `version`.
    Install {
        /// The target version.
        version: Version,
        /// This platform's package.
        artifact: Artifact,
        /// The running version is below the manifest's minimum.
        required: bool,
    },
}

/// The service's answer to a verified `manifest` for `platform`, running
/// `running`, with IT's `pin` (install exactly that version, even lower:
/// the only way to roll back) and the `issued_at` of the last manifest it
/// accepted (an older one is a replay). Pure.
pub fn decide(
    manifest: &Manifest,
    platform: &str,
    running: &Version,
    pin: Option<&Version>,
    last_seen: Option<OffsetDateTime>,
) -> Result<Decision, Refusal> {
    if let Some(seen) = last_seen
        && manifest.issued_at < seen
    {
        return Err(Refusal::Stale {
            offered: rfc3339(manifest.issued_at),
            seen: rfc3339(seen),
        });
    }
    let offered =
        Version::parse(&manifest.version).map_err(|e| malformed("the manifest's version", e))?;
    match pin {
        Some(pin) if *pin != offered => {
            return Err(Refusal::NotPinned {
                pin: pin.to_string(),
                offered: offered.to_string(),
            });
        }
        Some(_) => {}
        None if offered < *running => {
            return Err(Refusal::Downgrade {
                offered: offered.to_string(),
                running: running.to_string(),
            });
        }
        None => {}
    }
    if offered == *running {
        return Ok(Decision::UpToDate);
    }
    let artifact = manifest
        .artifacts
        .get(platform)
        .cloned()
        .ok_or_else(|| Refusal::NoArtifact(platform.to_owned()))?;
    let required = manifest
        .minimum_version
        .as_deref()
        .and_then(|m| Version::parse(m).ok())
        .is_some_and(|minimum| *running < minimum);
    Ok(Decision::Install {
        version: offered,
        artifact,
        required,
    })
}

/// Checks a downloaded package against the manifest: size, then SHA-256.
/// Pure.
pub fn check_artifact(bytes: &[u8], artifact: &Artifact) -> Result<(), Refusal> {
    let got = bytes.len() as u64;
    if got != artifact.size {
        return Err(Refusal::SizeMismatch {
            got,
            want: artifact.size,
        });
    }
    let digest = hex(&Sha256::digest(bytes));
    if !digest.eq_ignore_ascii_case(&artifact.sha256) {
        return Err(Refusal::HashMismatch {
            got: digest,
            want: artifact.sha256.clone(),
        });
    }
    Ok(())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This build's platform name in manifests: `linux-deb-x86_64`,
/// `linux-rpm-x86_64`, `windows-msi-x86_64`, `macos-pkg-aarch64`, … The
/// Linux package kind is the one the machine's package manager installs
/// (`dpkg` present: deb).
pub fn platform(linux_package: &str) -> String {
    let os = match std::env::consts::OS {
        "linux" => format!("linux-{linux_package}"),
        "windows" => "windows-msi".to_owned(),
        "macos" => "macos-pkg".to_owned(),
        other => other.to_owned(),
    };
    format!("{os}-{}", std::env::consts::ARCH)
}

/// Signs `payload` (serialised to JSON) with `key`, named `signer`. For
/// the release tool and tests.
pub fn sign<T: Serialize>(payload: &T, key: &SigningKey, signer: &str) -> Signed {
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    let signature = key.sign(&bytes);
    Signed {
        payload: B64.encode(&bytes),
        signer: signer.to_owned(),
        signature: B64.encode(signature.to_bytes()),
    }
}

/// base64url of a public key, as [`KeyStatement::public_key`] holds it.
pub fn public_key_text(key: &SigningKey) -> String {
    B64.encode(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests;
