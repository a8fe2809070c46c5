//! Grant decisions as pure functions: may this device get a grant now, until
//! when, and with which tunnel address.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::api::{ProblemType, Violation};

use super::config::Ipv4Net;

/// The device's latest verdict, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVerdict {
    /// Compliant?
    pub compliant: bool,
    /// Violations when not.
    pub violations: Vec<Violation>,
    /// Unix seconds.
    pub valid_until: i64,
    /// SHA-256 (hex) of the policy it was made under.
    pub policy_digest: String,
}

/// Why a grant was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Problem type.
    pub kind: ProblemType,
    /// For the person.
    pub detail: String,
    /// The failed checks, when the reason is non-compliance.
    pub violations: Vec<Violation>,
}

/// Decides whether a grant may be issued and computes its expiry: the
/// earliest of the verdict's validity, the session's (access token) expiry and
/// `now + max_grant`. A grant never outlives what it was granted on.
///
/// The verdict must have been made under `policy_digest`, the policy in
/// force: one made under an earlier policy says nothing about the current
/// rules, whether it was compliant or not, so it is refused before its
/// outcome is even looked at and the agent attests again.
pub fn decide(
    verdict: Option<&StoredVerdict>,
    policy_digest: &str,
    session_exp: i64,
    max_grant_secs: i64,
    now: i64,
) -> Result<i64, Refusal> {
    let Some(v) = verdict else {
        return Err(Refusal {
            kind: ProblemType::VerdictMissing,
            detail: "this device has no verdict: submit an attestation first".into(),
            violations: vec![],
        });
    };
    if v.policy_digest != policy_digest {
        return Err(Refusal {
            kind: ProblemType::VerdictStalePolicy,
            detail: format!(
                "the verdict was made under policy {} but {} is in force: attest again",
                short(&v.policy_digest),
                short(policy_digest)
            ),
            violations: vec![],
        });
    }
    if !v.compliant {
        let checks: Vec<&str> = v.violations.iter().map(|x| x.check.as_str()).collect();
        return Err(Refusal {
            kind: ProblemType::DeviceNotCompliant,
            detail: format!("failed checks: {}", checks.join(", ")),
            violations: v.violations.clone(),
        });
    }
    if v.valid_until <= now {
        return Err(Refusal {
            kind: ProblemType::VerdictExpired,
            detail: format!("the verdict expired {} s ago", now - v.valid_until),
            violations: vec![],
        });
    }
    let expiry = v.valid_until.min(session_exp).min(now + max_grant_secs);
    if expiry <= now {
        return Err(Refusal {
            kind: ProblemType::TokenExpired,
            detail: "the session has expired".into(),
            violations: vec![],
        });
    }
    Ok(expiry)
}

/// The first 12 hex digits of a digest, enough to tell policies apart in a message.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The gateway's own address in the client network (the first host), never
/// handed to a client.
pub fn gateway_address(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.addr) + 1)
}

/// The lowest free client address: not the network, broadcast or gateway
/// address, not in `used`.
pub fn allocate(net: &Ipv4Net, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(net.addr);
    (2..net.size() - 1)
        .map(|i| Ipv4Addr::from(base + i))
        .find(|a| !used.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(compliant: bool, valid_until: i64) -> StoredVerdict {
        StoredVerdict {
            compliant,
            violations: if compliant {
                vec![]
            } else {
                vec![Violation {
                    check: "firewall".into(),
                    message: "off".into(),
                    remediation: "turn it on".into(),
                }]
            },
            valid_until,
            policy_digest: P.into(),
        }
    }

    const P: &str = "5c0f00000000aaaa";

    #[test]
    fn expiry_is_the_earliest_bound() {
        assert_eq!(
            decide(Some(&verdict(true, 1900)), P, 5000, 3600, 1000),
            Ok(1900)
        );
        assert_eq!(
            decide(Some(&verdict(true, 9000)), P, 1500, 3600, 1000),
            Ok(1500)
        );
        assert_eq!(
            decide(Some(&verdict(true, 9000)), P, 9000, 60, 1000),
            Ok(1060)
        );
    }

    #[test]
    fn refusals_name_their_reason() {
        assert_eq!(
            decide(None, P, 5000, 60, 1000).unwrap_err().kind,
            ProblemType::VerdictMissing
        );
        let r = decide(Some(&verdict(false, 9000)), P, 5000, 60, 1000).unwrap_err();
        assert_eq!(r.kind, ProblemType::DeviceNotCompliant);
        assert_eq!(r.violations[0].check, "firewall");
        assert!(r.detail.contains("firewall"));
        assert_eq!(
            decide(Some(&verdict(true, 1000)), P, 5000, 60, 1000)
                .unwrap_err()
                .kind,
            ProblemType::VerdictExpired
        );
        assert_eq!(
            decide(Some(&verdict(true, 9000)), P, 999, 60, 1000)
                .unwrap_err()
                .kind,
            ProblemType::TokenExpired
        );
    }

    #[test]
    fn a_verdict_under_another_policy_is_stale_whatever_it_said() {
        for compliant in [true, false] {
            let r = decide(
                Some(&verdict(compliant, 9000)),
                "77aa00000000bbbb",
                5000,
                60,
                1000,
            )
            .unwrap_err();
            assert_eq!(r.kind, ProblemType::VerdictStalePolicy);
            assert!(r.detail.contains("5c0f00000000"), "{}", r.detail);
        }
    }

    #[test]
    fn allocation_skips_reserved_and_used() {
        let net = Ipv4Net::parse("100.64.0.0/30").unwrap();
        assert_eq!(gateway_address(&net), Ipv4Addr::new(100, 64, 0, 1));
        let mut used = HashSet::new();
        assert_eq!(allocate(&net, &used), Some(Ipv4Addr::new(100, 64, 0, 2)));
        used.insert(Ipv4Addr::new(100, 64, 0, 2));
        assert_eq!(allocate(&net, &used), None, "/30 has one client address");
        let net = Ipv4Net::parse("10.9.0.0/24").unwrap();
        used.insert(Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(allocate(&net, &used), Some(Ipv4Addr::new(10, 9, 0, 3)));
    }
}
