//! Any [`KeyBackend`] as posture's [`DeviceSigner`], so the EAT and DPoP
//! code (which signs through that trait) signs with a TPM-held key exactly
//! as with a software one.

use jsonwebtoken::Algorithm;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::signature;
use posture::attestation::{DeviceSigner, PublicJwk};

use super::KeyBackend;

/// A [`KeyBackend`] that signs JWS (ES256) for posture.
#[derive(Debug)]
pub struct BackendSigner<B: KeyBackend>(pub B);

impl<B: KeyBackend> signature::Signer<Vec<u8>> for BackendSigner<B> {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.0
            .sign_es256(message)
            .map(|s| s.to_vec())
            .map_err(signature::Error::from_source)
    }
}

impl<B: KeyBackend> JwtSigner for BackendSigner<B> {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

impl<B: KeyBackend> DeviceSigner for BackendSigner<B> {
    fn public_jwk(&self) -> &PublicJwk {
        self.0.public_jwk()
    }
}
