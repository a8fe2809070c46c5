//! The two TPM 2.0 structures a `tpm2-certify` attestation carries, parsed
//! from their wire form (TPM 2.0 Library Part 2, big-endian): `TPMT_PUBLIC`
//! (ECC keys only; the device key and the AK are both P-256) and
//! `TPMS_ATTEST` of type `TPM_ST_ATTEST_CERTIFY`. Pure: bytes in, values
//! out; every length is checked and trailing bytes are refused, so the
//! name computed over a public area is over exactly what was parsed.

/// `TPM_ALG_ECC`.
const ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000b;
/// `TPM_ALG_NULL`.
const ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_ECDSA`.
pub const ALG_ECDSA: u16 = 0x0018;
/// `TPM_ECC_NIST_P256`.
pub const ECC_NIST_P256: u16 = 0x0003;
/// `TPM_GENERATED_VALUE`: only the TPM puts this at the start of what a
/// restricted key signs.
const GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_CERTIFY`.
const ST_ATTEST_CERTIFY: u16 = 0x8017;

/// `TPMA_OBJECT` bits the verifier looks at.
pub mod attr {
    /// The key cannot be duplicated out of this TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// The key cannot be duplicated to another parent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// The TPM generated the private key.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// Signs only TPM-generated structures (an AK).
    pub const RESTRICTED: u32 = 1 << 16;
    /// A decryption key.
    pub const DECRYPT: u32 = 1 << 17;
    /// A signing key.
    pub const SIGN: u32 = 1 << 18;
}

/// A malformed TPM structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// An ECC `TPMT_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccPublic {
    /// `nameAlg`.
    pub name_alg: u16,
    /// `objectAttributes`.
    pub attributes: u32,
    /// The signing scheme and its hash (`TPM_ALG_NULL`, 0 when none).
    pub scheme: (u16, u16),
    /// `curveID`.
    pub curve: u16,
    /// The point, as the TPM gave it (leading zeros may be missing).
    pub x: Vec<u8>,
    /// See `x`.
    pub y: Vec<u8>,
}

impl EccPublic {
    /// The SEC1 uncompressed point `04 || x || y` of a P-256 key.
    pub fn sec1_p256(&self) -> Option<[u8; 65]> {
        let mut out = [0u8; 65];
        out[0] = 4;
        for (at, c) in [(1usize, &self.x), (33, &self.y)] {
            let c = strip_zeros(c);
            if c.len() > 32 {
                return None;
            }
            out[at + 32 - c.len()..at + 32].copy_from_slice(c);
        }
        Some(out)
    }
}

fn strip_zeros(mut value: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = value {
        value = rest;
    }
    value
}

/// The fields of a certify `TPMS_ATTEST` the verifier needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifyInfo {
    /// `extraData`: the qualifying data the caller gave TPM2_Certify.
    pub extra_data: Vec<u8>,
    /// `attested.certify.name`: the certified object's name.
    pub name: Vec<u8>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.bytes.len() < n {
            return Err(ParseError(format!("{} is truncated", self.what)));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A `TPM2B_*`: a u16 size and that many bytes.
    fn sized(&mut self) -> Result<&'a [u8], ParseError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn end(self) -> Result<(), ParseError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(ParseError(format!(
                "{} has {} trailing bytes",
                self.what,
                self.bytes.len()
            )))
        }
    }
}

/// Parses an ECC `TPMT_PUBLIC`.
pub fn parse_ecc_public(bytes: &[u8]) -> Result<EccPublic, ParseError> {
    let mut r = Reader {
        bytes,
        what: "TPMT_PUBLIC",
    };
    let kind = r.u16()?;
    if kind != ALG_ECC {
        return Err(ParseError(format!(
            "the key is not an ECC key (type {kind:#06x})"
        )));
    }
    let name_alg = r.u16()?;
    let attributes = r.u32()?;
    let _auth_policy = r.sized()?;
    // TPMS_ECC_PARMS: symmetric, scheme, curveID, kdf.
    if r.u16()? != ALG_NULL {
        r.take(4)?; // keyBits, mode
    }
    let scheme_alg = r.u16()?;
    let scheme = if scheme_alg == ALG_NULL {
        (ALG_NULL, 0)
    } else {
        let hash = r.u16()?;
        if scheme_alg == 0x001a {
            r.take(2)?; // ECDAA count
        }
        (scheme_alg, hash)
    };
    let curve = r.u16()?;
    if r.u16()? != ALG_NULL {
        r.take(2)?; // kdf hash
    }
    let x = r.sized()?.to_vec();
    let y = r.sized()?.to_vec();
    r.end()?;
    Ok(EccPublic {
        name_alg,
        attributes,
        scheme,
        curve,
        x,
        y,
    })
}

/// Parses a `TPMS_ATTEST` and requires it to be the TPM's own
/// (`TPM_GENERATED_VALUE`) certify structure.
pub fn parse_certify_info(bytes: &[u8]) -> Result<CertifyInfo, ParseError> {
    let mut r = Reader {
        bytes,
        what: "TPMS_ATTEST",
    };
    let magic = r.u32()?;
    if magic != GENERATED_VALUE {
        return Err(ParseError(format!(
            "TPMS_ATTEST magic is {magic:#010x}, not TPM_GENERATED_VALUE"
        )));
    }
    let kind = r.u16()?;
    if kind != ST_ATTEST_CERTIFY {
        return Err(ParseError(format!(
            "TPMS_ATTEST type is {kind:#06x}, not TPM_ST_ATTEST_CERTIFY"
        )));
    }
    let _qualified_signer = r.sized()?;
    let extra_data = r.sized()?.to_vec();
    r.take(8 + 4 + 4 + 1)?; // clockInfo
    r.take(8)?; // firmwareVersion
    let name = r.sized()?.to_vec();
    let _qualified_name = r.sized()?;
    r.end()?;
    Ok(CertifyInfo { extra_data, name })
}

/// The object's name: `nameAlg || SHA-256(TPMT_PUBLIC)` (SHA-256 names only).
pub fn name_sha256(public_area: &[u8]) -> Vec<u8> {
    let mut name = ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, public_area).as_ref());
    name
}

/// A P-256 ECDSA-SHA256 key's public area as a TPM marshals it (tests).
#[cfg(test)]
pub(super) fn public_area(attributes: u32, x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&ALG_ECC.to_be_bytes());
    b.extend_from_slice(&ALG_SHA256.to_be_bytes());
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
    b.extend_from_slice(&ALG_NULL.to_be_bytes()); // symmetric
    b.extend_from_slice(&ALG_ECDSA.to_be_bytes());
    b.extend_from_slice(&ALG_SHA256.to_be_bytes());
    b.extend_from_slice(&ECC_NIST_P256.to_be_bytes());
    b.extend_from_slice(&ALG_NULL.to_be_bytes()); // kdf
    for c in [x, y] {
        b.extend_from_slice(&(c.len() as u16).to_be_bytes());
        b.extend_from_slice(c);
    }
    b
}

/// A certify `TPMS_ATTEST` naming `name` with `extra_data` (tests).
#[cfg(test)]
pub(super) fn certify_info(extra_data: &[u8], name: &[u8]) -> Vec<u8> {
    let mut b = GENERATED_VALUE.to_be_bytes().to_vec();
    b.extend_from_slice(&ST_ATTEST_CERTIFY.to_be_bytes());
    b.extend_from_slice(&[0, 2, 0xaa, 0xbb]); // qualifiedSigner
    b.extend_from_slice(&(extra_data.len() as u16).to_be_bytes());
    b.extend_from_slice(extra_data);
    b.extend_from_slice(&[0; 25]); // clockInfo, firmwareVersion
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(name);
    b.extend_from_slice(&[0, 0]); // qualifiedName
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_an_ecc_public_area_and_refuses_trailing_bytes() {
        let mut x = [7u8; 32];
        x[0] = 0;
        let area = public_area(attr::SIGN | attr::FIXED_TPM, &x, &[9; 32]);
        let p = parse_ecc_public(&area).unwrap();
        assert_eq!(p.curve, ECC_NIST_P256);
        assert_eq!(p.scheme, (ALG_ECDSA, ALG_SHA256));
        assert_eq!(p.attributes, attr::SIGN | attr::FIXED_TPM);
        let sec1 = p.sec1_p256().unwrap();
        assert_eq!(&sec1[1..33], &x);
        let mut longer = area.clone();
        longer.push(0);
        assert!(parse_ecc_public(&longer).is_err());
        assert!(parse_ecc_public(&area[..area.len() - 1]).is_err());
    }

    #[test]
    fn certify_info_needs_the_magic_and_the_type() {
        let b = certify_info(&[1, 2, 3], &[9, 9]);
        let info = parse_certify_info(&b).unwrap();
        assert_eq!(info.extra_data, vec![1, 2, 3]);
        assert_eq!(info.name, vec![9, 9]);
        let mut wrong_magic = b.clone();
        wrong_magic[0] = 0;
        assert!(parse_certify_info(&wrong_magic).is_err());
        let mut quote = b.clone();
        quote[5] = 0x18; // TPM_ST_ATTEST_QUOTE
        assert!(parse_certify_info(&quote).is_err());
    }
}
