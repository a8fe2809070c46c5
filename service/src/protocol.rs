//! The device service's local API: one JSON object per line each way,
//! size-bounded, pure (no I/O here), so both the server (`sallyportd`) and
//! the agent's client use the same types and the parsing is unit-tested.
//!
//! The request set is deliberately small, and no request carries bytes to
//! sign: the service builds every claim set itself (an EAT over its own
//! measured posture, with the caller's uid from the kernel; a DPoP proof
//! with its own `iat` and `jti`), so no caller can make it sign a token of
//! the caller's choosing, such as an all-pass EAT.
//!
//! A connection carries any number of request/reply pairs. A malformed or
//! unknown request gets an [`Response::Error`] and the connection stays
//! open; an oversized line gets an error and the connection is closed (the
//! rest of that line cannot be framed).

use broker::api::KeyAttestation;
use posture::attestation::PublicJwk;
use posture::report::Report;
use serde::{Deserialize, Serialize};

/// The longest request line accepted, in bytes (the largest request, a
/// DPoP request with a long URL, is well under 4 KiB).
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// The longest reply line accepted, in bytes (a posture report with its
/// evidence is the largest reply, tens of KiB).
pub const MAX_RESPONSE_LINE: usize = 1024 * 1024;

/// What a caller may ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The device identity: public JWK, device id, key assurance.
    DeviceInfo,
    /// The posture the service measured (for display; the EAT carries its
    /// own copy).
    Posture,
    /// The device key's hardware evidence, for the broker's `hardware`
    /// enrolment mode (`EnrolRequest.key_attestation`).
    KeyAttestation,
    /// TPM2_ActivateCredential of the broker's `hardware`-enrolment
    /// challenge (`key-activation-required`): proves the attestation key
    /// is in this TPM. Both fields base64url, as the broker sent them.
    ActivateCredential {
        /// `TPM2B_ID_OBJECT` contents.
        credential_blob: String,
        /// `TPM2B_ENCRYPTED_SECRET` contents.
        encrypted_secret: String,
    },
    /// An EAT over the service's posture, for the broker's `nonce`, the
    /// signed-in user's `sub` and the broker's `audience`.
    Attest {
        /// The broker's challenge nonce.
        nonce: String,
        /// The OIDC subject of the signed-in user.
        sub: String,
        /// The broker's identifier (`aud`).
        audience: String,
    },
    /// What the updater last did (`crate::updater::UpdateStatus`).
    UpdateStatus,
    /// A DPoP proof (RFC 9449) for one broker call.
    SignDpop {
        /// HTTP method (`GET`, `POST`, ...).
        method: String,
        /// The call's URL (query and fragment are dropped).
        url: String,
        /// base64url SHA-256 of the access token: the token itself never
        /// reaches the service.
        ath: String,
        /// A grant's WireGuard public key (standard base64 of 32 bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wg_pub: Option<String>,
    },
}

/// The device's identity as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The RFC 7638 thumbprint of the key: the broker's device id.
    pub device_id: String,
    /// The public key to enrol.
    pub public_jwk: PublicJwk,
    /// Which store holds the key (`software`, `tpm`, ...).
    pub key_assurance: String,
    /// When the current key was made by recovery (the previous one was
    /// lost) during this service run, RFC 3339; such a device must be
    /// enrolled and approved again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_replaced_at: Option<String>,
    /// The service's version.
    pub version: String,
}

/// The service's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// For [`Request::DeviceInfo`].
    DeviceInfo(DeviceInfo),
    /// For [`Request::Posture`].
    Posture {
        /// The report.
        report: Box<Report>,
    },
    /// For [`Request::KeyAttestation`].
    KeyAttestation {
        /// The device id the evidence is about (the key the agent enrols
        /// must be this one).
        device_id: String,
        /// The evidence (`tpm2-certify` for a TPM key); absent for a key
        /// that has none, the software key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<Box<KeyAttestation>>,
        /// Why there is no evidence, for a person.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// For [`Request::ActivateCredential`]: the recovered secret,
    /// base64url, for `EnrolRequest.activation_secret`.
    CredentialActivated {
        /// The secret.
        secret: String,
    },
    /// For [`Request::Attest`]: the compact EAT.
    Attestation {
        /// `header.payload.signature`.
        eat: String,
        /// The device id of the key that signed.
        device_id: String,
    },
    /// For [`Request::SignDpop`]: the compact proof.
    DpopProof {
        /// `header.payload.signature`.
        proof: String,
        /// The device id of the key that signed.
        device_id: String,
    },
    /// For [`Request::UpdateStatus`].
    UpdateStatus {
        /// The updater's status.
        status: crate::updater::UpdateStatus,
    },
    /// The request was refused or failed.
    Error {
        /// Stable code (see [`ErrorCode`]).
        code: ErrorCode,
        /// What went wrong, for a person.
        message: String,
    },
}

/// Stable error codes of [`Response::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not JSON, or not a known request, or a field is invalid.
    BadRequest,
    /// The line exceeded [`MAX_REQUEST_LINE`]; the connection is closed.
    TooLarge,
    /// The device key failed (unavailable, refused).
    KeyUnavailable,
    /// Posture or signing failed inside the service.
    Internal,
}

/// Why a line is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Longer than the limit.
    #[error("the message exceeds {0} bytes")]
    TooLarge(usize),
    /// Not UTF-8 JSON of a known shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A field's value is not acceptable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl ProtocolError {
    /// The reply that reports this error.
    pub fn response(&self) -> Response {
        Response::Error {
            code: match self {
                ProtocolError::TooLarge(_) => ErrorCode::TooLarge,
                _ => ErrorCode::BadRequest,
            },
            message: self.to_string(),
        }
    }

    /// Whether the connection must close after the reply (the stream can no
    /// longer be framed).
    pub fn closes_connection(&self) -> bool {
        matches!(self, ProtocolError::TooLarge(_))
    }
}

/// One value as a line (JSON + `\n`).
pub fn to_line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).unwrap_or_else(|_| {
        br#"{"reply":"error","code":"internal","message":"unencodable reply"}"#.to_vec()
    });
    line.push(b'\n');
    line
}

/// Parses and validates one request line (without or with its `\n`).
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_REQUEST_LINE {
        return Err(ProtocolError::TooLarge(MAX_REQUEST_LINE));
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let request: Request = serde_json::from_value(value.clone())
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    // serde does not refuse unknown fields in an internally tagged enum's
    // variants: compare with what the request holds, so a caller learns
    // that a field (say, its own `posture`) is ignored rather than signed.
    let known = serde_json::to_value(&request).unwrap_or_default();
    if let (Some(sent), Some(known)) = (value.as_object(), known.as_object())
        && let Some(extra) = sent
            .keys()
            .find(|k| !known.contains_key(*k) && *k != "wg_pub")
    {
        return Err(ProtocolError::Malformed(format!("unknown field `{extra}`")));
    }
    validate(&request)?;
    Ok(request)
}

/// Parses one reply line.
pub fn parse_response(line: &[u8]) -> Result<Response, ProtocolError> {
    if line.len() > MAX_RESPONSE_LINE {
        return Err(ProtocolError::TooLarge(MAX_RESPONSE_LINE));
    }
    serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Field checks: what the service puts into a signed token is bounded and
/// well-formed, whatever the caller sent.
fn validate(request: &Request) -> Result<(), ProtocolError> {
    match request {
        Request::DeviceInfo
        | Request::Posture
        | Request::KeyAttestation
        | Request::UpdateStatus => Ok(()),
        Request::ActivateCredential {
            credential_blob,
            encrypted_secret,
        } => {
            // An ID object and an RSA-2048 encrypted seed are a few hundred
            // bytes; the TPM bounds both well under these.
            for (field, value) in [
                ("credential_blob", credential_blob),
                ("encrypted_secret", encrypted_secret),
            ] {
                if value.is_empty() || value.len() > 2048 || !is_b64url(value) {
                    return Err(invalid(field, "expected 1..=2048 base64url characters"));
                }
            }
            Ok(())
        }
        Request::Attest {
            nonce,
            sub,
            audience,
        } => {
            if !(11..=512).contains(&nonce.len()) || !is_b64url(nonce) {
                return Err(invalid("nonce", "expected 11..=512 base64url characters"));
            }
            for (field, value) in [("sub", sub), ("audience", audience)] {
                if value.is_empty() || value.len() > 512 || value.chars().any(char::is_control) {
                    return Err(invalid(field, "expected 1..=512 printable characters"));
                }
            }
            Ok(())
        }
        Request::SignDpop {
            method,
            url,
            ath,
            wg_pub,
        } => {
            if method.is_empty()
                || method.len() > 16
                || !method.bytes().all(|b| b.is_ascii_uppercase())
            {
                return Err(invalid("method", "expected an upper-case HTTP method"));
            }
            if url.len() > 4096 || !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(
                    "url",
                    "expected an http(s) URL of at most 4096 bytes",
                ));
            }
            if ath.len() != 43 || !is_b64url(ath) {
                return Err(invalid("ath", "expected base64url SHA-256 (43 characters)"));
            }
            if let Some(wg) = wg_pub {
                use base64::Engine as _;
                let ok = base64::engine::general_purpose::STANDARD
                    .decode(wg)
                    .is_ok_and(|k| k.len() == 32);
                if !ok {
                    return Err(invalid("wg_pub", "expected a base64 X25519 public key"));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATH: &str = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";

    #[test]
    fn requests_round_trip_as_one_line() {
        let requests = [
            Request::DeviceInfo,
            Request::Posture,
            Request::KeyAttestation,
            Request::Attest {
                nonce: "AAAAAAAAAAAAAAAA".into(),
                sub: "alice".into(),
                audience: "sallyport-broker".into(),
            },
            Request::SignDpop {
                method: "POST".into(),
                url: "https://b.example/v1/grants".into(),
                ath: ATH.into(),
                wg_pub: Some(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    [9u8; 32],
                )),
            },
        ];
        for request in requests {
            let line = to_line(&request);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(parse_request(&line).unwrap(), request);
        }
        assert_eq!(
            parse_request(br#"{"op":"device_info"}"#).unwrap(),
            Request::DeviceInfo
        );
        assert_eq!(
            parse_request(br#"{"op":"key_attestation"}"#).unwrap(),
            Request::KeyAttestation
        );
    }

    #[test]
    fn an_oversized_line_is_refused_and_closes() {
        let line = vec![b' '; MAX_REQUEST_LINE + 1];
        let err = parse_request(&line).unwrap_err();
        assert_eq!(err, ProtocolError::TooLarge(MAX_REQUEST_LINE));
        assert!(err.closes_connection());
        assert!(matches!(
            err.response(),
            Response::Error {
                code: ErrorCode::TooLarge,
                ..
            }
        ));
    }

    #[test]
    fn malformed_and_unknown_requests_are_clear_errors_that_keep_the_connection() {
        for line in [
            &b"not json"[..],
            br#"{"op":"sign_bytes","bytes":"AAAA"}"#,
            br#"{"op":"device_info","extra":1}"#,
            br#"{"nonce":"x"}"#,
        ] {
            let err = parse_request(line).unwrap_err();
            assert!(matches!(err, ProtocolError::Malformed(_)), "{err}");
            assert!(!err.closes_connection());
            assert!(err.to_string().starts_with("malformed message"), "{err}");
        }
        // Caller-chosen claims have no field to go into.
        let err = parse_request(
            br#"{"op":"attest","nonce":"AAAAAAAAAAAAAAAA","sub":"a","audience":"b","posture":{}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("posture"), "{err}");
    }

    #[test]
    fn field_values_are_checked() {
        let dpop = |method: &str, url: &str, ath: &str, wg: Option<&str>| Request::SignDpop {
            method: method.into(),
            url: url.into(),
            ath: ath.into(),
            wg_pub: wg.map(str::to_owned),
        };
        for (request, field) in [
            (dpop("post", "https://x/", ATH, None), "method"),
            (dpop("POST", "file:///etc/passwd", ATH, None), "url"),
            (dpop("POST", "https://x/", "short", None), "ath"),
            (dpop("POST", "https://x/", ATH, Some("AAAA")), "wg_pub"),
            (
                Request::Attest {
                    nonce: "short".into(),
                    sub: "a".into(),
                    audience: "b".into(),
                },
                "nonce",
            ),
            (
                Request::Attest {
                    nonce: "AAAAAAAAAAAAAAAA".into(),
                    sub: "a\nb".into(),
                    audience: "b".into(),
                },
                "sub",
            ),
        ] {
            let err = parse_request(&to_line(&request)).unwrap_err();
            assert!(
                matches!(err, ProtocolError::Invalid { field: f, .. } if f == field),
                "{err}"
            );
        }
    }

    #[test]
    fn replies_round_trip() {
        let reply = Response::Error {
            code: ErrorCode::KeyUnavailable,
            message: "no".into(),
        };
        assert_eq!(parse_response(&to_line(&reply)).unwrap(), reply);
        assert!(parse_response(b"{").is_err());
        let software = Response::KeyAttestation {
            device_id: "id".into(),
            evidence: None,
            note: Some("software key: no hardware evidence".into()),
        };
        let line = to_line(&software);
        assert!(!String::from_utf8_lossy(&line).contains("\"evidence\""));
        assert_eq!(parse_response(&line).unwrap(), software);
        let tpm = Response::KeyAttestation {
            device_id: "id".into(),
            evidence: Some(Box::new(KeyAttestation {
                format: "tpm2-certify".into(),
                certify_info: "AA".into(),
                signature: "AA".into(),
                key_public: "AA".into(),
                ak_public: "AA".into(),
                ek_certificate_chain: vec!["AA==".into()],
            })),
            note: None,
        };
        assert_eq!(parse_response(&to_line(&tpm)).unwrap(), tpm);
    }
}
