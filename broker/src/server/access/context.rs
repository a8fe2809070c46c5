//! Where a call comes from (pure): the caller's address behind trusted
//! proxies, the named networks that hold it, and the key under which a
//! network is remembered for a user.

use std::net::IpAddr;

use ipnet::IpNet;

/// The caller's address: the TCP peer, unless the peer is a trusted proxy,
/// in which case the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy (entries further left were written by the client and
/// prove nothing). `None` when the peer is unknown.
pub fn source_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.map(canonical)?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else {
        return Some(peer);
    };
    let mut caller = peer;
    for entry in header.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>().map(canonical) else {
            // A malformed hop: stop at the last address we could trust.
            break;
        };
        caller = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(caller)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The names of the configured networks that hold `ip`, in configuration order.
pub fn named_networks(ip: Option<IpAddr>, networks: &[(String, Vec<IpNet>)]) -> Vec<String> {
    let Some(ip) = ip else {
        return Vec::new();
    };
    networks
        .iter()
        .filter(|(_, nets)| nets.iter().any(|n| n.contains(&ip)))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The key a network is remembered under for the "new network" signal: the
/// first named network that holds the address, else its /24 (IPv4) or /64
/// (IPv6), so a laptop moving between addresses of one office or home
/// network is one network, not many.
pub fn network_key(ip: Option<IpAddr>, named: &[String]) -> String {
    if let Some(name) = named.first() {
        return format!("named:{name}");
    }
    match ip {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => IpNet::new(IpAddr::V4(v4), 24)
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| v4.to_string()),
        Some(IpAddr::V6(v6)) => IpNet::new(IpAddr::V6(v6), 64)
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| v6.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let trusted = nets(&["10.0.0.0/24"]);
        // A client that writes the header itself is not believed.
        assert_eq!(
            source_ip(ip("203.0.113.9"), Some("192.0.2.1"), &trusted),
            ip("203.0.113.9")
        );
        // Through the proxy: the right-most untrusted hop.
        assert_eq!(
            source_ip(
                ip("10.0.0.2"),
                Some("192.0.2.1, 198.51.100.7, 10.0.0.3"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // A garbage hop stops the walk at the last good one.
        assert_eq!(
            source_ip(ip("10.0.0.2"), Some("192.0.2.1, junk"), &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(source_ip(ip("10.0.0.2"), None, &trusted), ip("10.0.0.2"));
        assert_eq!(
            source_ip(ip("::ffff:192.0.2.5"), None, &[]),
            ip("192.0.2.5")
        );
        assert_eq!(source_ip(None, Some("192.0.2.1"), &trusted), None);
    }

    #[test]
    fn named_networks_and_keys() {
        let config = vec![
            ("office".to_owned(), nets(&["192.0.2.0/24"])),
            ("vpn".to_owned(), nets(&["192.0.2.128/25", "2001:db8::/32"])),
        ];
        let named = named_networks(ip("192.0.2.200"), &config);
        assert_eq!(named, vec!["office".to_owned(), "vpn".to_owned()]);
        assert_eq!(network_key(ip("192.0.2.200"), &named), "named:office");
        assert!(named_networks(ip("127.0.0.1"), &config).is_empty());
        assert_eq!(network_key(ip("198.51.100.77"), &[]), "198.51.100.0/24");
        assert_eq!(network_key(ip("2001:db9::1:2:3:4"), &[]), "2001:db9::/64");
        assert_eq!(network_key(None, &[]), "unknown");
    }
}
