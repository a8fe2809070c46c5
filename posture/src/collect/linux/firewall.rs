//! Host firewall: the loaded ruleset when we may read it, else the
//! unprivileged hints (ufw, firewalld) that reference how it is managed.

use std::sync::Arc;

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::collect::{CheckFuture, Context, boxed};
use crate::parse::linux::firewall::{self, Ruleset};
use crate::probe::{self, ProbeError};

const REMEDIATION: &str = "Turn on the firewall with a default-deny inbound policy: `sudo ufw enable`, or enable firewalld/nftables.";

pub(super) fn firewall(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::Firewall;
        let mut tried = Vec::new();
        for (program, args, source) in [
            ("nft", &["list", "ruleset"][..], "nftables"),
            ("iptables", &["-S", "INPUT"][..], "iptables"),
        ] {
            match probe::run_ok(program, args, context.command_timeout).await {
                Ok(out) => {
                    let parsed = if program == "nft" {
                        firewall::parse_nft_ruleset(&out.stdout)
                    } else {
                        firewall::parse_iptables_rules(&out.stdout)
                    };
                    return match parsed {
                        Ok(ruleset) => from_ruleset(
                            &ruleset,
                            source,
                            &format!("ran `{program} {}`", args.join(" ")),
                        ),
                        Err(err) => Check::unknown(id, err.into()),
                    };
                }
                Err(err) => tried.push(err),
            }
        }
        // Not root (or no tools): ask the managers that answer without root.
        if let Some(check) = unprivileged_hint(&context).await {
            return check;
        }
        if tried
            .iter()
            .all(|e| matches!(e, ProbeError::Missing { .. }))
        {
            return Check::fail(id, "no firewall found")
                .fact("enabled", false)
                .evidence("none of nft, iptables, ufw, firewalld is installed")
                .remediation(REMEDIATION);
        }
        let detail: Vec<String> = tried.iter().map(ToString::to_string).collect();
        let kind = if tried
            .iter()
            .any(|e| matches!(e, ProbeError::PermissionDenied { .. }))
        {
            UnknownKind::PermissionDenied
        } else {
            UnknownKind::SourceFailed
        };
        Check::unknown(
            id,
            Unknown::new(
                kind,
                format!(
                    "the ruleset could not be read ({}) and neither ufw nor firewalld reports itself active",
                    detail.join("; ")
                ),
            ),
        )
    })
}

fn from_ruleset(ruleset: &Ruleset, source: &str, how: &str) -> Check {
    let id = CheckId::Firewall;
    let chains: Vec<String> = ruleset
        .input_chains
        .iter()
        .map(|c| {
            format!(
                "{} policy {} ({} rules{})",
                c.name,
                c.policy,
                c.rules,
                if c.ends_in_drop { ", ends in drop" } else { "" }
            )
        })
        .collect();
    let evidence = if chains.is_empty() {
        format!("{how}: no input filter chain loaded")
    } else {
        format!("{how}: {}", chains.join("; "))
    };
    if ruleset.filters_inbound() {
        Check::pass(id, format!("{source}: inbound traffic filtered"))
            .fact("enabled", true)
            .fact("source", source)
            .evidence(evidence)
    } else {
        Check::fail(
            id,
            if chains.is_empty() {
                "no firewall rules loaded".to_owned()
            } else {
                "firewall accepts all inbound traffic".to_owned()
            },
        )
        .fact("enabled", false)
        .fact("source", source)
        .evidence(evidence)
        .remediation(REMEDIATION)
    }
}

/// ufw's config plus its service state, or firewalld's own state query.
async fn unprivileged_hint(context: &Context) -> Option<Check> {
    let id = CheckId::Firewall;
    if let Ok(out) = probe::run("firewall-cmd", &["--state"], context.command_timeout).await
        && out.stdout.trim() == "running"
    {
        return Some(
            Check::pass(id, "firewalld running")
                .fact("enabled", true)
                .fact("source", "firewalld")
                .evidence("ran `firewall-cmd --state`: running"),
        );
    }
    let ufw = probe::read_text("/etc/ufw/ufw.conf")
        .ok()
        .and_then(|t| firewall::parse_ufw_enabled(&t));
    if ufw == Some(true) {
        let active = probe::run("systemctl", &["is-active", "ufw"], context.command_timeout)
            .await
            .ok()
            .map(|o| o.stdout.trim().to_owned());
        if active.as_deref() == Some("active") {
            return Some(
                Check::pass(id, "ufw enabled and active")
                    .fact("enabled", true)
                    .fact("source", "ufw")
                    .evidence("/etc/ufw/ufw.conf ENABLED=yes; `systemctl is-active ufw`: active"),
            );
        }
    }
    None
}
