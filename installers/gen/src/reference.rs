//! `docs/SETTINGS.md`: the settings reference, one table row per key, and
//! where each OS's managed source puts it.

use std::fmt::Write as _;

use agent::config::schema::{ALL_OSES, Key, Kind};

/// A Markdown table cell: no pipes, no newlines.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The reference page.
pub fn settings_md(keys: &[Key]) -> String {
    let mut out = String::new();
    out.push_str("# Sallyport settings\n\n");
    out.push_str("<!-- Generated from settings/src/schema.rs by `cargo run -p installers-gen`; do not edit. -->\n\n");
    out.push_str(
        "The agent reads the user's own file, then overlays the managed settings IT deploys; a \
managed key always wins and is reported *locked*. Both use the keys below; a key in a \
`[section]` is written `section.key` here. An unknown key, a wrong type or a value out of \
range is an error naming the source and the key (the agent does not start).\n\n",
    );
    out.push_str("| source | where |\n| --- | --- |\n");
    out.push_str("| user file | Linux `$XDG_CONFIG_HOME/sallyport/config.toml` (`~/.config/...`), Windows `%APPDATA%\\Sallyport\\config.toml`, macOS `~/Library/Application Support/Sallyport/config.toml` |\n");
    out.push_str("| managed, Linux | `/etc/sallyport/managed.toml` (TOML; example: [`installers/linux/managed.toml`](../installers/linux/managed.toml)) |\n");
    out.push_str("| managed, Windows | registry `HKLM\\SOFTWARE\\Policies\\Sallyport` (a sectioned key in a subkey: `...\\Sallyport\\identity`, value `acr_values`), written by the Group Policy template [`installers/windows/admx/`](../installers/windows/admx/) |\n");
    out.push_str("| managed, macOS | managed preferences of `com.sallyport.agent` (`/Library/Managed Preferences/com.sallyport.agent.plist`), from the profile [`installers/macos/com.sallyport.agent.mobileconfig`](../installers/macos/com.sallyport.agent.mobileconfig) |\n\n");
    out.push_str("Registry types: boolean `REG_DWORD` 0/1, integer `REG_DWORD`, string and URL `REG_SZ`, list `REG_MULTI_SZ`.\n\n");
    out.push_str("| key | type | default | allowed | OS | managed | description |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for key in keys {
        let allowed = match key.kind {
            Kind::Integer { min, max } => format!("{min} to {max}"),
            Kind::Choice(items) => items.join(", "),
            Kind::HttpsUrl => "https; http only to loopback".to_owned(),
            Kind::Bool => "true, false".to_owned(),
            Kind::String | Kind::StringList => "any".to_owned(),
        };
        let oses = if key.oses == ALL_OSES {
            "all".to_owned()
        } else {
            key.oses
                .iter()
                .map(|os| os.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            key.path,
            key.kind.name(),
            cell(&crate::describe_default(key)),
            cell(&allowed),
            oses,
            if key.manageable { "yes" } else { "no" },
            cell(key.description)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_key_and_pipes_escaped() {
        let text = settings_md(agent::config::schema::KEYS);
        let rows = text.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(rows, agent::config::schema::KEYS.len());
        assert_eq!(cell("a|b"), "a\\|b");
    }
}
