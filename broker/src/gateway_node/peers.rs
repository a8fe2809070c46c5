//! What each sync line changes at the gateway, decided without touching
//! it: [`PeerSet`] remembers what the brokers asked for and turns each
//! line into the peer additions and removals that bring the gateway there.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::{GatewaySync, SyncPeer};

/// One change to make at the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Install (or replace) this peer.
    Add(SyncPeer),
    /// Remove the peer with this key (base64).
    Remove(String),
}

/// The peers the brokers asked for, by WireGuard key.
#[derive(Debug, Default)]
pub struct PeerSet {
    held: HashMap<String, SyncPeer>,
}

impl PeerSet {
    /// How many peers are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// What `sync` changes. A full set removes every peer it does not
    /// name and adds those that are new or changed; an addition of a peer
    /// held as it is, or a removal of one not held, changes nothing.
    pub fn apply(&mut self, sync: GatewaySync) -> Vec<Action> {
        match sync {
            GatewaySync::Snapshot { peers } => {
                let wanted: HashMap<String, SyncPeer> = peers
                    .into_iter()
                    .map(|p| (p.public_key.clone(), p))
                    .collect();
                // In key order, so what happens is the same on every run.
                let mut gone: Vec<&String> = self
                    .held
                    .keys()
                    .filter(|k| !wanted.contains_key(*k))
                    .collect();
                gone.sort();
                let mut new: Vec<&SyncPeer> = wanted
                    .values()
                    .filter(|p| self.held.get(&p.public_key) != Some(*p))
                    .collect();
                new.sort_by(|a, b| a.public_key.cmp(&b.public_key));
                let actions: Vec<Action> = gone
                    .into_iter()
                    .map(|k| Action::Remove(k.clone()))
                    .chain(new.into_iter().map(|p| Action::Add(p.clone())))
                    .collect();
                self.held = wanted;
                actions
            }
            GatewaySync::Add { peer } => {
                if self.held.get(&peer.public_key) == Some(&peer) {
                    return Vec::new();
                }
                self.held.insert(peer.public_key.clone(), peer.clone());
                vec![Action::Add(peer)]
            }
            GatewaySync::Remove { public_key } => match self.held.remove(&public_key) {
                Some(_) => vec![Action::Remove(public_key)],
                None => Vec::new(),
            },
            GatewaySync::Ping => Vec::new(),
        }
    }

    /// Removes everything (fail closed, cut off from the brokers).
    pub fn clear(&mut self) -> Vec<Action> {
        let mut keys: Vec<String> = self.held.drain().map(|(k, _)| k).collect();
        keys.sort();
        keys.into_iter().map(Action::Remove).collect()
    }
}

/// A synced peer as the gateway installs it; `Err` says what is wrong.
pub fn peer_grant(peer: &SyncPeer) -> Result<tunnel::PeerGrant, String> {
    let public_key =
        tunnel::PublicKey::from_base64(&peer.public_key).map_err(|e| format!("key: {e}"))?;
    let client_address: IpAddr = peer
        .client_address
        .parse()
        .map_err(|e| format!("client_address {:?}: {e}", peer.client_address))?;
    let targets = peer
        .targets
        .iter()
        .map(|t| t.parse().map_err(|e| format!("target {t:?}: {e}")))
        .collect::<Result<Vec<tunnel::Target>, String>>()?;
    let expires_at = u64::try_from(peer.expires_at)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| format!("expires_at {} is before 1970", peer.expires_at))?;
    if expires_at <= SystemTime::now() {
        return Err("already expired".into());
    }
    Ok(tunnel::PeerGrant {
        public_key,
        client_address,
        targets,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(key: &str, address: &str) -> SyncPeer {
        SyncPeer {
            public_key: key.into(),
            client_address: address.into(),
            targets: vec!["127.0.0.1:7/tcp".into()],
            expires_at: 4_000_000_000,
        }
    }

    #[test]
    fn a_full_set_replaces_what_was_held() {
        let mut set = PeerSet::default();
        assert_eq!(
            set.apply(GatewaySync::Add {
                peer: peer("a", "100.64.0.2")
            }),
            vec![Action::Add(peer("a", "100.64.0.2"))]
        );
        set.apply(GatewaySync::Add {
            peer: peer("b", "100.64.0.3"),
        });
        // After a reconnection: "a" was closed meanwhile, "c" opened, "b"
        // is unchanged.
        let actions = set.apply(GatewaySync::Snapshot {
            peers: vec![peer("b", "100.64.0.3"), peer("c", "100.64.0.4")],
        });
        assert_eq!(
            actions,
            vec![
                Action::Remove("a".into()),
                Action::Add(peer("c", "100.64.0.4"))
            ]
        );
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn repeats_change_nothing_and_a_changed_peer_is_replaced() {
        let mut set = PeerSet::default();
        set.apply(GatewaySync::Add {
            peer: peer("a", "100.64.0.2"),
        });
        assert!(
            set.apply(GatewaySync::Add {
                peer: peer("a", "100.64.0.2")
            })
            .is_empty()
        );
        assert_eq!(
            set.apply(GatewaySync::Add {
                peer: peer("a", "100.64.0.9")
            }),
            vec![Action::Add(peer("a", "100.64.0.9"))]
        );
        assert!(
            set.apply(GatewaySync::Remove {
                public_key: "zz".into()
            })
            .is_empty()
        );
        assert!(set.apply(GatewaySync::Ping).is_empty());
        assert_eq!(set.clear(), vec![Action::Remove("a".into())]);
        assert!(set.is_empty());
    }

    #[test]
    fn a_bad_peer_is_named_not_installed() {
        let key = tunnel::PrivateKey::generate().public_key().to_string();
        assert!(peer_grant(&peer(&key, "100.64.0.2")).is_ok());
        assert!(
            peer_grant(&peer("AAAA", "100.64.0.2"))
                .unwrap_err()
                .contains("key")
        );
        assert!(
            peer_grant(&peer(&key, "nope"))
                .unwrap_err()
                .contains("client_address")
        );
        let mut old = peer(&key, "100.64.0.2");
        old.expires_at = 1;
        assert_eq!(peer_grant(&old).unwrap_err(), "already expired");
    }
}
