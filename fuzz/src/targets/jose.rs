//! JOSE from outside: compact JWS, EATs, access tokens with a JWKS, JWKS
//! documents, DPoP proofs, ID tokens, and the TPM key-attestation evidence
//! that comes with an enrolment.
//!
//! Signed targets take a leading mode byte: `0` the rest is the payload,
//! signed with a real key under a valid header, so the claim checks after
//! the signature see fuzzed claims; `1` the rest is the header, signed with
//! a valid payload; anything else the rest is the whole token as text.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use broker::server::eat::{EnrolledKey, Expectations as EatExpectations};
use broker::server::jose::{self, JwkSet, RingVerifier};
use broker::server::keyattest::{self, TrustAnchors, tpm2};
use broker::server::{dpop, eat, token};
use jsonwebtoken::Algorithm;
use posture::attestation::{DeviceKey, EAT_TYP, EatClaims};
use posture::dpop::DpopClaims;
use posture::{Platform, Report};

use super::{text, tokens};
use crate::Target;

const NOW: i64 = 1_800_000_000;
const AUDIENCE: &str = "sallyport-broker";
const ISSUER: &str = "https://idp.example";
const USER: &str = "alice";

fn report() -> Report {
    Report {
        collected_at: time::OffsetDateTime::UNIX_EPOCH,
        platform: Platform::Linux,
        agent_version: "0.1.0".into(),
        duration_ms: 1,
        checks: vec![],
    }
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn moded(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(body);
    v
}

/// Seeds for a signed target: payload, header and the whole token.
fn signed_seeds(key: &DeviceKey, header: &[u8], payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for p in payloads {
        seeds.push(moded(0, p));
        seeds.push(moded(2, key.sign_compact(header, p).as_bytes()));
    }
    seeds.push(moded(1, header));
    seeds
}

/// The token a mode-tagged input stands for.
fn token_of(key: &DeviceKey, header: &[u8], payload: &[u8], input: &[u8]) -> String {
    match input.split_first() {
        Some((0, rest)) => key.sign_compact(header, rest),
        Some((1, rest)) => key.sign_compact(rest, payload),
        Some((_, rest)) => text(rest).into_owned(),
        None => String::new(),
    }
}

fn jose_dict() -> Vec<Vec<u8>> {
    tokens(&[
        ".",
        "\"alg\":\"none\"",
        "\"alg\":\"HS256\"",
        "\"alg\":\"RS256\"",
        "\"alg\":\"EdDSA\"",
        "\"typ\":\"at+jwt\"",
        "\"typ\":\"dpop+jwt\"",
        "\"typ\":\"eat+jwt\"",
        "\"kid\":\"k1\"",
        "\"crit\":[\"b64\"]",
        "\"b64\":false",
        "\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\",\"d\":\"AA\"}",
        "\"iat\":",
        "\"exp\":",
        "\"nbf\":",
        "\"auth_time\":",
        "\"aud\":[\"a\",\"b\"]",
        "\"acr\":",
        "\"amr\":[\"pwd\",\"mfa\"]",
        "\"groups\":",
        "\"eat_nonce\":",
        "\"local_uid\":",
        "\"jti\":",
        "\"htu\":",
        "\"wg_pub\":",
        "eyJ",
    ])
}

fn eat_target() -> Target {
    let key = DeviceKey::generate();
    let header = json(&serde_json::json!({"alg": "ES256", "typ": EAT_TYP, "kid": key.kid()}));
    let claims = EatClaims::new(
        &key,
        "bm9uY2Utbm9uY2Utbm9uY2U",
        AUDIENCE,
        USER,
        report(),
        NOW,
        120,
    );
    let mut with_service = claims.clone();
    with_service.key_assurance = Some("tpm".into());
    with_service.local_uid = Some(1000);
    with_service.local_user = Some("alice".into());
    let payloads = vec![json(&claims), json(&with_service)];
    let seeds = signed_seeds(&key, &header, &payloads);
    let enrolled = EnrolledKey {
        device_id: key.kid(),
        user: USER.into(),
        sec1: key
            .public_jwk()
            .to_sec1()
            .map(|s| s.to_vec())
            .unwrap_or_default(),
        ueid: key.ueid(),
        revoked: false,
    };
    let payload = payloads.first().cloned().unwrap_or_default();
    Target {
        name: "EAT (eat::parse + verify_claims)",
        weight: 6,
        seeds,
        dict: jose_dict(),
        run: Box::new(move |input| {
            let token = token_of(&key, &header, &payload, input);
            if let Ok(parsed) = eat::parse(&token) {
                let expect = EatExpectations {
                    audience: AUDIENCE,
                    caller: USER,
                    now: NOW,
                    skew: 30,
                    max_lifetime: 300,
                };
                let _ = eat::verify_claims(&parsed, &enrolled, &expect);
            }
        }),
        note: None,
    }
}

fn access_token_target() -> Target {
    let key = DeviceKey::generate();
    let mut jwk = serde_json::to_value(key.public_jwk()).unwrap_or_default();
    if let Some(o) = jwk.as_object_mut() {
        o.insert("kid".into(), "k1".into());
        o.insert("alg".into(), "ES256".into());
        o.insert("use".into(), "sig".into());
    }
    let jwks_json = json(&serde_json::json!({ "keys": [jwk] }));
    let jwks: JwkSet = serde_json::from_slice(&jwks_json).unwrap_or_default();
    let header = json(&serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}));
    let payloads = vec![
        json(&serde_json::json!({
            "iss": ISSUER, "sub": USER, "aud": [AUDIENCE, "other"], "client_id": "agent",
            "iat": NOW - 10, "exp": NOW + 300, "auth_time": NOW - 60,
            "acr": "mfa", "amr": ["pwd", "otp"], "groups": ["staff", "ops"], "email": "a@example"
        })),
        json(&serde_json::json!({
            "iss": ISSUER, "sub": USER, "aud": AUDIENCE, "iat": NOW, "exp": NOW + 1, "groups": "one"
        })),
    ];
    let seeds = signed_seeds(&key, &header, &payloads);
    let payload = payloads.first().cloned().unwrap_or_default();
    let rules = token::Rules {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        client_id: "agent".into(),
        skew: 60,
        groups_claim: "groups".into(),
    };
    Target {
        name: "access token (token::validate + JWKS)",
        weight: 6,
        seeds,
        dict: jose_dict(),
        run: Box::new(move |input| {
            let token = token_of(&key, &header, &payload, input);
            let _ = token::validate(&token, &jwks, &rules, NOW);
        }),
        note: None,
    }
}

fn id_token_target() -> Target {
    let key = DeviceKey::generate();
    let mut jwk = serde_json::to_value(key.public_jwk()).unwrap_or_default();
    if let Some(o) = jwk.as_object_mut() {
        o.insert("kid".into(), "k1".into());
        o.insert("alg".into(), "ES256".into());
    }
    let jwks_json = json(&serde_json::json!({ "keys": [jwk] }));
    let keys = agent::identity::validate::parse_jwks(&jwks_json).unwrap_or_default();
    let header = json(&serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}));
    let access_token = "an-access-token";
    let at_hash = agent::identity::validate::access_token_hash(access_token, Algorithm::ES256);
    let payloads = vec![json(&serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": ["agent"], "azp": "agent",
        "iat": NOW - 10, "exp": NOW + 300, "auth_time": NOW - 60, "nonce": "n-0S6_WzA2Mj",
        "acr": "mfa", "amr": ["pwd", "otp"], "at_hash": at_hash,
        "email": "alice@example.com", "name": "Alice", "preferred_username": "alice"
    }))];
    let seeds = signed_seeds(&key, &header, &payloads);
    let payload = payloads.first().cloned().unwrap_or_default();
    Target {
        name: "ID token (identity::validate)",
        weight: 6,
        seeds,
        dict: jose_dict(),
        run: Box::new(move |input| {
            let token = token_of(&key, &header, &payload, input);
            let expect = agent::identity::validate::Expectations {
                issuer: ISSUER,
                client_id: "agent",
                extra_audiences: &[],
                nonce: Some("n-0S6_WzA2Mj"),
                access_token: Some(access_token),
                algorithms: &[Algorithm::ES256, Algorithm::RS256],
                skew: 60,
                max_iat_age: 600,
                now: NOW,
            };
            let _ = agent::identity::validate::token_kid(&token);
            if let Ok(claims) = agent::identity::validate::validate_id_token(&token, &keys, &expect)
            {
                let _ = claims.display_user();
            }
        }),
        note: None,
    }
}

fn dpop_target() -> Target {
    let key = DeviceKey::generate();
    let jwk = serde_json::to_value(key.public_jwk()).unwrap_or_default();
    let header = json(&serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}));
    let access_token = "an-access-token";
    let claims = DpopClaims {
        jti: "0123456789abcdef0123".into(),
        htm: "POST".into(),
        htu: "https://broker.example/v1/grants".into(),
        iat: NOW,
        ath: posture::dpop::access_token_hash(access_token),
        wg_pub: Some("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=".into()),
    };
    let payloads = vec![json(&claims)];
    let seeds = signed_seeds(&key, &header, &payloads);
    let payload = payloads.first().cloned().unwrap_or_default();
    let url = url::Url::parse("https://broker.example/v1/grants").ok();
    let mut cache = dpop::JtiCache::with_capacity(1024);
    Target {
        name: "DPoP proof (dpop::parse + verify)",
        weight: 6,
        seeds,
        dict: jose_dict(),
        run: Box::new(move |input| {
            let token = token_of(&key, &header, &payload, input);
            let Ok(proof) = dpop::parse(&token) else {
                return;
            };
            let Some(url) = &url else { return };
            let call = dpop::Call {
                method: "POST",
                url,
                access_token,
                now: NOW,
            };
            if let Ok(claims) = dpop::verify(&proof, &proof.sec1, &call) {
                let _ = cache.check_and_insert(&proof.thumbprint, &claims, NOW);
            }
        }),
        note: None,
    }
}

fn jwks_target() -> Target {
    let key = DeviceKey::generate();
    let jwk = serde_json::to_value(key.public_jwk()).unwrap_or_default();
    let seeds = tokens(&[
        r#"{"keys":[{"kty":"RSA","kid":"r1","use":"sig","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},{"kty":"EC","kid":"e1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},{"kty":"OKP","crv":"Ed25519","kid":"o1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"oct","k":"AAAA"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#,
    ]);
    let mut seeds = seeds;
    seeds.push(json(&serde_json::json!({ "keys": [jwk] })));
    let algs = [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ];
    let probe = key.sign_compact(br#"{"alg":"ES256","kid":"e1"}"#, b"{}");
    Target {
        name: "JWKS (JwkSet, parse_jwks, from_jwk)",
        weight: 20,
        seeds,
        dict: tokens(&[
            "\"kty\":\"RSA\"",
            "\"kty\":\"EC\"",
            "\"kty\":\"OKP\"",
            "\"kty\":\"oct\"",
            "\"crv\":\"P-384\"",
            "\"crv\":\"P-521\"",
            "\"crv\":\"secp256k1\"",
            "\"n\":\"\"",
            "\"e\":\"\"",
            "\"x5c\":[\"AAAA\"]",
            "\"key_ops\":[\"verify\"]",
        ]),
        run: Box::new(move |input| {
            if let Ok(set) = serde_json::from_slice::<JwkSet>(input) {
                let jws = jose::parse(&probe).ok();
                for jwk in &set.keys {
                    for alg in algs {
                        if let Ok(v) = RingVerifier::from_jwk(alg, jwk)
                            && let Some(jws) = &jws
                        {
                            let _ = v.verify_jws(jws);
                        }
                    }
                }
            }
            let _ = serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(input);
            let _ = agent::identity::validate::parse_jwks(input);
        }),
        note: None,
    }
}

fn jws_target() -> Target {
    let key = DeviceKey::generate();
    let seeds = vec![
        key.sign_compact(
            br#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#,
            br#"{"sub":"a"}"#,
        )
        .into_bytes(),
        b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.".to_vec(),
        b"eyJhbGciOiJFUzI1NiIsImNyaXQiOlsiYjY0Il0sImI2NCI6ZmFsc2V9..AAAA".to_vec(),
    ];
    Target {
        name: "compact JWS (jose::parse)",
        weight: 30,
        seeds,
        dict: jose_dict(),
        run: Box::new(|input| {
            let _ = jose::parse(&text(input));
            let _ = agent::identity::validate::token_kid(&text(input));
        }),
        note: None,
    }
}

/// TPM evidence from an enrolment body: the TPM2 structures on their own
/// (mode 0 `TPMT_PUBLIC`, mode 1 `TPMS_ATTEST`), then (any other mode) a
/// whole `KeyAttestation` JSON through `keyattest::verify`.
fn keyattest_target() -> Target {
    let key = DeviceKey::generate();
    let jwk = key.public_jwk().clone();
    let sec1 = jwk.to_sec1().unwrap_or([4; 65]);
    let mut public = Vec::new();
    public.extend_from_slice(&0x0023u16.to_be_bytes()); // ECC
    public.extend_from_slice(&0x000bu16.to_be_bytes()); // SHA-256
    public.extend_from_slice(&0x0005_0072u32.to_be_bytes());
    public.extend_from_slice(&0u16.to_be_bytes());
    public.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric null
    public.extend_from_slice(&0x0018u16.to_be_bytes()); // ECDSA
    public.extend_from_slice(&0x000bu16.to_be_bytes());
    public.extend_from_slice(&0x0003u16.to_be_bytes()); // P-256
    public.extend_from_slice(&0x0010u16.to_be_bytes()); // kdf null
    for c in [&sec1[1..33], &sec1[33..65]] {
        public.extend_from_slice(&32u16.to_be_bytes());
        public.extend_from_slice(c);
    }
    let name = tpm2::name_sha256(&public);
    let extra = keyattest::qualifying_data(&jwk.thumbprint());
    let mut attest = 0xff54_4347u32.to_be_bytes().to_vec();
    attest.extend_from_slice(&0x8017u16.to_be_bytes());
    attest.extend_from_slice(&[0, 2, 0xaa, 0xbb]);
    attest.extend_from_slice(&32u16.to_be_bytes());
    attest.extend_from_slice(&extra);
    attest.extend_from_slice(&[0; 25]);
    attest.extend_from_slice(&(name.len() as u16).to_be_bytes());
    attest.extend_from_slice(&name);
    attest.extend_from_slice(&[0, 0]);
    let evidence = broker::api::KeyAttestation {
        format: broker::api::KEY_ATTESTATION_TPM2_CERTIFY.into(),
        certify_info: B64URL.encode(&attest),
        signature: B64URL.encode([1u8; 64]),
        key_public: B64URL.encode(&public),
        ak_public: B64URL.encode(&public),
        ek_certificate_chain: vec![B64.encode(b"0\x82\x01\x00not a certificate")],
    };
    let seeds = vec![
        moded(0, &public),
        moded(1, &attest),
        moded(2, &json(&evidence)),
    ];
    let anchors = TrustAnchors::default();
    Target {
        name: "TPM key attestation (keyattest, tpm2)",
        weight: 30,
        seeds,
        dict: tokens(&[
            "\"tpm2-certify\"",
            "\"ek_certificate_chain\"",
            "AAAA",
            "\x00\x20",
        ]),
        run: Box::new(move |input| match input.split_first() {
            Some((0, rest)) => {
                if let Ok(p) = tpm2::parse_ecc_public(rest) {
                    let _ = p.sec1_p256();
                }
                let _ = keyattest::object_name(rest);
            }
            Some((1, rest)) => {
                let _ = tpm2::parse_certify_info(rest);
            }
            Some((_, rest)) => {
                if let Ok(evidence) = serde_json::from_slice::<broker::api::KeyAttestation>(rest) {
                    let _ = keyattest::activation_inputs(&evidence);
                    let _ = keyattest::verify(&evidence, &jwk, &anchors, NOW);
                }
            }
            None => {}
        }),
        note: None,
    }
}

pub(super) fn targets() -> Vec<Target> {
    vec![
        jws_target(),
        eat_target(),
        access_token_target(),
        id_token_target(),
        dpop_target(),
        jwks_target(),
        keyattest_target(),
    ]
}
