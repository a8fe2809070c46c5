//! The broker API's JSON bodies: what the broker parses from agents and
//! admins (requests), and what the agent parses from the broker
//! (responses, problems, events), each with the checks that follow the
//! parse on the receiving side.

use std::net::IpAddr;

use broker::api::{
    AccessDecision, AdminDevice, AppsDocument, AttestationRequest, AuditEntry, BrokerConfig,
    Challenge, Device, EnrolRequest, Event, GatewayPeer, Grant, GrantRequest, KeyActivation,
    KeyAttestation, PolicyDocument, Problem, RevocationClearRequest, RevocationClearResult,
    RevocationRequest, RevocationResult, Verdict,
};
use serde::de::DeserializeOwned;

use super::{json_blocks, tokens, workspace};
use crate::Target;

fn parse<T: DeserializeOwned>(input: &[u8]) -> Option<T> {
    serde_json::from_slice(input).ok()
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = json_blocks(&workspace().join("broker/API.md"));
    seeds.extend(tokens(&[
        r#"{"public_jwk":{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},"name":"laptop","key_attestation":{"format":"tpm2-certify","certify_info":"AAAA","signature":"AAAA","key_public":"AAAA","ak_public":"AAAA","ek_certificate_chain":["AAAA"]},"activation_secret":"abc"}"#,
        r#"{"eat":"eyJhbGciOiJFUzI1NiJ9.e30.AAAA"}"#,
        r#"{"app":"wiki","device_id":"abc","wireguard_public_key":"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="}"#,
        r#"{"device_id":"d","user":"alice","grant_id":"g","until_cleared":true,"reason":"lost laptop"}"#,
        r#"{"device_id":"d","user":"alice","reason":"found"}"#,
        r#"{"type":"https://sallyport.example/problems/access-denied","title":"Access denied","status":403,"detail":"no","violations":[{"check":"firewall","message":"off","remediation":"turn it on"}],"key_activation":{"credential_blob":"AA","encrypted_secret":"AA"},"access":{"allow":false,"reasons":[{"message":"m","remediation":"r"}],"step_up":{"acr_values":["mfa"],"max_age":300},"closes_at":"2026-01-01T10:00:00Z","opens_at":"2026-01-02T08:00:00+01:00"}}"#,
        r#"{"type":"grant-revoked","grant_id":"g","device_id":"d","reason":"r"}"#,
        r#"{"type":"device-compliance-change","device_id":"d","previous_status":"compliant","current_status":"not-compliant","reason":"r"}"#,
        r#"{"id":"g1","app":"wiki","gateway":{"endpoint":"gw.example:51820","public_key":"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="},"client_address":"100.64.0.2","targets":["10.1.0.1:443/tcp","[fd00::1]:53/udp"],"expires_at":"2026-01-01T10:00:00Z","ends":{"reason":"window","reopens_at":"2026-01-02T08:00:00Z"}}"#,
        r#"{"issuer":"https://idp.example","client_id":"agent","audience":"broker","required_acr":"mfa","policy_digest":"sha256:ab","verdict_ttl_seconds":600,"apps":[{"id":"wiki","name":"Wiki","targets":["10.1.0.1:443/tcp"],"labels":{"tier":"1"}}]}"#,
        r#"{"evaluated_at":"2026-01-01T10:00:00Z","apps":[{"id":"wiki","name":"Wiki","targets":["10.1.0.1:443/tcp"],"access":{"allow":true}}]}"#,
        r#"{"device_id":"d","compliant":false,"violations":[],"evaluated_at":"2026-01-01T10:00:00Z","valid_until":"9999-12-31T23:59:59Z","policy_digest":"x"}"#,
        r#"{"nonce":"abc","expires_at":"2026-01-01T10:00:00.123456789Z"}"#,
    ]));
    seeds
}

/// What the agent does with a grant before starting a tunnel
/// (`agent::runtime::tunnels`): targets, key, address, expiry.
fn use_grant(grant: &Grant) {
    for t in &grant.targets {
        let _ = t.parse::<tunnel::Target>();
    }
    let _ = tunnel::PublicKey::from_base64(&grant.gateway.public_key);
    let _ = grant.client_address.parse::<IpAddr>();
    let _ = grant.expires_at.unix_timestamp();
}

pub(super) fn targets() -> Vec<Target> {
    let dict = tokens(&[
        "\"public_jwk\"",
        "\"kty\":\"EC\"",
        "\"crv\":\"P-256\"",
        "\"type\"",
        "\"status\"",
        "\"access\"",
        "\"expires_at\"",
        "\"9999-12-31T23:59:59Z\"",
        "\"0000-01-01T00:00:00Z\"",
        "\"2026-02-30T25:61:61+99:99\"",
        "\"-9999-01-01T00:00:00Z\"",
        "\"+99999-01-01T00:00:00Z\"",
        "\"10.1.0.1:443/tcp\"",
        "\"[::1]:0/udp\"",
        "\"apps\"",
        "\"targets\"",
        "\"violations\"",
        "\"key_attestation\"",
    ]);
    vec![
        Target {
            name: "broker requests (JSON bodies)",
            weight: 60,
            seeds: seeds(),
            dict: dict.clone(),
            run: Box::new(|input| {
                if let Some(r) = parse::<EnrolRequest>(input) {
                    if let Ok(sec1) = r.public_jwk.to_sec1() {
                        let _ = sec1.len();
                    }
                    let _ = r.public_jwk.thumbprint();
                    let _ = r.public_jwk.ueid();
                    if let Some(k) = &r.key_attestation {
                        let _ = broker::server::keyattest::activation_inputs(k);
                    }
                }
                let _ = parse::<AttestationRequest>(input);
                if let Some(g) = parse::<GrantRequest>(input)
                    && let Ok(key) = tunnel::PublicKey::from_base64(&g.wireguard_public_key)
                {
                    let _ = broker::server::wgkey::check_contributory(
                        key.as_bytes(),
                        &ring::rand::SystemRandom::new(),
                    );
                }
                let _ = parse::<RevocationRequest>(input);
                let _ = parse::<RevocationClearRequest>(input);
                let _ = parse::<KeyAttestation>(input);
                let _ = parse::<serde_json::Value>(input);
            }),
            note: None,
        },
        Target {
            name: "broker responses (agent side)",
            weight: 60,
            seeds: seeds(),
            dict,
            run: Box::new(|input| {
                if let Some(p) = parse::<Problem>(input) {
                    let _ = agent::broker_client::AccessRefusal::from_problem(&p);
                }
                if let Ok(e) = serde_json::from_slice::<Event>(input) {
                    let _ = (e.name(), e.caep_type());
                }
                if let Some(g) = parse::<Grant>(input) {
                    use_grant(&g);
                }
                if let Some(c) = parse::<BrokerConfig>(input) {
                    for app in &c.apps {
                        for t in &app.targets {
                            let _ = t.parse::<tunnel::Target>();
                        }
                    }
                }
                let _ = parse::<AppsDocument>(input);
                let _ = parse::<AccessDecision>(input);
                let _ = parse::<Verdict>(input);
                let _ = parse::<Challenge>(input);
                let _ = parse::<Device>(input);
                let _ = parse::<AdminDevice>(input);
                let _ = parse::<PolicyDocument>(input);
                let _ = parse::<KeyActivation>(input);
                let _ = parse::<RevocationResult>(input);
                let _ = parse::<RevocationClearResult>(input);
                let _ = parse::<GatewayPeer>(input);
                let _ = parse::<Vec<AuditEntry>>(input);
            }),
            note: None,
        },
    ]
}
