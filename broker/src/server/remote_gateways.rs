//! Separate gateways (`[[gateways]]`): gateways that run as their own
//! process (`sallyport-gateway`) in a network segment, next to the apps
//! they serve, rather than inside the broker. Pure: the configuration's
//! rules, which gateway a new grant goes to, and who a sync caller is.
//!
//! An app lists the gateways that may serve it (`[[apps]] gateways`); an
//! app that lists none is served by the broker's embedded gateway, the
//! single-process default. A gateway proves who it is with a bearer
//! credential of its own, compared as SHA-256 digests like the admins'.

use serde::{Deserialize, Serialize};

/// One `[[gateways]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    /// Stable id, named by apps and in grants (`office-berlin`).
    pub id: String,
    /// The UDP `host:port` agents reach it at.
    pub endpoint: String,
    /// Its WireGuard public key (base64; `sallyport-gateway keygen` prints
    /// it). Configured here rather than reported by the gateway, so a
    /// stolen sync credential cannot swap the key agents trust.
    pub public_key: String,
    /// SHA-256 (hex) of its sync credential (`printf %s TOKEN | sha256sum`).
    pub token_sha256: String,
}

/// A validated `[[gateways]]` entry.
#[derive(Debug, Clone)]
pub struct RemoteGateway {
    /// Its id.
    pub id: String,
    /// Where agents reach it.
    pub endpoint: String,
    /// Its WireGuard public key.
    pub public_key: tunnel::PublicKey,
    /// SHA-256 of its credential.
    pub token: [u8; 32],
}

/// Checks the entries and every app's `gateways` against them.
pub fn validate<'a>(
    entries: &[GatewayEntry],
    apps: impl Iterator<Item = (&'a str, &'a [String])>,
) -> Result<Vec<RemoteGateway>, String> {
    let mut out: Vec<RemoteGateway> = Vec::new();
    for e in entries {
        let id_ok = !e.id.is_empty()
            && e.id.len() <= 64
            && e.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !id_ok {
            return Err(format!(
                "gateways: id {:?} must be 1..=64 of [A-Za-z0-9._-]",
                e.id
            ));
        }
        if out.iter().any(|g| g.id == e.id) {
            return Err(format!("gateways: {:?} is listed twice", e.id));
        }
        if e.endpoint.rsplit_once(':').is_none_or(|(host, port)| {
            host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0)
        }) {
            return Err(format!(
                "gateways {:?}: endpoint {:?} must be host:port",
                e.id, e.endpoint
            ));
        }
        let public_key = tunnel::PublicKey::from_base64(&e.public_key)
            .map_err(|err| format!("gateways {:?}: public_key: {err}", e.id))?;
        let token = super::config::decode_hex32(&e.token_sha256)
            .ok_or_else(|| format!("gateways {:?}: token_sha256 must be 64 hex digits", e.id))?;
        if out.iter().any(|g| g.token == token) {
            return Err(format!(
                "gateways {:?}: the same credential as another gateway; give each its own",
                e.id
            ));
        }
        out.push(RemoteGateway {
            id: e.id.clone(),
            endpoint: e.endpoint.clone(),
            public_key,
            token,
        });
    }
    for (app, listed) in apps {
        for id in listed {
            if !out.iter().any(|g| g.id == *id) {
                return Err(format!(
                    "app {app:?}: gateway {id:?} is not in [[gateways]]"
                ));
            }
        }
    }
    Ok(out)
}

/// The gateway a new grant for an app listing `candidates` goes to: the
/// one holding the fewest open grants (`open[i]` for `candidates[i]`), the
/// first listed on a tie, so grants spread and the file's order breaks ties.
pub fn choose<'a>(candidates: &'a [String], open: &[usize]) -> Option<&'a str> {
    candidates
        .iter()
        .zip(open)
        .enumerate()
        .min_by_key(|(i, (_, n))| (**n, *i))
        .map(|(_, (id, _))| id.as_str())
}

/// The gateway whose credential `token` is (compared as the admins' are).
pub fn authorize<'a>(gateways: &'a [RemoteGateway], token: &str) -> Option<&'a RemoteGateway> {
    super::config::find_credential(token, gateways.iter().map(|g| (&g.token, g)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, token: &str) -> GatewayEntry {
        GatewayEntry {
            id: id.into(),
            endpoint: "192.0.2.7:51820".into(),
            public_key: tunnel::PrivateKey::generate().public_key().to_string(),
            token_sha256: super::super::config::to_hex(
                ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref(),
            ),
        }
    }

    #[test]
    fn entries_and_app_references_are_checked() {
        let apps: Vec<(String, Vec<String>)> = vec![("wiki".into(), vec!["berlin".into()])];
        let refs = || apps.iter().map(|(a, g)| (a.as_str(), g.as_slice()));
        let ok = validate(&[entry("berlin", "t1")], refs()).unwrap();
        assert_eq!(ok[0].id, "berlin");
        assert!(
            validate(&[], refs())
                .unwrap_err()
                .contains("not in [[gateways]]")
        );
        let twice = validate(&[entry("berlin", "t1"), entry("berlin", "t2")], refs());
        assert!(twice.unwrap_err().contains("twice"));
        let same = validate(&[entry("berlin", "t1"), entry("paris", "t1")], refs());
        assert!(same.unwrap_err().contains("same credential"));
        let mut bad = entry("berlin", "t1");
        bad.endpoint = "no-port".into();
        assert!(validate(&[bad], refs()).unwrap_err().contains("host:port"));
        let mut bad = entry("berlin", "t1");
        bad.public_key = "AAAA".into();
        assert!(validate(&[bad], refs()).unwrap_err().contains("public_key"));
        assert!(validate(&[entry("a b", "t1")], std::iter::empty()).is_err());
    }

    #[test]
    fn the_least_loaded_gateway_gets_the_grant_and_ties_go_to_the_first() {
        let ids = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(choose(&ids, &[0, 0, 0]), Some("a"));
        assert_eq!(choose(&ids, &[2, 1, 1]), Some("b"));
        assert_eq!(choose(&[], &[]), None);
    }

    #[test]
    fn a_credential_names_its_gateway_and_nothing_else_does() {
        let gateways = validate(&[entry("a", "ta"), entry("b", "tb")], std::iter::empty()).unwrap();
        assert_eq!(authorize(&gateways, "tb").map(|g| g.id.as_str()), Some("b"));
        assert!(authorize(&gateways, "tc").is_none());
        assert!(authorize(&gateways, "").is_none());
    }
}
