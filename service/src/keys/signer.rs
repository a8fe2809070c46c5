//! A [`KeyBackend`] seen as the posture crate's [`DeviceSigner`], so the
//! service builds its EATs and DPoP proofs with the same token code the
//! agent uses (`posture::attestation::sign_eat`, `posture::dpop::sign_proof`)
//! and only the signature comes from the backend.

use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::{Algorithm, signature};
use posture::attestation::{DeviceSigner, PublicJwk};

use super::KeyBackend;

/// Borrows a backend as a [`DeviceSigner`].
#[derive(Debug, Clone, Copy)]
pub struct BackendSigner<'a>(pub &'a dyn KeyBackend);

impl signature::Signer<Vec<u8>> for BackendSigner<'_> {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.0
            .sign_es256(message)
            .map(|sig| sig.to_vec())
            .map_err(signature::Error::from_source)
    }
}

impl JwtSigner for BackendSigner<'_> {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

impl DeviceSigner for BackendSigner<'_> {
    fn public_jwk(&self) -> &PublicJwk {
        self.0.public_jwk()
    }
}
