//! The macOS configuration profile (`.mobileconfig`) for Jamf, Kandji or
//! any MDM: one payload whose PayloadType is the agent's preference domain,
//! `com.sallyport.agent`, holding every macOS key with its default. macOS
//! installs it as `/Library/Managed Preferences/com.sallyport.agent.plist`,
//! which `agent::config::plist` reads (sections as nested dictionaries).
//!
//! Keys without a default (the broker URL, the issuer) are XML comments
//! with an example: an unset value means something ("ask the broker"), so
//! the profile does not invent one; the IT guide says to fill in
//! `broker_url`. The PayloadUUIDs are UUIDv5 of the key set, so the file is
//! stable across regenerations.

use std::fmt::Write as _;

use agent::config::schema::{Key, Literal, Os};

use crate::uuid5::{NAMESPACE, uuid5};
use crate::xml::escape;

/// The agent's preference domain: the payload's PayloadType.
pub const DOMAIN: &str = "com.sallyport.agent";
/// The profile's identifier.
pub const PROFILE_IDENTIFIER: &str = "com.sallyport.agent.profile";
/// The settings payload's identifier.
pub const PAYLOAD_IDENTIFIER: &str = "com.sallyport.agent.settings";

fn mac_keys(keys: &[Key]) -> Vec<&Key> {
    keys.iter()
        .filter(|k| k.manageable && k.applies_to(Os::MacOs))
        .collect()
}

/// The profile's and the payload's UUIDs, from the key set.
pub fn uuids(keys: &[Key]) -> (String, String) {
    let names: Vec<&str> = mac_keys(keys).iter().map(|k| k.path).collect();
    let set = names.join(",");
    (
        uuid5(&NAMESPACE, &format!("{PROFILE_IDENTIFIER}:{set}")),
        uuid5(&NAMESPACE, &format!("{PAYLOAD_IDENTIFIER}:{set}")),
    )
}

fn value(out: &mut String, indent: &str, literal: Literal) {
    match literal {
        Literal::Bool(true) => {
            let _ = writeln!(out, "{indent}<true/>");
        }
        Literal::Bool(false) => {
            let _ = writeln!(out, "{indent}<false/>");
        }
        Literal::Integer(n) => {
            let _ = writeln!(out, "{indent}<integer>{n}</integer>");
        }
        Literal::String(s) => {
            let _ = writeln!(out, "{indent}<string>{}</string>", escape(s));
        }
        Literal::List([]) => {
            let _ = writeln!(out, "{indent}<array/>");
        }
        Literal::List(items) => {
            let _ = writeln!(out, "{indent}<array>");
            for item in items {
                let _ = writeln!(out, "{indent}  <string>{}</string>", escape(item));
            }
            let _ = writeln!(out, "{indent}</array>");
        }
    }
}

/// An XML comment's text: comments are not unescaped, but `--` may not
/// appear in one.
fn comment_text(text: &str) -> String {
    text.replace("--", "- -")
}

fn entry(out: &mut String, indent: &str, key: &Key) {
    let _ = writeln!(
        out,
        "{indent}<!-- {}: {} -->",
        key.path,
        comment_text(&key.description.replace('`', ""))
    );
    match key.default {
        Some(default) => {
            let _ = writeln!(out, "{indent}<key>{}</key>", key.leaf());
            value(out, indent, default);
        }
        None => {
            let mut example = String::new();
            value(&mut example, "", key.example);
            let _ = writeln!(
                out,
                "{indent}<!-- not set by default; to set it: <key>{}</key> {} -->",
                key.leaf(),
                comment_text(example.trim())
            );
        }
    }
}

/// The configuration profile.
pub fn mobileconfig(keys: &[Key]) -> String {
    let (profile_uuid, payload_uuid) = uuids(keys);
    let keys = mac_keys(keys);
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n");
    out.push_str("<!-- Generated from settings/src/schema.rs by `cargo run -p installers-gen`; do not edit here.\n");
    out.push_str("     Every key in the payload is managed: macOS writes it to /Library/Managed Preferences/com.sallyport.agent.plist,\n");
    out.push_str("     it overrides the user's setting and the agent reports it as locked. Delete the keys you do not want to manage. -->\n");
    out.push_str("<plist version=\"1.0\">\n<dict>\n");
    out.push_str("  <key>PayloadContent</key>\n  <array>\n    <dict>\n");
    let inner = "      ";
    let _ = writeln!(
        out,
        "{inner}<key>PayloadType</key>\n{inner}<string>{DOMAIN}</string>"
    );
    let _ = writeln!(
        out,
        "{inner}<key>PayloadIdentifier</key>\n{inner}<string>{PAYLOAD_IDENTIFIER}</string>"
    );
    let _ = writeln!(
        out,
        "{inner}<key>PayloadUUID</key>\n{inner}<string>{payload_uuid}</string>"
    );
    let _ = writeln!(
        out,
        "{inner}<key>PayloadVersion</key>\n{inner}<integer>1</integer>"
    );
    let _ = writeln!(
        out,
        "{inner}<key>PayloadDisplayName</key>\n{inner}<string>Sallyport settings</string>"
    );
    let mut open_section = "";
    for key in keys {
        let section = key.section();
        if section != open_section {
            if !open_section.is_empty() {
                let _ = writeln!(out, "{inner}</dict>");
            }
            if !section.is_empty() {
                let _ = writeln!(out, "{inner}<key>{section}</key>\n{inner}<dict>");
            }
            open_section = section;
        }
        let indent = if section.is_empty() {
            inner.to_owned()
        } else {
            format!("{inner}  ")
        };
        entry(&mut out, &indent, key);
    }
    if !open_section.is_empty() {
        let _ = writeln!(out, "{inner}</dict>");
    }
    out.push_str("    </dict>\n  </array>\n");
    out.push_str("  <key>PayloadDisplayName</key>\n  <string>Sallyport</string>\n");
    out.push_str("  <key>PayloadDescription</key>\n  <string>Managed settings of the Sallyport zero-trust client.</string>\n");
    let _ = writeln!(
        out,
        "  <key>PayloadIdentifier</key>\n  <string>{PROFILE_IDENTIFIER}</string>"
    );
    out.push_str("  <key>PayloadOrganization</key>\n  <string>Sallyport</string>\n");
    out.push_str("  <key>PayloadScope</key>\n  <string>System</string>\n");
    out.push_str("  <key>PayloadType</key>\n  <string>Configuration</string>\n");
    let _ = writeln!(
        out,
        "  <key>PayloadUUID</key>\n  <string>{profile_uuid}</string>"
    );
    out.push_str("  <key>PayloadVersion</key>\n  <integer>1</integer>\n");
    out.push_str("</dict>\n</plist>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::config::schema::KEYS;

    #[test]
    fn uuids_are_stable_distinct_and_follow_the_key_set() {
        let (profile, payload) = uuids(KEYS);
        assert_eq!(uuids(KEYS), (profile.clone(), payload.clone()));
        assert_ne!(profile, payload);
        assert_ne!(uuids(&KEYS[1..]).0, profile);
    }

    #[test]
    fn comments_never_hold_a_double_dash() {
        assert_eq!(comment_text("a -- b"), "a - - b");
        let text = mobileconfig(KEYS);
        for comment in text.split("<!--").skip(1) {
            let body = comment.split("-->").next().unwrap_or_default();
            assert!(!body.contains("--"), "{body}");
        }
    }
}
