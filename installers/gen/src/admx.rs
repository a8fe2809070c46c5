//! Group Policy templates (for GPO and Intune's ADMX ingestion): one ADMX
//! with a policy per Windows key, and its en-US ADML with the strings and
//! the option boxes.
//!
//! Every policy writes under `HKLM\SOFTWARE\Policies\Sallyport` exactly
//! what `agent::config::registry` reads: a top-level key as a value of that
//! key, a sectioned key (`identity.acr_values`) as value `acr_values` of
//! subkey `identity`. Types: a boolean is a policy whose Enabled/Disabled
//! state writes DWORD 1/0; an integer is a `decimal` element (`REG_DWORD`);
//! text and URLs are `text` (`REG_SZ`); lists are `multiText`
//! (`REG_MULTI_SZ`); a choice is an `enum` of strings (`REG_SZ`).

use std::fmt::Write as _;

use agent::config::schema::{Key, Kind, Literal, Os};

use crate::xml::escape;

/// The PolicyDefinitions namespace every ADMX and ADML uses.
pub const NAMESPACE: &str = "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions";

/// The policy key, under HKLM, as the ADMX writes it.
pub const POLICY_KEY: &str = r"SOFTWARE\Policies\Sallyport";

/// The ADMX's own namespace (its `target`).
pub const TARGET_NAMESPACE: &str = "Sallyport.Policies.Sallyport";

const HEADER_COMMENT: &str =
    "Generated from settings/src/schema.rs by `cargo run -p installers-gen`; do not edit.";

/// The policy (and string) name of a key: its path with `_` for `.`.
pub fn policy_name(key: &Key) -> String {
    key.path.replace('.', "_")
}

/// The registry key (under HKLM) a key's value lives in.
pub fn registry_key(key: &Key) -> String {
    match key.section() {
        "" => POLICY_KEY.to_owned(),
        section => format!(r"{POLICY_KEY}\{}", section.replace('.', r"\")),
    }
}

fn windows_keys(keys: &[Key]) -> impl Iterator<Item = &Key> {
    keys.iter()
        .filter(|k| k.manageable && k.applies_to(Os::Windows))
}

/// The ADMX (`Sallyport.admx`).
pub fn admx(keys: &[Key]) -> String {
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = writeln!(out, "<!-- {HEADER_COMMENT} -->");
    let _ = writeln!(
        out,
        "<policyDefinitions xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" revision=\"1.0\" schemaVersion=\"1.0\" xmlns=\"{NAMESPACE}\">"
    );
    out.push_str("  <policyNamespaces>\n");
    let _ = writeln!(
        out,
        "    <target prefix=\"sallyport\" namespace=\"{TARGET_NAMESPACE}\" />"
    );
    out.push_str("  </policyNamespaces>\n");
    out.push_str("  <resources minRequiredRevision=\"1.0\" />\n");
    out.push_str("  <supportedOn>\n    <definitions>\n");
    out.push_str("      <definition name=\"SUPPORTED_Windows10\" displayName=\"$(string.SUPPORTED_Windows10)\" />\n");
    out.push_str("    </definitions>\n  </supportedOn>\n");
    out.push_str("  <categories>\n");
    out.push_str("    <category name=\"Sallyport\" displayName=\"$(string.Sallyport)\" explainText=\"$(string.Sallyport_Explain)\" />\n");
    out.push_str("  </categories>\n");
    out.push_str("  <policies>\n");
    for key in windows_keys(keys) {
        policy(&mut out, key);
    }
    out.push_str("  </policies>\n");
    out.push_str("</policyDefinitions>\n");
    out
}

fn policy(out: &mut String, key: &Key) {
    let name = policy_name(key);
    let registry = escape(&registry_key(key));
    let leaf = key.leaf();
    let presentation = if key.kind == Kind::Bool {
        String::new()
    } else {
        format!(" presentation=\"$(presentation.{name})\"")
    };
    let value_name = if key.kind == Kind::Bool {
        format!(" valueName=\"{leaf}\"")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "    <policy name=\"{name}\" class=\"Machine\" displayName=\"$(string.{name})\" explainText=\"$(string.{name}_Explain)\"{presentation} key=\"{registry}\"{value_name}>"
    );
    out.push_str("      <parentCategory ref=\"Sallyport\" />\n");
    out.push_str("      <supportedOn ref=\"SUPPORTED_Windows10\" />\n");
    match key.kind {
        Kind::Bool => {
            out.push_str(
                "      <enabledValue>\n        <decimal value=\"1\" />\n      </enabledValue>\n",
            );
            out.push_str(
                "      <disabledValue>\n        <decimal value=\"0\" />\n      </disabledValue>\n",
            );
        }
        Kind::Integer { min, max } => {
            let _ = writeln!(
                out,
                "      <elements>\n        <decimal id=\"{name}\" valueName=\"{leaf}\" required=\"true\" minValue=\"{min}\" maxValue=\"{max}\" />\n      </elements>"
            );
        }
        Kind::String | Kind::HttpsUrl => {
            let _ = writeln!(
                out,
                "      <elements>\n        <text id=\"{name}\" valueName=\"{leaf}\" required=\"true\" maxLength=\"2048\" />\n      </elements>"
            );
        }
        Kind::StringList => {
            let _ = writeln!(
                out,
                "      <elements>\n        <multiText id=\"{name}\" valueName=\"{leaf}\" />\n      </elements>"
            );
        }
        Kind::Choice(items) => {
            let _ = writeln!(
                out,
                "      <elements>\n        <enum id=\"{name}\" valueName=\"{leaf}\" required=\"true\">"
            );
            for item in items {
                let _ = writeln!(
                    out,
                    "          <item displayName=\"$(string.{name}_{item})\">\n            <value>\n              <string>{}</string>\n            </value>\n          </item>",
                    escape(item)
                );
            }
            out.push_str("        </enum>\n      </elements>\n");
        }
    }
    out.push_str("    </policy>\n");
}

/// The explain text: the description, the default, the range, and where
/// the value lands (so an administrator can check with `reg query`).
fn explain(key: &Key) -> String {
    let mut text = key.description.replace('`', "");
    let _ = write!(text, "\n\nDefault: {}.", crate::describe_default(key));
    match key.kind {
        Kind::Integer { min, max } => {
            let _ = write!(text, " Allowed: {min} to {max}.");
        }
        Kind::Choice(items) => {
            let _ = write!(text, " Allowed: {}.", items.join(", "));
        }
        Kind::HttpsUrl => text.push_str(" Must use https (http only to a loopback address)."),
        Kind::StringList => text.push_str(" One value per line."),
        Kind::Bool | Kind::String => {}
    }
    let kind = match key.kind {
        Kind::Bool => "REG_DWORD, 1 when Enabled, 0 when Disabled",
        Kind::Integer { .. } => "REG_DWORD",
        Kind::String | Kind::HttpsUrl | Kind::Choice(_) => "REG_SZ",
        Kind::StringList => "REG_MULTI_SZ",
    };
    let _ = write!(
        text,
        "\n\nRegistry: HKLM\\{}, value {} ({kind}). Sallyport setting: {}. A configured policy overrides the user's own setting; the agent reports it as locked.",
        registry_key(key),
        key.leaf(),
        key.path
    );
    text
}

/// The en-US ADML (`en-US/Sallyport.adml`).
pub fn adml(keys: &[Key]) -> String {
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = writeln!(out, "<!-- {HEADER_COMMENT} -->");
    let _ = writeln!(
        out,
        "<policyDefinitionResources xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" revision=\"1.0\" schemaVersion=\"1.0\" xmlns=\"{NAMESPACE}\">"
    );
    out.push_str("  <displayName>Sallyport</displayName>\n");
    out.push_str(
        "  <description>Managed settings of the Sallyport zero-trust client.</description>\n",
    );
    out.push_str("  <resources>\n    <stringTable>\n");
    let string = |out: &mut String, id: &str, text: &str| {
        let _ = writeln!(out, "      <string id=\"{id}\">{}</string>", escape(text));
    };
    string(&mut out, "Sallyport", "Sallyport");
    string(
        &mut out,
        "Sallyport_Explain",
        "Settings of the Sallyport agent and tray app. Each configured policy overrides the user's own setting; the agent reports it as locked.",
    );
    string(&mut out, "SUPPORTED_Windows10", "At least Windows 10");
    for key in windows_keys(keys) {
        let name = policy_name(key);
        string(&mut out, &name, key.title);
        string(&mut out, &format!("{name}_Explain"), &explain(key));
        if let Kind::Choice(items) = key.kind {
            for item in items {
                string(&mut out, &format!("{name}_{item}"), item);
            }
        }
    }
    out.push_str("    </stringTable>\n    <presentationTable>\n");
    for key in windows_keys(keys) {
        presentation(&mut out, key);
    }
    out.push_str("    </presentationTable>\n  </resources>\n");
    out.push_str("</policyDefinitionResources>\n");
    out
}

fn presentation(out: &mut String, key: &Key) {
    let name = policy_name(key);
    let label = escape(key.title);
    let body = match (key.kind, key.default) {
        (Kind::Bool, _) => return,
        (Kind::Integer { .. }, Some(Literal::Integer(n))) => {
            format!(
                "<decimalTextBox refId=\"{name}\" defaultValue=\"{n}\">{label}</decimalTextBox>"
            )
        }
        (Kind::Integer { .. }, _) => {
            format!("<decimalTextBox refId=\"{name}\">{label}</decimalTextBox>")
        }
        (Kind::String | Kind::HttpsUrl, Some(Literal::String(s))) => format!(
            "<textBox refId=\"{name}\">\n          <label>{label}</label>\n          <defaultValue>{}</defaultValue>\n        </textBox>",
            escape(s)
        ),
        (Kind::String | Kind::HttpsUrl, _) => format!(
            "<textBox refId=\"{name}\">\n          <label>{label}</label>\n        </textBox>"
        ),
        (Kind::StringList, _) => {
            format!("<multiTextBox refId=\"{name}\">{label} (one per line)</multiTextBox>")
        }
        (Kind::Choice(items), default) => {
            let index = match default {
                Some(Literal::String(s)) => items.iter().position(|i| *i == s).unwrap_or(0),
                _ => 0,
            };
            format!(
                "<dropdownList refId=\"{name}\" noSort=\"true\" defaultItem=\"{index}\">{label}</dropdownList>"
            )
        }
    };
    let _ = writeln!(
        out,
        "      <presentation id=\"{name}\">\n        {body}\n      </presentation>"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::config::schema::{ALL_OSES, KEYS};

    #[test]
    fn sectioned_keys_live_in_a_subkey() {
        let key = agent::config::schema::key("identity.acr_values").unwrap();
        assert_eq!(registry_key(key), r"SOFTWARE\Policies\Sallyport\identity");
        assert_eq!(policy_name(key), "identity_acr_values");
        let top = agent::config::schema::key("broker_url").unwrap();
        assert_eq!(registry_key(top), r"SOFTWARE\Policies\Sallyport");
    }

    #[test]
    fn every_windows_key_has_a_policy_and_others_none() {
        const MAC_ONLY: &[Key] = &[Key {
            path: "mac_only",
            title: "Mac only",
            description: "Only on macOS.",
            kind: Kind::Bool,
            default: None,
            example: Literal::Bool(true),
            oses: &[Os::MacOs],
            manageable: true,
        }];
        let text = admx(KEYS);
        for key in KEYS {
            assert!(text.contains(&format!("name=\"{}\"", policy_name(key))));
        }
        assert!(!admx(MAC_ONLY).contains("mac_only"));
        assert!(!adml(MAC_ONLY).contains("mac_only"));
        assert!(ALL_OSES.contains(&Os::Windows));
    }

    #[test]
    fn a_choice_becomes_an_enum_with_its_default_selected() {
        const CHOICE: &[Key] = &[Key {
            path: "ui.theme",
            title: "Theme",
            description: "The window's <theme>.",
            kind: Kind::Choice(&["light", "dark"]),
            default: Some(Literal::String("dark")),
            example: Literal::String("light"),
            oses: ALL_OSES,
            manageable: true,
        }];
        let text = admx(CHOICE);
        assert!(
            text.contains("<enum id=\"ui_theme\" valueName=\"theme\""),
            "{text}"
        );
        assert!(text.contains("<string>dark</string>"), "{text}");
        let strings = adml(CHOICE);
        assert!(strings.contains("defaultItem=\"1\""), "{strings}");
        assert!(strings.contains("The window's &lt;theme&gt;."), "{strings}");
        assert!(strings.contains("<string id=\"ui_theme_dark\">dark</string>"));
    }
}
