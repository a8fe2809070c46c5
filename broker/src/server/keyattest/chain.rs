//! The EK certificate's chain to a CA the broker is configured with
//! (`[enrolment] tpm_ca_certificates`): TPM manufacturers' EK certificates
//! are unusual X.509 (empty or placeholder subject, a critical SAN holding
//! the TPM's manufacturer/model/version, TCG OIDs), which general-purpose
//! TLS path builders refuse; the checks here are the ones that matter for
//! an EK: each signature by the next certificate up (x509-parser's
//! verifier, ring inside), every certificate within its validity at `now`,
//! every issuer a CA, and the leaf an EK certificate (not a CA; the TCG EK
//! EKU `2.23.133.8.1` when it lists EKUs). Pure: DER and a time in.

use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer as _;
use x509_parser::time::ASN1Time;

/// `tcg-kp-EKCertificate`.
const TCG_KP_EK_CERTIFICATE: &[u64] = &[2, 23, 133, 8, 1];
/// Longest chain walked (EK, intermediates, anchor).
const MAX_DEPTH: usize = 6;

/// The CA certificates EK certificates must chain to, DER.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    ders: Vec<Vec<u8>>,
}

impl TrustAnchors {
    /// From PEM text holding one or more certificates.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let mut anchors = TrustAnchors::default();
        anchors.add_pem(pem)?;
        Ok(anchors)
    }

    /// Adds the certificates of `pem`; each must parse as X.509.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<(), String> {
        let mut found = 0;
        for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| format!("not PEM: {e}"))?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            X509Certificate::from_der(&block.contents)
                .map_err(|e| format!("not a certificate: {e}"))?;
            self.ders.push(block.contents);
            found += 1;
        }
        if found == 0 {
            return Err("no CERTIFICATE block".to_owned());
        }
        Ok(())
    }

    /// Reads each PEM file (the broker's start-up: the only I/O here).
    pub fn load(paths: &[std::path::PathBuf]) -> Result<Self, String> {
        let mut anchors = TrustAnchors::default();
        for path in paths {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            anchors
                .add_pem(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(anchors)
    }

    /// Whether there are none (hardware mode then refuses every key).
    pub fn is_empty(&self) -> bool {
        self.ders.is_empty()
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| format!("a certificate does not parse: {e}"))
}

/// Checks that `chain[0]`, an EK certificate, chains through the rest of
/// `chain` (intermediates, any order) to one of `anchors` at `now_unix`.
pub fn verify_ek_chain(
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<(), String> {
    let now = ASN1Time::from_timestamp(now_unix).map_err(|e| format!("time: {e}"))?;
    let leaf_der = chain.first().ok_or("no EK certificate")?;
    let leaf = parse(leaf_der)?;
    if leaf.is_ca() {
        return Err("the EK certificate is a CA certificate".to_owned());
    }
    if let Ok(Some(eku)) = leaf.extended_key_usage() {
        let ek = Oid::from(TCG_KP_EK_CERTIFICATE).map_err(|_| "oid")?;
        if !eku.value.other.contains(&ek) {
            return Err(
                "the certificate's extended key usage is not tcg-kp-EKCertificate".to_owned(),
            );
        }
    }
    let intermediates = chain[1..]
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let anchors = anchors
        .ders
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut current = leaf;
    for _ in 0..MAX_DEPTH {
        if !current.validity().is_valid_at(now) {
            return Err(format!(
                "certificate {} is outside its validity",
                current.subject()
            ));
        }
        let issued_by = |issuer: &X509Certificate<'_>| {
            issuer.subject().as_raw() == current.issuer().as_raw()
                && issuer.is_ca()
                && current.verify_signature(Some(issuer.public_key())).is_ok()
        };
        if let Some(anchor) = anchors.iter().find(|a| issued_by(a)) {
            if !anchor.validity().is_valid_at(now) {
                return Err(format!(
                    "CA certificate {} is outside its validity",
                    anchor.subject()
                ));
            }
            return Ok(());
        }
        match intermediates.iter().find(|i| issued_by(i)) {
            Some(next) => current = next.clone(),
            None => {
                return Err(format!(
                    "the EK certificate does not chain to a configured TPM CA (no trusted issuer for {})",
                    current.issuer()
                ));
            }
        }
    }
    Err("the EK certificate chain is too long".to_owned())
}
