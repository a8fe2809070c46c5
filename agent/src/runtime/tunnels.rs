//! Carrying out the supervisor's tunnel commands: bringing an app's tunnel
//! up with the grant the broker issued (keeping its local ports across
//! renewals), tearing it down, and noticing tunnels that closed by
//! themselves. Kept apart because this is the enforcement path: it runs
//! inline in the event loop, never on a task.

use std::time::SystemTime;

use time::OffsetDateTime;
use tunnel::{
    PublicKey, SocksCredential, SocksPassword, Target, Tunnel, TunnelConfig, TunnelHandle,
};

use super::{Runtime, now};
use crate::supervisor::{Blocked, Event};
use crate::timeline::{Entry, Kind};

/// An app's tunnel that is up, and the grant it uses.
pub(super) struct Running {
    pub(super) grant_id: String,
    pub(super) handle: TunnelHandle,
    pub(super) expires_at: OffsetDateTime,
    /// The SOCKS5 username and password this tunnel requires
    /// (`tunnels.socks_auth`), for the user's status view.
    pub(super) socks_auth: Option<SocksCredential>,
}

/// A fresh SOCKS5 credential: a random username and a random 192-bit
/// password from the OS's generator. The username is random too, so it
/// says nothing about the application to whoever sees it. `None` only when
/// the OS's generator fails, which fails the tunnel closed.
fn fresh_socks_credential() -> Option<SocksCredential> {
    use base64::Engine;
    use ring::rand::{SecureRandom, SystemRandom};
    let rng = SystemRandom::new();
    let mut user = [0u8; 6];
    let mut pass = [0u8; 24];
    rng.fill(&mut user).ok()?;
    rng.fill(&mut pass).ok()?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let credential = SocksCredential {
        username: format!("sp-{}", b64.encode(user)),
        password: SocksPassword::new(b64.encode(pass)),
    };
    zeroize::Zeroize::zeroize(&mut pass);
    Some(credential)
}

impl Runtime {
    pub(super) async fn stop_tunnel(&mut self, app: &str, reason: &Blocked) {
        if let Some(running) = self.tunnels.remove(app) {
            running.handle.shutdown().await;
            self.record(
                Entry::new(
                    now(),
                    Kind::TunnelDown,
                    format!("tunnel closed (grant {})", running.grant_id),
                )
                .app(app)
                .reason(reason.explain()),
            );
        }
    }

    pub(super) async fn start_tunnel(&mut self, app: String, grant_id: String) {
        let Some(issued) = self.issued.get(&grant_id) else {
            self.feed_later(Event::TunnelClosed {
                app,
                reason: "internal: grant unknown to the driver".to_owned(),
            });
            return;
        };
        let targets: Result<Vec<Target>, _> = issued
            .grant
            .targets
            .iter()
            .map(|t| t.parse::<Target>())
            .collect();
        let (targets, gateway_key, client_address) = match (
            targets,
            PublicKey::from_base64(&issued.grant.gateway.public_key),
            issued.grant.client_address.parse(),
        ) {
            (Ok(t), Ok(k), Ok(a)) => (t, k, a),
            _ => {
                self.feed_later(Event::TunnelClosed {
                    app,
                    reason: "the broker's grant is malformed".to_owned(),
                });
                return;
            }
        };
        // `SystemTime::from` panics where the OS cannot represent the time
        // (before 1601 on Windows); a broker's odd date closes the tunnel
        // instead.
        let Some(expires_at) = system_time(issued.grant.expires_at) else {
            self.feed_later(Event::TunnelClosed {
                app,
                reason: "the broker's grant has an expiry this system cannot represent".to_owned(),
            });
            return;
        };
        let mut config = TunnelConfig::new(
            issued.endpoint,
            gateway_key,
            client_address,
            targets.clone(),
            expires_at,
        );
        config.private_key = issued.key.clone();
        // Only the signed-in user's processes may use the forwards and the
        // SOCKS5 listener (the tunnel's default). macOS has no owner lookup
        // yet (`tunnel::local_owner`), where that default would refuse
        // every connection: there the listeners stay open to local
        // accounts, as before, until the lookup exists (a known gap).
        #[cfg(target_os = "macos")]
        {
            config.local_access = tunnel::LocalAccess::Anyone;
        }
        for target in &targets {
            if let Some(port) = self.ports.get(&(app.clone(), *target)) {
                config.forward_ports.insert(*target, *port);
            }
        }
        config.socks_port = Some(self.socks_ports.get(&app).copied().unwrap_or(0));
        if self.socks_auth {
            // A renewed grant keeps the credential, like the ports, so the
            // application the user configured keeps working; a tunnel
            // opened afresh gets a new one.
            let kept = self
                .tunnels
                .get(&app)
                .and_then(|running| running.socks_auth.clone());
            let Some(credential) = kept.or_else(fresh_socks_credential) else {
                self.feed_later(Event::TunnelClosed {
                    app,
                    reason: "no random numbers for the SOCKS5 password".to_owned(),
                });
                return;
            };
            config.socks_auth = Some(credential);
        }
        let socks_auth = config.socks_auth.clone();
        let expires = issued.grant.expires_at;
        // A replaced tunnel (renewed grant) frees its ports first, so the
        // new one can take the same local addresses.
        if let Some(old) = self.tunnels.remove(&app) {
            old.handle.shutdown().await;
        }
        match Tunnel::start(config).await {
            Ok(handle) => {
                let status = handle.status();
                for (target, addr) in &status.forwards {
                    self.ports.insert((app.clone(), *target), addr.port());
                }
                if let Some(socks) = status.socks {
                    self.socks_ports.insert(app.clone(), socks.port());
                }
                self.record(
                    Entry::new(
                        now(),
                        Kind::TunnelUp,
                        format!("tunnel up (grant {grant_id})"),
                    )
                    .app(app.clone()),
                );
                self.tunnels.insert(
                    app,
                    Running {
                        grant_id,
                        handle,
                        expires_at: expires,
                        socks_auth,
                    },
                );
            }
            Err(e) => self.feed_later(Event::TunnelClosed {
                app,
                reason: e.to_string(),
            }),
        }
    }

    /// Tunnels that closed by themselves (handshake timeout, expiry) become
    /// `TunnelClosed` for the supervisor.
    pub(super) async fn reap_closed_tunnels(&mut self) {
        let closed: Vec<(String, String)> = self
            .tunnels
            .iter()
            .filter_map(|(app, t)| {
                t.handle
                    .status()
                    .closed
                    .map(|reason| (app.clone(), format!("{reason:?}")))
            })
            .collect();
        for (app, reason) in closed {
            if let Some(t) = self.tunnels.remove(&app) {
                t.handle.shutdown().await;
            }
            self.feed(Event::TunnelClosed { app, reason }).await;
        }
    }

    /// Closes every tunnel (the agent is stopping).
    pub(super) async fn close_all_tunnels(&mut self) {
        let running = std::mem::take(&mut self.tunnels);
        for (_, tunnel) in running {
            tunnel.handle.shutdown().await;
        }
    }
}

/// `at` as a `SystemTime`, if the OS can represent it.
fn system_time(at: OffsetDateTime) -> Option<SystemTime> {
    let secs = at.unix_timestamp();
    let nanos = at.nanosecond();
    let since = |d: std::time::Duration| {
        if secs >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(d)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(d)
        }
    };
    since(std::time::Duration::new(secs.unsigned_abs(), 0))
        .and_then(|t| t.checked_add(std::time::Duration::from_nanos(u64::from(nanos))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks_credentials_are_fresh_and_fit_rfc_1929() {
        let a = fresh_socks_credential().unwrap();
        let b = fresh_socks_credential().unwrap();
        assert_ne!(a.username, b.username);
        assert_ne!(a.password.expose(), b.password.expose());
        assert_eq!(a.password.expose().len(), 32);
        assert!(a.username.len() <= 255 && !a.username.is_empty());
        assert!(!format!("{a:?}").contains(a.password.expose()));
    }

    #[test]
    fn expiries_convert_without_panicking() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(
            system_time(t),
            SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(1_800_000_000))
        );
        // The earliest date the broker's RFC 3339 can carry: never a panic.
        let _ = system_time(time::macros::datetime!(0001-01-01 0:00 UTC));
        let _ = system_time(time::macros::datetime!(9999-12-31 23:59:59 UTC));
    }
}
